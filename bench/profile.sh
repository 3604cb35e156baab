#!/usr/bin/env bash
# Repeatable costs of the tunnel's hot path, for before/after comparisons on a busy machine
# where wall-clock figures are noisy: instructions (valgrind's callgrind) and system calls
# (strace -f -c) per 64-byte round trip and per MiB echoed, summed over the tunnel's processes.
#
#   bench/profile.sh                    classic (proxy1+proxy2 processes) and lab, both tools
#   bench/profile.sh callgrind lab-events
#                                       one tool, one path: classic, lab, lab-events,
#                                       lab-capture, lab-both, bin-*, or a reliable mode's
#                                       lab as <wire mode>-<loss> (selective-repeat-0)
#   bench/profile.sh perf bin-capture   where the CPU time goes (perf record -e cpu-clock,
#                                       natively; per thread with `perf report --sort comm`)
#
# Raw outputs and callgrind_annotate / perf report listings go to target/profile/.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=(${1:-callgrind strace})
paths=(${2:-classic lab})
for tool in "${tools[@]}"; do
  command -v "$([ "$tool" = callgrind ] && echo valgrind || echo "$tool")" >/dev/null 2>&1 || {
    echo "error: $tool is not installed (Debian: apt-get install valgrind strace linux-perf)" >&2
    exit 1
  }
done

cargo build --release --quiet
for tool in "${tools[@]}"; do
  for path in "${paths[@]}"; do
    echo "== $tool, $path"
    cargo bench --quiet --bench tunnel -- --profile "$tool" --profile-path "$path"
  done
done
