"""`onelab bench grade`: the same class graded by stock `nbgrader autograde` and by OneLab.

Stock nbgrader runs every notebook one after another in kernels on this host; OneLab runs each
submission in its own container, in parallel. Prints both wall times, their ratio and whether
every score agrees (per student and per graded cell). The class is OneLab's generated demo
class (graders/democlass.py) or nbgrader's own documentation course (graders/docscourse.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graders import democlass, docscourse
from graders.grade import Options, grade, scores
from onelab.errors import OneLabError

COURSES = ("demo", "nbgrader-docs")


def make_class(course: str, root: Path, students: int, flavour: str = "python") -> str:
    """Build the named bench class in root; returns its assignment. "demo" is OneLab's own
    generated class (flavour python or torch), "nbgrader-docs" the ps1 of nbgrader's docs."""
    if course == "demo":
        democlass.make_class(root, students, flavour)
        return democlass.ASSIGNMENT
    if course == "nbgrader-docs":
        if flavour != "python":
            raise OneLabError("--flavour chooses the demo course's exercises; the nbgrader-docs "
                              "course is nbgrader's own ps1 as shipped")
        docscourse.make_class(root, students)
        return docscourse.ASSIGNMENT
    raise OneLabError(f"no bench course {course!r} (choose from {', '.join(COURSES)})")


def cell_scores(course: Path, assignment: str = democlass.ASSIGNMENT
                ) -> dict[tuple[str, str, str], float | None]:
    """Every grade in the gradebook, by student, notebook and cell (None: left for a human)."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            for nb in sub.notebooks:
                for g in nb.grades:
                    out[(sub.student_id, nb.name, g.name)] = g.score
    return out


def stock_autograde(course: Path, assignment: str = democlass.ASSIGNMENT) -> float:
    """Run stock `nbgrader autograde` on the course, as an instructor would; returns seconds."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    t0 = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde",
                           assignment, "--force"], check=False, cwd=course, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or "Traceback" in proc.stdout:
        raise OneLabError(f"stock nbgrader failed: {(proc.stdout + proc.stderr)[-500:]}")
    return time.monotonic() - t0


def bench_grade(image: str, students: int = 20, workers: int | None = None,
                flavour: str = "python", course: str = "demo", keep: Path | None = None,
                echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Grade one class both ways; keep: a folder to leave both graded courses in (ours/,
    stock/), with OneLab's per-submission timelines under ours/.onelab/grade-logs/."""
    if flavour == "torch":
        try:
            import torch  # noqa: F401 - stock nbgrader's kernels run on this host
        except ImportError:
            raise OneLabError("stock nbgrader runs the torch class on this host: install torch "
                              "into .venv first (.venv/bin/pip install torch==2.13.0)") from None
    if keep is not None and any(p.exists() for p in (keep / "ours", keep / "stock")):
        raise OneLabError(f"{keep} already holds a bench class (ours/ or stock/): choose "
                          "another folder")
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="onelab-bench-") as tmp:
        base = keep or Path(tmp)
        ours = base / "ours"
        assignment = make_class(course, ours, students, flavour)
        notebooks = len(list(ours.glob(f"submitted/*/{assignment}/*.ipynb")))
        stock = base / "stock"
        shutil.copytree(ours, stock)
        t_stock = stock_autograde(stock, assignment)
        t0 = time.monotonic()
        grade(ours, assignment, Options(image=image), workers=workers,
              echo=lambda _: None, progress=False)
        t_ours = time.monotonic() - t0
        s_stock, s_ours = scores(stock, assignment), scores(ours, assignment)
        agree = (len(s_ours) == students and s_stock == s_ours
                 and cell_scores(stock, assignment) == cell_scores(ours, assignment))
    result = {"course": course, "students": students, "notebooks": notebooks,
              "flavour": flavour, "workers": workers,
              "stock_s": round(t_stock, 1), "onelab_s": round(t_ours, 1),
              "ratio": round(t_ours / t_stock, 2), "scores_agree": agree}
    what = "" if course == "demo" else f" --course {course}"
    what += "" if flavour == "python" else f" --flavour {flavour}"
    echo(f"onelab bench grade{what} --students {students}   "
         f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, image {image})")
    echo(f"  {notebooks} notebooks ({students} submissions of {assignment})")
    echo(f"  stock nbgrader autograde   {t_stock:7.1f} s   (one after another, on the host)")
    echo(f"  onelab grade               {t_ours:7.1f} s   ({workers} workers, a container each)")
    echo(f"  ratio                      {t_ours / t_stock:7.2f}   (target: at most 0.50)")
    echo(f"  scores agree               {'yes' if agree else 'NO'}"
         f"   (every student, every graded cell)")
    if keep is not None:
        echo(f"  graded courses kept in     {keep}/ours and {keep}/stock")
    if not agree:
        raise OneLabError("scores differ between stock nbgrader and onelab grade")
    return result
