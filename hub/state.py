"""The platform's state directory and the secrets it keeps there (mode 0600, owner only).

They are created once and reused, so a hub restart keeps cookies, the proxy's routes and the
admin token valid; nothing here is ever passed into a learner's container.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def ensure_state_dir(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    (state_dir / "logs").mkdir(exist_ok=True)
    return state_dir


def secret(state_dir: Path, name: str, nbytes: int = 32) -> str:
    """The named secret, made on first use; written atomically with mode 0600."""
    path = state_dir / name
    if path.exists():
        if path.stat().st_mode & 0o077:  # copied in, or restored, with a looser mode
            os.chmod(path, 0o600)
        value = path.read_text().strip()
        if value:
            return value
    ensure_state_dir(state_dir)
    value = secrets.token_hex(nbytes)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
    return value


def proxy_token(state_dir: Path) -> str:
    return secret(state_dir, "proxy-auth-token")


def admin_token(state_dir: Path) -> str:
    return secret(state_dir, "admin-api-token")


RUNTIME = "runtime.json"


def write_runtime(state_dir: Path, **values: object) -> None:
    """What `onelab up` decided for this start (the learner gateway, the formgraders' ports),
    written atomically for the hub's configuration to read."""
    import json

    tmp = state_dir / f".{RUNTIME}.tmp"
    tmp.write_text(json.dumps(values, indent=1))
    os.replace(tmp, state_dir / RUNTIME)


def read_runtime(state_dir: Path) -> dict:
    import json

    from onelab.errors import OneLabError

    try:
        return json.loads((state_dir / RUNTIME).read_text())
    except (OSError, ValueError):
        raise OneLabError(f"{state_dir / RUNTIME} is missing: start the platform with "
                          "`onelab up`, which prepares it") from None
