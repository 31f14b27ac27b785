"""Runs INSIDE the grading container: execute one notebook, print the outputs as signed JSON.

Shipped as the program text of ``python -c`` (so any course image with ipykernel can grade,
with no OneLab code installed in it); the payload arrives as one JSON document on stdin. It
drives the kernel with jupyter_client directly, the way nbclient does for nbgrader (one cell at
a time, errors allowed, streams merged, a per-cell time limit that interrupts the kernel), but
without nbformat and nbclient, whose imports alone cost more than a kernel start.

Arguments: the source of graders/guard.py, the kernel name.
Payload: {"key": hex, "notebook": {"cells": [{"cell_type", "source", "metadata"}...]},
          "files": {relpath: base64}, "cell_timeout": s, "notebook_timeout": s,
          "max_output_bytes": n, "verify": [indices of test cells],
          optional "max_written_files": n, "max_written_bytes": n}
Reply: one JSON line on stdout, {"result": {...}, "mac": HMAC-SHA256(key, result)}, where
          result = {"status": "ok" | "timeout" | "error", "reason": str, "seconds": s,
                    "cells": [{"outputs": [...], "execution_count": int | null, "executed": bool,
                               "verified": bool, "why": str, "completed": bool | null,
                               "value": "n:<number>" | "none" | "o:<type>" | "-" | "",
                               optional "stop": {"kind": str, "limit": n}}],
                    "files": {"written": {relpath: base64}, "left_out": [relpath...],
                              "left_out_count": n}}
          "files" are what the notebook created or changed in its work directory (as stock
          nbgrader leaves them beside the graded notebook), capped in count and bytes.
          "stop" is on the cell a limit stopped, as facts the host puts into words
          (graders/preprocessor.py STOP_MESSAGES, in the reader's language): kind "cell_timeout"
          (the cell was interrupted, the notebook went on), "cell_timeout_killed" (the kernel
          ignored the interrupt: nothing after it ran), "notebook_timeout", "memory" (the
          container's OOM killer ended the kernel; limit in bytes) or "kernel_died"; limit
          in seconds unless said. "reason" says the same in English (STOP_EN, kept equal to
          the host's words by tests/unit/test_stop_messages.py).

The learner's code runs in the kernel, a child of this process, and must not be able to forge
the reply: the kernel's stdout and stderr go to /dev/null (the reply goes to a private copy of
the real stdout), this process is made non-dumpable (no ptrace, no /proc/<pid>/fd or mem for the
same uid), and the reply is signed with a key only this process has seen. A test cell is
"verified" when the guard inside the kernel (graders/guard.py) attests that the kernel compiled
exactly the cell's source (after IPython's stock transforms) and executed it, untampered;
"completed" when the guard attests that IPython ran the cell to its end (no statement raised).
"""

import base64
import ctypes
import fcntl
import hashlib
import hmac
import json
import os
import queue
import signal
import stat
import sys
import time

# What the notebook wrote that comes back (graders/preprocessor.py SandboxedExecute enforces
# the same caps again on the host): well below the reply's own bound (sandbox.MAX_REPLY).
MAX_WRITTEN_FILES = 100
MAX_WRITTEN_BYTES = 20 * 1024 * 1024
MAX_SCANNED = 10_000  # files and folders looked at: a million of them end it soon
MAX_NAMED = 20  # left-out files named in the reply (the rest are counted)


class Attestations:
    """Signed records from the guard in the kernel, read from a pipe only this process has."""

    def __init__(self):
        self.key = b""
        self.key_r, self.key_w = os.pipe()
        self.rec_r, self.rec_w = os.pipe()
        fcntl.fcntl(self.rec_r, fcntl.F_SETFL, os.O_NONBLOCK)
        self.buffer = b""
        self.records = []  # (seq, kind, filename, digest, flags)
        self.seq = 0

    def kernel_fds(self):
        return (self.key_r, self.rec_w)

    def after_kernel_start(self):
        """In this process, once the kernel has its ends: the key is made only now, so a
        kernel forked from this process never had it in memory."""
        os.close(self.key_r)
        os.close(self.rec_w)
        self.key = os.urandom(32)
        os.write(self.key_w, self.key)
        os.close(self.key_w)

    def child_ends_only(self):
        """In the kernel: keep only the key's read end and the records' write end."""
        os.close(self.key_w)
        os.close(self.rec_r)

    def drain(self):
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


