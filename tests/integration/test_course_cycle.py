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
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from onelab.course import courses_dir
from onelab.hubclient import Hub
from tests.conftest import start_platform, stop_platform

pytestmark = pytest.mark.integration

COURSE, ASSIGNMENT, NOTEBOOK = "onelab-101", "02-fit-a-line", "line.ipynb"
RIGHT = "    a, b = np.polyfit(x, y, 1)\n    return a, b"
WRONG = "    return 0.0, 0.0"

OTHER = """\
id: other
title: {ko: 다른 과정, en: Another course}
instructors: [tina]
learners: [carl]
assignments:
  - id: 02-fit-a-line
    title: {ko: 직선, en: A line}
"""


@pytest.fixture(scope="module")
def cycle(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("cycle")
    courses = root / "courses"
    shutil.copytree(courses_dir() / COURSE, courses / COURSE)  # the example course, as shipped
    (courses / COURSE / "learners.csv").write_text("username,full_name\namy,Amy\nben,Ben\n")
    spec = courses / COURSE / "course.yml"
    spec.write_text(spec.read_text().replace("instructors: [instructor]",
                                             "instructors: [teacher]"), encoding="utf-8")
    other = courses / "other"
    (other / "source").mkdir(parents=True)
    (other / "source" / ASSIGNMENT).symlink_to(courses / COURSE / "source" / ASSIGNMENT)
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


def _tab(server, action: str | None = None, course: str = "onelab-101") -> list[dict]:
    """What the Assignments tab does: list, or fetch/submit/fetch_feedback then list."""
    if action is None:
        r = server.request("GET", f"assignments?course_id={course}")
    else:
        r = server.request("POST", f"assignments/{action}",
                           data={"course_id": course, "assignment_id": ASSIGNMENT})
    assert r.status_code == 200, r.text[:2000]
    body = r.json()
    assert isinstance(body, list) or body.get("success", True), body
    return body if isinstance(body, list) else body.get("value", [])


def _answer(server, code: str) -> None:
    path = f"api/contents/onelab-101/{ASSIGNMENT}/{NOTEBOOK}"
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
    p.cli("assignment", "release", "onelab-101", ASSIGNMENT)
    amy, ben, carl = _server(p, "amy"), _server(p, "ben"), _server(p, "carl")

    # learners see the release of their course only
    listed = _tab(amy)
    assert [(a["course_id"], a["assignment_id"], a["status"]) for a in listed] == [
        ("onelab-101", ASSIGNMENT, "released")]
    courses = carl.request("GET", "courses").json()
    assert courses["success"] and "onelab-101" not in courses["value"], courses
    assert "onelab-101" in amy.request("GET", "courses").json()["value"]
    refused = carl.request("GET", "assignments?course_id=onelab-101").json()
    assert refused["success"] is False  # the exchange answers 404: not carl's course

    # amy answers wrong and on time; ben answers right, after the due date
    for server, code in ((amy, WRONG), (ben, RIGHT)):
        fetched = _tab(server, "fetch")
        assert any(a["status"] == "fetched" for a in fetched)
        _answer(server, code)
    submitted = _tab(amy, "submit")
    assert any(a["status"] == "submitted" for a in submitted), submitted
    due = datetime.now(UTC)
    time.sleep(1.5)
    assert any(a["status"] == "submitted" for a in _tab(ben, "submit"))
    spec.write_text(spec.read_text().replace('"2026-12-11T23:59:00+09:00"',
                                             f'"{due.isoformat()}"'), encoding="utf-8")

    out = p.cli("assignment", "collect", "onelab-101", ASSIGNMENT).stdout
    assert "collected 2 submission(s)" in out and "amy, ben" in out
    p.cli("assignment", "grade", "onelab-101", ASSIGNMENT, timeout=600)
    out = p.cli("assignment", "feedback", "onelab-101", ASSIGNMENT).stdout
    assert "ready for 2 learner(s)" in out

    # each learner fetches their own feedback, and only theirs
    for server, mine in ((amy, "return 0.0, 0.0"), (ben, "np.polyfit(x, y, 1)")):
        after = _tab(server, "fetch_feedback")
        sub = next(a for a in after if a["status"] == "submitted")["submissions"][-1]
        assert sub["has_local_feedback"], sub
        html_path = sub["local_feedback_path"].split("/home/learner/", 1)[-1]
        feedback = server.request(
            "GET", f"api/contents/{html_path}/{Path(NOTEBOOK).stem}.html").json()
        text = html.unescape(re.sub(r"<[^>]+>", "", feedback["content"]))
        assert mine in text
        other = "np.polyfit(x, y, 1)" if mine == "return 0.0, 0.0" else "return 0.0, 0.0"
        assert other not in text

    grades = p.cli("grades", "export", "onelab-101").stdout
    every = {(r["learner"], r["assignment"]): r for r in csv.DictReader(io.StringIO(grades))}
    assert set(every) == {(n, a) for n in ("amy", "ben") for a in ("01-numbers", ASSIGNMENT)}
    assert float(every[("amy", "01-numbers")]["grade"]) == 0  # nothing submitted: a 0 row
    rows = {n: every[(n, ASSIGNMENT)] for n in ("amy", "ben")}
    assert float(rows["amy"]["score"]) == 0 and float(rows["amy"]["late_factor"]) == 1.0
    # the example course's late policy for this assignment: 20 % off per started day
    assert float(rows["ben"]["score"]) == 5 and float(rows["ben"]["late_factor"]) == 0.8
    assert float(rows["ben"]["grade"]) == 4.0 and float(rows["ben"]["days_late"]) > 0


def test_nobody_reaches_another_learners_work_or_another_course(cycle):
    p, _ = cycle
    hub = Hub(p.url)
    assert hub.login("carl", p.passwords["carl"])
    token = hub.token_for("carl")
    base = f"{p.url}services/onelab-exchange/api/"
    auth = {"Authorization": f"token {token}"}
    # the exchange itself: another course is not there for carl, and there is no way to ask
    # for anyone's submissions
    assert requests.get(base + "pull/onelab-101", headers=auth, timeout=30).status_code == 404
    assert requests.post(base + "submit/onelab-101/02-fit-a-line", headers=auth, data=b"x",
                         timeout=30).status_code == 404
    assert requests.get(base + "inbound/onelab-101", headers=auth, timeout=30).status_code == 404
    assert requests.get(base + "courses", timeout=30).status_code in (302, 401, 403)
    hub = Hub(p.url)
    assert hub.login("amy", p.passwords["amy"])
    amy_auth = {"Authorization": f"token {hub.token_for('amy')}"}
    for method in ("DELETE", "PUT", "GET"):  # no way to change, remove or read submissions
        r = requests.request(method, base + f"submit/{COURSE}/{ASSIGNMENT}", headers=amy_auth,
                             timeout=30)
        assert r.status_code == 405, (method, r.status_code)
    pulled = requests.get(base + f"pull/{COURSE}", headers=amy_auth, timeout=30)
    assert pulled.status_code == 200
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(pulled.content), mode="r:gz") as tar:
        names = tar.getnames()
    assert not any("inbound" in n or "ben" in n for n in names), names
    feedback = [n for n in names if "feedback/" in n and n.endswith(".html")]
    assert len(feedback) == 1, names  # amy's one graded submission's feedback, no one else's
    # nbgrader's CLI in amy's container knows only amy's own submissions
    ctr = p.container("amy")
    res = ctr.exec_run(["bash", "-c", f"nbgrader list --inbound --course {COURSE} 2>&1; "
                                      f"nbgrader list --cached --course {COURSE} 2>&1"],
                       user="1000", environment={"HOME": "/home/learner"},
                       workdir="/home/learner")
    assert "ben" not in res.output.decode()
    # in a learner's container: no exchange folder of anyone else, no hub state
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
    while status("teacher", "onelab-101") != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert status("teacher", "onelab-101") == 200
    assert status("tina", "other") == 200
    assert status("tina", "onelab-101") in (403, 404)
    assert status("teacher", "other") in (403, 404)
    assert status("amy", "onelab-101") in (403, 404)


