"""GPU claims in the hub database: a slot is never held twice, whether eight hub processes claim
at once, a hub is restarted mid-class, or courses with different policies share one box; a
stopped server gives its GPU back and stops counting against its learner's weekly hours. The
clock is injected; the property test drives random sequences of claims, releases, restarts and
quota checks (a seeded loop: hypothesis is not in the host's lock)."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import tempfile
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.gpu.claims import Claims, claims_table, container_request, parse_label
from hub.gpu.inventory import Device, Inventory
from hub.gpu.policy import Policy

T0 = datetime(2026, 3, 2, 9, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def pass_(self, hours: float) -> None:
        self.t += timedelta(hours=hours)


def gpus(n: int, migs_on_last: int = 0) -> Inventory:
    devices = [Device(i, f"GPU-{i:04d}", "Test GPU", 40960) for i in range(n)]
    devices += [Device(n - 1, f"MIG-{n - 1:04d}-{j}", "Test GPU MIG 1g.5gb", 5120, True,
                       f"GPU-{n - 1:04d}") for j in range(migs_on_last)]
    return Inventory(tuple(devices), "settings")


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'hub.sqlite'}"


def held_rows(db: str | sa.Engine) -> list[dict]:
    """The held rows as the table has them (not as Claims reports them)."""
    engine = sa.create_engine(db) if isinstance(db, str) else db
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(claims_table).where(claims_table.c.released_at.is_(None)))]
    finally:
        if isinstance(db, str):
            engine.dispose()


def test_exclusive_hands_each_gpu_to_one_learner_and_asking_twice_is_harmless(db):
    claims = Claims(db, gpus(2), now=Clock())
    kim = claims.claim("kim", "", "ai101", "exclusive")
    lee = claims.claim("lee", "", "ai101", "exclusive")
    assert {kim.device_uuid, lee.device_uuid} == {"GPU-0000", "GPU-0001"}
    assert claims.claim("kim", "", "ai101", "exclusive") == kim  # a retried spawn
    assert claims.claim("park", "", "ai101", "exclusive") is None  # none free
    claims.release("kim", "")
    park = claims.claim("park", "", "ai101", "exclusive")
    assert park.device_uuid == kim.device_uuid and park.slot == 0
    assert claims.release("nobody", "") is None


def test_shared_spreads_learners_and_caps_their_memory(db):
    claims = Claims(db, gpus(2), now=Clock())
    policy = Policy("shared", per_device=2, memory_fraction=0.5)
    got = [claims.claim(f"u{i}", "", "ai101", policy) for i in range(5)]
    # Least-loaded GPU first: u0 and u1 land on different GPUs, then they fill up.
    assert [(c.device_uuid, c.slot) for c in got[:4]] == [
        ("GPU-0000", 0), ("GPU-0001", 0), ("GPU-0000", 1), ("GPU-0001", 1)]
    assert got[4] is None
    assert container_request(got[2]) == {
        "device_uuid": "GPU-0000",
        "env": {"NVIDIA_VISIBLE_DEVICES": "GPU-0000", "ONELAB_GPU": "GPU-0000",
                "ONELAB_GPU_MEMORY_FRACTION": "0.5"},
        "label": "GPU-0000/1"}
    assert parse_label("GPU-0000/1") == ("GPU-0000", 1)
    assert parse_label("MIG-GPU-0000/7/0/3") == ("MIG-GPU-0000/7/0", 3)
    assert parse_label("garbage") is None


def test_policies_never_mix_on_one_gpu_and_mig_hands_out_instances(db):
    claims = Claims(db, gpus(3, migs_on_last=2), now=Clock())  # GPU 2 is in MIG mode
    shared = claims.claim("kim", "", "ai101", Policy("shared", per_device=4))
    assert shared.device_uuid == "GPU-0000" and shared.memory_fraction == 0.25
    # A whole GPU is never one with a shared learner on it, nor a GPU in MIG mode.
    ex = claims.claim("lee", "", "ml201", "exclusive")
    assert ex.device_uuid == "GPU-0001"
    assert claims.claim("park", "", "ml201", "exclusive") is None
    # Shared learners of another course may not join the exclusive one's GPU.
    assert claims.claim("choi", "", "ai101", Policy("shared", per_device=4)).device_uuid == \
        "GPU-0000"
    m1 = claims.claim("jung", "", "mig301", "mig")
    m2 = claims.claim("kang", "", "mig301", "mig")
    assert {m1.device_uuid, m2.device_uuid} == {"MIG-0002-0", "MIG-0002-1"}
    assert claims.claim("yoon", "", "mig301", "mig") is None
    assert container_request(m1)["env"] == {"NVIDIA_VISIBLE_DEVICES": m1.device_uuid,
                                            "ONELAB_GPU": m1.device_uuid}
    assert claims.claim("cpu", "", "intro", "none") is None


def test_courses_with_different_shares_never_oversubscribe_memory(db):
    claims = Claims(db, gpus(1), now=Clock())
    halves, thirds = Policy("shared", per_device=2), Policy("shared", per_device=3)
    assert claims.claim("a", "", "halves", halves).memory_fraction == 0.5
    assert claims.claim("b", "", "thirds", thirds).memory_fraction == 0.3333
    assert claims.claim("c", "", "thirds", thirds) is None  # 0.5 + 0.33 + 0.33 > 1
    assert claims.claim("d", "", "halves", halves) is None  # two held: halves allows 2


def test_the_database_itself_refuses_a_second_holder_of_a_slot(db):
    claims = Claims(db, gpus(1), now=Clock())
    claims.claim("kim", "", "ai101", "exclusive")
    row = {"device_uuid": "GPU-0000", "slot": 0, "username": "lee", "server_name": "",
           "course": "ai101", "policy": "exclusive", "claimed_at": T0}
    with pytest.raises(sa.exc.IntegrityError), claims.engine.begin() as conn:
        conn.execute(claims_table.insert().values(**row))  # a writer that skips claim()
    with pytest.raises(sa.exc.IntegrityError), claims.engine.begin() as conn:
        conn.execute(claims_table.insert().values(**{**row, "username": "kim", "slot": 1}))
    claims.release("kim", "")
    with claims.engine.begin() as conn:  # released rows stay, and no longer hold the slot
        conn.execute(claims_table.insert().values(**row))


def test_a_restarted_hub_keeps_claims_and_reconciles_with_running_servers(db):
    clock = Clock()
    first = Claims(db, gpus(2), now=clock)
    kim = first.claim("kim", "", "ai101", "exclusive")
    first.claim("lee", "", "ai101", "exclusive")
    first.engine.dispose()  # the hub is killed
    clock.pass_(1)
    again = Claims(db, gpus(2), now=clock)
    assert again.claim("park", "", "ai101", "exclusive") is None  # nothing handed out twice
    released = again.reconcile({("kim", "")})  # lee's container died with the hub
    assert [(c.username, c.released_at) for c in released] == [("lee", clock.t)]
    assert [c.username for c in again.holders()] == ["kim"]
    assert again.claim("kim", "", "ai101", "exclusive") == kim
    assert again.claim("park", "", "ai101", "exclusive").device_uuid != kim.device_uuid
    assert [(d.uuid, [c.username for c in held]) for d, held in again.by_device()] == [
        ("GPU-0000", ["kim"]), ("GPU-0001", ["park"])]


def test_usage_and_hours_left_count_claim_intervals(db):
    clock = Clock()
    claims = Claims(db, gpus(2), now=clock)
    week = T0 - timedelta(hours=9)
    claims.claim("kim", "", "ai101", "exclusive")
    clock.pass_(2)
    claims.release("kim", "")
    clock.pass_(1)
    claims.claim("kim", "", "ai101", "exclusive")
    claims.claim("kim", "other", "ml201", "exclusive")  # a named server, another course
    clock.pass_(1.5)
    assert claims.usage(week) == {("kim", "ai101"): 3.5, ("kim", "ml201"): 1.5}
    assert claims.hours_left("kim", "ai101", week, limit=5) == 1.5
    assert claims.hours_left("kim", "ai101", week, limit=0) is None  # unlimited
    clock.pass_(10)
    assert claims.hours_left("kim", "ai101", week, limit=5) == 0  # never below zero
    # Hours before `since` do not count.
    assert claims.usage(T0 + timedelta(hours=3)) == {("kim", "ai101"): 11.5,
                                                     ("kim", "ml201"): 11.5}


def _claim_in_process(db: str, n_gpus: int, user: str, policy: Policy, barrier, out) -> None:
    claims = Claims(db, gpus(n_gpus))
    barrier.wait()
    got = claims.claim(user, "", "ai101", policy)
    out.put((user, got.label if got else None))


def race(db: str, n_gpus: int, policies: list[Policy]) -> list[str]:
    """Each policy claimed by its own process, all at once; the labels they got."""
    Claims(db, gpus(n_gpus)).engine.dispose()  # the table exists before they race
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(len(policies)), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process,
                         args=(db, n_gpus, f"u{i}", policy, barrier, out))
             for i, policy in enumerate(policies)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return sorted(label for _, label in results if label)


def test_eight_hub_processes_claiming_at_once_share_no_gpu(db):
    assert race(db, 2, [Policy("exclusive")] * 8) == ["GPU-0000/0", "GPU-0001/0"]
    assert len(held_rows(db)) == 2


def test_exclusive_and_shared_racing_for_one_gpu_never_both_get_it(db):
    won = race(db, 1, [Policy("exclusive"), Policy("shared", per_device=3)] * 3)
    kinds = {r["policy"] for r in held_rows(db)}
    assert won in (["GPU-0000/0"], ["GPU-0000/0", "GPU-0000/1", "GPU-0000/2"]), won
    assert len(kinds) == 1


def test_threads_of_one_hub_claiming_at_once_share_no_slot(db):
    claims = Claims(db, gpus(2))
    policy = Policy("shared", per_device=3)
    barrier, got = threading.Barrier(10), []

    def spawn(i: int) -> None:
        barrier.wait()
        got.append(claims.claim(f"u{i}", "", "ai101", policy))

    threads = [threading.Thread(target=spawn, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    labels = [c.label for c in got if c]
    assert len(labels) == 6 and len(set(labels)) == 6
    assert Counter(c.device_uuid for c in got if c) == {"GPU-0000": 3, "GPU-0001": 3}


# The property test: random classes against one box with whole GPUs and MIG instances, four
# courses with different policies, and a hub that is restarted now and then.
COURSES = {"ex": Policy("exclusive"), "halves": Policy("shared", per_device=2),
           "thirds": Policy("shared", per_device=3), "mig": Policy("mig")}
USERS = [f"u{i}" for i in range(7)]
SERVERS = ["", "gpu"]


def _check(db: sa.Engine, inventory: Inventory) -> None:
    held = held_rows(db)
    slots = Counter((r["device_uuid"], r["slot"]) for r in held)
    assert max(slots.values(), default=1) == 1, f"a slot held twice: {slots}"
    servers = Counter((r["username"], r["server_name"]) for r in held)
    assert max(servers.values(), default=1) == 1, f"a server with two claims: {servers}"
    for uuid in {r["device_uuid"] for r in held}:
        rows = [r for r in held if r["device_uuid"] == uuid]
        device = inventory.get(uuid)
        kinds = {r["policy"] for r in rows}
        assert len(kinds) == 1, f"{uuid} holds {kinds} at once"
        kind = kinds.pop()
        assert device in Policy(kind).devices(inventory), f"{kind} claim on {uuid}"
        if kind == "shared":
            allowed = max(COURSES[r["course"]].per_device for r in rows)
            assert len(rows) <= allowed, f"{uuid}: {len(rows)} shared learners"
            assert sum(r["memory_fraction"] for r in rows) <= 1 + 1e-9
        else:
            assert len(rows) == 1, f"{uuid}: {len(rows)} {kind} claims"


@pytest.fixture
def shm_path(tmp_path):
    """A folder in memory when there is one: 300 classes commit some 4,000 times, and fsync
    on a busy disk would make that half a minute."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="onelab-gpu-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def random_classes(rng: random.Random, runs: int, db_for_run) -> None:
    """`runs` random classes, each on the database `db_for_run(run)` gives (empty), checking
    the invariants after every step. Shared with the PostgreSQL test."""
    inventory = gpus(3, migs_on_last=3)  # 2 whole GPUs, 3 MIG instances of the third
    for run in range(runs):
        db = db_for_run(run)
        clock = Clock()
        claims = Claims(db, inventory, now=clock)
        live: dict[tuple[str, str], str] = {}  # server -> course: what runs
        for _ in range(rng.randint(4, 16)):
            op = rng.choices(["claim", "release", "restart", "time", "quota"],
                             weights=[6, 3, 1, 2, 2])[0]
            user, server = rng.choice(USERS), rng.choice(SERVERS)
            if op == "claim":
                course = live.get((user, server)) or rng.choice(list(COURSES))
                got = claims.claim(user, server, course, COURSES[course])
                if got is not None:
                    live[(user, server)] = got.course
            elif op == "release":
                released = claims.release(user, server)
                assert (released is not None) == ((user, server) in live)
                live.pop((user, server), None)
            elif op == "restart":
                claims.engine.dispose()
                for key in [k for k in live if rng.random() < 0.3]:
                    del live[key]  # these containers did not survive
                claims = Claims(db, inventory, now=clock)
                claims.reconcile(set(live))
            elif op == "time":
                clock.pass_(rng.choice([0.25, 1, 3]))
            else:
                # A released learner's hours stop growing; a holder's grow with the clock.
                course = rng.choice(list(COURSES))
                before = claims.usage(T0).get((user, course), 0.0)
                left = claims.hours_left(user, course, T0, limit=10)
                clock.pass_(1)
                after = claims.usage(T0).get((user, course), 0.0)
                holding = sum(1 for k, c in live.items() if k[0] == user and c == course)
                assert after == pytest.approx(before + holding)
                assert left == pytest.approx(max(10 - before, 0))
            assert {(c.username, c.server_name) for c in claims.holders()} == set(live)
            _check(claims.engine, inventory)
        claims.engine.dispose()


