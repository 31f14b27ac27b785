"""The instructor's side of a course, on the hub host: one nbgrader course directory per course
(<state_dir>/courses/<id>/), releasing into the exchange, collecting from it, grading in the
sandbox, returning feedback, exporting grades with the spec's late policy."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from graders.grade import nbgrader_api, root_error
from hub.courses import course_specs, exchange_root
from hub.exchange_store import ExchangeStore, replace_dir
from onelab.course import Course, CourseError
from onelab.settings import Settings


def find_course(settings: Settings, course_id: str) -> Course:
    courses = {c.id: c for c in course_specs(settings)}
    if course_id not in courses:
        raise CourseError(f"no course {course_id!r} (there are: {', '.join(courses) or 'none'})")
    return courses[course_id]


def course_root(settings: Settings, course_id: str) -> Path:
    return settings.state_dir / "courses" / course_id


def sync_course(settings: Settings, course: Course) -> Path:
    """Make the course's nbgrader directory match its spec: config and source notebooks."""
    root = course_root(settings, course.id)
    (root / "source").mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(
        "# Written by `onelab course sync` from courses/%s/course.yml; edits are replaced.\n"
        "c = get_config()\n"
        "c.CourseDirectory.course_id = %r\n"
        "# the formgrader's autograde button and `nbgrader autograde` grade in the sandbox\n"
        "from graders.hook import use_sandbox\n"
        "use_sandbox(c)\n"
        "# release, collect and feedback go through OneLab's exchange (hub/nbgrader_exchange.py)\n"
        "c.HubExchange.root = %r\n"
        "c.ExchangeFactory.list = 'hub.nbgrader_exchange.InstructorList'\n"
        "c.ExchangeFactory.release_assignment = 'hub.nbgrader_exchange.ReleaseAssignment'\n"
        "c.ExchangeFactory.collect = 'hub.nbgrader_exchange.Collect'\n"
        "c.ExchangeFactory.release_feedback = 'hub.nbgrader_exchange.ReleaseFeedback'\n"
        % (course.id, course.id, str(exchange_root(settings))))
    exchange_root(settings).mkdir(parents=True, exist_ok=True)
    for a in course.assignments:
        replace_dir(course.source_dir(a.id), root / "source" / a.id,
                    ignore=shutil.ignore_patterns(".*"))
    return root


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        raise CourseError(f"{what} failed: {root_error(result)}")


def release(settings: Settings, course_id: str, assignment: str) -> Path:
    """Generate the student version and release it: the formgrader's two buttons in one."""
    course = find_course(settings, course_id)
    course.assignment(assignment)
    root = sync_course(settings, course)
    api = nbgrader_api(root)
    _check(api.generate_assignment(assignment, force=True), f"generating {assignment}")
    _check(api.release_assignment(assignment), f"releasing {assignment}")
    return ExchangeStore(exchange_root(settings)).outbound(course.id) / assignment


def collect(settings: Settings, course_id: str, assignment: str) -> list[str]:
    """Each learner's latest acknowledged submission into submitted/, whole, in one rename
    (hub/nbgrader_exchange.Collect); returns the learners who have one."""
    course = find_course(settings, course_id)
    course.assignment(assignment)
    root = sync_course(settings, course)
    _check(nbgrader_api(root).collect(assignment), f"collecting {assignment}")
    return sorted(ExchangeStore(exchange_root(settings)).latest(course.id, assignment))


def feedback(settings: Settings, course_id: str, assignment: str) -> list[str]:
    """nbgrader's feedback for every graded learner, handed to the exchange for them alone."""
    course = find_course(settings, course_id)
    root = sync_course(settings, course)
    api = nbgrader_api(root)
    _check(api.generate_feedback(assignment, force=True), "generating feedback")
    _check(api.release_feedback(assignment), "releasing feedback")
    return sorted(p.parent.name for p in (root / "feedback").glob(f"*/{assignment}")
                  if any(p.glob("*.html")))


def _parse_ts(ts: str) -> datetime | None:
    from dateutil.parser import parse

    try:
        when = parse(ts)
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def grade_rows(settings: Settings, course_id: str) -> list[dict[str, Any]]:
    """One row per learner and assignment: the autograded score, the late factor, the grade."""
    from nbgrader.api import Gradebook, MissingEntry

    course = find_course(settings, course_id)
    root = course_root(settings, course.id)
    rows = []
    db = root / "gradebook.db"
    with Gradebook(f"sqlite:///{db}") as gb:
        for a in course.assignments:
            for learner in course.all_learners():
                row: dict[str, Any] = {"course": course.id, "assignment": a.id,
                                       "learner": learner, "score": 0.0, "max_score": None,
                                       "submitted_at": "", "days_late": 0.0,
                                       "late_factor": 1.0, "grade": 0.0}
                try:
                    sub = gb.find_submission(a.id, learner)
                except MissingEntry:
                    sub = None
                if sub is not None:
                    row["score"], row["max_score"] = float(sub.score), float(sub.max_score)
                    ts_file = root / "submitted" / learner / a.id / "timestamp.txt"
                    when = _parse_ts(ts_file.read_text()) if ts_file.exists() else None
                    late = 0.0
                    if when is not None:
                        row["submitted_at"] = when.isoformat()
                        if a.due is not None:
                            late = max(0.0, (when - a.due).total_seconds() / 86400)
                    row["days_late"] = round(late, 6)
                    row["late_factor"] = a.late_policy.factor(late)  # a second late is late
                    row["grade"] = round(row["score"] * row["late_factor"], 4)
                rows.append(row)
    return rows


def export_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    fields = ["course", "assignment", "learner", "score", "max_score", "submitted_at",
              "days_late", "late_factor", "grade"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in fields})
    return buf.getvalue()
