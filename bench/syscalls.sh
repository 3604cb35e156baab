#!/usr/bin/env bash
# System calls per echo round trip through the relay, counted by strace in each process:
# a Python client sends 64-byte messages one at a time through proxy1, tunlab relay and
# proxy2 (--wire selective-repeat) to tunlab's echo server, on 127.0.0.1.
#
#   bench/syscalls.sh                       the release build (built first)
#   bench/syscalls.sh PATH/TO/tunlab [N]    another build, N timed round trips (2000)
#
# Prints, per process, the epoll_wait calls and all calls over the N round trips (after 200
# warm-up ones). Needs strace and python3. Exact counts, not timings: they barely move
# with the machine's load, so a before/after needs one run of each.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in strace python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is not installed" >&2; exit 1; }
done
tunlab=${1:-}
if [ -z "$tunlab" ]; then
  cargo build --release --quiet
  tunlab=target/release/tunlab
fi
rounds=${2:-2000}
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/client.py" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(int(sys.argv[2])):
    s.sendall(b"x" * 64)
    got = b""
    while len(got) < 64:
        part = s.recv(64 - len(got))
        if not part:
            sys.exit("the tunnel closed the connection")
        got += part
EOF

# Starts a role in the background; sets `port` to the port its "up on 127.0.0.1:PORT" line
# says and appends its PID to `pids`.
start() {
  local log=$work/$1.log
  shift
  "$tunlab" "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    port=$(grep -o 'up on 127\.0\.0\.1:[0-9]*' "$log" | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && return
    sleep 0.05
  done
  echo "error: $1 did not start: $(cat "$log")" >&2
  exit 1
}

start server echo-server 0
start proxy2 proxy2 0 127.0.0.1 "$port" --wire selective-repeat
start relay relay 0 127.0.0.1 "$port"
start proxy1 proxy1 0 127.0.0.1 "$port" --wire selective-repeat
proxy1=$port
roles=(proxy1 relay proxy2)
role_pids=("${pids[3]}" "${pids[2]}" "${pids[1]}")

python3 "$work/client.py" "$proxy1" 200
tracers=()
for i in 0 1 2; do
  strace -f -c -o "$work/${roles[$i]}.strace" -p "${role_pids[$i]}" 2>/dev/null &
  tracers+=($!)
done
sleep 1
python3 "$work/client.py" "$proxy1" "$rounds"
sleep 0.5
kill -INT "${tracers[@]}"
wait "${tracers[@]}" 2>/dev/null || true

echo "system calls over $rounds round trips ($tunlab):"
for role in "${roles[@]}"; do
  awk -v role="$role" '
    # Columns: % time, seconds, usecs/call, calls, [errors,] syscall.
    $NF == "epoll_wait" { epoll = $4 }
    $NF == "total" { total = $4 }
    END { printf "  %-7s epoll_wait %7d   all %7d\n", role, epoll, total }
  ' "$work/$role.strace"
done
