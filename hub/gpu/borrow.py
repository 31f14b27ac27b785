"""GPUs for the platform's own work (``onelab grade --gpus``, ``onelab regress --device cuda``)
taken from the same claims as learners' servers, so grading never lands on a learner's GPU.

Each device is claimed whole (``exclusive``) for the holder ``onelab-<what>`` and the server
``<pid>-<token>-<n>``, and given back when the work ends. A claim left by a command that died is given
back by the next borrow (its pid is gone) or by the hub's reconcile at its next start. Without
an inventory nothing is claimed and the request stands as given (``all``, ``N``, ``device=…``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from hub.gpu import inventory as inventory_mod
from hub.gpu.claims import Claim, Claims
from hub.gpu.policy import Policy
from hub.supervise import alive
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import GpuSettings, Settings

HOLDER = "onelab-"
"""A borrow's holder is ``onelab-<what>`` and its server name starts with its pid (a
learner's default server has the name "")."""

NONE_FREE = N_("no GPU is free for {what} ({held} of {total} held): see `onelab gpu list`, or "
               "run it on CPU")


def _count(gpus: str, total: int) -> int:
    if gpus == "all":
        return total
    if gpus.startswith("device="):
        return len(gpus.split("=", 1)[1].split(","))
    return int(gpus)


def _pid(claim: Claim) -> int | None:
    """The process a borrow belongs to (its server name is ``<pid>-<token>-<n>``), or None
    for a learner's claim."""
    pid = claim.server_name.split("-", 1)[0]
    return int(pid) if claim.username.startswith(HOLDER) and pid.isdigit() else None


def live_borrows(claims: Claims) -> set[tuple[str, str]]:
    """(holder, server) of the borrows whose process still runs: what the hub's reconcile must
    keep beside the learners' running containers (a grading run started before the hub)."""
    return {(c.username, c.server_name) for c in claims.holders()
            if (pid := _pid(c)) is not None and alive(pid)}


@contextmanager
def borrowed(settings: Settings, what: str, gpus: str) -> Iterator[str]:
    """Docker's ``gpus`` value for ``what`` ("grade", "regress"): ``device=<uuid>,…`` for the
    devices claimed (as many as ``gpus`` asks; ``all`` takes every free one, at least one)."""
    with borrow(settings.db_url, settings.gpu, what, gpus) as value:
        yield value


@contextmanager
def borrow(db_url: str, gpu: GpuSettings, what: str, gpus: str) -> Iterator[str]:
    """`borrowed` for a process that has the hub's database and GPU settings but not the whole
    Settings (the exchange, for the formgrader's Autograde). Each borrow is its own server
    name, so threads of one process never share a claim."""
    if gpus == "none":
        yield gpus
        return
    inventory = inventory_mod.load(gpu)
    if not inventory:
        yield gpus
        return
    claims = Claims(db_url, inventory)
    holder = f"{HOLDER}{what}"
    for c in claims.holders():  # left by a command that died
        if c.username == holder and (pid := _pid(c)) is not None and not alive(pid):
            claims.release(holder, c.server_name)
    total = len(inventory.whole_gpus())
    want = max(_count(gpus, total), 1)
    token = secrets.token_hex(4)
    got = []
    try:
        for n in range(want):
            claim = claims.claim(holder, f"{os.getpid()}-{token}-{n}", "", Policy("exclusive"))
            if claim is None:
                break
            got.append(claim)
        if not got or (gpus != "all" and len(got) < want):
            raise OneLabError(NONE_FREE, what=what, held=len(claims.holders()) - len(got),
                              total=total)
        yield "device=" + ",".join(c.device_uuid for c in got)
    finally:
        for c in got:
            claims.release(holder, c.server_name)
        claims.engine.dispose()
