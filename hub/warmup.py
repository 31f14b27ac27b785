"""Warm a class before the bell: its learners' servers started ahead of time, kept from the idle
culler until the class ends, and stopped afterwards with their homes kept.

- `onelab class warm COURSE [--users a,b] [--minutes N]` starts the servers through the hub's
  API (each with its own home, limits and GPU claim, as if the learner had pressed Start; the
  hub's admission control paces them) and shows progress until all are ready.
- `onelab class cool COURSE [--users a,b]` stops them; the home volumes stay.
- A course's `sessions:` (course.yml) warm by themselves `classes.warm_before` seconds ahead:
  the scheduler (hub/warmup_service.py, a hub-managed service) calls :func:`warm` once per
  session, until its end.
- The idle culler leaves a warmed learner's server alone until then: its arbiter
  (hub/culler_config.py) reads the same file this module writes.

The file ``<state_dir>/class-warm.json`` maps each warmed learner to the epoch second until which
their server is kept warm. It is replaced atomically; a missing or broken file means nobody.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from onelab.course import Course, Session
from onelab.errors import OneLabError
from onelab.i18n import N_
from onelab.settings import Settings

WARM_FILE = "class-warm.json"
SESSIONS_FILE = "class-sessions.json"
"""Sessions the scheduler has warmed already ({"<course>@<start>": epoch}), so a restarted
scheduler does not warm a class its instructor has cooled since."""

Echo = Callable[[str], None]

NO_COURSE = N_("no course {course} (courses: {known})")
NOT_LEARNERS = N_("{names}: not learners of {course}")
NO_LEARNERS = N_("course {course} has no learners to warm")


def warm_file(settings: Settings) -> Path:
    return settings.state_dir / WARM_FILE


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True)
    os.replace(tmp, path)


def keep_warm(path: Path, names: list[str], until: float) -> None:
    """Keep `names` warm until `until` (a later time already set stays)."""
    data = {k: float(v) for k, v in read_json(path).items() if isinstance(v, (int, float))}
    now = time.time()
    data = {k: v for k, v in data.items() if v > now}  # the past goes
    for n in names:
        data[n] = max(data.get(n, 0.0), until)
    write_json(path, data)


def let_go(path: Path, names: list[str]) -> None:
    data = read_json(path)
    write_json(path, {k: v for k, v in data.items() if k not in names})


def is_warm(path: Path, name: str, now: float | None = None) -> bool:
    until = read_json(path).get(name)
    return isinstance(until, (int, float)) and until > (time.time() if now is None else now)


def class_learners(settings: Settings, course_id: str, users: list[str] | None) -> list[str]:
    """The course's learners (or the named ones, each checked to be one)."""
    from hub.courses import course_specs

    courses = {c.id: c for c in course_specs(settings)}
    if course_id not in courses:
        raise OneLabError(NO_COURSE, course=course_id, known=", ".join(sorted(courses)))
    learners = courses[course_id].all_learners()
    if users:
        strangers = [u for u in users if u not in learners]
        if strangers:
            raise OneLabError(NOT_LEARNERS, names=", ".join(strangers), course=course_id)
        return list(dict.fromkeys(users))
    if not learners:
        raise OneLabError(NO_LEARNERS, course=course_id)
    return learners


@dataclass
class Outcome:
    ready: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _hub(settings: Settings):  # type: ignore[no-untyped-def]
    from hub.state import admin_token
    from onelab.hubclient import Hub
    from onelab.tls import verify_for

    return Hub(settings.public_url, admin_token(settings.state_dir), verify=verify_for(settings))


def _server(user: dict | None) -> dict:
    return ((user or {}).get("servers") or {}).get("", {}) or {}


def warm(settings: Settings, course_id: str, users: list[str] | None = None,
         until: float | None = None, echo: Echo = print, timeout: float | None = None
         ) -> Outcome:
    """Start the class's servers (those not running yet) and wait until each is ready or has
    failed; they stay warm until `until` (default: now + classes.warm_for)."""
    names = class_learners(settings, course_id, users)
    return warm_users(settings, names, course_id, until, echo, timeout)


