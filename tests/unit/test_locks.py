"""The locks say exactly what gets installed, and still match what the project asks for.

A requirement changed without `docker/lock.sh`, a hand-edited pin, a line without a hash or a
lock made on the wrong machine (a CUDA torch, a local path) fails here, before any build.
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
HOST_LOCK = REPO / "docker" / "host.lock"
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;=*]*)((?:\s+--hash=sha256:[0-9a-f]{64})+)")
# Markers are evaluated for the image's interpreter, the one both locks are resolved for.
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


@pytest.mark.parametrize("lock", [LEARNER_LOCK, HOST_LOCK], ids=["learner", "host"])
def test_every_entry_pinned_with_hashes_and_nothing_machine_specific(lock):
    pins = read_lock(lock)
    assert len(pins) > 50
    text = lock.read_text()
    for local in ("/tmp/", "/opt/", "file:", "--index-url", "--find-links", "-e "):
        assert local not in text, f"{lock.name} names {local!r}: made with machine-specific options"
    assert "docker/lock.sh" in text.splitlines()[1]  # the header says how to regenerate it


def test_learner_lock_satisfies_requirements_and_torch_setting():
    pins = read_lock(LEARNER_LOCK)
    lines = (table.TABLE["learner"].directory / "requirements.txt").read_text().splitlines()
    reqs = requirements_of(lines) + [Requirement(load(path=None, environ={}).images.torch)]
    assert not unsatisfied(reqs, pins), \
        f"requirements.txt or images.torch changed without docker/lock.sh: {unsatisfied(reqs, pins)}"


def test_learner_lock_is_the_cpu_build():
    """On a machine without the CPU wheel, a lock would quietly pin the multi-GB CUDA torch."""
    pins = read_lock(LEARNER_LOCK)
    assert pins["torch"].endswith("+cpu")
    assert not [p for p in pins if p.startswith("nvidia-") or p == "triton"]


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


def test_labels_come_from_the_lock():
    labels = build._version_labels(load(path=None, environ={}), gpu=False)
    pins = read_lock(LEARNER_LOCK)
    assert labels["org.onelab.version.torch"] == pins["torch"]
    assert labels["org.onelab.version.jupyterlab"] == pins["jupyterlab"]
