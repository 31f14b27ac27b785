"""What the Assignments panel and the class home are told: due dates, submissions as the
exchange received them, lateness, and a score only once feedback is returned with it."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub import exchange_store
from hub.classroom import learner_view, staff_view, submitted_at
from hub.exchange_store import ExchangeStore, Score
from onelab.course import Course


def _nb_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("a.ipynb")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    return buf.getvalue()


def _course(due: datetime) -> Course:
    return Course.model_validate({
        "id": "c1", "title": {"ko": "기초", "en": "Basics"}, "instructors": ["prof"],
        "learners": ["amy", "ben", "cho"],
        "assignments": [
            {"id": "hw1", "title": {"ko": "과제 1", "en": "HW 1"}, "due": due.isoformat()},
            {"id": "hw2", "title": {"ko": "과제 2", "en": "HW 2"}},
            {"id": "hw3", "title": {"ko": "과제 3", "en": "HW 3"}},
        ]})


@pytest.fixture
def store(tmp_path: Path) -> ExchangeStore:
    s = ExchangeStore(tmp_path / "exchange")
    rel = tmp_path / "release"
    rel.mkdir()
    (rel / "a.ipynb").write_text("{}")
    s.release("c1", "hw1", rel)
    s.release("c1", "hw2", rel)  # hw3 is not released
    return s


def test_learner_sees_released_work_due_dates_and_their_submissions(store):
    due = datetime.now(UTC) + timedelta(days=2)
    course = _course(due)
    store.submit("c1", "amy", "hw1", _nb_tar())
    store.submit("c1", "amy", "hw1", _nb_tar())
    view = learner_view(store, course, "amy")
    assert view["title"] == {"ko": "기초", "en": "Basics"}
    assert [a["id"] for a in view["assignments"]] == ["hw1", "hw2"]  # hw3 not released
    hw1, hw2 = view["assignments"]
    assert hw1["due"] == due.astimezone(UTC).isoformat() and hw2["due"] is None
    assert hw1["submissions"] == 2 and not hw1["late"]
    assert abs(datetime.fromisoformat(hw1["last_submitted"]) - datetime.now(UTC)).total_seconds() < 60
    assert hw1["score"] is None and not hw1["feedback"]  # nothing returned yet
    assert learner_view(store, course, "ben")["assignments"][0]["submissions"] == 0


def test_late_submission_and_returned_score(store, tmp_path):
    course = _course(datetime.now(UTC) - timedelta(hours=1))  # already past due
    sub = store.submit("c1", "ben", "hw1", _nb_tar())
    html = tmp_path / "a.html"
    html.write_text("<p>feedback</p>")
    store.put_feedback("c1", "ben", "hw1", sub.timestamp, [html], Score(7.5, 10))
    mine = learner_view(store, course, "ben")["assignments"][0]
    assert mine["late"] and mine["feedback"] and (mine["score"], mine["max_score"]) == (7.5, 10)
    staff = staff_view(store, course)["assignments"]
    hw1 = staff[0]
    assert (hw1["learners"], hw1["submitted"], hw1["late"]) == (3, 1, ["ben"])
    assert hw1["feedback_returned"] == 1 and hw1["scores"] == [7.5] and hw1["max_score"] == 10
    assert staff[2]["released"] is False
    # another learner never sees ben's score
    assert learner_view(store, course, "amy")["assignments"][0]["score"] is None


@pytest.mark.parametrize("raw", [{"score": 11, "max_score": 10}, {"score": "9", "max_score": 10},
                                 {"score": float("nan"), "max_score": 1}, {"score": -1,
                                                                           "max_score": 1},
                                 [], {"score": True, "max_score": 1}])
def test_a_malformed_score_is_refused(raw):
    with pytest.raises(ValueError):
        Score.parse(raw)


def test_receipt_times_parse():
    when = submitted_at(exchange_store.receipt_time())
    assert when is not None and when.tzinfo is not None
    assert submitted_at("not a time") is None
