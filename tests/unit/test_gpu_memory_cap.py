"""A learner on a shared GPU gets PyTorch's per-process memory cap at kernel start
(images/learner/onelab/onelab_gpu.py); anyone else's kernel imports nothing."""

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "learner" / "onelab"))
import onelab_gpu


@pytest.mark.parametrize("value, share", [
    ("0.25", 0.25), ("1", 1.0), ("0", None), ("1.5", None), ("lots", None), ("", None)])
def test_the_fraction_is_read_and_checked(value, share):
    assert onelab_gpu.fraction({"ONELAB_GPU_MEMORY_FRACTION": value}) == share


def test_each_visible_device_is_capped(monkeypatch):
    calls = []
    cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 2,
        set_per_process_memory_fraction=lambda f, d: calls.append((f, d)))
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert onelab_gpu.apply({"ONELAB_GPU_MEMORY_FRACTION": "0.5"}) == 0.5
    assert calls == [(0.5, 0), (0.5, 1)]


def test_without_the_variable_torch_is_not_even_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # an import would raise
    assert onelab_gpu.apply({}) is None


def test_the_image_runs_it_in_every_kernel():
    config = Path(__file__).resolve().parents[2] / "images" / "learner" / "jupyter" / \
        "ipython_kernel_config.py"
    ns = {"c": types.SimpleNamespace(InteractiveShellApp=types.SimpleNamespace())}
    exec(config.read_text(), ns)  # noqa: S102 - our own config file, as IPython runs it
    line, = ns["c"].InteractiveShellApp.exec_lines
    assert "_onelab_gpu.apply()" in line
    dockerfile = (config.parents[1] / "Dockerfile").read_text()
    assert "/opt/onelab/venv/etc/ipython/ipython_kernel_config.py" in dockerfile
