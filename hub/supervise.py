"""The platform's processes under supervisord: configurable-http-proxy and JupyterHub, each
brought back by supervisord when it dies, whoever killed it.

JupyterHub in turn supervises its managed services (the exchange and each course's formgrader
manager): it starts them, and starts one again when it exits. Those services end with the hub
that started them (:mod:`hub.lifeline`), so a killed hub leaves nothing on their ports for the
hub supervisord starts next.

One supervisord per platform, with everything in the state directory: its configuration
(``supervisor/supervisord.conf``, written by ``onelab up``), its control socket (mode 0700,
root's alone), its pid file, and the programs' logs (``logs/proxy.log``, ``logs/hub.log``,
rotated). ``onelab up`` starts it, or adopts the one that runs; ``onelab down`` stops the hub,
then the proxy, then supervisord. Secrets never enter the configuration: the proxy's token is
read from its file by ``python -m hub.supervise proxy`` just before it becomes the proxy.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
HUB_CONFIG = REPO_ROOT / "jupyterhub_config.py"
PROGRAMS = ("proxy", "hub")
"""In the order they start; they stop in the reverse order."""
UP = ("RUNNING", "STARTING")
LOG_MAX = "20MB"
LOG_BACKUPS = 5


@dataclass(frozen=True)
class Paths:
    dir: Path
    conf: Path
    sock: Path
    pidfile: Path
    log: Path


SOCKET_MAX = 100
"""A unix socket's path must fit sockaddr_un (107 bytes on Linux); supervisord refuses more."""


def paths(settings: Settings) -> Paths:
    d = settings.state_dir / "supervisor"
    return Paths(d, d / "supervisord.conf", socket_path(d), d / "supervisord.pid",
                 settings.state_dir / "logs" / "supervisord.log")


def socket_path(d: Path) -> Path:
    """The control socket: in the state directory, or, where that path is too long for a unix
    socket (a deep state directory), in a 0700 directory of this user's under /tmp named by a
    hash of the state directory, so each platform still has its own."""
    sock = d / "supervisor.sock"
    if len(os.fsencode(sock)) <= SOCKET_MAX:
        return sock
    digest = hashlib.sha256(os.fsencode(d.resolve())).hexdigest()[:16]
    return Path("/tmp") / f"onelab-{os.getuid()}" / f"supervisor-{digest}.sock"


def _private_dir(path: Path) -> None:
    """Make `path` a directory only this user can enter; refuse one someone else owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid():
        raise OneLabError(N_("{path} is not a directory of this user's: remove it and try again"),
                          path=path)
    os.chmod(path, 0o700)


def _q(value: object) -> str:
    """A value as supervisord's configuration reads it (it expands %(name)s)."""
    return str(value).replace("%", "%%")


def conf_text(settings: Settings) -> str:
    p = paths(settings)
    logs = settings.state_dir / "logs"
    py = sys.executable

    def program(name: str, command: str, priority: int, startsecs: int, stopwait: int) -> str:
        return f"""
[program:{name}]
command={_q(command)}
directory={_q(settings.state_dir)}
priority={priority}
autostart=true
autorestart=true
startsecs={startsecs}
startretries=5
stopsignal=TERM
stopwaitsecs={stopwait}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={_q(logs / f"{name}.log")}
stdout_logfile_maxbytes={LOG_MAX}
stdout_logfile_backups={LOG_BACKUPS}
"""

    return f"""; Written by `onelab up` (hub/supervise.py); rewritten at each start, do not edit.
[unix_http_server]
file={_q(p.sock)}
chmod=0700

[supervisord]
pidfile={_q(p.pidfile)}
logfile={_q(p.log)}
logfile_maxbytes={LOG_MAX}
logfile_backups={LOG_BACKUPS}
childlogdir={_q(logs)}
directory={_q(settings.state_dir)}
identifier=onelab
umask=077

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{_q(p.sock)}
""" + program("proxy", f"{py} -m hub.supervise proxy", 10, 1, 10) + program(
        "hub", f"{py} -m jupyterhub -f {HUB_CONFIG}", 20, 5, 30)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# -- processes, by pid file --------------------------------------------------------------------

def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def read_pid(path: Path, expect: str) -> int | None:
    """The pid in ``path`` when that process lives and its command line holds ``expect``
    (a pid file outlives its process, and pids are reused)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) and expect in cmdline(pid) else None


def terminate(pid: int, timeout: float = 15) -> None:
    """SIGTERM to the process's group (its own children too), SIGKILL after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(os.getpgid(pid), sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.2)


def supervisord_pid(settings: Settings) -> int | None:
    return read_pid(paths(settings).pidfile, "supervisord")


