"""Where a cold class's CPU goes (docs/benchmarks.md): a throwaway test platform, then
`onelab bench class --users N` while every process's CPU time on the host is sampled and summed
by component (learner servers, their kernels, the hub, the proxy, Docker, ...).

    .venv/bin/python docs/scripts/class_cpu.py 10 ONELAB_SPAWNER__PREWARM='["numpy", "pandas", "torch"]'

Arguments: N, then settings as NAME=VALUE environment variables for the platform."""

import collections
import os
import pathlib
import sys
import tempfile
import threading
import time

import psutil

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from tests.conftest import start_platform, stop_platform


def component(proc: psutil.Process) -> str | None:
    try:
        cmd, name = " ".join(proc.cmdline())[:300], proc.name()
    except psutil.Error:
        return None
    if proc.pid == os.getpid():
        return "other (this sampler, the machine's agents)"
    if "ipykernel" in cmd:
        return "learner kernels"
    if "jupyterhub-singleuser" in cmd:
        return "learner servers"
    if "configurable-http-proxy" in cmd:
        return "proxy"
    if "bench" in cmd and "class" in cmd:
        return "bench client (logins, sessions)"
    if "jupyterhub" in cmd and "idle" not in cmd:
        return "hub"
    if name.startswith(("dockerd", "containerd", "runc", "docker")):
        return "docker engine (dockerd, containerd, shims, runc)"
    return "other (this sampler, the machine's agents)"


def main() -> None:
    n = sys.argv[1]
    extra = {"ONELAB_SPAWNER__MEM_LIMIT": "2G"}
    extra.update(kv.split("=", 1) for kv in sys.argv[2:])
    p = start_platform(pathlib.Path(tempfile.mkdtemp(prefix="onelab-class-cpu-")), **extra)
    seen: dict[tuple[int, float], list] = {}  # (pid, started) -> [component, cpu at first, last]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for proc in psutil.process_iter():
                try:
                    t = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    seen.setdefault(key, [component(proc), t.user + t.system, 0.0])[2] = \
                        t.user + t.system
                except psutil.Error:
                    pass
            time.sleep(0.2)

    try:
        threading.Thread(target=sample, daemon=True).start()
        time.sleep(1)
        before = {k: v[2] for k, v in seen.items()}
        c0 = psutil.cpu_times()
        r = p.cli("bench", "class", "--users", n, check=False, timeout=1800)
        c1 = psutil.cpu_times()
        done.set()
        print(r.stdout[-3000:], r.stderr[-2000:])
        by = collections.Counter()
        for k, (what, _, last) in seen.items():
            by[what or "other (this sampler, the machine's agents)"] += last - before.get(k, 0.0)
        busy = sum(getattr(c1, f) - getattr(c0, f) for f in ("user", "system", "nice", "irq",
                                                             "softirq"))
        print(f"host CPU busy {busy:.1f} s for {n} learners (bench and its cleanup)")
        for what, s in by.most_common():
            print(f"{s:8.1f} s  {s / int(n):5.2f} s per learner  {what}")
        print(f"{busy - sum(by.values()):8.1f} s  not sampled (short-lived processes, kernel)")
    finally:
        stop_platform(p)


main()