def test_a_submission_the_exchange_never_acknowledged_is_not_shown_as_submitted(cycle):
    p, _ = cycle
    if "amy" not in p.passwords:
        pytest.skip("needs the cycle's learners (run with the module)")
    ctr = p.container("amy")

    def run(cmd: str):
        return ctr.exec_run(["bash", "-c", cmd], user="1000",
                            environment={"HOME": "/home/learner"}, workdir="/home/learner")

    before = run("nbgrader list --cached 2>&1").output.decode()
    res = run("ONELAB_EXCHANGE_URL=http://127.0.0.1:9/ nbgrader submit 02-fit-a-line "
              "--course onelab-101 "
              "2>&1")
    out = res.output.decode()
    assert res.exit_code != 0 and "cannot be reached" in out, out
    after = run("nbgrader list --cached 2>&1").output.decode()
    assert after.count(ASSIGNMENT) == before.count(ASSIGNMENT), (before, after)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_killing_the_hub_mid_submission_loses_nothing_acknowledged(cycle):
    import os
    import signal
    import socket

    from hub.exchange_store import ExchangeStore

    p, _ = cycle
    if "amy" not in p.passwords:
        pytest.skip("needs the cycle's learners (run with the module)")
    store = ExchangeStore(p.state_dir / "exchange")
    acknowledged = {s.path.name: (s.path / NOTEBOOK).read_bytes()
                    for s in store.submissions(COURSE, ASSIGNMENT)}
    assert len(acknowledged) >= 2
    hub = Hub(p.url)
    assert hub.login("amy", p.passwords["amy"])
    token = hub.token_for("amy")
    # a submission half way up when the hub and its exchange die
    port = int(p.env["ONELAB_HUB__PORT"])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /services/onelab-exchange/api/submit/{COURSE}/{ASSIGNMENT} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\n"
                  "Content-Type: application/gzip\r\nContent-Length: 5000000\r\n\r\n").encode()
                 + b"\x1f\x8b" + b"x" * 1_000_000)
    time.sleep(1)
    hub_pid = int((p.state_dir / "jupyterhub.pid").read_text())
    for pid in [*_children(hub_pid), hub_pid]:
        os.kill(pid, signal.SIGKILL)
    sock.close()
    time.sleep(1)
    p.cli("up", "--detach", timeout=180)
    after = {s.path.name: (s.path / NOTEBOOK).read_bytes()
             for s in store.submissions(COURSE, ASSIGNMENT)}
    assert after == acknowledged  # every acknowledged submission whole, nothing half-written
    out = p.cli("assignment", "collect", COURSE, ASSIGNMENT).stdout
    assert "collected 2 submission(s)" in out
    # and learners go on: amy's server outlived the hub, and she can submit again
    hub = Hub(p.url)
    assert hub.login("amy", p.passwords["amy"])
    amy = hub.server("amy", hub.token_for("amy"))
    deadline = time.monotonic() + 60
    while True:
        r = amy.request("POST", "assignments/submit",
                        data={"course_id": COURSE, "assignment_id": ASSIGNMENT})
        if r.status_code == 200 and r.json().get("success") or time.monotonic() > deadline:
            break
        time.sleep(2)  # the exchange service starts with the hub
    assert r.status_code == 200 and r.json().get("success"), r.text[:1000]
    assert len(store.submissions(COURSE, ASSIGNMENT, learner="amy")) == 2


