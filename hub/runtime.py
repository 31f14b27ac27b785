"""Run the platform's processes: configurable-http-proxy and JupyterHub, supervised by `onelab`.

The proxy runs on its own (JupyterHub's ``should_start = False``) so that restarting the hub
keeps every learner's route, and learner servers outlive the hub (``cleanup_servers = False``).
Both processes are started in their own sessions, with pid files and logs in the state
directory, so ``onelab up --detach`` returns and ``onelab down`` finds them again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from hub import firewall
from hub.formgrader import choose_ports
from hub.state import admin_token, ensure_state_dir, proxy_token, write_runtime
from images.table import learner_image
from onelab import dockerdoor
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings, config_file

REPO_ROOT = Path(__file__).resolve().parent.parent
HUB_CONFIG = REPO_ROOT / "jupyterhub_config.py"
Echo = Callable[[str], None]


@dataclass
class Proc:
    name: str
    pid: int | None

    @property
    def alive(self) -> bool:
        return self.pid is not None and _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _pidfile(settings: Settings, name: str) -> Path:
    return settings.state_dir / f"{name}.pid"


def process(settings: Settings, name: str) -> Proc:
    path = _pidfile(settings, name)
    try:
        return Proc(name, int(path.read_text().strip()))
    except (OSError, ValueError):
        return Proc(name, None)


def chp_binary() -> str:
    venv_bin = Path(sys.executable).parent / "configurable-http-proxy"
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which("configurable-http-proxy")
    if not found:
        raise OneLabError(N_("configurable-http-proxy is not installed; run `make setup` "
                             "(or `npm install -g configurable-http-proxy`)"))
    return found


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _spawn(settings: Settings, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
    log = settings.state_dir / "logs" / f"{name}.log"
    with log.open("ab") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=settings.state_dir, env=env, start_new_session=True)
    _pidfile(settings, name).write_text(f"{p.pid}\n")
    return Proc(name, p.pid)


def proxy_command(settings: Settings, gateway: str) -> list[str]:
    """configurable-http-proxy's command line: the public port, its API on loopback, and the
    hub's error page for routes it does not know."""
    h = settings.hub
    return [chp_binary(), "--ip", h.ip, "--port", str(h.port),
            "--api-ip", "127.0.0.1", "--api-port", str(h.proxy_api_port),
            "--error-target", f"http://{gateway}:{h.hub_port}{h.base_url}hub/error"]


def preflight(settings: Settings) -> str:
    """Everything `up` needs, each failure a one-line error; returns the learner image."""
    dockerdoor.client()
    image = learner_image(settings)
    dockerdoor.require_image(image, "learner image")
    chp_binary()
    return image


def ensure_first_admin(settings: Settings, echo: Echo) -> None:
    """On a brand-new platform with local accounts, make an `admin` account so someone can
    log in; its password is printed once and kept in the state directory (mode 0600)."""
    if settings.auth.kind != "local":
        return
    from hub.accounts import Accounts, generate_password

    accounts = Accounts(settings.db_url, settings.auth.min_password_length)
    if accounts.all():
        return
    password = generate_password()
    accounts.add("admin", password, admin=True, full_name="OneLab admin")
    path = settings.state_dir / "initial-admin-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    echo(f"first start: created account `admin` with password {password} (also in {path}); "
         "add learners with `onelab users add` or `onelab users import class.csv`")


def start(settings: Settings, echo: Echo = print, wait: float = 90) -> None:
    """Start whatever is not running (proxy, hub) and wait until the hub answers."""
    preflight(settings)
    ensure_state_dir(settings.state_dir)
    from hub.courses import course_specs

    courses = course_specs(settings)  # a broken course.yml stops here, named, not in the hub
    echo(f"onelab: {len(courses)} course(s): {', '.join(c.id for c in courses) or 'none'}")
    ensure_first_admin(settings, echo)
    gateway = dockerdoor.ensure_network(settings.spawner.network,
                                        internal=settings.spawner.network_internal)
    dockerdoor.ensure_volume(settings.spawner.datasets_volume, "datasets")
    proxy_token(settings.state_dir)  # the secrets are made once, here, and kept
    admin_token(settings.state_dir)
    if settings.spawner.host_firewall:
        firewall.install(firewall.door(settings))  # before any learner can start
    env = dict(os.environ)
    cfg = config_file()
    if cfg is not None:
        env["ONELAB_CONFIG"] = str(cfg.resolve())
    proxy = process(settings, "proxy")
    if not proxy.alive:
        h = settings.hub
        for host, port in ((h.ip, h.port), ("127.0.0.1", h.proxy_api_port)):
            if not _port_free(host, port):
                raise OneLabError(N_("port {host}:{port} is in use by another program; stop it "
                                     "or set hub.port / hub.proxy_api_port"), host=host, port=port)
        env_p = dict(env, CONFIGPROXY_AUTH_TOKEN=proxy_token(settings.state_dir))
        proxy = _spawn(settings, "proxy", proxy_command(settings, gateway), env_p)
        echo(f"proxy started (pid {proxy.pid}) on {settings.public_url}")
    hub = process(settings, "hub")
    if not hub.alive:
        # grading services whose manager died with a killed hub: the new hub starts its own
        dockerdoor.remove_containers("formgrader", **{"onelab.instance":
                                                      settings.spawner.container_prefix})
        write_runtime(settings.state_dir, gateway=gateway,
                      formgrader_ports=choose_ports(settings, courses))
        if not _port_free(gateway, settings.hub.hub_port):
            raise OneLabError(N_("port {host}:{port} is in use; set hub.hub_port"), host=gateway,
                              port=settings.hub.hub_port)
        hub = _spawn(settings, "hub", [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)],
                     env)
        echo(f"hub started (pid {hub.pid})")
    wait_healthy(settings, wait)


