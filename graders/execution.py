"""What a sandboxed run of one notebook gives back (plain data, no Docker: the course's
confined grading service imports it too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Execution:
    """What came back: outputs per cell, or the reason there are none."""

    status: str  # ok | timeout | error | crashed
    reason: str = ""
    cells: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""
    marks: list[Any] = field(default_factory=list)
    # What the notebook wrote in its work directory, as the runner sent it (unchecked):
    # {"written": {relpath: base64}, "left_out": [relpath...], "left_out_count": n}.
    # None: the reply carried none (a crash, or a path that does not pass them on).
    files: dict[str, Any] | None = None