def warm_users(settings: Settings, names: list[str], label: str, until: float | None = None,
               echo: Echo = print, timeout: float | None = None) -> Outcome:
    """`warm` for a list of hub users (`onelab bench class --warm` warms its own)."""
    hub = _hub(settings)
    started = time.monotonic()
    keep_warm(warm_file(settings), names, until or time.time() + settings.classes.warm_for)
    hub.add_users(names)  # a learner the hub has not seen yet (no login so far)
    for n in names:
        if not _server(hub.user(n)).get("ready"):
            hub.start(n)
    limit = timeout or settings.spawner.start_timeout + settings.spawner.queue_wait_limit
    out, said = Outcome(), -1
    waiting = set(names)
    while waiting and time.monotonic() - started < limit:
        for n in sorted(waiting):
            u = hub.user(n) or {}
            srv = _server(u)
            if srv.get("ready"):
                out.ready.append(n)
                waiting.discard(n)
            elif not srv and not u.get("pending"):
                out.failed[n] = "the start failed (see the hub's log)"
                waiting.discard(n)
        if len(out.ready) != said:
            said = len(out.ready)
            echo(f"warm {label}: {said}/{len(names)} ready "
                 f"({time.monotonic() - started:.0f} s)")
        if waiting:
            time.sleep(1)
    for n in waiting:
        out.failed[n] = f"not ready within {limit:.0f} s"
    out.seconds = time.monotonic() - started
    return out


def cool(settings: Settings, course_id: str, users: list[str] | None = None,
         echo: Echo = print, timeout: float = 300) -> list[str]:
    """Stop the class's running servers (homes stay) and let the culler have them again;
    the names stopped."""
    names = class_learners(settings, course_id, users)
    hub = _hub(settings)
    let_go(warm_file(settings), names)
    running = [n for n in names if _server(hub.user(n))]
    for n in running:
        hub.api("DELETE", f"users/{n}/server", ok=(202, 204, 400))
    deadline = time.monotonic() + timeout
    left = set(running)
    def stopping(user: dict | None) -> bool:
        return bool(_server(user) or (user or {}).get("pending"))

    while left and time.monotonic() < deadline:
        left = {n for n in left if stopping(hub.user(n))}
        if left:
            time.sleep(1)
    if left:
        raise OneLabError(N_("{names}: not stopped within {seconds} s"),
                          names=", ".join(sorted(left)), seconds=int(timeout))
    echo(f"cool {course_id}: {len(running)} server(s) stopped, homes kept")
    return running


def due_sessions(courses: list[Course], now: datetime, before: float
                 ) -> list[tuple[Course, Session]]:
    """The sessions to be warm at `now`: from `before` seconds ahead of their start to their
    end."""
    out = []
    for c in courses:
        for s in c.sessions:
            if s.start.timestamp() - before <= now.timestamp() < s.end.timestamp():
                out.append((c, s))
    return out


def session_key(course: Course, session: Session) -> str:
    return f"{course.id}@{session.start.isoformat()}"


def warm_due_sessions(settings: Settings, echo: Echo, now: datetime | None = None
                      ) -> list[str]:
    """Warm each session that is due and not warmed yet; the keys warmed."""
    from datetime import UTC

    from hub.courses import course_specs

    now = now or datetime.now(UTC)
    done_path = settings.state_dir / SESSIONS_FILE
    done = read_json(done_path)
    warmed = []
    for course, session in due_sessions(course_specs(settings), now,
                                        settings.classes.warm_before):
        key = session_key(course, session)
        if key in done or not course.all_learners():
            continue
        echo(f"session {key}: warming {course.id} until {session.end.isoformat()}")
        out = warm(settings, course.id, until=session.end.timestamp(), echo=echo)
        done[key] = time.time()
        write_json(done_path, done)
        if out.failed:
            echo(f"session {key}: not ready: {out.failed}")
        warmed.append(key)
    return warmed
