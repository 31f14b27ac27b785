"""Runs INSIDE the grading container: execute one notebook, print the outputs as JSON.

Shipped as the program text of ``python -c`` (so any course image with ipykernel and nbclient
can grade, with no OneLab code installed in it); the payload arrives as one JSON document on
stdin. Only the standard library and nbclient are used. Nothing here is trusted by the grader
outside: it takes outputs and execution counts from the reply, checked, and nothing else.

Payload: {"key": hex, "notebook": nbformat-v4 dict, "files": {relpath: base64},
          "cell_timeout": s, "notebook_timeout": s, "max_output_bytes": n, "kernel": "python3",
          "guard": source of graders/guard.py, "verify": [indices of test cells]}
Reply: one JSON line on stdout, {"result": {...}, "mac": HMAC-SHA256(key, result)}, where
          result = {"status": "ok" | "timeout" | "error", "reason": str, "seconds": s,
                    "cells": [{"outputs": [...], "execution_count": int | null, "executed": bool,
                               "verified": bool, "why": str}]}

A test cell is "verified" when the guard inside the kernel (graders/guard.py) attests that the
kernel compiled exactly the cell's source (after IPython's stock transforms) and executed it,
with nothing tampered with; see that module.

The learner's code runs in the kernel, a child of this process. It must not be able to forge
the reply: the kernel's stdout and stderr go to /dev/null (the reply goes to a private copy of
the real stdout), this process is made non-dumpable (no ptrace, no /proc/<pid>/fd or mem for
the same uid), and the reply is signed with a key that only this process has seen.
"""

import base64
import ctypes
import fcntl
import hashlib
import hmac
import json
import os
import signal
import sys
import time


class Attestations:
    """Signed records from the guard in the kernel, read from a pipe only this process has."""

    def __init__(self) -> None:
        self.key = os.urandom(32)
        self.key_r, key_w = os.pipe()
        os.write(key_w, self.key)
        os.close(key_w)
        self.rec_r, self.rec_w = os.pipe()
        fcntl.fcntl(self.rec_r, fcntl.F_SETFL, os.O_NONBLOCK)
        self.buffer = b""
        self.records = []  # (seq, kind, filename, digest, flags)
        self.seq = 0

    def kernel_fds(self):
        return (self.key_r, self.rec_w)

    def after_kernel_start(self) -> None:
        os.close(self.key_r)
        os.close(self.rec_w)

    def drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.rec_r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buffer += chunk
            if len(self.buffer) > 4 * 1024 * 1024:
                self.buffer = b""
                self.records.append((-1, "!", "", "", ["flooded"]))
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            msg, _, mac = line.rpartition(b"|")
            want = hmac.new(self.key, msg, hashlib.sha256).hexdigest().encode()
            if not msg or not hmac.compare_digest(want, mac):
                continue  # forged or garbled: ignored
            parts = msg.decode("utf-8", "surrogatepass").split("|")
            if len(parts) != 5 or int(parts[0]) <= self.seq:
                continue  # replayed or out of order
            self.seq = int(parts[0])
            self.records.append((self.seq, parts[1], parts[2], parts[3],
                                 [f for f in parts[4].split(",") if f]))


def expected_digest(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    text = TransformerManager().transform_cell(source)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def verdict(records, source: str):
    """(verified, why) for one test cell from the records made while it ran."""
    flagged = sorted({f for r in records for f in r[4]})
    if flagged:
        return False, "the notebook tampered with grading (" + ", ".join(flagged) + ")"
    want = expected_digest(source)
    compiled = [r for r in records if r[1] == "C"]
    if not any(r[3] == want for r in compiled):
        if compiled:
            return False, "the kernel ran different code than this test cell"
        return False, "this test cell never ran"
    files = {r[2] for r in compiled if r[3] == want}
    if not any(r[1] == "X" and r[2] in files for r in records):
        return False, "this test cell was compiled but never executed"
    return True, ""


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
    home = os.environ.get("HOME", "/scratch")
    work = os.path.join(home, "work")
    os.makedirs(work, exist_ok=True)
    guard_file = os.path.join(home, ".onelab-guard.py")
    with open(guard_file, "w") as fh:
        fh.write(payload.get("guard", ""))
    verify = set(payload.get("verify", []))
    att = Attestations()
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
        extra_arguments=["--HistoryManager.hist_file=:memory:",
                         f"--IPKernelApp.exec_files=['{guard_file}']"],
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                          "traceback": ["CellTimeoutError: the cell ran past its time limit"]},
    )
    executed = set()
    verdicts = {}
    original = client.async_execute_cell

    async def tracking(cell, cell_index, *args, **kwargs):
        att.drain()
        start = len(att.records)
        began = time.monotonic()
        result = await original(cell, cell_index, *args, **kwargs)
        if time.monotonic() - began >= client.timeout:
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stderr",
                text=f"[OneLab: this cell ran past its time limit of {client.timeout} s "
                     "and was stopped]\n"))
        executed.add(cell_index)
        att.drain()
        if cell_index in verify:
            # tampering seen at any point before this test also voids it
            earlier_flags = [r for r in att.records[:start] if r[4]]
            verdicts[cell_index] = verdict(earlier_flags + att.records[start:], cell.source)
        return result

    client.async_execute_cell = tracking
    status, reason = "ok", ""

    def on_alarm(signum, frame):
        raise TimeoutError("notebook time limit")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(payload.get("notebook_timeout", 300)))
    started = time.monotonic()
    env = dict(os.environ, ONELAB_GUARD_FDS="%d,%d" % att.kernel_fds())
    original_start = client.async_start_new_kernel

    async def start_kernel(**kw):
        result = await original_start(env=env, pass_fds=att.kernel_fds(), **kw)
        att.after_kernel_start()
        return result

    client.async_start_new_kernel = start_kernel
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
              "executed": i in executed,
              "verified": verdicts.get(i, (False, ""))[0],
              "why": verdicts.get(i, (False, "this test cell never ran"))[1]}
             for i, c in enumerate(nb.cells)]
    result = json.dumps({"status": status, "reason": reason, "cells": cells,
                         "seconds": round(time.monotonic() - started, 3)})
    mac = hmac.new(key, result.encode(), hashlib.sha256).hexdigest()
    data = ('{"result": ' + result + ', "mac": "' + mac + '"}\n').encode()
    while data:
        data = data[os.write(reply_fd, data):]


main()
