"""Each person's language on the hub's pages: Korean unless they (or the hub) chose otherwise.

The 한국어 / English switch on every page is a plain link that adds ``?lang=en`` to the page's
own address. The choice is kept twice:

- in the browser, as the ``onelab-lang`` cookie (so the login page speaks it before anyone has
  logged in), with the time it was made;
- on the server, per user, in ``state_dir/preferences.json`` (so it follows the person to
  another browser), also with its time.

**The newest choice wins.** When a logged-in person's page is rendered, a cookie choice newer
than their stored one (made on the login page, or in this browser since) becomes theirs; a
stored one that is newer (made in another browser) replaces the cookie. Once a person has
claimed a cookie's choice it carries a mark of them, so on a shared classroom computer the next
person to log in does not inherit it. Without any choice the hub's ``hub.language`` applies.

How this reaches JupyterHub 6.1.1, which has no per-request hook for its templates:

- ``c.JupyterHub.tornado_settings["transforms"]``: JupyterHub builds its Tornado
  ``Application(handlers, **tornado_settings)``, so this is Tornado's own ``transforms``
  argument. Tornado makes one :class:`LanguageTransform` per request before the handler runs;
  it reads the cookie and ``?lang=`` into a context variable (the handler's task inherits it)
  and writes the cookie back onto the response.
- ``c.JupyterHub.template_vars``: JupyterHub calls these with the current user while it builds
  every page's namespace; they decide ``onelab_lang`` (the page's language) and the switch's
  links.
- ``c.JupyterHub.jinja_environment_options``: :class:`onelab.i18n.JinjaI18n` translates
  ``{% trans %}`` into ``onelab_lang``.

Nothing of JupyterHub's is patched. :func:`language` gives a user's language to other code
(the spawner can pass it to JupyterLab).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.web import OutputTransform
from traitlets.config import Config

from onelab import i18n
from onelab.settings import Settings

log = logging.getLogger(__name__)

COOKIE = "onelab-lang"
QUERY = "lang"
FILE = "preferences.json"
COOKIE_DAYS = 365


@dataclass(frozen=True)
class Choice:
    """A language someone chose, when (ms since the epoch, server clock) and, in a cookie,
    whose it is once a logged-in person has claimed it (:func:`owner_mark`)."""

    language: str
    when: int
    owner: str | None = None

    def cookie_value(self) -> str:
        return ".".join([self.language, str(self.when), *([self.owner] if self.owner else [])])

    @classmethod
    def from_cookie(cls, value: str | None) -> Choice | None:
        parts = (value or "").split(".")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            return None
        lang = i18n.normalize(parts[0])
        if lang is None:
            return None
        return cls(lang, int(parts[1]), parts[2] if len(parts) == 3 and parts[2] else None)


def owner_mark(username: str) -> str:
    """What a cookie carries of its owner: enough to tell people apart, not their name."""
    return hashlib.sha256(f"onelab-lang:{username}".encode()).hexdigest()[:16]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Decision:
    language: str
    store: Choice | None = None  # remember this for the user
    cookie: Choice | None = None  # set the browser's cookie to this
    forget_cookie: bool = False  # another person's choice: take it off this browser


def decide(default: str, username: str | None, stored: Choice | None,
           cookie: Choice | None) -> Decision:
    """The page's language, and what to remember where (the rule in the module docstring)."""
    if username is None:
        return Decision(cookie.language if cookie else default)
    mark = owner_mark(username)
    mine = cookie if cookie and cookie.owner in (None, mark) else None
    candidates = [c for c in (stored, mine) if c is not None]
    if not candidates:
        return Decision(default, forget_cookie=cookie is not None)
    newest = max(candidates, key=lambda c: c.when)  # a tie keeps the stored one (listed first)
    claimed = Choice(newest.language, newest.when, mark)
    return Decision(newest.language,
                    store=newest if newest is not stored else None,
                    cookie=claimed if claimed != cookie else None)


class Preferences:
    """Per-user preferences in one JSON file in the state directory (mode 0600), written
    atomically; read again only when the file changed."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE
        self._seen: tuple[int, int] | None = None
        self._users: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._users = None, {}
            return self._users
        if self._seen != (st.st_mtime_ns, st.st_size):
            try:
                users = json.loads(self.path.read_text()).get("users", {})
            except (OSError, ValueError, AttributeError):
                log.warning("%s is unreadable; language choices start afresh", self.path)
                users = {}
            self._seen, self._users = (st.st_mtime_ns, st.st_size), users
        return self._users

    def choice(self, username: str) -> Choice | None:
        entry = self._load().get(username) or {}
        lang = i18n.normalize(entry.get("language"))
        when = entry.get("chosen")
        return Choice(lang, int(when)) if lang and isinstance(when, int) else None

    def remember(self, username: str, choice: Choice) -> None:
        users = dict(self._load())
        users[username] = {"language": choice.language, "chosen": choice.when}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"users": users}, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
        self._seen = None


@dataclass
class RequestLanguage:
    """What one request says about language: its ``?lang=`` and its cookie; filled in by the
    page's rendering with the decision, which the transform writes back as a cookie."""

    request: HTTPServerRequest
    cookie: Choice | None = None
    decisions: dict[str | None, Decision] = field(default_factory=dict)
    set_cookie: Choice | None = None
    forget_cookie: bool = False


