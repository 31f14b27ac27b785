"""Hub-managed services: the idle culler and the admin API token that `onelab token` prints."""

from __future__ import annotations

import sys

from traitlets.config import Config

from hub._config import extend
from hub.state import admin_token
from onelab.settings import Settings

ADMIN_SERVICE = "onelab-admin"


def configure_services(c: Config, settings: Settings) -> None:
    services = [{"name": ADMIN_SERVICE, "api_token": admin_token(settings.state_dir)}]
    roles = [{"name": "admin", "services": [ADMIN_SERVICE]}]
    if settings.culler.enabled:
        services.append({
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        f"--timeout={settings.culler.timeout}",
                        f"--cull-every={settings.culler.every}"],
        })
        roles.append({
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        })
    extend(c, "JupyterHub", "services", services)
    extend(c, "JupyterHub", "load_roles", roles)
