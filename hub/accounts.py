"""Local accounts for offline classrooms, kept in the hub's own database.

One table, ``onelab_accounts``, beside JupyterHub's tables (SQLite or PostgreSQL, whatever
``hub.db_url`` says), so a backup of the hub database holds the accounts too. Passwords are
hashed with scrypt (stdlib, memory-hard) and a per-account salt; only the hash is stored.
The CLI (``onelab users``) and the hub's authenticator both use this module.

Removing a user for good (:func:`remove_user`) reaches further: their server, hub user and
tokens (through the hub's API), and their home volume, kept aside under a dated name so a new
account with the same name starts empty (:func:`kept_home_name`, :func:`restore_home`).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from onelab.errors import DockerUnavailable, OneLabError
from onelab.i18n import N_
from onelab.settings import USERNAME, Settings

_meta = sa.MetaData()
accounts_table = sa.Table(
    "onelab_accounts",
    _meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("full_name", sa.Unicode(255), nullable=False, default=""),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.DateTime, nullable=False),
)

# scrypt cost: ~50 ms and 16 MiB per check on this machine's cores; stored with the hash so it
# can be raised later without breaking old hashes.
_N, _R, _P = 2**14, 8, 1


class AccountError(OneLabError):
    pass


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def generate_password() -> str:
    """A password a learner can type from a printed class list: 12 chars, no look-alikes."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


@dataclass(frozen=True)
class Account:
    name: str
    full_name: str
    admin: bool
    created: datetime


