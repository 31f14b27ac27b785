"""Local accounts for offline classrooms, kept in the hub's own database.

One table, ``onelab_accounts``, beside JupyterHub's tables (SQLite or PostgreSQL, whatever
``hub.db_url`` says), so a backup of the hub database holds the accounts too. Passwords are
hashed with scrypt (stdlib, memory-hard) and a per-account salt; only the hash is stored.
The CLI (``onelab users``) and the hub's authenticator both use this module.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from onelab.errors import OneLabError
from onelab.settings import USERNAME

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
                f"bad username {name!r}: use 1-32 of a-z, 0-9, '.', '_', '-' (lowercase, "
                "starting with a letter or digit), e.g. a student ID"
            )
        return name

    def check_new_password(self, password: str) -> None:
        if len(password) < self.min_password_length:
            raise AccountError(
                f"password too short: at least {self.min_password_length} characters "
                "(auth.min_password_length)"
            )

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
                raise AccountError(f"user {name} exists already; use `onelab users passwd {name}`")
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
            raise AccountError(f"no user {name}")

    def set_admin(self, name: str, admin: bool) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(accounts_table.update().where(accounts_table.c.name == name)
                             .values(admin=admin)).rowcount
        if not n:
            raise AccountError(f"no user {name}")

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(accounts_table.delete().where(accounts_table.c.name == name)).rowcount
        if not n:
            raise AccountError(f"no user {name}")

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

    def import_csv(self, text: str, *, replace: bool = False) -> list[tuple[str, str]]:
        """Add a class list. Columns: username (required), password, full_name, admin.

        Every row is checked before any is written, so a bad row adds nobody. Returns
        (username, password) for rows whose password was generated, to hand out.
        """
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        if not reader.fieldnames or "username" not in [f.strip() for f in reader.fieldnames]:
            raise AccountError("class list: first line must be a header with a 'username' column "
                               "(optional: password, full_name, admin)")
        allowed = {"username", "password", "full_name", "admin"}
        extra = {f.strip() for f in reader.fieldnames} - allowed
        if extra:
            raise AccountError(f"class list: unknown column(s) {sorted(extra)}; allowed: "
                               f"{sorted(allowed)}")
        rows, seen, generated = [], set(), []
        for lineno, raw in enumerate(reader, start=2):
            rec = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            name = rec.get("username", "").lower()
            if not name:
                continue
            try:
                self.check_name(name)
                if name in seen:
                    raise AccountError(f"username {name} appears twice")
                if rec.get("password"):
                    self.check_new_password(rec["password"])
                admin = rec.get("admin", "").lower() in ("1", "true", "yes", "y")
            except AccountError as e:
                raise AccountError(f"class list line {lineno}: {e}") from None
            if not replace and self.get(name) is not None:
                raise AccountError(f"class list line {lineno}: user {name} exists already "
                                   "(use --replace to reset existing accounts)")
            seen.add(name)
            pw = rec.get("password") or generate_password()
            if not rec.get("password"):
                generated.append((name, pw))
            rows.append((name, pw, admin, rec.get("full_name", "")))
        for name, pw, admin, full in rows:
            self.add(name, pw, admin=admin, full_name=full, replace=replace)
        return generated


_DUMMY = hash_password("not-a-real-password")
