#!/usr/bin/env bash
# Make sure a Docker Engine answers on this machine.
# Installs Debian's docker.io when no dockerd exists, and starts dockerd in the background when
# `docker info` fails (machines without systemd, CI). Idempotent: a running engine is left alone.
set -euo pipefail
log=${ONELAB_DOCKERD_LOG:-/var/log/onelab-dockerd.log}

if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "onelab: installing Debian's docker.io (no dockerd found)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "onelab: no docker CLI after installing docker.io" >&2; exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "onelab: no Docker daemon answers and starting one needs root: run this as root or start dockerd" >&2
  exit 1
fi
# systemd starts it properly where there is one; otherwise run it ourselves, detached.
if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then :; else
  echo "onelab: starting dockerd in the background (log: $log)" >&2
  setsid nohup dockerd >>"$log" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "onelab: dockerd did not answer within 60 s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
