"""Each course's grading service (nbgrader's formgrader), confined to a container.

Course staff are not trusted with the server: the formgrader runs in a container of the
course image as uid 1000, with no capabilities, a read-only root, learner-like limits, the
course's nbgrader directory at /course and its own read-only config at /etc/onelab/formgrader,
and nothing else of the platform: no Docker socket, no state directory, no settings, no secret
but its own service token. Kernels and terminals are off. What it needs from the hub
(releasing, collecting, returning feedback, running a notebook in the grading sandbox) it asks
the exchange service for, which knows the service by its token (hub/exchange_staff.py).

The hub runs one manager per course as a managed service (`python -m hub.formgrader COURSE`):
it starts the container, forwards the service's loopback port to it (the proxy only knows
loopback ports; the container's address is Docker's choice), removes the container when the
hub stops the service, and exits when the container dies so that the hub starts both again.
`onelab assignment ...` runs nbgrader inside the same container (`run_op`), so the host never
reads or writes what staff can write: no root process follows a link or loads a config file
that staff put into the course directory.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import shutil
import signal
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from traitlets.config import Config

from hub._config import extend
from hub.courses import EXCHANGE_SERVICE, formgrader_service
from hub.learner_network import ensure_learner_network
from onelab import dockerdoor, i18n
from onelab.course import Course
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings

STAFF_UID = 1000
INSIDE_PORT = 8888
CONFIG_DIR = "/etc/onelab/formgrader"
READY = "/tmp/onelab-ready"  # on the container's own tmpfs: a new container starts without it
COURSE_DIR = "/course"
HERE = Path(__file__).resolve().parent
# What the container imports, copied into its config folder (read-only there), and OneLab's
# catalogue as this host has it: the Korean of graders/preprocessor.py's words (the course
# image's own copy, if any, may be of another version).
LOCALE_DIR = f"{CONFIG_DIR}/locale"
INSIDE_FILES = {
    "onelab_formgrader.py": HERE / "formgrader_inside.py",
    "graders/__init__.py": None,
    "graders/execution.py": HERE.parent / "graders" / "execution.py",
    "graders/hook.py": HERE.parent / "graders" / "hook.py",
    "graders/preprocessor.py": HERE.parent / "graders" / "preprocessor.py",
    **{f"templates/feedback/{f}": HERE / "nbconvert_templates" / "feedback" / f
       for f in ("conf.json", "mathjax.html.j2")},
    "locale/ko/LC_MESSAGES/onelab.po": i18n.po_path("ko"),
}

SERVER_CONFIG = f"""\
# Written by OneLab: the course's formgrader and nothing else.
c = get_config()
c.ServerApp.jpserver_extensions = {{
    'nbgrader.server_extensions.formgrader': True,
    'nbgrader.server_extensions.assignment_list': False,
    'nbgrader.server_extensions.course_list': False,
    'nbgrader.server_extensions.validate_assignment': False,
    'onelab_exchange': False,
}}
c.ServerApp.root_dir = {COURSE_DIR!r}
c.ServerApp.default_url = '/formgrader'
c.ServerApp.terminals_enabled = False
c.ServerApp.kernel_manager_class = 'onelab_formgrader.NoKernels'
c.ContentsManager.allow_hidden = False
c.HTMLExporter.sanitize_html = True
"""

NBGRADER_CONFIG = """\
# Written by OneLab: exchange and autograde through the hub (onelab_formgrader.py).
from onelab_formgrader import configure
configure(get_config())
"""


def container_name(settings: Settings, course_id: str) -> str:
    """<platform>-formgrader-<course>, apart from learners' <prefix>-<username> names."""
    prefix = settings.spawner.container_prefix
    base = prefix[: -len("-learner")] if prefix.endswith("-learner") else f"{prefix}-staff"
    return f"{base}-formgrader-{course_id}"


def config_dir(settings: Settings, course_id: str) -> Path:
    return settings.state_dir / "formgraders" / course_id


def configure_formgraders(c: Config, settings: Settings, courses: list[Course],
                          ports: dict[str, int]) -> None:
    """One confined formgrader per course, reached at /services/formgrader-<course>/ by that
    course's staff only, on the loopback port `onelab up` chose for it (`choose_ports`); its
    token may call the exchange (which decides what it may do)."""
    services, roles = [], []
    for course in courses:
        name = formgrader_service(course.id)
        services.append({
            "name": name,
            "url": f"http://127.0.0.1:{ports[course.id]}",
            "command": [sys.executable, "-m", "hub.formgrader", course.id],
            # the manager is the hub's (it starts the container): it reads the settings;
            # the container gets none of them
            "environment": {**{k: v for k, v in os.environ.items() if k.startswith("ONELAB_")},
                            "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"},
            "display": True,
            "oauth_no_confirm": True,  # OneLab's own service: no "Authorize access" page
            # its port answers once the course's container is up: on a busy server that is
            # more than JupyterHub's default wait, and the hub would give up and exit
            "timeout": FORMGRADER_START_TIMEOUT,
        })
        roles.append({"name": f"{course.id}-staff",
                      "users": sorted(course.staff()),
                      "scopes": [f"access:services!service={name}"]})
    if services:
        roles.append({"name": "onelab-formgraders",
                      "services": [s["name"] for s in services],
                      "scopes": [f"access:services!service={EXCHANGE_SERVICE}"]})
    extend(c, "JupyterHub", "services", services)
    extend(c, "JupyterHub", "load_roles", roles)


