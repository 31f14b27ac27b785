#!/usr/bin/env bash
# The whole suite: ruff, mypy, then unit, images, integration (real Docker + hub), PostgreSQL,
# browser.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
# lint first: a style or import error fails in seconds, not after the suite (ruff is pinned)
.venv/bin/ruff check --quiet . || { echo "ruff found the problems above" >&2; exit 1; }
# types of onelab/ and graders/ ([tool.mypy] in pyproject.toml; mypy is pinned too)
.venv/bin/mypy || { echo "mypy found the type errors above" >&2; exit 1; }
exec .venv/bin/python -m pytest tests -p no:cacheprovider --durations=40 "$@"
