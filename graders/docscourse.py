"""nbgrader's own documentation course as a class: ps1 of its user guide, N learners.

The files ship inside the installed nbgrader package (docs/source/user_guide): source/ps1
(problem1.ipynb, problem2.ipynb, jupyter.png) and two example submissions, bitdiddle's and
hacker's, each with its timestamp. `onelab bench grade --course nbgrader-docs` grades this
class, so anyone can compare against a course nbgrader itself publishes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from graders.democlass import generate

ASSIGNMENT = "ps1"
COURSE_ID = "nbgrader-docs"


def docs_dir() -> Path:
    import nbgrader

    return Path(nbgrader.__file__).parent / "docs" / "source" / "user_guide"


def examples() -> list[str]:
    """The shipped example learners (bitdiddle, hacker), in name order."""
    return sorted(p.parent.name for p in (docs_dir() / "submitted").glob(f"*/{ASSIGNMENT}"))


def make_course(root: Path) -> Path:
    """A course directory with the docs' ps1 in source/, generated (gradebook filled)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = {COURSE_ID!r}\n")
    shutil.copytree(docs_dir() / "source" / ASSIGNMENT, root / "source" / ASSIGNMENT,
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return generate(root, ASSIGNMENT)


def make_class(root: Path, size: int) -> Path:
    """The course with `size` learners s001.. whose submissions are the shipped examples in
    turn (bitdiddle, hacker, bitdiddle, ...), files and timestamps as shipped."""
    make_course(root)
    kinds = examples()
    if not kinds:
        raise RuntimeError(f"no example submissions of {ASSIGNMENT} in {docs_dir()}/submitted")
    for i in range(size):
        shutil.copytree(docs_dir() / "submitted" / kinds[i % len(kinds)] / ASSIGNMENT,
                        root / "submitted" / f"s{i + 1:03d}" / ASSIGNMENT)
    return root