def N_(message):
    """Marks a message of OneLab's catalogue (onelab/i18n.py); the runner says it in English."""
    return message


# A notebook-wide stop in English words for "reason" (the runner has no other code with it):
# the same msgids as graders/preprocessor.py STOP_MESSAGES, whose Korean the host finds in the
# catalogue (this runs with the standard library only, so it has no catalogue of its own).
# {cell} is the cell's number as the learner sees it: its place in the notebook, from 1.
STOP_EN = {
    "cell_timeout_killed": N_("cell {cell} ran past its time limit of {limit} s and was "
                              "stopped; its kernel did not answer the interrupt, so the cells "
                              "after it did not run"),
    "notebook_timeout": N_("the notebook ran past its time limit of {limit} s and was stopped "
                           "in cell {cell}; the cells after it did not run"),
    "memory": N_("cell {cell} went over the memory limit of {limit} and was stopped; the cells "
                 "after it did not run"),
    "kernel_died": N_("the kernel died in cell {cell}: the notebook exited it, crashed it, or "
                      "went over its memory limit; the cells after it did not run"),
}


def human_bytes(n):
    """A memory limit as people write it: 512 MiB, 1.5 GiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def stop_reason(stop, index):
    """The English words for a stop fact on the cell at `index` (0-based)."""
    limit = stop.get("limit")
    if stop["kind"] == "memory":
        limit = human_bytes(limit)
    return STOP_EN[stop["kind"]].format(cell=index + 1, limit=limit)


def memory_cgroup():
    """(memory limit in bytes or None, OOM kills so far or None) of this container's cgroup,
    v2 or v1: whether the kernel that died was ended by the memory limit."""
    for events, limit_file in (("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory.max"),
                               ("/sys/fs/cgroup/memory/memory.oom_control",
                                "/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            with open(events) as fh:
                text = fh.read()
        except OSError:
            continue
        kills = None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                kills = int(value)
        limit = None
        try:
            with open(limit_file) as fh:
                raw = fh.read().strip()
            if raw.isdigit() and int(raw) < 1 << 60:  # v1 says "no limit" with a huge number
                limit = int(raw)
        except OSError:
            pass
        return limit, kills
    return None, None


def expected_digest(source):
    from IPython.core.inputtransformer2 import TransformerManager

    text = TransformerManager().transform_cell(source)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def verdict(records, source, marks=True):
    """(verified, why, completed, value) for one test cell from the records made while it ran.

    verified: the kernel compiled exactly this cell's source, once, and executed it, with
    nothing tampered. completed: IPython ran the cell's completion mark, i.e. no statement of
    the test raised (None when the guard could not install the mark: then the outputs decide,
    as in stock nbgrader). value: the last expression's value as the mark recorded it."""
    flagged = sorted({f for r in records for f in r[4]})
    if flagged:
        return False, "the notebook tampered with grading (" + ", ".join(flagged) + ")", False, ""
    want = expected_digest(source)
    compiled = [r for r in records if r[1] == "C"]
    matching = [r for r in compiled if r[3] == want]
    if not matching:
        if compiled:
            return False, "the kernel ran different code than this test cell", False, ""
        return False, "this test cell never ran", False, ""
    seq, _, cell_file, _, _ = matching[0]
    if len(matching) > 1 or sum(1 for r in compiled if r[2] == cell_file) > 1:
        return False, "this test cell was compiled more than once while it ran", False, ""
    if not any(r[1] == "X" and r[2] == cell_file for r in records):
        return False, "this test cell was compiled but never executed", False, ""
    if not marks:
        return True, "", None, ""
    done = [r for r in records if r[1] == "D" and r[2] == cell_file and r[0] > seq]
    if not done:
        return True, "", False, ""
    return True, "", True, done[-1][3]


