"""A course assistant gets grading tools, not the server.

Through the hub, as an assistant of the shipped course onelab-101: the grading service
(formgrader) refuses kernels and terminals and shows nothing outside the course directory; the
container it runs in is non-root, has no Docker socket, none of the platform's files and none
of its secrets; and the same assistant still generates, releases, collects and autogrades with
the grading UI's buttons. A learner's notebook whose outputs carry script, opened by the
assistant in the grading UI in Chromium, runs none of it. Real hub, Docker Engine, nbgrader,
Chromium.
"""

from __future__ import annotations

import shutil
import time

import pytest
import requests

from onelab import dockerdoor
from onelab.course import courses_dir
from onelab.hubclient import Hub
from tests.conftest import ARTIFACTS, start_platform, stop_platform, tcp_listener

pytestmark = pytest.mark.integration

COURSE, ASSIGNMENT, NOTEBOOK = "onelab-101", "01-numbers", "numbers.ipynb"


@pytest.fixture(scope="module")
def course(docker_ready, tmp_path_factory):
    root = tmp_path_factory.mktemp("staff")
    courses = root / "courses"
    shutil.copytree(courses_dir() / COURSE, courses / COURSE)
    (courses / COURSE / "learners.csv").write_text("username,full_name\namy,Amy\n")
    spec = courses / COURSE / "course.yml"
    spec.write_text(spec.read_text().replace("instructors: [instructor]",
                                             "instructors: [teacher]"), encoding="utf-8")
    p = start_platform(root, ONELAB_COURSES_DIR=str(courses))
    for name in ("ta", "amy"):  # `ta` is the shipped course's assistant
        p.add_learner(name)
    yield p
    stop_platform(p)


def _token(p, name: str) -> str:
    hub = Hub(p.url)
    assert hub.login(name, p.passwords[name])
    return hub.token_for(name)


def _fg(p, ta: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, f"{p.url}services/formgrader-{COURSE}/{path}",
                            headers={"Authorization": f"token {ta}"}, timeout=300,
                            allow_redirects=False, **kw)


def _wait_for_formgrader(p, ta: str) -> None:
    deadline = time.monotonic() + 90  # it starts with the hub
    while time.monotonic() < deadline:
        if _fg(p, ta, "GET", "formgrader/api/assignments").status_code == 200:
            return
        time.sleep(1)
    raise AssertionError("the formgrader did not answer")