class Accounts:
    """The accounts store on one database URL."""

    def __init__(self, db_url: str, min_password_length: int = 8) -> None:
        if db_url.startswith("sqlite:///"):
            Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(db_url, future=True, pool_pre_ping=True)
        self.min_password_length = min_password_length
        _meta.create_all(self.engine)

    def check_name(self, name: str) -> str:
        if not USERNAME.match(name):
            raise AccountError(
                N_("bad username {name!r}: use 1-32 of a-z, 0-9, '.', '_', '-' (lowercase, "
                   "starting with a letter or digit), e.g. a student ID"), name=name)
        return name

    def check_new_password(self, password: str) -> None:
        if len(password) < self.min_password_length:
            raise AccountError(
                N_("password too short: at least {n} characters (auth.min_password_length)"),
                n=self.min_password_length)

    def add(self, name: str, password: str, *, admin: bool = False, full_name: str = "",
            replace: bool = False) -> Account:
        self.check_name(name)
        self.check_new_password(password)
        row = {"name": name, "password_hash": hash_password(password), "full_name": full_name,
               "admin": admin, "created": datetime.now(UTC).replace(tzinfo=None)}
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(accounts_table.c.name).where(
                accounts_table.c.name == name)).first()
            if exists and not replace:
                raise AccountError(N_("user {name} exists already; use `onelab users passwd "
                                      "{name}`"), name=name)
            if exists:
                del row["created"]
                conn.execute(accounts_table.update().where(accounts_table.c.name == name)
                             .values(**row))
            else:
                conn.execute(accounts_table.insert().values(**row))
        got = self.get(name)
        assert got is not None
        return got

    def set_password(self, name: str, password: str) -> None:
        self.check_new_password(password)
        with self.engine.begin() as conn:
            n = conn.execute(accounts_table.update().where(accounts_table.c.name == name)
                             .values(password_hash=hash_password(password))).rowcount
        if not n:
            raise AccountError(N_("no user {name}"), name=name)

    def set_admin(self, name: str, admin: bool) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(accounts_table.update().where(accounts_table.c.name == name)
                             .values(admin=admin)).rowcount
        if not n:
            raise AccountError(N_("no user {name}"), name=name)

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(accounts_table.delete().where(accounts_table.c.name == name)).rowcount
        if not n:
            raise AccountError(N_("no user {name}"), name=name)

    def get(self, name: str) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(accounts_table).where(accounts_table.c.name == name)).first()
        return None if row is None else Account(row.name, row.full_name, row.admin, row.created)

    def all(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(accounts_table).order_by(accounts_table.c.name)).all()
        return [Account(r.name, r.full_name, r.admin, r.created) for r in rows]

    def verify(self, name: str, password: str) -> Account | None:
        """The account if the password is right, else None (same work either way)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(accounts_table).where(accounts_table.c.name == name)).first()
        if row is None:
            check_password(password, _DUMMY)  # keep timing the same for unknown names
            return None
        if not check_password(password, row.password_hash):
            return None
        return Account(row.name, row.full_name, row.admin, row.created)

    def import_csv(self, text: str, *, replace: bool = False,
                   check_new: Callable[[str], object] | None = None) -> list[tuple[str, str]]:
        """Add a class list. Columns: username (required), password, full_name, admin.

        Every row is checked before any is written, so a bad row adds nobody; `check_new`
        (e.g. :func:`fresh_home_check`) may refuse a name that has no account yet. Returns
        (username, password) for rows whose password was generated, to hand out.
        """
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        if not reader.fieldnames or "username" not in [f.strip() for f in reader.fieldnames]:
            raise AccountError(N_("class list: first line must be a header with a 'username' "
                                  "column (optional: password, full_name, admin)"))
        allowed = {"username", "password", "full_name", "admin"}
        extra = {f.strip() for f in reader.fieldnames} - allowed
        if extra:
            raise AccountError(N_("class list: unknown column(s) {columns}; allowed: {allowed}"),
                               columns=sorted(extra), allowed=sorted(allowed))
        rows, seen, generated = [], set(), []
        for lineno, raw in enumerate(reader, start=2):
            rec = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            name = rec.get("username", "").lower()
            if not name:
                continue
            try:
                self.check_name(name)
                if name in seen:
                    raise AccountError(N_("username {name} appears twice"), name=name)
                if rec.get("password"):
                    self.check_new_password(rec["password"])
                admin = rec.get("admin", "").lower() in ("1", "true", "yes", "y")
                exists = self.get(name) is not None
                if exists and not replace:
                    raise AccountError(N_("user {name} exists already (use --replace to reset "
                                          "existing accounts)"), name=name)
                if not exists and check_new is not None:
                    check_new(name)
            except AccountError as e:
                raise AccountError(N_("class list line {line}: {why}"), line=lineno,
                                   why=e) from None
            seen.add(name)
            pw = rec.get("password") or generate_password()
            if not rec.get("password"):
                generated.append((name, pw))
            rows.append((name, pw, admin, rec.get("full_name", "")))
        for name, pw, admin, full in rows:
            self.add(name, pw, admin=admin, full_name=full, replace=replace)
        return generated


_DUMMY = hash_password("not-a-real-password")


# -- the hub's user list (the class roster) ---------------------------------------------------

def list_on_hub(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Put these accounts (all, with None) on the running hub's user list now, not at their
    first login, so staff see the class in the admin page and ``/hub/api/users``; each is a hub
    admin exactly when their login would make them one. With the hub down there is nothing to
    do: it takes every account into its list when it starts (hub.auth.sync_roster).
    Returns lines for the operator."""
    from hub.state import admin_token
    from onelab.hubclient import Hub, HubError
    from onelab.tls import verify_for

    if settings.auth.kind != "local":
        return ["note: with auth.kind oauth the identity provider decides who logs in; the hub "
                "lists users from their first login, not from local accounts"]
    accounts = Accounts(settings.db_url, settings.auth.min_password_length)
    wanted = {a.name: a.admin or a.name in settings.hub.admin_users for a in accounts.all()
              if names is None or a.name in names}
    hub = Hub(settings.public_url, admin_token(settings.state_dir), verify=verify_for(settings))
    if not hub.healthy():
        who = ", ".join(sorted(wanted)) if names is not None else "every account"
        return [f"the hub is not running; it puts {who} on its user list when it starts"]
    try:
        have = {u["name"]: bool(u.get("admin")) for u in hub.users()}
        made = [n for admin in (False, True) for n in hub.add_users(
            sorted(n for n, a in wanted.items() if a is admin and n not in have), admin=admin)]
        changed = sorted(n for n, a in wanted.items() if n in have and have[n] is not a)
        for n in changed:
            hub.set_admin(n, wanted[n])
    except (HubError, OSError) as e:
        raise AccountError(N_("the account(s) are saved, but the hub at {url} did not take them "
                              "into its user list ({why}); it will at its next start (`onelab "
                              "down --keep-servers && onelab up --detach`)"),
                           url=settings.public_url, why=e) from None
    lines = [f"on the hub's user list now: {', '.join(made)}"] if made else []
    lines += [f"hub admin flag set as their account says: {', '.join(changed)}"] if changed else []
    return lines


# -- removing a user for good, and their home ------------------------------------------------

KEPT_ROLE = "home-kept"
Echo = Callable[[str], None]


def docker_name(name: str) -> str:
    """The username as DockerSpawner writes it into container and volume names (its default
    escape: a-z and 0-9 kept, any other character as -XX), so we find the spawner's volume."""
    from escapism import escape

    return escape(name, set(string.ascii_lowercase + string.digits), escape_char="-").lower()


def home_volume(settings: Settings, name: str) -> str:
    """The name of the user's home volume, rendered as DockerSpawner renders spawner.home_volume."""
    from images.table import learner_image

    esc = docker_name(name)
    return settings.spawner.home_volume.format(
        username=esc, safe_username=esc, raw_username=name, servername="", raw_servername="",
        prefix=settings.spawner.container_prefix,
        imagename=learner_image(settings).replace("/", "-").replace(":", "-"))


