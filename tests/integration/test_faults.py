"""The faults a school's operator meets, each during real work, and nobody types a command
after it: the proxy, the hub and the exchange killed with SIGKILL come back by themselves
(supervisord, JupyterHub), learners get back in, kernels keep their state, and nothing the
exchange acknowledged is lost. Real Docker Engine, hub, proxy, exchange, learner containers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from onelab.hubclient import Hub, HubError, Kernel
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
        except (requests.RequestException, OSError, ValueError, HubError):
            pass  # not up yet, or a busy hub's proxy answering 503 for a moment
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


def learner_container(p, name: str):
    from onelab import dockerdoor

    return dockerdoor.find_container(f"{p.settings().spawner.container_prefix}-{name}")


def started_again(p, hub, name: str, old_id: str) -> bool:
    """A new container for `name` (not `old_id`), running, and the hub calling it ready."""
    c = learner_container(p, name)
    return (c is not None and c.id != old_id and c.status == "running"
            and bool(((hub.user(name) or {}).get("servers") or {}).get("", {}).get("ready")))


def notices(p, name: str, token: str) -> dict:
    r = requests.get(f"{p.url}user/{name}/onelab/api/notices",
                     headers={"Authorization": f"token {token}"}, timeout=5)
    r.raise_for_status()
    return r.json()


def test_a_learner_server_killed_for_memory_comes_back_with_its_home_and_says_why(plat):
    plat.add_learner("sora")
    hub, token, kernel = running_kernel(plat, "sora")
    assert kernel.execute("open('/home/learner/kept.txt', 'w').write('saved before')").ok
    old = learner_container(plat, "sora")
    # the learner's code makes the server itself the OOM killer's pick (a process may raise its
    # own user's score), then takes more than the container's memory
    with contextlib.suppress(Exception):  # the kernel's connection goes with its container
        kernel.execute("open('/proc/1/oom_score_adj', 'w').write('1000')\n"
                       "hog = []\n"
                       "while True:\n"
                       "    hog.append(bytearray(64 * 2**20))", timeout=60)
    until("the killed container gone or stopped", lambda: (
        (c := learner_container(plat, "sora")) is None or c.id != old.id
        or c.status != "running"), timeout=60)

    until("a new server for the learner, started by nobody",
          lambda: started_again(plat, hub, "sora", old.id), timeout=120)
    token = hub.token_for("sora")
    server = hub.server("sora", token)
    again = server.start_kernel()
    assert again.execute("print(open('/home/learner/kept.txt').read())").stdout.strip() == \
        "saved before"
    told = notices(plat, "sora", token)
    assert [n["kind"] for n in told["notices"]] == ["server-oom"]
    limit = plat.settings().spawner.mem_limit  # "1G" on the test platform
    assert limit.endswith("G")
    assert "메모리" in told["notices"][0]["text"]
    assert f"{limit[:-1]} GiB" in told["notices"][0]["text"]  # the limit that was hit, in words
    # a kernel past the limit on its own: the OOM killer ends the kernel, the server stays, and
    # the count the learner's JupyterLab watches goes up
    assert told["oom_kills"] == 0
    current = learner_container(plat, "sora").id
    with contextlib.suppress(Exception):  # the kernel dies mid-execution
        again.execute("hog = []\nwhile True:\n    hog.append(bytearray(64 * 2**20))", timeout=20)
    until("the kernel's OOM kill counted", lambda: notices(plat, "sora", token)["oom_kills"] >= 1,
          timeout=60)
    assert learner_container(plat, "sora").id == current
    assert "커널" in notices(plat, "sora", token)["kernel_oom"]


def platform_containers(p) -> list:
    from onelab import dockerdoor

    prefix = p.settings().spawner.container_prefix
    return [c for c in dockerdoor.client().containers.list(all=True)
            if (c.labels or {}).get("onelab.instance") == prefix]


def restart_engine(p) -> None:
    """Stop dockerd as an operator's `systemctl restart docker` would (SIGTERM: it stops every
    container), then start it the way set-up does."""
    import subprocess

    pid = status(p)["docker"]["pid"]
    assert pid, "no dockerd pid"
    os.kill(pid, signal.SIGTERM)
    until("dockerd gone", lambda: gone(pid), timeout=90)
    repo = Path(__file__).resolve().parents[2]
    subprocess.run(["bash", str(repo / "docker" / "ensure-dockerd.sh")], check=True, timeout=120)


def test_a_docker_engine_restart_brings_learners_and_grading_back_by_themselves(plat):
    from hub import firewall, formgrader
    from onelab import dockerdoor
    from tests.conftest import tcp_listener
    from tests.integration.test_learner_network import PROBE

    plat.add_learner("jiho")
    hub, token, kernel = running_kernel(plat, "jiho")
    assert kernel.execute("open('/home/learner/kept.txt', 'w').write('before the restart')").ok
    old = learner_container(plat, "jiho")
    grading = dockerdoor.find_container(formgrader.container_name(plat.settings(), "onelab-101"))
    assert grading is not None and grading.status == "running"
    exchange = exchange_files(plat)
    try:
        restart_engine(plat)
    finally:  # never leave the machine without its engine
        import subprocess

        repo = Path(__file__).resolve().parents[2]
        subprocess.run(["bash", str(repo / "docker" / "ensure-dockerd.sh")], check=False,
                       timeout=120)

    until("the learner's server started again by nobody",
          lambda: started_again(plat, hub, "jiho", old.id), timeout=180)
    token = hub.token_for("jiho")
    again = hub.server("jiho", token).start_kernel()
    assert again.execute("print(open('/home/learner/kept.txt').read())").stdout.strip() == \
        "before the restart"
    told = notices(plat, "jiho", token)
    assert [n["kind"] for n in told["notices"]] == ["server-stopped"]
    assert "컨테이너 엔진" in told["notices"][0]["text"]
    # the course's grading service came back in a new container, and answers an operator
    until("a new grading container", lambda: (
        (g := dockerdoor.find_container(grading.name)) is not None and g.id != grading.id
        and g.status == "running"), timeout=120)
    assert exchange_files(plat) == exchange  # the exchange (a host process) kept every file
    # an instructor's release goes through the new grading container into the exchange
    plat.cli("assignment", "release", "onelab-101", "01-numbers")
    assert any("01-numbers" in f for f in set(exchange_files(plat)) - set(exchange))
    # nothing orphaned: one container per learner server and per course, all running
    left = platform_containers(plat)
    assert all(c.status == "running" for c in left), [(c.name, c.status) for c in left]
    assert len([c for c in left if c.name == old.name]) == 1
    # and the learner network's firewall is still in force for the new container
    with tcp_listener() as (port, hits):
        gateway = firewall.door(plat.settings()).gateway
        res = again.execute(PROBE % [(gateway, port)])
        assert res.ok, res.error
        assert json.loads(res.stdout.strip().splitlines()[-1])[f"{gateway}:{port}"] != "open"
        assert hits == []
    assert Hub(plat.url).login("jiho", plat.passwords["jiho"])
    again.shutdown()