def test_killing_the_learners_container_mid_submission_leaves_it_whole_or_absent(cycle):
    from hub.exchange_store import ExchangeStore

    p, _ = cycle
    if "ben" not in p.passwords:
        pytest.skip("needs the cycle's learners (run with the module)")
    store = ExchangeStore(p.state_dir / "exchange")
    before = {s.path.name for s in store.submissions(COURSE, ASSIGNMENT, learner="ben")}
    ctr = p.container("ben")
    # 40 MB of data beside the notebook makes the upload last a moment
    ctr.exec_run(["bash", "-c", f"head -c 40000000 /dev/urandom > "
                                f"/home/learner/{COURSE}/{ASSIGNMENT}/big.bin"], user="1000")
    ctr.exec_run(["bash", "-c", f"cd /home/learner && nbgrader submit {ASSIGNMENT} "
                                f"--course {COURSE} > /tmp/submit.log 2>&1"],
                 user="1000", environment={"HOME": "/home/learner"}, detach=True)
    time.sleep(1.0)
    ctr.kill()
    time.sleep(2)
    after = store.submissions(COURSE, ASSIGNMENT, learner="ben")
    new = [s for s in after if s.path.name not in before]
    assert len(new) <= 1
    for sub in new:  # if the exchange acknowledged it before the kill, it is whole
        assert (sub.path / "big.bin").stat().st_size == 40_000_000
        assert (sub.path / NOTEBOOK).exists() and (sub.path / "timestamp.txt").exists()
    hidden = list((p.state_dir / "exchange" / COURSE / "inbound" / "ben").rglob(".incoming-*"))
    assert all(not h.name.startswith(s.path.name) for h in hidden for s in after)
    # ben's server comes back; it lists as submitted nothing the exchange does not hold (a
    # receipt lost with the container can leave one held there and not listed: never the reverse)
    hub = p.login("ben")
    hub.stop("ben")
    hub.start("ben")
    hub.wait_ready("ben")
    server = hub.server("ben", hub.token_for("ben"))
    listed = _tab(server)
    subs = [x for a in listed if a["status"] == "submitted" for x in a["submissions"]]
    assert len(before) <= len(subs) <= len(after), (subs, after)


def test_the_formgraders_buttons_release_into_the_exchange(cycle):
    p, _ = cycle
    for name in ("teacher", "amy"):
        if name not in p.passwords:
            p.add_learner(name)
    hub = Hub(p.url)
    assert hub.login("teacher", p.passwords["teacher"])
    auth = {"Authorization": f"token {hub.token_for('teacher')}"}
    api = f"{p.url}services/formgrader-{COURSE}/formgrader/api/assignment/01-numbers"
    deadline = time.monotonic() + 60
    while True:  # the formgrader starts with the hub
        r = requests.post(f"{api}/assign", headers=auth, timeout=120)  # "Generate"
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200 and r.json()["success"], r.text[:2000]
    r = requests.post(f"{api}/release", headers=auth, timeout=120)  # "Release"
    assert r.status_code == 200 and r.json()["success"], r.text[:2000]
    status = requests.get(api, headers=auth, timeout=60).json()
    assert status["releaseable"] and status["status"] == "released", status
    # a learner of the course sees it in the Assignments tab
    amy = p.login("amy")
    amy.start("amy")
    amy.wait_ready("amy")
    server = amy.server("amy", amy.token_for("amy"))
    listed = {(a["assignment_id"], a["status"]) for a in _tab(server)}
    assert ("01-numbers", "released") in listed, listed
