"""Korean first: every string has its Korean, every page's string is in the catalogue, and each
person's language choice is decided and kept as docs/i18n.md says."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application, RequestHandler
from traitlets.config import Config

from hub import preferences
from hub.preferences import COOKIE, Choice, PageLanguage, Preferences, decide, owner_mark
from onelab import i18n
from onelab.settings import load

REPO = Path(__file__).resolve().parents[2]
POT = REPO / "onelab" / "locale" / "onelab.pot"
OURS = REPO / "hub" / "templates"
STOCK = REPO / ".venv" / "share" / "jupyterhub" / "templates"
REDO = ("run `.venv/bin/pybabel extract && .venv/bin/pybabel update` and write the Korean "
        "(docs/i18n.md)")


def ids(path: Path) -> set[str]:
    with path.open("rb") as fh:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}


# ---- the catalogue -------------------------------------------------------------------------

def test_every_message_has_its_korean():
    missing = i18n.missing("ko")
    assert not missing, f"no Korean (or only a fuzzy guess) for {missing}: write it in " \
                        f"{i18n.po_path('ko').relative_to(REPO)}"


def test_korean_keeps_each_placeholder():
    """%(name)s (Babel's own check) and {name} (str.format) alike."""
    ko = i18n.catalog("ko")
    problems = [f"{m.id!r}: {errors}" for m, errors in ko.check()]
    braces = re.compile(r"\{[^{}]*\}")
    problems += [f"{m.id!r} -> {m.string!r}" for m in ko if m.id and isinstance(m.id, str)
                 and sorted(braces.findall(m.id)) != sorted(braces.findall(m.string or ""))]
    assert not problems, problems


def test_the_catalogue_holds_every_string_of_the_code_and_templates(tmp_path, monkeypatch):
    """Extract afresh, exactly as a maintainer would, and compare: a string added to a template
    or the code without its catalogue entry fails here."""
    monkeypatch.chdir(REPO)  # pybabel reads pyproject.toml's [tool.babel.*] from here
    fresh = tmp_path / "fresh.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "-o", str(fresh)])
    extracted = ids(fresh)
    assert "Log in" in extracted and "Stop server" in extracted  # the templates were read
    for name, path in (("onelab.pot", POT), ("ko/onelab.po", i18n.po_path("ko"))):
        have = ids(path)
        assert not extracted - have, f"{name} lacks {sorted(extracted - have)}: {REDO}"
        assert not have - extracted, f"{name} has strings no code uses {sorted(have - extracted)}: {REDO}"


def test_no_compiled_catalogue_is_committed():
    assert not list((REPO / "onelab" / "locale").rglob("*.mo"))


def test_translations_in_python():
    _ = i18n.gettext("ko")
    assert _("Log in") == "로그인"
    assert i18n.gettext("en")("Log in") == "Log in"
    assert i18n.translations("ko_KR.UTF-8").gettext("Stop server") == "서버 중지"
    assert i18n.normalize("EN-us") == "en" and i18n.normalize("fr") is None


# ---- the pages -----------------------------------------------------------------------------

def hub_env() -> Environment:
    """Templates found as JupyterHub 6.1.1 finds them (app.py init_tornado_settings), with the
    extension configure_language gives it."""
    loader = ChoiceLoader([PrefixLoader({"templates": FileSystemLoader([str(STOCK)])}, "/"),
                           FileSystemLoader([str(OURS), str(STOCK)])])
    return Environment(loader=loader, autoescape=True, extensions=["onelab.i18n.JinjaI18n"])


def page_ns(lang: str, user=None, **extra) -> dict:
    langs = [{"code": c, "name": i18n.ENDONYMS[c], "current": c == lang, "href": f"?lang={c}"}
             for c in i18n.LANGUAGES]
    return {"base_url": "/hub/", "prefix": "/", "user": user, "login_url": "/hub/login",
            "login_service": "", "logout_url": "/hub/logout", "version_hash": "", "services": [],
            "parsed_scopes": set(), "expanded_scopes": set(), "xsrf": "x", "xsrf_token": "x",
            "onelab_lang": lang, "onelab_languages": langs,
            "static_url": lambda path, include_version=True: f"/hub/static/{path}", **extra}


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


LEARNER = SimpleNamespace(name="minji", json_escaped_name="minji",
                          spawner=SimpleNamespace(options_form=None))
ERROR = {"message": "", "message_html": "", "extra_error_html": ""}
PAGES = {
    "login.html": {"authenticator_login_url": "/hub/login?next=", "username": "",
                   "authenticator": SimpleNamespace(request_otp=False),
                   "login_error": "Invalid username or password"},
    "home.html": {"user": LEARNER, "default_server": SimpleNamespace(active=True),
                  "url": "/user/minji/", "allow_named_servers": False},
    "spawn_pending.html": {"user": LEARNER, "progress_url": "/hub/api/users/minji/server/progress"},
    "not_running.html": {"user": LEARNER, "failed": True, "failed_message": "Timeout",
                         "server_name": "", "spawn_url": "/hub/spawn/minji",
                         "implicit_spawn_seconds": 0},
    "error.html": {"status_code": 403, "status_message": "Forbidden", **ERROR},
    "404.html": {"status_code": 404, "status_message": "Not Found", **ERROR},
    "token.html": {"user": LEARNER, "api_tokens": [], "oauth_clients": [],
                   "token_expires_in_max_seconds": 0},
    "spawn.html": {"user": LEARNER, "for_user": LEARNER, "url": "/hub/spawn/minji",
                   "spawner_options_form": "", "error_message": ""},
    "stop_pending.html": {"user": LEARNER},
    "logout.html": {},
}
KOREAN_OF = {"login.html": ["로그인", "사용자 이름", "비밀번호", "사용자 이름 또는 비밀번호가 올바르지 않습니다."],
             "home.html": ["서버 중지", "내 서버 열기", "홈", "토큰", "로그아웃"],
             "spawn_pending.html": ["서버를 시작하고 있습니다."],
             "not_running.html": ["서버를 시작하지 못했습니다", "다시 시도"],
             "error.html": ["403 : 접근 권한 없음"], "404.html": ["이 주소에는 페이지가 없습니다."],
             "token.html": ["새 API 토큰 발급", "없음"]}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_speaks_korean_and_english(name):
    env = hub_env()
    ko = env.get_template(name).render(**page_ns("ko", **PAGES[name]))
    en = env.get_template(name).render(**page_ns("en", **PAGES[name]))
    assert '<html lang="ko">' in ko and '<html lang="en">' in en
    assert re.search(r"<title>[^<]*OneLab</title>", ko)
    for text in KOREAN_OF.get(name, []):
        assert text in ko, f"{name} lacks {text!r} in Korean"
    shown = visible_text(ko)
    for english in ("Sign in", "JupyterHub", "Jupyter has lots of moons", "Stop My Server",
                    "Logout", "Username:", "Your server is starting up"):
        assert english not in shown, f"{name} shows {english!r} in Korean"
    assert "한국어" in shown and "English" in shown  # the switch, on every page
    assert ko != en


def test_a_translated_message_escapes_what_it_carries():
    html = hub_env().from_string("{% trans name=who %}Starting the server of {{ name }}{% endtrans %}"
                                 ).render(who="<b>x</b>", onelab_lang="ko")
    assert html == "&lt;b&gt;x&lt;/b&gt; 사용자의 서버를 시작합니다"


def test_pages_never_fetch_from_elsewhere():
    """Offline classrooms: no CDN, no web font, no outside script (links to read are fine)."""
    for path in [*OURS.glob("*.html"), *(REPO / "hub" / "static").glob("*")]:
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path
        assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text), path


