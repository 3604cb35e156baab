#!/usr/bin/env bash
# Benchmarks tunlab against direct TCP and kcptun on loopback and writes BENCHMARKS.md.
#
#   bench/run.sh                 the full run (a few minutes)
#   bench/run.sh --quick         a smoke run, nothing written
#   bench/run.sh --scale         thousands of connections: idle memory, 1,000 concurrent, 10,000 at once
#   bench/run.sh --help          every option (rounds, durations, --only PATHS, ...)
#
# Installs kcptun (Debian package) when missing, builds the release binaries, then runs the
# bench client (benches/tunnel/) through `cargo bench --bench tunnel`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcptun-client >/dev/null 2>&1 || ! command -v kcptun-server >/dev/null 2>&1; then
  echo "== installing kcptun"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  if ! "${sudo_cmd[@]}" apt-get install -y -qq kcptun >/dev/null 2>&1; then
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq kcptun >/dev/null
  fi
fi

echo "== cargo build --release"
cargo build --release --quiet
echo "== cargo bench --bench tunnel"
# The report quotes the command exactly as it was given.
export TUNLAB_BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec cargo bench --quiet --bench tunnel -- "$@"
