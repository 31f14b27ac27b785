"""GPUs for the platform's own work (``onelab grade --gpus``, ``onelab regress --device cuda``)
taken from the same claims as learners' servers, so grading never lands on a learner's GPU.

Each device is claimed whole (``exclusive``) for the holder ``onelab-<what>`` and the server
``<pid>-<n>``, and given back when the work ends. A claim left by a command that died is given
back by the next borrow (its pid is gone) or by the hub's reconcile at its next start. Without
an inventory nothing is claimed and the request stands as given (``all``, ``N``, ``device=…``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from hub.gpu import inventory as inventory_mod
from hub.gpu.claims import Claims
from hub.gpu.policy import Policy
from hub.supervise import alive
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings

NONE_FREE = N_("no GPU is free for {what} ({held} of {total} held): see `onelab gpu list`, or "
               "run it on CPU")


def _count(gpus: str, total: int) -> int:
    if gpus == "all":
        return total
    if gpus.startswith("device="):
        return len(gpus.split("=", 1)[1].split(","))
    return int(gpus)


@contextmanager
def borrowed(settings: Settings, what: str, gpus: str) -> Iterator[str]:
    """Docker's ``gpus`` value for ``what`` ("grade", "regress"): ``device=<uuid>,…`` for the
    devices claimed (as many as ``gpus`` asks; ``all`` takes every free one, at least one)."""
    if gpus == "none":
        yield gpus
        return
    inventory = inventory_mod.load(settings.gpu)
    if not inventory:
        yield gpus
        return
    claims = Claims(settings.db_url, inventory)
    holder = f"onelab-{what}"
    for c in claims.holders():  # left by a command that died
        pid = c.server_name.split("-", 1)[0]
        if c.username == holder and pid.isdigit() and not alive(int(pid)):
            claims.release(holder, c.server_name)
    total = len(inventory.whole_gpus())
    want = max(_count(gpus, total), 1)
    got = []
    try:
        for n in range(want):
            claim = claims.claim(holder, f"{os.getpid()}-{n}", "", Policy("exclusive"))
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