def wait_healthy(settings: Settings, timeout: float) -> None:
    url = f"{settings.public_url}hub/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in (process(settings, "hub"), process(settings, "proxy")):
            if not p.alive:
                raise OneLabError(N_("the {name} exited at start-up: {why} (log: {log})"),
                                  name=p.name, why=_last_error(settings, p.name),
                                  log=settings.state_dir / "logs" / f"{p.name}.log")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise OneLabError(N_("the hub did not answer at {url} within {seconds:.0f} s; see {log}"),
                      url=url, seconds=timeout, log=settings.state_dir / "logs" / "hub.log")


def _last_error(settings: Settings, name: str) -> str:
    log = settings.state_dir / "logs" / f"{name}.log"
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines[-40:]):
        if "onelab:" in line or "Error" in line or "error" in line:
            return line.strip()[-300:]
    return lines[-1].strip()[-300:] if lines else "no output"


def _terminate(p: Proc, timeout: float = 15) -> bool:
    if not p.alive:
        return False
    assert p.pid is not None
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.alive:
        time.sleep(0.2)
    if p.alive:
        os.killpg(p.pid, signal.SIGKILL)
    return True


def stop_hub(settings: Settings) -> bool:
    stopped = _terminate(process(settings, "hub"))
    _pidfile(settings, "hub").unlink(missing_ok=True)
    return stopped


def stop(settings: Settings, keep_servers: bool = False, echo: Echo = print) -> None:
    """Stop the hub and the proxy, and (unless keep_servers) the learner containers.

    Homes are volumes and stay; learners find their files at the next start.
    """
    if stop_hub(settings):
        echo("hub stopped")
    if _terminate(process(settings, "proxy")):
        echo("proxy stopped")
    # the hub stops its grading services (their managers remove them); a killed hub's stay
    dockerdoor.remove_containers("formgrader", **{"onelab.instance":
                                                  settings.spawner.container_prefix})
    _pidfile(settings, "proxy").unlink(missing_ok=True)
    if not keep_servers:
        n = dockerdoor.remove_containers("learner", **{"onelab.instance":
                                                       settings.spawner.container_prefix})
        if n:
            echo(f"{n} learner container(s) stopped (homes kept)")
        _remove_firewall(settings, echo)


def _remove_firewall(settings: Settings, echo: Echo) -> None:
    """The rules go with the learners; with --keep-servers they stay, guarding those still
    running."""
    try:
        door = firewall.door(settings)
    except OneLabError:
        return  # no learner network: nothing was installed
    if firewall.remove(door):
        echo("learner network firewall rules removed")


def status(settings: Settings) -> dict[str, object]:
    hub, proxy = process(settings, "hub"), process(settings, "proxy")
    healthy = False
    try:
        healthy = requests.get(f"{settings.public_url}hub/health", timeout=2).status_code == 200
    except requests.RequestException:
        pass
    learners = []
    try:
        for ctr in dockerdoor.containers("learner", **{"onelab.instance":
                                                       settings.spawner.container_prefix}):
            learners.append((ctr.labels.get("onelab.user", "?"), ctr.status))
    except OneLabError:
        learners = []
    try:
        rules = firewall.rules(firewall.door(settings))
    except OneLabError:
        rules = []
    return {"url": settings.public_url, "hub": hub.pid if hub.alive else None,
            "proxy": proxy.pid if proxy.alive else None, "healthy": healthy,
            "learners": learners, "image": learner_image(settings),
            "firewall": {"enabled": settings.spawner.host_firewall, "rules": rules}}


def follow(settings: Settings, echo: Echo = print) -> None:
    """Print the hub's log as it grows until interrupted or the hub dies (foreground `up`)."""
    log = settings.state_dir / "logs" / "hub.log"
    with log.open(errors="replace") as fh:
        fh.seek(0, os.SEEK_END)
        while process(settings, "hub").alive:
            line = fh.readline()
            if line:
                echo(line.rstrip())
            else:
                time.sleep(0.3)
    raise OneLabError(N_("the hub exited: {why}"), why=_last_error(settings, "hub"))
