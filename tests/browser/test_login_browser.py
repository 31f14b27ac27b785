"""A learner logs in with a real browser (Debian Chromium via Playwright) and gets JupyterLab."""

import pytest

from tests.browser.chromium import korean_page
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def page():
    yield from korean_page()


def test_learner_logs_in_and_sees_jupyterlab(platform, page):
    ARTIFACTS.mkdir(exist_ok=True)
    platform.add_learner("chaewon", "browser-pass-1")
    page.goto(f"{platform.url}hub/login")
    page.fill("input[name=username]", "chaewon")
    page.fill("input[name=password]", "wrong-password")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_selector(".login_error", timeout=30_000)  # (Korean: hub/templates/login.html)

    page.fill("input[name=username]", "chaewon")
    page.fill("input[name=password]", "browser-pass-1")
    page.click("input[type=submit], button[type=submit]")
    # spawn page -> the learner's own JupyterLab, launcher and all
    page.wait_for_url("**/user/chaewon/lab**", timeout=180_000)
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
    page.wait_for_timeout(1500)  # let the launcher's icons settle before the picture
    page.screenshot(path=str(ARTIFACTS / "browser-jupyterlab.png"))
    assert "/user/chaewon/lab" in page.url
    # Korean first: the language pack is active (the File menu is 파일)
    assert page.locator(".lm-MenuBar-itemLabel", has_text="파일").count() == 1
