"""One locked-down PyTorch container per learner, through DockerSpawner.

Each learner gets: their own named volume as home (kept when the container goes), the shared
datasets volume read-only, memory/CPU/pids limits, a read-only root file system with a small
/tmp, no capabilities, no privilege escalation, no Docker socket, and a network on which
containers cannot reach each other (only the hub on the gateway).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from dockerspawner import DockerSpawner
from jupyterhub.utils import maybe_future
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Any as AnyTrait
from traitlets import Float, Integer, List, Unicode
from traitlets.config import Config

from hub.admission import admission, until_answering
from hub.gpu.learner import GpuSpawnerMixin
from hub.state import admin_token
from images.table import learner_image
from onelab import dockerdoor
from onelab.errors import OneLabError
from onelab.i18n import gettext
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


NOTICE_ENV = "ONELAB_NOTICE"
"""What the learner's next server tells them at once (images/learner/onelab/onelab_notices.py):
``oom <epoch seconds>`` after the kernel's OOM killer ended the last one, ``stopped <epoch>``
after it ended by itself otherwise (the Docker Engine restarted, the container crashed)."""


class LearnerSpawner(GpuSpawnerMixin, DockerSpawner):
    """DockerSpawner that brings back a learner's server that ended by itself, and says why.

    A server's container that stops without the hub asking (the OOM killer ended it, the Docker
    Engine restarted and took every container down, it crashed) is seen by the hub's poll; the
    hub stops the server cleanly (the container goes, the home volume stays) and then starts it
    again through its own API, as if the learner had pressed Start. The new server tells the
    learner what happened, in their language. A server that keeps dying is left stopped after
    ``restart_limit`` automatic starts in ``restart_window`` seconds, so a broken image cannot
    loop; the learner still sees why when they start it.
    """

    restart_token = Unicode(help="A token with admin:servers (the onelab-admin service's), for "
                            "starting a server again after it ended by itself.").tag(config=True)
    restart_delay = Float(2.0, help="Seconds between the stop and the new start.").tag(
        config=True)
    restart_limit = Integer(3, help="Automatic starts allowed in restart_window.").tag(
        config=True)
    restart_window = Float(600.0, help="Seconds over which restart_limit counts.").tag(
        config=True)
    onelab_settings = AnyTrait(None, help="OneLab's settings (the GPU claims need them).").tag(
        config=True)
    died_at = Float(0.0)
    """When the hub saw this server's container end by itself (0: not since the last start)."""
    died_of = Unicode("")
    """``oom`` (Docker's ``State.OOMKilled``) or ``stopped`` (anything else)."""
    restarts = List(Float())
    """When this server was last started again automatically (the crash-loop guard)."""

    async def poll(self) -> int | str | None:
        status = await super().poll()
        if (status is not None and self.object_id and not self.died_at
                and not self._spawn_pending and not self._stop_pending):
            try:
                state = await self.ended_state()
            except Exception:  # noqa: BLE001 - the engine may be away; the status stands
                state = {}
            self.died_at = time.time()
            # OOMKilled stays true once the OOM killer ended any process of the container (a
            # kernel, say): the server itself died of it only when it was SIGKILLed
            self.died_of = ("oom" if state.get("OOMKilled") and state.get("ExitCode") == 137
                            else "stopped")
            self.log.warning("%s's server ended by itself (%s, exit %s, memory limit %s)",
                             self.user.name, "killed for memory" if self.died_of == "oom"
                             else "the container stopped", status, self.mem_limit)
        return status

    async def ended_state(self) -> dict[str, Any]:
        """The ended container's Docker ``State`` (OOMKilled, ExitCode); {} when it is gone."""
        obj = await self.get_object()
        return obj["State"] if obj else {}

    # JupyterHub drops a stopped server's Spawner and makes a new one for the next start: why
    # it died travels in the server's saved state (the database), so the new one (even after a
    # hub restart) still has it for the learner's notice.
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.died_at:
            state["died"] = [self.died_of, self.died_at]
        if self.restarts:
            state["restarts"] = list(self.restarts)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        died = state.get("died") or ["", 0.0]
        self.died_of, self.died_at = str(died[0]), float(died[1])
        self.restarts = [float(t) for t in state.get("restarts") or []]

    def clear_state(self) -> None:
        kept = self.died_of, self.died_at, self.restarts  # cleared with the container's id on
        super().clear_state()  # stop, kept for the notice and the guard
        self.died_of, self.died_at, self.restarts = kept

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(self.gpu_env())
        if self.died_at:
            env[NOTICE_ENV] = f"{self.died_of} {int(self.died_at)}"
        return env

    # A container goes when its server stops, the home volume stays; but not by Docker's
    # auto-remove (DockerSpawner's `remove`), which would take the container's last state, the
    # OOM kill included, before poll() reads it: stop() removes it instead.
    @property
    def will_resume(self) -> bool:
        return False  # as with DockerSpawner's remove: the server's API token goes with it

    async def start(self) -> Any:
        if await self.get_object():  # left by a killed hub or an engine restart: never reused
            self.log.warning("Removing %s's old container %s", self.user.name, self.object_id[:7])
            await self.remove_object()
        try:
            await self.gpu_before_start()  # a claim (maybe after a queue), or CPU
            s = self.onelab_settings
            if s is None:
                return await super().start()
            queue = admission(s.db_url, s.spawner.starts_at_once)
            try:
                async with queue.slot(self._say, s.spawner.queue_wait_limit):
                    ip, port = await super().start()
                    # the place is held until the server answers: its boot is the busy part
                    await until_answering(f"http://{ip}:{port}{self.server.base_url}api",
                                          s.spawner.http_timeout)
            except OneLabError as e:  # waited too long: said in the learner's language
                raise OneLabError(e.translated(gettext(self._lang()))) from None
            return ip, port
        finally:  # the notice went into this start's environment
            self.died_at, self.died_of = 0.0, ""

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        await self.remove_object()

    async def run_post_stop_hook(self) -> None:
        """After every stop, the hub's or a death's. JupyterHub calls stop() only for a server
        still running, so a container that ended by itself is removed here, and the server is
        started again (unless it keeps dying)."""
        await maybe_future(super().run_post_stop_hook())
        await self.gpu_after_stop()
        if not self.died_at:
            return
        try:
            await self.remove_object()
        except Exception as e:  # noqa: BLE001 - the engine may be away; start() removes it later
            self.log.warning("could not remove %s's ended container: %s", self.user.name, e)
        if not self.restart_token:
            return
        now = time.time()
        recent = [t for t in self.restarts if now - t < self.restart_window]
        if len(recent) >= self.restart_limit:
            self.log.error("%s's server ended by itself %d times in %d s: left stopped",
                           self.user.name, len(recent) + 1, self.restart_window)
            return
        self.restarts = [*recent, now]
        asyncio.get_running_loop().call_later(
            self.restart_delay, lambda: asyncio.ensure_future(self._start_again()))

    async def _start_again(self) -> None:
        """POST the server through the hub's API, as the home page's Start does; retried while
        the hub is still finishing the stop."""
        name = f"/{self.name}" if self.name else ""
        url = f"{self.hub.api_url.rstrip('/')}/users/{self.user.name}/server{name}"
        client = AsyncHTTPClient()
        for _attempt in range(20):
            try:
                r = await client.fetch(HTTPRequest(
                    url, method="POST", body=json.dumps({}),
                    headers={"Authorization": f"token {self.restart_token}"}), raise_error=False)
                code, body = r.code, r.body or b""
            except OSError as e:
                code, body = 0, str(e).encode()
            if code in (201, 202):
                self.log.info("%s's server is starting again", self.user.name)
                return
            if code == 400 and b"already running" in body:
                return
            self.log.info("starting %s's server again: %s %s; trying again", self.user.name,
                          code, body[:200])
            await asyncio.sleep(3)
        self.log.error("could not start %s's server again", self.user.name)


