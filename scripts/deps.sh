#!/usr/bin/env bash
# Installs what faultline needs from Debian packages: the servers the local
# provider runs (redis-server, postgresql), a static busybox for the
# registry-free docker images, chromium for report screenshots, CA
# certificates. Idempotent and a fast no-op when everything is present.
# As root it runs apt-get update once, then apt-get install -y; otherwise it
# prints the exact command to run.
set -euo pipefail

# zstd: zstdcat reads a run's history.jsonl.zst; jq: make perf's table.
# python3-redis and python3-psycopg2: the Python example adapters
# (examples/python, docs/protocol.md), run by /usr/bin/python3.
# iptables (nsenter is in util-linux, always there): the docker provider's
# per-pair partitions (partition-pair, isolate) drop packets in a container's
# network namespace. time: /usr/bin/time -v measures a run's peak memory
# (docs/benchmarks.md, History size and memory).
packages=(redis-server postgresql busybox-static chromium ca-certificates python3-redis python3-psycopg2 zstd jq iptables time)

installed() { # package name
  dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: not a Debian-like system (no dpkg-query). Install by hand: ${packages[*]}" >&2
  echo "deps: faultline needs redis-server and PostgreSQL's initdb/postgres on PATH or in /usr/lib/postgresql/*/bin" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "deps: all present (${packages[*]})"
  exit 0
fi

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: run as root:  sudo sh -c '$cmd'" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

# The packages start their own service instances; faultline runs its own
# servers on free ports and does not need them.
for svc in redis-server postgresql; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
echo "deps: done"
