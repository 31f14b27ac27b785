#!/usr/bin/env bash
# The whole suite: ruff, mypy, then unit, images, courses, grading, browser and integration
# (real Docker + hub), PostgreSQL. With pytest arguments: just those, in one stream.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
# lint first: a style or import error fails in seconds, not after the suite (ruff is pinned)
.venv/bin/ruff check --quiet . || { echo "ruff found the problems above" >&2; exit 1; }
# types of onelab/ and graders/ ([tool.mypy] in pyproject.toml; mypy is pinned too)
.venv/bin/mypy || { echo "mypy found the type errors above" >&2; exit 1; }
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider --durations=25)
if [ $# -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi

# Two streams at once: most of an integration test's time is spent waiting for servers and
# containers, so two share these 2 cores well. Each stream has its own temporary root, its
# own platforms (random prefixes, free ports) and its own log. The one test that restarts the
# Docker Engine runs alone afterwards: it would take every other test's containers down.
ENGINE=tests/integration/test_faults.py::test_a_docker_engine_restart_brings_learners_and_grading_back_by_themselves
TMP=$(mktemp -d /tmp/onelab-tests.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
A=(tests/unit tests/images tests/courses tests/grading tests/browser
   tests/integration/test_postgres.py tests/integration/test_gpu_claims.py
   tests/integration/test_roster.py tests/integration/test_operator_errors.py)
B=(tests/integration --deselect "$ENGINE"  # test_swarm.py too: a swarm for its 90 s, then left
   --ignore=tests/integration/test_postgres.py --ignore=tests/integration/test_gpu_claims.py
   --ignore=tests/integration/test_roster.py --ignore=tests/integration/test_operator_errors.py)
started=$(date +%s)
"${PYTEST[@]}" --basetemp="$TMP/a" "${A[@]}" >test-artifacts/tests-stream-a.log 2>&1 &
a=$!
"${PYTEST[@]}" --basetemp="$TMP/b" "${B[@]}" >test-artifacts/tests-stream-b.log 2>&1 &
b=$!
rc_a=0; wait $a || rc_a=$?
rc_b=0; wait $b || rc_b=$?
for s in a b; do
  echo "================ stream $s (test-artifacts/tests-stream-$s.log) ================"
  cat "test-artifacts/tests-stream-$s.log"
done
echo "================ the Docker Engine restart, alone ================"
rc_e=0; "${PYTEST[@]}" --basetemp="$TMP/e" "$ENGINE" || rc_e=$?
echo "tests: streams a=$rc_a b=$rc_b, engine restart=$rc_e, $(( $(date +%s) - started )) s in all"
[ "$rc_a" -eq 0 ] && [ "$rc_b" -eq 0 ] && [ "$rc_e" -eq 0 ]