def _read(fd, limit):
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def written_files(work, inputs, max_files, max_bytes):
    """The files the notebook created or changed under `work` (input files it left as they
    were do not go back), base64, capped in count and total size. Returns (written, left_out).

    Hidden files and folders are skipped, links are never followed (a link is skipped, so is
    anything not a regular file), and each file is opened without following a link in its last
    step: a process the notebook left behind cannot swap one in while this reads."""
    written, left_out, total, scanned = {}, [], 0, 0
    for root, dirs, names in os.walk(work, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = [n for n in sorted(names) if not n.startswith(".")]
        room = MAX_SCANNED - scanned - 1  # folders count too: a million empty ones end it
        scanned += 1 + len(names)
        full = scanned > MAX_SCANNED
        if full:
            left_out.append("...")
            names = names[:max(0, room)]
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, work).replace(os.sep, "/")
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # a link, or gone
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    continue
                data = None
                given = inputs.get(rel)
                if given is not None and info.st_size == given[1]:
                    data = _read(fd, given[1] + 1)
                    if hashlib.sha256(data).hexdigest() == given[0]:
                        continue  # an input file, unchanged
                if len(written) >= max_files or total + info.st_size > max_bytes:
                    left_out.append(rel)
                    continue
                if data is None:
                    data = _read(fd, max_bytes - total + 1)
            finally:
                os.close(fd)
            if total + len(data) > max_bytes:  # it grew while this read it
                left_out.append(rel)
                continue
            total += len(data)
            written[rel] = base64.b64encode(data).decode("ascii")
        if full:
            break
    return written, left_out


class Outputs:
    """Collects a cell's outputs as nbclient does: streams merged, clear_output honoured,
    display updates applied; past the notebook's output budget, output is cut."""

    def __init__(self, budget):
        self.budget = budget
        self.used = 0
        self.cut_cells = set()
        self.displays = {}  # display_id -> list of output dicts

    def add(self, cell, index, msg):
        kind, content = msg["msg_type"], msg["content"]
        state = cell.setdefault("_state", {"clear_on_next": False})
        if kind == "clear_output":
            if content.get("wait"):
                state["clear_on_next"] = True
            else:
                cell["outputs"] = []
            return
        if kind not in ("stream", "display_data", "execute_result", "error",
                        "update_display_data"):
            return
        size = len(json.dumps(content))
        if self.used + size > self.budget:
            if index not in self.cut_cells:
                self.cut_cells.add(index)
                cell["outputs"].append({"output_type": "stream", "name": "stdout",
                                        "text": "\n[OneLab: output cut here: more than "
                                                f"{self.budget} bytes]\n"})
            return
        self.used += size
        if state["clear_on_next"]:
            cell["outputs"] = []
            state["clear_on_next"] = False
        display_id = (content.get("transient") or {}).get("display_id")
        if kind == "update_display_data":
            for out in self.displays.get(display_id, []):
                out["data"], out["metadata"] = content.get("data", {}), content.get("metadata", {})
            return
        if kind == "stream":
            outs = cell["outputs"]
            if outs and outs[-1]["output_type"] == "stream" and outs[-1]["name"] == content["name"]:
                outs[-1]["text"] += content.get("text", "")
                return
            out = {"output_type": "stream", "name": content.get("name", "stdout"),
                   "text": content.get("text", "")}
        elif kind == "error":
            out = {"output_type": "error", "ename": content.get("ename", ""),
                   "evalue": content.get("evalue", ""), "traceback": content.get("traceback", [])}
        else:
            out = {"output_type": kind, "data": content.get("data", {}),
                   "metadata": content.get("metadata", {})}
            if kind == "execute_result":
                out["execution_count"] = content.get("execution_count")
        cell["outputs"].append(out)
        if display_id:
            self.displays.setdefault(display_id, []).append(out)


