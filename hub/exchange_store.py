"""The exchange's storage, on the hub's side only: no learner container mounts any of it.

    <root>/<course>/outbound/<assignment>/...                          released files
    <root>/<course>/inbound/<learner>/<assignment>/<timestamp>+<id>/   every submission, kept
    <root>/<course>/feedback/<learner>/<assignment>/<timestamp>/<notebook>.html, score.json
    <root>/<course>/.incoming/<id>/    a submission being unpacked (never in inbound/)
    <root>/.uploads/<id>               an upload's body being received (the service's)

A submission is unpacked into a hidden folder of its course, every file fsynced, then renamed
into place in one step and the parents fsynced: a reader (collect, grading) sees a whole
submission or none, one acknowledged survives a crash, and a refused one leaves inbound/ as it
was. Each resubmission is a new folder; nothing is overwritten.

What one learner may send and keep is limited (`Limits`, from the `exchange.*` settings): the
archive is read as a stream and every cap (files, unpacked size, what is left of the quota) is
checked as each header arrives and again on the bytes actually written, so a gzip bomb or an
archive of 25,000 files is refused at the first entry past the cap, never listed or unpacked
whole.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import secrets
import shutil
import tarfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from onelab.settings import ExchangeSettings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
MiB = 1024 * 1024
CHUNK = 1024 * 1024
# Bytes of a tar stream beside its files' contents: a header (and perhaps a long-name or pax
# header) and padding per entry, and the end-of-archive record.
TAR_OVERHEAD_PER_ENTRY = 2048
TAR_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """What one learner may send and keep; sizes in bytes (settings `exchange.*`)."""

    max_upload: int = 100 * MiB
    max_unpacked: int = 100 * MiB
    max_entries: int = 1000
    quota_per_learner: int = 500 * MiB
    max_submissions: int = 20

    @classmethod
    def from_settings(cls, s: ExchangeSettings) -> Limits:
        from onelab.settings import size_bytes

        return cls(max_upload=size_bytes(s.max_upload), max_unpacked=size_bytes(s.max_unpacked),
                   max_entries=s.max_entries, quota_per_learner=size_bytes(s.quota_per_learner),
                   max_submissions=s.max_submissions)


class ExchangeError(Exception):
    """A request the exchange refuses, with the reason a learner can act on."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def refusal(korean: str, english: str, status: int) -> ExchangeError:
    """Learners read these in the Assignments tab: Korean first, then English."""
    return ExchangeError(f"{korean} / {english}", status)


