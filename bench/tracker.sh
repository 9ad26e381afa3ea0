#!/usr/bin/env bash
# bitseed's tracker against opentracker, in the same run on the same machine.
#
# Each server runs alone, pinned to one core (SERVER_CORE); the load runs on another
# (LOAD_CORE). For each server:
#   1. RSS before and after announcing PEERS distinct peers over UDP (1,000 torrents), so the
#      difference divided by PEERS is the memory one stored peer costs;
#   2. HTTP announces/s under wrk (bench/announce.lua: random peers, compact=1, numwant=50,
#      one request per connection);
#   3. UDP announces/s under bench/udp_load.rs (connect once, then announces, numwant=50).
# Debian's opentracker tracks only whitelisted hashes and refuses root: it gets the 1,000 hashes
# as its whitelist and runs as nobody.
#
# Needs: opentracker, wrk, taskset, python3 (Debian packages opentracker, wrk, util-linux).
# The machine may be shared, so the servers take turns for ROUNDS rounds and the best
# throughput of each is kept (memory per peer does not vary between rounds).
# Tunables (environment): DURATION=10 PEERS=200000 CONNS=32 ROUNDS=3 SERVER_CORE=1 LOAD_CORE=0.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
PEERS=${PEERS:-200000}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
SERVER_CORE=${SERVER_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}

for tool in opentracker wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env"
cargo build --release --quiet --bin bitseed --example udp_load
target=${CARGO_TARGET_DIR:-target}
BITSEED=$(realpath "$target/release/bitseed")
UDP_LOAD=$(realpath "$target/release/examples/udp_load")

work=$(mktemp -d)
chmod 755 "$work" # opentracker drops to nobody and chroots here
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

python3 -c '
import hashlib
for i in range(1000):
    print(hashlib.sha1(b"bitseed-bench-%d" % i).hexdigest())' >"$work/hashes.txt"
cp "$work/hashes.txt" "$work/whitelist.txt"
export HASHES="$work/hashes.txt"

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

wait_tcp() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

# measure NAME PORT COMMAND...: prints "NAME http_rps udp_rps bytes_per_peer rss_kb"
measure() {
  local name=$1 port=$2
  shift 2
  taskset -c "$SERVER_CORE" "$@" >"$work/$name.log" 2>&1 &
  pid=$!
  wait_tcp "$port"
  local rss0 rss1 http udp
  rss0=$(rss_kb "$pid")
  # A failure reason is HTTP 200 too: check that a real announce gets peers before timing it.
  python3 - "$port" "$(head -1 "$HASHES")" <<'PY'
import sys, urllib.parse, urllib.request
port, h = sys.argv[1], bytes.fromhex(sys.argv[2])
url = ("http://127.0.0.1:%s/announce?info_hash=%s&peer_id=-CHECK-0000000000000&port=9&uploaded=0"
       "&downloaded=0&left=0&compact=1" % (port, urllib.parse.quote(h, safe="")))
body = urllib.request.urlopen(url, timeout=10).read()
if b"5:peers" not in body or b"failure reason" in body:
    sys.exit("bad answer from port %s: %r" % (port, body))
PY
  taskset -c "$LOAD_CORE" "$UDP_LOAD" "127.0.0.1:$port" "$HASHES" fill "$PEERS" >/dev/null
  rss1=$(rss_kb "$pid")
  http=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/announce.lua \
    "http://127.0.0.1:$port/announce" | awk '/^Requests\/sec:/ {print $2}')
  udp=$(taskset -c "$LOAD_CORE" "$UDP_LOAD" "127.0.0.1:$port" "$HASHES" load "$DURATION" 4 |
    awk '/^udp announces\/s:/ {print $3}')
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  echo "$name $http $udp $(((rss1 - rss0) * 1024 / PEERS)) $rss1"
}

best() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:]))" "$@"; }
ot_https=() ot_udps=() bs_https=() bs_udps=()
for round in $(seq 1 "$ROUNDS"); do
  ot=$(measure opentracker 16969 opentracker -i 127.0.0.1 -p 16969 -P 16969 \
    -d "$work" -w whitelist.txt -u nobody)
  rm -rf "$work/state"
  bs=$(measure bitseed 16970 "$BITSEED" tracker --http 127.0.0.1:16970 --udp 127.0.0.1:16970 \
    --state "$work/state" --workers 1 --max-connections-per-ip 0 --max-peers-per-ip 0)
  # opentracker has neither cap; every peer of the load comes from 127.0.0.1, so with the
  # default of 16 peers per address only 16 of each torrent's 200 would be stored.
  echo "round $round: $ot | $bs" >&2
  read -r _ ot_http ot_udp ot_peer ot_rss <<<"$ot"
  read -r _ bs_http bs_udp bs_peer bs_rss <<<"$bs"
  ot_https+=("$ot_http") ot_udps+=("$ot_udp") bs_https+=("$bs_http") bs_udps+=("$bs_udp")
done
ot_http=$(best "${ot_https[@]}") ot_udp=$(best "${ot_udps[@]}")
bs_http=$(best "${bs_https[@]}") bs_udp=$(best "${bs_udps[@]}")

echo
echo "tracker benchmark: best of $ROUNDS rounds, ${DURATION}s per load, ${PEERS} distinct peers, server on core $SERVER_CORE, load on core $LOAD_CORE"
printf '%-12s %14s %14s %16s %12s\n' server "http ann/s" "udp ann/s" "bytes/peer" "rss (kB)"
printf '%-12s %14.0f %14.0f %16d %12d\n' opentracker "$ot_http" "$ot_udp" "$ot_peer" "$ot_rss"
printf '%-12s %14.0f %14.0f %16d %12d\n' bitseed "$bs_http" "$bs_udp" "$bs_peer" "$bs_rss"
ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print('%.2f' % (a / b if b else float('inf')))" "$1" "$2"; }
echo "ratio bitseed/opentracker: http $(ratio "$bs_http" "$ot_http")x (target >= 1.0)," \
  "udp $(ratio "$bs_udp" "$ot_udp")x (target >= 1.0)," \
  "bytes per peer $(ratio "$bs_peer" "$ot_peer")x (target <= 1.5)"
