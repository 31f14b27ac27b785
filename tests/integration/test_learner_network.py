"""What a learner's container reaches on the host: the hub's API and the exchange, nothing else.

A service an operator runs on the host listening on all addresses must not answer learners,
whichever of the host's addresses they try. Real Docker Engine, real iptables, real hub.
"""

from __future__ import annotations

import json

import pytest

from hub import firewall
from tests.conftest import tcp_listener
from tests.integration.test_classroom import running_kernel

pytestmark = pytest.mark.integration


@pytest.fixture
def host_listener():
    """A TCP service on all of the host's addresses, counting who connected."""
    with tcp_listener() as found:
        yield found


def _host_addresses() -> list[str]:
    """This machine's own IPv4 addresses (never another machine's)."""
    import subprocess

    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=True)
    return sorted({line.split()[3].split("/")[0] for line in out.stdout.splitlines()})


PROBE = """
import json, socket
res = {}
for host, port in %r:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); res[f"{host}:{port}"] = "open"
    except OSError as e:
        res[f"{host}:{port}"] = type(e).__name__
    finally:
        s.close()
print(json.dumps(res))
"""


def test_learners_reach_the_hub_and_exchange_but_no_other_host_service(platform, host_listener):
    port, hits = host_listener
    s = platform.settings()
    door = firewall.door(s)
    platform.add_learner("nora")
    _, _, kernel = running_kernel(platform, "nora")
    others = [(addr, port) for addr in [door.gateway, *_host_addresses()]]
    allowed = [(door.gateway, s.hub.hub_port), (door.gateway, s.hub.exchange_port)]
    res = kernel.execute(PROBE % (others + allowed))
    assert res.ok, res.error
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    for host, p in others:
        assert seen[f"{host}:{p}"] != "open", (host, seen)
    assert hits == []  # nothing reached the listener, not even half-way
    for host, p in allowed:
        assert seen[f"{host}:{p}"] == "open", (host, p, seen)
    kernel.shutdown()

    # the operator sees the rules, and installing them again changes nothing
    status = json.loads(platform.cli("status", "--json").stdout)
    assert status["firewall"]["enabled"] is True
    before = status["firewall"]["rules"]
    assert any(f"--dport {s.hub.hub_port}" in r for r in before)
    assert any("REJECT" in r for r in before)
    firewall.install(door)
    assert firewall.rules(door) == before
    assert "firewall" in platform.cli("status").stdout


def test_down_removes_the_rules_and_up_puts_them_back(docker_ready, tmp_path):
    from tests.conftest import start_platform, stop_platform

    p = start_platform(tmp_path)
    try:
        door = firewall.door(p.settings())
        assert firewall.rules(door)
        p.cli("down")
        assert firewall.rules(door) == []
        p.cli("up", "--detach", timeout=180)
        assert firewall.rules(door)
    finally:
        stop_platform(p)
    assert firewall.rules(door) == []
