"""OneLab's one message catalogue: Korean first, English second.

Every learner- and staff-facing string is written in English in the code and templates and
translated in ``onelab/locale/<lang>/LC_MESSAGES/onelab.po`` (GNU gettext). The catalogue is
read from the ``.po`` file and compiled in memory, so no binary ``.mo`` file is committed or
can go stale. ``ko`` is the default; ``en`` needs no file (the source strings are English).

In Python::

    from onelab import i18n

    _ = i18n.gettext(lang)
    _("Your server is starting.")          # marks the string for extraction too
    N_("Sign in")                           # marks only; translate later with _(...)

In a Jinja2 template, with :class:`JinjaI18n` among the environment's extensions, the page's
language is the template variable ``onelab_lang``::

    {% trans %}Sign in{% endtrans %}    {{ _("Home") }}    {% trans name=user.name %}Hi {{ name }}{% endtrans %}

A plain single-language environment can also take ``env.install_gettext_translations(
i18n.translations("ko"), newstyle=True)``.

Maintainers, from the repository root (the options are in ``pyproject.toml``'s
``[tool.babel.*]`` tables, the files to read in ``babel.cfg``)::

    .venv/bin/pybabel extract        # code and templates -> onelab/locale/onelab.pot
    .venv/bin/pybabel update         # onelab.pot -> onelab/locale/ko/LC_MESSAGES/onelab.po
    # then write the Korean of every new or fuzzy entry; tests/unit/test_i18n.py fails until
    # every msgid has a Korean msgstr that is not fuzzy. docs/i18n.md has the whole recipe.

Babel's extractor treats ``gettext("...")`` with a literal as a message, so call
``i18n.gettext(lang)`` with a variable, never ``i18n.gettext("ko")``, in extracted code.

The ``onelab`` command speaks the language :func:`cli_language` picks (``ONELAB_LANG``, else
the locale, else English); pages and notebooks, the reader's (Korean unless they choose).
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import pass_context
from jinja2.environment import Environment
from jinja2.ext import InternationalizationExtension
from jinja2.runtime import Context

DOMAIN = "onelab"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("ko", "en")
"""The languages OneLab speaks, in the order the language switch shows them."""
DEFAULT = "ko"
SOURCE = "en"
"""The language the msgids are written in: it needs no catalogue."""
ENDONYMS = {"ko": "한국어", "en": "English"}
"""Each language's name in itself, as the language switch shows it (never translated)."""
TEMPLATE_VAR = "onelab_lang"
"""The template variable that names a page's language for :class:`JinjaI18n`."""
ENV_LANG = "ONELAB_LANG"
"""The environment variable that chooses the ``onelab`` command's language (``ko``/``en``); the
hub also gives it to learners' servers. Not a setting: onelab.settings skips it."""


def normalize(value: str | None) -> str | None:
    """``ko``, ``ko-KR``, ``ko_KR.UTF-8``, ``EN`` ... -> ``ko`` / ``en``; anything else -> None."""
    if not value:
        return None
    lang = value.strip().replace("_", "-").split("-")[0].split(".")[0].lower()
    return lang if lang in LANGUAGES else None


def cli_language(environ: Mapping[str, str] | None = None) -> str:
    """The language of the ``onelab`` command: ``ONELAB_LANG`` when it names ``ko`` or ``en``;
    else the locale's, from the first of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set (as
    POSIX reads them), when it names ``ko`` or ``en``; else English.

    English and not Korean for C, POSIX, another language or no locale at all, unlike the
    pages: the command's readers are operators' shells, scripts and logs, and servers,
    containers and systemd units run with such a locale; what a script greps or a log keeps
    should not change with it. An operator whose own locale is Korean reads Korean, and
    ``ONELAB_LANG=en`` gives a Korean desktop English (as the test suite runs it)."""
    env = os.environ if environ is None else environ
    chosen = normalize(env.get(ENV_LANG))
    if chosen:
        return chosen
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(name):
            return normalize(env[name]) or SOURCE
    return SOURCE


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def catalog(lang: str) -> Catalog:
    """The language's ``.po`` file as a Babel catalogue (for tests and tools)."""
    with po_path(lang).open("rb") as fh:
        return read_po(fh, locale=lang, domain=DOMAIN)


@functools.cache
def translations(lang: str) -> NullTranslations:
    """gettext translations for ``lang`` (``ko``/``en``, or a locale such as ``ko_KR``),
    compiled in memory from the ``.po`` file. English and unknown languages get the source
    strings. Fuzzy entries are left out, as ``msgfmt`` would: a guess is not a translation."""
    lang = normalize(lang) or DEFAULT
    if lang == SOURCE and not po_path(lang).exists():
        return NullTranslations()
    buf = io.BytesIO()
    write_mo(buf, catalog(lang), use_fuzzy=False)
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


def N_(message: str) -> str:
    """Marks a string for the catalogue without translating it (translate it later, with the
    reader's language): tables of messages defined before anyone's language is known."""
    return message


def gettext(lang: str) -> Callable[[str], str]:
    """The ``_`` of one language: ``_ = gettext(lang); _("Sign in")``."""
    return translations(lang).gettext


def ngettext(lang: str) -> Callable[[str, str, int], str]:
    return translations(lang).ngettext


# Jinja2: the gettext callables read the language from the template being rendered, so one
# environment (JupyterHub has one for all requests) serves every learner in their own language.

def _context_lang(context: Context) -> str:
    return normalize(context.get(TEMPLATE_VAR)) or DEFAULT


@pass_context
def _jinja_gettext(context: Context, message: str) -> str:
    return translations(_context_lang(context)).gettext(message)


@pass_context
def _jinja_ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(_context_lang(context)).ngettext(singular, plural, n)


@pass_context
def _jinja_pgettext(context: Context, ctx: str, message: str) -> str:
    return str(translations(_context_lang(context)).pgettext(ctx, message))


@pass_context
def _jinja_npgettext(context: Context, ctx: str, singular: str, plural: str, n: int) -> str:
    return str(translations(_context_lang(context)).npgettext(ctx, singular, plural, n))


class JinjaI18n(InternationalizationExtension):
    """Jinja2's i18n extension (``{% trans %}``, ``_()``), translating into the language named
    by the template variable ``onelab_lang`` (Korean when a template has none).

    New-style gettext (values escaped, ``%(name)s`` placeholders) and trimmed ``{% trans %}``
    blocks (whitespace collapsed, as ``babel.cfg`` extracts them). Give it to an environment
    as ``extensions=["onelab.i18n.JinjaI18n"]``.
    """

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.policies["ext.i18n.trimmed"] = True
        # Jinja calls these through Context.call, which hands @pass_context functions the
        # template's context: that is how each page finds its own language. (Its type hints
        # only know plain gettext functions.)
        self._install_callables(
            _jinja_gettext, _jinja_ngettext, newstyle=True,  # type: ignore[arg-type]
            pgettext=_jinja_pgettext, npgettext=_jinja_npgettext,  # type: ignore[arg-type]
        )


def missing(lang: str = DEFAULT) -> list[str]:
    """Msgids of the language's catalogue that have no usable translation (empty or fuzzy)."""
    out = []
    for message in catalog(lang):
        if not message.id:
            continue  # the header
        strings: tuple[Any, ...] = (message.string if isinstance(message.string, tuple)
                                    else (message.string,))
        if message.fuzzy or not all(strings):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out
