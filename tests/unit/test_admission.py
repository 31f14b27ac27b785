"""Admission control (hub/admission.py): a crowd of starts is let through a few at a time, first
come first served; each waiting start is told its place whenever it changes; a start that waits
past the limit stops with a message; a start given up while waiting leaves the queue."""

from __future__ import annotations

import asyncio

import pytest

from hub.admission import ADMITTED, TOO_LONG, WAITING, Admission, until_answering
from onelab.errors import OneLabError


def test_a_crowd_starts_a_few_at_a_time_in_order_and_is_told_its_place():
    async def run() -> tuple[list[str], int, dict[str, list[tuple[str, dict]]]]:
        queue = Admission(2)
        order: list[str] = []
        said: dict[str, list[tuple[str, dict]]] = {}
        peak = 0

        async def start(name: str) -> None:
            nonlocal peak
            said[name] = []
            async with queue.slot(lambda m, f: said[name].append((m, f)), wait_limit=30):
                order.append(name)
                peak = max(peak, queue.running)
                await asyncio.sleep(0.05)

        names = [f"u{i}" for i in range(6)]
        await asyncio.gather(*(start(n) for n in names))  # created in this order
        assert queue.running == 0 and queue.waiting == []
        return order, peak, said

    order, peak, said = asyncio.run(run())
    assert order == [f"u{i}" for i in range(6)]
    assert peak == 2
    assert said["u0"] == [] and said["u1"] == []  # admitted at once: nothing to say
    places = [f["position"] for m, f in said["u5"] if m == WAITING]
    assert places[0] == 4 and places == sorted(set(places), reverse=True)  # only moving up
    assert said["u5"][-1] == (ADMITTED, {})
    assert all(f["limit"] == 2 for m, f in said["u5"] if m == WAITING)


def test_a_start_waiting_past_the_limit_stops_with_a_message():
    async def run() -> str:
        queue = Admission(1)
        hold = asyncio.Event()

        async def first() -> None:
            async with queue.slot(lambda m, f: None, wait_limit=30):
                await hold.wait()

        task = asyncio.create_task(first())
        await asyncio.sleep(0.01)
        try:
            async with queue.slot(lambda m, f: None, wait_limit=0.2):
                pytest.fail("admitted while the only place was held")
        except OneLabError as e:
            assert e.template == TOO_LONG
            message = str(e)
        assert queue.waiting == []  # it left the queue
        hold.set()
        await task
        return message

    assert "started no server for you within 0 s" in asyncio.run(run())


def test_a_start_given_up_while_waiting_leaves_the_queue_and_the_next_goes_on():
    async def run() -> list[str]:
        queue = Admission(1)
        hold, order = asyncio.Event(), []

        async def start(name: str, wait: asyncio.Event | None = None) -> None:
            async with queue.slot(lambda m, f: None, wait_limit=30):
                order.append(name)
                if wait:
                    await wait.wait()

        first = asyncio.create_task(start("a", hold))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(start("b"))
        last = asyncio.create_task(start("c"))
        await asyncio.sleep(0.01)
        gone.cancel()  # JupyterHub cancels a start when the learner stops it while pending
        await asyncio.sleep(0.01)
        assert len(queue.waiting) == 1
        hold.set()
        await asyncio.gather(first, last)
        assert queue.running == 0
        return order

    assert asyncio.run(run()) == ["a", "c"]


def test_until_answering_waits_for_any_http_answer():
    answers = iter([OSError("refused"), 599, 599, 302])

    async def fetch(url: str) -> int:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert asyncio.run(until_answering("http://x/user/a/api", 10, fetch)) is True

    async def never(url: str) -> int:
        raise OSError("refused")

    assert asyncio.run(until_answering("http://x/user/a/api", 0.3, never)) is False
