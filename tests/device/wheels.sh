#!/bin/bash
# Here, before a device run: papermill, its kernel and their needs as wheels for the GPU
# machine's Python 3.12 (its PyTorch stays its own), into .whl, which git ignores and the device
# call carries (tests/device/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl papermill ipykernel pyyaml
du -sh .whl
