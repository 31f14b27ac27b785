"""The faults a school's operator meets, each during real work, and nobody types a command
after it: the proxy, the hub and the exchange killed with SIGKILL come back by themselves
(supervisord, JupyterHub), learners get back in, kernels keep their state, and nothing the
exchange acknowledged is lost. Real Docker Engine, hub, proxy, exchange, learner containers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from onelab.hubclient import Hub, Kernel
from tests.conftest import start_platform, stop_platform
from tests.integration.test_classroom import running_kernel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plat(docker_ready, tmp_path_factory):
    p = start_platform(tmp_path_factory.mktemp("faults"))
    yield p
    stop_platform(p)


def status(p) -> dict:
    return json.loads(p.cli("status", "--json", check=False).stdout)


def pid_of(p, name: str) -> int:
    found = [x["pid"] for x in status(p)["processes"] if x["name"] == name and x["pid"]]
    assert found, f"no {name} in {status(p)['processes']}"
    return found[0]


def until(what: str, check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f} s")


def exchange_files(p) -> dict[str, str]:
    root = p.state_dir / "exchange"
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_status_shows_every_process_and_the_docker_engine(plat):
    st = status(plat)
    names = {x["name"]: x for x in st["processes"]}
    for name in ("supervisord", "proxy", "hub", "exchange"):
        assert names[name]["state"] == "RUNNING" and names[name]["pid"], names
    assert any(n.startswith("formgrader ") for n in names)  # one per shipped course
    assert st["docker"]["running"] and st["docker"]["version"]
    text = plat.cli("status").stdout
    assert "supervisord" in text and "Docker Engine" in text


def test_a_killed_proxy_comes_back_with_every_route(plat):
    plat.add_learner("dahye")
    _hub, token, kernel = running_kernel(plat, "dahye")
    assert kernel.execute("kept = 'still here'").ok
    old = pid_of(plat, "proxy")
    os.kill(old, signal.SIGKILL)

    def reachable() -> bool:
        r = requests.get(f"{plat.url}user/dahye/api/status",
                         headers={"Authorization": f"token {token}"}, timeout=3)
        return r.status_code == 200

    until("the learner's server reachable through a new proxy", reachable)
    assert pid_of(plat, "proxy") != old
    # the open websocket died with the proxy (as a browser's does); JupyterLab reconnects to
    # the same kernel, which kept its state
    again = Kernel(kernel.server, kernel.id)
    assert again.execute("print(kept)").stdout.strip() == "still here"
    assert Hub(plat.url).login("dahye", plat.passwords["dahye"])  # and logins work
    again.shutdown()


def test_a_killed_hub_comes_back_and_takes_no_orphan_along(plat):
    plat.add_learner("taemin")
    _hub, token, kernel = running_kernel(plat, "taemin")
    assert kernel.execute("n = 41").ok
    before = exchange_files(plat)
    hub_pid, exchange_pid = pid_of(plat, "hub"), pid_of(plat, "exchange")
    os.kill(hub_pid, signal.SIGKILL)  # the hub alone: its services must follow it by themselves
    until("the old exchange gone with its hub", lambda: gone(exchange_pid), timeout=30)
    until("a new hub answering", lambda: requests.get(
        f"{plat.url}hub/health", timeout=2).status_code == 200)
    assert pid_of(plat, "hub") != hub_pid

    def exchange_back() -> bool:
        r = requests.get(f"{plat.url}services/onelab-exchange/api/coursework",
                         headers={"Authorization": f"token {token}"}, timeout=3)
        return r.status_code == 200

    until("the exchange answering again", exchange_back)
    st = status(plat)
    assert not [x for x in st["processes"] if x["state"] == "ORPHANED"], st["processes"]
    assert exchange_files(plat) == before
    assert kernel.execute("n += 1; print(n)").stdout.strip() == "42"
    assert Hub(plat.url).login("taemin", plat.passwords["taemin"])
    kernel.shutdown()


def test_a_killed_exchange_is_started_again_by_the_hub(plat):
    plat.add_learner("hyejin")
    hub = plat.login("hyejin")
    token = hub.token_for("hyejin")
    before = exchange_files(plat)
    old = pid_of(plat, "exchange")
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        r = requests.get(f"{plat.url}services/onelab-exchange/api/coursework",
                         headers={"Authorization": f"token {token}"}, timeout=3)
        return r.status_code == 200 and pid_of(plat, "exchange") != old

    until("a new exchange answering", back)
    assert exchange_files(plat) == before
