"""The image hierarchy as data, and tags derived from a hash of each image's build inputs.

A tag is ``onelab/<name>:<12 hex digits>``: change a Dockerfile, a requirement, a pin of the
learner's lock (``requirements.lock`` for the CPU image, ``requirements-gpu.lock`` for the GPU
one, hashed with the rest of the directory), the package list or the torch setting and the tag
changes, so a stale image is never mistaken for a current one, and one tag always holds one set of
package versions. Each variant hashes its own lock only: a GPU lock change leaves the CPU tag be.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from onelab.settings import Settings

HERE = Path(__file__).resolve().parent
REPO = "onelab"
# Debian bookworm's python3, patch level included: the learner lock is resolved for it (a newer
# 3.11.x would accept releases that need 3.11.5) and the wheelhouse is downloaded for it.
PYTHON_VERSION = "3.11.2"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    directory: Path
    parent: str | None  # another spec's name, or None for the base
    gpu: bool = False
    lock: str | None = None  # the lock file in `directory` this image installs, exactly


TABLE: dict[str, ImageSpec] = {
    "base": ImageSpec("base", HERE / "base", None),
    "learner": ImageSpec("learner", HERE / "learner", "base", lock="requirements.lock"),
    "learner-gpu": ImageSpec("learner-gpu", HERE / "learner", "base", gpu=True,
                             lock="requirements-gpu.lock"),
}


def extra_inputs(name: str) -> dict[Path, str]:
    """Folders from outside an image's directory that its build context gets (and its tag
    hashes): {source: name in the context}. The learner images carry the Assignments panel
    (built, see images/labextension.py) and OneLab's message catalogue."""
    if TABLE[name].parent is None:
        return {}
    from images import labextension

    return {labextension.BUILT: "labextension",
            HERE.parent / "onelab" / "locale": "locale"}


def _digest_dir(h: hashlib._Hash, directory: Path, skip: frozenset[str] = frozenset()) -> None:
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = str(path.relative_to(directory))
        if "__pycache__" in path.parts or relative in skip:
            continue
        h.update(relative.encode())
        h.update(path.read_bytes())


def debian_packages() -> list[str]:
    lines = (TABLE["base"].directory / "packages.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def torch_requirement(settings: Settings, gpu: bool) -> str:
    return settings.images.torch_gpu if gpu else settings.images.torch


def learner_lock(gpu: bool = False) -> Path:
    """The CPU (or GPU) learner image's lock: every package pinned, every file's sha256
    (docker/lock.sh)."""
    spec = TABLE["learner-gpu" if gpu else "learner"]
    assert spec.lock is not None
    return spec.directory / spec.lock


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it (`Ruamel.YAML` is `ruamel-yaml`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path | None = None) -> dict[str, str]:
    """{normalized name: version} of a lock's `name==version` lines."""
    pins = {}
    for line in (lock or learner_lock()).read_text().splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            pins[normalize(m.group(1))] = m.group(2)
    return pins


def inputs_hash(name: str, settings: Settings) -> str:
    """Hash of everything that goes into an image, its parents included."""
    spec = TABLE[name]
    h = hashlib.sha256(name.encode())
    # A sibling variant's lock in the same directory is not an input of this image.
    siblings = {s.lock for s in TABLE.values() if s.directory == spec.directory and s.lock}
    _digest_dir(h, spec.directory, frozenset(siblings - {spec.lock}))
    if spec.parent is None:
        h.update(b"bookworm")
    else:
        h.update(inputs_hash(spec.parent, settings).encode())
        h.update(torch_requirement(settings, spec.gpu).encode())
        h.update(PYTHON_VERSION.encode())
        for source, dest in sorted(extra_inputs(name).items(), key=lambda kv: kv[1]):
            h.update(dest.encode())
            _digest_dir(h, source)
    return h.hexdigest()[:12]


def tag(name: str, settings: Settings) -> str:
    return f"{REPO}/{name}:{inputs_hash(name, settings)}"


def learner_image(settings: Settings) -> str:
    """The image learners get: spawner.image if set, else the built learner (or GPU) image."""
    if settings.spawner.image:
        return settings.spawner.image
    return tag("learner-gpu" if settings.uses_gpu else "learner", settings)


def gpu_learner_image(settings: Settings) -> str:
    """The image of a learner server that holds a GPU claim: gpu.image, else spawner.image,
    else the built CUDA learner image."""
    return settings.gpu.image or settings.spawner.image or tag("learner-gpu", settings)


def grading_image(settings: Settings, spec_image: str = "learner", gpu: bool = False) -> str:
    """The one rule for the image a course is graded in (`onelab grade`, the formgrader's
    autograde, `onelab assignment grade`, regress's grading QA): the image its spec names, else
    grading.image, else the learner image."""
    if spec_image != "learner":
        return spec_image
    return settings.grading.image or course_image("learner", settings, gpu)


def course_image(spec_image: str, settings: Settings, gpu: bool = False) -> str:
    """The image a course runs in: its spec's `image` (`learner` means the learner image)."""
    if spec_image != "learner":
        return spec_image
    if gpu:
        return settings.spawner.image or tag("learner-gpu", settings)
    return learner_image(settings)
