"""A learner's start and the GPUs (hub/gpu/spawn.py): the course's policy, the queue with the
learner's place in it, CPU after the wait limit, the weekly quota, and the choice of CPU, with
the claims in a real SQLite database and the clock and sleep injected."""

from __future__ import annotations

import asyncio

import pytest

from hub.gpu.claims import Claims
from hub.gpu.inventory import Device, Inventory
from hub.gpu.spawn import CPU, GOT, QUOTA, WAITED, WAITING, GpuDoor, container
from onelab.course import Course, CourseGpu
from onelab.settings import load


def course(cid: str, **gpu) -> Course:
    return Course.model_validate({
        "id": cid, "title": {"ko": cid, "en": cid}, "instructors": ["kim"], "gpu": CourseGpu(**gpu),
        "assignments": [{"id": "a1", "title": {"ko": "과제", "en": "A1"}}]})


@pytest.fixture
def door(tmp_path):
    settings = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path),
                                        "ONELAB_GPU__QUEUE_WAIT_LIMIT": "6"})
    inv = Inventory((Device(0, "GPU-aaaa", "test", 16384),))
    return GpuDoor(settings, inv, [course("deep", policy="exclusive"),
                                   course("shared", policy="shared", per_device=2),
                                   course("quota", policy="exclusive", weekly_hours=1),
                                   course("plain")],
                   Claims(f"sqlite:///{tmp_path}/claims.sqlite", inv))


def run(coro):
    return asyncio.run(coro)


class Said:
    def __init__(self):
        self.lines = []

    def __call__(self, message, fields):
        self.lines.append((message, dict(fields)))


def test_a_course_without_a_gpu_policy_or_a_cpu_choice_gets_no_claim(door):
    said = Said()
    assert run(door.decide("amy", "", ["plain-learners"], None, said)).claim is None
    assert run(door.decide("amy", "", ["deep-learners"], CPU, said)).claim is None
    assert said.lines == [] and door.claims.holders() == []
    assert [c for c, _ in door.offers(["deep-learners", "plain-learners", "x-staff"])] == ["deep"]


def test_the_second_learner_waits_in_the_queue_then_gets_cpu_with_the_reason(door):
    said = Said()
    first = run(door.decide("amy", "", ["deep-learners"], None, said))
    assert first.claim.device_uuid == "GPU-aaaa" and said.lines[-1][0] == GOT
    said2 = Said()
    naps = []

    async def nap(s):
        naps.append(s)

    second = run(door.decide("ben", "", ["deep-learners"], None, said2, sleep=nap))
    assert second.claim is None and second.why == WAITED
    waits = [f for m, f in said2.lines if m == WAITING]
    assert waits and all(f["position"] == 1 for f in waits) and sum(naps) >= 6
    assert door.waiting == []  # the queue forgets who left it


def test_a_freed_gpu_goes_to_the_first_in_the_queue(door):
    run(door.decide("amy", "", ["deep-learners"], None, Said()))

    async def scenario():
        said_ben, said_cho = Said(), Said()
        ben = asyncio.create_task(door.decide("ben", "", ["deep-learners"], None, said_ben,
                                              every=0.05))
        await asyncio.sleep(0.02)
        cho = asyncio.create_task(door.decide("cho", "", ["deep-learners"], None, said_cho,
                                              every=0.05))
        await asyncio.sleep(0.2)
        assert [w[0] for w in door.waiting] == ["ben", "cho"]
        assert said_cho.lines[-1] == (WAITING, {"course": "deep", "position": 2})
        door.release("amy", "")
        got = await ben
        door.release("ben", "")
        return got, await cho

    ben, cho = run(scenario())
    assert ben.claim is not None and cho.claim is not None


def test_a_learner_past_the_weekly_hours_starts_on_cpu_and_is_told(door):
    from datetime import timedelta

    clock = [door.claims.now()]
    door.claims.now = lambda: clock[0]
    run(door.decide("amy", "", ["quota-learners"], None, Said()))
    clock[0] += timedelta(hours=1, minutes=1)
    door.release("amy", "")
    said = Said()
    d = run(door.decide("amy", "", ["quota-learners"], None, said))
    assert d.claim is None and d.why == QUOTA and said.lines[0][0] == QUOTA


def test_the_container_gets_the_label_environment_and_a_device_request_only_with_nvidia(door):
    claim = run(door.decide("amy", "", ["shared-learners"], None, Said())).claim
    plain = container(claim, device_requests=False)
    assert plain["labels"] == {"onelab.gpu": "GPU-aaaa/0"} and plain["host_config"] == {}
    assert plain["env"]["NVIDIA_VISIBLE_DEVICES"] == "GPU-aaaa"
    assert plain["env"]["ONELAB_GPU_MEMORY_FRACTION"] == "0.5"
    nv = container(claim, device_requests=True)
    request, = nv["host_config"]["device_requests"]
    assert request["device_ids"] == ["GPU-aaaa"] and request["driver"] == "nvidia"
    import docker

    assert docker.types.DeviceRequest(**request)["DeviceIDs"] == ["GPU-aaaa"]  # docker-py takes it


def test_the_first_start_after_a_hub_restart_gives_back_claims_of_gone_servers(door):
    run(door.decide("amy", "", ["shared-learners"], None, Said()))
    run(door.decide("ben", "", ["shared-learners"], None, Said()))
    gone = door.reconcile({("ben", "")})
    assert [c.username for c in gone] == ["amy"]
    assert door.reconcile(set()) == []  # once per hub process
    assert [c.username for c in door.claims.holders()] == ["ben"]


def test_prometheus_sees_claims_the_queue_and_gpu_seconds(door):
    from prometheus_client import CollectorRegistry, generate_latest

    from hub.gpu.metrics import register

    registry = CollectorRegistry()
    register(door, registry)
    run(door.decide("amy", "", ["deep-learners"], None, Said()))
    door.waiting.append(("ben", "", "exclusive"))
    text = generate_latest(registry).decode()
    assert 'onelab_gpu_claims{device="GPU-aaaa",model="test"} 1.0' in text
    assert 'onelab_gpu_queue_length{policy="exclusive"} 1.0' in text
    assert 'onelab_gpu_seconds_total{course="deep"}' in text


def test_every_spawner_of_a_hub_shares_one_door(tmp_path):
    """traitlets hands each Spawner a deep copy of the settings: the queue must not split."""
    import copy

    from hub.gpu import spawn

    s = load(path=None, environ={"ONELAB_STATE_DIR": str(tmp_path)})
    assert spawn.door(s) is spawn.door(copy.deepcopy(s))
