"""Courses on the hub: groups per course, the exchange service, and what learners' servers
need to reach it. Everything follows the course specs in courses/ (onelab/course.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from traitlets.config import Config

from hub._config import extend
from onelab.course import Course, courses_dir, load_courses
from onelab.settings import Settings

EXCHANGE_SERVICE = "onelab-exchange"
SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server",
                       f"access:services!service={EXCHANGE_SERVICE}"]


def course_specs(settings: Settings) -> list[Course]:
    return load_courses(settings.courses_dir or courses_dir())


def exchange_root(settings: Settings) -> Path:
    return settings.state_dir / "exchange"


def groups(courses: list[Course]) -> dict[str, dict]:
    """<course>-learners and <course>-staff (instructors and assistants) for every course."""
    out: dict[str, dict] = {}
    for c in courses:
        out[f"{c.id}-learners"] = {"users": c.all_learners(), "properties": {"course": c.id}}
        out[f"{c.id}-staff"] = {"users": sorted(set(c.instructors) | set(c.assistants)),
                               "properties": {"course": c.id}}
    return out


def configure_courses(c: Config, settings: Settings, gateway: str) -> None:
    courses = course_specs(settings)
    url = f"http://{gateway}:{settings.hub.exchange_port}"
    extend(c, "JupyterHub", "services", [{
        "name": EXCHANGE_SERVICE,
        "url": url,
        "command": [sys.executable, "-m", "hub.exchange_service"],
        # the exchange's limits as resolved here (file and environment), nothing secret
        "environment": {"EXCHANGE_ROOT": str(exchange_root(settings)),
                        "EXCHANGE_COURSES": str(settings.courses_dir or courses_dir()),
                        **{f"ONELAB_EXCHANGE__{k.upper()}": str(v)
                           for k, v in settings.exchange.model_dump().items()}},
        "display": False,
    }])
    # Every user may call the exchange (it decides per course what they see); a learner's
    # server gets a token that can, and nothing more than before.
    extend(c, "JupyterHub", "load_roles", [{
        "name": "user", "scopes": ["self", f"access:services!service={EXCHANGE_SERVICE}"]}])
    c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
    if settings.auth.kind != "oauth":
        # With OAuth the identity provider owns group membership (manage_groups), so the
        # course groups are loaded for local accounts only; access never depends on them.
        existing = dict(c.JupyterHub.get("load_groups", {}) or {})
        existing.update(groups(courses))
        c.JupyterHub.load_groups = existing
    configure_formgraders(c, settings, courses)
    env = dict(c.DockerSpawner.get("environment", {}) or {})
    env["ONELAB_EXCHANGE_URL"] = f"{url}/services/{EXCHANGE_SERVICE}/"
    c.DockerSpawner.environment = env


def formgrader_service(course_id: str) -> str:
    return f"formgrader-{course_id}"


def configure_formgraders(c: Config, settings: Settings, courses: list[Course]) -> None:
    """One formgrader per course, a hub-managed Jupyter server on loopback in the course's
    nbgrader directory; only the course's staff group may open it."""
    from hub.coursework import sync_course

    services, roles = [], []
    port = settings.hub.formgrader_port - 1
    for course in courses:
        port = _next_free_port(port + 1)
        name = formgrader_service(course.id)
        root = sync_course(settings, course)  # the nbgrader directory follows the spec
        conf = settings.state_dir / "formgraders" / course.id
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "jupyter_server_config.py").write_text(
            "# Written by OneLab at hub start: the course's formgrader and nothing else.\n"
            "c = get_config()\n"
            "c.ServerApp.jpserver_extensions = {\n"
            "    'nbgrader.server_extensions.formgrader': True,\n"
            "    'nbgrader.server_extensions.assignment_list': False,\n"
            "    'nbgrader.server_extensions.course_list': False,\n"
            "    'nbgrader.server_extensions.validate_assignment': False,\n"
            "}\n"
            f"c.ServerApp.root_dir = {str(root)!r}\n"
            "c.ServerApp.default_url = '/formgrader'\n")
        services.append({
            "name": name,
            "url": f"http://127.0.0.1:{port}",
            "command": [str(Path(sys.executable).parent / "jupyterhub-singleuser"),
                        "--allow-root"],
            "cwd": str(root),
            # the hub's OneLab settings (file and environment), so the autograde button
            # grades with the operator's image and limits
            "environment": {**{k: v for k, v in os.environ.items() if k.startswith("ONELAB_")},
                            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                            "JUPYTER_CONFIG_DIR": str(conf),
                            "HOME": str(conf)},
            "display": True,
        })
        # granted to the spec's staff by name: works with local accounts and with OAuth
        roles.append({"name": f"{course.id}-staff",
                      "users": sorted(set(course.instructors) | set(course.assistants)),
                      "scopes": [f"access:services!service={name}"]})
    extend(c, "JupyterHub", "services", services)
    extend(c, "JupyterHub", "load_roles", roles)


def _next_free_port(start: int) -> int:
    """The first port from `start` on that nothing listens on (loopback)."""
    import socket

    for port in range(start, min(start + 1000, 65535)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port from {start} on for the formgraders")
