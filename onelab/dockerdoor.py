"""The one door to the Docker Engine for OneLab's own code.

Everything OneLab creates carries the label ``onelab.role`` (learner, grader, regress, ...), so
cleanup can find it; errors from a missing daemon or image become one-line OneLabErrors.
DockerSpawner keeps its own client inside the hub; the labels it sets come from hub/spawner.py.
"""

from __future__ import annotations

import functools
import ipaddress
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException, ImageNotFound, NotFound

import docker
from onelab.errors import DockerUnavailable, ImageMissing

ROLE_LABEL = "onelab.role"


@functools.lru_cache(maxsize=1)
def client() -> docker.DockerClient:
    """A client for the engine in DOCKER_HOST (default: the local socket), checked to answer."""
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except DockerException as e:
        reason = str(e).split("(")[0].strip() or type(e).__name__
        raise DockerUnavailable(
            f"no Docker daemon answers ({reason}); start it with `docker/ensure-dockerd.sh` "
            "(or `make up`, which does it for you)"
        ) from None
    return c


def require_image(tag: str, what: str = "image") -> dict[str, Any]:
    """The image's attributes, or ImageMissing saying how to build it."""
    try:
        return client().images.get(tag).attrs
    except ImageNotFound:
        raise ImageMissing(
            f"{what} {tag} is not built; run `onelab images build` (or set spawner.image)"
        ) from None


def image_exists(tag: str) -> bool:
    try:
        client().images.get(tag)
        return True
    except ImageNotFound:
        return False


def ensure_network(name: str, *, internal: bool) -> str:
    """Create the learner network if missing and return its gateway address.

    Inter-container traffic is off (``enable_icc=false``): a learner's container cannot open a
    connection to another learner's, only to the host (the hub's API listens on the gateway).
    """
    c = client()
    try:
        net = c.networks.get(name)
    except NotFound:
        net = c.networks.create(
            name,
            driver="bridge",
            internal=internal,
            labels={ROLE_LABEL: "network"},
            options={"com.docker.network.bridge.enable_icc": "false"},
        )
        net.reload()
    else:
        opts = net.attrs.get("Options") or {}
        if bool(net.attrs.get("Internal")) != internal or opts.get(
            "com.docker.network.bridge.enable_icc"
        ) != "false":
            raise DockerUnavailable(
                f"Docker network {name} exists with other options (internal or icc); remove it "
                f"with `docker network rm {name}` once no learner container uses it"
            )
    configs = (net.attrs.get("IPAM") or {}).get("Config") or []
    for cfg in configs:
        if cfg.get("Gateway"):
            return cfg["Gateway"]
        if cfg.get("Subnet"):
            return str(next(ipaddress.ip_network(cfg["Subnet"]).hosts()))
    raise DockerUnavailable(f"Docker network {name} has no IPv4 gateway")


def ensure_volume(name: str, role: str) -> None:
    c = client()
    try:
        c.volumes.get(name)
    except NotFound:
        c.volumes.create(name, labels={ROLE_LABEL: role})


def containers(role: str, **labels: str) -> list[Any]:
    filters = [f"{ROLE_LABEL}={role}", *(f"{k}={v}" for k, v in labels.items())]
    return client().containers.list(all=True, filters={"label": filters})


def remove_containers(role: str, **labels: str) -> int:
    """Force-remove every container with this role (and labels); returns how many."""
    gone = 0
    for ctr in containers(role, **labels):
        try:
            ctr.remove(force=True)
            gone += 1
        except NotFound:
            pass
    return gone


@dataclass
class PipedRun:
    exit_code: int | None
    stdout: bytes
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    oom_killed: bool = False


def run_piped(args: list[str], name: str, stdin: bytes, *, timeout: float,
              max_output: int) -> PipedRun:
    """`docker <args>` (a `run -i --name NAME ...`) with `stdin` piped in and stdout read back,
    at most `max_output` bytes of it. Past `timeout` the container is killed. Whatever happens,
    the container named `name` is gone when this returns."""
    proc = subprocess.Popen(["docker", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = bytearray()
    err = bytearray()
    truncated = False

    def feed() -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def drain() -> None:
        nonlocal truncated
        assert proc.stdout is not None
        while chunk := proc.stdout.read(65536):
            if len(out) + len(chunk) > max_output:
                truncated = True
                continue  # keep reading so the container is never blocked on a full pipe
            out.extend(chunk)

    def drain_err() -> None:
        assert proc.stderr is not None
        while chunk := proc.stderr.read(65536):
            if len(err) < 65536:
                err.extend(chunk[: 65536 - len(err)])

    threads = [threading.Thread(target=f, daemon=True) for f in (feed, drain, drain_err)]
    for t in threads:
        t.start()
    # waitpid blocks without polling; a timer kills the container past its time
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        subprocess.run(["docker", "kill", name], capture_output=True, check=False)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    clean = False
    try:
        proc.wait()
        clean = not expired.is_set() and proc.returncode is not None and proc.returncode < 125
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not clean:  # --rm removes a container that ended; anything else is removed here
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    timed_out = expired.is_set()
    for t in threads:
        t.join(timeout=10)
    return PipedRun(proc.returncode, bytes(out), err.decode("utf-8", "replace"), timed_out,
                    truncated, oom_killed=proc.returncode == 137 and not timed_out)
