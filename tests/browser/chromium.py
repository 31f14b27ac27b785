"""How the browser tests start Chromium: Debian's, never a downloaded one, with nothing of its
own reaching out (../shared/MACHINE.md), and which hosts a page may talk to."""

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-gpu"]
LOCAL = {"127.0.0.1", "localhost"}
"""The only hosts a page of the platform may send a request to."""


def korean_page(width: int = 1280, height: int = 800):
    """A page of a fresh headless Chromium in Korean; every URL it requests is kept in
    ``page.requests`` (what a test checks against LOCAL). A generator for a pytest fixture."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = browser.new_context(viewport={"width": width, "height": height}, locale="ko-KR")
        page = ctx.new_page()
        page.requests = []
        page.on("request", lambda r: page.requests.append(r.url))
        yield page
        browser.close()


def log_in_to_lab(page, url: str, name: str, password: str) -> None:
    """The learner's way in: the hub's login form, then their own JupyterLab's launcher."""
    page.goto(f"{url}hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(f"**/user/{name}/lab**", timeout=180_000)
    page.wait_for_selector(".jp-Launcher", timeout=120_000)
