"""The learner network's door to the host: from the learner bridge only the hub's API and the
exchange answer; any other port on any of the host's addresses is refused.

Docker's own rules govern traffic forwarded between networks; a container talking to the host
itself goes through the INPUT chain, which Docker leaves open. So a service an operator runs
on the host listening on all addresses (a database, an admin panel) would answer learners.
OneLab adds one chain per learner network, jumped to from INPUT for its bridge:

    -A INPUT -i <bridge> -j ONELAB-<id>
    -A ONELAB-<id> -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT   (replies to the proxy)
    -A ONELAB-<id> -d <gateway> -p tcp --dport <hub API> -j ACCEPT
    -A ONELAB-<id> -d <gateway> -p tcp --dport <exchange> -j ACCEPT
    -A ONELAB-<id> -p tcp -j REJECT --reject-with tcp-reset               (fails at once)
    -A ONELAB-<id> -j REJECT

and the same chain for IPv6 with nothing allowed but replies. `install` and `remove` are
idempotent (the chain is rebuilt whole, the jump added once); `rules` shows what is in force.
iptables (nf_tables or legacy backend) is what Docker itself needs, so every host with a
Docker Engine has it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass

from onelab import dockerdoor
from onelab.errors import OneLabError
from onelab.settings import Settings


class FirewallError(OneLabError):
    pass


@dataclass(frozen=True)
class Door:
    """What the learner bridge may reach on the host."""

    network: str
    bridge: str
    gateway: str
    ports: tuple[int, ...]

    @property
    def chain(self) -> str:
        # iptables chain names are at most 28 characters; one chain per learner network
        return "ONELAB-" + hashlib.sha256(self.network.encode()).hexdigest()[:12]


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if shutil.which(p)), None)


def _run(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([tool, "-w", "10", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise FirewallError(f"{tool} {' '.join(args)} failed: "
                            f"{(proc.stderr or proc.stdout).strip()[:300]}")
    return proc


def chain_rules(door: Door, v6: bool = False) -> list[list[str]]:
    """The chain's rules, in order, as iptables arguments after `-A <chain>`."""
    rules = [["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]]
    if not v6:
        rules += [["-d", door.gateway, "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"]
                  for port in door.ports]
    rules += [["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"], ["-j", "REJECT"]]
    return rules


def _tools() -> list[tuple[str, bool]]:
    found = []
    for name, v6 in (("iptables", False), ("ip6tables", True)):
        tool = _tool(name)
        if tool:
            found.append((tool, v6))
    if not found or found[0][1]:
        raise FirewallError("iptables is not installed: learner containers could reach every "
                            "service on this host. Install it (`apt-get install iptables`) or "
                            "set spawner.host_firewall: false")
    return found


def install(door: Door) -> None:
    """Build the chain anew and make sure INPUT jumps to it for the learner bridge."""
    for tool, v6 in _tools():
        if _run(tool, "-n", "-L", door.chain, check=False).returncode != 0:
            _run(tool, "-N", door.chain)
        # rules first, then the jump: the door is never open while it is being rebuilt
        _run(tool, "-F", door.chain)
        for rule in chain_rules(door, v6):
            _run(tool, "-A", door.chain, *rule)
        jump = ["INPUT", "-i", door.bridge, "-j", door.chain]
        if _run(tool, "-C", *jump, check=False).returncode != 0:
            _run(tool, "-I", *jump)


def remove(door: Door) -> bool:
    """Take the jump and the chain away; True when something was there."""
    removed = False
    for tool, _ in _tools():
        jump = ["INPUT", "-i", door.bridge, "-j", door.chain]
        while _run(tool, "-C", *jump, check=False).returncode == 0:
            _run(tool, "-D", *jump)
            removed = True
        if _run(tool, "-n", "-L", door.chain, check=False).returncode == 0:
            _run(tool, "-F", door.chain)
            _run(tool, "-X", door.chain)
            removed = True
    return removed


def rules(door: Door) -> list[str]:
    """The rules in force for this door (iptables -S lines), IPv4 then IPv6; [] when none."""
    out: list[str] = []
    try:
        tools = _tools()
    except FirewallError:
        return out
    for tool, _ in tools:
        jump = ["INPUT", "-i", door.bridge, "-j", door.chain]
        if _run(tool, "-C", *jump, check=False).returncode != 0:
            continue
        listing = _run(tool, "-S", door.chain, check=False).stdout.splitlines()
        name = tool.rsplit("/", 1)[-1]
        out += [f"{name} -A {' '.join(jump)}"] + [f"{name} {line}" for line in listing
                                                   if line.startswith("-A ")]
    return out


def door(settings: Settings) -> Door:
    """The door of this platform's learner network: its bridge, gateway and the two ports."""
    bridge, gateway = dockerdoor.network_bridge(settings.spawner.network)
    return Door(settings.spawner.network, bridge, gateway,
                (settings.hub.hub_port, settings.hub.exchange_port))
