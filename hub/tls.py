"""The hub's side of HTTPS: behind a proxy that speaks TLS (onelab/tls.py), every cookie the hub
and the learners' servers set is Secure.

JupyterHub marks its login cookie Secure when it sees ``X-Forwarded-Proto: https``, which
configurable-http-proxy adds; but Tornado prefers a client's own ``X-Scheme`` header to it, and
the ``_xsrf`` cookie ignores the protocol altogether (measured on JupyterHub 6.1.1: the login
page's ``_xsrf`` came back without Secure). ``tornado_settings["cookie_options"]`` is where
JupyterHub 6 reads options for every cookie: its handlers, the ``_xsrf`` cookie (unless
``xsrf_cookie_kwargs`` is set) and, through ``JUPYTERHUB_COOKIE_OPTIONS``, each learner's
server's login cookie. A learner's server sets its own ``_xsrf`` cookie from Jupyter Server's
``xsrf_cookie_kwargs`` alone, which the image's jupyter_server_config.py makes Secure when
``JUPYTERHUB_COOKIE_OPTIONS`` asks for it.
"""

from __future__ import annotations

from traitlets.config import Config

from onelab.settings import Settings


def configure_tls(c: Config, settings: Settings) -> None:
    if not settings.hub.tls:
        return
    hub = c.JupyterHub
    tornado = dict(hub.get("tornado_settings") or {})
    tornado["cookie_options"] = {**tornado.get("cookie_options", {}), "secure": True}
    hub.tornado_settings = tornado
