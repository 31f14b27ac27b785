"""Run the platform: prepare what the hub needs, then supervisord runs configurable-http-proxy
and JupyterHub and brings either back when it dies (hub/supervise.py).

The proxy is its own program (JupyterHub's ``should_start = False``) so that a hub restart
keeps every learner's route, and learner servers outlive the hub (``cleanup_servers = False``);
a restarted proxy gets its routes back from the hub within seconds (hub/proxy.py). Pid files,
logs and supervisord's socket live in the state directory, so ``onelab up --detach`` returns,
a second ``onelab up`` adopts what runs, and ``onelab down`` stops it all.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from hub import firewall, supervise
from hub.formgrader import choose_ports
from hub.learner_network import ensure_learner_network
from hub.lifeline import port_free
from hub.state import admin_token, ensure_state_dir, proxy_token, write_runtime
from images.table import gpu_learner_image, learner_image
from onelab import dockerdoor, tls
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings, config_file

Echo = Callable[[str], None]


def process(settings: Settings, name: str) -> int | None:
    """The pid of the proxy or the hub when it runs (as supervisord reports it)."""
    info = supervise.states(settings).get(name)
    return info["pid"] if info and info["state"] in supervise.UP else None


def chp_binary() -> str:
    venv_bin = Path(sys.executable).parent / "configurable-http-proxy"
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which("configurable-http-proxy")
    if not found:
        raise OneLabError(N_("configurable-http-proxy is not installed; run `make setup` "
                             "(or `npm install -g configurable-http-proxy`)"))
    return found


def proxy_command(settings: Settings, gateway: str) -> list[str]:
    """configurable-http-proxy's command line: the public port, its API on loopback, and the
    hub's error page for routes it does not know. With hub.tls the public port speaks only
    TLS, with the certificate onelab.tls makes (or renews) here, or the operator's."""
    h = settings.hub
    cmd = [chp_binary(), "--ip", h.ip, "--port", str(h.port),
           "--api-ip", "127.0.0.1", "--api-port", str(h.proxy_api_port),
           "--error-target", f"http://{gateway}:{h.hub_port}{h.base_url}hub/error"]
    files = tls.ensure(settings)
    if files is not None:
        cmd += ["--ssl-cert", str(files.cert), "--ssl-key", str(files.key)]
        if h.http_redirect_port is not None:
            cmd += ["--redirect-port", str(h.http_redirect_port), "--redirect-to", str(h.port)]
    return cmd


def preflight(settings: Settings) -> str:
    """Everything `up` needs, each failure a one-line error; returns the learner image."""
    dockerdoor.client()
    image = learner_image(settings)
    dockerdoor.require_image(image, "learner image")
    from hub.gpu.spawn import offered

    if settings.spawner.backend == "swarm":
        dockerdoor.require_swarm_manager()
        if offered(settings) or settings.uses_gpu:
            raise OneLabError(N_("GPUs are not handed out on spawner.backend swarm yet; use "
                                 "the docker backend on the GPU server (docs/swarm.md)"))
    if offered(settings):  # a learner holding a GPU starts in the CUDA image
        gpu_image = gpu_learner_image(settings)
        try:
            dockerdoor.require_image(gpu_image)
        except dockerdoor.ImageMissing:
            raise dockerdoor.ImageMissing(
                N_("GPU learner image {tag} is not built, and a course hands out GPUs; run "
                   "`onelab images build --gpu` (or set gpu.image)"), tag=gpu_image) from None
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
    tls.ensure(settings)  # made before the proxy needs it; a bad operator certificate is named here
    from hub.courses import course_specs

    courses = course_specs(settings)  # a broken course.yml stops here, named, not in the hub
    echo(f"onelab: {len(courses)} course(s): {', '.join(c.id for c in courses) or 'none'}")
    ensure_first_admin(settings, echo)
    gateway = ensure_learner_network(settings)
    dockerdoor.ensure_volume(settings.spawner.datasets_volume, "datasets")
    proxy_token(settings.state_dir)  # the secrets are made once, here, and kept
    admin_token(settings.state_dir)
    if settings.spawner.host_firewall:
        firewall.install(firewall.door(settings))  # before any learner can start
    env = dict(os.environ)
    cfg = config_file()
    if cfg is not None:
        env["ONELAB_CONFIG"] = str(cfg.resolve())
    running = supervise.supervisord_pid(settings)
    if running:
        for name in supervise.ensure_started(settings):
            echo(f"{name} started again")
        echo(f"adopted the running platform (supervisord pid {running})")
    else:
        # what a killed supervisord, hub or older OneLab left behind: the new ones need the
        # ports, and grading services whose manager died start afresh with the hub
        supervise.clear_orphans(settings, echo)
        dockerdoor.remove_containers("formgrader", **{"onelab.instance":
                                                      settings.spawner.container_prefix})
        h = settings.hub
        for host, port in ((h.ip, h.port), ("127.0.0.1", h.proxy_api_port)):
            if not port_free(host, port):
                raise OneLabError(N_("port {host}:{port} is in use by another program; stop it "
                                     "or set hub.port / hub.proxy_api_port"), host=host, port=port)
        if not port_free(gateway, h.hub_port):
            raise OneLabError(N_("port {host}:{port} is in use; set hub.hub_port"), host=gateway,
                              port=h.hub_port)
        write_runtime(settings.state_dir, gateway=gateway,
                      formgrader_ports=choose_ports(settings, courses))
        pid = supervise.start(settings, env)
        echo(f"supervisord started (pid {pid}): the proxy on {settings.public_url}, the hub")
    wait_healthy(settings, wait)


