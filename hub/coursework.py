"""The instructor's side of a course: one nbgrader course directory per course
(<state_dir>/courses/<id>/), kept by the course's confined grading service (hub/formgrader.py).

Releasing, collecting, grading and returning feedback run nbgrader INSIDE that container, as
the formgrader's buttons do: the course directory is staff-writable, so no root process on the
host reads it, follows a link in it or loads a config file from it. Exporting grades applies
the spec's late policy (here) to the scores the container reads from its gradebook.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.courses import course_specs
from onelab.course import Course, CourseError
from onelab.i18n import N_
from onelab.settings import Settings


def find_course(settings: Settings, course_id: str) -> Course:
    courses = {c.id: c for c in course_specs(settings)}
    if course_id not in courses:
        raise CourseError(N_("no course {course!r} (there are: {courses})"), course=course_id,
                          courses=", ".join(courses) or "none")
    return courses[course_id]


def course_root(settings: Settings, course_id: str) -> Path:
    return settings.state_dir / "courses" / course_id


def _service(settings: Settings, course: Course) -> str:
    from hub.formgrader import wait_running

    return wait_running(settings, course.id)


def sync_course(settings: Settings, course: Course) -> Path:
    """Put the spec's source notebooks into the course directory (through its container)."""
    from hub.formgrader import sync_sources

    _service(settings, course)
    sync_sources(settings, course)
    return course_root(settings, course.id)


def release(settings: Settings, course_id: str, assignment: str) -> Path:
    """Generate the student version and release it: the formgrader's two buttons in one."""
    from hub.courses import exchange_root
    from hub.exchange_store import ExchangeStore
    from hub.formgrader import op

    course = find_course(settings, course_id)
    course.assignment(assignment)
    name = _service(settings, course)
    op(name, "release", assignment)
    return ExchangeStore(exchange_root(settings)).outbound(course.id) / assignment


def collect(settings: Settings, course_id: str, assignment: str) -> list[str]:
    """Each learner's latest acknowledged submission into submitted/, whole; returns the
    learners who have one."""
    from hub.formgrader import op

    course = find_course(settings, course_id)
    course.assignment(assignment)
    return op(_service(settings, course), "collect", assignment)


def grade(settings: Settings, course_id: str, assignment: str,
          force: bool = False) -> list[dict[str, Any]]:
    """nbgrader's autograde in the course's grading service, each notebook run in OneLab's
    sandbox by the hub; returns one row per learner (graded, skipped or failed, and why)."""
    from hub.formgrader import op

    course = find_course(settings, course_id)
    course.assignment(assignment)
    return op(_service(settings, course), "autograde", assignment,
              *(["--force"] if force else []))


def feedback(settings: Settings, course_id: str, assignment: str) -> list[str]:
    """nbgrader's feedback for every graded learner, handed to the exchange for them alone."""
    from hub.formgrader import op

    course = find_course(settings, course_id)
    return op(_service(settings, course), "feedback", assignment)


def _parse_ts(ts: str) -> datetime | None:
    from dateutil.parser import parse

    try:
        when = parse(ts)
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def grade_rows(settings: Settings, course_id: str) -> list[dict[str, Any]]:
    """One row per learner and assignment: the autograded score, the late factor, the grade."""
    from hub.formgrader import op

    course = find_course(settings, course_id)
    got = {(r["assignment"], r["learner"]): r for r in op(
        _service(settings, course), "scores", *[a.id for a in course.assignments])}
    rows = []
    for a in course.assignments:
        for learner in course.all_learners():
            row: dict[str, Any] = {"course": course.id, "assignment": a.id,
                                   "learner": learner, "score": 0.0, "max_score": None,
                                   "submitted_at": "", "days_late": 0.0,
                                   "late_factor": 1.0, "grade": 0.0}
            sub = got.get((a.id, learner))
            if sub is not None:
                row["score"], row["max_score"] = float(sub["score"]), float(sub["max_score"])
                when = _parse_ts(str(sub["timestamp"])) if sub["timestamp"] else None
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
