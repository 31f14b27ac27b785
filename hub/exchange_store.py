"""The exchange's storage, on the hub's side only: no learner container mounts any of it.

    <root>/<course>/outbound/<assignment>/...                          released files
    <root>/<course>/inbound/<learner>/<assignment>/<timestamp>+<id>/   every submission, kept
    <root>/<course>/feedback/<learner>/<assignment>/<timestamp>/<notebook>.html

A submission is written into a hidden temporary folder beside its final place, every file
fsynced, then renamed into place in one step and the parent fsynced: a reader (collect,
grading) sees a whole submission or none, and one acknowledged survives a crash. Each
resubmission is a new folder; nothing is overwritten.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MAX_SUBMISSION = 100 * 1024 * 1024  # bytes, unpacked


class ExchangeError(Exception):
    """A request the exchange refuses, with the reason a learner can act on."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_name(kind: str, value: str) -> str:
    if not NAME.match(value or "") or ".." in value:
        raise ExchangeError(f"bad {kind} name: {value!r}")
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def safe_extract(data: bytes, dest: Path, limit: int = MAX_SUBMISSION) -> list[str]:
    """Unpack a tar.gz of plain files and folders into `dest`, fsyncing each file. Links,
    devices, absolute or escaping paths and oversize archives are refused, not skipped."""
    names: list[str] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar.getmembers():
                rel = Path(m.name)
                if rel.is_absolute() or ".." in rel.parts or not (m.isfile() or m.isdir()):
                    raise ExchangeError(f"the archive holds a forbidden entry: {m.name!r}")
                total += m.size
                if total > limit:
                    raise ExchangeError(f"the submission is larger than {limit // 2**20} MiB",
                                        413)
                target = dest / rel
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                with open(target, "wb") as fh:
                    shutil.copyfileobj(src, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                names.append(rel.as_posix())
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno == 28:
            raise ExchangeError("the exchange's disk is full; try again later", 507) from None
        raise ExchangeError(f"the upload is not a readable tar.gz ({e})") from None
    return names


def replace_dir(src: Path, dest: Path, ignore=None) -> Path:
    """Copy `src` to `dest` whole: into a hidden sibling first, then swapped in by renames,
    so a reader sees the old folder or the new one, never a mix or a half copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}"
    shutil.copytree(src, tmp, ignore=ignore)
    old = dest.parent / f".{dest.name}.old.{secrets.token_hex(4)}"
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    _fsync_dir(dest.parent)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def pack(entries: list[tuple[Path, str]]) -> bytes:
    """A tar.gz of files and folders, each under its name in the archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, arcname in entries:
            tar.add(path, arcname=arcname)
    return buf.getvalue()


@dataclass
class Submission:
    course: str
    learner: str
    assignment: str
    timestamp: str
    path: Path


class ExchangeStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def course_dir(self, course: str) -> Path:
        return self.root / check_name("course", course)

    # -- released assignments --------------------------------------------------------------
    def outbound(self, course: str) -> Path:
        return self.course_dir(course) / "outbound"

    def release(self, course: str, assignment: str, release_dir: Path) -> Path:
        """Publish release_dir as the assignment, replacing an earlier release in one step."""
        check_name("assignment", assignment)
        return replace_dir(release_dir, self.outbound(course) / assignment)

    def released(self, course: str) -> list[str]:
        out = self.outbound(course)
        return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(
            ".")) if out.is_dir() else []

    # -- submissions -----------------------------------------------------------------------
    def submit(self, course: str, learner: str, assignment: str, data: bytes) -> Submission:
        """Store one submission (a tar.gz holding timestamp.txt) whole, or not at all."""
        check_name("learner", learner)
        if assignment not in self.released(course):
            raise ExchangeError(f"assignment {assignment!r} is not released in {course}", 404)
        base = self.course_dir(course) / "inbound" / learner / assignment
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".incoming-{secrets.token_hex(6)}"
        tmp.mkdir()
        try:
            names = safe_extract(data, tmp)
            if not any(n.endswith(".ipynb") for n in names):
                raise ExchangeError("the submission holds no notebook")
            # The time that counts (lateness) is the exchange's, not the learner's clock.
            claimed = tmp / "timestamp.txt"
            if claimed.exists():
                claimed.rename(tmp / "learner_timestamp.txt")
            timestamp = receipt_time()
            with open(tmp / "timestamp.txt", "w") as fh:
                fh.write(timestamp)
                fh.flush()
                os.fsync(fh.fileno())
            final = base / f"{_safe_ts(timestamp)}+{secrets.token_hex(4)}"
            _fsync_dir(tmp)
            tmp.rename(final)
            _fsync_dir(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Submission(course, learner, assignment, timestamp, final)

    def submissions(self, course: str, assignment: str | None = None,
                    learner: str | None = None) -> list[Submission]:
        """Whole submissions only (never a half-written `.incoming-*`), oldest first."""
        inbound = self.course_dir(course) / "inbound"
        out = []
        for path in sorted(inbound.glob(f"{learner or '*'}/{assignment or '*'}/*")):
            if path.name.startswith(".") or not path.is_dir():
                continue
            try:
                ts = (path / "timestamp.txt").read_text().strip()
            except OSError:
                continue
            out.append(Submission(course, path.parent.parent.name, path.parent.name, ts, path))
        return sorted(out, key=lambda s: (s.learner, s.assignment, s.path.name))

    def latest(self, course: str, assignment: str) -> dict[str, Submission]:
        latest: dict[str, Submission] = {}
        for sub in self.submissions(course, assignment):
            latest[sub.learner] = sub  # sorted oldest first: the last one wins
        return latest

    # -- feedback --------------------------------------------------------------------------
    def put_feedback(self, course: str, learner: str, assignment: str, timestamp: str,
                     html_files: list[Path]) -> None:
        dest = (self.course_dir(course) / "feedback" / check_name("learner", learner) /
                check_name("assignment", assignment) / _safe_ts(timestamp))
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        for f in html_files:
            shutil.copy(f, tmp / f.name)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)

    def feedback_for(self, course: str, learner: str) -> list[tuple[str, str, Path]]:
        """(assignment, timestamp folder, html file) of this learner's feedback only."""
        root = self.course_dir(course) / "feedback" / check_name("learner", learner)
        return [(p.parent.parent.name, p.parent.name, p) for p in sorted(root.glob("*/*/*.html"))
                if not p.parent.name.startswith(".")]


def receipt_time() -> str:
    """Now, in nbgrader's timestamp format, UTC."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _safe_ts(timestamp: str) -> str:
    """A timestamp as a folder name: nbgrader's '2026-12-01 10:00:00.123456 UTC' keeps its
    digits and separators, anything else becomes '_'."""
    return re.sub(r"[^0-9A-Za-z._:-]", "_", timestamp.strip())[:64] or "unknown"