_current: contextvars.ContextVar[RequestLanguage | None] = contextvars.ContextVar(
    "onelab_request_language", default=None)


class LanguageTransform(OutputTransform):
    """Made by Tornado for each request before its handler runs (the handler's task copies the
    context, so it sees :data:`_current`); adds the language cookie to the response."""

    def __init__(self, request: HTTPServerRequest, pages: PageLanguage) -> None:
        super().__init__(request)
        self.pages = pages
        state = RequestLanguage(request, Choice.from_cookie(_cookie(request, COOKIE)))
        asked = request.query_arguments.get(QUERY) if request.method in ("GET", "HEAD") else None
        lang = i18n.normalize(asked[-1].decode("ascii", "replace")) if asked else None
        if lang:  # the switch was used: this browser's newest choice
            state.cookie = state.set_cookie = Choice(lang, now_ms())
        self.state = state
        _current.set(state)

    def transform_first_chunk(self, status_code: int, headers: HTTPHeaders, chunk: bytes,
                              finishing: bool) -> tuple[int, HTTPHeaders, bytes]:
        s = self.state
        if s.set_cookie or s.forget_cookie:
            headers.add("Set-Cookie", self.pages.cookie_header(s.set_cookie, s.request))
        return status_code, headers, chunk


def _cookie(request: HTTPServerRequest, name: str) -> str | None:
    try:
        morsel = request.cookies.get(name)
    except Exception:  # noqa: BLE001 - a malformed Cookie header must not break a page
        return None
    return morsel.value if morsel else None


class PageLanguage:
    """The hub's side of the switch: decides each page's language and keeps the choices."""

    def __init__(self, preferences: Preferences, default: str, cookie_path: str = "/") -> None:
        self.preferences = preferences
        self.default = i18n.normalize(default) or i18n.DEFAULT
        self.cookie_path = cookie_path

    def transform(self, request: HTTPServerRequest) -> LanguageTransform:
        return LanguageTransform(request, self)

    def decide(self, user: Any) -> Decision:
        """The current page's language for ``user`` (JupyterHub's User, or None), remembering
        a newer choice for them and updating the cookie; once per request and user."""
        state = _current.get()
        name = getattr(user, "name", None)
        if state is None:  # rendered outside a request (tests, tools)
            return Decision(self.language(name) if name else self.default)
        if name in state.decisions:
            return state.decisions[name]
        stored = self.preferences.choice(name) if name else None
        d = decide(self.default, name, stored, state.cookie)
        if d.store and name:
            try:
                self.preferences.remember(name, d.store)
            except OSError as e:
                log.warning("Could not keep %s's language: %s", name, e)
        if d.cookie or d.forget_cookie:
            state.set_cookie, state.forget_cookie = d.cookie, d.forget_cookie
        state.decisions[name] = d
        return d

    def language(self, username: str) -> str:
        choice = self.preferences.choice(username)
        return choice.language if choice else self.default

    # JupyterHub calls each template variable's callable with the current user.
    def page_language(self, user: Any) -> str:
        return self.decide(user).language

    def switch_links(self, user: Any) -> list[dict[str, Any]]:
        """The switch: each language's own name, its link (this page with ``?lang=``) and
        whether it is the page's."""
        current = self.decide(user).language
        state = _current.get()
        query = parse_qsl(state.request.query, keep_blank_values=True) if state else []
        kept = [(k, v) for k, v in query if k != QUERY]
        return [{"code": code, "name": i18n.ENDONYMS[code], "current": code == current,
                 "href": "?" + urlencode([*kept, (QUERY, code)])} for code in i18n.LANGUAGES]

    def template_vars(self) -> dict[str, Any]:
        return {i18n.TEMPLATE_VAR: self.page_language, "onelab_languages": self.switch_links}

    def cookie_header(self, choice: Choice | None, request: HTTPServerRequest) -> str:
        jar: SimpleCookie = SimpleCookie()
        jar[COOKIE] = choice.cookie_value() if choice else ""
        m = jar[COOKIE]
        m["path"] = self.cookie_path
        m["max-age"] = str(COOKIE_DAYS * 86400 if choice else 0)
        m["samesite"] = "Lax"
        m["httponly"] = True
        if request.protocol == "https":
            m["secure"] = True
        return m.OutputString()


def configure_language(c: Config, settings: Settings) -> None:
    """Korean (or ``hub.language``) pages with a per-person switch; see the module docstring."""
    pages = PageLanguage(Preferences(settings.state_dir), settings.hub.language,
                         cookie_path=settings.hub.base_url)
    hub = c.JupyterHub
    hub.template_vars = {**(hub.get("template_vars") or {}), **pages.template_vars()}
    options = dict(hub.get("jinja_environment_options") or {})
    options["extensions"] = [*options.get("extensions", []), "onelab.i18n.JinjaI18n"]
    hub.jinja_environment_options = options
    tornado = dict(hub.get("tornado_settings") or {})
    tornado["transforms"] = [*tornado.get("transforms", []), pages.transform]
    hub.tornado_settings = tornado


def language(username: str, settings: Settings | None = None) -> str:
    """``ko`` or ``en``: the language ``username`` last chose, else the hub's ``hub.language``.
    For whoever starts their JupyterLab (e.g. as its locale)."""
    if settings is None:
        from onelab.settings import load

        settings = load()
    return PageLanguage(Preferences(settings.state_dir), settings.hub.language).language(username)