# Kernel names that mean this Python's IPython (jupyter_client treats "python" as "python3"):
# those are forked, ready in a fraction of the time a separately started kernel takes.
FORKABLE = ("python3", "python")


class ForkedKernel:
    """An IPython kernel forked from this process after ipykernel is imported: the kernel
    skips the interpreter start and the imports, and boots while the payload streams in.
    Forked before any secret exists here (no payload read, no key made), and the child closes
    every descriptor of ours but its two guard pipes."""

    def __init__(self, work, guard_file, att, reply_fd):
        # imported once here, shared with the forked kernel; the transformer is for verdict()
        import ipykernel.kernelapp  # noqa: F401
        from IPython.core import inputtransformer2  # noqa: F401
        from jupyter_client.connect import write_connection_file

        self.conn = os.path.join(os.path.dirname(work), ".kernel.json")
        write_connection_file(self.conn, ip="127.0.0.1", key=os.urandom(16).hex().encode())
        self.pid = os.fork()
        if self.pid == 0:  # the kernel
            try:
                # stdin still holds the unread payload with the reply key: not for the kernel
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.close(reply_fd)
                att.child_ends_only()
                os.chdir(work)
                os.environ["ONELAB_GUARD_FDS"] = "%d,%d" % att.kernel_fds()
                from ipykernel.kernelapp import IPKernelApp

                app = IPKernelApp.instance()
                # no debugger in a grading kernel: importing debugpy costs ~80 ms a kernel
                sys.modules["debugpy"] = None
                app.initialize(["-f", self.conn, "--HistoryManager.hist_file=:memory:",
                                f"--IPKernelApp.exec_files=['{guard_file}']"])
                del sys.modules["debugpy"]  # the notebook itself may still import it
                app.start()
            finally:
                os._exit(0)
        self.status = None

    def is_alive(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is None

    def interrupt_kernel(self):
        if self.is_alive():
            os.kill(self.pid, signal.SIGINT)

    def shutdown_kernel(self, now=True):
        if self.is_alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -9

    def client(self):
        from jupyter_client import BlockingKernelClient

        kc = BlockingKernelClient(connection_file=self.conn)
        kc.load_connection_file()
        return kc


class ManagedKernel:
    """Any other kernel (not this Python's IPython): started by jupyter_client as usual."""

    def __init__(self, name, work, guard_file, att):
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=name)
        self.km.start_kernel(
            extra_arguments=["--HistoryManager.hist_file=:memory:",
                             f"--IPKernelApp.exec_files=['{guard_file}']"],
            cwd=work, env=dict(os.environ, ONELAB_GUARD_FDS="%d,%d" % att.kernel_fds()),
            pass_fds=att.kernel_fds())
        self.is_alive = self.km.is_alive
        self.interrupt_kernel = self.km.interrupt_kernel
        self.shutdown_kernel = self.km.shutdown_kernel
        self.client = self.km.client


