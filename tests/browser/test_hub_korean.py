"""The hub's own pages in a real browser: Korean by default, OneLab's name and logo, a
한국어 / English switch whose choice survives logout and follows the learner to another browser,
and not one request that leaves the machine."""

from urllib.parse import urlsplit

import pytest

from tests.browser.chromium import ARGS, CHROMIUM, LOCAL
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Contexts:
    """Fresh browser contexts (one per 'computer'), every request of every page recorded."""

    def __init__(self, browser):
        self.browser, self.requests = browser, []

    def page(self):
        # An English-speaking browser: the hub's Korean comes from OneLab, not from the browser.
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
        page = ctx.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        return page

    def outside(self) -> list[str]:
        return [u for u in self.requests
                if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname not in LOCAL]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / f"hub-korean-{name}.png"), full_page=True)


def text(page) -> str:
    return page.locator("body").inner_text()


def log_in(page, name: str, password: str) -> None:
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/home", timeout=60_000)


def log_out(page, base: str) -> None:
    page.click("#logout")
    page.wait_for_url("**/hub/login**", timeout=60_000)
    assert page.url.startswith(base)


def test_hub_pages_are_korean_first_with_a_switch_that_follows_the_learner(platform, browser):
    base = platform.url
    hana = platform.add_learner("hana")
    seojun = platform.add_learner("seojun")
    login = f"{base}hub/login?next=%2Fhub%2Fhome"  # log in to the home page, no server start
    tabs = Contexts(browser)

    # -- a first computer: the login page is Korean, OneLab's, with no JupyterHub in sight
    page = tabs.page()
    page.goto(login)
    assert page.get_attribute("html", "lang") == "ko"
    assert page.title() == "로그인 - OneLab"
    assert page.locator("label[for=username_input]").inner_text() == "사용자 이름"
    assert page.locator("label[for=password_input]").inner_text() == "비밀번호"
    assert page.locator("#login_submit").get_attribute("value") == "로그인"
    logo = page.locator("#jupyterhub-logo img")
    assert logo.get_attribute("alt") == "OneLab" and logo.get_attribute("src") == "/hub/logo"
    assert logo.evaluate("img => img.naturalWidth") > 0  # the SVG is served and drawn
    for english in ("Sign in", "JupyterHub", "Username", "Password"):
        assert english not in text(page)
    shot(page, "login")

    page.fill("input[name=username]", "hana")
    page.fill("input[name=password]", "not-the-password")
    page.click("#login_submit")
    page.wait_for_selector("text=사용자 이름 또는 비밀번호가 올바르지 않습니다.", timeout=30_000)
    shot(page, "login-error")

    # -- English on the login page, before logging in; it stays after login and logout
    page.click("#onelab-language >> text=English")
    page.wait_for_selector("#login_submit[value='Log in']")
    assert page.get_attribute("html", "lang") == "en"
    assert "lang=" not in page.url  # the switch leaves no trace in the address bar
    assert "next=" in page.url  # ... but keeps where the login goes
    assert page.locator("label[for=username_input]").inner_text() == "Username"
    shot(page, "login-english")
    log_in(page, "hana", hana)
    assert page.locator("#start").inner_text().strip() == "Start my server"
    assert "Log out" in text(page)
    shot(page, "home-english")
    log_out(page, base)
    assert page.locator("#login_submit").get_attribute("value") == "Log in"  # the cookie
    page.goto(login)
    log_in(page, "hana", hana)
    assert page.locator("#start").inner_text().strip() == "Start my server"

    # -- the next learner on the same computer gets Korean, not hana's English
    log_out(page, base)
    page.goto(login)
    log_in(page, "seojun", seojun)
    assert page.get_attribute("html", "lang") == "ko"
    assert page.locator("#start").inner_text().strip() == "내 서버 시작"
    for korean in ("홈", "토큰", "로그아웃", "서버가 실행 중이 아닙니다."):
        assert korean in text(page)
    assert "Start My Server" not in text(page) and "Logout" not in text(page)
    shot(page, "home")

    # -- another computer: Korean until hana logs in, then her English
    other = tabs.page()
    other.goto(login)
    assert other.locator("#login_submit").get_attribute("value") == "로그인"
    log_in(other, "hana", hana)
    assert other.get_attribute("html", "lang") == "en"
    assert other.locator("#start").inner_text().strip() == "Start my server"
    shot(other, "home-english-other-browser")
    # back to Korean there: the hub's other pages follow
    other.click("#onelab-language >> text=한국어")
    other.wait_for_selector("#start:has-text('내 서버 시작')")
    other.goto(f"{base}user/hana/lab")  # her server is not running
    other.wait_for_selector("text=서버가 실행 중이 아닙니다", timeout=30_000)
    assert other.locator("#start").inner_text().strip() == "내 서버 시작"
    shot(other, "not-running")
    other.goto(f"{base}hub/no-such-page")
    assert "이 주소에는 페이지가 없습니다." in text(other)
    assert "Jupyter has lots of moons" not in text(other)
    shot(other, "404")
    other.goto(f"{base}hub/token")
    other.click("text=새 API 토큰 발급")
    other.wait_for_selector("#token-area >> text=새 API 토큰")
    other.reload()  # the new token is listed, its times in Korean (moment's Korean locale)
    other.wait_for_selector("#api-tokens-table .time-col >> text=/전$/", timeout=30_000)
    assert "ago" not in text(other)
    shot(other, "token")

    # -- and on the first computer hana's next visit is Korean too (the newest choice wins)
    log_out(page, base)
    page.goto(login)
    log_in(page, "hana", hana)
    assert page.locator("#start").inner_text().strip() == "내 서버 시작"

    assert tabs.requests, "no request was recorded"
    assert not tabs.outside(), f"requests left the machine: {tabs.outside()}"
