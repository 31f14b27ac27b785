"""Authentication: local accounts (offline classrooms) or Generic OAuth/OIDC (online SSO).

The local authenticator is our own, on JupyterHub's ``Authenticator``: NativeAuthenticator 1.3
breaks logins on JupyterHub 6 (its LoginHandler lacks ``statsd``). It uses JupyterHub's stock
login form and checks passwords against :mod:`hub.accounts`, and it keeps the hub's user list
(the admin page, ``/hub/api/users``) in step with the accounts at every hub start
(:func:`sync_roster`); while the hub runs, ``onelab users`` keeps it in step through the API.
Wrong passwords lock an account, and an address, for a while (:mod:`hub.lockout`); the login
page says so in the reader's language.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Integer, Unicode, default
from traitlets.config import Config

from hub import roles
from hub._config import extend
from hub.accounts import Account, Accounts
from hub.lockout import ADDRESS, Entry, Lockout, Policy, client_address
from onelab import i18n
from onelab.settings import Settings


class LocalAccountsAuthenticator(Authenticator):
    """Username + password checked against the ``onelab_accounts`` table (scrypt hashes)."""

    db_url = Unicode(help="Database holding onelab_accounts (the hub's own).").tag(config=True)
    min_password_length = Integer(8).tag(config=True)
    # The lock-out policy (hub/lockout.py), from settings.auth.lockout.
    max_failures = Integer(Policy.max_failures, help="Wrong passwords for one account within "
                           "failure_window that lock it (0: never).").tag(config=True)
    address_max_failures = Integer(Policy.address_max_failures, help="Wrong passwords from "
                                   "one client address within failure_window that lock the "
                                   "address (0: never).").tag(config=True)
    failure_window = Integer(Policy.window, help="Seconds in which failures are counted.").tag(
        config=True)
    lock_seconds = Integer(Policy.lock_time, help="Seconds of a first lock; a repeat within a "
                           "day doubles it.").tag(config=True)
    max_lock_seconds = Integer(Policy.max_lock_time, help="Longest lock, in seconds.").tag(
        config=True)

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

    _lockout: Lockout | None = None

    @property
    def lockout(self) -> Lockout:
        if self._lockout is None:
            self._lockout = Lockout(self.accounts.engine, Policy(
                self.max_failures, self.address_max_failures, self.failure_window,
                self.lock_seconds, self.max_lock_seconds))
        return self._lockout

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        name = self.normalize_username((data.get("username") or "").strip())
        password = data.get("password") or ""
        if not name or not password:
            return None
        hub = getattr(handler, "hub", None)
        address = client_address(handler.request, [getattr(hub, "ip", "")])
        # scrypt is deliberately slow, and the lock table is a database: off the event loop.
        run = asyncio.get_running_loop().run_in_executor
        lock = await run(None, self.lockout.attempt, name, address)
        if lock is not None:
            self.log.warning("Login refused for %s from %s: %s %s is locked until %s UTC",
                             name, address, lock.kind, lock.key, lock.locked_until)
            raise locked_error(handler, lock)
        account = await run(None, self.accounts.verify, name, password)
        if account is None:
            lock = await run(None, self.lockout.failed, name, address)
            self.log.warning("Failed login for %s from %s", name, address)
            if lock is not None:
                self.log.warning("Locked %s %s until %s UTC (lock %d in a row)", lock.kind,
                                 lock.key, lock.locked_until, lock.locks)
                raise locked_error(handler, lock)
            return None
        await run(None, self.lockout.succeeded, account.name, address)
        return {"name": account.name, "admin": account.admin or name in self.admin_users}

    def check_allow_config(self) -> None:
        """JupyterHub calls this once at start, first thing in ``init_users``: before it loads
        its users and before it serves any request. The place to bring its user list in step
        with the accounts added or removed while it was down."""
        super().check_allow_config()
        db = getattr(self.parent, "db", None)  # the JupyterHub app's session
        if db is None:
            return
        keep = {self.normalize_username(n) for n in self.admin_users} | config_users(self.parent)
        made, gone, running = sync_roster(db, self.accounts.all(), keep)
        if made:
            self.log.info("Roster: %d local account(s) added to the hub's users: %s", len(made),
                          ", ".join(made[:20]) + (", ..." if len(made) > 20 else ""))
        for name in gone:
            self.log.warning("Roster: %s has no local account any more (removed while the hub "
                             "was down): deleted from the hub with their tokens and sessions",
                             name)
        for name in running:
            self.log.warning("Roster: %s's server was recorded as running; its container may "
                             "still run: `onelab users remove %s` removes it and keeps their "
                             "home aside", name, name)


LOCKED = {
    "account": i18n.N_("Too many failed logins: this account is locked until {time} (about "
                       "{minutes} min). Your teacher can unlock it sooner."),
    "address": i18n.N_("Too many failed logins from this computer: logging in from it is "
                       "paused until {time} (about {minutes} min)."),
}
"""What the login page says while an account or an address is locked."""


def locked_error(handler: Any, lock: Entry) -> web.HTTPError:
    """429 whose message JupyterHub's login page shows as its error (LoginHandler renders a
    failed form POST's error page as the form with ``login_error``), in the page's language:
    the one OneLab's language switch decides (hub/preferences.py), as the page itself will."""
    assert lock.locked_until is not None
    now = datetime.now(UTC)
    until = lock.locked_until.replace(tzinfo=UTC)
    seconds = max(int((until - now).total_seconds()), 1)
    pick = (getattr(handler, "settings", None) or {}).get("template_vars", {}).get(
        i18n.TEMPLATE_VAR)
    lang = i18n.normalize(pick(None) if callable(pick) else pick) or i18n.DEFAULT
    message = i18n.gettext(lang)(LOCKED[ADDRESS if lock.kind == ADDRESS else "account"])
    error = web.HTTPError(429, "login locked")
    error.jupyterhub_message = message.format(  # type: ignore[attr-defined]
        time=until.astimezone().strftime("%H:%M"), minutes=-(-seconds // 60))
    error.headers = {"Retry-After": str(seconds)}  # type: ignore[attr-defined]
    return error


def config_users(app: Any) -> set[str]:
    """Users the hub's configuration names (course groups, role grants): JupyterHub makes
    them at start whatever the accounts say, so the roster leaves them alone."""
    names: set[str] = set()
    groups = getattr(app, "load_groups", None) or {}
    for spec in groups.values() if isinstance(groups, dict) else []:
        members = spec.get("users", []) if isinstance(spec, dict) else spec
        names.update(str(n) for n in members or [])
    for role in getattr(app, "load_roles", None) or []:
        names.update(str(n) for n in role.get("users", []) or [])
    return names


def sync_roster(db: Any, accounts: Iterable[Account],
                keep: set[str]) -> tuple[list[str], list[str], list[str]]:
    """Make the hub's users (JupyterHub's ORM session `db`) follow the local accounts: an
    account the hub lacks becomes a hub user (an admin account an admin), as JupyterHub makes
    its configured admin_users; a hub user with no account and not in `keep` is deleted, with
    their tokens and server records (JupyterHub would keep them, and their tokens, forever).
    Returns (created, deleted, deleted with a server recorded as running)."""
    from jupyterhub import orm
    from jupyterhub import roles as hub_roles

    wanted = {a.name: a for a in accounts}
    have = {u.name: u for u in db.query(orm.User)}
    if not wanted:  # no accounts at all is a wrong database, not a class that left
        return [], [], []
    made = sorted(set(wanted) - set(have))
    for name in made:
        user = orm.User(name=name, admin=wanted[name].admin)
        db.add(user)
        hub_roles.assign_default_roles(db, entity=user)
    gone = sorted(set(have) - set(wanted) - keep)
    running = [n for n in gone if any(sp.server is not None for sp in have[n]._orm_spawners)]
    for name in gone:
        db.delete(have[name])
    db.commit()
    return made, gone, running


def configure_auth(c: Config, settings: Settings) -> None:
    c.Authenticator.admin_users = set(settings.hub.admin_users)
    if settings.auth.kind == "local":
        c.JupyterHub.authenticator_class = LocalAccountsAuthenticator
        c.LocalAccountsAuthenticator.db_url = settings.db_url
        c.LocalAccountsAuthenticator.min_password_length = settings.auth.min_password_length
        lk = settings.auth.lockout
        c.LocalAccountsAuthenticator.max_failures = lk.max_failures
        c.LocalAccountsAuthenticator.address_max_failures = lk.address_max_failures
        c.LocalAccountsAuthenticator.failure_window = lk.window
        c.LocalAccountsAuthenticator.lock_seconds = lk.lock_time
        c.LocalAccountsAuthenticator.max_lock_seconds = lk.max_lock_time
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