# ---- whose language --------------------------------------------------------------------------

def test_the_newest_choice_wins():
    old, new = Choice("ko", 1000), Choice("en", 2000)
    assert decide("ko", None, None, None).language == "ko"
    assert decide("en", None, None, None).language == "en"  # hub.language
    assert decide("ko", None, None, new).language == "en"  # the login page remembers
    # chosen on the login page, then logged in: it becomes theirs and the cookie is marked
    d = decide("ko", "minji", old, new)
    assert d.language == "en" and d.store == new and d.cookie == Choice("en", 2000, owner_mark("minji"))
    # chosen since in another browser: the stored choice replaces this browser's cookie
    d = decide("ko", "minji", Choice("en", 3000), Choice("ko", 2000, owner_mark("minji")))
    assert d.language == "en" and d.store is None and d.cookie == Choice("en", 3000, owner_mark("minji"))
    # nothing new: nothing to write
    same = Choice("en", 2000, owner_mark("minji"))
    assert decide("ko", "minji", Choice("en", 2000), same) == preferences.Decision("en")


def test_a_shared_computer_does_not_pass_one_persons_choice_to_the_next():
    theirs = Choice("en", 5000, owner_mark("jisoo"))
    assert decide("ko", None, None, theirs).language == "en"  # the login page after jisoo
    d = decide("ko", "minji", None, theirs)
    assert d.language == "ko" and d.store is None and d.forget_cookie
    d = decide("ko", "minji", Choice("ko", 10), theirs)
    assert d.language == "ko" and d.cookie == Choice("ko", 10, owner_mark("minji"))


