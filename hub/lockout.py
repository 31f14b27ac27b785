"""Login throttling for local accounts: wrong passwords lock an account, and an address that
tries many accounts, for a while.

Counts and locks live in one table, ``onelab_login_locks``, beside ``onelab_accounts`` in the
hub's database, so a hub restart does not hand an attacker a fresh start, and ``onelab users
locks|unlock`` (run on the host, hub up or down) see and lift the same rows the hub writes.

The policy (``auth.lockout.*``): ``max_failures`` wrong passwords for one account within
``window`` seconds lock it for ``lock_time`` seconds; ``address_max_failures`` wrong passwords
from one client address (whatever the accounts) lock the address the same way. A lock that
comes within a day of the previous one lasts twice as long, up to ``max_lock_time``. While
locked, every login is refused, the right password too, and no password is checked (no
guessing, no scrypt work). A successful login clears the account's count; it leaves the
address's count alone, or one learner's good login would let them go on guessing others'.

The two counts differ in *when* they count. An account's attempt is counted *before* its
password is checked (:meth:`Lockout.attempt`), so a burst of parallel guesses at one account
cannot all slip in under the limit while the first ones are being checked; one person rarely
logs into one account many times at once. An address's count takes only wrong passwords,
after the check (:meth:`Lockout.failed`): a class behind one NAT address logging in at the
bell (30 right passwords in flight at once) must never lock it, as counting in advance did
(docs/benchmarks.md). Parallel guesses across many accounts can then overshoot the address's
limit by the logins the hub checks at once (its few executor threads), no more.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from onelab.settings import USERNAME, LockoutSettings

ACCOUNT, ADDRESS = "account", "address"
REPEAT_MEMORY = timedelta(days=1)
"""A lock that starts within this time of the previous one of the same account or address
lasts twice as long as that one."""

_meta = sa.MetaData()
locks_table = sa.Table(
    "onelab_login_locks",
    _meta,
    sa.Column("kind", sa.String(16), primary_key=True),  # account | address
    sa.Column("key", sa.String(64), primary_key=True),  # the username or the address
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("first_failure", sa.DateTime, nullable=True),  # start of the counting window
    sa.Column("last_failure", sa.DateTime, nullable=True),
    sa.Column("locked_until", sa.DateTime, nullable=True),
    sa.Column("locked_at", sa.DateTime, nullable=True),  # start of the latest lock
    sa.Column("locks", sa.Integer, nullable=False, default=0),  # locks in a row
)


def utcnow() -> datetime:
    """Naive UTC, as the accounts table keeps its times (SQLite keeps no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Policy:
    max_failures: int = 5
    address_max_failures: int = 20
    window: int = 900
    lock_time: int = 900
    max_lock_time: int = 3600

    @classmethod
    def from_settings(cls, s: LockoutSettings) -> Policy:
        return cls(s.max_failures, s.address_max_failures, s.window, s.lock_time,
                   s.max_lock_time)

    def limit(self, kind: str) -> int:
        return self.max_failures if kind == ACCOUNT else self.address_max_failures

    def lock_seconds(self, repeat: int) -> int:
        """The length of a lock that follows `repeat` earlier ones (0: the first)."""
        return min(self.lock_time * 2 ** min(repeat, 20), self.max_lock_time)


@dataclass(frozen=True)
class Entry:
    """One account's or address's failures and lock, as the table holds them (naive UTC)."""

    kind: str
    key: str
    failures: int
    locked_until: datetime | None
    locks: int

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def address_of(value: str | None) -> str | None:
    """A valid IP address in its canonical form (an IPv4-mapped IPv6 one as IPv4), else None."""
    try:
        ip = ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def client_address(request: Any, proxies: Iterable[str] = ()) -> str | None:
    """The address of the browser behind a request to the hub.

    Tornado's ``request.remote_ip`` (JupyterHub serves with ``xheaders=True``) believes any
    ``X-Real-Ip`` a client sends, and anyone who reaches the hub's port directly (a learner's
    container does: the hub listens on their network's gateway) can say any address there.
    So: the connection's own peer, unless that peer is the proxy (loopback, or one of
    `proxies`: the hub's own address, where configurable-http-proxy connects from); then the
    last ``X-Forwarded-For`` entry, the one the proxy appended (it appends the real peer
    after whatever the client sent)."""
    context = getattr(getattr(request, "connection", None), "context", None)
    peer = address_of(getattr(context, "_orig_remote_ip", None) or request.remote_ip)
    trusted = {address_of(p) for p in proxies} - {None}
    if peer is None or not (ipaddress.ip_address(peer).is_loopback or peer in trusted):
        return peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    return address_of(forwarded.split(",")[-1]) if forwarded else peer


class Lockout:
    """The counts and locks on one database (a URL, or an engine shared with the accounts)."""

    def __init__(self, db: str | sa.Engine, policy: Policy | None = None,
                 now: Callable[[], datetime] = utcnow) -> None:
        if isinstance(db, str):
            if db.startswith("sqlite:///"):
                Path(db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            db = sa.create_engine(db, future=True, pool_pre_ping=True)
        self.engine = db
        self.policy = policy or Policy()
        self.now = now
        # SQLite ignores FOR UPDATE (and pysqlite reads outside the transaction), so two of
        # the hub's executor threads could both read a count and both write it plus one: one
        # lock per process makes each read-and-write whole; PostgreSQL's row locks do the rest.
        self._mutex = threading.Lock()
        _meta.create_all(self.engine)

    def _keys(self, name: str | None, address: str | None) -> list[tuple[str, str]]:
        """The rows an attempt counts on: the account (only a name that could be one, so
        junk names do not fill the table) and the address, each unless its limit is 0."""
        keys = []
        if name and USERNAME.match(name) and self.policy.max_failures:
            keys.append((ACCOUNT, name))
        address = address_of(address)
        if address and self.policy.address_max_failures:
            keys.append((ADDRESS, address))
        return keys

    def _get(self, conn: sa.Connection, kind: str, key: str) -> dict[str, Any] | None:
        t = locks_table
        row = conn.execute(sa.select(t).where(t.c.kind == kind, t.c.key == key)
                           .with_for_update()).first()
        return None if row is None else dict(row._mapping)

    def _put(self, conn: sa.Connection, row: dict[str, Any], new: bool) -> None:
        t = locks_table
        if new:
            conn.execute(t.insert().values(**row))
        else:
            conn.execute(t.update().where(t.c.kind == row["kind"], t.c.key == row["key"])
                         .values(**row))

    def _lock(self, row: dict[str, Any], now: datetime) -> Entry:
        recent = row.get("locked_at") is not None and now - row["locked_at"] < REPEAT_MEMORY
        repeat = (row.get("locks") or 0) if recent else 0
        row.update(locked_until=now + timedelta(seconds=self.policy.lock_seconds(repeat)),
                   locked_at=now, locks=repeat + 1, failures=0, first_failure=None)
        return _entry(row)

    def _transaction(self, work: Callable[[sa.Connection], Any]) -> Any:
        """`work` in one transaction, once more if a concurrent first failure inserted the
        same row first."""
        for tries in (1, 2):
            try:
                with self._mutex, self.engine.begin() as conn:
                    return work(conn)
            except sa.exc.IntegrityError:
                if tries == 2:
                    raise
        return None

    def attempt(self, name: str | None, address: str | None) -> Entry | None:
        """Before a password is checked: the lock that refuses this attempt (the account's
        first), or None, and then the attempt is counted against the account as a failure
        until :meth:`succeeded` says otherwise. An account that reaches its limit here
        (attempts still being checked) locks at once. The address is not counted here."""
        now = self.now()

        def work(conn: sa.Connection) -> Entry | None:
            account = None
            for kind, key in self._keys(name, address):
                row = self._get(conn, kind, key)
                if row is not None and row["locked_until"] is not None \
                        and row["locked_until"] > now:
                    return _entry(row)
                if kind == ACCOUNT:
                    account = (row or {"kind": kind, "key": key, "failures": 0, "locks": 0},
                               row is None)
            if account is None:
                return None
            row, new = account
            self._restart_window(row, now)
            if row["failures"] >= self.policy.max_failures:
                lock = self._lock(row, now)
                self._put(conn, row, new)
                return lock
            row.update(failures=row["failures"] + 1, last_failure=now)
            self._put(conn, row, new)
            return None

        result: Entry | None = self._transaction(work)
        return result

    def failed(self, name: str | None, address: str | None) -> Entry | None:
        """The password was wrong (counted against the account already, by :meth:`attempt`):
        count it against the address, and return the lock this failure began if it reached a
        limit (the account's first), else None."""
        now = self.now()

        def work(conn: sa.Connection) -> Entry | None:
            began = []
            for kind, key in self._keys(name, address):
                row = self._get(conn, kind, key)
                if row is not None and row["locked_until"] is not None \
                        and row["locked_until"] > now:
                    continue
                if kind == ADDRESS:
                    new = row is None
                    row = row or {"kind": kind, "key": key, "failures": 0, "locks": 0}
                    self._restart_window(row, now)
                    row.update(failures=row["failures"] + 1, last_failure=now)
                elif row is None:
                    continue
                else:
                    new = False
                if row["failures"] >= self.policy.limit(kind):
                    began.append(self._lock(row, now))
                self._put(conn, row, new)
            self._prune(conn, now)
            return began[0] if began else None

        result: Entry | None = self._transaction(work)
        return result

    def succeeded(self, name: str, address: str | None) -> None:
        """The password was right: the account starts afresh. The address was not counted for
        this attempt, and its wrong passwords stay counted."""
        t = locks_table
        with self._mutex, self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.kind == ACCOUNT, t.c.key == name))

    def _restart_window(self, row: dict[str, Any], now: datetime) -> None:
        """A count whose window has passed starts again from nothing, now."""
        first = row.get("first_failure")
        if first is None or now - first >= timedelta(seconds=self.policy.window):
            row.update(failures=0, first_failure=now)

    def _prune(self, conn: sa.Connection, now: datetime) -> None:
        """Forget rows with nothing to remember: no failure in the window, no lock in force,
        no lock recent enough to make the next one longer."""
        t = locks_table
        quiet = now - timedelta(seconds=self.policy.window)
        conn.execute(t.delete().where(
            sa.or_(t.c.last_failure.is_(None), t.c.last_failure < quiet),
            sa.or_(t.c.locked_at.is_(None), t.c.locked_at < now - REPEAT_MEMORY),
            sa.or_(t.c.locked_until.is_(None), t.c.locked_until < now)))

    def entries(self) -> list[Entry]:
        """Locks in force and failures still counted, accounts first."""
        now = self.now()
        window = timedelta(seconds=self.policy.window)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(locks_table).order_by(
                locks_table.c.kind, locks_table.c.key)).all()
        out = [_entry(dict(r._mapping)) for r in rows]
        recent = {(r.kind, r.key) for r in rows if r.failures and r.first_failure is not None
                  and now - r.first_failure < window}
        return [e for e in out if e.locked(now) or (e.kind, e.key) in recent]

    def unlock(self, kind: str, key: str) -> bool:
        """Lift the lock and forget the failures (and the repeat) of one account or address;
        False when there was nothing to lift."""
        if kind == ADDRESS:
            key = address_of(key) or key
        t = locks_table
        now = self.now()
        with self.engine.begin() as conn:
            row = self._get(conn, kind, key)
            conn.execute(t.delete().where(t.c.kind == kind, t.c.key == key))
        return row is not None and (bool(row["failures"]) or _entry(row).locked(now))


def _entry(row: dict[str, Any]) -> Entry:
    return Entry(row["kind"], row["key"], row.get("failures") or 0, row.get("locked_until"),
                 row.get("locks") or 0)
