#!/usr/bin/env bash
# Benchmarks tunlab against direct TCP and kcptun on loopback and writes BENCHMARKS.md.
#
#   bench/run.sh                 the full run (a few minutes)
#   bench/run.sh --quick         a smoke run, nothing written
#   bench/run.sh --scale         thousands of connections: idle memory, 1,000 concurrent, 10,000 at once
#   bench/run.sh --help          every option (rounds, durations, --only PATHS, ...)
#   bench/run.sh --socks5        a 100 MiB curl download direct vs through SOCKS5 and the tunnel
#                                (bench/socks5.sh [ROUNDS] [MIB])
#
# Installs kcptun (Debian package) when missing, builds the release binaries, then runs the
# bench client (benches/tunnel/) through `cargo bench --bench tunnel`.
set -euo pipefail
cd "$(dirname "$0")/.."

# A curl download direct, through plain SOCKS5 and through the tunnel's SOCKS5 port.
if [ "${1:-}" = "--socks5" ]; then
  shift
  exec bench/socks5.sh "$@"
fi

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
