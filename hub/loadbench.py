"""`onelab bench load`: a class's worth of requests at the running hub at once.

N learners log in at the same moment through the real login form (as a browser does: the form's
page for its xsrf cookie, then the POST); then, again at one moment, each polls the REST API
with their own login cookie (``GET /hub/api/users/<self>`` and ``GET /hub/api/``) while K of
them start their servers (``POST /hub/api/users/<self>/server``) and wait until ready, then
reach it through the proxy. Every response is counted by status; the run passes when none is
a 5xx, every request got an answer, every login succeeded and every server came up. Alongside:
latency per kind of request, and the hub's and the proxy's CPU seconds and peak memory,
sampled from /proc while the run lasts.

The learners are local accounts made as ``onelab users add`` makes them (the account, then
the hub's user list), so a hub restart's roster sync keeps them; unless kept, they leave as
``onelab users remove --delete-home`` removes a user.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import requests

from hub import runtime
from hub.bench import at_once
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings

PREFIX = "load-"
"""Bench learners are load-01, load-02, ...: names no class list uses."""

KINDS = {
    "login_page": N_("login page"),
    "login": N_("login"),
    "api_user": N_("own user"),
    "api_status": N_("hub API"),
    "spawn": N_("start server"),
    "spawn_poll": N_("server state"),
    "server": N_("own server"),
}
"""Kinds of request, in the order they happen, with their label in the report."""

Gettext = Callable[[str], str]


@dataclass
class Recorder:
    """Every request of the run: its kind, status (None: no answer) and seconds."""

    samples: list[tuple[str, int | None, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, kind: str, http: requests.Session, method: str, url: str,
             **kw: Any) -> requests.Response | None:
        kw.setdefault("timeout", 120)
        kw.setdefault("allow_redirects", False)
        t = time.perf_counter()
        try:
            r: requests.Response | None = http.request(method, url, **kw)
        except requests.RequestException:
            r = None
        with self.lock:
            self.samples.append((kind, r.status_code if r is not None else None,
                                 time.perf_counter() - t))
        return r


# -- the hub's and the proxy's footprint, from /proc ------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    """Resident memory now (VmRSS), or the process's lifetime peak (VmHWM)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Watch:
    """Samples one process's resident memory until stopped; CPU seconds between start and
    stop. A process that ends (or restarts) meanwhile is reported as it was last seen."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.cpu0 = cpu_seconds(pid)
        self.rss0 = self.peak = self.last = rss_bytes(pid)
        self.cpu1 = self.cpu0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.last = rss_bytes(self.pid)
                self.cpu1 = cpu_seconds(self.pid)
            except OSError:
                return
            self.peak = max(self.peak, self.last)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        try:
            self.cpu1 = cpu_seconds(self.pid)
            self.last = rss_bytes(self.pid)
        except OSError:
            pass
        mib = 1024 * 1024
        return {"pid": self.pid, "cpu_s": round(self.cpu1 - self.cpu0, 2),
                "rss_start_mib": round(self.rss0 / mib, 1),
                "rss_peak_mib": round(max(self.peak, self.last) / mib, 1),
                "rss_end_mib": round(self.last / mib, 1)}


# -- the run ----------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _spread(values: list[float], scale: float = 1.0, digits: int = 1) -> dict[str, float]:
    return {"p50": round(statistics.median(values) * scale, digits),
            "p95": round(_pct(values, 0.95) * scale, digits),
            "max": round(max(values) * scale, digits)}


def _shares(total: int, users: int) -> list[int]:
    """`total` API calls dealt out to `users` learners as evenly as it goes."""
    return [total // users + (1 if i < total % users else 0) for i in range(users)]


def _make_learners(settings: Settings, names: list[str]) -> dict[str, str]:
    """Accounts with fresh passwords (an earlier --keep run's are taken over), on the hub's
    user list now; their servers from such a run stopped. Returns {name: password}."""
    from hub.accounts import Accounts, generate_password, list_on_hub
    from hub.state import admin_token
    from onelab.hubclient import Hub
    from onelab.tls import verify_for

    accounts = Accounts(settings.db_url, settings.auth.min_password_length)
    passwords = {n: generate_password() for n in names}
    for n, pw in passwords.items():
        accounts.add(n, pw, full_name="onelab bench load", replace=True)
    list_on_hub(settings, names)
    admin = Hub(settings.public_url, admin_token(settings.state_dir), verify=verify_for(settings))
    running = [u["name"] for u in admin.users()
               if u["name"] in passwords and (u.get("servers") or u.get("pending"))]
    with ThreadPoolExecutor(max(1, len(running))) as pool:
        list(pool.map(lambda n: admin.stop(n, wait=settings.spawner.start_timeout), running))
    return passwords


def remove_learners(settings: Settings, names: list[str]) -> list[str]:
    """Each bench learner removed for good (servers stopped together first); returns what went
    wrong, one line each."""
    from hub.accounts import remove_user
    from hub.state import admin_token
    from onelab.hubclient import Hub
    from onelab.tls import verify_for

    admin = Hub(settings.public_url, admin_token(settings.state_dir), verify=verify_for(settings))
    problems: list[str] = []

    def stop(name: str) -> None:
        try:
            admin.stop(name, wait=settings.spawner.start_timeout)
        except OneLabError as e:
            problems.append(f"{name}: {e}")

    running = [u["name"] for u in admin.users()
               if u["name"] in names and (u.get("servers") or u.get("pending"))]
    with ThreadPoolExecutor(max(1, len(running))) as pool:
        list(pool.map(stop, running))
    for name in names:
        try:
            remove_user(settings, name, delete_home=True, echo=lambda line: None)
        except OneLabError as e:
            problems.append(f"{name}: {e}")
    return problems


def bench_load(settings: Settings, users: int = 30, api_calls: int = 300, spawn: int = 10,
               keep: bool = False, prefix: str = PREFIX) -> dict[str, Any]:
    """Run the load against the running platform; returns the figures (see :func:`render`)."""
    if users < 1 or api_calls < 0 or not 0 <= spawn <= users:
        raise OneLabError(N_("--users must be at least 1, --api-calls at least 0 and --spawn "
                             "between 0 and --users"))
    if settings.auth.kind != "local":
        raise OneLabError(N_("onelab bench load logs learners in with local accounts; "
                             "auth.kind is {kind}"), kind=settings.auth.kind)
    from onelab.hubclient import Session
    from onelab.tls import verify_for

    url, verify = settings.public_url, verify_for(settings)
    try:
        requests.get(f"{url}hub/health", timeout=3, verify=verify).raise_for_status()
    except requests.RequestException:
        raise OneLabError(N_("no hub answers at {url}; run `onelab up --detach` first"),
                          url=url) from None
    running = runtime.status(settings)  # the pids, however the platform runs its processes
    pids = {name: running[name] for name in ("hub", "proxy")}
    names = [f"{prefix}{i:02d}" for i in range(1, users + 1)]
    passwords = _make_learners(settings, names)
    rec = Recorder()
    sessions = {n: Session(verify) for n in names}
    logged_in: set[str] = set()
    ready: dict[str, float] = {}
    failures: dict[str, str] = {}
    wait = settings.spawner.start_timeout + 300

    def login(name: str, t0: float) -> None:
        http = sessions[name]
        rec.call("login_page", http, "GET", f"{url}hub/login")
        r = rec.call("login", http, "POST", f"{url}hub/login", data={
            "username": name, "password": passwords[name],
            "_xsrf": http.cookies.get("_xsrf", "")})
        if r is not None and r.status_code in (302, 303) and any(
                c.name.startswith("jupyterhub-session-id") or c.name == "jupyterhub-hub-login"
                for c in http.cookies):
            logged_in.add(name)
        else:
            failures[name] = f"login: {r.status_code if r is not None else 'no answer'}"

    def learner(name: str, calls: int, start: bool, t0: float) -> None:
        http = sessions[name]
        http.headers["X-XSRFToken"] = http.cookies.get("_xsrf") or ""  # cookie-authenticated API
        me = f"{url}hub/api/users/{quote(name)}"
        if start:
            rec.call("spawn", http, "POST", f"{me}/server")
        for i in range(calls):
            if i % 2:
                rec.call("api_status", http, "GET", f"{url}hub/api/")
            else:
                rec.call("api_user", http, "GET", me)
        if not start:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            r = rec.call("spawn_poll", http, "GET", me)
            u = r.json() if r is not None and r.status_code == 200 else {}
            srv = (u.get("servers") or {}).get("")
            if srv and srv.get("ready"):
                ready[name] = time.monotonic() - t0
                rec.call("server", http, "GET", f"{url}user/{quote(name)}/api")
                return
            if u and not srv and not u.get("pending"):
                failures[name] = "server: not running and not starting (see the hub's log)"
                return
            time.sleep(0.5)
        failures[name] = f"server: not ready within {wait} s"

    watches = {name: Watch(pid) for name, pid in pids.items() if isinstance(pid, int)}
    started = time.strftime("%Y-%m-%d %H:%M")
    t_run = time.monotonic()
    login_s = at_once([partial(login, n) for n in names])
    active = [n for n in names if n in logged_in]
    shares = _shares(api_calls, max(1, len(active)))
    class_s = at_once([partial(learner, n, shares[i], i < spawn)
                       for i, n in enumerate(active)]) if active else 0.0
    total_s = time.monotonic() - t_run
    processes = {name: w.stop() for name, w in watches.items()}
    for http in sessions.values():
        http.close()
    cleanup = [] if keep else remove_learners(settings, names)

    requests_by_kind: dict[str, Any] = {}
    for kind in KINDS:
        mine = [(status, s) for k, status, s in rec.samples if k == kind]
        if mine:
            counts = Counter("none" if st is None else str(st) for st, _s in mine)
            requests_by_kind[kind] = {"count": len(mine), "statuses": dict(sorted(counts.items())),
                                      **_spread([s for _st, s in mine], 1000, 0)}
    server_errors = Counter(str(st) for _k, st, _s in rec.samples if st is not None and st >= 500)
    no_answer = sum(st is None for _k, st, _s in rec.samples)
    want_ready = min(spawn, len(active))
    passed = (not server_errors and not no_answer and len(logged_in) == users
              and len(ready) == want_ready)
    return {
        "url": url, "started": started, "users": users, "api_calls": api_calls, "spawn": spawn,
        "login_s": round(login_s, 2), "class_s": round(class_s, 2), "total_s": round(total_s, 2),
        "logins_ok": len(logged_in), "servers_ready": len(ready),
        "ready_s": _spread(list(ready.values())) if ready else None,
        "requests": requests_by_kind, "latency_unit": "ms",
        "server_errors": dict(sorted(server_errors.items())), "no_answer": no_answer,
        "failures": dict(sorted(failures.items())), "processes": processes,
        "kept": keep, "cleanup_problems": cleanup, "passed": passed,
    }


def _pad(text: str, width: int, right: bool = False) -> str:
    """`text` filled with spaces to `width` terminal columns (a Hangul syllable takes two)."""
    fill = " " * max(0, width - sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1
                                    for ch in text))
    return fill + text if right else text + fill


def render(result: dict[str, Any], _: Gettext = lambda text: text) -> list[str]:
    """The result as lines for a terminal, through the reader's `_`."""
    r = result
    lines = [f"onelab bench load --users {r['users']} --api-calls {r['api_calls']} "
             f"--spawn {r['spawn']}   ({r['started']}, {r['url']})",
             "  " + _pad(_("request"), 16) + _pad(_("count"), 6, right=True) + "  "
             + _pad(_("statuses"), 22) + "p50 ms".rjust(8) + "p95 ms".rjust(8)
             + "max ms".rjust(8)]
    for kind, row in r["requests"].items():
        statuses = " ".join(f"{st}x{n}" for st, n in row["statuses"].items())
        lines.append(f"  {_pad(_(KINDS[kind]), 16)}{row['count']:>6}  {statuses:<22}"
                     f"{row['p50']:>8.0f}{row['p95']:>8.0f}{row['max']:>8.0f}")
    lines.append("  " + _("logins: {ok} of {n} succeeded, all done in {seconds:.1f} s").format(
        ok=r["logins_ok"], n=r["users"], seconds=r["login_s"]))
    if r["spawn"]:
        spread = r["ready_s"] or {"p50": 0, "p95": 0, "max": 0}
        lines.append("  " + _("servers: {ok} of {n} ready; time to ready p50 {p50:.1f} s, p95 "
                              "{p95:.1f} s, max {max:.1f} s").format(
            ok=r["servers_ready"], n=r["spawn"], **spread))
    lines.append("  " + _("API calls and server starts: {seconds:.1f} s; whole run: "
                          "{total:.1f} s").format(seconds=r["class_s"], total=r["total_s"]))
    for name, p in r["processes"].items():
        lines.append("  " + _("{name} (pid {pid}): {cpu:.1f} CPU s; memory {start:.0f} MiB at "
                              "the start, {peak:.0f} MiB at most, {end:.0f} MiB at the end")
                     .format(name=name, pid=p["pid"], cpu=p["cpu_s"], start=p["rss_start_mib"],
                             peak=p["rss_peak_mib"], end=p["rss_end_mib"]))
    for name, why in r["failures"].items():
        lines.append("  " + _("FAILED {name}: {why}").format(name=name, why=why))
    for line in r["cleanup_problems"]:
        lines.append("  " + _("cleanup: {problem}").format(problem=line))
    if r["passed"]:
        lines.append(_("passed: no 5xx, every request answered"))
    else:
        errors = " ".join(f"{st}x{n}" for st, n in r["server_errors"].items()) or "0"
        lines.append(_("FAILED: 5xx responses {errors}; {none} request(s) without an answer; "
                       "{failed} learner(s) failed").format(
            errors=errors, none=r["no_answer"], failed=len(r["failures"])))
    return lines
