"""The whole nbgrader cycle through the hub: an instructor releases, two learners fetch, answer
and submit from their own containers (nbgrader's Assignments tab API), the instructor collects,
grades in the sandbox and returns feedback, each learner fetches only their own, and the
exported grades are what the answers deserve, late penalty included. A learner of another
course sees none of it. Real hub, real learner containers, real nbgrader."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from onelab.hubclient import Hub
from tests.conftest import start_platform, stop_platform
from tests.courses import minicourse

pytestmark = pytest.mark.integration

RIGHT = "    a, b = np.polyfit(x, y, 1)\n    return a, b"
WRONG = "    return 0.0, 0.0"

OTHER = """\
id: other
title: {ko: 다른 과정, en: Another course}
instructors: [tina]
learners: [carl]
assignments:
  - id: 01-line
    title: {ko: 직선, en: A line}
"""


@pytest.fixture(scope="module")
def cycle(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("cycle")
    courses = minicourse.write(root / "courses")
    spec = courses / minicourse.COURSE / "course.yml"
    spec.write_text(spec.read_text().replace(
        "instructors: [instructor]", "instructors: [teacher]\nlearners: [amy, ben]").replace(
        "    regress:", "    late_policy: {per_day: 0.1, max_days: 3}\n    regress:"),
        encoding="utf-8")
    other = courses / "other"
    (other / "source").mkdir(parents=True)
    (other / "source" / "01-line").symlink_to(courses / minicourse.COURSE / "source" / "01-line")
    (other / "course.yml").write_text(OTHER, encoding="utf-8")
    p = start_platform(root, ONELAB_COURSES_DIR=str(courses))
    yield p, spec
    from onelab import dockerdoor

    for ctr in dockerdoor.containers("learner", **{"onelab.instance": f"{p.prefix}-learner"}):
        (root / f"{ctr.name}.log").write_bytes(ctr.logs()[-20000:])  # kept for a failed run
    stop_platform(p)


def _server(p, name: str):
    p.add_learner(name)
    hub = p.login(name)
    hub.start(name)
    hub.wait_ready(name)
    token = hub.token_for(name)
    return hub.server(name, token)


def _tab(server, action: str | None = None, course: str = "mini") -> list[dict]:
    """What the Assignments tab does: list, or fetch/submit/fetch_feedback then list."""
    if action is None:
        r = server.request("GET", f"assignments?course_id={course}")
    else:
        r = server.request("POST", f"assignments/{action}",
                           data={"course_id": course, "assignment_id": minicourse.ASSIGNMENT})
    assert r.status_code == 200, r.text[:2000]
    body = r.json()
    assert isinstance(body, list) or body.get("success", True), body
    return body if isinstance(body, list) else body.get("value", [])


def _answer(server, code: str) -> None:
    path = f"api/contents/mini/{minicourse.ASSIGNMENT}/{minicourse.NOTEBOOK}"
    r = server.request("GET", path)
    assert r.status_code == 200, r.text[:500]
    model = r.json()
    for cell in model["content"]["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "fit":
            cell["source"] = "def fit(x, y):\n" + code
    r = server.request("PUT", path, json={"type": "notebook", "format": "json",
                                          "content": model["content"]})
    assert r.status_code in (200, 201), r.text[:500]


def test_release_fetch_submit_collect_grade_feedback_export(cycle):
    p, spec = cycle
    p.cli("assignment", "release", "mini", minicourse.ASSIGNMENT)
    amy, ben, carl = _server(p, "amy"), _server(p, "ben"), _server(p, "carl")

    # learners see the release of their course only
    listed = _tab(amy)
    assert [(a["course_id"], a["assignment_id"], a["status"]) for a in listed] == [
        ("mini", minicourse.ASSIGNMENT, "released")]
    courses = carl.request("GET", "courses").json()
    assert courses["success"] and "mini" not in courses["value"], courses
    assert "mini" in amy.request("GET", "courses").json()["value"]
    refused = carl.request("GET", "assignments?course_id=mini").json()
    assert refused["success"] is False  # the exchange answers 404: not carl's course

    # amy answers wrong and on time; ben answers right, after the due date
    for server, code in ((amy, WRONG), (ben, RIGHT)):
        fetched = _tab(server, "fetch")
        assert any(a["status"] == "fetched" for a in fetched)
        _answer(server, code)
    submitted = _tab(amy, "submit")
    assert any(a["status"] == "submitted" for a in submitted), submitted
    due = datetime.now(timezone.utc)
    time.sleep(1.5)
    assert any(a["status"] == "submitted" for a in _tab(ben, "submit"))
    spec.write_text(spec.read_text().replace('"2026-12-01T23:59:00+09:00"',
                                             f'"{due.isoformat()}"'), encoding="utf-8")

    out = p.cli("assignment", "collect", "mini", minicourse.ASSIGNMENT).stdout
    assert "collected 2 submission(s)" in out and "amy, ben" in out
    p.cli("assignment", "grade", "mini", minicourse.ASSIGNMENT, timeout=600)
    out = p.cli("assignment", "feedback", "mini", minicourse.ASSIGNMENT).stdout
    assert "ready for 2 learner(s)" in out

    # each learner fetches their own feedback, and only theirs
    for server, mine in ((amy, "return 0.0, 0.0"), (ben, "np.polyfit")):
        after = _tab(server, "fetch_feedback")
        sub = next(a for a in after if a["status"] == "submitted")["submissions"][-1]
        assert sub["has_local_feedback"], sub
        html_path = sub["local_feedback_path"].split("/home/learner/", 1)[-1]
        feedback = server.request(
            "GET", f"api/contents/{html_path}/{Path(minicourse.NOTEBOOK).stem}.html").json()
        text = html.unescape(re.sub(r"<[^>]+>", "", feedback["content"]))
        assert mine in text
        other = "np.polyfit" if mine == "return 0.0, 0.0" else "return 0.0, 0.0"
        assert other not in text

    grades = p.cli("grades", "export", "mini").stdout
    rows = {r["learner"]: r for r in csv.DictReader(io.StringIO(grades))}
    assert set(rows) == {"amy", "ben"}
    assert float(rows["amy"]["score"]) == 0 and float(rows["amy"]["late_factor"]) == 1.0
    assert float(rows["ben"]["score"]) == 5 and float(rows["ben"]["late_factor"]) == 0.9
    assert float(rows["ben"]["grade"]) == 4.5 and float(rows["ben"]["days_late"]) > 0


def test_nobody_reaches_another_learners_work_or_another_course(cycle):
    p, _ = cycle
    hub = Hub(p.url)
    assert hub.login("carl", p.passwords["carl"])
    token = hub.token_for("carl")
    base = f"{p.url}services/onelab-exchange/api/"
    auth = {"Authorization": f"token {token}"}
    # the exchange itself: another course is not there for carl, and there is no way to ask
    # for anyone's submissions
    assert requests.get(base + "pull/mini", headers=auth, timeout=30).status_code == 404
    assert requests.post(base + "submit/mini/01-line", headers=auth, data=b"x",
                         timeout=30).status_code == 404
    assert requests.get(base + "inbound/mini", headers=auth, timeout=30).status_code == 404
    assert requests.get(base + "courses", timeout=30).status_code in (302, 401, 403)
    # in a learner's container: no exchange folder of anyone else, no hub state
    ctr = p.container("amy")
    res = ctr.exec_run(["sh", "-c", "ls -R /home/learner/.local/share/onelab/exchange; "
                                    "ls /var/lib/onelab 2>&1; ls /srv 2>&1"], user="1000")
    listing = res.output.decode()
    assert "ben" not in listing and "inbound/amy" not in listing
    assert "gradebook" not in listing and "No such file" in listing


def test_each_formgrader_opens_for_its_course_staff_only(cycle):
    p, _ = cycle
    for name in ("teacher", "tina", "amy"):
        if name not in p.passwords:
            p.add_learner(name)  # a local account; staff rights come from the course specs

    def status(user: str, course: str) -> int:
        hub = Hub(p.url)
        assert hub.login(user, p.passwords[user])
        token = hub.token_for(user)
        r = requests.get(f"{p.url}services/formgrader-{course}/formgrader/api/assignments",
                         headers={"Authorization": f"token {token}"}, timeout=60,
                         allow_redirects=False)
        return r.status_code

    deadline = time.monotonic() + 60  # the services start with the hub
    while status("teacher", "mini") != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert status("teacher", "mini") == 200
    assert status("tina", "other") == 200
    assert status("tina", "mini") in (403, 404)
    assert status("teacher", "other") in (403, 404)
    assert status("amy", "mini") in (403, 404)


def test_a_submission_the_exchange_never_acknowledged_is_not_shown_as_submitted(cycle):
    p, _ = cycle
    if "amy" not in p.passwords:
        pytest.skip("needs the cycle's learners (run with the module)")
    ctr = p.container("amy")

    def run(cmd: str):
        return ctr.exec_run(["bash", "-c", cmd], user="1000",
                            environment={"HOME": "/home/learner"}, workdir="/home/learner")

    before = run("nbgrader list --cached 2>&1").output.decode()
    res = run("ONELAB_EXCHANGE_URL=http://127.0.0.1:9/ nbgrader submit 01-line --course mini "
              "2>&1")
    out = res.output.decode()
    assert res.exit_code != 0 and "cannot be reached" in out, out
    after = run("nbgrader list --cached 2>&1").output.decode()
    assert after.count("01-line") == before.count("01-line"), (before, after)