def wait_for_ready(km, kc, timeout):
    """Until the kernel answers kernel_info on shell and its iopub reaches us.

    jupyter_client's wait_for_ready also waits for heartbeats (0.2 s naps) for a kernel it did
    not start; here the kernel is our child, so being alive is a waitpid away."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg_id = kc.kernel_info()
        try:
            while True:
                reply = kc.get_shell_msg(timeout=1)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        except queue.Empty:
            if not km.is_alive():
                raise RuntimeError("the kernel died before it was ready")
            continue
        try:  # iopub subscribed? any message says so (ipykernel 7 greets a new subscriber)
            kc.get_iopub_msg(timeout=0.2)
            return
        except queue.Empty:
            continue
    raise RuntimeError(f"the kernel did not answer within {timeout} s")


def run_cell(km, kc, cell, index, outputs, cell_timeout, deadline):
    """Execute one cell; returns 'ok', 'timeout' (notebook limit) or 'dead' (kernel gone).

    Waits on the shell reply (outputs queue up on iopub meanwhile and are drained between
    waits), then reads iopub up to the cell's 'idle' status: no polling delay per cell."""
    msg_id = kc.execute(cell["source"], silent=False, store_history=True, allow_stdin=False,
                        stop_on_error=False)
    started = time.monotonic()
    interrupted = False

    def drain_iopub(wait):
        """Process iopub messages; True once this cell's 'idle' status was seen."""
        until = time.monotonic() + wait
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return False
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return True
            outputs.add(cell, index, msg)

    reply = None
    while reply is None:
        now = time.monotonic()
        if now > deadline:
            return "timeout"
        if not interrupted and now - started > cell_timeout:
            km.interrupt_kernel()
            interrupted = True
            # the host says so in the cell, in words (graders/preprocessor.py merge)
            cell["stop"] = {"kind": "cell_timeout", "limit": cell_timeout}
        if interrupted and now - started > cell_timeout + 10:
            return "dead"  # the kernel does not answer even an interrupt
        try:
            msg = kc.get_shell_msg(timeout=0.5)
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg["content"]
        except queue.Empty:
            drain_iopub(0)
            if not km.is_alive():
                return "dead"
    drain_iopub(5.0)
    cell["execution_count"] = reply.get("execution_count")
    if reply.get("status") == "error" and not any(
            o["output_type"] == "error" and o["ename"] == reply.get("ename")
            for o in cell["outputs"]):
        cell["outputs"].append({"output_type": "error", "ename": reply.get("ename", ""),
                                "evalue": reply.get("evalue", ""),
                                "traceback": reply.get("traceback", [])})
    return "ok"


