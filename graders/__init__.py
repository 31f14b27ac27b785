"""Sandboxed, parallel autograding of nbgrader courses (never imports the hub)."""

import os
import sys

# nbgrader shells out to `alembic` (gradebook migrations) and `jupyter`: make sure the tools
# of the environment we run in are found even when it is not activated (.venv/bin/onelab).
_bin = os.path.dirname(sys.executable)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")
