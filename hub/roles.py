"""OneLab's roles, as JupyterHub RBAC scopes, and the role grants that settings ask for.

Course roles (per-course instructors and TAs reaching their grading service) come with the
course wiring; here are the platform-wide ones.
"""

from __future__ import annotations

from typing import Any

ROLE_SCOPES: dict[str, list[str]] = {
    # Sees the class: who is there and whether their server runs. No access to learners' servers.
    "instructor": ["list:users", "read:users", "read:servers", "list:groups", "read:groups"],
}


def group_roles(mapping: dict[str, list[str]]) -> list[dict[str, Any]]:
    """JupyterHub load_roles entries granting each OneLab role to the listed groups."""
    out = []
    for role, groups in sorted(mapping.items()):
        if groups:
            out.append({"name": f"onelab-{role}", "description": f"OneLab {role}",
                        "scopes": list(ROLE_SCOPES[role]), "groups": sorted(groups)})
    return out
