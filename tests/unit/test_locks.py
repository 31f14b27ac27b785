"""The locks say exactly what gets installed, and still match what the project asks for.

A requirement changed without `docker/lock.sh`, a hand-edited pin, a line without a hash or a
lock made on the wrong machine (a CUDA torch in the CPU lock, a CPU torch in the GPU lock, a
local path) fails here, before any build.
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from images import build, table
from onelab.settings import load

REPO = Path(__file__).resolve().parents[2]
LEARNER_LOCK = table.learner_lock()
GPU_LOCK = table.learner_lock(gpu=True)
HOST_LOCK = REPO / "docker" / "host.lock"
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;=*]*)((?:\s+--hash=sha256:[0-9a-f]{64})+)")
# Markers are evaluated for the image's interpreter, the one every lock is resolved for.
TARGET = {"python_version": table.PYTHON_VERSION.rsplit(".", 1)[0],
          "python_full_version": table.PYTHON_VERSION, "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def read_lock(path: Path) -> dict[str, str]:
    """{normalized name: version}; every entry must be `name==version` with its sha256 hashes."""
    entries = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    pins: dict[str, str] = {}
    for n, line in enumerate(entries.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.fullmatch(line)
        assert m, f"{path.name}: entry {n} is not `name==version --hash=sha256:...`: {line[:80]}"
        name = table.normalize(m.group(1))
        assert name not in pins, f"{path.name}: {name} is pinned twice"
        pins[name] = m.group(2)
    return pins


def requirements_of(lines: list[str]) -> list[Requirement]:
    reqs = [Requirement(ln.split("#")[0]) for ln in lines if ln.split("#")[0].strip()]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(TARGET)]


def unsatisfied(reqs: list[Requirement], pins: dict[str, str]) -> list[str]:
    bad = []
    for r in reqs:
        version = pins.get(table.normalize(r.name))
        if version is None or not r.specifier.contains(version, prereleases=True):
            bad.append(f"{r} (lock: {version or 'missing'})")
    return bad


def cuda_only(name: str) -> bool:
    """torch's CUDA wheels and the packages only the CUDA torch brings in."""
    return name.startswith(("nvidia-", "cuda-")) or name == "triton"


@pytest.mark.parametrize("lock", [LEARNER_LOCK, GPU_LOCK, HOST_LOCK], ids=["learner", "gpu", "host"])
def test_every_entry_pinned_with_hashes_and_nothing_machine_specific(lock):
    pins = read_lock(lock)
    assert len(pins) > 50
    text = lock.read_text()
    for local in ("/tmp/", "/opt/", "file:", "--index-url", "--find-links", "-e "):
        assert local not in text, f"{lock.name} names {local!r}: made with machine-specific options"
    assert "docker/lock.sh" in text.splitlines()[1]  # the header says how to regenerate it


@pytest.mark.parametrize("gpu", [False, True], ids=["learner", "gpu"])
def test_learner_lock_satisfies_requirements_and_torch_setting(gpu):
    pins = read_lock(table.learner_lock(gpu))
    lines = (table.TABLE["learner"].directory / "requirements.txt").read_text().splitlines()
    torch = table.torch_requirement(load(path=None, environ={}), gpu)
    reqs = requirements_of(lines) + [Requirement(torch)]
    assert not unsatisfied(reqs, pins), \
        f"requirements.txt or the torch setting changed without docker/lock.sh: {unsatisfied(reqs, pins)}"


def test_learner_lock_is_the_cpu_build():
    """On a machine without the CPU wheel, a lock would quietly pin the multi-GB CUDA torch."""
    pins = read_lock(LEARNER_LOCK)
    assert pins["torch"].endswith("+cpu")
    assert not [p for p in pins if cuda_only(p)]


def test_gpu_lock_is_the_cuda_build():
    """PyPI's plain torch with its CUDA wheels, never a local `+cpu` (or other local) build."""
    pins = read_lock(GPU_LOCK)
    assert "+" not in pins["torch"]
    assert [p for p in pins if p.startswith("nvidia-")] and "triton" in pins


def test_cpu_and_gpu_images_share_every_other_pin():
    """numpy, pandas, jupyterlab, ... are the same in both images: docker/lock.sh holds the GPU
    lock to the CPU lock's pins; only torch and what CUDA brings differ."""
    cpu, gpu = read_lock(LEARNER_LOCK), read_lock(GPU_LOCK)
    shared = {p for p in cpu.keys() | gpu.keys() if p != "torch" and not cuda_only(p)}
    moved = sorted(f"{p}: cpu {cpu.get(p, 'missing')}, gpu {gpu.get(p, 'missing')}"
                   for p in shared if cpu.get(p) != gpu.get(p))
    assert not moved, f"the learner locks disagree (regenerate both with docker/lock.sh): {moved}"


def test_host_lock_satisfies_pyproject():
    pins = read_lock(HOST_LOCK)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    lines = [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["test"],
             *project["build-system"]["requires"]]
    reqs = requirements_of(lines)
    assert not unsatisfied(reqs, pins), \
        f"pyproject.toml changed without docker/lock.sh: {unsatisfied(reqs, pins)}"


def test_build_refuses_a_torch_setting_the_lock_does_not_hold():
    s = load(path=None, environ={"ONELAB_IMAGES__TORCH": "torch==2.14.1"})
    with pytest.raises(build.BuildError, match="docker/lock.sh"):
        build.check_lock(s)
    build.check_lock(load(path=None, environ={}))  # the default is what the lock holds


@pytest.mark.parametrize("torch_gpu", ["torch==2.14.1", "torch===2.13.0+cpu"])
def test_gpu_build_refuses_a_torch_gpu_setting_the_gpu_lock_does_not_hold(torch_gpu):
    s = load(path=None, environ={"ONELAB_IMAGES__TORCH_GPU": torch_gpu})
    with pytest.raises(build.BuildError, match="images.torch_gpu .*docker/lock.sh"):
        build.check_lock(s, gpu=True)
    build.check_lock(s)  # the CPU image does not care
    build.check_lock(load(path=None, environ={}), gpu=True)  # the default is what the lock holds


@pytest.mark.parametrize("gpu", [False, True], ids=["learner", "gpu"])
def test_labels_come_from_the_lock(gpu):
    labels = build._version_labels(gpu)
    pins = read_lock(table.learner_lock(gpu))
    assert labels["org.onelab.version.torch"] == pins["torch"]
    assert labels["org.onelab.version.jupyterlab"] == pins["jupyterlab"]
