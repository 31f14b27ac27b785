"""Why a learner's work stopped, told to the learner (a Jupyter server extension in the image).

Two things end a learner's work without a word from JupyterLab beyond "the kernel died":

- the kernel ran past the container's memory limit and the kernel's OOM killer ended it (the
  server lives on; JupyterLab restarts the kernel). The container's memory cgroup counts these
  kills (``oom_kill`` in cgroup v2's ``memory.events``, v1's ``memory.oom_control``).
- the whole container ended: it ran out of memory, or it stopped by itself otherwise (the Docker
  Engine restarted, it crashed). The hub starts it again (its home is a volume, so every saved
  file is there) and passes ``ONELAB_NOTICE=oom <epoch seconds>`` (or ``stopped <epoch>``) to
  the new one (hub/spawner.py).

``GET onelab/api/notices`` answers ``{"oom_kills": n, "notices": [{"id", "text"}]}``; the
JupyterLab side (images/labextension) asks every few seconds and shows each new notice once,
in the learner's language (OneLab's catalogue, as the Assignments panel's words).
"""

import json
import os
import time
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from onelab_assignments import N_, language, translate
from tornado import web

CGROUP_FILES = (Path("/sys/fs/cgroup/memory.events"),  # cgroup v2
                Path("/sys/fs/cgroup/memory/memory.oom_control"))  # cgroup v1

KERNEL_OOM = N_("A kernel used more than this server's memory ({limit}) and was stopped. Your "
                "saved files are kept; the kernel's variables are gone. Restart the kernel and "
                "use less memory (smaller data or batches), then run the cells again.")
SERVER_OOM = N_("Your server ran out of memory ({limit}) at {time} and was started again. "
                "Every saved file is kept; notebooks' variables are gone: run the cells again. "
                "Unsaved changes since the last save could not be kept.")
SERVER_STOPPED = N_("Your server stopped unexpectedly at {time} (the platform's container "
                    "engine restarted, or the server failed) and was started again. Every saved "
                    "file is kept; notebooks' variables are gone: run the cells again.")


def oom_kills(files=CGROUP_FILES):
    """How many processes the OOM killer ended in this container so far (None: not known)."""
    for f in files:
        try:
            for line in f.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def memory_limit(environ=os.environ):
    """The container's memory limit in words (JupyterHub passes MEM_LIMIT in bytes)."""
    try:
        n = float(environ.get("MEM_LIMIT") or 0)
    except ValueError:
        n = 0
    if n <= 0:
        return "?"
    if n >= 2**30:
        return f"{n / 2**30:.1f}".removesuffix(".0") + " GiB"
    return f"{n / 2**20:.0f} MiB"


def notices(environ=os.environ, lang=None):
    """The server's own notice (the hub's ONELAB_NOTICE), in the learner's language."""
    _ = translate(lang or language())
    out = []
    kind, _sep, when = (environ.get("ONELAB_NOTICE") or "").partition(" ")
    try:
        at = time.strftime("%H:%M", time.localtime(int(when)))
    except ValueError:
        at = "?"
    if kind == "oom":
        out.append({"id": f"oom-{when}", "kind": "server-oom",
                    "text": _(SERVER_OOM).format(limit=memory_limit(environ), time=at)})
    elif kind == "stopped":
        out.append({"id": f"stopped-{when}", "kind": "server-stopped",
                    "text": _(SERVER_STOPPED).format(time=at)})
    return out


class NoticesHandler(APIHandler):
    @web.authenticated
    def get(self):
        _ = translate(language())
        self.finish(json.dumps({
            "oom_kills": oom_kills(), "notices": notices(),
            "kernel_oom": _(KERNEL_OOM).format(limit=memory_limit())}))
