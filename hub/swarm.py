"""Learner servers as Docker Swarm services (``spawner.backend: swarm``; docs/swarm.md).

The same server as on one Docker Engine (hub/spawner.py's LearnerSpawner: the queue, the
restarts after a death, the notices), run by DockerSpawner's SwarmSpawner as a one-task service
instead of a container. The task gets the learner policy's lockdown and limits through the one
door (``dockerdoor.service_spec``), its home volume and the read-only datasets, and the learner
network, a swarm-scoped bridge with inter-container traffic off
(``dockerdoor.ensure_swarm_network``).

A learner's home is a volume on the node their server first ran on. The spawner records that
node in the server's state (the hub database) and pins every later start there with a placement
constraint, so the home is found again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dockerspawner import SwarmSpawner
from traitlets import Unicode

from hub.spawner import LearnerSpawner, learner_policy
from onelab import dockerdoor


class LearnerSwarmSpawner(LearnerSpawner, SwarmSpawner):
    """LearnerSpawner's behaviour, with the server as a swarm service pinned to its home's
    node."""

    node_id = Unicode("", help="The swarm node holding this learner's home (set at the first "
                      "start, kept in the hub database).")

    def _policy(self) -> dockerdoor.Policy:
        """The learner policy with this learner's names filled in (DockerSpawner's templates:
        {username} in the home volume, {raw_username} in the labels)."""
        ns = self.template_namespace()
        p = learner_policy(self.onelab_settings)
        return dockerdoor.Policy(**{
            **p.__dict__,
            "image": self.image,  # the start's choice (a GPU holder's image, say)
            "mounts": tuple(dockerdoor.Mount(m.source.format(**ns), m.target, m.read_only)
                            for m in p.mounts),
            "labels": tuple((k, v.format(**ns)) for k, v in p.labels),
        })

    async def create_object(self) -> dict[str, Any]:
        p = self._policy()
        task = dockerdoor.service_spec(
            p, args=await self.get_command(), env=self.get_env(),
            constraints=[f"node.id=={self.node_id}"] if self.node_id else [])
        service = await self.docker("create_service", task, name=self.service_name,
                                    labels=p.all_labels())
        while not await self.docker("tasks", filters={"service": self.service_name}):
            await asyncio.sleep(0.5)
        return service

    async def start_object(self) -> None:
        await super().start_object()
        task = await self.get_task()
        if task and task.get("NodeID") and not self.node_id:
            self.node_id = task["NodeID"]  # the home is made there: later starts go there
            self.log.info("%s's home is on swarm node %s", self.user.name, self.node_id)

    async def get_ip_and_port(self) -> tuple[str, int]:
        """The task's address on the learner network: the hub reaches it there, as it reaches
        a learner container on one Engine."""
        task = await self.get_task()
        cid = ((task or {}).get("Status") or {}).get("ContainerStatus", {}).get("ContainerID")
        if not cid:
            raise RuntimeError(f"service {self.service_name} has no running container")
        info = await self.docker("inspect_container", cid)
        net = (info["NetworkSettings"]["Networks"] or {}).get(self.network_name) or {}
        if not net.get("IPAddress"):
            raise RuntimeError(f"{self.service_name} has no address on {self.network_name}")
        return net["IPAddress"], self.port

    async def ended_state(self) -> dict[str, Any]:
        """The ended task's container ``State`` (OOMKilled, ExitCode) when this node still has
        it, else what the task says."""
        task = await self.get_task()
        status = (task or {}).get("Status") or {}
        cid = (status.get("ContainerStatus") or {}).get("ContainerID")
        if cid:
            try:
                return (await self.docker("inspect_container", cid))["State"]
            except dockerdoor.NotFound:
                pass
        return {"ExitCode": (status.get("ContainerStatus") or {}).get("ExitCode")}

    async def remove_object(self) -> None:
        """Remove the service, and wait for its task's container to be gone: the swarm stops
        it after the call returns, and until then it holds the home volume (a `users remove`
        right after the stop could not move the home)."""
        try:
            await super().remove_object()
        except dockerdoor.NotFound:
            pass  # gone already (SwarmSpawner's stop removes it as well)
        label = f"com.docker.swarm.service.name={self.service_name}"
        for _ in range(120):
            if not await self.docker("containers", all=True, filters={"label": label}):
                return
            await asyncio.sleep(0.25)
        self.log.warning("%s's container is still there 30 s after its service went",
                         self.user.name)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.node_id:
            state["node"] = self.node_id
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.node_id = str(state.get("node") or "")

    def clear_state(self) -> None:
        node = self.node_id  # the home stays on its node when the server stops
        super().clear_state()
        self.node_id = node
