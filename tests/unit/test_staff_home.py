"""The staff's side of the class home (hub/staff_home.py, hub/classroom.py): the score chart's
bars, the dashboard and home pages in both languages, and the actions' one-at-a-time rule.
The real pages, with a real hub, learner and Chromium, are in
tests/browser/test_learner_assignments.py."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import pytest
from tornado import web

from hub.classroom import histogram
from hub.staff_home import ACTIONS, Jobs, summary
from onelab.errors import OneLabError
from tests.unit.test_i18n import PAGES, hub_env, page_ns, visible_text


def test_whole_points_get_a_bar_each_and_nobody_is_dropped():
    h = histogram([5, 5, 3, 0, 7], 5)  # 7 is above the maximum: it counts in the top bar
    assert [b["label"] for b in h["bars"]] == ["0", "1", "2", "3", "4", "5"]
    assert [b["count"] for b in h["bars"]] == [1, 0, 0, 1, 0, 3]
    assert (h["n"], h["tallest"], h["mean"], h["median"]) == (5, 3, 4.0, 5)


def test_fractional_or_large_scores_fall_into_ten_ranges():
    h = histogram([12.5, 80, 100, 99.9, 0.0], 100)
    assert len(h["bars"]) == 10 and h["bars"][0]["label"] == "0–10"
    assert [b["count"] for b in h["bars"]] == [1, 1, 0, 0, 0, 0, 0, 0, 1, 2]
    assert histogram([], None)["n"] == 0 and histogram([], None)["mean"] is None


COURSE = {
    "id": "c1", "title": {"ko": "기초", "en": "Basics"}, "gradebook_ready": True,
    "gradebook_error": None,
    "assignments": [
        {"id": "hw1", "title": {"ko": "과제 하나", "en": "HW one"},
         "due": "2026-12-04T14:59:00+00:00", "released": True, "learners": 4, "submitted": 3,
         "late": ["jisoo"], "feedback_returned": 2, "scores": [4.0, 5.0], "max_score": 5.0,
         "graded": 3, "chart": histogram([3.0, 4.0, 5.0], 5.0), "chart_of": "graded"},
        {"id": "hw2", "title": {"ko": "과제 둘", "en": "HW two"}, "due": None,
         "released": False, "learners": 4, "submitted": 0, "late": [],
         "feedback_returned": 0, "scores": [], "max_score": None, "graded": 0,
         "chart": histogram([], None), "chart_of": "returned"}]}
STAFF = SimpleNamespace(name="kim", json_escaped_name="kim",
                        spawner=SimpleNamespace(options_form=None))


def render(name: str, lang: str, **extra) -> str:
    return hub_env().get_template(name).render(**page_ns(lang, **extra))


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_dashboard_shows_counts_progress_chart_and_actions(lang):
    html = render("onelab_course.html", lang, user=STAFF, course=COURSE, running=None,
                  formgrader_url="/services/formgrader-c1/", actions=ACTIONS)
    text = visible_text(html)
    card = html.split('class="onelab-assignment-card"')[1]  # hw1's
    assert "3 / 4" in visible_text(card) and "3 / 3" in visible_text(card)  # submitted, graded
    assert "jisoo" in text
    bars = re.findall(r'class="onelab-bar" data-label="(\d)" data-count="(\d)"', card)
    assert bars == [("0", "0"), ("1", "0"), ("2", "0"), ("3", "1"), ("4", "1"), ("5", "1")]
    assert len(re.findall(r'class="btn[^"]*onelab-action"', html)) == 8  # 4 per assignment
    if lang == "ko":
        assert "기초" in text and "과제 하나" in text and "채점" in text and "피드백 돌려주기" in text
        assert "점수 3개, 평균 4, 중앙값 4" in text and "제출" in text
    else:
        assert "Basics" in text and "Return feedback" in text and "3 scores, mean 4, median 4" in text


def test_while_an_action_runs_the_buttons_wait_and_say_who():
    running = {"id": "1-1", "user": "kim", "action": "grade", "assignment": "hw1"}
    html = render("onelab_course.html", "ko", user=STAFF, course=COURSE, running=running,
                  formgrader_url="/x/", actions=ACTIONS)
    assert 'data-job="1-1"' in html and "kim" in visible_text(html)
    assert len(re.findall(r"onelab-action\"\s+data-action=\"\w+\"\s+data-assignment=\"\w+\"\s+disabled",
                          html)) == 8


def test_staff_see_their_courses_on_the_home_page_and_learners_see_no_staff_tools():
    teaching = [{**COURSE, "assignments": [
        {**COURSE["assignments"][0], "chart": histogram([4.0, 5.0], 5.0)}]}]
    staff_home = render("home.html", "ko", **dict(PAGES["home.html"], onelab_teaching=teaching))
    assert "내가 가르치는 과목" in visible_text(staff_home)
    assert 'href="/hub/onelab/courses/c1"' in staff_home
    assert 'class="onelab-chart"' in staff_home and "3 / 4" in visible_text(staff_home)
    learner_home = render("home.html", "ko", **dict(PAGES["home.html"], onelab_teaching=[]))
    for tool in ("onelab-teaching", "onelab/courses/", 'class="onelab-chart"', "onelab-dashboard"):
        assert tool not in learner_home


class FakeJobs(Jobs):
    """The real queue and bookkeeping, with the course operations replaced (a unit test)."""

    def __init__(self, calls, state_dir=None) -> None:
        import tempfile
        from pathlib import Path

        super().__init__(settings=SimpleNamespace(state_dir=state_dir or Path(tempfile.mkdtemp())))
        self._calls = calls

    def calls(self):
        return self._calls


def wait_done(jobs: Jobs, job_id: str) -> dict:
    for _ in range(200):
        job = jobs.get(job_id)
        if job.finished is not None:
            return job.public()
        time.sleep(0.01)
    raise AssertionError("the job never ended")


def test_one_action_per_course_at_a_time_and_the_second_hears_who_is_busy():
    gate = threading.Event()

    def slow_grade(settings, course, assignment):
        gate.wait(5)
        return [{"student": "minji", "status": "graded"},
                {"student": "jisoo", "status": "failed", "error": "cell 3 ran past its time "
                 "limit of 40 s and was stopped"}]

    jobs = FakeJobs({"grade": slow_grade, "collect": lambda s, c, a: ["minji"]})
    first = jobs.start("c1", "hw1", "grade", "kim", "en")
    with pytest.raises(web.HTTPError) as refused:
        jobs.start("c1", "hw1", "collect", "lee", "en")
    assert refused.value.status_code == 409 and "kim is running Grade of hw1" in \
        refused.value.log_message
    other = jobs.start("c2", "hw1", "collect", "lee", "ko")  # another course is not held up
    assert wait_done(jobs, other.id)["message"] == "제출물 1개를 모았습니다: minji"
    gate.set()
    done = wait_done(jobs, first.id)
    assert done["state"] == "failed" and done["ok"] is False
    assert done["message"].startswith("1 graded, 1 failed, 0 skipped")
    assert "jisoo: cell 3 ran past its time limit of 40 s" in done["message"]
    again = jobs.start("c1", "hw1", "collect", "lee", "en")  # free again
    assert wait_done(jobs, again.id)["state"] == "done"


def test_a_failing_operation_is_reported_not_swallowed():
    def broken(settings, course, assignment):
        raise OneLabError("the grading service of c1 is not running: start the platform")

    jobs = FakeJobs({"release": broken})
    job = wait_done(jobs, jobs.start("c1", "hw1", "release", "kim", "en").id)
    assert job["state"] == "failed"
    assert job["message"] == ("Release failed: the grading service of c1 is not running: start "
                              "the platform")


def test_each_action_is_in_the_audit_log_with_who_and_how_it_ended(tmp_path):
    from onelab import audit

    def broken(settings, course, assignment):
        raise OneLabError("the grading service of c1 is not running")

    jobs = FakeJobs({"collect": lambda s, c, a: ["minji"], "release": broken}, tmp_path)
    wait_done(jobs, jobs.start("c1", "hw1", "collect", "kim", "ko").id)
    wait_done(jobs, jobs.start("c1", "hw2", "release", "lee", "en").id)
    for _ in range(100):  # written just after the job ends
        if len(audit.read(tmp_path)) == 2:
            break
        time.sleep(0.01)
    got = [(r["actor"], r["action"], r["target"], r["outcome"], r["via"])
           for r in audit.read(tmp_path)]
    assert got == [("kim", "assignment.collect", "c1/hw1", "ok", "dashboard"),
                   ("lee", "assignment.release", "c1/hw2", "failed", "dashboard")]
    assert "not running" in audit.read(tmp_path)[1]["error"]


def test_summaries_in_both_languages():
    assert summary("release", None, "en", "hw1") == (
        True, "hw1 is released: learners can fetch it now.")
    ok, text = summary("feedback", ["minji", "jisoo"], "ko", "hw1")
    assert ok and "minji, jisoo" in text and "2" in text
