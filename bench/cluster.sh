#!/usr/bin/env bash
# Cluster mode (issue 18) against one node, in the same run on the same machine:
#   1. announce throughput of one node alone, then of node 1 of a three-node cluster (the other
#      two running and taking in its announces), HTTP under wrk (bench/announce.lua) and UDP
#      under bench/udp_load.rs, as bench/tracker.sh measures the tracker; and node 1's CPU time
#      per announce (from /proc and its announce counter), which other processes on a shared
#      machine (the other nodes on the same core here) disturb less than throughput;
#   2. cross-node visibility: a peer announced to node 1 (HTTP), polled on node 2 every 5 ms
#      until it is listed, SAMPLES times: p50 and p99;
#   3. Redis memory per peer: `used_memory` of a fresh cluster before and after PEERS distinct
#      peers are announced to node 1 and its snapshot is written.
# Every node serves the tracker in open mode (the load tool's 1,000 hashes are not published).
# Needs: redis-server, redis-cli, wrk, taskset, python3 (Debian packages redis-server, wrk,
# util-linux). Tunables (environment): DURATION=10 PEERS=100000 SAMPLES=200 CONNS=32 ROUNDS=2
# SERVER_CORE=1 LOAD_CORE=0.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
PEERS=${PEERS:-100000}
SAMPLES=${SAMPLES:-200}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-2}
SERVER_CORE=${SERVER_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}

for tool in redis-server redis-cli wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env"
cargo build --release --quiet --bin bitseed --example udp_load
target=${CARGO_TARGET_DIR:-target}
BITSEED=$(realpath "$target/release/bitseed")
UDP_LOAD=$(realpath "$target/release/examples/udp_load")

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

python3 -c '
import hashlib
for i in range(1000):
    print(hashlib.sha1(b"bitseed-bench-%d" % i).hexdigest())' >"$work/hashes.txt"
export HASHES="$work/hashes.txt"
mkdir -p "$work/content"

REDIS_PORT=16379
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.05; done

wait_tcp() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

# node N PORT [cluster]: starts `bitseed serve` on HTTP and UDP PORT (pinned to SERVER_CORE).
node() {
  local n=$1 port=$2 cluster=${3:-}
  cat >"$work/node$n.toml" <<TOML
[http]
workers = 1
max_connections_per_ip = 0
access_log = false
[tracker]
mode = "open"
max_peers_per_ip = 0
max_torrents_per_ip = 0
[dht]
enabled = false
TOML
  if [ -n "$cluster" ]; then  # "c", or "m" for the memory run's own state folders
    cat >>"$work/node$n.toml" <<TOML
[cluster]
redis_url = "redis://127.0.0.1:$REDIS_PORT/0"
node_id = "n$n"
node_url = "http://127.0.0.1:$port"
TOML
    # The memory run waits for a snapshot: sooner than the default 30 s.
    if [ "$cluster" = m ]; then echo "reconcile_secs = 5" >>"$work/node$n.toml"; fi
  fi
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$BITSEED" serve --config "$work/node$n.toml" \
    --content "$work/content" --state "$work/state$n$cluster" --http "127.0.0.1:$port" \
    --udp "127.0.0.1:$port" --peer 127.0.0.1:0 >"$work/node$n$cluster.log" 2>&1 &
  pids+=($!)
  wait_tcp "$port"
}

stop_nodes() {
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
}

# CPU time (clock ticks) of process $1, and announces node $2 (HTTP port) handled so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
announces() {
  python3 -c 'import sys, urllib.request
m = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
print(next(l.split()[1] for l in m.splitlines() if l.startswith("bitseed_tracker_announces_total ")))' "$1"
}
# CPU microseconds node 1 (pid $1, port $2) spent per announce since ticks $3 / announces $4.
cpu_us() {
  python3 -c 'import sys; t0, t1, a0, a1, hz = map(float, sys.argv[1:]); print("%.1f" % ((t1 - t0) / hz * 1e6 / max(a1 - a0, 1)))' \
    "$3" "$(ticks "$1")" "$4" "$(announces "$2")" "$(getconf CLK_TCK)"
}

# throughput PORT: prints "http_rps udp_rps http_cpu_us udp_cpu_us" (node 1 is pids[1])
throughput() {
  local port=$1 http udp t0 a0 hus uus
  t0=$(ticks "${pids[1]}") a0=$(announces "$port")
  http=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/announce.lua \
    "http://127.0.0.1:$port/announce" | awk '/^Requests\/sec:/ {print $2}')
  hus=$(cpu_us "${pids[1]}" "$port" "$t0" "$a0")
  t0=$(ticks "${pids[1]}") a0=$(announces "$port")
  udp=$(taskset -c "$LOAD_CORE" "$UDP_LOAD" "127.0.0.1:$port" "$HASHES" load "$DURATION" 4 |
    awk '/^udp announces\/s:/ {print $3}')
  uus=$(cpu_us "${pids[1]}" "$port" "$t0" "$a0")
  echo "$http $udp $hus $uus"
}

best() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:]))" "$@"; }
least() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
single_h=() single_u=() cluster_h=() cluster_u=() single_hc=() single_uc=() cluster_hc=() cluster_uc=()
for round in $(seq 1 "$ROUNDS"); do
  node 1 17001
  read -r h u hc uc <<<"$(throughput 17001)"
  single_h+=("$h") single_u+=("$u") single_hc+=("$hc") single_uc+=("$uc")
  stop_nodes
  redis-cli -p $REDIS_PORT flushall >/dev/null
  node 1 17001 c; node 2 17002 c; node 3 17003 c
  sleep 3 # heartbeats: the nodes know each other
  read -r ch cu chc cuc <<<"$(throughput 17001)"
  cluster_h+=("$ch") cluster_u+=("$cu") cluster_hc+=("$chc") cluster_uc+=("$cuc")
  echo "round $round: single http $h/s ($hc us) udp $u/s ($uc us) | cluster node 1 http $ch/s ($chc us) udp $cu/s ($cuc us)" >&2
  if [ "$round" -lt "$ROUNDS" ]; then stop_nodes; redis-cli -p $REDIS_PORT flushall >/dev/null; fi
done

# Cross-node visibility, on the cluster still running.
latency=$(python3 - "$SAMPLES" <<'PY'
import os, socket, sys, time, urllib.parse, urllib.request
samples = int(sys.argv[1])
def announce(port, h, peer_port):
    url = ("http://127.0.0.1:%d/announce?info_hash=%s&peer_id=-LAT001-%012d&port=%d&uploaded=0"
           "&downloaded=0&left=100&compact=1&numwant=50" % (port, urllib.parse.quote(h, safe=""), peer_port, peer_port))
    return urllib.request.urlopen(url, timeout=5).read()
times = []
for i in range(samples):
    h = os.urandom(20)
    announce(17001, h, 20000 + i % 40000)
    start = time.monotonic()
    want = (20000 + i % 40000).to_bytes(2, "big")
    while True:
        body = announce(17002, h, 1)
        peers = body.split(b"5:peers", 1)[1] if b"5:peers" in body else b""
        if b"\x7f\x00\x00\x01" + want in peers:
            break
        if time.monotonic() - start > 30:
            sys.exit("peer never seen on node 2")
        time.sleep(0.005)
    times.append(time.monotonic() - start)
times.sort()
print("%.0f %.0f" % (times[len(times) // 2] * 1000, times[int(len(times) * 0.99) - 1] * 1000))
PY
)
read -r p50 p99 <<<"$latency"

# Redis memory per peer: a fresh cluster and an empty Redis, PEERS distinct peers to node 1
# (announced once each), then its next snapshot.
stop_nodes
redis-cli -p $REDIS_PORT flushall >/dev/null
node 1 17001 m; node 2 17002 m; node 3 17003 m
sleep 3
used() { redis-cli -p $REDIS_PORT info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }
mem0=$(used)
taskset -c "$LOAD_CORE" "$UDP_LOAD" "127.0.0.1:17001" "$HASHES" fill "$PEERS" >/dev/null
sleep 7 # a snapshot (reconcile_secs = 5) holds them all
mem1=$(used)
snap=$(redis-cli -p $REDIS_PORT --raw memory usage bitseed:snap:n1 || echo 0)
stream=$(redis-cli -p $REDIS_PORT --raw memory usage bitseed:announces || echo 0)

sh=$(best "${single_h[@]}") su=$(best "${single_u[@]}")
ch=$(best "${cluster_h[@]}") cu=$(best "${cluster_u[@]}")
shc=$(least "${single_hc[@]}") suc=$(least "${single_uc[@]}")
chc=$(least "${cluster_hc[@]}") cuc=$(least "${cluster_uc[@]}")
ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print('%.2f' % (a / b if b else float('inf')))" "$1" "$2"; }
echo
echo "cluster benchmark: best of $ROUNDS rounds, ${DURATION}s per load, server(s) on core $SERVER_CORE, load on core $LOAD_CORE"
printf '%-22s %12s %12s %16s %16s\n' "" "http ann/s" "udp ann/s" "http cpu us/ann" "udp cpu us/ann"
printf '%-22s %12.0f %12.0f %16.1f %16.1f\n' "one node" "$sh" "$su" "$shc" "$suc"
printf '%-22s %12.0f %12.0f %16.1f %16.1f\n' "cluster, node 1 of 3" "$ch" "$cu" "$chc" "$cuc"
echo "ratio cluster/single per node, throughput: http $(ratio "$ch" "$sh")x, udp $(ratio "$cu" "$su")x;" \
  "from node 1's CPU per announce: http $(ratio "$shc" "$chc")x, udp $(ratio "$suc" "$cuc")x (target >= 0.8)"
echo "cross-node visibility over $SAMPLES peers: p50 ${p50} ms, p99 ${p99} ms (target p99 <= 2000)"
echo "redis: used_memory +$(((mem1 - mem0) / PEERS)) bytes per peer over $PEERS peers (its node's snapshot $((snap / PEERS)), the stream of its announces $((stream / PEERS)))"
