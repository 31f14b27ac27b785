"""Assignment QA: the nbgrader metadata is sound, the solution earns full marks and the
released version earns zero without crashing the grader, both graded by `onelab grade`; and
which tests an always-equal answer passes (`regress/probe.py`), graded in the same run."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from graders.grade import Options, Outcome, grade, nbgrader_api, nbgrader_config, root_error
from onelab.course import Course
from regress.probe import Fooled, autograder_tests, probe_notebook

SOLUTION, RELEASED, PROBE = "qa-solution", "qa-released", "qa-probe"
TIMESTAMP = "2026-01-01 00:00:00.000000 UTC"


@dataclass
class QA:
    assignment: str  # course/assignment
    solution: tuple[float, float] | None = None  # (score, max)
    released: tuple[float, float] | None = None
    probe: tuple[float, float] | None = None  # the always-equal answer's score
    fooled: list[Fooled] = field(default_factory=list)  # test cells it passed
    probe_notes: list[str] = field(default_factory=list)  # why the probe saw less than all
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
                     workers: int = 2, probe: bool = True) -> QA:
    """Release the assignment in a scratch nbgrader course; grade the solution, the release
    and (with `probe`) the always-equal answer as three students of one grading run."""
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
        if probe:
            _submit_probe(root, assignment, qa)
        # One worker per QA student: all grade at once, and no worker pre-starts a spare
        # container for a next submission; waiting for spares to end races Docker's listing
        # (graders.grade._wait_for_containers: 404 for a container removed mid-list).
        students = 3 if probe else 2
        outcomes = {o.student: o for o in grade(root, assignment, opts,
                                                 workers=max(workers, students), force=True,
                                                 echo=lambda _: None, progress=False)}
        if probe:
            _read_probe(root, assignment, course.notebooks(assignment), outcomes.get(PROBE), qa)
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


def _submit_probe(root: Path, assignment: str, qa: QA) -> None:
    """submitted/qa-probe/: the release, its solution cells answered by the probe."""
    release, dest = root / "release" / assignment, root / "submitted" / PROBE / assignment
    shutil.copytree(release, dest)
    (dest / "timestamp.txt").write_text(TIMESTAMP)
    for nb_path in sorted(release.glob("*.ipynb")):
        nb, skipped = probe_notebook(nb_path, root / "source" / assignment / nb_path.name)
        nbformat.write(nb, str(dest / nb_path.name))
        qa.probe_notes += [f"{qa.assignment}/{s}" for s in skipped]


def _read_probe(root: Path, assignment: str, notebooks: list[Path],
                outcome: Outcome | None, qa: QA) -> None:
    """Which test cells earned points for the probe but none for the released version (those
    are reported as passing on their own already)."""
    if outcome is None or outcome.status != "graded" or outcome.score is None:
        why = "; ".join(outcome.notes) if outcome else "not graded"
        qa.probe_notes.append(f"{qa.assignment}: the always-equal probe could not be graded: "
                              f"{why}")
        return
    qa.probe = (outcome.score, outcome.max_score)
    earned = {s: _cell_scores(root, assignment, s) for s in (PROBE, RELEASED)}
    for path in notebooks:
        for gid in autograder_tests(nbformat.read(str(path), as_version=4)):
            pts = earned[PROBE].get((path.stem, gid), 0.0)
            if pts > 0 and not earned[RELEASED].get((path.stem, gid), 0.0):
                qa.fooled.append(Fooled(path.name, gid, pts))


def _cell_scores(root: Path, assignment: str, student: str) -> dict[tuple[str, str], float]:
    """(notebook, grade_id) -> autograder points, from the scratch course's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.coursedir import CourseDirectory

    out: dict[tuple[str, str], float] = {}
    with Gradebook(CourseDirectory(config=nbgrader_config(root)).db_url) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return out
        for nb in submission.notebooks:
            for g in nb.grades:
                out[(nb.name, g.name)] = float(g.auto_score or 0.0)
    return out


def _generate(root: Path, assignment: str) -> str:
    """nbgrader's generate_assignment (in-process); its error, or '' when it worked."""
    result = nbgrader_api(root).generate_assignment(assignment, force=True)
    return "" if result.get("success") else root_error(result)
