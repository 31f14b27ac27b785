"""A learner's server and the GPUs, as the spawner meets them (hub/spawner.py).

Which course's policy a server runs under (the learner's courses, from their
``<course>-learners`` groups, and their choice on the spawn form), the weekly quota, the claim
(in a queue while nothing is free, up to ``gpu.queue_wait_limit``, then CPU, with the reason
told), and what the container gets for it. Without an inventory (no GPU on this host and none
declared) every server runs on CPU and nothing here touches the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hub.gpu import inventory as inventory_mod
from hub.gpu.claims import Claim, Claims, container_request, utcnow
from hub.gpu.inventory import Inventory
from hub.gpu.policy import Policy, week_start
from onelab import dockerdoor
from onelab.course import Course
from onelab.i18n import N_
from onelab.settings import Settings

LABEL = "onelab.gpu"
CPU = "cpu"
"""The spawn form's choice of no GPU."""

WAITING = N_("Waiting for a GPU ({course}): number {position} in the queue")
GOT = N_("GPU {device} ({policy}) for {course}")
QUOTA = N_("No GPU time left this week in {course} (limit {limit} h): starting on CPU")
WAITED = N_("No GPU came free within {seconds} s: starting on CPU")
LEFT = N_("GPU time left this week in {course}: {hours} h")


@dataclass
class Decision:
    """What a start gets: a claim, or CPU with why (``why``: a message id above, or None when
    CPU was chosen or nothing offers a GPU)."""

    claim: Claim | None = None
    course: str | None = None
    why: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


class GpuDoor:
    """One per hub process: the inventory, the claims and the queue of servers waiting."""

    def __init__(self, settings: Settings, inventory: Inventory,
                 courses: list[Course], claims: Claims | None = None) -> None:
        self.settings = settings
        self.inventory = inventory
        self.courses = {c.id: c for c in courses}
        self.claims = claims if claims is not None or not inventory else \
            Claims(settings.db_url, inventory)
        self.waiting: list[tuple[str, str, str]] = []
        """(user, server, policy kind) of each server waiting, first come first served."""
        self.reconciled = False

    @property
    def enabled(self) -> bool:
        return bool(self.inventory) and self.claims is not None

    def offers(self, groups: list[str]) -> list[tuple[str, Policy]]:
        """The GPU policies the learner's courses offer, one per course with a GPU policy."""
        out = []
        for g in sorted(groups):
            course = self.courses.get(g.removesuffix("-learners")) if g.endswith(
                "-learners") else None
            if course is None:
                continue
            policy = Policy.of(self.settings.gpu, course.gpu)
            if policy.kind != "none" and policy.capacity(self.inventory):
                out.append((course.id, policy))
        return out

    def reconcile(self, live: set[tuple[str, str]]) -> list[Claim]:
        """Once per hub process, before its first claim: claims of servers that no longer
        run (the hub died while they stopped) are given back."""
        if self.reconciled or self.claims is None:
            return []
        self.reconciled = True
        return self.claims.reconcile(live)

    async def decide(self, user: str, server: str, groups: list[str], choice: str | None,
                     say: Callable[[str, dict[str, Any]], None],
                     sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                     every: float = 2.0, wait_limit: float | None = None) -> Decision:
        """The claim for this start, waiting in the queue while none is free (at most
        ``wait_limit`` seconds, default ``gpu.queue_wait_limit``). ``say(message, fields)``
        reports progress (the spawn page shows it)."""
        offers = self.offers(groups) if self.enabled else []
        if choice == CPU or not offers:
            return Decision()
        course, policy = next(((c, p) for c, p in offers if c == choice), offers[0])
        assert self.claims is not None
        if policy.weekly_hours:
            left = await asyncio.to_thread(self.claims.hours_left, user, course,
                                           week_start(utcnow()), policy.weekly_hours)
            if left is not None and left <= 0:
                fields = {"course": course, "limit": f"{policy.weekly_hours:g}"}
                say(QUOTA, fields)
                return Decision(course=course, why=QUOTA, fields=fields)
            say(LEFT, {"course": course, "hours": f"{left:.2f}"})
        me = (user, server, policy.kind)
        self.waiting.append(me)
        waited = 0.0
        limit = self.settings.gpu.queue_wait_limit if wait_limit is None else wait_limit
        try:
            while True:
                ahead = [w for w in self.waiting if w[2] == policy.kind]
                position = ahead.index(me) + 1
                if position == 1:
                    claim = await asyncio.to_thread(self.claims.claim, user, server, course,
                                                    policy)
                    if claim is not None:
                        say(GOT, {"device": claim.label, "policy": policy.kind,
                                  "course": course})
                        return Decision(claim=claim, course=course)
                if waited >= limit:
                    fields = {"seconds": limit}
                    say(WAITED, fields)
                    return Decision(course=course, why=WAITED, fields=fields)
                say(WAITING, {"course": course, "position": position})
                await sleep(every)
                waited += every
        finally:
            self.waiting.remove(me)

    def release(self, user: str, server: str) -> Claim | None:
        return self.claims.release(user, server) if self.claims is not None else None


def container(claim: Claim, device_requests: bool) -> dict[str, Any]:
    """What the container gets for a claim: environment, label, and Docker's device request by
    UUID where the engine has the NVIDIA runtime (left out on a host without GPUs, where the
    claim is still on the label and in the environment)."""
    req = container_request(claim)
    host: dict[str, Any] = {}
    if device_requests:  # by UUID, through the one door to Docker
        host["device_requests"] = dockerdoor.device_requests(f"device={claim.device_uuid}")
    return {"env": req["env"], "labels": {LABEL: req["label"]}, "host_config": host}


def offered(settings: Settings) -> bool:
    """Whether any course hands out GPUs on this host (devices there, a policy that uses
    them): then learners holding a claim need the GPU image (`onelab up` checks it)."""
    inventory = inventory_mod.load(settings.gpu)
    if not inventory:
        return False
    from hub.courses import course_specs

    return any(Policy.of(settings.gpu, c.gpu).capacity(inventory)
               for c in course_specs(settings))


_DOORS: dict[str, GpuDoor] = {}


def door(settings: Settings) -> GpuDoor:
    """The hub process's one door (its inventory read once, at first use). Keyed by the hub's
    database, not by the settings object: traitlets gives each Spawner its own deep copy of
    the settings, and the queue, the claims' engine and the metrics must be the process's."""
    key = settings.db_url
    if key not in _DOORS:
        from hub.courses import course_specs

        d = _DOORS[key] = GpuDoor(settings, inventory_mod.load(settings.gpu),
                                  course_specs(settings))
        if d.enabled:  # the hub's /hub/metrics shows the claims from now on
            from hub.gpu.metrics import register

            register(d)
    return _DOORS[key]
