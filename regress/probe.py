"""The always-equal probe: a submission whose answers are objects that equal anything.

Each solution cell of the released notebook is replaced by the cell's imports and by binding
every name the solution cell defines at top level (variables, functions, classes) to an
always-equal object (`regress/sycophant.py`). The solution code itself does not run: a test
that passed because the real solution had a side effect (a model trained in place) would
otherwise be reported as fooled. Graded like any submission, a test cell that still earns
points checks how the answer compares, not what it is: a learner's fake could pass it too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import nbformat

SYCOPHANT = (Path(__file__).with_name("sycophant.py")).read_text(encoding="utf-8")
PROBE_CLASS = "_OneLabAlwaysEqual"
HINT = ("these tests pass when the answer is an object whose comparisons always succeed "
        "(`==`, `<`, `np.allclose`, `torch.equal` all say yes); check what the answer is "
        "before comparing it: `float(x) == 42.0`, `type(x) is int`, `isinstance(x, "
        "torch.Tensor)`, `np.allclose(np.asarray(x, dtype=float), expected)`")


@dataclass
class Fooled:
    """A test cell the probe passed."""

    notebook: str  # file name
    grade_id: str
    points: float


def bound_names(source: str) -> tuple[list[str], list[str]]:
    """(names the cell binds at top level, its import statements as code).

    Names bound inside functions, classes, lambdas and comprehensions are local; attribute and
    item targets (`self.x =`, `df["a"] =`) bind no name. Raises SyntaxError.
    """
    tree = ast.parse(_python(source))
    names: list[str] = []
    imports: list[str] = []
    scopes = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(child.name)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                imports.append(ast.unparse(child))
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                names.append(child.id)
            elif not isinstance(child, scopes):
                visit(child)

    visit(tree)
    return list(dict.fromkeys(names)), imports


def _python(source: str) -> str:
    """The cell as IPython runs it (magics become calls), so `ast` can read it."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # not installed on this host: drop magic lines instead
        return "\n".join("" if line.lstrip()[:1] in ("%", "!") else line
                         for line in source.splitlines())
    return TransformerManager().transform_cell(source)


def probe_cell(source: str) -> str:
    """The code that stands in for one solution cell's answer."""
    names, imports = bound_names(source)
    lines = ["# OneLab regress: every name this cell defines is an always-equal object",
             *imports, SYCOPHANT]
    if names:
        lines.append(" = ".join(names) + f" = {PROBE_CLASS}()")
    return "\n".join(lines) + "\n"


def probe_notebook(released: Path, source: Path) -> tuple[nbformat.NotebookNode, list[str]]:
    """The released notebook with every solution cell answered by the probe, and the cells
    that could not be (left as released, each with why).

    Solution cells are matched to the source notebook by grade_id; their answer names come
    from the source (the released cell may define nothing, e.g. a top-level solution region).
    """
    nb = nbformat.read(str(released), as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source
                 for c in nbformat.read(str(source), as_version=4).cells
                 if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get(
                     "solution")}
    skipped = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if cell.cell_type == "code" and meta.get("solution") and gid in solutions:
            try:
                cell.source = probe_cell(solutions[gid])
            except SyntaxError as e:
                skipped.append(f"{released.name} cell {gid!r} left as released: its solution "
                               f"cannot be parsed ({e.msg}, line {e.lineno})")
    return nb, skipped


def autograder_tests(nb: nbformat.NotebookNode) -> list[str]:
    """grade_ids of the autograder test cells (graded code cells that are not answers)."""
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]
