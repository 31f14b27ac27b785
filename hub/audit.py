"""The hub's entries in the audit log (onelab/audit.py): admin actions through its REST API.

The admin page and ``onelab users`` act through the same API, so one hook sees them all:
Tornado's ``log_function``, which runs once each request has been answered. It chains
JupyterHub's own request log and then records every changing request (not GET/HEAD/OPTIONS)
under ``/hub/api/`` made by an admin or a service, or by anyone acting on another user (an
instructor starting a learner's server): user created, deleted or changed (the admin flag),
servers started and stopped, tokens made or revoked, groups and the rest by method and path.
A user's own server reporting activity, and OAuth's token exchanges, are not admin actions.

Only the path (never the query, which may carry ``?token=``), the status, the client address
and, for user changes, the names and admin flag from the body are written.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote

from traitlets.config import Config

from hub.lockout import client_address
from onelab import audit
from onelab.settings import Settings

log = logging.getLogger("onelab.audit")
READS = ("GET", "HEAD", "OPTIONS")
NOT_ADMIN = ("oauth2", "authorizations")
"""API paths (their first part) that are login plumbing, not actions."""
USER_ACTIONS = {"POST": "hub.user.create", "DELETE": "hub.user.delete",
                "PATCH": "hub.user.modify"}
SERVER_ACTIONS = {"POST": "hub.server.start", "DELETE": "hub.server.stop"}
TOKEN_ACTIONS = {"POST": "hub.token.create", "DELETE": "hub.token.revoke"}


def api_action(method: str, path: str, base_url: str = "/") -> tuple[str, str, str | None] | None:
    """(action, target, the user acted on) of a changing API request, or None when the
    request is not one the audit log records."""
    prefix = f"{base_url}hub/api/"
    if method in READS or not path.startswith(prefix):
        return None
    parts = [unquote(p) for p in path[len(prefix):].strip("/").split("/") if p]
    if not parts or parts[0] in NOT_ADMIN:
        return None
    if parts[0] != "users" or len(parts) < 2:
        return f"hub.api.{method.lower()}", "/".join(parts), None
    name, rest = parts[1], parts[2:]
    if not rest:
        return USER_ACTIONS.get(method, f"hub.user.{method.lower()}"), name, name
    if rest[0] == "activity":
        return None
    if rest[0] in ("server", "servers"):
        server = "/".join(rest[1:2])
        return (SERVER_ACTIONS.get(method, f"hub.server.{method.lower()}"),
                f"{name}/{server}" if server else name, name)
    if rest[0] == "tokens":
        return (TOKEN_ACTIONS.get(method, f"hub.token.{method.lower()}"),
                "/".join([name, *rest]), name)
    return f"hub.api.{method.lower()}", "/".join(["users", name, *rest]), name


def _body_details(method: str, body: bytes) -> dict[str, Any]:
    """What a user change says that is worth keeping: names and the admin flag, nothing else."""
    if method not in ("POST", "PATCH") or not body or len(body) > 1_000_000:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(data.get("usernames"), list):
        out["users"] = [str(n) for n in data["usernames"][:500]]
    if isinstance(data.get("admin"), bool):
        out["admin"] = data["admin"]
    if isinstance(data.get("name"), str):
        out["new_name"] = data["name"]
    return out


def audit_request(handler: Any, state_dir: Any, base_url: str) -> None:
    """Record `handler`'s answered request when it is an admin action (see the module)."""
    request = handler.request
    found = api_action(request.method, request.path, base_url)
    if found is None:
        return
    action, target, subject = found
    actor = getattr(handler, "_jupyterhub_user", None)  # set once the request authenticated
    if actor is None:
        return  # nobody known: refused before it could act
    kind = getattr(actor, "kind", "user")
    name = getattr(actor, "name", str(actor))
    if kind == "user" and not getattr(actor, "admin", False) and subject in (None, name):
        return  # a user on their own things
    status = handler.get_status()
    outcome = "ok" if status < 400 else "refused" if status in (401, 403, 404) else "failed"
    hub = getattr(handler, "hub", None)
    details = _body_details(request.method, getattr(request, "body", b"") or b"")
    if action == "hub.api.post" and target == "users" and "users" in details:
        action, target = "hub.user.create", ", ".join(details["users"])
    audit.record(state_dir, name if kind == "user" else f"service:{name}", action, target,
                 outcome, status=status, method=request.method, path=request.path,
                 address=client_address(request, [getattr(hub, "ip", "")]), via="hub-api",
                 **details)


def configure_audit(c: Config, settings: Settings) -> None:
    """Record the hub's admin actions in the audit log, after JupyterHub's own request log."""
    from jupyterhub.log import log_request

    state_dir, base_url = settings.state_dir, settings.hub.base_url

    def log_function(handler: Any) -> None:
        log_request(handler)
        try:
            audit_request(handler, state_dir, base_url)
        except Exception:  # the answer is sent: say it loudly, do not crash
            log.exception("Could not write the audit log for %s %s", handler.request.method,
                          handler.request.path)

    hub = c.JupyterHub
    tornado = dict(hub.get("tornado_settings") or {})
    tornado["log_function"] = log_function
    hub.tornado_settings = tornado
