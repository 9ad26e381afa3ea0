#!/usr/bin/env bash
# One node at scale (issue 14), every figure in one run, everything in /dev/shm on loopback:
#   1. publish time of 10,000 and of 50,000 small top-level files (4-64 KiB), default settings
#   2. restart of the 50,000 unchanged entries: time to publish them again, bytes hashed
#   3. RSS per published entry, and of one folder torrent of 100,000 files
#   4. page and API: latency and size with 50,000 entries, RSS over 1,000 requests
#   5. under `ulimit -n 1024`: 50,000 entries and the 100,000-file folder published, seeded
#      (aria2c downloads from the peer port, web seed removed), served over HTTP, page answering
#   6. 2,000 idle handshaken connections from 100 addresses keeping alive, and an aria2c
#      download of the same torrent (web seed removed) beside them, against the same unloaded
#
# Usage: bench/scale.sh            (SMALL=10000 MANY=50000 FOLDER=100000 IDLE=2000 by default;
#                                   ONLY=idle runs only case 6, ONLY=catalog cases 1-5)
# Needs: aria2c, curl, python3. Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=${SMALL:-10000}
MANY=${MANY:-50000}
FOLDER=${FOLDER:-100000}
IDLE=${IDLE:-2000}
cargo build --release -q
BIN=$PWD/target/release/bitseed
WORK=$(mktemp -d /dev/shm/bitseed-scale.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ONLY=${ONLY:-all}
want() { [ "$ONLY" = all ] || [[ " $ONLY " == *" $1 "* ]]; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Small files of 4-64 KiB (deterministic sizes, random bytes), NAME COUNT.
make_small() {
  python3 - "$1" "$2" <<'EOF'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
r = random.Random(7)
for i in range(n):
    with open(f"{d}/f{i:06d}.bin", "wb") as f:
        f.write(os.urandom(r.randint(4096, 65536)))
EOF
}

# start CONTENT STATE [ULIMIT]: bitseed serve on free ports; sets PID, HTTP, PEER.
start() {
  local log=$WORK/serve.log
  : > "$log"
  # No DHT: nothing may leave the machine (its default routers are on the internet).
  ( [ -n "${3:-}" ] && ulimit -n "$3"
    BITSEED_DHT__ENABLED=false exec "$BIN" serve --content "$1" --state "$2" --http 127.0.0.1:0 --udp 127.0.0.1:0 \
      --peer 127.0.0.1:0 ) 2> "$log" &
  PID=$!
  until grep -q "http listening on" "$log"; do sleep 0.05; done
  HTTP=$(grep -o "http listening on [0-9.:]*" "$log" | awk '{print $4}')
  PEER=$(grep -o "peer listening on [0-9.:]*" "$log" | awk '{print $4}')
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
published() {
  curl -s -D - -o /dev/null "http://$HTTP/api/torrents?status=published&limit=1" | tr -d '\r' |
    awk -F': ' 'tolower($1) == "x-total-count" {print $2}'
}
wait_published() { # N → seconds until N entries are published
  local t0=$1 n=$2
  until [ "$(published)" = "$n" ]; do sleep 0.2; done
  elapsed "$t0"
}
metric() { curl -s "http://$HTTP/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

printf '%-58s %s\n' "figure" "value"
row() { printf '%-58s %s\n' "$1" "$2"; }

# --- 0. an empty server's RSS
mkdir -p "$WORK/empty"
start "$WORK/empty" "$WORK/state-empty"
sleep 1
BASE=$(rss_kib "$PID")
stop
row "RSS of an empty server" "$((BASE / 1024)) MiB"

if want catalog; then
# --- 1. publish time
make_small "$WORK/small" "$SMALL"
t0=$(now); start "$WORK/small" "$WORK/state-small"
row "publish $SMALL small files (s, target <= 30)" "$(wait_published "$t0" "$SMALL")"
stop
make_small "$WORK/many" "$MANY"
t0=$(now); start "$WORK/many" "$WORK/state-many"
row "publish $MANY small files (s, target <= 150)" "$(wait_published "$t0" "$MANY")"
sleep 1
RSS_MANY=$(rss_kib "$PID")
row "RSS per published entry ($MANY entries)" "$(( (RSS_MANY - BASE) * 1024 / MANY )) bytes"

# --- 4. page and API with MANY entries
for what in "/" "/api/torrents"; do
  read -r size secs < <(curl -s -o /dev/null -w '%{size_download} %{time_total}\n' "http://$HTTP$what")
  row "GET $what with $MANY entries (ms, bytes; target < 50, < 200 KB)" \
    "$(python3 -c "print(f'{$secs * 1000:.1f} ms, $size bytes')")"
done
before=$(rss_kib "$PID")
for _ in $(seq 1000); do
  echo "url = \"http://$HTTP/api/torrents?after=f0$((RANDOM % 40000))\""
  echo 'output = "/dev/null"'
done > "$WORK/urls"
curl -s -K "$WORK/urls"
after=$(rss_kib "$PID")
row "RSS over 1,000 API requests" "$((before / 1024)) -> $((after / 1024)) MiB"
etag=$(curl -s -D - -o /dev/null "http://$HTTP/api/torrents" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" {print $2}')
code=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "If-None-Match: $etag" "http://$HTTP/api/torrents")
row "a poll of an unchanged API page (status, bytes)" "$code"
stop

# --- 2. restart of MANY unchanged entries
t0=$(now); start "$WORK/many" "$WORK/state-many"
row "restart with $MANY unchanged entries (s, target <= 2)" "$(wait_published "$t0" "$MANY")"
row "bytes hashed at that restart" "$(metric bitseed_hashed_bytes_total)"
stop

# --- 3. one folder of FOLDER files
python3 - "$WORK/folder/big" "$FOLDER" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = f"{d}/d{i // 1000:03d}"
    if i % 1000 == 0:
        os.makedirs(sub, exist_ok=True)
    with open(f"{sub}/file{i:06d}.txt", "wb") as f:
        f.write(b"x" * (100 + i % 900))
EOF
t0=$(now); start "$WORK/folder" "$WORK/state-folder"
row "publish one folder of $FOLDER files (s)" "$(wait_published "$t0" 1)"
sleep 1
row "RSS of a $FOLDER-file torrent (MiB, target <= 60)" "$(( ($(rss_kib "$PID") - BASE) / 1024 ))"
stop

# --- 5. a descriptor budget: everything above under ulimit -n 1024
mv "$WORK/folder/big" "$WORK/many/big"
t0=$(now); start "$WORK/many" "$WORK/state-many" 1024
row "under ulimit -n 1024: publish $MANY entries + the folder (s)" "$(wait_published "$t0" $((MANY + 1)))"
up=0; for _ in $(seq 20); do curl -sf -o /dev/null "http://$HTTP/healthz" && up=$((up + 1)); done
row "  page answering meanwhile (of 20 tries)" "$up"
ok=0
for i in $(seq 0 997 $((MANY - 1))); do
  name=$(printf 'f%06d.bin' "$i")
  curl -sf "http://$HTTP/files/$name" | cmp -s - "$WORK/many/$name" && ok=$((ok + 1))
done
row "  files served over HTTP, right bytes (of $(( (MANY + 996) / 997 )))" "$ok"
mkdir -p "$WORK/dl"
for name in big f000123.bin f049999.bin; do
  curl -sf "http://$HTTP/torrents/$name.torrent" | python3 bench/strip_web_seed.py - "$WORK/dl/$name.torrent"
done
t0=$(now)
ok=0
for name in big f000123.bin f049999.bin; do
  aria2c --seed-time=0 --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
    --enable-peer-exchange=false --console-log-level=error --summary-interval=0 \
    --bt-stop-timeout=120 -q -d "$WORK/dl" "$WORK/dl/$name.torrent" && ok=$((ok + 1))
done
same=$(diff -rq "$WORK/dl/big" "$WORK/many/big" > /dev/null && echo "identical" || echo "DIFFERENT")
row "  aria2c from the peer port, web seed removed (of 3, s)" "$ok, $(elapsed "$t0") s, folder $same"
row "  accept errors on the peer port" "$(metric bitseed_peer_accept_errors_total)"
row "  descriptors open at the end" "$(ls /proc/$PID/fd | wc -l)"
stop

fi
if want idle; then
# --- 6. idle connections against a real download
mkdir -p "$WORK/one"
head -c $((64 << 20)) /dev/urandom > "$WORK/one/wanted.bin"
start "$WORK/one" "$WORK/state-one"
until [ "$(published)" = 1 ]; do sleep 0.1; done
HASH=$(curl -s "http://$HTTP/api/torrents" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["info_hash"])')
curl -s "http://$HTTP/torrents/wanted.bin.torrent" | python3 bench/strip_web_seed.py - "$WORK/wanted.torrent"
download() {
  rm -rf "$WORK/dl1"; local t0; t0=$(now)
  aria2c --seed-time=0 --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
    --enable-peer-exchange=false --console-log-level=error --summary-interval=0 \
    --bt-stop-timeout=300 -q -d "$WORK/dl1" "$WORK/wanted.torrent"
  cmp -s "$WORK/dl1/wanted.bin" "$WORK/one/wanted.bin" || echo "WRONG BYTES" >&2
  elapsed "$t0"
}
UNLOADED=$(download)
python3 bench/idle_peers.py "$PEER" "$HASH" "$IDLE" 100 120 > "$WORK/idle.out" &
IDLER=$!
sleep 15
LOADED=$(download)
kill "$IDLER" 2>/dev/null || true; wait "$IDLER" 2>/dev/null || true
row "aria2c 64 MiB, unloaded (s)" "$UNLOADED"
row "aria2c 64 MiB beside $IDLE idle connections (s, target <= 2x)" \
  "$LOADED ($(python3 -c "print(f'{$LOADED / $UNLOADED:.2f}x')"))"
row "  evictions, refusals (max_connections, per torrent)" \
  "$(metric bitseed_peer_connections_evicted_total), $(curl -s "http://$HTTP/metrics" | grep -o 'reason="max_connections"} [0-9]*' | awk '{print $2}'), $(curl -s "http://$HTTP/metrics" | grep -o 'reason="max_connections_per_torrent"} [0-9]*' | awk '{print $2}')"
stop
fi