def human(n: int) -> str:
    """A size as learners read it: 100 MiB, 3.2 MiB, 512 KiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def too_many_files(limit: int) -> ExchangeError:
    return refusal(f"제출물의 파일 수가 한도({limit}개)를 넘었습니다",
                   f"the submission holds more than {limit} files", 413)


def too_large_unpacked(limit: int) -> ExchangeError:
    return refusal(f"제출물의 압축을 푼 크기가 한도({human(limit)})를 넘었습니다",
                   f"the submission unpacks to more than {human(limit)}", 413)


def over_quota(quota: int, left: int, size: int | None = None) -> ExchangeError:
    if left <= 0:
        return refusal(f"이 과정의 저장 한도({human(quota)})를 모두 썼습니다",
                       f"you have used all of your {human(quota)} storage quota in this course",
                       507)
    of = f"({human(size)})" if size is not None else ""
    return refusal(
        f"제출물{of}이 이 과정의 저장 한도({human(quota)}) 중 남은 {human(left)}보다 큽니다",
        f"the submission{' ' + of if of else ''} is larger than the {human(left)} left of your "
        f"{human(quota)} storage quota in this course", 507)


def disk_full() -> ExchangeError:
    return refusal("교환 서버의 디스크가 가득 찼습니다. 나중에 다시 제출하세요",
                   "the exchange's disk is full; try again later", 507)


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


class _CappedGunzip:
    """The decompressed stream of a tar.gz, refused once it passes `cap` bytes: whatever the
    tar headers claim, decompression (and tarfile's reads of long-name and pax headers) stop
    there, so a gzip bomb costs at most `cap` bytes of work."""

    def __init__(self, raw: BinaryIO, cap: int, error: Callable[[], ExchangeError]) -> None:
        self.gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self.left = cap
        self.error = error

    def read(self, n: int = -1) -> bytes:
        want = self.left + 1 if n is None or n < 0 else min(n, self.left + 1)
        data = self.gz.read(want)
        self.left -= len(data)
        if self.left < 0:
            raise self.error()
        return data


def safe_extract(fileobj: BinaryIO, dest: Path, *, max_entries: int, max_unpacked: int,
                 room: int, quota: int) -> list[str]:
    """Unpack a tar.gz of plain files and folders into `dest`, fsyncing each file, reading it
    as a stream (headers one at a time, never a list of all members). Refused, not skipped:
    links, devices, absolute or escaping paths; more than `max_entries` entries; more than
    `max_unpacked` bytes of files, or more than `room` (what is left of a `quota`)."""
    def too_big() -> ExchangeError:
        return too_large_unpacked(max_unpacked) if max_unpacked <= room else over_quota(
            quota, room)

    cap = min(max_unpacked, room) + TAR_OVERHEAD_PER_ENTRY * (max_entries + 1) + TAR_OVERHEAD
    names: list[str] = []
    entries = claimed = written = 0
    try:
        with tarfile.open(fileobj=_CappedGunzip(fileobj, cap, too_big), mode="r|") as tar:
            for m in tar:  # one header at a time, as the stream arrives
                entries += 1
                if entries > max_entries:
                    raise too_many_files(max_entries)
                rel = Path(m.name)
                if rel.is_absolute() or ".." in rel.parts or not (m.isfile() or m.isdir()):
                    raise refusal(f"제출물에 허용되지 않는 항목이 있습니다: {m.name!r}",
                                  f"the archive holds a forbidden entry: {m.name!r}", 400)
                target = dest / rel
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                claimed += m.size
                if claimed > min(max_unpacked, room):
                    raise too_big()
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                with open(target, "wb") as fh:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > min(max_unpacked, room):  # what is written, not claimed
                            raise too_big()
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                names.append(rel.as_posix())
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        if isinstance(e, OSError) and e.errno == 28:
            raise disk_full() from None
        raise refusal("업로드가 올바른 tar.gz 파일이 아닙니다",
                      f"the upload is not a readable tar.gz ({e})", 400) from None
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


SCORE_FILE = "score.json"


@dataclass(frozen=True)
class Score:
    score: float
    max_score: float

    @classmethod
    def parse(cls, raw: object) -> Score:
        """From the grading service's JSON: two finite numbers, 0 <= score <= max_score."""
        import math

        if not isinstance(raw, dict):
            raise ValueError("a score is an object")  # noqa: TRY004 - callers catch ValueError
        score, top = raw.get("score"), raw.get("max_score")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (score, top)):
            raise ValueError("score and max_score must be numbers")
        assert isinstance(score, int | float) and isinstance(top, int | float)
        if not 0 <= score <= top or top > 1e6:
            raise ValueError("a score lies between 0 and its max_score")
        return cls(float(score), float(top))


