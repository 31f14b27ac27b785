"""`onelab grade`: autograde a class in parallel, each submission in its own sandbox.

Works on any standard nbgrader course directory (nbgrader_config.py, source/, submitted/) and
leaves autograded/ and gradebook.db as `nbgrader autograde` would. One worker process per
submission at a time (default: one per core); a submission already graded from the same
submitted timestamp is skipped unless forced; one log per submission in
<course>/.onelab/grade-logs/<assignment>/.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from onelab.errors import OneLabError

Echo = Callable[[str], None]


@dataclass
class Options:
    image: str
    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 128
    scratch: str = "64m"
    cell_timeout: int = 60
    notebook_timeout: int = 600
    max_output_bytes: int = 2_000_000


@dataclass
class Outcome:
    student: str
    status: str  # graded | skipped | failed
    score: float | None = None
    max_score: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def nbgrader_config(course_dir: Path, opts: Options | None = None) -> Any:
    """The course's own nbgrader config, with execution swapped for the sandbox."""
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern,
                                        LimitOutput, SaveAutoGrades)
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    from nbgrader.preprocessors import (ClearOutput, DeduplicateIds, OverwriteCells,
                                        OverwriteKernelspec)

    from graders.preprocessor import RestoreSourceMetadata, SandboxedExecute

    cfg_file = course_dir / "nbgrader_config.py"
    config = Config()
    if cfg_file.exists():
        config.merge(PyFileConfigLoader(cfg_file.name, str(course_dir)).load_config())
    config.CourseDirectory.root = str(course_dir)
    if opts is not None:
        config.Autograde.sanitize_preprocessors = [
            ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoreSourceMetadata,
            OverwriteCells, CheckCellMetadata]
        config.Autograde.autograde_preprocessors = [
            SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
            SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        for k, v in asdict(opts).items():
            setattr(config.SandboxedExecute, k, v)
    return config


def submissions(course_dir: Path, assignment: str) -> list[str]:
    root = course_dir / "submitted"
    if not root.is_dir():
        raise OneLabError(f"{course_dir} has no submitted/ directory: is it an nbgrader course "
                          "directory?")
    return sorted(p.parent.name for p in root.glob(f"*/{assignment}") if p.is_dir())


def _timestamp(d: Path) -> str | None:
    try:
        return (d / "timestamp.txt").read_text().strip()
    except OSError:
        return None


def up_to_date(course_dir: Path, assignment: str, student: str) -> bool:
    sub = course_dir / "submitted" / student / assignment
    done = course_dir / "autograded" / student / assignment
    return done.is_dir() and _timestamp(done) == _timestamp(sub) and any(done.glob("*.ipynb"))


_SLOT: int | None = None


def _init_worker(counter: Any) -> None:
    global _SLOT
    with counter.get_lock():
        _SLOT = counter.value
        counter.value += 1


_RETRYABLE = ("database is locked", "UNIQUE constraint failed")


def grade_one(course_dir: str, assignment: str, student: str, opts: Options,
              log_dir: str) -> dict[str, Any]:
    """Worker: nbgrader's Autograde for one student, execution sandboxed. Runs in a child."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    started = time.monotonic()
    course = Path(course_dir)
    opts_cfg = Options(**asdict(opts))
    config = nbgrader_config(course, opts_cfg)
    reports = Path(log_dir) / "reports"
    config.SandboxedExecute.report_dir = str(reports)
    if _SLOT is not None and opts.cpus <= 1:
        # each worker gets its own core: a hard CPU limit that never throttles mid-burst
        config.SandboxedExecute.cpuset = str(_SLOT % (os.cpu_count() or 1))
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    result: dict[str, Any] = {}
    for attempt in range(3):  # the gradebook is SQLite shared by workers: races are retried
        result = api.autograde(assignment, student, force=True, create=True)
        err = str(result.get("error", ""))
        if result.get("success") or not any(m in err for m in _RETRYABLE):
            break
        time.sleep(1 + attempt)
    log = Path(log_dir) / f"{student}.log"
    log.write_text((result.get("log") or "") + ("\n" + result["error"] if result.get("error")
                                                 else ""))
    notes = [] if result.get("success") else [_root_error(result)]
    for rep in sorted((reports / student).glob("*.json")):
        info = json.loads(rep.read_text())
        if info["status"] != "ok":
            notes.append(f"{rep.stem}: {info['reason']}")
    return {"student": student, "success": bool(result.get("success")),
            "error": [],
            "seconds": time.monotonic() - started, "notes": notes}


def _root_error(result: dict[str, Any]) -> str:
    """The first real error in nbgrader's log (not its generic 'see the traceback' line)."""
    text = (result.get("log") or "") + "\n" + (result.get("error") or "")
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Entry)): (.+)$", line)
        if m and m.group(1) not in ("NbGraderException",):
            kind, what = m.groups()
            if kind == "JSONDecodeError" or "NotJSONError" in kind:
                return f"the notebook is not valid JSON ({what[:120]})"
            return f"{kind}: {what[:200]}"
    return "nbgrader could not grade this submission (see its log)"


