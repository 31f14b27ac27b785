"""Shared fixtures: a real OneLab platform (real Docker Engine, real hub and proxy) per session.

Everything a test creates is named with a unique prefix and removed afterwards, even when a test
fails; the hub's and proxy's logs are printed when one does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def onelab(*args: str, env: dict[str, str], check: bool = True, timeout: float = 600,
           cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI as an operator would (from a directory without an onelab.yaml)."""
    proc = subprocess.run([sys.executable, "-m", "onelab_cli.main", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False,
                          cwd=cwd or env["ONELAB_STATE_DIR"])
    if check and proc.returncode != 0:
        raise AssertionError(f"onelab {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@contextmanager
def tcp_listener(host: str = "0.0.0.0") -> Iterator[tuple[int, list]]:
    """A TCP service on this host that records who connected: what a test says no container
    and no learner's script may reach. Yields (port, connections)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, 0))
    srv.listen()
    srv.settimeout(0.3)
    hits: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
                hits.append(addr)
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], hits
    finally:
        stop.set()
        t.join(timeout=2)
        srv.close()


@dataclass
class Platform:
    prefix: str
    env: dict[str, str]
    state_dir: Path
    url: str
    passwords: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return onelab(*args, env=self.env, check=check, **kw)

    def settings(self):
        from onelab.settings import load

        return load(path=None, environ=self.env)

    def admin(self):
        from onelab.hubclient import Hub

        return Hub(self.url, self.cli("token").stdout.strip())

    def add_learner(self, name: str, password: str | None = None) -> str:
        password = password or f"pw-{uuid.uuid4().hex[:10]}"
        self.cli("users", "add", name, "--password", password)
        self.passwords[name] = password
        return password

    def login(self, name: str):
        from onelab.hubclient import Hub

        hub = Hub(self.url)
        assert hub.login(name, self.passwords[name]), f"{name} could not log in"
        return hub

    def container(self, user: str):
        from onelab import dockerdoor

        found = dockerdoor.containers("learner", **{"onelab.user": user,
                                                    "onelab.instance": f"{self.prefix}-learner"})
        assert len(found) == 1, f"expected one container for {user}, found {len(found)}"
        return found[0]

    def logs(self) -> str:
        out = []
        for name in ("hub", "proxy"):
            log = self.state_dir / "logs" / f"{name}.log"
            if log.exists():
                out.append(f"----- {name}.log (last 80 lines) -----")
                out.extend(log.read_text(errors="replace").splitlines()[-80:])
        return "\n".join(out)


def platform_env(prefix: str, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONELAB_")}
    env.update({
        # the tests read the CLI's English, whatever this machine's locale (onelab/i18n.py)
        "ONELAB_LANG": "en",
        "ONELAB_STATE_DIR": str(state_dir),
        "ONELAB_HUB__PORT": str(free_port()),
        "ONELAB_HUB__PROXY_API_PORT": str(free_port()),
        "ONELAB_HUB__HUB_PORT": str(free_port()),
        "ONELAB_HUB__EXCHANGE_PORT": str(free_port()),
        "ONELAB_HUB__FORMGRADER_PORT": str(free_port()),
        "ONELAB_SPAWNER__NETWORK": f"{prefix}-net",
        "ONELAB_SPAWNER__CONTAINER_PREFIX": f"{prefix}-learner",
        "ONELAB_SPAWNER__HOME_VOLUME": f"{prefix}-home-{{username}}",
        "ONELAB_SPAWNER__DATASETS_VOLUME": f"{prefix}-datasets",
        "ONELAB_SPAWNER__MEM_LIMIT": "1G",
        "ONELAB_SPAWNER__PIDS_LIMIT": "256",
        # no kernel started ahead (a torch import per server on 2 busy cores): the tests of
        # class start (test_class_start.py) turn it on
        "ONELAB_SPAWNER__PREWARM": "[]",
    })
    if "ONELAB_COURSES_DIR" not in extra:
        env["ONELAB_COURSES_DIR"] = str(one_course(state_dir.parent / "courses"))
    env.update(extra)
    return env


def one_course(root: Path) -> Path:
    """A courses folder with the smallest shipped course alone: each course is a grading
    container that starts with the platform, and a test that needs no other course should
    not pay for them (a test of a course names its own folder)."""
    import shutil

    from onelab.course import courses_dir

    if not (root / "onelab-101").is_dir():
        shutil.copytree(courses_dir() / "onelab-101", root / "onelab-101")
    return root


def cleanup_prefix(prefix: str) -> None:
    """Remove every container, volume and network whose name starts with the prefix."""
    from docker.errors import APIError, NotFound

    from onelab import dockerdoor

    c = dockerdoor.client()
    if dockerdoor.swarm_info().get("ControlAvailable"):  # a swarm platform's servers
        for svc in c.services.list():
            if svc.name.startswith(prefix):
                svc.remove()
    for ctr in c.containers.list(all=True):
        if ctr.name.startswith(prefix):
            ctr.remove(force=True)
    for vol in c.volumes.list():
        if vol.name.startswith(prefix):
            vol.remove(force=True)
    # a swarm network's config-only network goes last, once Docker is done with the swarm
    # network (removing that one takes a moment after the call returns)
    deadline = time.monotonic() + 30
    while True:
        left = sorted((n for n in c.networks.list() if n.name.startswith(prefix)),
                      key=lambda n: n.name.endswith("-config"))
        if not left:
            break
        for net in left:
            try:
                net.remove()
            except NotFound:
                pass  # a swarm-scoped network may say so while it goes
            except APIError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.5)


@pytest.fixture(scope="session")
def docker_ready():
    from onelab import dockerdoor
    from onelab.settings import load

    dockerdoor.client()
    from images.table import learner_image

    dockerdoor.require_image(learner_image(load(path=None, environ={})))


def start_platform(tmp_root: Path, **extra: str) -> Platform:
    prefix = f"oltest-{uuid.uuid4().hex[:6]}"
    state = tmp_root / prefix / "state"
    state.mkdir(parents=True)
    env = platform_env(prefix, state, **extra)
    p = Platform(prefix, env, state, f"http://127.0.0.1:{env['ONELAB_HUB__PORT']}/")
    try:
        p.cli("up", "--detach", timeout=180)
    except AssertionError:
        print(p.logs())
        stop_platform(p)
        raise
    return p


def stop_platform(p: Platform) -> None:
    p.cli("down", check=False)
    cleanup_prefix(p.prefix)


@pytest.fixture(scope="session")
def platform(docker_ready, tmp_path_factory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("platform"))
    yield p
    stop_platform(p)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        p = item.funcargs.get("platform") or item.funcargs.get("pg_platform")
        if isinstance(p, Platform):
            report.sections.append(("onelab logs", p.logs()))
