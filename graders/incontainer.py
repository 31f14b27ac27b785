"""Runs INSIDE the grading container: execute one notebook, print the outputs as JSON.

Shipped as the program text of ``python -c`` (so any course image with ipykernel and nbclient
can grade, with no OneLab code installed in it); the payload arrives as one JSON document on
stdin. Only the standard library and nbclient are used. Nothing here is trusted by the grader
outside: it takes outputs and execution counts from the reply, checked, and nothing else.

Payload: {"key": hex, "notebook": nbformat-v4 dict, "files": {relpath: base64},
          "cell_timeout": s, "notebook_timeout": s, "max_output_bytes": n, "kernel": "python3"}
Reply: one JSON line on stdout, {"result": {...}, "mac": HMAC-SHA256(key, result)}, where
          result = {"status": "ok" | "timeout" | "error", "reason": str, "seconds": s,
                    "cells": [{"outputs": [...], "execution_count": int | null, "executed": bool}]}

The learner's code runs in the kernel, a child of this process. It must not be able to forge
the reply: the kernel's stdout and stderr go to /dev/null (the reply goes to a private copy of
the real stdout), this process is made non-dumpable (no ptrace, no /proc/<pid>/fd or mem for
the same uid), and the reply is signed with a key that only this process has seen.
"""

import base64
import ctypes
import hashlib
import hmac
import json
import os
import signal
import sys
import time


def main() -> None:
    payload = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    key = bytes.fromhex(payload.pop("key"))
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:
        pass
    reply_fd = os.dup(1)  # not inherited by children (close-on-exec)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    work = os.path.join(os.environ.get("HOME", "/scratch"), "work")
    os.makedirs(work, exist_ok=True)
    for rel, b64 in payload.get("files", {}).items():
        dest = os.path.normpath(os.path.join(work, rel))
        if not dest.startswith(work + os.sep):
            continue  # never write outside the work directory
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as fh:
            fh.write(base64.b64decode(b64))

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.reads(json.dumps(payload["notebook"]), as_version=4)
    budget = int(payload.get("max_output_bytes", 1_000_000))
    state = {"used": 0, "cut": set()}

    class Client(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):  # noqa: D401 - nbclient hook
            size = len(json.dumps(msg.get("content", {})))
            if state["used"] + size > budget:
                if cell_index not in state["cut"]:
                    state["cut"].add(cell_index)
                    outs.append(nbformat.v4.new_output(
                        "stream", name="stdout",
                        text=f"\n[OneLab: output cut here: more than {budget} bytes]\n"))
                return None
            state["used"] += size
            return super().output(outs, msg, display_id, cell_index)

    client = Client(
        nb, timeout=int(payload.get("cell_timeout", 30)), allow_errors=True,
        kernel_name=payload.get("kernel", "python3"), interrupt_on_timeout=True,
        record_timing=False, resources={"metadata": {"path": work}},
        extra_arguments=["--HistoryManager.hist_file=:memory:"],
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                          "traceback": ["CellTimeoutError: the cell ran past its time limit"]},
    )
    executed = set()
    original = client.async_execute_cell

    async def tracking(cell, cell_index, *args, **kwargs):
        result = await original(cell, cell_index, *args, **kwargs)
        executed.add(cell_index)
        return result

    client.async_execute_cell = tracking
    status, reason = "ok", ""

    def on_alarm(signum, frame):
        raise TimeoutError("notebook time limit")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(payload.get("notebook_timeout", 300)))
    started = time.monotonic()
    try:
        client.execute()
    except TimeoutError:
        status, reason = "timeout", (
            f"the notebook ran past its time limit ({payload.get('notebook_timeout', 300)} s)")
    except Exception as e:  # a dead kernel, a broken notebook: report, never crash silently
        status, reason = "error", f"{type(e).__name__}: {str(e)[:500]}"
    finally:
        signal.alarm(0)
        try:
            if client.km is not None:
                client.km.shutdown_kernel(now=True)
        except Exception:
            pass
    cells = [{"outputs": c.get("outputs", []) if c.cell_type == "code" else [],
              "execution_count": c.get("execution_count") if c.cell_type == "code" else None,
              "executed": i in executed}
             for i, c in enumerate(nb.cells)]
    result = json.dumps({"status": status, "reason": reason, "cells": cells,
                         "seconds": round(time.monotonic() - started, 3)})
    mac = hmac.new(key, result.encode(), hashlib.sha256).hexdigest()
    data = ('{"result": ' + result + ', "mac": "' + mac + '"}\n').encode()
    while data:
        data = data[os.write(reply_fd, data):]


main()
