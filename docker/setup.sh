#!/usr/bin/env bash
# Set up OneLab on a Debian machine (as root): system packages, a running Docker Engine,
# .venv with the `onelab` CLI, and configurable-http-proxy. Idempotent and quick when done.
#   --test   also what the test suite needs: PostgreSQL, Chromium, Korean fonts.
#   --lock   also uv, which maintainers need to regenerate the locks (docker/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
test_deps=0
lock_tool=0
for arg in "$@"; do
  case "$arg" in
    --test) test_deps=1 ;;
    --lock) lock_tool=1 ;;
    *) echo "usage: docker/setup.sh [--test] [--lock]" >&2; exit 2 ;;
  esac
done
CHP_VERSION=5.3.0
UV_VERSION=0.13.9
say() { echo "onelab setup: $*" >&2; }
quiet_pip() {  # pip's file-index noise filtered out; pip's own exit status kept
  .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# -- system packages ------------------------------------------------------------------------
pkgs=()
command -v python3 >/dev/null || pkgs+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || pkgs+=(python3-venv)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
command -v dockerd >/dev/null || pkgs+=(docker.io)
command -v git >/dev/null || pkgs+=(git)
if [ $test_deps = 1 ]; then
  command -v chromium >/dev/null || pkgs+=(chromium)
  dpkg -s fonts-nanum >/dev/null 2>&1 || pkgs+=(fonts-nanum)
  command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || pkgs+=(postgresql)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then say "need root to install: ${pkgs[*]}"; exit 1; fi
  say "installing Debian packages: ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# -- Docker Engine --------------------------------------------------------------------------
bash docker/ensure-dockerd.sh

# -- Python environment ---------------------------------------------------------------------
# Exactly the pins of docker/host.lock, each wheel checked against its hash (pytest, Playwright
# and ruff included: one lock for every host), then onelab itself with no dependency resolution
# and no build isolation (its build backend is in the lock too): nothing unpinned comes in.
stamp=".venv/.onelab-locked"
want=$(cat pyproject.toml docker/host.lock | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing docker/host.lock and onelab into .venv (first time ~1 min)"
  quiet_pip --require-hashes -r docker/host.lock
  quiet_pip --no-deps --no-build-isolation -e .
  .venv/bin/python -c 'import onelab_cli.main, hub.configure' # fail loudly if the install did
  echo "$want" > "$stamp"
fi
if [ $lock_tool = 1 ] && [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  say "installing uv $UV_VERSION (for docker/lock.sh only)"
  quiet_pip "uv==$UV_VERSION"
fi

# -- configurable-http-proxy (npm), kept inside .venv ---------------------------------------
if ! .venv/bin/configurable-http-proxy --version 2>/dev/null | grep -qx "$CHP_VERSION"; then
  say "installing configurable-http-proxy $CHP_VERSION"
  npm install --silent --no-fund --no-audit --prefix .venv/chp "configurable-http-proxy@$CHP_VERSION" >/dev/null
  ln -sf ../chp/node_modules/.bin/configurable-http-proxy .venv/bin/configurable-http-proxy
fi
say "ready: .venv/bin/onelab"
