"""`onelab bench spawn`: N learners start at once, as a class does at the bell.

Per learner, from the common start: time until their server is ready, and until their first
cell (`import torch`) has run. Then memory: per container with a torch kernel, per idle
container (kernels shut down), and the host's available memory spent per learner.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import requests

from hub.state import admin_token
from images.table import learner_image
from onelab import dockerdoor
from onelab.errors import OneLabError
from onelab.hubclient import Hub
from onelab.settings import Settings
from onelab.tls import verify_for

FIRST_CELL = "import torch\nprint(torch.__version__, torch.ones(3).sum().item())"


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def container_memory(ctr: Any) -> int:
    """Bytes in use, as `docker stats` counts them (page cache that can be dropped excluded)."""
    st = ctr.stats(stream=False).get("memory_stats", {})
    inner = st.get("stats", {})
    return int(st.get("usage", 0)) - int(inner.get("total_inactive_file", inner.get("cache", 0)))


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summarize(values: list[float]) -> str:
    return (f"p50 {statistics.median(values):6.1f} s   p95 {_pct(values, 0.95):6.1f} s   "
            f"max {max(values):6.1f} s")


def at_once(jobs: list[Callable[[float], None]]) -> float:
    """Run each job in its own thread from one moment (a class at the bell), each given that
    moment (``time.monotonic()``); the seconds until all are done."""
    go = threading.Barrier(len(jobs) + 1)
    moment = [0.0]

    def run(job: Callable[[float], None]) -> None:
        go.wait()
        job(moment[0])

    threads = [threading.Thread(target=run, args=(j,), daemon=True) for j in jobs]
    for t in threads:
        t.start()
    moment[0] = time.monotonic()
    go.wait()
    for t in threads:
        t.join()
    return time.monotonic() - moment[0]


def bench_spawn(settings: Settings, users: int, echo: Callable[[str], None] = print,
                keep: bool = False) -> dict[str, Any]:
    if users < 1:
        raise OneLabError("--users must be at least 1")
    try:
        requests.get(f"{settings.public_url}hub/health", timeout=3,
                     verify=verify_for(settings)).raise_for_status()
    except requests.RequestException:
        raise OneLabError(f"no hub answers at {settings.public_url}; run `onelab up --detach` "
                          "first") from None
    hub = Hub(settings.public_url, admin_token(settings.state_dir), verify=verify_for(settings))
    names = [f"bench-{i:02d}" for i in range(1, users + 1)]
    for n in names:
        hub.ensure_user(n)
    mem0 = _mem_available()
    ready: dict[str, float] = {}
    first: dict[str, float] = {}
    errors: dict[str, str] = {}
    kernels = {}

    def learner(name: str, t0: float) -> None:
        try:
            hub.start(name)
            hub.wait_ready(name, timeout=settings.spawner.start_timeout + 300)
            ready[name] = time.monotonic() - t0
            k = hub.server(name).start_kernel()
            res = k.execute(FIRST_CELL, timeout=600)
            if not res.ok:
                raise OneLabError(f"first cell failed: {res.error}")
            first[name] = time.monotonic() - t0
            kernels[name] = k
        except Exception as e:  # noqa: BLE001 - one learner's failure is reported, not fatal
            errors[name] = str(e)[:200]

    wall = at_once([partial(learner, n) for n in names])
    ctrs = {c.labels.get("onelab.user"): c for c in dockerdoor.containers(
        "learner", **{"onelab.instance": settings.spawner.container_prefix})}
    with_kernel = [container_memory(ctrs[n]) for n in names if n in ctrs and n in kernels]
    host_per = (mem0 - _mem_available()) / max(1, len(kernels))
    for k in kernels.values():
        k.shutdown()
    time.sleep(3)
    idle = [container_memory(ctrs[n]) for n in names if n in ctrs]
    mib = 1024 * 1024
    result = {"users": users, "wall_s": wall, "ready_s": ready, "first_cell_s": first,
              "errors": errors,
              "mem_with_torch_kernel_mib": statistics.mean(with_kernel) / mib if with_kernel else None,
              "mem_idle_mib": statistics.mean(idle) / mib if idle else None,
              "host_mem_per_learner_mib": host_per / mib}
    echo(f"onelab bench spawn --users {users}   ({time.strftime('%Y-%m-%d %H:%M')}, "
         f"image {learner_image(settings)}, spawner.backend {settings.spawner.backend})")
    if ready:
        echo(f"  time to ready        {summarize(list(ready.values()))}")
    if first:
        echo(f"  time to first cell   {summarize(list(first.values()))}   (import torch)")
    echo(f"  all first cells done {wall:6.1f} s")
    if idle:
        echo(f"  memory per learner   idle server {result['mem_idle_mib']:.0f} MiB, with torch "
             f"kernel {result['mem_with_torch_kernel_mib'] or 0:.0f} MiB (container); host "
             f"{result['host_mem_per_learner_mib']:.0f} MiB available memory spent each")
    for n, e in sorted(errors.items()):
        echo(f"  FAILED {n}: {e}")
    if not keep:
        for n in names:
            try:
                hub.stop(n)
                hub.api("DELETE", f"users/{n}")
            except OneLabError as e:
                echo(f"  cleanup of {n}: {e}")
        from hub.accounts import home_volume  # named as DockerSpawner names it (escaped)

        for n in names:
            try:
                dockerdoor.remove_volume(home_volume(settings, n))
            except OneLabError as e:
                echo(f"  cleanup of {n}'s home: {e}")
    if errors:
        raise OneLabError(f"{len(errors)} of {users} learners failed (see above)")
    return result


def _kernel_waiting(ctr: Any) -> bool:
    """The server's kernel started ahead has its imports done (onelab_kernels.py logs it)."""
    return "waits for the learner" in ctr.logs().decode(errors="replace")


