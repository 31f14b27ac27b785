"""Authentication: local accounts (offline classrooms) or Generic OAuth/OIDC (online SSO).

The local authenticator is our own, on JupyterHub's ``Authenticator``: NativeAuthenticator 1.3
breaks logins on JupyterHub 6 (its LoginHandler lacks ``statsd``). It uses JupyterHub's stock
login form and checks passwords against :mod:`hub.accounts`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Integer, Unicode, default
from traitlets.config import Config

from hub import roles
from hub._config import extend
from hub.accounts import Accounts
from onelab.settings import Settings


class LocalAccountsAuthenticator(Authenticator):
    """Username + password checked against the ``onelab_accounts`` table (scrypt hashes)."""

    db_url = Unicode(help="Database holding onelab_accounts (the hub's own).").tag(config=True)
    min_password_length = Integer(8).tag(config=True)

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # Only accounts that exist in the table can authenticate at all; having one is the
        # permission to log in. Accounts are made by `onelab users add|import`.
        return True

    _accounts: Accounts | None = None

    @property
    def accounts(self) -> Accounts:
        if self._accounts is None:
            self._accounts = Accounts(self.db_url, self.min_password_length)
        return self._accounts

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        name = self.normalize_username((data.get("username") or "").strip())
        password = data.get("password") or ""
        if not name or not password:
            return None
        # scrypt is deliberately slow: keep it off the hub's event loop.
        account = await asyncio.get_running_loop().run_in_executor(
            None, self.accounts.verify, name, password
        )
        if account is None:
            self.log.warning("Failed login for %s", name)
            return None
        return {"name": account.name, "admin": account.admin or name in self.admin_users}


def configure_auth(c: Config, settings: Settings) -> None:
    c.Authenticator.admin_users = set(settings.hub.admin_users)
    if settings.auth.kind == "local":
        c.JupyterHub.authenticator_class = LocalAccountsAuthenticator
        c.LocalAccountsAuthenticator.db_url = settings.db_url
        c.LocalAccountsAuthenticator.min_password_length = settings.auth.min_password_length
        return
    o = settings.auth.oauth
    missing = [k for k in ("client_id", "client_secret", "authorize_url", "token_url",
                           "userdata_url") if not getattr(o, k)]
    if missing:
        from onelab.errors import SettingsError

        raise SettingsError(f"auth.kind is oauth but auth.oauth.{missing[0]} is empty; set "
                            f"{', '.join('auth.oauth.' + m for m in missing)}")
    c.JupyterHub.authenticator_class = "generic-oauth"
    g = c.GenericOAuthenticator
    g.client_id = o.client_id
    g.client_secret = o.client_secret
    g.authorize_url = o.authorize_url
    g.token_url = o.token_url
    g.userdata_url = o.userdata_url
    g.oauth_callback_url = o.callback_url or f"{settings.public_url}hub/oauth_callback"
    g.scope = list(o.scope)
    g.username_claim = o.username_claim
    g.login_service = o.login_service
    # Groups come from the identity provider and are kept as JupyterHub groups, so roles can
    # be granted to them (hub/roles.py) and course wiring can use them later.
    g.manage_groups = True
    g.auth_state_groups_key = f"oauth_user.{o.groups_claim}"
    if o.allowed_groups:
        g.allowed_groups = set(o.allowed_groups)
    else:
        g.allow_all = True
    if o.admin_groups:
        g.admin_groups = set(o.admin_groups)
    extend(c, "JupyterHub", "load_roles", roles.group_roles(o.group_roles))
