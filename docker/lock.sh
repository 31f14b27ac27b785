#!/usr/bin/env bash
# Regenerate the three locks (maintainers), every pin with the sha256 of each of its files:
#   docker/host.lock                      the host's .venv: pyproject.toml's dependencies, its
#                                         [test] extra and its build backend (docker/setup.sh)
#   images/learner/requirements.lock      the CPU learner image: requirements.txt + images.torch
#   images/learner/requirements-gpu.lock  the GPU learner image: requirements.txt +
#                                         images.torch_gpu (PyPI's CUDA torch and its nvidia-*
#                                         wheels), every other pin held to the CPU lock's
# All are resolved for the learner image's interpreter (Debian bookworm's Python 3.11.2 on
# x86-64 manylinux), not for whatever Python runs this: a host's newer 3.11.x would otherwise
# pick releases that bookworm's 3.11.2 refuses. Pins already in a lock are kept; pass uv's
# options to move them:  docker/lock.sh --upgrade   or   docker/lock.sh -P numpy
# Needs uv, which `docker/setup.sh --lock` puts into .venv; using a lock needs only pip.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/uv ] || bash docker/setup.sh --lock
say() { echo "onelab lock: $*" >&2; }

# The target and torch come from the code and settings the build uses, so they cannot drift.
read -r pyver platform torch torch_gpu index < <(.venv/bin/python -c '
from images import build, table
from onelab.settings import load
s = load().images
arch = "x86_64"
print(table.PYTHON_VERSION, arch + "-" + build.PLATFORMS[0].removesuffix("_" + arch),
      s.torch.replace(" ", ""), s.torch_gpu.replace(" ", ""), s.torch_index_url or "-")')

# Where pip finds wheels here (e.g. a local CPU torch wheel) is where uv must look too.
sources=()
while read -r fl; do
  [ -n "$fl" ] && sources+=(--find-links "$fl")
done < <(.venv/bin/python -m pip config list 2>/dev/null \
           | sed -n "s/^[^=]*\.find-links='\(.*\)'$/\1/p" | tr ' ' '\n' | sort -u)
[ "$index" != "-" ] && sources+=(--extra-index-url "$index" --index-strategy unsafe-best-match)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
compile() {  # OUTPUT INPUT... [uv options]
  local out=$1; shift
  .venv/bin/uv pip compile --quiet --generate-hashes --python-version "$pyver" \
    --python-platform "$platform" --custom-compile-command "docker/lock.sh" -o "$out" "$@"
  sed -i "s#$tmp/##" "$out"   # annotations name the temporary inputs by their file name only
}

# Left out of the learner image: rfc3987-syntax (and lark, which only it needs) is what
# jsonschema's format-nongpl extra brings for IRI formats, and it builds a grammar at import:
# 1.5 s of every learner server's start (jupyter_server -> jupyter_events -> jsonschema),
# measured with docs/scripts/server_startup.py. jsonschema skips those formats without it. The
# image installs its lock with --no-deps, so nothing asks for them.
LEAN=(--no-emit-package rfc3987-syntax --no-emit-package lark)

echo "$torch" > "$tmp/setting-images.torch.txt"
say "images/learner/requirements.lock: Python $pyver, $platform, $torch"
compile images/learner/requirements.lock images/learner/requirements.txt \
  "$tmp/setting-images.torch.txt" --only-binary :all: "${sources[@]}" "${LEAN[@]}" "$@"

# The GPU image holds the CPU image's versions of everything both have (numpy, pandas, ...): the
# CPU lock's pins, torch aside, constrain it. Its torch and CUDA wheels come from PyPI alone (no
# local wheels, no CPU index), and uv reads their hashes and metadata from the index without
# downloading the GBs of wheels. A GPU-only dependency at odds with a CPU pin fails here.
sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ ]*\).*/\1/p' images/learner/requirements.lock \
  | grep -v '^torch==' > "$tmp/requirements.lock-pins-but-torch.txt"
echo "$torch_gpu" > "$tmp/setting-images.torch_gpu.txt"
say "images/learner/requirements-gpu.lock: Python $pyver, $platform, $torch_gpu"
compile images/learner/requirements-gpu.lock images/learner/requirements.txt \
  "$tmp/setting-images.torch_gpu.txt" -c "$tmp/requirements.lock-pins-but-torch.txt" \
  --only-binary :all: "${LEAN[@]}" "$@"

.venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))
                     ["build-system"]["requires"]))' > "$tmp/pyproject-build-system.txt"
say "docker/host.lock: pyproject.toml [test] and its build backend"
compile docker/host.lock pyproject.toml --extra test "$tmp/pyproject-build-system.txt" "$@"
say "done: review with git diff, then build and test (onelab images build; tests/unit/test_locks.py)"
