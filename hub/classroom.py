"""What a class looks like from the exchange: per learner (what is released to them, due when,
submitted when, late or not, feedback and score returned) and per course for its staff
(submissions, late ones, feedback returned, the returned scores).

Pure views over the exchange's store (hub/exchange_store.py) and the course spec: the learner's
Assignments panel (through the exchange service's /api/coursework) and the class home read the
same facts, so the two never disagree. Times are ISO 8601 in UTC; the browser shows them in
the learner's own time zone.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from hub.exchange_store import ExchangeStore, Submission
from onelab.course import Assignment, Course


def submitted_at(timestamp: str) -> datetime | None:
    """The exchange's receipt time ('2026-12-01 10:00:00.123456 UTC') as an aware datetime."""
    text = timestamp.strip().removesuffix("UTC").strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when else None


def is_late(assignment: Assignment, sub: Submission | None) -> bool:
    when = submitted_at(sub.timestamp) if sub else None
    return bool(assignment.due and when and when > assignment.due)


def learner_view(store: ExchangeStore, course: Course, learner: str) -> dict[str, Any]:
    """The course's released assignments as this learner stands in each."""
    released = set(store.released(course.id))
    subs: dict[str, list[Submission]] = {}
    for sub in store.submissions(course.id, learner=learner):
        subs.setdefault(sub.assignment, []).append(sub)
    feedback = {a for a, _, _ in store.feedback_for(course.id, learner)}
    scores = store.scores(course.id, learner)
    out = []
    for a in course.assignments:
        if a.id not in released:
            continue
        mine = subs.get(a.id, [])
        last = mine[-1] if mine else None
        score = scores.get((learner, a.id))
        out.append({
            "id": a.id, "title": a.title.model_dump(), "due": _iso(a.due),
            "submissions": len(mine),
            "last_submitted": _iso(submitted_at(last.timestamp)) if last else None,
            "late": is_late(a, last),
            "feedback": a.id in feedback,
            "score": score.score if score else None,
            "max_score": score.max_score if score else None,
        })
    return {"id": course.id, "title": course.title.model_dump(), "assignments": out}


def staff_view(store: ExchangeStore, course: Course) -> dict[str, Any]:
    """Per assignment: who submitted, who was late, whose feedback (and score) went back."""
    released = set(store.released(course.id))
    learners = set(course.all_learners())
    scores = store.scores(course.id)
    out = []
    for a in course.assignments:
        latest = {k: v for k, v in store.latest(course.id, a.id).items() if k in learners}
        returned = {who: s for (who, aid), s in scores.items() if aid == a.id and who in learners}
        out.append({
            "id": a.id, "title": a.title.model_dump(), "due": _iso(a.due),
            "released": a.id in released,
            "learners": len(learners),
            "submitted": len(latest),
            "late": sorted(who for who, sub in latest.items() if is_late(a, sub)),
            "feedback_returned": len(returned),
            "scores": sorted(s.score for s in returned.values()),
            "max_score": max((s.max_score for s in returned.values()), default=None),
        })
    return {"id": course.id, "title": course.title.model_dump(), "assignments": out}


def histogram(scores: list[float], max_score: float | None) -> dict[str, Any]:
    """The score distribution as the staff's chart draws it: one bar per point when scores are
    whole points out of at most 20, else ten equal ranges of [0, max] (the last one closed).
    Scores outside the range count in the nearest bar: a chart never drops a learner."""
    top = float(max_score or max(scores, default=0.0) or 1.0)
    n = len(scores)
    summary: dict[str, Any] = {"n": n, "max_score": top,
                               "mean": round(sum(scores) / n, 2) if n else None,
                               "median": round(statistics.median(scores), 2) if n else None}
    if top <= 20 and top.is_integer() and all(float(s).is_integer() for s in scores):
        counts = [0] * (int(top) + 1)
        for s in scores:
            counts[min(max(int(s), 0), int(top))] += 1
        bars = [{"label": f"{i}", "count": c} for i, c in enumerate(counts)]
    else:
        width = top / 10
        counts = [0] * 10
        for s in scores:
            counts[min(max(int(s // width), 0), 9)] += 1
        bars = [{"label": f"{i * width:g}–{(i + 1) * width:g}", "count": c}
                for i, c in enumerate(counts)]
    return {**summary, "bars": bars, "tallest": max(counts, default=0)}


def configure_class_home(c: Any, settings: Any) -> None:
    """The hub's home page shows each learner their courses: what is due, where they stand and
    their returned scores (hub/templates/home.html), from the same views as the panel; and
    each member of a course's staff that course's counts, with links to its dashboard
    (hub/staff_home.py)."""
    hub = c.JupyterHub
    hub.template_vars = {**(hub.get("template_vars") or {}),
                         "onelab_coursework": coursework_of(settings),
                         "onelab_teaching": teaching_of(settings)}


def coursework_of(settings: Any) -> Any:
    """A template variable JupyterHub calls with the page's user: their learner views."""
    from hub.courses import course_specs, exchange_root

    def views(user: Any) -> list[dict[str, Any]]:
        if user is None:
            return []
        store = ExchangeStore(exchange_root(settings))
        return [learner_view(store, course, user.name) for course in course_specs(settings)
                if user.name in course.all_learners()]

    return views


def teaching_of(settings: Any) -> Any:
    """A template variable: the courses the page's user teaches (instructor or assistant), each
    as :func:`staff_view` with the distribution of the scores returned so far. Only what the
    exchange knows, so the home page stays quick; the dashboard adds the gradebook."""
    from hub.courses import course_specs, exchange_root

    def views(user: Any) -> list[dict[str, Any]]:
        if user is None:
            return []
        store = ExchangeStore(exchange_root(settings))
        out = []
        for course in course_specs(settings):
            if user.name in course.staff():
                view = staff_view(store, course)
                for a in view["assignments"]:
                    a["chart"] = histogram(a["scores"], a["max_score"])
                out.append(view)
        return out

    return views
