"""Assignment QA: the nbgrader metadata is sound, the solution earns full marks and the
released version earns zero without crashing the grader, both graded by `onelab grade`."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from graders.grade import Options, grade, nbgrader_api, root_error
from onelab.course import Course

SOLUTION, RELEASED = "qa-solution", "qa-released"
TIMESTAMP = "2026-01-01 00:00:00.000000 UTC"


@dataclass
class QA:
    assignment: str  # course/assignment
    solution: tuple[float, float] | None = None  # (score, max)
    released: tuple[float, float] | None = None
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def metadata_problems(label: str, nb: nbformat.NotebookNode) -> list[str]:
    """nbgrader metadata mistakes, each with its cell: nbgrader's own messages name neither."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(nb.cells, start=1):
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta:
            continue
        gid = meta.get("grade_id")
        where = f"{label} cell {i}" + (f" (grade_id {gid!r})" if gid else "")
        if not gid:
            out.append(f"{where}: nbgrader cell without a grade_id")
            continue
        if gid in seen:
            out.append(f"{where}: duplicate grade_id (also cell {seen[gid]})")
        seen.setdefault(gid, i)
        if meta.get("grade"):
            pts = meta.get("points")
            if not isinstance(pts, (int, float)) or isinstance(pts, bool) or pts <= 0:
                out.append(f"{where}: graded cell without positive points (points: {pts!r})")
            if cell.cell_type == "code" and not meta.get("solution") and not meta.get("locked"):
                out.append(f"{where}: test cell is not locked (learners could edit the test)")
        if meta.get("solution") and cell.cell_type == "code" and (
                "### BEGIN SOLUTION" not in cell.source):
            out.append(f"{where}: solution cell without ### BEGIN SOLUTION / ### END SOLUTION")
    if not any(c.get("metadata", {}).get("nbgrader", {}).get("grade") for c in nb.cells):
        out.append(f"{label}: no graded cell, so nothing to autograde")
    return out


def check_assignment(course: Course, assignment: str, image: str, opts: Options,
                     workers: int = 2) -> QA:
    """Release the assignment in a scratch nbgrader course; grade the solution and the release."""
    import time

    label = f"{course.id}/{assignment}"
    qa = QA(label)
    started = time.monotonic()
    for path in course.notebooks(assignment):
        qa.problems += metadata_problems(f"{label}/{path.name}",
                                         nbformat.read(str(path), as_version=4))
    if qa.problems:
        return qa
    with tempfile.TemporaryDirectory(prefix="onelab-qa-") as tmp:
        root = Path(tmp) / course.id
        (root / "source").mkdir(parents=True)
        shutil.copytree(course.source_dir(assignment), root / "source" / assignment,
                        ignore=shutil.ignore_patterns(".*"))
        (root / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.CourseDirectory.course_id = {course.id!r}\n")
        err = _generate(root, assignment)
        if err:
            qa.problems.append(f"{label}: nbgrader generate_assignment failed: {err}")
            return qa
        for student, src in ((SOLUTION, root / "source" / assignment),
                             (RELEASED, root / "release" / assignment)):
            dest = root / "submitted" / student / assignment
            shutil.copytree(src, dest)
            (dest / "timestamp.txt").write_text(TIMESTAMP)
        outcomes = {o.student: o for o in grade(root, assignment, opts, workers=workers,
                                                 force=True, echo=lambda _: None,
                                                 progress=False)}
    for student, attr in ((SOLUTION, "solution"), (RELEASED, "released")):
        o = outcomes.get(student)
        if o is None or o.status != "graded" or o.score is None:
            notes = "; ".join(o.notes) if o else "not graded"
            qa.problems.append(f"{label}: the {attr} version could not be graded: {notes}")
            continue
        setattr(qa, attr, (o.score, o.max_score))
        if o.notes:
            qa.problems.append(f"{label}: grading the {attr} version: {'; '.join(o.notes)}")
    if qa.solution and qa.solution[0] != qa.solution[1]:
        qa.problems.append(f"{label}: the solution earns {qa.solution[0]:g} of "
                           f"{qa.solution[1]:g} points, not full marks")
    if qa.released and qa.released[0] != 0:
        qa.problems.append(f"{label}: the released version earns {qa.released[0]:g} points "
                           "without any answer: some test passes on its own")
    qa.seconds = time.monotonic() - started
    return qa


def _generate(root: Path, assignment: str) -> str:
    """nbgrader's generate_assignment (in-process); its error, or '' when it worked."""
    result = nbgrader_api(root).generate_assignment(assignment, force=True)
    return "" if result.get("success") else root_error(result)
