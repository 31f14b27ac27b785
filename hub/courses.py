"""Courses on the hub: groups per course, the exchange service, and what learners' servers
need to reach it. Everything follows the course specs in courses/ (onelab/course.py)."""

from __future__ import annotations

import json
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


def course_image(settings: Settings, course: Course) -> str:
    """A course's grading service and sandbox image: images.table.grading_image's rule."""
    from images.table import grading_image

    return grading_image(settings, course.image)


def exchange_root(settings: Settings) -> Path:
    return settings.state_dir / "exchange"


def groups(courses: list[Course]) -> dict[str, dict]:
    """<course>-learners and <course>-staff (instructors and assistants) for every course."""
    out: dict[str, dict] = {}
    for c in courses:
        out[f"{c.id}-learners"] = {"users": c.all_learners(), "properties": {"course": c.id}}
        out[f"{c.id}-staff"] = {"users": sorted(c.staff()),
                               "properties": {"course": c.id}}
    return out


def exchange_url(settings: Settings, gateway: str) -> str:
    """The exchange as learners' and staff's containers reach it (on the learner gateway)."""
    return f"http://{gateway}:{settings.hub.exchange_port}/services/{EXCHANGE_SERVICE}/"


def grading_sandboxes(settings: Settings, courses: list[Course]) -> dict[str, dict]:
    """Per course: the image and limits the exchange runs a grading service's notebooks with."""
    from graders.grade import Options

    out = {}
    for course in courses:
        opts = Options.from_settings(settings.grading, course_image(settings, course))
        out[course.id] = {"image": opts.image, "limits": opts.limits.model_dump()}
    return out


def gpu_claims_env(settings: Settings) -> dict[str, str]:
    """What the exchange needs to borrow GPUs for the formgrader's Autograde from the learners'
    claims (hub/gpu/borrow.py): the hub database and the GPU settings, only when grading asks
    for GPUs at all. The database URL may hold PostgreSQL's password; the exchange runs as the
    hub's own process, on the host, and the hub's environment holds it already."""
    if settings.grading.gpus == "none":
        return {}
    return {"EXCHANGE_GPU_CLAIMS": json.dumps({"db_url": settings.db_url,
                                               "gpu": settings.gpu.model_dump()})}


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
                           for k, v in settings.exchange.model_dump().items()},
                        # each course's sandbox (image, limits): the hub's choice, never a
                        # grading service's
                        "EXCHANGE_GRADING": json.dumps(grading_sandboxes(settings, courses)),
                        **gpu_claims_env(settings)},
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
    env = dict(c.DockerSpawner.get("environment", {}) or {})
    env["ONELAB_EXCHANGE_URL"] = exchange_url(settings, gateway)
    c.DockerSpawner.environment = env


def formgrader_service(course_id: str) -> str:
    return f"formgrader-{course_id}"
