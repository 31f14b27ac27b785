"""`onelab bench grade`: the same class graded by stock `nbgrader autograde` and by OneLab.

Stock nbgrader runs every notebook one after another in kernels on this host; OneLab runs each
submission in its own container, in parallel. Prints both wall times, their ratio and whether
every score agrees (per student and per test cell).
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

from graders import democlass
from graders.grade import Options, grade, scores
from onelab.errors import OneLabError


def cell_scores(course: Path) -> dict[tuple[str, str], float]:
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(democlass.ASSIGNMENT):
            for nb in sub.notebooks:
                for g in nb.grades:
                    out[(sub.student_id, g.name)] = g.score
    return out


def stock_autograde(course: Path) -> float:
    """Run stock `nbgrader autograde` on the course, as an instructor would; returns seconds."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    t0 = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde",
                           democlass.ASSIGNMENT, "--force"], cwd=course, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or "Traceback" in proc.stdout:
        raise OneLabError(f"stock nbgrader failed: {(proc.stdout + proc.stderr)[-500:]}")
    return time.monotonic() - t0


def bench_grade(image: str, students: int = 20, workers: int | None = None,
                flavour: str = "python", echo: Callable[[str], None] = print) -> dict[str, Any]:
    if flavour == "torch":
        try:
            import torch  # noqa: F401 - stock nbgrader's kernels run on this host
        except ImportError:
            raise OneLabError("stock nbgrader runs the torch class on this host: install torch "
                              "into .venv first (.venv/bin/pip install torch==2.13.0)") from None
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="onelab-bench-") as tmp:
        ours = democlass.make_class(Path(tmp) / "ours", students, flavour)
        stock = Path(tmp) / "stock"
        shutil.copytree(ours, stock)
        t_stock = stock_autograde(stock)
        t0 = time.monotonic()
        grade(ours, democlass.ASSIGNMENT, Options(image=image), workers=workers,
              echo=lambda _: None, progress=False)
        t_ours = time.monotonic() - t0
        s_stock, s_ours = scores(stock, democlass.ASSIGNMENT), scores(ours, democlass.ASSIGNMENT)
        agree = s_stock == s_ours and cell_scores(stock) == cell_scores(ours)
    result = {"students": students, "flavour": flavour, "workers": workers,
              "stock_s": round(t_stock, 1), "onelab_s": round(t_ours, 1),
              "ratio": round(t_ours / t_stock, 2), "scores_agree": agree}
    echo(f"onelab bench grade --students {students} --flavour {flavour}   "
         f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, image {image})")
    echo(f"  stock nbgrader autograde   {t_stock:7.1f} s   (one after another, on the host)")
    echo(f"  onelab grade               {t_ours:7.1f} s   ({workers} workers, a container each)")
    echo(f"  ratio                      {t_ours / t_stock:7.2f}   (target: at most 0.50)")
    echo(f"  scores agree               {'yes' if agree else 'NO'}")
    if not agree:
        raise OneLabError("scores differ between stock nbgrader and onelab grade")
    return result
