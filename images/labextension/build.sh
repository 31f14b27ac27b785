#!/usr/bin/env bash
# Rebuild the Assignments panel (maintainers): npm's packages from package-lock.json, then
# JupyterLab's builder (jupyter-builder, in .venv with JupyterLab) writes built/, which is
# committed: the learner image copies it, so no image build and no classroom needs node or npm.
# built/source.sha256 records which sources built it; tests/unit/test_labextension.py fails
# when the sources change and built/ was not rebuilt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
npm ci --no-audit --no-fund --ignore-scripts
rm -rf built
PATH="$here/../../.venv/bin:$PATH" jupyter-builder build --development False .
../../.venv/bin/python -c 'import sys; sys.path.insert(0, "../.."); from images import labextension; labextension.write_stamp()'
echo "built/ rebuilt; commit it with the sources"
