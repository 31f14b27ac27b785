"""Execute one submitted notebook in a fresh, locked-down container of the course image.

The container has no network, a read-only root file system, a non-root user, memory/CPU/pids
limits, a size-limited tmpfs as its only writable place, no secrets in its environment and
none of the host's files: the notebook and that submission's other files go in on stdin, the
outputs come back on stdout as signed JSON (graders/incontainer.py). It is always removed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

from graders.execution import Execution
from onelab import dockerdoor
from onelab.settings import GradingLimits

RUNNER = (Path(__file__).parent / "incontainer.py").read_text()
GUARD = (Path(__file__).parent / "guard.py").read_text()
MAX_REPLY = 64 * 1024 * 1024  # bytes read back at most; outputs are cut well before inside
GRADER_UID = "1000:1000"
RUN_LABEL = "onelab.grade-run"


# Where a grading container may write (its only writable place), and the environment its
# Python and Jupyter need to live there.
SCRATCH_ENV = (("HOME", "/scratch"), ("JUPYTER_RUNTIME_DIR", "/scratch/.runtime"),
               ("MPLCONFIGDIR", "/scratch/.mpl"), ("IPYTHONDIR", "/scratch/.ipython"),
               ("PYTHONDONTWRITEBYTECODE", "1"), ("TMPDIR", "/scratch"))


def policy(name: str, image: str, limits: GradingLimits, kernel: str = "python3", *,
           cpuset: str = "", run: str = "") -> dockerdoor.Policy:
    """The grading container: no network, read-only, non-root, limits, fed on stdin.
    `cpuset` pins it to cores (a hard CPU limit that never throttles mid-burst); `run` labels
    it with the grading run it belongs to."""
    return dockerdoor.Policy(
        role="grader", image=image, name=name, user=GRADER_UID,
        entrypoint=("python",), command=("-c", RUNNER, GUARD, kernel),
        environment=SCRATCH_ENV, workdir="/scratch",
        memory=limits.memory, cpus=limits.cpus, cpuset=cpuset, pids=limits.pids,
        gpus=limits.gpus,
        tmpfs=(("/scratch", f"size={limits.scratch},uid=1000,gid=1000,mode=700"),),
        labels=((RUN_LABEL, run),) if run else (),
        stdin=True, logs=False)


def docker_args(name: str, image: str, limits: GradingLimits, kernel: str = "python3", *,
                cpuset: str = "", run: str = "") -> list[str]:
    return dockerdoor.run_args(policy(name, image, limits, kernel, cpuset=cpuset, run=run))


def _parse(raw: bytes, key: bytes) -> dict[str, Any] | None:
    line = raw.strip().rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    head, sep, tail = line.rpartition(', "mac": "')
    if not sep or not head.startswith('{"result": '):
        return None
    result, mac = head[len('{"result": '):], tail.rstrip('"}')
    want = hmac.new(key, result.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, mac):
        return None
    return json.loads(result)


_SPARE: dict[tuple[str, str, str, str, str], dockerdoor.PipedContainer] = {}


def _start(image: str, limits: str, kernel: str, cpuset: str, run: str
           ) -> dockerdoor.PipedContainer:
    name = f"onelab-grade-{secrets.token_hex(6)}"
    args = docker_args(name, image, GradingLimits.model_validate_json(limits), kernel,
                       cpuset=cpuset, run=run)
    return dockerdoor.PipedContainer(args, name, max_output=MAX_REPLY)


def execute(nb: dict[str, Any], files: dict[str, bytes], image: str, limits: GradingLimits,
            kernel: str = "python3", verify: list[int] | None = None,
            prestart: bool = False, cpuset: str = "", run: str = "") -> Execution:
    """Run the notebook; `verify` lists the test cells whose execution must be attested.

    With `prestart`, the container for this process's next notebook starts now and boots (its
    kernel ready, no submission in it) while this one runs: a fresh container per submission,
    without waiting for one. A spare left over ends by itself when this process does."""
    key = secrets.token_bytes(32)
    payload = json.dumps({
        "key": key.hex(), "notebook": nb,
        "files": {k: base64.b64encode(v).decode() for k, v in files.items()},
        "cell_timeout": limits.cell_timeout, "notebook_timeout": limits.notebook_timeout,
        "max_output_bytes": limits.max_output_bytes, "verify": verify or [],
    }).encode()
    started = time.monotonic()
    spec = (image, limits.model_dump_json(), kernel, cpuset, run)
    box = _SPARE.pop(spec, None) or _start(*spec)
    for other in list(_SPARE):  # a spare for other limits will not be used
        _SPARE.pop(other).abandon()
    if prestart:
        _SPARE[spec] = _start(*spec)
    done = box.finish(payload, timeout=limits.notebook_timeout + 60)
    elapsed = time.monotonic() - started
    reply = _parse(done.stdout, key) if done.stdout else None
    if reply is not None:
        return Execution(reply["status"], reply.get("reason", ""), reply["cells"], elapsed,
                         done.stderr, reply.get("marks", []), reply.get("files") or {})
    # the words are the pipeline's (graders/preprocessor.py STOP_MESSAGES, with their Korean)
    from graders.preprocessor import stop_words

    if done.timed_out:  # the runner gets 60 s more than the notebook to reply
        reason = stop_words("notebook_timeout_whole", limit=limits.notebook_timeout)
    elif done.oom_killed or done.exit_code == 137:
        reason = stop_words("memory_whole", limit=limits.memory)
    elif done.truncated:
        reason = "the grader's reply was too large"
    else:
        reason = (f"the grading container ended without a result (exit {done.exit_code}): the "
                  "notebook may have killed its grader")
    return Execution("crashed", reason, [], elapsed, done.stderr)
