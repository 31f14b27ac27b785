"""`onelab regress`: run every course notebook, check its metrics and its grading; report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from graders.grade import Options
from onelab.course import Course
from onelab.settings import Settings
from regress.papermill_run import Run, run_notebook
from regress.qa import QA, check_assignment

Echo = Callable[[str], None]


@dataclass
class Entry:
    """One assignment's verdict: its notebooks' runs and its grading QA. Warnings (tests an
    always-equal answer passes) are reported but fail nothing unless the run is strict."""

    course: str
    assignment: str
    runs: list[Run] = field(default_factory=list)
    qa: QA | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class Regression:
    device: str
    full: bool
    image: dict[str, str]
    entries: list[Entry]
    seconds: float
    strict_tests: bool = False

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.entries)


def regress(courses: list[Course], settings: Settings, *, device: str = "cpu",
            full: bool = False, qa: bool = True, strict_tests: bool = False,
            workers: int | None = None, out_dir: Path | None = None,
            echo: Echo = print) -> Regression:
    """Run, check, and grade every assignment of `courses`; `strict_tests` makes a test that
    an always-equal answer passes a failure instead of a warning."""
    started = time.monotonic()
    workers = max(1, workers or os.cpu_count() or 1)
    if device == "cuda":  # from the learners' claims, given back after
        from hub.gpu.borrow import borrowed

        with borrowed(settings, "regress", "1") as gpus:
            return _regress(courses, settings, device, full, qa, strict_tests, workers,
                            out_dir, echo, started, gpus)
    return _regress(courses, settings, device, full, qa, strict_tests, workers, out_dir, echo,
                    started, "none")


def _regress(courses: list[Course], settings: Settings, device: str, full: bool, qa: bool,
             strict_tests: bool, workers: int, out_dir: Path | None, echo: Echo,
             started: float, gpus: str) -> Regression:
    from images.table import course_image, grading_image
    from onelab import dockerdoor

    # notebooks run where learners run them; grading QA grades as the course is graded
    images = {c.id: course_image(c.image, settings, gpu=device == "cuda") for c in courses}
    graders = {c.id: grading_image(settings, c.image, gpu=device == "cuda") for c in courses}
    for img in sorted(set(images.values()) | (set(graders.values()) if qa else set())):
        dockerdoor.require_image(img, "course image")
    entries = [Entry(c.id, a.id) for c in courses for a in c.assignments]
    by_key = {(e.course, e.assignment): e for e in entries}
    jobs = []
    for c in courses:
        for a in c.assignments:
            params = {**a.regress.parameters, **(a.regress.full if full else {}),
                      "DEVICE": device}
            for nb in c.notebooks(a.id):
                jobs.append((c, a, nb, params))
    echo(f"regress: {len(jobs)} notebook(s) in {len(courses)} course(s), device {device}"
         f"{', full run' if full else ', small run'}, {workers} at once")

    def one(job: tuple) -> tuple[tuple[str, str], Run]:
        c, a, nb, params = job
        label = f"{c.id}/{a.id}/{nb.name}"
        keep = out_dir / "notebooks" / c.id / a.id / nb.name if out_dir else None
        run = run_notebook(label, nb, images[c.id], params, timeout=a.regress.timeout,
                           gpus=gpus, keep=keep)
        if not run.problems:  # after an error, missing metrics would only repeat it
            cell = (f"cell {run.metrics_cell} (the `metrics` cell)" if run.metrics_cell
                    else "no cell tagged `metrics`")
            run.problems += [f"{label} {cell}: {p}" for p in a.regress.check(run.metrics)]
        verdict = "ok" if not run.problems else "FAILED"
        echo(f"  {verdict:<6} {label}  {run.seconds:.1f} s  "
             + " ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())))
        return (c.id, a.id), run

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for key, run in pool.map(one, jobs):
            by_key[key].runs.append(run)
            by_key[key].problems += run.problems
    if qa:
        echo("assignment QA: solution must earn full marks, the released version zero; "
             "tests an always-equal answer passes are " + ("failures" if strict_tests
                                                          else "reported"))
        for c in courses:
            for a in c.assignments:
                opts = Options.from_settings(
                    settings.grading, graders[c.id], memory="4G", gpus=gpus,
                    cell_timeout=a.regress.timeout, notebook_timeout=a.regress.timeout * 2)
                result = check_assignment(c, a.id, graders[c.id], opts, workers=workers)
                e = by_key[(c.id, a.id)]
                e.qa = result
                e.problems += result.problems
                weak = weak_tests(result)
                (e.problems if strict_tests else e.warnings).extend(weak)
                sol, rel, eq = (f"{s[0]:g}/{s[1]:g}" if s else "-" for s in (
                    result.solution, result.released, result.probe))
                verdict = "FAILED" if result.problems or (strict_tests and weak) else (
                    "weak" if weak else "ok")
                echo(f"  {verdict:<6} {c.id}/{a.id}  solution {sol}, released {rel}, "
                     f"always-equal {eq}  {result.seconds:.1f} s")
    return Regression(device, full, images, entries, time.monotonic() - started, strict_tests)


def weak_tests(qa: QA) -> list[str]:
    """One line per test cell the always-equal answer passed, and per gap in the probe."""
    return [f"{qa.assignment}: fooled by an always-equal answer: {f.grade_id} ({f.notebook})"
            for f in qa.fooled] + qa.probe_notes