def wait_healthy(settings: Settings, timeout: float) -> None:
    """Until the hub answers through the proxy. A program that exits while it starts is a
    mistake to report (a bad setting, a port taken), not to retry forever: then everything
    stops and the error names the program and its last words."""
    url, verify = f"{settings.public_url}hub/health", tls.verify_for(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = supervise.states(settings)
        if not states:
            raise OneLabError(N_("the {name} exited at start-up: {why} (log: {log})"),
                              name="supervisord", why=_last_error(settings, "supervisord"),
                              log=supervise.paths(settings).log)
        for name in supervise.PROGRAMS:
            info = states.get(name, {"state": "MISSING"})
            if info["state"] in ("BACKOFF", "FATAL", "EXITED"):
                why = _last_error(settings, name)
                supervise.shutdown(settings)
                raise OneLabError(N_("the {name} exited at start-up: {why} (log: {log})"),
                                  name=name, why=why,
                                  log=settings.state_dir / "logs" / f"{name}.log")
        try:
            if requests.get(url, timeout=2, verify=verify).status_code == 200:
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


def stop_hub(settings: Settings) -> bool:
    """Stop the hub and keep it stopped (the proxy and learners' servers go on)."""
    return supervise.stop_program(settings, "hub")


def stop(settings: Settings, keep_servers: bool = False, echo: Echo = print) -> None:
    """Stop the hub, the proxy and supervisord, and (unless keep_servers) the learner
    containers.

    Homes are volumes and stay; learners find their files at the next start.
    """
    if supervise.shutdown(settings):
        echo("hub and proxy stopped")
    supervise.clear_orphans(settings, echo)  # e.g. what a killed supervisord left
    # the hub stops its grading services (their managers remove them); a killed hub's stay
    dockerdoor.remove_containers("formgrader", **{"onelab.instance":
                                                  settings.spawner.container_prefix})
    if not keep_servers:
        mine = {"onelab.instance": settings.spawner.container_prefix}
        n = dockerdoor.remove_services("learner", **mine) if \
            settings.spawner.backend == "swarm" else 0
        n += dockerdoor.remove_containers("learner", **mine)
        if settings.spawner.backend == "swarm":  # the swarm network's bridge goes with it
            dockerdoor.remove_containers("network-anchor",
                                         **{"onelab.network": settings.spawner.network})
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


def engine() -> dict[str, object]:
    """The Docker Engine as `onelab status` shows it: pid, version, answering or not."""
    pid = supervise.read_pid(Path("/var/run/docker.pid"), "dockerd")
    try:
        version = dockerdoor.client().version().get("Version")
    except OneLabError as e:
        return {"pid": pid, "version": None, "running": False, "error": str(e)}
    return {"pid": pid, "version": version, "running": True}


def status(settings: Settings) -> dict[str, object]:
    """Every process of the platform with its pid and state, the Docker Engine, the learners'
    servers and the firewall."""
    healthy = False
    try:
        healthy = requests.get(f"{settings.public_url}hub/health", timeout=2,
                               verify=tls.verify_for(settings)).status_code == 200
    except requests.RequestException:
        pass
    states = supervise.states(settings)
    hub_pid = (states.get("hub") or {}).get("pid")
    processes: list[dict[str, object]] = [
        {"name": "supervisord", "pid": supervise.supervisord_pid(settings),
         "state": "RUNNING" if states else "STOPPED"},
        *({"name": name, "pid": (states.get(name) or {}).get("pid"),
           "state": (states.get(name) or {}).get("state", "STOPPED")}
          for name in supervise.PROGRAMS),
        *({"name": name, "pid": pid,
           "state": "RUNNING" if ppid == hub_pid else "ORPHANED"}
          for name, pid, ppid in supervise.service_pids(settings)),
    ]
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
    return {"url": settings.public_url, "healthy": healthy,
            "hub": process(settings, "hub"), "proxy": process(settings, "proxy"),
            "processes": processes, "docker": engine(),
            "learners": learners, "image": learner_image(settings),
            "firewall": {"enabled": settings.spawner.host_firewall, "rules": rules}}


def follow(settings: Settings, echo: Echo = print) -> None:
    """Print the hub's log as it grows (through its restarts and rotations) until interrupted
    or supervision ends (foreground `up`)."""
    log = settings.state_dir / "logs" / "hub.log"
    fh = log.open(errors="replace")
    fh.seek(0, os.SEEK_END)
    try:
        while supervise.supervisord_pid(settings):
            line = fh.readline()
            if line:
                echo(line.rstrip())
                continue
            try:
                rotated = os.stat(log).st_ino != os.fstat(fh.fileno()).st_ino
            except OSError:
                rotated = False
            if rotated:
                fh.close()
                fh = log.open(errors="replace")
            time.sleep(0.3)
    finally:
        fh.close()
    raise OneLabError(N_("the hub exited: {why}"), why=_last_error(settings, "hub"))
