"""A class starting at once (issue #15), on the real hub and Docker Engine: a course's scheduled
session warms its learners' servers by itself; a crowd of cold starts is let through one at a
time (spawner.parallel_starts: 1 here), each waiting learner seeing their place on the spawn
progress and none failing; `onelab class warm` starts a class ahead of time, the real idle
culler (with the hub's own config) leaves the warm class alone and culls the rest, a warmed
learner logs in to their own running server and home; `onelab class cool` stops the class and
keeps the homes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from hub.services import CULLER_CONFIG
from onelab import dockerdoor
from onelab.course import courses_dir
from onelab.hubclient import Kernel
from tests.browser.chromium import korean_page
from tests.conftest import ARTIFACTS, start_platform, stop_platform
from tests.integration.test_faults import learner_container, until
from tests.integration.test_gpu_claims import start_and_listen

pytestmark = pytest.mark.integration

CROWD = ["amy", "ben", "cho"]
AHEAD = ["fay", "gus", "hal", "jon"]  # start just before ivy, who watches her place in Chromium
WARMED = ["dan", "eun"]
SESSION = ["sol", "tae"]
PROBE = ("import json, os, sys; print(json.dumps({'torch': 'torch' in sys.modules, 'names': "
         "sorted(k for k in globals() if not k.startswith('_')), 'cwd': os.getcwd(), "
         "'count': get_ipython().execution_count}))")


@pytest.fixture(scope="module")
def plat(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    courses = root / "courses"
    src = courses_dir() / "onelab-101"
    shutil.copytree(src, courses / "onelab-101")
    spec = courses / "onelab-101" / "course.yml"
    spec.write_text(spec.read_text().replace("learners_csv: learners.csv",
                                             f"learners: [{', '.join(CROWD + WARMED + AHEAD + ['ivy'])}]"))
    # a second course whose session starts in 5 minutes: inside classes.warm_before (10 min)
    shutil.copytree(src, courses / "session-101")
    spec = courses / "session-101" / "course.yml"
    start = (datetime.now(UTC) + timedelta(minutes=5)).astimezone().isoformat(timespec="seconds")
    spec.write_text(spec.read_text().replace("id: onelab-101", "id: session-101")
                    .replace("learners_csv: learners.csv", f"learners: [{', '.join(SESSION)}]")
                    + f"sessions:\n  - {{start: \"{start}\", minutes: 30}}\n")
    p = start_platform(root, ONELAB_COURSES_DIR=str(courses), ONELAB_SPAWNER__PARALLEL_STARTS="1",
                       ONELAB_CLASSES__CHECK_EVERY="5",
                       ONELAB_SPAWNER__PREWARM='["numpy", "pandas", "torch"]')
    yield p
    stop_platform(p)


def ready(p, name: str) -> bool:
    return bool(((p.admin().user(name) or {}).get("servers") or {}).get("", {}).get("ready"))


def test_a_scheduled_session_warms_its_class_by_itself(plat):
    sessions = plat.state_dir / "class-sessions.json"
    until("the session's class warmed by the scheduler",
          lambda: all(ready(plat, n) for n in SESSION) and sessions.exists(), timeout=240)
    warm = json.loads((plat.state_dir / "class-warm.json").read_text())
    assert set(SESSION) <= set(warm)
    assert all(warm[n] > datetime.now(UTC).timestamp() + 30 * 60 for n in SESSION)  # to its end
    done = json.loads(sessions.read_text())
    assert [k.split("@")[0] for k in done] == ["session-101"]


def test_a_crowd_of_cold_starts_waits_its_turn_and_none_fails(plat):
    for name in CROWD:
        plat.add_learner(name)
    hubs = {n: plat.login(n) for n in CROWD}
    seen: dict[str, list[str]] = {}
    at_once = threading.Barrier(len(CROWD))

    def start(name: str) -> None:
        at_once.wait()
        seen[name] = start_and_listen(plat, hubs[name], name)

    threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in CROWD]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(ready(plat, n) for n in CROWD), seen
    queued = [n for n in CROWD if any("대기 순서" in m or "in the queue" in m
                                      for m in seen.get(n, []))]  # Korean by default
    assert len(queued) >= 1, seen  # one starts at a time: the others were told their place
    hub_log = (plat.state_dir / "logs" / "hub.log").read_text(errors="replace")
    assert "Many servers are starting" in hub_log or "대기 순서" in hub_log


def test_warm_the_culler_spares_the_class_and_cool_keeps_homes(plat):
    for name in WARMED:
        plat.add_learner(name)
    out = plat.cli("class", "warm", "onelab-101", "--users", ",".join(WARMED), "--minutes", "60",
                   timeout=400).stdout
    assert f"{len(WARMED)}/{len(WARMED)} ready" in out, out
    ids = {n: learner_container(plat, n).id for n in WARMED}

    # the idle culler with the hub's own config, and a one-second timeout: the crowd goes,
    # the warm class and the session's class stay
    token = plat.cli("token").stdout.strip().split()[-1]
    culler = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=1", "--cull-every=2",
         f"--config={CULLER_CONFIG}", f"--url={plat.url}hub/api"],
        env={**os.environ, "JUPYTERHUB_API_TOKEN": token,
             "ONELAB_WARM_FILE": str(plat.state_dir / "class-warm.json")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        until("the crowd culled", lambda: not any(ready(plat, n) for n in CROWD), timeout=90)
    finally:
        culler.terminate()
        _, err = culler.communicate(timeout=30)
    assert all(ready(plat, n) for n in WARMED + SESSION), err[-2000:]
    for n in WARMED + SESSION:
        assert f"Culling server {n} " not in err

    # a warmed learner logs in to their own server, already running, with their own home
    dan = plat.login("dan")
    r = dan.http.get(f"{plat.url}user/dan/lab", timeout=60)  # as the browser goes there
    assert r.status_code == 200 and r.url.endswith("/user/dan/lab"), (r.status_code, r.url)
    c = learner_container(plat, "dan")
    server = dan.server("dan", dan.token_for("dan"))
    files = server.request("GET", "api/contents")
    assert files.status_code == 200, files.text[:300]
    # the notebook's first kernel is the one started ahead: torch imported, a clean namespace
    until("the kernel started ahead", lambda: "waits for the learner" in
          c.logs().decode(errors="replace"), timeout=120)
    assert server.request("GET", "api/kernels").json() == []  # hidden until handed over
    s = server.request("POST", "api/sessions", json={
        "path": "notes.ipynb", "type": "notebook", "name": "notes.ipynb",
        "kernel": {"name": "python3"}}, timeout=120)
    assert s.status_code == 201, s.text[:300]

    def probe(kernel: Kernel) -> dict:
        out = kernel.execute(PROBE, timeout=120)
        kernel.shutdown()
        assert out.ok, out.error
        return json.loads(out.stdout.strip().splitlines()[-1])

    warm = probe(Kernel(server, s.json()["kernel"]["id"]))
    fresh = probe(server.start_kernel())  # the next one is started as usual
    assert warm.pop("torch") is True and fresh.pop("torch") is False
    assert warm == fresh, (warm, fresh)  # same names, count and working directory
    assert "handed over" in c.logs().decode(errors="replace")
    assert c.id == ids["dan"]
    homes = [m["Name"] for m in c.attrs["Mounts"] if m["Destination"] == "/home/learner"]
    assert homes == [f"{plat.prefix}-home-dan"]

    out = plat.cli("class", "cool", "onelab-101", "--users", ",".join(WARMED),
                   timeout=400).stdout
    assert f"{len(WARMED)} server(s) stopped, homes kept" in out, out
    assert not any(ready(plat, n) for n in WARMED)
    volumes = {v.name for v in dockerdoor.client().volumes.list()}
    assert {f"{plat.prefix}-home-{n}" for n in WARMED} <= volumes
    warm = json.loads((plat.state_dir / "class-warm.json").read_text())
    assert not set(WARMED) & set(warm)


@pytest.fixture
def page():
    yield from korean_page()


def test_the_spawn_page_shows_a_learners_place_in_the_queue(plat, page):
    """In Chromium, as the learner sees it: three servers start just before ivy logs in; one
    starts at a time, so her spawn page says her place in the queue, in Korean, and she
    reaches JupyterLab without any start failing."""
    password = plat.add_learner("ivy")
    admin = plat.admin()
    admin.add_users(AHEAD)
    for name in AHEAD:
        admin.start(name)
    page.goto(f"{plat.url}hub/login")
    page.fill("input[name=username]", "ivy")
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    # the spawn page's messages: the latest under the progress bar, every one in its event
    # log (the page may open after her place has moved on: the log has it from the start)
    page.wait_for_selector("#progress-log", state="attached", timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('#progress-log').textContent.includes('대기 순서')",
        timeout=120_000)
    log = page.text_content("#progress-log") or ""
    ARTIFACTS.mkdir(exist_ok=True)
    if "/spawn-pending/" in page.url:
        page.click("#progress-details summary")
        page.screenshot(path=str(ARTIFACTS / "class-start-queue.png"))
    assert "서버가 많이 시작되고 있습니다" in log and "한 번에 1개씩" in log, log
    page.wait_for_url("**/user/ivy/lab**", timeout=240_000)  # the page goes on by itself
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    for name in AHEAD:
        assert ready(plat, name)
