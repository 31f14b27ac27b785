"""A learner's first kernel, ready before they ask (issue #15).

When the learner's server starts, one Python kernel is started in the background and the
course's heavy imports (numpy, pandas, torch) are done in it, silently. The first kernel the
learner asks for (opening a notebook) is that one, handed over at once, so their first
`import torch` cell runs in well under a second instead of waiting for a kernel to start and
torch to load.

A handed-over kernel behaves like a fresh one:
- its namespace is clean: the imports ran silently inside a function that is deleted again, so
  no name is left behind, nothing is in the history and the execution count is still 0 (the
  modules are only cached in ``sys.modules``, which makes the learner's own import instant);
- its working directory is the notebook's folder, its ``JPY_SESSION_NAME`` and
  ``__session__`` the notebook's file, as jupyter_server gives a new kernel; a restart starts it
  there again;
- its kernelspec is the one asked for: only a request for the default kernel (python3) takes
  the pooled one; any other starts as usual.

Only the first kernel is pooled (no refill): a second kernel per learner would cost every
learner another torch-sized process. A kernel waiting in the pool is not listed by the API, so
JupyterLab does not show it. ``ONELAB_PREWARM`` (set by the hub, hub/spawner.py) names the
modules; empty turns the pool off.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import List, Unicode

WARM = """
def _onelab_warm():
    import importlib
    for name in {modules!r}:
        try:
            importlib.import_module(name)
        except Exception:
            pass
_onelab_warm()
del _onelab_warm
"""

HAND_OVER = """
def _onelab_hand_over():
    import os
    os.chdir({cwd!r})
    os.environ["JPY_SESSION_NAME"] = {session!r}
    get_ipython().user_ns["__session__"] = {session!r}
_onelab_hand_over()
del _onelab_hand_over
"""


def modules_from_env(environ: Any = os.environ) -> list[str]:
    return [m.strip() for m in (environ.get("ONELAB_PREWARM") or "").split(",") if m.strip()]


class PooledKernelManager(AsyncMappingKernelManager):
    """jupyter_server's kernel manager, with the learner's first kernel started ahead."""

    prewarm_modules = List(Unicode(), default_value=modules_from_env(),
                           help="Modules imported in the kernel started ahead; empty: none "
                           "is started.").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool: list[str] = []
        self._filled = False
        self._filling: asyncio.Future | None = None

    def start_filling(self) -> None:
        self._filling = asyncio.ensure_future(self.fill())

    async def fill(self) -> None:
        """Start the one kernel ahead and do the imports in it (once per server)."""
        if self._filled or not self.prewarm_modules:
            return
        self._filled = True
        kernel_id = await super().start_kernel(kernel_name=self.default_kernel_name, path="")
        try:
            await self._run(kernel_id, WARM.format(modules=list(self.prewarm_modules)))
        except Exception as e:  # noqa: BLE001 - the learner gets a fresh kernel instead
            self.log.warning("OneLab: the kernel started ahead failed its imports (%s)", e)
            await super().shutdown_kernel(kernel_id, now=True)
            return
        self._pool.append(kernel_id)
        self.log.info("OneLab: a kernel with %s imported waits for the learner",
                      ", ".join(self.prewarm_modules))

    async def _run(self, kernel_id: str, code: str, timeout: float = 180) -> None:
        client = self.get_kernel(kernel_id).client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=timeout)
            msg_id = client.execute(code, silent=True, store_history=False,
                                    allow_stdin=False)
            while True:
                reply = await client.get_shell_msg(timeout=timeout)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            if reply["content"]["status"] != "ok":
                raise RuntimeError(reply["content"].get("evalue", "error"))
        finally:
            client.stop_channels()

    async def start_kernel(self, *, kernel_id: str | None = None, path: str | None = None,
                           **kwargs: Any) -> str:
        name = kwargs.get("kernel_name") or self.default_kernel_name
        wanted = kernel_id is None and name == self.default_kernel_name
        if wanted and self._filling is not None and not self._filling.done():
            try:  # asked for while it is still warming: it is nearer than a new one
                await asyncio.wait_for(asyncio.shield(self._filling), timeout=60)
            except Exception as e:  # noqa: BLE001 - a fresh kernel instead
                self.log.warning("OneLab: the kernel started ahead is not ready (%s)", e)
        if wanted and self._pool:
            pooled = self._pool.pop(0)
            try:
                await self._hand_over(pooled, path or "", kwargs.get("env"))
            except Exception as e:  # noqa: BLE001 - a fresh kernel instead
                self.log.warning("OneLab: could not hand over the kernel started ahead (%s)", e)
                await super().shutdown_kernel(pooled, now=True)
            else:
                self.log.info("OneLab: kernel %s (started ahead) handed over for %s", pooled,
                              path)
                return pooled
        return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)

    async def _hand_over(self, kernel_id: str, path: str, env: dict | None) -> None:
        cwd = self.cwd_for_path(path, env=env or {})
        session = (env or {}).get("JPY_SESSION_NAME") or path  # the notebook, as jupyter_server names it
        await self._run(kernel_id, HAND_OVER.format(cwd=cwd, session=session))
        km = self.get_kernel(kernel_id)
        launch = getattr(km, "_launch_args", None)
        if isinstance(launch, dict):  # a restart starts it where a fresh one would be
            launch["cwd"] = cwd
            launch["env"] = {**(launch.get("env") or os.environ), **(env or {}),
                             "JPY_SESSION_NAME": session}

    def list_kernels(self) -> list[dict[str, Any]]:
        return [k for k in super().list_kernels() if k["id"] not in self._pool]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "onelab_kernels"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Start the kernel ahead once the server's loop runs."""
    km = serverapp.kernel_manager
    if isinstance(km, PooledKernelManager):
        serverapp.io_loop.add_callback(km.start_filling)
