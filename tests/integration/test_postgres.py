"""The hub on a real PostgreSQL server: accounts, users and running servers live there and
survive a hub restart."""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import free_port, start_platform, stop_platform

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                                   reverse=True)), None)
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed (./run.sh test installs postgresql)")
    return found


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on loopback, run as the unprivileged `postgres` user."""
    user = "postgres"
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
        pw = pwd.getpwnam(user)
    # pytest's tmp dirs are root-only (0700): postgres needs a directory it can reach.
    root = Path(tempfile.mkdtemp(prefix="onelab-pg-"))
    os.chmod(root, 0o755)
    os.chown(root, pw.pw_uid, pw.pw_gid)
    data, sock = root / "data", root / "sock"
    for d in (data, sock):
        d.mkdir()
        os.chown(d, pw.pw_uid, pw.pw_gid)
    port = free_port()
    as_pg = ["runuser", "-u", user, "--"]
    init = subprocess.run([*as_pg, pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A",
                           "trust", "--no-sync"], capture_output=True, text=True, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    started = subprocess.run(
        [*as_pg, pg_bin("pg_ctl"), "-D", str(data), "-l", str(root / "pg.log"), "-w",
         "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
        capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    url_admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    eng = sa.create_engine(url_admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text("CREATE USER onelab PASSWORD 'pg-secret'"))
        c.execute(sa.text("CREATE DATABASE onelab OWNER onelab"))
    eng.dispose()
    yield f"postgresql://onelab:pg-secret@127.0.0.1:{port}/onelab"
    subprocess.run([*as_pg, pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_platform(docker_ready, postgres, tmp_path_factory):
    p = start_platform(tmp_path_factory.mktemp("pgplatform"), ONELAB_HUB__DB_URL=postgres)
    yield p
    stop_platform(p)


def test_hub_keeps_accounts_users_and_servers_in_postgres(pg_platform, postgres):
    p = pg_platform
    assert not (p.state_dir / "jupyterhub.sqlite").exists()
    p.add_learner("dahye", "pg-login-pass")
    hub = p.login("dahye")
    hub.start("dahye")
    hub.wait_ready("dahye")

    eng = sa.create_engine(postgres)
    with eng.connect() as c:
        hashed = c.execute(sa.text("SELECT password_hash FROM onelab_accounts WHERE name='dahye'"))
        assert hashed.scalar().startswith("scrypt$")
        accounts = {r[0] for r in c.execute(sa.text("SELECT name FROM onelab_accounts"))}
        assert accounts == {"admin", "dahye"}  # the first-start admin, and our learner
        users = {r[0] for r in c.execute(sa.text("SELECT name FROM users"))}
        assert "dahye" in users
        state = c.execute(sa.text(
            "SELECT s.state FROM spawners s JOIN users u ON s.user_id = u.id "
            "WHERE u.name='dahye'")).scalar()
        assert "object_name" in str(state)  # DockerSpawner's state, kept for restarts
    eng.dispose()

    # A hub restart reads it all back from PostgreSQL: the server is still known and ready.
    p.cli("down", "--keep-servers")
    p.cli("up", "--detach", timeout=180)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        u = p.admin().user("dahye")
        if u and u["servers"].get("", {}).get("ready"):
            break
        time.sleep(0.5)
    else:
        pytest.fail("dahye's server was not ready after the hub restart")
    assert p.login("dahye")


def test_gpu_claims_hold_on_postgres(postgres):
    """The claims' PostgreSQL path (LOCK TABLE, the partial unique indexes, savepoints): eight
    processes racing for two GPUs, exclusive against shared, a writer that skips claim(), and
    100 random classes with restarts, on the real server the hub would use."""
    from hub.gpu.claims import Claims, claims_table
    from hub.gpu.policy import Policy
    from tests.unit.test_gpu_claims import T0, gpus, held_rows, race, random_classes

    eng = sa.create_engine(postgres)

    def empty() -> str:
        claims_table.drop(eng, checkfirst=True)
        return postgres

    try:
        assert race(empty(), 2, [Policy("exclusive")] * 8) == ["GPU-0000/0", "GPU-0001/0"]
        assert len(held_rows(eng)) == 2
        won = race(empty(), 1, [Policy("exclusive"), Policy("shared", per_device=3)] * 3)
        assert won in (["GPU-0000/0"], ["GPU-0000/0", "GPU-0000/1", "GPU-0000/2"]), won
        assert len({r["policy"] for r in held_rows(eng)}) == 1

        claims = Claims(empty(), gpus(1))
        claims.claim("kim", "", "ai101", "exclusive")
        row = {"device_uuid": "GPU-0000", "slot": 0, "username": "lee", "server_name": "",
               "course": "ai101", "policy": "exclusive", "claimed_at": T0}
        with pytest.raises(sa.exc.IntegrityError), eng.begin() as conn:
            conn.execute(claims_table.insert().values(**row))
        claims.release("kim", "")
        with eng.begin() as conn:  # a released claim no longer holds the slot
            conn.execute(claims_table.insert().values(**row))
        claims.engine.dispose()

        random_classes(random.Random(16), 100, lambda run: empty())
    finally:
        eng.dispose()