def test_the_assistant_gets_no_kernel_no_terminal_and_nothing_outside_the_course(course):
    p = course
    ta = _token(p, "ta")
    _wait_for_formgrader(p, ta)
    r = _fg(p, ta, "POST", "api/kernels", json={"name": "python3"})
    assert r.status_code == 403 and "kernels are off" in r.text
    assert _fg(p, ta, "POST", "api/terminals").status_code in (403, 404)
    assert _fg(p, ta, "GET", "api/terminals").status_code in (403, 404)
    top = _fg(p, ta, "GET", "api/contents/").json()
    names = {c["name"] for c in top["content"]}
    assert "source" in names and not names & {"exchange", "jupyterhub.sqlite", "courses"}
    # a way up and out, encoded so that no client tidies it away before the server sees it
    for path in ("api/contents/%2E%2E", "api/contents/%2E%2E/exchange",
                 "api/contents/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "files/%2E%2E%2Fjupyterhub.sqlite"):
        r = _fg(p, ta, "GET", path)
        inside = r.status_code == 302 and r.headers["location"].startswith(
            f"/services/formgrader-{COURSE}/")  # tidied up to a path inside the service
        assert inside or r.status_code in (400, 403, 404), (path, r.status_code)
        assert "root:" not in r.text and "SQLite" not in r.text


def test_the_grading_service_runs_confined_with_no_platform_file_or_secret(course):
    p = course
    s = p.settings()
    from hub.formgrader import container_name

    ctr = dockerdoor.find_container(container_name(s, COURSE))
    assert ctr is not None and ctr.status == "running"
    host = ctr.attrs["HostConfig"]
    assert ctr.attrs["Config"]["User"] == "1000:1000"
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
    assert host["Memory"] > 0 and host["PidsLimit"] > 0
    mounts = {m["Destination"]: m for m in ctr.attrs["Mounts"]}
    assert set(mounts) == {"/course", "/etc/onelab/formgrader"}
    assert mounts["/etc/onelab/formgrader"]["RW"] is False
    assert mounts["/course"]["Source"] == str(s.state_dir / "courses" / COURSE)
    # nothing of the platform's secrets or settings in its environment
    env = dict(e.split("=", 1) for e in ctr.attrs["Config"]["Env"])
    secrets = [(s.state_dir / f).read_text().strip()
               for f in ("admin-api-token", "proxy-auth-token", "jupyterhub_cookie_secret")
               if (s.state_dir / f).exists()]
    assert secrets and not any(v in env.values() for v in secrets)
    # the course, the exchange's URL and where the image keeps OneLab's translations: no more
    assert not {k for k in env if k.startswith("ONELAB_")} - {
        "ONELAB_COURSE", "ONELAB_EXCHANGE_URL", "ONELAB_LOCALE_DIR"}
    assert not env.get("ONELAB_LOCALE_DIR", "/opt").startswith(str(s.state_dir))
    code, out = ctr.exec_run(["python3", "-c", (
        "import os\n"
        "found = []\n"
        "for d, dirs, files in os.walk('/'):\n"
        "    if d in ('/proc', '/sys', '/dev'):\n"
        "        dirs[:] = []\n"
        "    found += [f for f in files if f in ('admin-api-token', 'proxy-auth-token',\n"
        "                                        'jupyterhub.sqlite', 'docker.sock')]\n"
        "print(os.getuid(), os.path.exists('/var/run/docker.sock'), bool(found),\n"
        f"      os.path.exists({str(s.state_dir)!r}))")], user="1000")
    assert code == 0 and out.decode().split() == ["1000", "False", "False", "False"], out


def test_the_service_may_manage_its_own_course_only(course):
    p = course
    s = p.settings()
    from hub.formgrader import container_name

    name = container_name(s, COURSE)
    probe = ("import os, urllib.request as u\n"
             "base = os.environ['ONELAB_EXCHANGE_URL'] + 'api/staff/'\n"
             "auth = {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}\n"
             "for course in ('other', os.environ['ONELAB_COURSE']):\n"
             "    try:\n"
             "        print(u.urlopen(u.Request(base + course + '/released', headers=auth)).status)\n"
             "    except Exception as e:\n"
             "        print(getattr(e, 'code', e))\n")
    code, out = dockerdoor.exec_in(name, ["python3", "-c", probe])
    assert code == 0 and out.split() == ["404", "200"], out
    # a learner's token manages nothing
    amy = _token(p, "amy")
    r = requests.get(f"{p.url}services/onelab-exchange/api/staff/{COURSE}/released",
                     headers={"Authorization": f"token {amy}"}, timeout=30)
    assert r.status_code == 404


HOSTILE_MD = ("My answer <img src=x onerror=\"localStorage.setItem('pwned','md');"
              "document.title='PWNED'\">")
HOSTILE_CODE = (
    "from IPython.display import HTML, Javascript, display\n"
    "display(HTML(\"<b>hi</b><script>localStorage.setItem('pwned','html');"
    "fetch('http://127.0.0.1:LISTENER/html')</script>"
    "<img src=x onerror=\\\"fetch('http://127.0.0.1:LISTENER/img')\\\">\"))\n"
    "display(Javascript(\"localStorage.setItem('pwned','js');"
    "fetch('http://127.0.0.1:LISTENER/js')\"))\n")


@pytest.fixture(scope="module")
def listener():
    """Where the learner's script would send what it stole."""
    with tcp_listener("127.0.0.1") as found:
        yield found


@pytest.fixture(scope="module")
def graded(course, listener):
    """the assistant releases with the buttons; amy submits a notebook whose outputs carry script; ta
    collects and autogrades with the buttons."""
    p = course
    port, _ = listener
    ta = _token(p, "ta")
    _wait_for_formgrader(p, ta)
    api = f"formgrader/api/assignment/{ASSIGNMENT}"
    for step in ("assign", "release"):  # "Generate", "Release"
        r = _fg(p, ta, "POST", f"{api}/{step}")
        assert r.status_code == 200 and r.json()["success"], (step, r.text[:1500])

    hub = p.login("amy")
    hub.start("amy")
    hub.wait_ready("amy")
    amy = hub.server("amy", hub.token_for("amy"))
    r = amy.request("POST", "assignments/fetch",
                    data={"course_id": COURSE, "assignment_id": ASSIGNMENT})
    assert r.status_code == 200, r.text[:500]
    path = f"api/contents/{COURSE}/{ASSIGNMENT}/{NOTEBOOK}"
    model = amy.request("GET", path).json()
    cells = model["content"]["cells"]
    cells.insert(1, {"cell_type": "markdown", "metadata": {}, "source": HOSTILE_MD})
    cells.insert(2, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": HOSTILE_CODE.replace("LISTENER", str(port))})
    r = amy.request("PUT", path, json={"type": "notebook", "format": "json",
                                       "content": model["content"]})
    assert r.status_code in (200, 201), r.text[:500]
    r = amy.request("POST", "assignments/submit",
                    data={"course_id": COURSE, "assignment_id": ASSIGNMENT})
    assert r.status_code == 200 and r.json().get("success"), r.text[:1000]

    r = _fg(p, ta, "POST", f"{api}/collect")  # "Collect"
    assert r.status_code == 200 and r.json()["success"], r.text[:1500]
    r = _fg(p, ta, "POST", f"formgrader/api/submission/{ASSIGNMENT}/amy/autograde")
    assert r.status_code == 200 and r.json()["success"], r.text[:3000]
    subs = _fg(p, ta, "GET", f"formgrader/api/submitted_notebooks/{ASSIGNMENT}/numbers").json()
    assert [s["student"] for s in subs] == ["amy"]
    return ta, subs[0]


def test_the_assistant_releases_collects_and_autogrades_with_the_buttons(course, graded):
    p = course
    _, sub = graded
    # graded in OneLab's sandbox: the notebook ran there (its outputs are in the gradebook's
    # notebook), and the service itself started no kernel
    assert sub["max_score"] > 0 and sub["score"] is not None
    s = p.settings()
    from hub.formgrader import container_name

    code, out = dockerdoor.exec_in(container_name(s, COURSE), ["python3", "-c", (
        "import json; nb = json.load(open('/course/autograded/amy/01-numbers/numbers.ipynb'))\n"
        "print(sum(1 for c in nb['cells'] if c.get('execution_count')))")])
    assert code == 0 and int(out.strip()) > 0, out


@pytest.mark.browser
def test_learner_script_does_not_run_when_staff_open_the_submission(course, graded, listener):
    from playwright.sync_api import sync_playwright

    from tests.browser.chromium import ARGS, CHROMIUM

    p = course
    _, sub = graded
    _, hits = listener
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{p.url}hub/login")
        page.fill("input[name=username]", "ta")
        page.fill("input[name=password]", p.passwords["ta"])
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url("**/hub/**", timeout=60_000)
        page.goto(f"{p.url}services/formgrader-{COURSE}/formgrader/submissions/{sub['id']}/",
                  timeout=120_000)
        try:
            page.wait_for_selector("text=My answer", timeout=60_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "formgrader-hostile-submission.png"),
                            full_page=True)
            (ARTIFACTS / "formgrader-hostile-submission.html").write_text(page.content())
        page.wait_for_timeout(3000)  # time for any script that would run
        page.screenshot(path=str(ARTIFACTS / "formgrader-hostile-submission.png"), full_page=True)
        pwned = page.evaluate("() => window.localStorage.getItem('pwned')")
        title = page.title()
        html = page.content()
        browser.close()
    assert pwned is None and title != "PWNED"
    assert hits == []  # no request from the learner's script reached anything
    assert "<b>hi</b>" in html  # plain formatting is still shown
