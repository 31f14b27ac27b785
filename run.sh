#!/usr/bin/env bash
# OneLab's two commands, for a fresh Debian machine (as root):
#   ./run.sh up     set up, build images if missing, run the platform (http://127.0.0.1:8000)
#   ./run.sh test   set up, build images if missing, run the whole test suite
# Extra arguments go to `onelab up` (e.g. --detach) or to pytest (e.g. -k login).
set -euo pipefail
cd "$(dirname "$0")"
cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up)
    bash docker/setup.sh
    .venv/bin/onelab images build
    exec .venv/bin/onelab up "$@"
    ;;
  test)
    bash docker/setup.sh --test
    .venv/bin/onelab images build
    exec bash tests/run.sh "$@"
    ;;
  setup)
    exec bash docker/setup.sh "$@"
    ;;
  *)
    echo "usage: ./run.sh up [--detach] | ./run.sh test [pytest args] | ./run.sh setup [--test]" >&2
    exit 2
    ;;
esac
