#!/usr/bin/env bash
# The whole suite: unit, images, integration (real Docker + hub), PostgreSQL, browser.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
exec .venv/bin/python -m pytest tests -p no:cacheprovider "$@"