def kept_home_name(volume: str, when: datetime) -> str:
    """`<volume>.removed-20261201T101500Z`: where a removed user's home is kept (UTC)."""
    if when.tzinfo is None:
        raise ValueError("kept_home_name needs an aware datetime")
    return f"{volume}.removed-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def kept_homes(settings: Settings, name: str) -> list[str]:
    """The user's earlier homes kept aside, oldest first."""
    from onelab import dockerdoor

    pattern = re.compile(re.escape(home_volume(settings, name)) + r"\.removed-\d{8}T\d{6}Z")
    return sorted(v.name for v in dockerdoor.volumes(**{dockerdoor.ROLE_LABEL: KEPT_ROLE})
                  if pattern.fullmatch(v.name))


def _kept_labels(name: str, volume: str, when: datetime) -> dict[str, str]:
    from onelab.dockerdoor import ROLE_LABEL

    return {ROLE_LABEL: KEPT_ROLE, "onelab.user": name, "onelab.kept-from": volume,
            "onelab.removed": when.astimezone(UTC).isoformat(timespec="seconds")}


def _keep_aside(settings: Settings, name: str, volume: str, when: datetime) -> tuple[str, int, int]:
    """Copy the volume to its dated name, verified, then remove it: (kept name, entries, bytes)."""
    from images.table import learner_image
    from onelab import dockerdoor

    kept = kept_home_name(volume, when)
    entries, size = dockerdoor.copy_volume(volume, kept, learner_image(settings),
                                           labels=_kept_labels(name, volume, when))
    dockerdoor.remove_volume(volume)
    return kept, entries, size


def fresh_home_check(settings: Settings, name: str) -> list[str]:
    """Before a new account: refuse a name whose home volume is still there (removed by an
    older OneLab, or by hand: the newcomer would get someone else's files); return notes
    naming the earlier homes kept aside."""
    from onelab import dockerdoor

    try:
        dockerdoor.client()
    except DockerUnavailable:
        return ["note: Docker does not answer, so earlier homes of this name were not checked"]
    home = home_volume(settings, name)
    if dockerdoor.volume_exists(home):
        raise AccountError(N_("a home volume {home} of an earlier {name} is still there and a "
                              "new {name} would get it; run `onelab users remove {name}` first "
                              "(it keeps the home aside), then add them"), home=home, name=name)
    return [f"note: an earlier home of {name} is kept as volume {v}; {name} starts with a fresh, "
            f"empty home; restore it with `onelab users restore-home {name} {v}`"
            for v in kept_homes(settings, name)]


@dataclass
class Removal:
    """What `remove_user` did, step by step."""

    name: str
    account_removed: bool = False
    containers: list[str] = field(default_factory=list)
    tokens_revoked: int = 0
    hub_user_deleted: bool = False
    home: str | None = None  # the home volume as it was
    kept_as: str | None = None  # its dated copy, unless it was deleted
    home_deleted: bool = False