def _language_of(settings: Settings) -> Any:
    def language(spawner: Any) -> str:
        from hub.preferences import language

        return language(spawner.user.name, settings)

    return language


def configure_spawner(c: Config, settings: Settings) -> None:
    s = settings.spawner
    if s.backend == "swarm":
        from hub.swarm import LearnerSwarmSpawner

        c.JupyterHub.spawner_class = LearnerSwarmSpawner
    else:
        c.JupyterHub.spawner_class = LearnerSpawner
    c.LearnerSpawner.restart_token = admin_token(settings.state_dir)
    c.LearnerSpawner.onelab_settings = settings
    d = c.DockerSpawner
    for trait, value in dockerdoor.spawner_settings(learner_policy(settings)).items():
        setattr(d, trait, value)
    d.pull_policy = "never"  # images are built here, never pulled (offline classrooms)
    # the learner's language on the hub's pages, for JupyterLab's menus and OneLab's own panels
    # (images/learner/jupyter/jupyter_server_config.py reads it at each start; JupyterHub calls
    # an environment value that is callable with the spawner)
    d.environment = {**dict(d.environment or {}), "ONELAB_LANG": _language_of(settings),
                     # the first kernel, started ahead with these imports (onelab_kernels.py)
                     "ONELAB_PREWARM": ",".join(s.prewarm)}
    d.prefix = s.container_prefix
    d.name_template = "{prefix}-{username}"
    d.use_internal_ip = True
    d.remove = False  # LearnerSpawner.stop removes the container; the home volume stays
    d.notebook_dir = HOME
    c.Spawner.default_url = "/lab"
    # The spawn page at once (JupyterHub waits 10 s by default before showing it): a learner
    # in the admission queue sees their place there, not a blank wait (hub/admission.py).
    tornado = dict(c.JupyterHub.get("tornado_settings") or {})
    tornado["slow_spawn_timeout"] = 0
    c.JupyterHub.tornado_settings = tornado
    # a start's wait in the admission queue is not on start_timeout's clock (hub/admission.py)
    c.Spawner.start_timeout = s.start_timeout + s.queue_wait_limit
    c.Spawner.poll_interval = 10  # a server that died (memory, engine restart) is seen soon
    c.Spawner.http_timeout = s.http_timeout
    c.Spawner.cmd = ["jupyterhub-singleuser"]
