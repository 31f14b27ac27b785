"""Who holds which GPU: claims in the hub's database, taken atomically.

One table, ``onelab_gpu_claims``, beside ``onelab_accounts`` in the hub's database (SQLite or
PostgreSQL, whatever ``hub.db_url`` says): one row per claim, ``released_at`` NULL while it is
held. Rows are never deleted, so the same table is the record GPU-hour quotas and ``onelab gpu
usage`` count from.

Why a device is never handed out twice, even by two hub processes, or a hub killed mid-spawn
and started again:

- Two partial unique indexes over the *held* rows (``WHERE released_at IS NULL``): one
  ``(device_uuid, slot)``, one ``(username, server_name)``. The database itself refuses a
  second holder of a slot, and a second claim for one server, whoever inserts it; a claim
  that hits one moves on to the next free slot (or returns the server's own claim).
- Each claim is one write transaction that holds the table's write lock while it reads what
  is held and picks a slot (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE ... IN SHARE
  ROW EXCLUSIVE MODE``, which plain reads pass). The indexes alone cannot say "an exclusive
  claim and a shared one never share a GPU" or "a course with 2 learners per GPU does not
  join a GPU that 4 of another course share": those rules are checked on a consistent view.
- Nothing is kept in memory: a new :class:`Claims` on the same database (a restarted hub) sees
  exactly what the old one left, and :meth:`Claims.reconcile` releases the claims of servers
  that no longer run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub.gpu.inventory import Device, Inventory
from hub.gpu.policy import Policy

TABLE = "onelab_gpu_claims"
LABEL = "onelab.gpu"
"""The container label that names a claim (``<uuid>/<slot>``): what reconcile reads back."""

_meta = sa.MetaData()
claims_table = sa.Table(
    TABLE,
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_uuid", sa.String(128), nullable=False),
    sa.Column("slot", sa.Integer, nullable=False),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("server_name", sa.String(255), nullable=False, default=""),  # "": the default one
    sa.Column("course", sa.String(64), nullable=False, default=""),
    sa.Column("policy", sa.String(16), nullable=False),  # exclusive | shared | mig
    sa.Column("memory_fraction", sa.Float, nullable=True),  # shared only
    sa.Column("claimed_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("released_at", sa.DateTime, nullable=True),  # NULL while held
)
_HELD = claims_table.c.released_at.is_(None)
sa.Index("onelab_gpu_claims_held_slot", claims_table.c.device_uuid, claims_table.c.slot,
         unique=True, sqlite_where=_HELD, postgresql_where=_HELD)
sa.Index("onelab_gpu_claims_held_server", claims_table.c.username, claims_table.c.server_name,
         unique=True, sqlite_where=_HELD, postgresql_where=_HELD)
sa.Index("onelab_gpu_claims_usage", claims_table.c.username, claims_table.c.course,
         claims_table.c.claimed_at)


def utcnow() -> datetime:
    """Naive UTC, as the hub's other OneLab tables keep their times (SQLite keeps no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Claim:
    id: int
    device_uuid: str
    slot: int
    username: str
    server_name: str
    course: str
    policy: str
    memory_fraction: float | None
    claimed_at: datetime
    released_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.device_uuid}/{self.slot}"

    def hours(self, since: datetime, until: datetime) -> float:
        """Hours of this claim inside [since, until): an open claim counts up to ``until``."""
        end = min(self.released_at or until, until)
        start = max(self.claimed_at, since)
        return max((end - start).total_seconds(), 0.0) / 3600


def container_request(claim: Claim) -> dict[str, Any]:
    """What a learner's container gets for a claim: the device to request from Docker by UUID,
    its environment and the ``onelab.gpu`` label. ``NVIDIA_VISIBLE_DEVICES`` is what the
    NVIDIA runtime exposes, ``ONELAB_GPU`` what a notebook may print, and a shared claim's
    ``ONELAB_GPU_MEMORY_FRACTION`` the cap the learner image applies to PyTorch."""
    env = {"NVIDIA_VISIBLE_DEVICES": claim.device_uuid, "ONELAB_GPU": claim.device_uuid}
    if claim.policy == "shared" and claim.memory_fraction is not None:
        env["ONELAB_GPU_MEMORY_FRACTION"] = f"{claim.memory_fraction:g}"
    return {"device_uuid": claim.device_uuid, "env": env, "label": claim.label}


