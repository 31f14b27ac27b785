"""A learner's whole assignment, in Chromium, as they take it: log in, open the Assignments
panel from JupyterLab's left sidebar, fetch, answer in the notebook, validate, submit; the
instructor collects, grades and returns feedback with `onelab`; the learner sees the score and
opens the feedback, all in the browser. Screenshots of each step are kept. Not one request of
the browser leaves the machine. Real hub, learner container, exchange, nbgrader, Chromium."""

from __future__ import annotations

import re
import shutil
from urllib.parse import urlsplit

import pytest

from onelab.course import courses_dir
from tests.browser.chromium import LOCAL, korean_page, log_in_to_lab
from tests.conftest import ARTIFACTS, start_platform, stop_platform

pytestmark = [pytest.mark.browser, pytest.mark.integration]

COURSE, ASSIGNMENT, NOTEBOOK = "onelab-101", "01-numbers", "numbers.ipynb"
MEAN = "def mean(xs):\n    return sum(xs) / len(xs)"
STD = "def std(xs):\n    m = mean(xs)\n    return (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5"


@pytest.fixture
def classroom(docker_ready, tmp_path):
    courses = tmp_path / "courses"
    shutil.copytree(courses_dir() / COURSE, courses / COURSE)  # the example course, as shipped
    (courses / COURSE / "learners.csv").write_text("username,full_name\nyuna,김유나\n")
    p = start_platform(tmp_path, ONELAB_COURSES_DIR=str(courses))
    yield p
    stop_platform(p)


@pytest.fixture
def page():
    yield from korean_page(1400, 900)


def shot(page, step: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"assignments-{step}.png"))


def item(page):
    return page.locator(f"#onelab-assignments li[data-assignment='{ASSIGNMENT}']")


def wait_status(page, status: str, timeout: float = 60_000) -> None:
    page.wait_for_selector(f"#onelab-assignments li[data-assignment='{ASSIGNMENT}']"
                           f"[data-status='{status}']", timeout=timeout)


def answer(page, index: int, code: str) -> None:
    """Replace a cell's text as a learner would: click into it, select all, type; and look
    that it is there, as a learner would (on a busy machine a click can land before the
    editor takes keys, and the keys go nowhere)."""
    editor = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")
    first = code.splitlines()[0]
    for _ in range(5):
        editor.click()
        page.wait_for_timeout(300)
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(code)
        text = editor.inner_text()
        if first in text and "NotImplementedError" not in text:
            return
        page.wait_for_timeout(1000)
    raise AssertionError(f"cell {index} did not take the answer: {editor.inner_text()!r}")


def test_learner_fetches_validates_submits_and_reads_feedback_in_the_browser(classroom, page):
    p = classroom
    p.cli("assignment", "release", COURSE, ASSIGNMENT)
    p.add_learner("yuna", "yuna-pass-1")

    log_in_to_lab(page, p.url, "yuna", "yuna-pass-1")

    # one click: the sidebar's Assignments tab
    tab = page.locator(".jp-SideBar [data-id='onelab-assignments']")
    tab.click()
    wait_status(page, "not_fetched")
    row = item(page)
    assert "숫자 다루기" in row.inner_text()  # the course spec's Korean title
    assert "마감" in row.inner_text() or "Due" in row.inner_text()
    shot(page, "1-released")

    row.locator("button", has_text=re.compile("가져오기|Fetch")).click()
    wait_status(page, "fetched")
    shot(page, "2-fetched")

    # the second click: open the notebook, answer, save
    row.locator("button.onelab-open").first.click()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator, .jp-Notebook", timeout=60_000)
    answer(page, 4, MEAN)
    answer(page, 7, STD)
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-current .jp-mod-dirty')",
                           timeout=30_000)
    shot(page, "3-answered")

    row.locator("button.onelab-validate").first.click()
    note = page.locator("#onelab-assignments .onelab-note-ok")
    note.wait_for(timeout=180_000)
    assert "✓" in note.inner_text()
    shot(page, "4-validated")

    row.locator("button.jp-mod-accept", has_text=re.compile("제출|Submit")).click()
    page.locator(".jp-Dialog button.jp-mod-accept").click()
    wait_status(page, "submitted", timeout=120_000)
    assert re.search(r"제출함|Submitted", item(page).inner_text())
    shot(page, "5-submitted")

    # the instructor's side: they collect with `onelab`, then grade and return the feedback
    # from the course dashboard in their own browser
    assert "yuna" in p.cli("assignment", "collect", COURSE, ASSIGNMENT).stdout
    staff_grades_and_returns_feedback_in_the_browser(p, page.context.browser)

    page.locator("#onelab-assignments .onelab-refresh").click()
    wait_status(page, "graded")
    assert re.search(r"5(\.0)? / 5(\.0)?", item(page).inner_text())  # both tests pass: 5 of 5
    shot(page, "6-graded")
    item(page).locator("button", has_text=re.compile("피드백 가져오기|Fetch feedback")).click()
    feedback = item(page).locator("button.onelab-feedback")
    feedback.first.wait_for(timeout=60_000)
    feedback.first.click()
    frame = page.frame_locator(".jp-HTMLViewer iframe, iframe").first
    frame.locator("body").wait_for(timeout=60_000)
    assert "sum(xs) / len(xs)" in frame.locator("body").inner_text(timeout=30_000)
    shot(page, "7-feedback")

    # the class home after login says the same, and one click leads back to the panel
    page.goto(f"{p.url}hub/home")
    row = page.locator(f".onelab-course[data-course='{COURSE}'] tr[data-assignment='{ASSIGNMENT}']")
    row.wait_for(timeout=30_000)
    assert "숫자 다루기" in row.inner_text() and re.search(r"점수 5 / 5", row.inner_text())
    shot(page, "8-home")
    page.click("#onelab-open-assignments")
    page.wait_for_url("**/lab?onelab=assignments", timeout=60_000)
    wait_status(page, "graded")

    # what the instructor collected is what the browser submitted
    collected = p.state_dir / "courses" / COURSE / "submitted" / "yuna" / ASSIGNMENT / NOTEBOOK
    assert "sum(xs) / len(xs)" in collected.read_text()
    assert len(page.requests) > 50  # the whole journey was recorded
    # data: and blob: URLs stay in the browser; everything else must be this machine
    outside = [u for u in page.requests if urlsplit(u).scheme not in ("data", "blob")
               and urlsplit(u).hostname not in LOCAL]
    assert not outside, f"the browser reached beyond this machine: {outside[:5]}"
    learner_is_kept_out_of_staff_pages(p, page)


