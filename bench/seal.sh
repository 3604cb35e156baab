#!/usr/bin/env bash
# Goodput of the sealed link (--key-file) against the same link unsealed, selective-repeat,
# on loopback: proxy1 and proxy2 as separate release processes, one TCP client that writes
# 1400-byte chunks and reads the echo back at the same time.
#
#   bench/seal.sh                 3 rounds of 64 MiB each way, plain and sealed alternating
#   bench/seal.sh ROUNDS MIB      other amounts
#
# Prints one line per run (goodput, and the CPU time both proxies used per MiB echoed), the
# medians, and the cost of sealing as ratios of the medians (measured in the same run, so
# machine load affects both alike). Needs python3 (the client) and builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
mib=${2:-64}

cargo build --release --quiet
bin=$PWD/target/release/tunlab
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" keygen "$work/link.key" 2>/dev/null

free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

# Echoes MIB mebibytes through 127.0.0.1:$1 in 1400-byte writes; prints MiB/s (echoed bytes
# over the whole transfer) and fails if any byte differs.
client() {
  python3 - "$1" "$mib" <<'EOF'
import socket, sys, threading, time, os
port, mib = int(sys.argv[1]), int(sys.argv[2])
total = mib * 1024 * 1024
chunk = 1400
pattern = os.urandom(1 << 20)
doubled = pattern + pattern
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def writer():
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        off = sent % len(pattern)
        piece = doubled[off:off + n]
        s.sendall(piece)
        sent += n
start = time.monotonic()
t = threading.Thread(target=writer)
t.start()
got = 0
ok = True
while got < total:
    data = s.recv(1 << 16)
    if not data:
        break
    off = got % len(pattern)
    if data != doubled[off:off + len(data)]:
        ok = False
    got += len(data)
elapsed = time.monotonic() - start
t.join()
s.close()
if got != total or not ok:
    sys.exit(f"echo incomplete or damaged: {got} of {total} bytes, intact={ok}")
print(f"{total / elapsed / (1 << 20):.1f}")
EOF
}

run() { # $1: plain|sealed; prints MiB/s
  local key=()
  [ "$1" = sealed ] && key=(--key-file "$work/link.key")
  local sp p2 p1
  sp=$(free_port SOCK_STREAM); p2=$(free_port SOCK_DGRAM); p1=$(free_port SOCK_STREAM)
  "$bin" echo-server "$sp" 2>"$work/es.log" & local es=$!
  "$bin" proxy2 "$p2" 127.0.0.1 "$sp" --wire selective-repeat "${key[@]}" 2>"$work/p2.log" & local q2=$!
  "$bin" proxy1 "$p1" 127.0.0.1 "$p2" --wire selective-repeat "${key[@]}" 2>"$work/p1.log" & local q1=$!
  pids=("$es" "$q2" "$q1")
  sleep 0.5
  local rate
  rate=$(client "$p1")
  # CPU time both proxies used (user + system, from /proc), per MiB echoed: a figure that
  # other load on the machine disturbs far less than wall-clock goodput.
  local ticks
  ticks=$(awk '{t += $14 + $15} END {print t}' "/proc/$q1/stat" "/proc/$q2/stat")
  kill "$q1" "$q2" "$es"; wait "$q1" "$q2" "$es" 2>/dev/null || true
  pids=()
  echo "$rate $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v m="$mib" 'BEGIN {printf "%.1f", t / hz * 1000 / m}')"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "selective-repeat, ${mib} MiB echoed per run, 1400-byte writes, $rounds rounds"
plain=(); sealed=(); plain_cpu=(); sealed_cpu=()
for i in $(seq "$rounds"); do
  read -r p pc < <(run plain)
  read -r s sc < <(run sealed)
  echo "round $i: plain $p MiB/s ($pc ms CPU/MiB), sealed $s MiB/s ($sc ms CPU/MiB)"
  plain+=("$p"); sealed+=("$s"); plain_cpu+=("$pc"); sealed_cpu+=("$sc")
done
mp=$(printf '%s\n' "${plain[@]}" | median)
ms=$(printf '%s\n' "${sealed[@]}" | median)
mpc=$(printf '%s\n' "${plain_cpu[@]}" | median)
msc=$(printf '%s\n' "${sealed_cpu[@]}" | median)
echo "median goodput: plain $mp MiB/s, sealed $ms MiB/s; sealed/plain = $(awk -v s="$ms" -v p="$mp" 'BEGIN {printf "%.3f (cost %.1f%%)", s/p, (1-s/p)*100}')"
echo "median proxy CPU: plain $mpc ms/MiB, sealed $msc ms/MiB; sealed/plain = $(awk -v s="$msc" -v p="$mpc" 'BEGIN {printf "%.3f (cost %.1f%%)", s/p, (s/p-1)*100}')"
