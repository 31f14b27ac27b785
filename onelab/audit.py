"""The audit log: who did what to whom, as staff and operators act on the platform.

One append-only file, ``<state_dir>/logs/audit.log`` (mode 0600, owner only), one JSON object
a line: ``time`` (UTC, ISO 8601), ``actor``, ``action``, ``target``, ``outcome`` and any
details. Three writers: the ``onelab`` command (actor: the operating-system user running it),
the hub (admin actions through its REST API, and the admin page, which uses that API) and the
course dashboard's buttons (actor: the staff member).

Never a secret: details whose names say password, token, secret, key or cookie are written as
``"[not logged]"``, and callers pass names, paths and counts, not request bodies or arguments.
Each line is one ``write`` on a file opened with ``O_APPEND``, so lines from the hub and a
command at the same moment do not interleave.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE = Path("logs") / "audit.log"
SECRET = re.compile(r"pass|token|secret|key|cookie|auth", re.IGNORECASE)
HIDDEN = "[not logged]"


def path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE


def os_actor() -> str:
    """Who runs this process: the effective user's name, and who became root with sudo."""
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        me = f"uid {os.geteuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (sudo as {me})" if sudo and sudo != me and os.geteuid() == 0 else me


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: HIDDEN if SECRET.search(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def line(actor: str, action: str, target: str, outcome: str, when: datetime | None = None,
         **details: Any) -> str:
    """One audit record as its JSON line (no newline)."""
    when = when or datetime.now(UTC)
    record = {"time": when.astimezone(UTC).isoformat(timespec="seconds"), "actor": str(actor),
              "action": str(action), "target": str(target), "outcome": str(outcome)}
    record.update({k: v for k, v in _clean(details).items() if k not in record})
    return json.dumps(record, ensure_ascii=False, sort_keys=False)


def record(state_dir: Path, actor: str, action: str, target: str, outcome: str,
           **details: Any) -> None:
    """Append one record to the state directory's audit log (made, mode 0600, if missing)."""
    file = path(state_dir)
    file.parent.mkdir(parents=True, exist_ok=True)
    data = (line(actor, action, target, outcome, **details) + "\n").encode("utf-8")
    fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def read(state_dir: Path) -> list[dict[str, Any]]:
    """Every record, oldest first (for tests and tools)."""
    try:
        text = path(state_dir).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]