def choose_ports(settings: Settings, courses: list[Course]) -> dict[str, int]:
    """For `onelab up`: a free loopback port per course, from hub.formgrader_port on."""
    import socket

    def free(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    out: dict[str, int] = {}
    start = settings.hub.formgrader_port
    candidates = iter(range(start, min(start + 1000, 65535)))
    for course in courses:
        port = next((p for p in candidates if free(p)), None)
        if port is None:
            raise OneLabError(f"no free port from {start} on for the formgraders; set "
                              "hub.formgrader_port")
        out[course.id] = port
    return out


# -- the host's side of the course directory --------------------------------------------------

def prepare_root(root: Path) -> None:
    """The course directory belongs to the staff's uid. The host creates the folder itself and
    never opens anything inside it again (links there are not followed here: lchown)."""
    root.mkdir(parents=True, exist_ok=True)
    if root.stat().st_uid == STAFF_UID:
        return
    for d, dirs, files in os.walk(root, followlinks=False):  # a tree from before: hand it over
        for n in dirs + files:
            os.lchown(os.path.join(d, n), STAFF_UID, STAFF_UID)
    os.chown(root, STAFF_UID, STAFF_UID)
    (root / "nbgrader_config.py").unlink(missing_ok=True)  # the host's old one: not for staff


def write_config(settings: Settings, course_id: str) -> Path:
    """The container's own read-only config folder: server and nbgrader config, OneLab's code."""
    folder = config_dir(settings, course_id)
    tmp = folder.with_name(f".{course_id}.new")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "graders").mkdir(parents=True)
    (tmp / "templates" / "feedback").mkdir(parents=True)
    (tmp / "locale" / "ko" / "LC_MESSAGES").mkdir(parents=True)
    (tmp / "jupyter_server_config.py").write_text(SERVER_CONFIG)
    (tmp / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    for rel, src in INSIDE_FILES.items():
        (tmp / rel).write_bytes(src.read_bytes() if src else b"")
    for p in [tmp, *tmp.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    old = folder.with_name(f".{course_id}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


FORMGRADER_START_TIMEOUT = 180
"""Seconds the hub waits, at its start, for a course's grading service to answer."""

MANAGER_LABEL = "onelab.manager"
"""The pid of the manager (``python -m hub.formgrader``) that started the container: a container
whose manager is gone was left by a killed hub and is about to be replaced, so nothing is run
in it."""


def box(settings: Settings, course: Course, env: dict[str, str],
        manager: int | None = None) -> dockerdoor.Policy:
    from hub.courses import course_image, exchange_url
    from hub.coursework import course_root

    s = settings.spawner
    gateway = ensure_learner_network(settings)
    inside = {k: v for k, v in env.items() if k.startswith("JUPYTERHUB_")}
    prefix = inside.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{formgrader_service(course.id)}/")
    inside.update({
        "JUPYTERHUB_API_URL": f"http://{gateway}:{settings.hub.hub_port}{settings.hub.base_url}hub/api",
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{INSIDE_PORT}{prefix}",
        "ONELAB_COURSE": course.id,
        "ONELAB_EXCHANGE_URL": exchange_url(settings, gateway),
        # our config is read-only; Jupyter writes into its config dir, so that one is /tmp
        "HOME": "/tmp", "JUPYTER_CONFIG_DIR": "/tmp/jupyter-config",
        "JUPYTER_CONFIG_PATH": CONFIG_DIR, "PYTHONPATH": CONFIG_DIR,
        "JUPYTER_RUNTIME_DIR": "/tmp/runtime", "PYTHONDONTWRITEBYTECODE": "1",
        "ONELAB_LOCALE_DIR": LOCALE_DIR,
    })
    return dockerdoor.Policy(
        role="formgrader", name=container_name(settings, course.id),
        image=course_image(settings, course), entrypoint=(),
        command=("jupyterhub-singleuser",), environment=tuple(sorted(inside.items())),
        mounts=(dockerdoor.Mount(str(course_root(settings, course.id)), COURSE_DIR,
                                 read_only=False),
                dockerdoor.Mount(str(config_dir(settings, course.id)), CONFIG_DIR)),
        network=s.network, memory=s.mem_limit, cpus=s.cpu_limit, pids=s.pids_limit,
        tmpfs=(("/tmp", "size=256m,mode=1777"),), remove_on_exit=False,
        labels=(("onelab.course", course.id), ("onelab.instance", s.container_prefix),
                *([(MANAGER_LABEL, str(manager))] if manager else [])))


def sync_sources(settings: Settings, course: Course) -> None:
    """Put the spec's source notebooks into the running container's course directory, each
    assignment swapped in whole, owned by the staff uid (the host writes nothing there)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(".sync")
        top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o755, STAFF_UID, STAFF_UID
        tar.addfile(top)
        for a in course.assignments:
            src = course.source_dir(a.id)
            for path in sorted([src, *src.rglob("*")]):
                rel = path.relative_to(src).as_posix()
                if any(part.startswith(".") for part in Path(rel).parts):
                    continue
                info = tar.gettarinfo(str(path), arcname=f".sync/{a.id}/{rel}".rstrip("/."))
                info.uid = info.gid = STAFF_UID
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                elif info.isdir():
                    info.mode = 0o755
                    tar.addfile(info)
    name = container_name(settings, course.id)
    op(name, "clear-sync")
    dockerdoor.put_files(name, COURSE_DIR, buf.getvalue())
    op(name, "sync", *[a.id for a in course.assignments])


def op(name: str, *args: str) -> Any:
    """Run one of onelab_formgrader's operations inside the course's container (as staff);
    returns its JSON answer, or raises with what went wrong."""
    code, out = dockerdoor.exec_in(name, ["python3", "-m", "onelab_formgrader", *args],
                                   workdir=COURSE_DIR)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        answer = json.loads(last)
    except ValueError:
        answer = None
    if code != 0 or not isinstance(answer, dict):
        raise OneLabError(f"{args[0]} in the course's grading service failed (exit {code}): "
                          f"{out.strip()[-800:] or 'no output'}")
    if answer.get("error"):
        raise OneLabError(f"{args[0]}: {answer['error']}")
    return answer.get("value")


def wait_running(settings: Settings, course_id: str, timeout: float = 90) -> str:
    """The name of the course's grading container once it runs (it starts with the hub)."""
    name = container_name(settings, course_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ctr = dockerdoor.find_container(name)
        if ctr is not None and ctr.status == "running" and managed(ctr):
            code, _ = dockerdoor.exec_in(name, ["test", "-f", READY])
            if code == 0:
                return name
        time.sleep(0.5)
    raise OneLabError(N_("the grading service of {course} is not running: start the platform "
                         "(`onelab up`) and try again"), course=course_id)


def managed(ctr: Any) -> bool:
    """Whether the manager that started this container still runs (the CLI runs on the hub's
    host); a container without the label is taken as managed."""
    pid = (ctr.labels or {}).get(MANAGER_LABEL)
    if not pid:
        return True
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"hub.formgrader" in cmdline


# -- the manager: `python -m hub.formgrader COURSE` ----------------------------------------

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def forward(listen_port: int, target: str, target_port: int,
                  alive: Any) -> None:
    """127.0.0.1:listen_port -> target:target_port, until `alive()` turns false."""
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            tr, tw = await asyncio.open_connection(target, target_port)
        except OSError:
            w.close()
            return
        await asyncio.gather(_pipe(r, tw), _pipe(tr, w))

    server = None
    deadline = time.monotonic() + 20
    while server is None:  # a killed hub's manager may still be letting go of the port
        try:
            server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    async with server:
        while alive():
            await asyncio.sleep(1)


def main() -> None:
    from urllib.parse import urlparse

    from hub.coursework import course_root, find_course
    from hub.lifeline import die_with_parent
    from onelab.settings import load

    die_with_parent()  # SIGTERM when the hub dies, even by SIGKILL: stop() below, then cleanup
    course_id = sys.argv[1]
    settings = load()
    course = find_course(settings, course_id)
    parent = os.getppid()
    prepare_root(course_root(settings, course_id))
    write_config(settings, course_id)
    spec = box(settings, course, dict(os.environ), manager=os.getpid())
    ctr = dockerdoor.start_service(spec)
    stopping = []

    def stop(*_: Any) -> None:
        stopping.append(True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        ip = dockerdoor.container_ip(ctr, spec.network)
        try:
            upgraded = op(spec.name, "init")
            if upgraded:
                print(f"formgrader of {course_id}: gradebook upgraded ({upgraded}), the old "
                      "one kept beside it", flush=True)
            sync_sources(settings, course)
        except OneLabError as e:  # the service still serves what the course folder holds
            print(f"formgrader of {course_id}: the sources could not be synced: {e}",
                  flush=True)
        op(spec.name, "ready")
        print(f"formgrader of {course_id}: container {spec.name} ({ip}), uid {STAFF_UID}",
              flush=True)
        checked = [time.monotonic()]

        def alive() -> bool:
            if stopping or os.getppid() != parent:  # stopped, or the hub died
                return False
            if time.monotonic() - checked[0] > 5:
                checked[0] = time.monotonic()
                ctr.reload()
                if ctr.status != "running":
                    print(f"the container {spec.name} stopped ({ctr.status})", flush=True)
                    return False
            return True

        asyncio.run(forward(urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port, ip,
                            INSIDE_PORT, alive))
    finally:
        try:
            ctr.remove(force=True)
        except Exception as e:  # noqa: BLE001 - gone already, or the engine is
            print(f"the container {spec.name} could not be removed: {e}", flush=True)
    sys.exit(0 if stopping else 1)  # a dead container: the hub starts the service again


if __name__ == "__main__":
    main()
