"""The hub's side of HTTPS: behind a proxy that speaks TLS (onelab/tls.py), every cookie the hub
sets is Secure.

JupyterHub already marks its cookies Secure when it sees ``X-Forwarded-Proto: https``, which
configurable-http-proxy adds; but Tornado prefers a client's own ``X-Scheme`` header to it, so
a request can talk the hub into a plain cookie. ``cookie_options`` makes Secure unconditional
(the ``_xsrf`` cookie takes the same options).
"""

from __future__ import annotations

from traitlets.config import Config

from onelab.settings import Settings


def configure_tls(c: Config, settings: Settings) -> None:
    if not settings.hub.tls:
        return
    hub = c.JupyterHub
    hub.cookie_options = {**(hub.get("cookie_options") or {}), "secure": True}
