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
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Self

from onelab.errors import OneLabError
from onelab.settings import GradingLimits

Echo = Callable[[str], None]


@dataclass
class Options:
    """A grading run: the image and the one limits model (onelab.settings.GradingLimits)."""

    image: str
    limits: GradingLimits = field(default_factory=GradingLimits)
    run: str = ""  # set by grade(): labels this run's containers

    @classmethod
    def from_settings(cls, grading: GradingLimits, image: str, **overrides: Any) -> Options:
        """The sandbox of settings.grading, with command-line overrides (None: not given)."""
        return cls(image=image, limits=grading.limits(**overrides))


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
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    from graders import hook

    cfg_file = course_dir / "nbgrader_config.py"
    config = Config()
    if cfg_file.exists():
        config.merge(PyFileConfigLoader(cfg_file.name, str(course_dir)).load_config())
    config.CourseDirectory.root = str(course_dir)
    if opts is not None:
        hook.apply(config, opts)
    return config


def nbgrader_api(course_dir: Path) -> Any:
    """nbgrader's API on a course directory with its own config (no sandbox swap)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(course_dir)
    return NbGraderAPI(CourseDirectory(config=config), config=config)


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
              log_dir: str, more: bool = False) -> dict[str, Any]:
    """Worker: nbgrader's Autograde for one student, execution sandboxed. Runs in a child."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    started = time.monotonic()
    course = Path(course_dir)
    config = nbgrader_config(course, opts)
    reports = Path(log_dir) / "reports"
    config.SandboxedExecute.report_dir = str(reports)
    # more submissions coming to this worker: boot the next container while this one runs
    config.SandboxedExecute.prestart = more
    if _SLOT is not None and opts.limits.cpus <= 1:
        # each worker gets its own core: a hard CPU limit that never throttles mid-burst
        config.SandboxedExecute.cpuset = str(_SLOT % (os.cpu_count() or 1))
    unreadable = stage_unreadable(course, assignment, student)
    if unreadable:
        config.CourseDirectory.submitted_directory = STAGED
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
    notes = [] if result.get("success") else [root_error(result)]
    notes += [f"{nb}: {why}" for nb, why in unreadable.items()]
    for rep in sorted((reports / student).glob("*.json")):
        info = json.loads(rep.read_text())
        if info["status"] != "ok":
            notes.append(f"{rep.stem}: {info['reason']}")
    return {"student": student, "success": bool(result.get("success")),
            "error": [],
            "seconds": time.monotonic() - started, "notes": notes}


STAGED = ".onelab/staged"
UNREADABLE = ("OneLab could not read this notebook, so it was graded as blank: {why}. "
              "The file you submitted is kept unchanged.")
UNREADABLE_KO = ("제출한 노트북 파일을 읽을 수 없어 빈 답안으로 채점했습니다: {why}. "
                 "제출한 파일은 바뀌지 않고 그대로 보관되어 있습니다.")


def unreadable_reason(path: Path) -> str | None:
    """Why nbformat cannot read this notebook, or None when it can."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - anything that stops nbgrader reading it
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "JSON" in type(e).__name__ or "json" in text.lower() or isinstance(e, ValueError):
            return f"the file is not valid notebook JSON ({text[:160]})"
        return f"the notebook does not follow the notebook format ({text[:160]})"
    return None


def stage_unreadable(course: Path, assignment: str, student: str) -> dict[str, str]:
    """When some notebook of a submission cannot be read, grade a staged copy instead.

    nbgrader would stop at the unreadable file, leaving no graded notebook and so no feedback.
    The staged copy keeps the submission's other files and timestamp, and puts in place of
    each unreadable notebook the released one (no answers) with the reason at the top and a
    flag that makes the sandbox skip running it: every test earns nothing and says why.
    The submitted files themselves are never touched. Returns {notebook: reason}.
    """
    import shutil

    import nbformat

    sub = course / "submitted" / student / assignment
    bad = {p.name: why for p in sorted(sub.glob("*.ipynb"))
           if (why := unreadable_reason(p)) is not None}
    staged = course / STAGED / student / assignment
    if staged.exists():
        shutil.rmtree(staged)
    if not bad:
        return {}
    shutil.copytree(sub, staged, symlinks=True)
    for name, why in bad.items():
        nb = _blank_notebook(course, assignment, name)
        nb.metadata["onelab"] = {"unreadable": why}
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"**{UNREADABLE_KO.format(why=why)}**\n\n*{UNREADABLE.format(why=why)}*"))
        nbformat.write(nb, str(staged / name))
    return {n: f"graded as blank: {why}" for n, why in bad.items()}


def _blank_notebook(course: Path, assignment: str, name: str) -> Any:
    """The notebook as released to learners: release/ if there, else source/ with every
    solution emptied (never the instructor's answers in a learner's feedback)."""
    import nbformat
    from nbgrader.utils import is_solution

    release = course / "release" / assignment / name
    if release.exists():
        return nbformat.read(str(release), as_version=4)
    source = course / "source" / assignment / name
    if not source.exists():
        return nbformat.v4.new_notebook()
    nb = nbformat.read(str(source), as_version=4)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = ""
    return nb


def root_error(result: dict[str, Any]) -> str:
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
    import nbgrader.apps
    import nbgrader.preprocessors  # noqa: F401

    opts = replace(opts, run=secrets.token_hex(6))
    ctx = get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(ctx.Value("i", 0),)) as pool:
        futures = {pool.submit(grade_one, str(course_dir), assignment, s, opts, str(log_dir),
                               i + workers < len(todo)): s
                   for i, s in enumerate(todo)}
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
    _wait_for_containers(opts.run)
    final = scores(course_dir, assignment)
    for s, o in outcomes.items():
        if s in final:
            o.score, o.max_score = final[s]
    result = [outcomes[s] for s in sorted(outcomes)]
    _summary(result, time.monotonic() - t0, echo)
    return result


def _wait_for_containers(run: str, patience: float = 20.0) -> None:
    """A worker's spare container ends by itself once the worker is gone; wait for that, and
    remove any that does not, so a finished run leaves nothing behind."""
    from graders.sandbox import RUN_LABEL
    from onelab import dockerdoor

    until = time.monotonic() + patience
    while dockerdoor.containers("grader", **{RUN_LABEL: run}):
        if time.monotonic() > until:
            dockerdoor.remove_containers("grader", **{RUN_LABEL: run})
            break
        time.sleep(0.2)


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
        self.total, self.enabled = total, enabled and total > 0
        self._p: Any = None  # rich's Progress, imported only when shown

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            bar = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.description}"), transient=True)
            bar.start()
            self._task = bar.add_task("", total=self.total)
            self._p = bar
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
