"""jupyterhub-idle-culler's configuration (`--config`, hub/services.py): a learner whose class
is warm (hub/warmup.py's file, named by ONELAB_WARM_FILE) is not culled until the class ends;
everyone else is culled as the culler always does. Plain Python, no OneLab imports: the culler
runs it as its own config file."""

import json
import os
import re
import time
from urllib.parse import unquote


def kept_warm(server: dict, path: str = "", now: float | None = None) -> bool:
    found = re.search(r"/user/([^/]+)/", server.get("url") or "")
    if not found:
        return False
    try:
        with open(path or os.environ.get("ONELAB_WARM_FILE", ""), encoding="utf-8") as fh:
            warm = json.load(fh)
    except (OSError, ValueError):
        return False
    until = warm.get(unquote(found.group(1))) if isinstance(warm, dict) else None
    return isinstance(until, (int, float)) and until > (time.time() if now is None else now)


def onelab_cull_arbiter(inactive, inactive_limit, server, **kwargs):
    if kept_warm(server):
        return False
    return inactive.total_seconds() >= inactive_limit


if "c" in globals():  # loaded by the culler as its config file
    c.IdleCuller.cull_arbiter_hook = onelab_cull_arbiter  # noqa: F821
