"""Helpers for writing to a traitlets Config from several configure_* functions."""

from __future__ import annotations

from typing import Any

from traitlets.config import Config


def extend(c: Config, section: str, attr: str, items: list[Any]) -> None:
    """Append to a list-valued setting that another configure_* may already have set."""
    sec = c[section]
    current = sec.get(attr, [])
    sec[attr] = list(current) + list(items)
