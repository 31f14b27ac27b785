"""Errors an operator can act on.

Every error OneLab raises on purpose is a :class:`OneLabError` whose message is one line that
says what is wrong and what to do; the CLI prints it as ``onelab: <message>`` and exits 2, with
no traceback, in the command's language (``onelab.i18n.cli_language``).

An error the catalogue translates is raised with its English template, marked for extraction,
and the values apart::

    raise AccountError(N_("no user {name}"), name=name)

``str(e)`` is the English (what logs and tests read); ``e.translated(_)`` the same sentence in
the reader's language. An error raised with a finished string is shown as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OneLabError(Exception):
    """A problem the operator can fix; the message says how, in one line."""

    def __init__(self, message: str = "", /, **params: Any) -> None:
        self.template = message
        self.params = params
        super().__init__(self.translated(lambda text: text))

    def translated(self, gettext: Callable[[str], str]) -> str:
        """The message through ``gettext`` (``onelab.i18n.gettext(lang)``); a value that is an
        error itself (or a list of them, joined with "; ") is translated too."""
        if not self.params:
            return gettext(self.template) if self.template else ""

        def value(v: Any) -> Any:
            if isinstance(v, OneLabError):
                return v.translated(gettext)
            if isinstance(v, list) and v and all(isinstance(x, OneLabError) for x in v):
                return "; ".join(x.translated(gettext) for x in v)
            return v

        return gettext(self.template).format(**{k: value(v) for k, v in self.params.items()})


class SettingsError(OneLabError):
    """A setting is unknown or has a bad value."""


class DockerUnavailable(OneLabError):
    """No Docker Engine answers."""


class ImageMissing(OneLabError):
    """An image the platform needs has not been built."""
