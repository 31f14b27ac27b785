"""`onelab bench spawn` on a single-node swarm next to plain Docker (docs/swarm.md): two
throwaway test platforms on this machine, one per backend, the same N learners each.

    .venv/bin/python docs/scripts/swarm_bench.py 10

The swarm is made for the run (`onelab swarm init`) and left again when it was not one."""

import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from onelab import dockerdoor
from tests.conftest import onelab, start_platform, stop_platform

n = sys.argv[1] if len(sys.argv) > 1 else "10"
root = pathlib.Path(tempfile.mkdtemp(prefix="onelab-swarm-bench-"))
was = dockerdoor.swarm_info().get("LocalNodeState")
if was != "active":
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONELAB_")}
    onelab("swarm", "init", env={**env, "ONELAB_STATE_DIR": str(root)})
try:
    for backend in ("docker", "swarm", "docker", "swarm"):
        p = start_platform(root / backend, ONELAB_SPAWNER__BACKEND=backend)
        try:
            r = p.cli("bench", "spawn", "--users", n, check=False, timeout=1800)
            print(f"$ onelab bench spawn --users {n}   (spawner.backend: {backend})", flush=True)
            print(r.stdout[:3000], r.stderr[-1500:], flush=True)
        finally:
            stop_platform(p)
finally:
    if was != "active":
        dockerdoor.client().swarm.leave(force=True)
