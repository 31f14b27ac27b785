"""One locked-down PyTorch container per learner, through DockerSpawner.

Each learner gets: their own named volume as home (kept when the container goes), the shared
datasets volume read-only, memory/CPU/pids limits, a read-only root file system with a small
/tmp, no capabilities, no privilege escalation, no Docker socket, and a network on which
containers cannot reach each other (only the hub on the gateway).
"""

from __future__ import annotations

from typing import Any

from traitlets.config import Config

from images.table import learner_image
from onelab.dockerdoor import ROLE_LABEL
from onelab.settings import Settings

HOME = "/home/learner"
LEARNER_UID = "1000:1000"


def device_requests(gpus: str) -> list[dict[str, Any]]:
    """Docker device requests for spawner.gpus (none, all, or a count)."""
    if gpus == "none":
        return []
    count = -1 if gpus == "all" else int(gpus)
    return [{"count": count, "capabilities": [["gpu"]]}]


def configure_spawner(c: Config, settings: Settings) -> None:
    s = settings.spawner
    c.JupyterHub.spawner_class = "docker"
    d = c.DockerSpawner
    d.image = learner_image(settings)
    d.pull_policy = "never"  # images are built here, never pulled (offline classrooms)
    d.prefix = s.container_prefix
    d.name_template = "{prefix}-{username}"
    d.network_name = s.network
    d.use_internal_ip = True
    d.remove = True  # the container goes on stop; the home volume stays
    d.notebook_dir = HOME
    d.volumes = {
        s.home_volume: HOME,
        s.datasets_volume: {"bind": f"{HOME}/datasets", "mode": "ro"},
    }
    d.mem_limit = s.mem_limit
    d.cpu_limit = s.cpu_limit
    host_config: dict[str, Any] = {
        "pids_limit": s.pids_limit,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": f"size={s.tmp_size.lower()},mode=1777"},
        "memswap_limit": s.mem_limit,  # no swap beyond the memory limit
    }
    if settings.uses_gpu:
        host_config["device_requests"] = device_requests(s.gpus)
    d.extra_host_config = host_config
    d.extra_create_kwargs = {
        "user": LEARNER_UID,
        "labels": {ROLE_LABEL: "learner", "onelab.user": "{raw_username}",
                   "onelab.instance": s.container_prefix},
    }
    d.environment = {"ONELAB_ROLE": "learner"}
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = s.start_timeout
    c.Spawner.http_timeout = s.http_timeout
    c.Spawner.cmd = ["jupyterhub-singleuser"]
