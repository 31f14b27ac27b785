"""The learner image's JupyterLab extension (the Assignments panel, images/labextension/).

Its sources are built by images/labextension/build.sh (npm and JupyterLab's builder) into
images/labextension/built/, which is committed and copied into the learner image as is: image
builds and offline classrooms need no node. The stamp ties built/ to the sources it came from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DIR = Path(__file__).resolve().parent / "labextension"
BUILT = DIR / "built"
STAMP = BUILT / "source.sha256"
NAME = "@onelab/assignments"
SOURCES = ("package.json", "package-lock.json", "src", "style")


def source_hash() -> str:
    """sha256 over the files the build reads (names and contents)."""
    h = hashlib.sha256()
    for entry in SOURCES:
        path = DIR / entry
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(DIR)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def write_stamp() -> None:
    STAMP.write_text(source_hash() + "\n")


def stamp() -> str | None:
    try:
        return STAMP.read_text().strip()
    except OSError:
        return None
