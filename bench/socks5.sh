#!/usr/bin/env bash
# A curl download through SOCKS5, as seed 004 measured it: the same file direct from the HTTP
# server, through tunlab's direct SOCKS5 server (`tunlab socks5`, no tunnel), and through
# proxy1's SOCKS5 port over the UDP link (selective-repeat, no emulated loss) and proxy2.
# Release binaries, each role its own process, everything on 127.0.0.1.
#
#   bench/socks5.sh                 5 rounds of 100 MiB, the three paths alternating
#   bench/socks5.sh ROUNDS MIB      other amounts
#   bench/run.sh --socks5 [...]     the same
#
# Prints one line per download (MiB/s, and that the file arrived byte-exact), then the
# medians and each path's ratio to direct from the same run (machine load affects all alike).
# Needs curl and python3 (the HTTP server: sendfile, so it is not the bottleneck).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
mib=${2:-100}

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

free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

head -c $((mib * 1024 * 1024)) /dev/urandom > "$work/file.bin"

# The HTTP server: GET anything, get the file (sendfile), one thread per connection.
python3 - "$work/file.bin" "$work/http.port" <<'PY' &
import os, socket, sys, threading
path, port_file = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
def serve(conn):
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                return
            head += data
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        with open(path, "rb") as f:
            conn.sendfile(f)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
PY
pids+=($!)
for _ in $(seq 100); do [ -f "$work/http.port" ] && break; sleep 0.05; done
http=$(cat "$work/http.port")

p2=$(free_port SOCK_DGRAM)
p1=$(free_port SOCK_STREAM)
tunnel_socks=$(free_port SOCK_STREAM)
direct_socks=$(free_port SOCK_STREAM)
"$bin" proxy2 "$p2" 127.0.0.1 "$http" --wire selective-repeat 2>"$work/proxy2.log" &
pids+=($!)
"$bin" proxy1 "$p1" 127.0.0.1 "$p2" --wire selective-repeat --socks5 "$tunnel_socks" 2>"$work/proxy1.log" &
pids+=($!)
"$bin" socks5 "$direct_socks" 2>"$work/socks5.log" &
pids+=($!)
sleep 1

declare -A results
download() { # path-name curl-args...
  local name=$1
  shift
  local out
  out=$(curl --silent --show-error --max-time 600 -o "$work/got.bin" -w '%{size_download} %{time_total}' "$@" "http://localhost:$http/file.bin")
  cmp -s "$work/got.bin" "$work/file.bin" || { echo "error: $name: the file arrived changed" >&2; exit 1; }
  local rate
  rate=$(awk -v out="$out" 'BEGIN { split(out, a, " "); printf "%.1f", a[1] / a[2] / 1048576 }')
  printf '%-14s %8s MiB/s  byte-exact\n' "$name" "$rate"
  results[$name]+="$rate "
}

echo "== $rounds rounds of $mib MiB (curl; direct, tunlab socks5, proxy1 --socks5 over selective-repeat)"
for round in $(seq "$rounds"); do
  download direct
  download socks5-direct --socks5-hostname "127.0.0.1:$direct_socks"
  download tunnel --socks5-hostname "127.0.0.1:$tunnel_socks"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
direct=$(echo "${results[direct]}" | median)
echo "== medians"
for name in direct socks5-direct tunnel; do
  m=$(echo "${results[$name]}" | median)
  ratio=$(awk -v m="$m" -v d="$direct" 'BEGIN { printf "%.3f", m / d }')
  printf '%-14s %8s MiB/s  %sx direct\n' "$name" "$m" "$ratio"
done
