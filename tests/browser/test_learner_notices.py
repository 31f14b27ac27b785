"""A learner whose work ran out of memory is told so in their JupyterLab, in Korean: the whole
server (killed, started again by the hub) in a dialog after they reload, a kernel alone in a
warning. Real hub, learner containers, the OOM killer and Chromium."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit

import pytest

from tests.browser.chromium import LOCAL, korean_page, log_in_to_lab
from tests.conftest import ARTIFACTS
from tests.integration.test_classroom import running_kernel
from tests.integration.test_faults import learner_container, started_again, until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

HOG = ("hog = []\n"
       "while True:\n"
       "    hog.append(bytearray(64 * 2**20))")


@pytest.fixture
def page():
    yield from korean_page()


def test_a_learner_is_told_in_korean_why_their_work_stopped(platform, page):
    ARTIFACTS.mkdir(exist_ok=True)
    platform.add_learner("haneul", "notice-pass-1")
    log_in_to_lab(page, platform.url, "haneul", "notice-pass-1")

    # a kernel alone past the limit: the server lives, the learner gets a warning in the corner
    hub, _token, kernel = running_kernel(platform, "haneul")
    first = learner_container(platform, "haneul")
    with contextlib.suppress(Exception):  # the kernel dies mid-execution
        kernel.execute(HOG, timeout=30)
    warning = page.get_by_text("커널이 이 서버의 메모리", exact=False)
    warning.first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "browser-kernel-oom.png"))
    assert learner_container(platform, "haneul").id == first.id

    # the whole server: the learner's code makes the server process the OOM killer's pick
    _hub, _token, kernel = running_kernel(platform, "haneul")
    with contextlib.suppress(Exception):  # the connection goes with the container
        kernel.execute("open('/proc/1/oom_score_adj', 'w').write('1000')\n" + HOG, timeout=60)

    until("the learner's server started again",
          lambda: started_again(platform, hub, "haneul", first.id), timeout=120)
    time.sleep(3)  # the new server answering through the proxy
    page.reload()  # what a learner does when JupyterLab lost its server
    page.wait_for_selector(".jp-Launcher, .jp-Dialog", timeout=120_000)
    dialog = page.locator(".jp-Dialog", has_text="메모리")
    dialog.wait_for(timeout=30_000)
    text = dialog.inner_text()
    page.screenshot(path=str(ARTIFACTS / "browser-server-oom.png"))
    assert "다시 시작되었습니다" in text and "저장한 파일은 모두 그대로" in text
    assert "GiB" in text  # the limit that was hit, in words
    dialog.get_by_role("button").first.click()
    page.wait_for_timeout(500)
    assert page.locator(".jp-Dialog", has_text="메모리").count() == 0
    page.reload()  # shown once: not again on the next load
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    page.wait_for_timeout(6000)  # longer than the page's 5 s check
    assert page.locator(".jp-Dialog", has_text="메모리").count() == 0
    outside = {urlsplit(u).hostname for u in page.requests} - LOCAL - {None}
    assert not outside, outside