def main():
    guard_source = sys.argv[1] if len(sys.argv) > 1 else ""
    kernel_name = sys.argv[2] if len(sys.argv) > 2 else "python3"
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
        fh.write(guard_source)
    att = Attestations()
    started = time.monotonic()
    marks = [("start", 0.0)]

    def mark(label):
        marks.append((label, round(time.monotonic() - started, 3)))

    status, reason = "ok", ""
    km = None
    try:
        if kernel_name in FORKABLE:
            km = ForkedKernel(work, guard_file, att, reply_fd)
        else:
            km = ManagedKernel(kernel_name, work, guard_file, att)
    except Exception as e:  # reported below, once the payload (and its key) is read
        status, reason = "error", f"the kernel did not start: {type(e).__name__}: {e}"
    att.after_kernel_start()
    mark("kernel started")
    kc = None
    if km is not None:
        try:  # ready before any input: a container started ahead waits here, kernel warm
            kc = km.client()
            kc.start_channels(hb=False)
            wait_for_ready(km, kc, timeout=60)
            mark("kernel ready")
        except Exception as e:  # reported below, once the payload (and its key) is read
            status, reason = "error", f"the kernel did not start: {type(e).__name__}: {e}"
            kc = None

    # Only now, with the kernel forked, does the payload (and the reply key) enter memory.
    raw = sys.stdin.buffer.read()
    if not raw.strip():  # a spare container nobody needed: end quietly
        if km is not None:
            km.shutdown_kernel(now=True)
        os._exit(0)
    payload = json.loads(raw.decode("utf-8"))
    begun = time.monotonic()  # the time limits count from here
    key = bytes.fromhex(payload.pop("key"))
    inputs = {}  # relpath -> (sha256, size): what the notebook finds; only changes go back
    for rel, b64 in payload.get("files", {}).items():
        dest = os.path.normpath(os.path.join(work, rel))
        if not dest.startswith(work + os.sep):
            continue  # never write outside the work directory
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        data = base64.b64decode(b64)
        with open(dest, "wb") as fh:
            fh.write(data)
        inputs[os.path.relpath(dest, work).replace(os.sep, "/")] = (
            hashlib.sha256(data).hexdigest(), len(data))
    verify = set(payload.get("verify", []))
    cells = payload["notebook"]["cells"]
    for cell in cells:
        cell["outputs"], cell["execution_count"] = [], None
        cell.pop("stop", None)  # only this runner says what stopped a cell
    outputs = Outputs(int(payload.get("max_output_bytes", 1_000_000)))
    cell_timeout = int(payload.get("cell_timeout", 30))
    notebook_timeout = int(payload.get("notebook_timeout", 300))
    deadline = begun + notebook_timeout
    _, oom_kills = memory_cgroup()
    executed, verdicts = set(), {}
    mark("payload read")

    try:
        if kc is None:
            raise RuntimeError(reason or "the kernel did not start")
        for i, cell in enumerate(cells):
            if cell.get("cell_type") != "code" or "skip-execution" in (
                    cell.get("metadata", {}).get("tags") or []):
                continue
            att.drain()
            start = len(att.records)
            outcome = run_cell(km, kc, cell, i, outputs, cell_timeout, deadline)
            if outcome == "timeout":
                status = "timeout"
                cell["stop"] = {"kind": "notebook_timeout", "limit": notebook_timeout}
                reason = stop_reason(cell["stop"], i)
                break
            if outcome == "dead":
                status = "error"
                limit, kills = memory_cgroup()
                if "stop" in cell:  # it ran past its limit and did not answer the interrupt
                    cell["stop"]["kind"] = "cell_timeout_killed"
                elif limit and kills is not None and oom_kills is not None and kills > oom_kills:
                    cell["stop"] = {"kind": "memory", "limit": limit}
                else:
                    cell["stop"] = {"kind": "kernel_died", "limit": None}
                reason = stop_reason(cell["stop"], i)
                break
            executed.add(i)
            mark(f"cell {i}")
            if i in verify:
                att.drain()
                earlier = [r for r in att.records[:start] if r[4]]
                with_mark = any(r[1] == "R" and r[3] == "mark" for r in att.records[:start])
                verdicts[i] = verdict(earlier + att.records[start:], cell["source"], with_mark)
    except Exception as e:  # a kernel that never answered, a broken notebook: say so
        status, reason = "error", f"{type(e).__name__}: {str(e)[:500]}"
    finally:
        try:
            if km is not None:
                km.shutdown_kernel(now=True)
        except Exception:
            pass
    mark("kernel stopped")
    try:
        written, left_out = written_files(
            work, inputs, int(payload.get("max_written_files", MAX_WRITTEN_FILES)),
            int(payload.get("max_written_bytes", MAX_WRITTEN_BYTES)))
    except Exception as e:  # the outputs still count
        written, left_out = {}, [f"(not collected: {type(e).__name__})"]
    files = {"written": written, "left_out": left_out[:MAX_NAMED],
             "left_out_count": len(left_out)}
    mark("files collected")
    none = (False, "this test cell never ran", False, "")
    out_cells = [{"outputs": c["outputs"], "execution_count": c["execution_count"],
                  "executed": i in executed,
                  "verified": verdicts.get(i, none)[0],
                  "why": verdicts.get(i, none)[1],
                  "completed": verdicts.get(i, none)[2],
                  "value": verdicts.get(i, none)[3],
                  **({"stop": c["stop"]} if "stop" in c else {})}
                 for i, c in enumerate(cells)]
    result = json.dumps({"status": status, "reason": reason, "cells": out_cells, "marks": marks,
                         "seconds": round(time.monotonic() - started, 3), "files": files})
    mac = hmac.new(key, result.encode(), hashlib.sha256).hexdigest()
    data = ('{"result": ' + result + ', "mac": "' + mac + '"}\n').encode()
    while data:
        data = data[os.write(reply_fd, data):]


main()
