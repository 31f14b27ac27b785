"""A tiny course written on the fly: one assignment that trains a least-squares line in numpy.

Small enough to run in seconds, real enough to exercise papermill parameters, metrics,
thresholds and nbgrader grading; tests break it on purpose.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

COURSE, ASSIGNMENT, NOTEBOOK = "mini", "01-line", "line.ipynb"


def _nbg(gid: str, *, solution=False, grade=False, locked=False, points=0) -> dict:
    m = {"grade_id": gid, "solution": solution, "grade": grade, "locked": locked,
         "schema_version": 3}
    if grade:
        m["points"] = points
    return {"nbgrader": m}


def notebook(extra: list[str] = ()) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        new_markdown_cell("# 직선 맞추기\n\n*EN: fitting a line*"),
        new_code_cell("N_SAMPLES = 200\nSEED = 0\nDEVICE = 'cpu'",
                      metadata={"tags": ["parameters"]}),
        new_code_cell("import numpy as np\nrng = np.random.default_rng(SEED)\n"
                      "x = rng.uniform(-1, 1, N_SAMPLES)\ny = 2 * x + 1 + 0.1 * rng.normal(size=N_SAMPLES)"),
        new_code_cell("def fit(x, y):\n    ### BEGIN SOLUTION\n    a, b = np.polyfit(x, y, 1)\n"
                      "    return a, b\n    ### END SOLUTION",
                      metadata=_nbg("fit", solution=True)),
        new_code_cell("a, b = fit(x, y)\nassert abs(a - 2) < 0.1",
                      metadata=_nbg("test_slope", grade=True, locked=True, points=2)),
        new_code_cell("a, b = fit(x, y)\nassert abs(b - 1) < 0.1\n### BEGIN HIDDEN TESTS\n"
                      "assert fit(np.array([0., 1.]), np.array([1., 3.]))[0] > 1.9\n"
                      "### END HIDDEN TESTS",
                      metadata=_nbg("test_intercept", grade=True, locked=True, points=3)),
        *[new_code_cell(code) for code in extra],
        new_code_cell("from IPython.display import JSON\n"
                      "mse = float(np.mean((a * x + b - y) ** 2))\nJSON({'mse': mse, 'n': N_SAMPLES})",
                      metadata={"tags": ["metrics"]}),
    ]
    return nb


def answer_notebook() -> nbformat.NotebookNode:
    """An assignment with two weak tests (an always-equal answer passes them) and two robust
    ones (they look at what the answer is before comparing it)."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [
        new_markdown_cell("# 답\n\n*EN: the answer*"),
        new_code_cell("N_SAMPLES = 300", metadata={"tags": ["parameters"]}),
        new_code_cell("### BEGIN SOLUTION\nanswer = 6 * 7\n\ndef pair():\n    return 6, 7\n"
                      "### END SOLUTION", metadata=_nbg("answer", solution=True)),
        new_code_cell("assert answer == 42", metadata=_nbg("test_weak", grade=True, locked=True,
                                                           points=1)),
        new_code_cell("a, b = pair()\nassert a * b == 42",
                      metadata=_nbg("test_pair", grade=True, locked=True, points=1)),
        new_code_cell("assert float(answer) == 42.0",
                      metadata=_nbg("test_float", grade=True, locked=True, points=1)),
        new_code_cell("assert isinstance(answer, int) and answer == 42",
                      metadata=_nbg("test_isinstance", grade=True, locked=True, points=1)),
        new_code_cell("from IPython.display import JSON\nJSON({'mse': 0.0, 'n': N_SAMPLES})",
                      metadata={"tags": ["metrics"]}),
    ]
    return nb


SPEC = """\
id: mini
title: {ko: 미니 과정, en: Mini course}
instructors: [instructor]
assignments:
  - id: 01-line
    title: {ko: 직선, en: A line}
    due: "2026-12-01T23:59:00+09:00"
    regress:
      parameters: {N_SAMPLES: 300}
      full: {N_SAMPLES: 5000}
      timeout: 120
      thresholds: {mse: "<= THRESHOLD", n: ">= 300"}
"""


def write(root: Path, extra: list[str] = (), threshold: str = "0.02",
          nb: nbformat.NotebookNode | None = None, name: str = NOTEBOOK,
          timeout: int = 120) -> Path:
    """courses/<mini>/ under `root` (the notebook saved as `name`, `timeout` the regression's
    per-cell time limit); returns the courses folder."""
    course = root / COURSE
    src = course / "source" / ASSIGNMENT
    src.mkdir(parents=True, exist_ok=True)
    spec = SPEC.replace("THRESHOLD", threshold).replace("timeout: 120", f"timeout: {timeout}")
    (course / "course.yml").write_text(spec, encoding="utf-8")
    nbformat.write(nb if nb is not None else notebook(list(extra)), str(src / name))
    return root
