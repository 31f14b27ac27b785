"""The learner spawner's GPU part (a mixin of hub/spawner.py's LearnerSpawner).

At start: the spawn form's choice (only shown when a course of the learner offers a GPU), the
claim through :class:`hub.gpu.spawn.GpuDoor` with the queue's progress on the spawn page, and
the container's environment, ``onelab.gpu`` label and device request. At every stop: the
claim goes back. The first start in a hub process gives back the claims of servers that no
longer run (a hub killed while they stopped).
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

from hub.gpu.borrow import live_borrows
from hub.gpu.claims import Claim, parse_label
from hub.gpu.spawn import CPU, LABEL, GpuDoor, container, door
from onelab.i18n import N_, gettext

FORM_TITLE = N_("Where should your server run?")
FORM_CPU = N_("CPU only")
POLICY_WORDS = {"exclusive": N_("a whole GPU"), "shared": N_("a shared GPU"),
                "mig": N_("a GPU slice (MIG)")}


class GpuSpawnerMixin:
    """Needs DockerSpawner's ``docker``, ``extra_create_kwargs``, ``extra_host_config``, and an
    ``onelab_settings`` trait (traits must live on the HasTraits class itself)."""

    gpu_claim: Claim | None = None
    _gpu_events: list[dict[str, Any]]

    # -- helpers ----------------------------------------------------------------------------
    def _gpu_door(self) -> GpuDoor | None:
        s = self.onelab_settings  # type: ignore[attr-defined]
        if s is None:
            return None
        d = door(s)
        return d if d.enabled else None

    def _lang(self) -> str:
        from hub.preferences import language

        return language(self.user.name, self.onelab_settings)  # type: ignore[attr-defined]

    def _groups(self) -> list[str]:
        return [g.name for g in self.user.groups]  # type: ignore[attr-defined]

    def _say(self, message: str, fields: dict[str, Any]) -> None:
        text = gettext(self._lang())(message).format(**fields)
        self._gpu_events.append({"progress": 10, "message": text})
        self.log.info("%s: %s", self.user.name, text)  # type: ignore[attr-defined]

    async def _live_gpu_servers(self) -> set[tuple[str, str]]:
        """(user, server) of every running container that holds a claim, by its label."""
        prefix = self.prefix  # type: ignore[attr-defined]
        found = await self.docker(  # type: ignore[attr-defined]
            "containers", filters={"label": [LABEL, f"onelab.instance={prefix}"]})
        live = set()
        for c in found or []:
            labels = c.get("Labels") or {}
            if parse_label(labels.get(LABEL, "")) and labels.get("onelab.user"):
                live.add((labels["onelab.user"], labels.get("onelab.server", "")))
        return live

    # -- JupyterHub's hooks ---------------------------------------------------------------
    async def get_options_form(self) -> str:
        d = self._gpu_door()
        offers = d.offers(self._groups()) if d else []
        if not offers:
            return ""  # nothing to choose: JupyterHub starts the server at once
        _ = gettext(self._lang())
        rows = [f'<label><input type="radio" name="gpu" value="{html.escape(course)}"'
                f'{" checked" if i == 0 else ""}> {html.escape(course)}: '
                f'{html.escape(_(POLICY_WORDS[p.kind]))}</label><br>'
                for i, (course, p) in enumerate(offers)]
        rows.append(f'<label><input type="radio" name="gpu" value="{CPU}"> '
                    f'{html.escape(_(FORM_CPU))}</label>')
        return f"<p>{html.escape(_(FORM_TITLE))}</p>" + "\n".join(rows)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return {"gpu": (formdata.get("gpu") or [""])[0]}

    async def progress(self) -> Any:
        sent = 0
        while True:  # JupyterHub stops reading when the start is done
            events = getattr(self, "_gpu_events", [])
            while sent < len(events):
                yield events[sent]
                sent += 1
            await asyncio.sleep(0.5)

    async def gpu_before_start(self) -> None:
        """Claim (or not) and put what the claim gives into this start's container."""
        self._gpu_events = []
        self.gpu_claim = None
        base_labels = {k: v for k, v in (self.extra_create_kwargs.get(  # type: ignore
            "labels") or {}).items() if k != LABEL}
        base_host = {k: v for k, v in self.extra_host_config.items()  # type: ignore
                     if k != "device_requests" or self._gpu_door() is None}
        d = self._gpu_door()
        if d is not None:
            if not d.reconciled:
                live = await self._live_gpu_servers()
                if d.claims is not None:  # grading runs that hold GPUs keep them
                    live |= await asyncio.to_thread(live_borrows, d.claims)
                given_back = await asyncio.to_thread(d.reconcile, live)
                for claim in given_back:
                    self.log.info("GPU claim %s of %s given back (its server is gone)",  # type: ignore
                                  claim.label, claim.username)
            decision = await d.decide(self.user.name, self.name,  # type: ignore[attr-defined]
                                      self._groups(),
                                      (self.user_options or {}).get("gpu"),  # type: ignore
                                      self._say, wait_limit=self._queue_limit())
            self.gpu_claim = decision.claim
        if self.gpu_claim is not None:
            nvidia = await self._nvidia_runtime()
            got = container(self.gpu_claim, device_requests=nvidia)
            base_labels.update(got["labels"])
            base_host.update(got["host_config"])
        if d is not None:  # a GPU holder gets the CUDA image, a server on CPU the learner one
            from images.table import gpu_learner_image, learner_image

            s = self.onelab_settings  # type: ignore[attr-defined]
            self.image = (gpu_learner_image(s) if self.gpu_claim is not None  # type: ignore
                          else learner_image(s))
        self.extra_create_kwargs = {**self.extra_create_kwargs,  # type: ignore
                                    "labels": base_labels}
        self.extra_host_config = base_host  # type: ignore

    def _queue_limit(self) -> float:
        """gpu.queue_wait_limit, but never so long that JupyterHub's start_timeout ends the
        start first (the CPU start after the wait needs its time too)."""
        s = self.onelab_settings  # type: ignore[attr-defined]
        return max(min(float(s.gpu.queue_wait_limit), s.spawner.start_timeout - 90), 0.0)

    def gpu_env(self) -> dict[str, str]:
        if self.gpu_claim is None:
            return {"ONELAB_GPU": ""}
        from hub.gpu.claims import container_request

        return container_request(self.gpu_claim)["env"]

    async def gpu_after_stop(self) -> None:
        d = self._gpu_door()
        if d is not None:
            released = await asyncio.to_thread(d.release, self.user.name,  # type: ignore
                                               self.name)  # type: ignore[attr-defined]
            if released is not None:
                self.log.info("GPU claim %s of %s given back", released.label,  # type: ignore
                              released.username)
        self.gpu_claim = None

    async def _nvidia_runtime(self) -> bool:
        try:
            info = await self.docker("info")  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - no engine info: no device request
            return False
        return "nvidia" in (info.get("Runtimes") or {})
