"""What ``onelab gpu list`` and ``onelab gpu usage`` show, as data: the command only prints it.

Both read the hub's database directly (hub up or down), as ``onelab users`` does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from hub.gpu import inventory as inventory_mod
from hub.gpu.claims import Claim, Claims, utcnow
from hub.gpu.inventory import Device, Inventory
from hub.gpu.policy import Policy, week_start
from onelab.settings import Settings

EVER = datetime(1970, 1, 1)


@dataclass(frozen=True)
class UsageRow:
    user: str
    course: str
    hours: float
    limit: float  # weekly GPU-hours of the course's policy; 0: unlimited
    left: float | None  # with a week and a limit: what is left of it


def devices(settings: Settings, inventory: Inventory | None = None
            ) -> tuple[Inventory, list[tuple[Device, list[Claim]]]]:
    """The inventory in force and each device's holders; no devices, no database touched."""
    inv = inventory if inventory is not None else inventory_mod.load(settings.gpu)
    if not inv:
        return inv, []
    return inv, Claims(settings.db_url, inv).by_device()


def weekly_limits(settings: Settings) -> Callable[[str], float]:
    """Course id -> its weekly GPU-hours (its course.yml over gpu.weekly_gpu_hours)."""
    from hub.courses import course_specs

    own = {c.id: Policy.of(settings.gpu, c.gpu).weekly_hours for c in course_specs(settings)}
    default = Policy.of(settings.gpu).weekly_hours
    return lambda course: own.get(course, default)


def usage(settings: Settings, week: bool, now: datetime | None = None,
          limits: Callable[[str], float] | None = None) -> list[UsageRow]:
    """GPU-hours per learner and course: since ever, or (``week``) since this week's Monday
    00:00 with what each has left."""
    claims = Claims(settings.db_url, Inventory(), now=(lambda: now) if now else utcnow)
    since = week_start(claims.now()) if week else EVER
    limit_of = limits or weekly_limits(settings)
    rows = []
    for (user, course), hours in claims.usage(since).items():
        limit = limit_of(course)
        left = max(limit - hours, 0.0) if week and limit else None
        rows.append(UsageRow(user, course, hours, limit, left))
    return rows