def scores(course_dir: Path, assignment: str) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    config = nbgrader_config(course_dir)
    from nbgrader.coursedir import CourseDirectory

    db_url = CourseDirectory(config=config).db_url
    out = {}
    with Gradebook(db_url) as gb:
        for sub in gb.assignment_submissions(assignment):
            out[sub.student_id] = (sub.score, sub.max_score)
    return out


def grade(course_dir: Path, assignment: str, opts: Options, students: list[str] | None = None,
          workers: int | None = None, force: bool = False, echo: Echo = print,
          progress: bool = True) -> list[Outcome]:
    course_dir = course_dir.resolve()
    if not (course_dir / "source" / assignment).is_dir() and not (
            course_dir / "gradebook.db").exists():
        raise OneLabError(f"no assignment {assignment!r} in {course_dir}/source and no gradebook")
    found = submissions(course_dir, assignment)
    if students:
        missing = sorted(set(students) - set(found))
        if missing:
            raise OneLabError(f"no submission of {assignment} from {', '.join(missing)} in "
                              f"{course_dir}/submitted")
        found = [s for s in found if s in students]
    todo = [s for s in found if force or not up_to_date(course_dir, assignment, s)]
    outcomes = {s: Outcome(s, "skipped") for s in found if s not in todo}
    log_dir = course_dir / ".onelab" / "grade-logs" / assignment
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, workers or os.cpu_count() or 1)
    echo(f"grading {len(todo)} submission(s) of {assignment} with {workers} worker(s) in "
         f"{opts.image} ({len(outcomes)} already graded{'' if not outcomes else ', skipped'})")
    if todo:
        _prepare_gradebook(course_dir, assignment)
    t0 = time.monotonic()
    # Workers are forked after nbgrader is imported here, so none pays for the import again
    # (a second or two each); the progress bar starts only after the fork.
    import nbgrader.apps  # noqa: F401
    import nbgrader.preprocessors  # noqa: F401

    ctx = get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(ctx.Value("i", 0),)) as pool:
        futures = {pool.submit(grade_one, str(course_dir), assignment, s, opts, str(log_dir)): s
                   for s in todo}
        with _Progress(len(todo), progress) as bar:
            for fut in as_completed(futures):
                s = futures[fut]
                try:
                    r = fut.result()
                    status = "graded" if r["success"] else "failed"
                    outcomes[s] = Outcome(s, status, seconds=r["seconds"], notes=r["notes"])
                except Exception as e:  # noqa: BLE001 - one submission never stops the others
                    outcomes[s] = Outcome(s, "failed", notes=[f"{type(e).__name__}: {e}"])
                bar.advance(s)
    final = scores(course_dir, assignment)
    for s, o in outcomes.items():
        if s in final:
            o.score, o.max_score = final[s]
    result = [outcomes[s] for s in sorted(outcomes)]
    _summary(result, time.monotonic() - t0, echo)
    return result


def _prepare_gradebook(course_dir: Path, assignment: str) -> None:
    """Create the gradebook's tables once, before workers race to create them."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=nbgrader_config(course_dir))
    with Gradebook(cd.db_url, cd.course_id) as gb:  # creates the course row before the race
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise OneLabError(f"assignment {assignment} is not in the gradebook: run "
                              f"`nbgrader generate_assignment {assignment}` first") from None


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self._p = total, enabled and total > 0, None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._p = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.description}"), transient=True)
            self._p.start()
            self._task = self._p.add_task("", total=self.total)
        return self

    def advance(self, student: str) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, description=student)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()


def _summary(outcomes: list[Outcome], wall: float, echo: Echo) -> None:
    echo(f"{'student':<20} {'status':<8} {'score':>12} {'time':>7}  notes")
    for o in outcomes:
        score = "" if o.score is None else f"{o.score:g} / {o.max_score:g}"
        t = f"{o.seconds:.1f}s" if o.seconds else ""
        echo(f"{o.student:<20} {o.status:<8} {score:>12} {t:>7}  {'; '.join(o.notes)[:200]}")
    graded = sum(o.status == "graded" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    echo(f"{graded} graded, {failed} failed, {len(outcomes) - graded - failed} skipped in "
         f"{wall:.1f} s")