def service_pids(settings: Settings) -> list[tuple[str, int, int]]:
    """The hub's services (the exchange, formgrader managers) of this platform, found by their
    command line and working directory: ``(name, pid, parent pid)``."""
    out = []
    state = str(settings.state_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        line = cmdline(pid)
        if "-m hub.exchange_service" in line:
            name = "exchange"
        elif "-m hub.formgrader " in line:
            name = f"formgrader {line.split('-m hub.formgrader ', 1)[1].split()[0]}"
        else:
            continue
        try:
            if os.readlink(f"/proc/{pid}/cwd") != state:
                continue
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.append((name, pid, ppid))
    return sorted(out)


def clear_orphans(settings: Settings, echo: Any = print) -> None:
    """Before a new supervisord: stop what an earlier one (killed) or an older OneLab left
    running: its proxy and hub by their pid files, the services by what they run here."""
    state = settings.state_dir
    for label, path, expect in (("hub", state / "jupyterhub.pid", "jupyterhub"),
                                ("proxy", state / "proxy.pid", "configurable-http-proxy")):
        pid = read_pid(path, expect)
        if pid:
            echo(f"stopping a {label} left running without supervision (pid {pid})")
            terminate(pid)
        path.unlink(missing_ok=True)
    for name, pid, _ppid in service_pids(settings):
        echo(f"stopping an orphaned {name} (pid {pid})")
        terminate(pid)


# -- supervisord --------------------------------------------------------------------------------

def rpc(settings: Settings, timeout: float = 10) -> Any:
    """supervisord's XML-RPC interface, over its unix socket."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{paths(settings).sock}")
    transport.timeout = timeout  # type: ignore[attr-defined]
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def states(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each program's state (RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED ...), pid and
    supervisord's description; empty when no supervisord runs."""
    if not supervisord_pid(settings):
        return {}
    try:
        infos = rpc(settings).getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return {}
    return {i["name"]: {"state": i["statename"], "pid": i["pid"] or None,
                        "description": i["description"], "exitstatus": i["exitstatus"]}
            for i in infos}


def start(settings: Settings, env: dict[str, str], timeout: float = 20) -> int:
    """Start supervisord (it daemonizes) with a fresh configuration; it starts the programs.
    Returns its pid once its socket answers."""
    p = paths(settings)
    p.dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(p.dir, 0o700)
    if p.sock.parent != p.dir:
        _private_dir(p.sock.parent)
    _write_private(p.conf, conf_text(settings))
    p.sock.unlink(missing_ok=True)  # a killed supervisord's socket refuses the new one
    exe = Path(sys.executable).parent / "supervisord"
    done = subprocess.run([str(exe), "-c", str(p.conf)], env=env, cwd=settings.state_dir,
                          check=False, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise OneLabError(N_("supervisord did not start: {why} (log: {log})"),
                          why=(done.stderr or done.stdout).strip()[-300:] or "no output",
                          log=p.log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = supervisord_pid(settings)
        if pid:
            try:
                rpc(settings).getState()
                return pid
            except (OSError, xmlrpc.client.Error):
                pass
        time.sleep(0.2)
    raise OneLabError(N_("supervisord did not start: {why} (log: {log})"),
                      why="its socket did not answer", log=p.log)


def ensure_started(settings: Settings) -> list[str]:
    """Start the programs supervisord holds stopped (e.g. given up on); returns their names."""
    started = []
    for name in PROGRAMS:
        info = states(settings).get(name)
        if info is not None and info["state"] not in UP:
            try:
                rpc(settings).startProcess(name, False)
                started.append(name)
            except xmlrpc.client.Fault as e:
                if "ALREADY_STARTED" not in e.faultString:
                    raise
    return started


def stop_program(settings: Settings, name: str) -> bool:
    """Stop one program (supervisord waits out its stopwaitsecs); False if it was not up."""
    info = states(settings).get(name)
    if info is None or info["state"] not in (*UP, "BACKOFF"):
        return False
    try:
        rpc(settings, timeout=60).stopProcess(name, True)
    except xmlrpc.client.Fault as e:
        if "NOT_RUNNING" not in e.faultString:
            raise
        return False
    return True


def shutdown(settings: Settings, timeout: float = 90) -> bool:
    """Stop the hub, then the proxy, then supervisord itself; False if none ran."""
    pid = supervisord_pid(settings)
    if not pid:
        return False
    for name in reversed(PROGRAMS):
        try:
            stop_program(settings, name)
        except (OSError, xmlrpc.client.Error):
            break
    try:
        rpc(settings).shutdown()
    except (OSError, xmlrpc.client.Error):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    if alive(pid):
        terminate(pid)
    paths(settings).sock.unlink(missing_ok=True)
    return True


# -- the proxy's program ------------------------------------------------------------------------

def run_proxy() -> None:
    """``python -m hub.supervise proxy``: become configurable-http-proxy, with its token in
    its environment (read here, never written into supervisord's configuration)."""
    from hub.runtime import proxy_command
    from hub.state import proxy_token, read_runtime
    from onelab.settings import load

    settings = load()
    gateway = read_runtime(settings.state_dir)["gateway"]
    cmd = proxy_command(settings, gateway)
    env = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=proxy_token(settings.state_dir))
    (settings.state_dir / "proxy.pid").write_text(f"{os.getpid()}\n")
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    if sys.argv[1:] == ["proxy"]:
        run_proxy()
    else:
        sys.exit("usage: python -m hub.supervise proxy")