class ExchangeStore:
    def __init__(self, root: Path, limits: Limits | None = None) -> None:
        self.root = root
        self.limits = limits or Limits()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

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
    def uploads_dir(self) -> Path:
        """Where the service writes an upload's body while it arrives (same disk, never
        buffered in memory)."""
        path = self.root / ".uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clear_partial(self) -> None:
        """Remove bodies and unpacked folders left by a crash; only while nothing uploads."""
        shutil.rmtree(self.root / ".uploads", ignore_errors=True)
        for incoming in self.root.glob("*/.incoming"):
            shutil.rmtree(incoming, ignore_errors=True)

    def usage(self, course: str, learner: str) -> int:
        """Bytes of the files of this learner's kept submissions in this course, every
        assignment and resubmission together (what their quota counts)."""
        total = 0
        base = self.course_dir(course) / "inbound" / check_name("learner", learner)
        for sub in base.glob("*/*"):
            if sub.name.startswith(".") or not sub.is_dir():
                continue
            for dirpath, _, files in os.walk(sub):
                for f in files:
                    try:
                        total += os.lstat(os.path.join(dirpath, f)).st_size
                    except OSError:
                        pass
        return total

    def count(self, course: str, learner: str, assignment: str) -> int:
        return len(self.submissions(course, assignment, learner))

    def check_room(self, course: str, learner: str, assignment: str,
                   upload: int | None = None) -> int:
        """Refuse, before anything is read, a submission that cannot be kept: an upload over
        `max_upload`, the resubmission limit reached, the quota used, or an upload larger
        than what is left of it. Returns the bytes left of the learner's quota."""
        check_name("learner", learner)
        if assignment not in self.released(course):
            raise ExchangeError(f"assignment {assignment!r} is not released in {course}", 404)
        lim = self.limits
        if upload is not None and upload > lim.max_upload:
            raise refusal(
                f"업로드 크기({human(upload)})가 한도({human(lim.max_upload)})를 넘었습니다",
                f"the upload is {human(upload)}, more than the {human(lim.max_upload)} limit",
                413)
        made = self.count(course, learner, assignment)
        if made >= lim.max_submissions:
            raise refusal(
                f"이 과제는 {lim.max_submissions}번까지 제출할 수 있습니다(이미 {made}번 제출함)",
                f"at most {lim.max_submissions} submissions per assignment (you have made "
                f"{made})", 429)
        left = lim.quota_per_learner - self.usage(course, learner)
        if left <= 0 or (upload is not None and upload > left):
            raise over_quota(lim.quota_per_learner, left, upload)
        return left

    def _lock(self, course: str, learner: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((course, learner), threading.Lock())

    def submit(self, course: str, learner: str, assignment: str,
               data: bytes | BinaryIO) -> Submission:
        """Store one submission (a tar.gz holding a notebook) whole, or nothing at all. One
        learner's submissions to a course are stored one at a time, so two at once cannot
        both fit in the same quota."""
        fileobj = io.BytesIO(data) if isinstance(data, bytes) else data
        size = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(0)
        lim = self.limits
        with self._lock(course, learner):
            left = self.check_room(course, learner, assignment, size)
            incoming = self.course_dir(course) / ".incoming"
            incoming.mkdir(parents=True, exist_ok=True)
            tmp = incoming / secrets.token_hex(8)
            tmp.mkdir()
            try:
                names = safe_extract(fileobj, tmp, max_entries=lim.max_entries,
                                     max_unpacked=lim.max_unpacked, room=left,
                                     quota=lim.quota_per_learner)
                if not any(n.endswith(".ipynb") for n in names):
                    raise refusal("제출물에 노트북이 없습니다", "the submission holds no notebook",
                                  400)
                # The time that counts (lateness) is the exchange's, not the learner's clock.
                claimed = tmp / "timestamp.txt"
                if claimed.exists():
                    claimed.rename(tmp / "learner_timestamp.txt")
                timestamp = receipt_time()
                with open(tmp / "timestamp.txt", "w") as fh:
                    fh.write(timestamp)
                    fh.flush()
                    os.fsync(fh.fileno())
                _fsync_dir(tmp)
                base = self.course_dir(course) / "inbound" / learner / assignment
                base.mkdir(parents=True, exist_ok=True)
                final = base / f"{_safe_ts(timestamp)}+{secrets.token_hex(4)}"
                tmp.rename(final)
                _fsync_dir(base)
                _fsync_dir(incoming)
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                if e.errno == 28:
                    raise disk_full() from None
                raise
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
                     html_files: list[Path], score: Score | None = None) -> None:
        """One submission's feedback, whole, with its score when the grader sent one: a
        learner sees their score once the staff return feedback, not before."""
        dest = (self.course_dir(course) / "feedback" / check_name("learner", learner) /
                check_name("assignment", assignment) / _safe_ts(timestamp))
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        for f in html_files:
            shutil.copy(f, tmp / f.name)
        if score is not None:
            (tmp / SCORE_FILE).write_text(json.dumps(
                {"score": score.score, "max_score": score.max_score, "timestamp": timestamp}))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)

    def scores(self, course: str, learner: str = "*") -> dict[tuple[str, str], Score]:
        """{(learner, assignment): score} from each learner's latest returned feedback."""
        out: dict[tuple[str, str], Score] = {}
        root = self.course_dir(course) / "feedback"
        for f in sorted(root.glob(f"{learner}/*/*/{SCORE_FILE}")):
            if f.parent.name.startswith("."):
                continue
            try:
                got = Score.parse(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue
            out[(f.parent.parent.parent.name, f.parent.parent.name)] = got  # latest wins
        return out

    def feedback_for(self, course: str, learner: str) -> list[tuple[str, str, Path]]:
        """(assignment, timestamp folder, html file) of this learner's feedback only."""
        root = self.course_dir(course) / "feedback" / check_name("learner", learner)
        return [(p.parent.parent.name, p.parent.name, p) for p in sorted(root.glob("*/*/*.html"))
                if not p.parent.name.startswith(".")]


def receipt_time() -> str:
    """Now, in nbgrader's timestamp format, UTC."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _safe_ts(timestamp: str) -> str:
    """A timestamp as a folder name: nbgrader's '2026-12-01 10:00:00.123456 UTC' keeps its
    digits and separators, anything else becomes '_'."""
    return re.sub(r"[^0-9A-Za-z._:-]", "_", timestamp.strip())[:64] or "unknown"