def bench_class(settings: Settings, users: int, warm: bool = False,
                echo: Callable[[str], None] = print, keep: bool = False) -> dict[str, Any]:
    """`onelab bench class`: N learners log in through the login form at one moment, start
    their servers (or find them warm), open a notebook and run `import torch`. Per learner:
    seconds to a ready server and to the finished first cell, from that moment."""
    from hub import loadbench, warmup
    from onelab.hubclient import Kernel

    if users < 1:
        raise OneLabError("--users must be at least 1")
    if settings.auth.kind != "local":
        raise OneLabError(f"onelab bench class logs learners in with local accounts; auth.kind "
                          f"is {settings.auth.kind}")
    url, verify = settings.public_url, verify_for(settings)
    try:
        requests.get(f"{url}hub/health", timeout=3, verify=verify).raise_for_status()
    except requests.RequestException:
        raise OneLabError(f"no hub answers at {url}; run `onelab up --detach` first") from None
    names = [f"class-{i:02d}" for i in range(1, users + 1)]
    passwords = loadbench._make_learners(settings, names)
    mem0 = _mem_available()
    prefix = settings.spawner.container_prefix

    def containers() -> dict[str, Any]:
        return {c.labels.get("onelab.user"): c for c in dockerdoor.containers(
            "learner", **{"onelab.instance": prefix})}

    warm_s = None
    if warm:
        out = warmup.warm_users(settings, names, "bench", until=time.time() + 3600, echo=echo)
        if out.failed:
            raise OneLabError(f"warming failed: {out.failed}")
        if settings.spawner.prewarm:  # the kernels started ahead finish their imports
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not all(
                    _kernel_waiting(c) for n, c in containers().items() if n in names):
                time.sleep(1)
        warm_s = out.seconds
    ready: dict[str, float] = {}
    first: dict[str, float] = {}
    errors: dict[str, str] = {}
    kernels: dict[str, Any] = {}
    hubs = {n: Hub(url, verify=verify) for n in names}

    def learner(name: str, t0: float) -> None:
        try:
            hub = hubs[name]
            if not hub.login(name, passwords[name]):  # the login form, as a browser posts it
                raise OneLabError("login refused")
            hub.start(name)  # a warm server is running already: the hub says so (400)
            hub.wait_ready(name, timeout=settings.spawner.start_timeout
                           + settings.spawner.queue_wait_limit)
            ready[name] = time.monotonic() - t0
            server = hub.server(name, hub.token_for(name, "onelab bench class"))
            r = server.request("POST", "api/sessions", json={  # JupyterLab opens a notebook
                "path": "bench.ipynb", "type": "notebook", "name": "bench.ipynb",
                "kernel": {"name": "python3"}}, timeout=600)
            if r.status_code != 201:
                raise OneLabError(f"no kernel: {r.status_code} {r.text[:200]}")
            k = Kernel(server, r.json()["kernel"]["id"])
            res = k.execute(FIRST_CELL, timeout=600)
            if not res.ok:
                raise OneLabError(f"first cell failed: {res.error}")
            first[name] = time.monotonic() - t0
            kernels[name] = k
        except Exception as e:  # noqa: BLE001 - one learner's failure is reported, not fatal
            errors[name] = str(e)[:200]

    wall = at_once([partial(learner, n) for n in names])
    ctrs = containers()
    with_kernel = [container_memory(ctrs[n]) for n in names if n in ctrs and n in kernels]
    host_per = (mem0 - _mem_available()) / max(1, len(kernels))
    for k in kernels.values():
        with contextlib.suppress(Exception):  # cleanup below removes the server anyway
            k.shutdown()
    mib = 1024 * 1024
    result = {"users": users, "warm": warm, "warm_s": warm_s, "wall_s": round(wall, 1),
              "ready_s": ready, "first_cell_s": first, "errors": errors,
              "mem_with_torch_kernel_mib": round(statistics.mean(with_kernel) / mib)
              if with_kernel else None,
              "host_mem_per_learner_mib": round(host_per / mib),
              "started": time.strftime("%Y-%m-%d %H:%M"),
              "starts_at_once": settings.spawner.starts_at_once,
              "prewarm": settings.spawner.prewarm}
    echo(f"onelab bench class --users {users}{' --warm' if warm else ''}   "
         f"({result['started']}, {settings.spawner.starts_at_once} start(s) at once, kernel "
         f"started ahead: {', '.join(settings.spawner.prewarm) or 'none'})")
    if warm_s is not None:
        echo(f"  warming beforehand    {warm_s:6.1f} s (not counted below)")
    if ready:
        echo(f"  time to ready        {summarize(list(ready.values()))}")
    if first:
        echo(f"  time to first cell   {summarize(list(first.values()))}   (import torch)")
    echo(f"  all first cells done {wall:6.1f} s;  {len(first)} of {users} learners, "
         f"{len(errors)} failed")
    if with_kernel:
        echo(f"  memory per learner   {result['mem_with_torch_kernel_mib']} MiB in the container "
             f"with the torch kernel; host {result['host_mem_per_learner_mib']} MiB available "
             "memory spent each")
    for n, e in sorted(errors.items()):
        echo(f"  FAILED {n}: {e}")
    warmup.let_go(warmup.warm_file(settings), names)
    if not keep:
        for line in loadbench.remove_learners(settings, names):
            echo(f"  cleanup: {line}")
    return result