def remove_user(settings: Settings, name: str, *, delete_home: bool = False,
                echo: Echo = print) -> Removal:
    """Remove a user for good: login, server, tokens, hub user; keep or delete their home.

    Needs the hub running: only the hub can revoke the user's tokens and end their sessions
    (tokens left in its database would work again at its next start), so with the hub down
    this refuses before changing anything. Each step is idempotent: after a failure, running
    it again finishes the job. The local account goes first, so no new login can race it.
    """
    from hub.state import admin_token
    from images.table import learner_image
    from onelab import dockerdoor
    from onelab.hubclient import Hub
    from onelab.tls import verify_for

    accounts = Accounts(settings.db_url, settings.auth.min_password_length)
    hub = Hub(settings.public_url, admin_token(settings.state_dir), verify=verify_for(settings))
    if not hub.healthy():
        raise AccountError(N_("the hub is not running at {url}, and only the hub can revoke "
                              "{name}'s tokens and sessions: start the platform (`onelab up "
                              "--detach`) and run this again; nothing was changed"),
                           url=settings.public_url, name=name)
    dockerdoor.client()
    account, hub_user = accounts.get(name), hub.user(name)
    labels = {"onelab.user": name, "onelab.instance": settings.spawner.container_prefix}
    home = home_volume(settings, name)
    has_home = dockerdoor.volume_exists(home)
    if not (account or hub_user or has_home or dockerdoor.containers("learner", **labels)):
        raise AccountError(N_("no user {name}: no local account, hub user, server or home "
                              "volume (see `onelab users list`)"), name=name)
    if name in settings.hub.admin_users:
        raise AccountError(N_("{name} is in hub.admin_users, so the hub would make them again "
                              "at its next start; take them out of that setting first"),
                           name=name)
    if (account and account.admin) or (hub_user and hub_user.get("admin")):
        others = ({a.name for a in accounts.all() if a.admin}
                  | {u["name"] for u in hub.users() if u.get("admin")}) - {name}
        if not others:
            raise AccountError(N_("{name} is the last admin; make another one first (`onelab "
                                  "users add NAME --admin`), then remove {name}"), name=name)
    if has_home and not delete_home:
        dockerdoor.require_image(learner_image(settings), "learner image (copies the home)")

    r = Removal(name, home=home if has_home else None)
    if account:
        accounts.remove(name)
        r.account_removed = True
        echo(f"local account {name} removed: their password no longer logs in")
    r.containers = [c.name for c in dockerdoor.containers("learner", **labels)]
    if hub_user:
        if hub_user.get("servers") or hub_user.get("pending"):
            hub.stop(name, wait=settings.spawner.start_timeout)
        r.tokens_revoked = hub.revoke_tokens(name)
        hub.delete_user(name)
        r.hub_user_deleted = True
    dockerdoor.remove_containers("learner", **labels)  # any the hub did not know of
    if r.containers:
        echo(f"server stopped: container {', '.join(r.containers)} removed")
    if hub_user:
        echo(f"hub user {name} deleted, {r.tokens_revoked} API token(s) revoked (their server's "
             "too) and their login sessions ended")
    if has_home and delete_home:
        dockerdoor.remove_volume(home)
        r.home_deleted = True
        echo(f"deleted: volume {home} ({name}'s home, all its files)")
    elif has_home:
        r.kept_as, entries, size = _keep_aside(settings, name, home, datetime.now(UTC))
        echo(f"home kept: volume {home} is now {r.kept_as} ({entries} files and folders, "
             f"{size} bytes, copy verified); restore it with `onelab users restore-home {name} "
             f"{r.kept_as}`, or delete it with `docker volume rm {r.kept_as}`")
    else:
        echo(f"no home volume {home} (they never started a server)")
    for line in _still_named(settings, name):
        echo(line)
    return r


def _still_named(settings: Settings, name: str) -> list[str]:
    """Notes for what still names the user and is not ours to change: course specs, OAuth."""
    from hub.courses import course_specs

    notes = []
    try:
        courses = [c.id for c in course_specs(settings) if name in c.all_learners()
                   or name in c.instructors or name in c.assistants]
    except OneLabError:
        courses = []
    if courses:
        notes.append(f"note: {name} is still listed in course(s) {', '.join(courses)}: take them "
                     "out of the course.yml (or its learners CSV), or the hub lists them again at "
                     f"its next start (no password, no tokens) and a new {name} joins the course "
                     "and its kept submissions")
    if settings.auth.kind == "oauth":
        notes.append(f"note: with auth.kind oauth the identity provider decides who logs in; "
                     f"remove {name} there too, or they come back with a new, empty home")
    return notes


def restore_home(settings: Settings, name: str, volume: str, echo: Echo = print) -> str:
    """Make a kept home the user's home again (a verified copy; the kept volume then goes).

    A home the user has now is not overwritten: it is kept aside first, dated, like any other.
    Their server must be stopped, so that no container writes to either volume meanwhile.
    """
    from images.table import learner_image
    from onelab import dockerdoor

    dockerdoor.client()
    kept = kept_homes(settings, name)
    if volume not in kept:
        raise AccountError(f"{volume} is not a kept home of {name}; kept: "
                           f"{', '.join(kept) or 'none'}")
    if dockerdoor.containers("learner", **{"onelab.user": name, "onelab.instance":
                                           settings.spawner.container_prefix}):
        raise AccountError(f"{name}'s server is running; stop it first (hub Admin page → Stop "
                           "Server) and run this again")
    image = learner_image(settings)
    dockerdoor.require_image(image, "learner image (copies the home)")
    home = home_volume(settings, name)
    if dockerdoor.volume_exists(home):
        aside, entries, size = _keep_aside(settings, name, home, datetime.now(UTC))
        echo(f"the current home of {name} is kept as volume {aside} ({entries} files and "
             f"folders, {size} bytes)")
    entries, size = dockerdoor.copy_volume(volume, home, image, labels={
        dockerdoor.ROLE_LABEL: "home", "onelab.user": name, "onelab.restored-from": volume})
    dockerdoor.remove_volume(volume)
    echo(f"restored: {volume} is {name}'s home {home} again ({entries} files and folders, "
         f"{size} bytes, copy verified)")
    return home
