"""An operator spreads learners over Docker Swarm (spawner.backend: swarm; docs/swarm.md).

Against a real single-node swarm on this machine's Docker Engine, made by `onelab swarm init`:
learners' servers run as swarm services with the learner lockdown and limits, are reached
through the hub, keep their homes (and their node) across server restarts, and cannot reach
each other. The operator sees the nodes with `onelab nodes`.
"""

from __future__ import annotations

import json
import os

import pytest

from onelab import dockerdoor
from tests.conftest import onelab, start_platform, stop_platform, tcp_listener
from tests.integration.test_classroom import running_kernel
from tests.integration.test_learner_network import PROBE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def swarm(docker_ready, tmp_path_factory):
    """This Engine as a swarm manager, through the operator's command; left again afterwards
    when this test made it one."""
    was = dockerdoor.swarm_info().get("LocalNodeState")
    if was != "active":
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONELAB_")}
        env.update(ONELAB_LANG="en", ONELAB_STATE_DIR=str(tmp_path_factory.mktemp("op")))
        out = onelab("swarm", "init", env=env).stdout
        assert "swarm manager" in out
    yield
    if was != "active":
        dockerdoor.client().swarm.leave(force=True)


@pytest.fixture(scope="module")
def swarm_platform(swarm, tmp_path_factory):
    p = start_platform(tmp_path_factory.mktemp("swarm"), ONELAB_SPAWNER__BACKEND="swarm",
                       ONELAB_SPAWNER__SWARM_SUBNET="10.213.77.0/24")
    yield p
    stop_platform(p)


def services(p, user):
    return dockerdoor.client().services.list(filters={"label": [
        "onelab.role=learner", f"onelab.user={user}", f"onelab.instance={p.prefix}-learner"]})


def test_learners_run_as_locked_down_services_reached_through_the_hub(swarm_platform):
    p = swarm_platform
    for name in ("sora", "jun"):
        p.add_learner(name)
    _, _, sora = running_kernel(p, "sora")  # through the proxy and the hub, as a browser goes
    _, _, jun = running_kernel(p, "jun")

    svc = services(p, "sora")
    assert len(svc) == 1, "sora's server is a swarm service"
    spec = svc[0].attrs["Spec"]["TaskTemplate"]
    cs = spec["ContainerSpec"]
    assert cs["User"] == "1000:1000" and cs["ReadOnly"] is True
    assert cs["CapabilityDrop"] == ["ALL"]
    limits = spec["Resources"]["Limits"]
    assert limits["MemoryBytes"] == 1024 ** 3 and limits["Pids"] == 256
    assert limits["NanoCPUs"] == int(p.settings().spawner.cpu_limit * 1e9)
    assert spec["RestartPolicy"]["Condition"] == "none"  # the hub decides, as on one Engine

    # inside, as the learner: the limits hold and nothing makes them root
    res = sora.execute(
        "import os, subprocess\n"
        "print(os.getuid(), open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip(),"
        " open('/sys/fs/cgroup/pids/pids.max').read().strip())\n"
        "print(subprocess.run(['su', '-c', 'id -u'], capture_output=True, text=True, input='x\\n')"
        ".returncode != 0)\n"
        "open('/home/learner/keep.txt', 'w').write('mine')\n"
        "try:\n    open('/etc/x', 'w')\nexcept OSError as e:\n    print('ro', e.errno)\n")
    assert res.ok, res.error
    first, su_refused, ro = res.stdout.strip().splitlines()
    assert first.split() == ["1000", str(1024 ** 3), "256"]
    assert su_refused == "True"
    assert ro.startswith("ro ")

    # learners cannot reach each other: not the server, not any port
    s = p.settings()
    jun_ip = jun.execute("import socket; print(socket.gethostbyname(socket.gethostname()))")
    target = jun_ip.stdout.strip()
    res = sora.execute(PROBE % [(target, 8888), (target, 22)])
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(v != "open" for v in seen.values()), seen
    # the hub's API on the learner network's gateway answers them, another host service not
    gw = dockerdoor.network_bridge(s.spawner.network)[1]
    with tcp_listener() as (port, hits):
        res = sora.execute(PROBE % [(gw, s.hub.hub_port), (gw, port)])
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {
        f"{gw}:{s.hub.hub_port}": "open", f"{gw}:{port}": "ConnectionRefusedError"}
    assert hits == []

    # the operator sees this node and its two learners
    nodes = json.loads(p.cli("nodes", "--json").stdout)
    assert len(nodes) == 1 and nodes[0]["role"] == "manager"
    assert nodes[0]["learners"] >= 2
    assert "manager" in p.cli("nodes").stdout
    sora.shutdown()
    jun.shutdown()


def test_a_home_and_its_node_are_kept_across_a_restart(swarm_platform):
    p = swarm_platform
    p.add_learner("hana")
    hub, _, kernel = running_kernel(p, "hana")
    assert kernel.execute("open('/home/learner/work.py', 'w').write('print(1)')").ok
    node = services(p, "hana")[0].tasks()[0]["NodeID"]
    kernel.shutdown()
    hub.stop("hana")
    assert services(p, "hana") == [], "a stopped server's service is gone"

    hub, _, kernel = running_kernel(p, "hana")
    res = kernel.execute("print(open('/home/learner/work.py').read())")
    assert res.ok and res.stdout.strip() == "print(1)"
    svc = services(p, "hana")[0]
    constraints = svc.attrs["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    assert constraints == [f"node.id=={node}"], "pinned to the node that holds the home"
    kernel.shutdown()


def test_down_removes_the_services_and_keeps_homes(swarm, tmp_path):
    p = start_platform(tmp_path, ONELAB_SPAWNER__BACKEND="swarm",
                       ONELAB_SPAWNER__SWARM_SUBNET="10.213.78.0/24")
    try:
        p.add_learner("min")
        _, _, kernel = running_kernel(p, "min")
        kernel.shutdown()
        assert len(services(p, "min")) == 1
        out = p.cli("down").stdout
        assert "learner container(s) stopped" in out
        assert services(p, "min") == []
        assert dockerdoor.volume_exists(f"{p.prefix}-home-min")
    finally:
        stop_platform(p)
