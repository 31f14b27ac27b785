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
from onelab import dockerdoor
from onelab.settings import Settings

HOME = "/home/learner"
LEARNER_UID = "1000:1000"


def learner_policy(settings: Settings) -> dockerdoor.Policy:
    """A learner's server: their home volume, the datasets read-only, limits, a read-only root
    with a small /tmp, on the learner network. DockerSpawner fills in {username}."""
    s = settings.spawner
    return dockerdoor.Policy(
        role="learner", image=learner_image(settings), user=LEARNER_UID,
        memory=s.mem_limit, cpus=s.cpu_limit, pids=s.pids_limit,
        gpus=s.gpus if settings.uses_gpu else "none",
        tmpfs=(("/tmp", f"size={s.tmp_size.lower()},mode=1777"),),
        mounts=(dockerdoor.Mount(s.home_volume, HOME, read_only=False),
                dockerdoor.Mount(s.datasets_volume, f"{HOME}/datasets")),
        network=s.network, environment=(("ONELAB_ROLE", "learner"),),
        labels=(("onelab.user", "{raw_username}"), ("onelab.instance", s.container_prefix)))


def _language_of(settings: Settings) -> Any:
    def language(spawner: Any) -> str:
        from hub.preferences import language

        return language(spawner.user.name, settings)

    return language


def configure_spawner(c: Config, settings: Settings) -> None:
    s = settings.spawner
    c.JupyterHub.spawner_class = "docker"
    d = c.DockerSpawner
    for trait, value in dockerdoor.spawner_settings(learner_policy(settings)).items():
        setattr(d, trait, value)
    d.pull_policy = "never"  # images are built here, never pulled (offline classrooms)
    # the learner's language on the hub's pages, for JupyterLab's menus and OneLab's own panels
    # (images/learner/jupyter/jupyter_server_config.py reads it at each start; JupyterHub calls
    # an environment value that is callable with the spawner)
    d.environment = {**dict(d.environment or {}), "ONELAB_LANG": _language_of(settings)}
    d.prefix = s.container_prefix
    d.name_template = "{prefix}-{username}"
    d.use_internal_ip = True
    d.remove = True  # the container goes on stop; the home volume stays
    d.notebook_dir = HOME
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = s.start_timeout
    c.Spawner.http_timeout = s.http_timeout
    c.Spawner.cmd = ["jupyterhub-singleuser"]
