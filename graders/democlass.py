"""A small nbgrader class made on the spot: source, release and submissions.

Used by `onelab bench grade` and the grading tests, so both measure and check the same class.
Answers are filled in the released notebooks the way a learner would, right or wrong.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ASSIGNMENT = "ps1"
TIMESTAMP = "2026-11-24 09:00:00.000000 UTC"


def _meta(grade_id: str, *, solution: bool, grade: bool, points: float = 0,
          locked: bool = False) -> dict:
    m = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": locked,
         "schema_version": 3}
    if grade:
        m["points"] = points
    return {"nbgrader": m}


TORCH_CELLS = [
    ("md", "## 선형 회귀 · Linear regression with PyTorch\n`fit(X, y)`를 완성하세요.", None),
    ("data", "import torch\ntorch.manual_seed(0)\nX = torch.linspace(-1, 1, 256).unsqueeze(1)\n"
             "y = 3 * X + 0.5 + 0.05 * torch.randn_like(X)", None),
    ("fit", "def fit(X, y, steps=300, lr=0.1):\n    ### BEGIN SOLUTION\n"
            "    model = torch.nn.Linear(1, 1)\n"
            "    opt = torch.optim.SGD(model.parameters(), lr=lr)\n"
            "    for _ in range(steps):\n        opt.zero_grad()\n"
            "        loss = torch.nn.functional.mse_loss(model(X), y)\n"
            "        loss.backward()\n        opt.step()\n    return model\n"
            "    ### END SOLUTION", None),
    ("test_fit", "model = fit(X, y)\nw, b = model.weight.item(), model.bias.item()\n"
                 "assert abs(w - 3) < 0.1 and abs(b - 0.5) < 0.1", 4),
]


def source_notebook(flavour: str = "python") -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cells = [
        new_markdown_cell("# 연습 1 · Exercise 1\n`add(a, b)`와 `squares(n)`를 완성하세요.",
                          metadata=_meta("intro", solution=False, grade=False, locked=True)),
        new_code_cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n"
                      "    ### END SOLUTION", metadata=_meta("add", solution=True, grade=False)),
        new_code_cell("assert add(1, 2) == 3\nassert add(-1, 1) == 0",
                      metadata=_meta("test_add", solution=False, grade=True, points=2,
                                     locked=True)),
        new_code_cell("def squares(n):\n    ### BEGIN SOLUTION\n    return [i * i for i in "
                      "range(n)]\n    ### END SOLUTION",
                      metadata=_meta("squares", solution=True, grade=False)),
        new_code_cell("assert squares(4) == [0, 1, 4, 9]\nassert squares(0) == []",
                      metadata=_meta("test_squares", solution=False, grade=True, points=3,
                                     locked=True)),
        new_code_cell("import time\ntotal = sum(i * i for i in range(200_000))\n"
                      "assert total == sum(squares(200_000))",
                      metadata=_meta("test_squares_big", solution=False, grade=True, points=1,
                                     locked=True)),
    ]
    if flavour == "torch":
        for gid, src, points in TORCH_CELLS:
            if gid == "md":
                cells.append(new_markdown_cell(src))
            elif gid == "data":
                cells.append(new_code_cell(src, metadata=_meta(gid, solution=False, grade=False,
                                                               locked=True)))
            elif points is None:
                cells.append(new_code_cell(src, metadata=_meta(gid, solution=True, grade=False)))
            else:
                cells.append(new_code_cell(src, metadata=_meta(gid, solution=False, grade=True,
                                                               points=points, locked=True)))
    nb.cells = cells
    return nb


ANSWERS = {
    "right": {"add": "def add(a, b):\n    return a + b",
              "squares": "def squares(n):\n    return [i * i for i in range(n)]"},
    "half": {"add": "def add(a, b):\n    return a + b",
             "squares": "def squares(n):\n    return [i * 2 for i in range(n)]"},
    "wrong": {"add": "def add(a, b):\n    return a - b",
              "squares": "def squares(n):\n    return []"},
    "blank": {},
}
_FIT_RIGHT = TORCH_CELLS[2][1].replace("    ### BEGIN SOLUTION\n", "").replace(
    "\n    ### END SOLUTION", "")
ANSWERS["right"]["fit"] = _FIT_RIGHT
ANSWERS["half"]["fit"] = _FIT_RIGHT
ANSWERS["wrong"]["fit"] = "def fit(X, y, steps=300, lr=0.1):\n    return torch.nn.Linear(1, 1)"


def make_course(root: Path, flavour: str = "python") -> Path:
    """An nbgrader course directory with ps1 in source/ and release/ (gradebook made)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'demo'\n")
    src = root / "source" / ASSIGNMENT
    src.mkdir(parents=True, exist_ok=True)
    nbformat.write(source_notebook(flavour), src / "problem1.ipynb")
    (src / "data.txt").write_text("42\n")
    return generate(root, ASSIGNMENT)


def generate(root: Path, assignment: str) -> Path:
    """nbgrader's generate_assignment on a course directory: release/ and the gradebook."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    result = NbGraderAPI(CourseDirectory(config=config), config=config).generate_assignment(
        assignment, force=True, create=True)
    if not result["success"]:
        raise RuntimeError(f"generate_assignment failed: {result.get('error')}")
    return root


def released(root: Path) -> nbformat.NotebookNode:
    return nbformat.read(root / "release" / ASSIGNMENT / "problem1.ipynb", as_version=4)


def submit(root: Path, student: str, answers: dict[str, str],
           extra_cells: Sequence[tuple[int, str]] = (), nb: nbformat.NotebookNode | None = None,
           raw: str | None = None) -> Path:
    """Write submitted/<student>/ps1/ as a learner's submission: solution cells answered,
    optional extra cells inserted (index, code), or a raw notebook text (malformed on purpose)."""
    dest = root / "submitted" / student / ASSIGNMENT
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "timestamp.txt").write_text(TIMESTAMP)
    shutil.copy(root / "release" / ASSIGNMENT / "data.txt", dest / "data.txt")
    if raw is not None:
        (dest / "problem1.ipynb").write_text(raw)
        return dest
    nb = nb if nb is not None else released(root)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    for index, code in sorted(extra_cells, reverse=True):
        nb.cells.insert(index, new_code_cell(code))
    nbformat.write(nb, dest / "problem1.ipynb")
    return dest


def make_class(root: Path, size: int, flavour: str = "python") -> Path:
    """A class of `size` honest learners cycling through right, half, wrong and blank answers.
    flavour "torch" adds a PyTorch training exercise, as OneLab's courses have."""
    make_course(root, flavour)
    kinds = list(ANSWERS)
    for i in range(size):
        submit(root, f"s{i + 1:03d}", ANSWERS[kinds[i % len(kinds)]])
    return root