def staff_grades_and_returns_feedback_in_the_browser(p, browser) -> None:
    """The instructor's class home and course dashboard: the counts, the buttons (the CLI's
    code, in the course's grading service) and the score chart, in Korean."""
    p.add_learner("instructor", "instructor-pass-1")  # the course spec's instructor
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="ko-KR")
    staff = ctx.new_page()
    staff.requests = []
    staff.on("request", lambda r: staff.requests.append(r.url))
    staff.on("dialog", lambda d: d.accept())  # "return the feedback? learners see scores"
    staff.goto(f"{p.url}hub/login?next=%2Fhub%2Fhome")
    staff.fill("input[name=username]", "instructor")
    staff.fill("input[name=password]", "instructor-pass-1")
    staff.click("input[type=submit], button[type=submit]")
    staff.wait_for_url("**/hub/home", timeout=60_000)
    home = staff.locator(f".onelab-teaching[data-course='{COURSE}']")
    assert "내가 가르치는 과목" in staff.inner_text("body")
    row = home.locator(f"tr[data-assignment='{ASSIGNMENT}']")
    assert row.locator(".onelab-submitted").inner_text().strip() == "1 / 1"
    staff.screenshot(path=str(ARTIFACTS / "assignments-staff-1-home.png"))

    home.locator("a.onelab-dashboard").click()
    staff.wait_for_url(f"**/hub/onelab/courses/{COURSE}", timeout=30_000)
    card = staff.locator(f".onelab-assignment-card[data-assignment='{ASSIGNMENT}']")
    assert card.locator(".onelab-submitted strong").inner_text().strip() == "1 / 1"
    assert card.locator(".onelab-graded strong").inner_text().strip() == "0 / 1"

    def act(action: str) -> str:
        staff.evaluate("window.onelabBefore = true")
        card.locator(f"button.onelab-action[data-action='{action}']").click()
        # the job ends, and the page reloads with the course's new counts and its report
        staff.wait_for_function("() => !window.onelabBefore && "
                                "document.querySelector('#onelab-job[data-state]')",
                                timeout=600_000)
        message = staff.inner_text("#onelab-job")
        assert staff.get_attribute("#onelab-job", "data-state") == "done", message
        return message

    assert "채점 1건, 실패 0건" in act("grade")
    assert card.locator(".onelab-graded strong").inner_text().strip() == "1 / 1"
    bars = card.locator(".onelab-chart .onelab-bar")
    counts = {b.get_attribute("data-label"): int(b.get_attribute("data-count"))
              for b in bars.all()}
    assert counts == {"0": 0, "1": 0, "2": 0, "3": 0, "4": 0, "5": 1}  # yuna's 5 of 5
    assert card.locator(".onelab-chart rect").nth(5).bounding_box()["height"] > 50  # drawn
    staff.screenshot(path=str(ARTIFACTS / "assignments-staff-2-graded.png"))
    assert "yuna" in act("feedback")
    assert card.locator(".onelab-returned strong").inner_text().strip() == "1"
    staff.screenshot(path=str(ARTIFACTS / "assignments-staff-3-returned.png"))
    outside = [u for u in staff.requests if urlsplit(u).scheme not in ("data", "blob")
               and urlsplit(u).hostname not in LOCAL]
    assert not outside, f"the staff's browser reached beyond this machine: {outside[:5]}"
    ctx.close()


def learner_is_kept_out_of_staff_pages(p, page) -> None:
    """403 from the dashboard and its actions, and no staff tools on the learner's home."""
    response = page.goto(f"{p.url}hub/onelab/courses/{COURSE}")
    assert response.status == 403
    page.goto(f"{p.url}hub/home")
    assert page.locator(".onelab-teaching, .onelab-dashboard, .onelab-action").count() == 0
    status = page.evaluate("""(url) => fetch(url, {method: "POST", credentials: "same-origin",
        headers: {"X-XSRFToken": window.jhdata.xsrf_token}}).then(r => r.status)""",
        f"{p.url}hub/onelab/courses/{COURSE}/assignments/{ASSIGNMENT}/release")
    assert status == 403
