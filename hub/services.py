"""Hub-managed services: the idle culler and the admin API token that `onelab token` prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from traitlets.config import Config

from hub._config import extend
from hub.courses import course_specs
from hub.state import admin_token
from hub.warmup import warm_file
from onelab.settings import Settings

ADMIN_SERVICE = "onelab-admin"
CULLER_CONFIG = Path(__file__).with_name("culler_config.py")


def settings_environment() -> dict[str, str]:
    """The hub's ONELAB_* variables (ONELAB_CONFIG among them): a service given them loads the
    same settings as the hub (JupyterHub passes a service only what it is given)."""
    return {k: v for k, v in os.environ.items() if k.startswith("ONELAB_")}


def configure_services(c: Config, settings: Settings) -> None:
    services = [{"name": ADMIN_SERVICE, "api_token": admin_token(settings.state_dir)}]
    roles = [{"name": "admin", "services": [ADMIN_SERVICE]}]
    if settings.culler.enabled:
        services.append({
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        f"--timeout={settings.culler.timeout}",
                        f"--cull-every={settings.culler.every}",
                        f"--config={CULLER_CONFIG}"],  # warm classes are left alone
            "environment": {"ONELAB_WARM_FILE": str(warm_file(settings))},
        })
        roles.append({
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        })
    if any(course.sessions for course in course_specs(settings)):
        services.append({
            "name": "onelab-classes",  # warms each course's sessions ahead of time
            "command": [sys.executable, "-m", "hub.warmup_service"],
            "environment": settings_environment(),
        })
    extend(c, "JupyterHub", "services", services)
    extend(c, "JupyterHub", "load_roles", roles)