def test_property_random_spawns_stops_and_restarts_never_overallocate(shm_path):
    random_classes(random.Random(14), 300,
                   lambda run: f"sqlite:///{shm_path / f'hub{run}.sqlite'}")


def test_onelab_gpu_list_and_usage(tmp_path, monkeypatch, capsys):
    from hub.gpu import report
    from onelab.settings import load
    from onelab_cli import main as cli

    monkeypatch.chdir(tmp_path)  # no onelab.yaml here
    monkeypatch.setenv("ONELAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-nvidia-smi"))
    assert cli.main(["gpu", "list"], environ={"ONELAB_LANG": "en"}) == 0
    assert "No GPUs: the gpu.inventory setting declares none and nvidia-smi found none" in \
        capsys.readouterr().out
    assert cli.main(["gpu", "usage"], environ={"ONELAB_LANG": "ko"}) == 0
    assert "GPU가 없습니다" in capsys.readouterr().out
    assert not (tmp_path / "state").exists()  # nothing to show, nothing written

    monkeypatch.setenv("ONELAB_GPU__INVENTORY", "[{uuid: GPU-a, model: Fake, memory_mib: 1024}, "
                                                "{uuid: GPU-b}]")
    monkeypatch.setenv("ONELAB_GPU__WEEKLY_GPU_HOURS", "20")
    s = load()
    clock = Clock()
    claims = Claims(s.db_url, report.devices(s)[0], now=clock)
    claims.claim("kim", "", "ai101", "exclusive")
    clock.pass_(2)
    assert cli.main(["gpu", "list"], environ={"ONELAB_LANG": "en"}) == 0
    out = capsys.readouterr().out
    assert "2 device(s), from the gpu.inventory setting" in out
    assert "GPU-a" in out and "kim (ai101, exclusive, since" in out and "free" in out
    rows = report.usage(s, week=True, now=clock.t, limits=lambda course: 20)
    assert rows == [report.UsageRow("kim", "ai101", 2.0, 20, 18.0)]
    assert cli.main(["gpu", "usage"], environ={"ONELAB_LANG": "en"}) == 0
    assert "kim" in capsys.readouterr().out