def test_cookie_values_round_trip_and_garbage_is_ignored():
    for c in (Choice("ko", 1), Choice("en", 1712345678901, owner_mark("a"))):
        assert Choice.from_cookie(c.cookie_value()) == c
    for bad in (None, "", "en", "fr.1", "en.x", "en.1.a.b", "<script>.1"):
        assert Choice.from_cookie(bad) is None


def test_choices_are_kept_in_the_state_dir(tmp_path):
    prefs = Preferences(tmp_path)
    assert prefs.choice("minji") is None
    prefs.remember("minji", Choice("en", 42))
    assert Preferences(tmp_path).choice("minji") == Choice("en", 42)
    assert (tmp_path / "preferences.json").stat().st_mode & 0o077 == 0
    prefs.remember("jisoo", Choice("ko", 43))
    assert prefs.choice("minji") == Choice("en", 42) and prefs.choice("jisoo") == Choice("ko", 43)
    (tmp_path / "preferences.json").write_text("{not json")
    assert Preferences(tmp_path).choice("minji") is None  # a broken file is not a broken page


def test_language_of_a_user_for_other_code(tmp_path):
    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)})
    assert preferences.language("minji", s) == "ko"
    Preferences(tmp_path).remember("minji", Choice("en", 1))
    assert preferences.language("minji", s) == "en"
    s_en = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path), "ONELAB_HUB__LANGUAGE": "en"})
    assert preferences.language("jisoo", s_en) == "en"


def test_configure_language_wires_the_hub(tmp_path):
    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)})
    c = Config()
    c.JupyterHub.template_vars = {"announcement": "hi"}
    preferences.configure_language(c, s)
    tv = c.JupyterHub.template_vars
    assert tv["announcement"] == "hi" and callable(tv["onelab_lang"])
    assert tv["onelab_lang"](None) == "ko"  # outside a request: the hub's language
    assert c.JupyterHub.jinja_environment_options["extensions"] == ["onelab.i18n.JinjaI18n"]
    (transform,) = c.JupyterHub.tornado_settings["transforms"]
    assert callable(transform)


def test_configure_points_the_hub_at_onelabs_pages(tmp_path):
    from hub.configure import configure_hub

    c = Config()
    configure_hub(c, load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)}), "172.30.0.1")
    (templates,) = c.JupyterHub.template_paths
    assert Path(templates, "login.html").is_file()
    assert Path(c.JupyterHub.logo_file).read_text().lstrip().startswith("<svg")


# ---- a request through Tornado, as JupyterHub's handlers do it ------------------------------