def parse_label(value: str) -> tuple[str, int] | None:
    """``<uuid>/<slot>`` back into its parts; None for anything else. A MIG UUID of an old
    driver holds slashes itself, so the slot is what follows the last one."""
    uuid, _, slot = value.rpartition("/")
    return (uuid, int(slot)) if uuid and slot.isdigit() else None


def _engine(db_url: str) -> sa.Engine:
    """An engine whose write transactions (execution option ``onelab_write``) take the
    database's write lock at BEGIN on SQLite, so a claim's read and insert are one step for
    every process; pysqlite would otherwise begin only at the insert."""
    if not db_url.startswith("sqlite"):
        return sa.create_engine(db_url, future=True, pool_pre_ping=True)
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url, future=True, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's begin event says BEGIN, not pysqlite

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("onelab_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _claim(row: Any) -> Claim:
    m = row._mapping
    return Claim(m["id"], m["device_uuid"], m["slot"], m["username"], m["server_name"],
                 m["course"], m["policy"], m["memory_fraction"], m["claimed_at"],
                 m["released_at"])


class Claims:
    """The claims on one database, for one inventory."""

    def __init__(self, db_url: str, inventory: Inventory,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.engine = _engine(db_url)
        self.inventory = inventory
        self.now = now
        _meta.create_all(self.engine)

    @contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """One write transaction that no other claim or release runs beside."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(onelab_write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
                yield conn

    @staticmethod
    def _held_for(conn: sa.Connection, user: str, server: str) -> Claim | None:
        t = claims_table
        row = conn.execute(sa.select(t).where(_HELD, t.c.username == user,
                                              t.c.server_name == server)).first()
        return None if row is None else _claim(row)

    def _candidates(self, conn: sa.Connection, policy: Policy,
                    fraction: float | None) -> list[tuple[Device, int]]:
        """Free (device, slot) pairs for ``policy``, fairest first: the least-loaded device
        (a MIG instance: the least-loaded GPU it is part of), then inventory order, then slot.
        A device that holds claims of another policy, or as many as this one allows, is
        skipped, and so is a GPU whose shared learners' memory caps leave too little for
        ``fraction``."""
        t = claims_table
        held: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
        for uuid, slot, kind, share in conn.execute(
                sa.select(t.c.device_uuid, t.c.slot, t.c.policy, t.c.memory_fraction)
                .where(_HELD)):
            held[uuid].append((slot, kind, share or 0.0))
        per_gpu: dict[str, int] = defaultdict(int)
        for d in self.inventory.devices:
            per_gpu[d.parent_uuid or d.uuid] += len(held.get(d.uuid, ()))
        ranked = []
        for position, d in enumerate(policy.devices(self.inventory)):
            rows = held.get(d.uuid, [])
            if any(kind != policy.kind for _, kind, _ in rows) or len(rows) >= policy.slots:
                continue
            if fraction and sum(f for _, _, f in rows) + fraction > 1 + 1e-9:
                continue  # courses with fewer learners per GPU hold bigger shares of it
            load = per_gpu[d.parent_uuid] if d.mig and d.parent_uuid else len(rows)
            taken = {slot for slot, _, _ in rows}
            ranked += [((load, position, slot), d, slot) for slot in range(policy.slots)
                       if slot not in taken]
        return [(d, slot) for _, d, slot in sorted(ranked, key=lambda r: r[0])]

    def claim(self, user: str, server: str, course: str, policy: Policy | str) -> Claim | None:
        """A slot for ``user``'s server ``server`` ("" is the default one) under ``policy``:
        the claim that server holds already, if any (asking twice is harmless), else a new
        one, else None when nothing is free (or the policy is ``none``). Quotas are the
        caller's: see :meth:`hours_left`."""
        policy = Policy(policy) if isinstance(policy, str) else policy
        if policy.kind == "none":
            return None
        fraction = None
        if policy.kind == "shared":
            fraction = policy.memory_fraction or int(10_000 / policy.per_device) / 10_000
        with self._writing() as conn:
            mine = self._held_for(conn, user, server)
            if mine is not None:
                return mine
            for device, slot in self._candidates(conn, policy, fraction):
                new = Claim(0, device.uuid, slot, user, server, course, policy.kind, fraction,
                            self.now())
                row = {k: v for k, v in new.__dict__.items() if k not in ("id", "released_at")}
                try:
                    with conn.begin_nested():
                        key = conn.execute(claims_table.insert().values(**row)
                                           ).inserted_primary_key
                except sa.exc.IntegrityError:
                    # Held after all (a writer that took no lock), or this server got one.
                    mine = self._held_for(conn, user, server)
                    if mine is not None:
                        return mine
                    continue
                assert key is not None
                return replace(new, id=key[0])
        return None

    def release(self, user: str, server: str) -> Claim | None:
        """Give back the claim of ``user``'s server ``server`` (stopped, culled); the claim
        released, or None when it held none."""
        with self._writing() as conn:
            mine = self._held_for(conn, user, server)
            if mine is None:
                return None
            now = self.now()
            conn.execute(claims_table.update().where(claims_table.c.id == mine.id)
                         .values(released_at=now))
        return replace(mine, released_at=now)

    def reconcile(self, live: set[tuple[str, str]]) -> list[Claim]:
        """At hub start: release every held claim whose (user, server) is not in ``live``
        (what the running containers' ``onelab.gpu`` labels say); the claims released."""
        released = []
        with self._writing() as conn:
            now = self.now()
            for row in conn.execute(sa.select(claims_table).where(_HELD)).all():
                claim = _claim(row)
                if (claim.username, claim.server_name) not in live:
                    conn.execute(claims_table.update().where(claims_table.c.id == claim.id)
                                 .values(released_at=now))
                    released.append(replace(claim, released_at=now))
        return released

    def holders(self) -> list[Claim]:
        """The held claims, by device (inventory order) and slot."""
        order = {d.uuid: i for i, d in enumerate(self.inventory.devices)}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(claims_table).where(_HELD)).all()
        claims = [_claim(r) for r in rows]
        return sorted(claims, key=lambda c: (order.get(c.device_uuid, len(order)),
                                             c.device_uuid, c.slot))

    def by_device(self) -> list[tuple[Device, list[Claim]]]:
        """Each device of the inventory with the claims it holds (``onelab gpu list``)."""
        held: dict[str, list[Claim]] = defaultdict(list)
        for c in self.holders():
            held[c.device_uuid].append(c)
        return [(d, held.get(d.uuid, [])) for d in self.inventory.devices]

    def usage(self, since: datetime, user: str | None = None,
              course: str | None = None) -> dict[tuple[str, str], float]:
        """GPU-hours per (user, course) since ``since``, from the claims' intervals (a held
        claim counts up to now). An hour holding a shared slot counts as an hour."""
        t = claims_table
        now = self.now()
        query = sa.select(t).where(t.c.claimed_at < now,
                                   sa.or_(_HELD, t.c.released_at > since))
        if user is not None:
            query = query.where(t.c.username == user)
        if course is not None:
            query = query.where(t.c.course == course)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        hours: dict[tuple[str, str], float] = defaultdict(float)
        for row in rows:
            claim = _claim(row)
            hours[(claim.username, claim.course)] += claim.hours(since, now)
        return dict(sorted(hours.items()))

    def hours_left(self, user: str, course: str, week_start: datetime,
                   limit: float) -> float | None:
        """GPU-hours ``user`` has left this week in ``course`` under a weekly ``limit``
        (Policy.weekly_hours); None when the limit is 0 (unlimited). Never below 0."""
        if not limit:
            return None
        used = self.usage(week_start, user, course).get((user, course), 0.0)
        return max(limit - used, 0.0)
