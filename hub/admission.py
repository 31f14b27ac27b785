"""Admission control for cold starts: a bounded number of learner servers start at once.

When a class of 30 presses Start at 9:00 on a server with a few cores, starting all 30 at once
makes every one of them slow, and the slowest miss the spawn timeout and fail. Instead, at most
``spawner.starts_at_once`` servers start at a time (the host's cores by default); the others wait
in a first-come queue and see their place on the spawn page (JupyterHub's progress events). A
start holds its place from the moment it is admitted until its server answers HTTP, because the
server's own boot (Python, Jupyter Server, extensions) is where the cores go.

Waiting is not on the spawn timeout's clock: the hub gives each start ``start_timeout`` plus
``queue_wait_limit`` seconds (hub/spawner.py), and a start that has waited ``queue_wait_limit``
stops with a message that says the hub is busy, before JupyterHub's own timeout would.

One queue per hub process (one hub per platform), keyed like the GPU door by the hub database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from onelab.errors import OneLabError
from onelab.i18n import N_

WAITING = N_("Many servers are starting: number {position} in the queue ({limit} start at a "
             "time)")
ADMITTED = N_("Your server is starting")
TOO_LONG = N_("The hub started no server for you within {seconds} s because many servers "
              "were starting; please try again")

Say = Callable[[str, dict[str, Any]], None]


class Admission:
    """At most ``limit`` starts at once; the rest wait first come, first served."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self.running = 0
        self.waiting: list[object] = []
        self._changed = asyncio.Event()

    def _admissible(self, ticket: object) -> bool:
        return self.running < self.limit and bool(self.waiting) and self.waiting[0] is ticket

    @asynccontextmanager
    async def slot(self, say: Say, wait_limit: float,
                   clock: Callable[[], float] = time.monotonic) -> AsyncIterator[float]:
        """Wait for a place (saying the queue position each time it changes), hold it while
        the body runs; yields the seconds waited. Raises OneLabError(TOO_LONG) after
        ``wait_limit`` seconds in the queue."""
        ticket = object()
        self.waiting.append(ticket)
        started, said, admitted = clock(), 0, False
        try:
            while not self._admissible(ticket):
                position = self.waiting.index(ticket) + 1
                if position != said:
                    say(WAITING, {"position": position, "limit": self.limit})
                    said = position
                left = wait_limit - (clock() - started)
                if left <= 0:
                    raise OneLabError(TOO_LONG, seconds=int(wait_limit))
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=min(left, 5.0))
                except TimeoutError:
                    pass
            self.waiting.remove(ticket)
            self.running += 1
            admitted = True
            self._changed.set()  # the others move up
            if said:
                say(ADMITTED, {})
            yield clock() - started
        finally:
            if ticket in self.waiting:
                self.waiting.remove(ticket)
            if admitted:
                self.running -= 1
            self._changed.set()


_QUEUES: dict[str, Admission] = {}


def admission(key: str, limit: int) -> Admission:
    """The hub process's one queue (traitlets gives each Spawner its own copy of the
    settings, so the key is the hub's database, not the settings object)."""
    if key not in _QUEUES:
        _QUEUES[key] = Admission(limit)
    return _QUEUES[key]


async def until_answering(url: str, timeout: float,
                          fetch: Callable[[str], Awaitable[int]] | None = None) -> bool:
    """Poll ``url`` until the server answers HTTP at all (any status), or ``timeout`` passes;
    whether it answered. JupyterHub checks again after this, with its own http_timeout."""
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    async def default_fetch(u: str) -> int:
        try:
            r = await AsyncHTTPClient().fetch(u, request_timeout=5, follow_redirects=False,
                                              raise_error=False)
            return r.code
        except HTTPClientError as e:
            return e.code

    get = fetch or default_fetch
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await get(url) not in (0, 599):  # 599: tornado's "no connection"
                return True
        except OSError:
            pass
        await asyncio.sleep(0.25)
    return False