class LanguageThroughTornado(AsyncHTTPTestCase):
    """A Tornado application built the way JupyterHub builds its own (transforms from
    tornado_settings, template_vars called with the user while rendering)."""

    def get_app(self) -> Application:
        self.state = Path(os.environ.get("TMPDIR", "/tmp")) / f"onelab-i18n-{os.getpid()}-{id(self)}"
        self.prefs = Preferences(self.state)
        pages = PageLanguage(self.prefs, "ko")
        env = hub_env()
        test = self

        class Page(RequestHandler):
            def get(self) -> None:
                name = self.get_query_argument("as", None)
                user = SimpleNamespace(name=name) if name else None
                ns = {k: v(user) for k, v in pages.template_vars().items()}
                test.switch = ns["onelab_languages"]
                self.write(env.from_string("{{ _('Log in') }}").render(**ns))

        return Application([(r"/page", Page)], transforms=[pages.transform])

    def tearDown(self) -> None:
        super().tearDown()
        for f in self.state.glob("*"):
            f.unlink()
        if self.state.exists():
            self.state.rmdir()

    def get(self, url: str, cookie: str | None = None):
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        r = self.fetch(url, headers=headers)
        set_cookie = [h for h in r.headers.get_list("Set-Cookie") if h.startswith(COOKIE + "=")]
        value = set_cookie[0].split(";")[0].split("=", 1)[1] if set_cookie else None
        return r.body.decode(), value, set_cookie

    def test_korean_by_default_and_the_switch_sets_a_cookie(self):
        assert self.get("/page")[0] == "로그인"
        body, cookie, headers = self.get("/page?lang=en&next=%2Fhub%2Fhome")
        assert body == "Log in" and cookie.startswith("en.")
        assert "HttpOnly" in headers[0] and "Path=/" in headers[0] and "SameSite=Lax" in headers[0]
        # the switch keeps the page's other arguments
        assert {s["code"]: s["href"] for s in self.switch}["ko"] == "?next=%2Fhub%2Fhome&lang=ko"
        assert self.get("/page", cookie)[0] == "Log in"  # the login page before login

    def test_the_login_pages_choice_follows_the_user_to_another_browser(self):
        _, cookie, _ = self.get("/page?lang=en")
        body, claimed, _ = self.get("/page?as=minji", cookie)  # logged in with that cookie
        assert body == "Log in" and claimed.endswith("." + owner_mark("minji"))
        assert self.prefs.choice("minji").language == "en"
        assert self.get("/page?as=minji")[0] == "Log in"  # a fresh browser, after login
        # back to Korean in that fresh browser: the first browser follows
        self.get("/page?as=minji&lang=ko")
        body, refreshed, _ = self.get("/page?as=minji", claimed)
        assert body == "로그인" and refreshed.startswith("ko.")

    def test_the_next_person_on_a_shared_computer_gets_their_own(self):
        _, cookie, _ = self.get("/page?lang=en")
        _, claimed, _ = self.get("/page?as=jisoo", cookie)
        body, _, headers = self.get("/page?as=minji", claimed)
        assert body == "로그인" and "Max-Age=0" in headers[0]
        assert self.prefs.choice("minji") is None


def test_the_home_page_shows_a_learners_coursework():
    """The class home: the learner's courses from hub/classroom.py's views, in their language."""
    work = [{"id": "c1", "title": {"ko": "기초", "en": "Basics"}, "assignments": [
        {"id": "hw1", "title": {"ko": "과제 하나", "en": "HW one"}, "due": "2026-12-04T14:59:00+00:00",
         "submissions": 1, "late": False, "feedback": True, "score": 4.5, "max_score": 5.0},
        {"id": "hw2", "title": {"ko": "과제 둘", "en": "HW two"}, "due": None,
         "submissions": 0, "late": False, "feedback": False, "score": None, "max_score": None}]}]
    page = dict(PAGES["home.html"], onelab_coursework=work)
    ko = visible_text(hub_env().get_template("home.html").render(**page_ns("ko", **page)))
    assert "기초" in ko and "과제 하나" in ko and "점수 4.5 / 5" in ko
    assert "마감일 없음" in ko and "아직 제출하지 않음" in ko and "내 과제 열기" in ko
    en = visible_text(hub_env().get_template("home.html").render(**page_ns("en", **page)))
    assert "Basics" in en and "HW two" in en and "Score 4.5 / 5" in en
