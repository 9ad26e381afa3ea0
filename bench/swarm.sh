#!/usr/bin/env bash
# Offload on loopback (issue 11): N libtorrent leechers (bench/lt_swarm.py: one session each on
# its own 127.0.0.x, TCP, UP bytes/s up and DOWN down, limits applied on loopback) download one
# file of SIZE_MIB from a publisher capped at SEED_UP bytes/s. Three cases in one run:
#   served     bitseed, the torrent exactly as `serve` hands it out (web seed in it)
#   no-ws      bitseed, the same torrent without its web seed
#   libtorrent a libtorrent seeder under the same cap, on `bitseed tracker`
# For each: the time until all N have the file, T_min = max(F/u_s, F/min d, N*F/(u_s + sum u))
# (Kumar and Ross), their ratio, and the publisher's egress in copies of the file (bitseed: from
# /metrics; libtorrent: its own upload count), and "twice": payload the leechers received beyond
# one copy each. Every leecher's file is compared with the original.
#
# Usage: bench/swarm.sh        (N=8 SIZE_MIB=48 SEED_UP=4000000 UP=2000000 DOWN=8000000 RUNS=1;
#                               CASES="served no-ws libtorrent"; DOWN=0: no download limit)
# Every limit counts BitTorrent messages written, as bitseed's budget does; LT_IP_OVERHEAD=1
# makes libtorrent's (leechers' and its seeder's) also charge TCP/IP headers, its default, which
# leaves the leechers ~5% less payload than T_min assumes.
# EXTRA_ENV="BITSEED_PEER__SUPER_SEED=off" (or any setting) changes bitseed's settings for a run;
# LT_SWARM_TRACE=1 prints each leecher's progress and peers once a second on stderr (=sum: one
# line for all). BIN=path runs that bitseed instead of building this one. STAGGER=S and
# LEAVE_AFTER=S: downloads that arrive over time (leecher i starts at i*S s) and leave S s after
# they have the file; then "x T_min" means little (T_min assumes all start together).
# Needs /usr/bin/python3 with libtorrent. Everything lives in /dev/shm and on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-8}
SIZE_MIB=${SIZE_MIB:-48}
SEED_UP=${SEED_UP:-4000000}
UP=${UP:-2000000}
DOWN=${DOWN:-8000000}
RUNS=${RUNS:-1}
CASES=${CASES:-served no-ws libtorrent}
# Downloads arriving over time instead of all at once: STAGGER=S starts leecher i at i*S seconds;
# LEAVE_AFTER=S has each leecher leave S seconds after it has the file (T_min then does not apply).
ARRIVALS=()
if [ -n "${STAGGER:-}" ]; then ARRIVALS+=(--stagger "$STAGGER"); fi
if [ -n "${LEAVE_AFTER:-}" ]; then ARRIVALS+=(--leave-after "$LEAVE_AFTER"); fi
# The setting that caps bitseed (the environment variable that sets it).
CAP_ENV=${CAP_ENV:-BITSEED_EGRESS__MAX_RATE}
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null || {
  echo "bench/swarm.sh needs libtorrent for $PY: apt-get install python3-libtorrent (tests/run.sh installs it)" >&2
  exit 1
}
# BIN=path runs another build of bitseed (to compare two versions in turn).
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release/bitseed
fi
WORK=$(mktemp -d /dev/shm/bitseed-swarm.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/content"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/content/file.bin"
F=$((SIZE_MIB << 20))
TMIN=$($PY -c "
F, us, u, d, n = $F, $SEED_UP, $UP, $DOWN, $N
print(f'{max(F / us, F / d if d else 0, n * F / (us + n * u)):.2f}')")
echo "N=$N, $SIZE_MIB MiB, publisher $SEED_UP B/s, leechers $UP up / $DOWN down; T_min = $TMIN s"
printf '%-11s %4s %10s %8s %8s %8s %8s %8s %8s   %s\n' case run "all done" "x T_min" copies "peer" "web seed" direct "twice" "per leecher (s)"

check_files() {
  local ok=0
  for i in $(seq 0 $((N - 1))); do
    cmp -s "$1/$i/file.bin" "$WORK/content/file.bin" && ok=$((ok + 1))
  done
  [ "$ok" = "$N" ] || echo "  only $ok of $N leechers have the right bytes" >&2
}

# Bytes bitseed sent, by channel, from /metrics: peer, web seed, direct.
egress() {
  curl -s "http://$1/metrics" | $PY -c '
import sys
by = {"peer": 0, "web_seed": 0, "direct": 0}
old = {}
for line in sys.stdin:
    if line.startswith("bitseed_egress_bytes_total{"):
        ch = line.split("channel=\"")[1].split("\"")[0]
        by[ch] = int(float(line.split()[-1]))
    for k in ("bitseed_peer_uploaded_bytes_total", "bitseed_http_file_bytes_total"):
        if line.startswith(k + " "):
            old[k] = int(float(line.split()[-1]))
if not any(by.values()) and old:
    by["peer"] = old.get("bitseed_peer_uploaded_bytes_total", 0)
    by["web_seed"] = old.get("bitseed_http_file_bytes_total", 0)
print(by["peer"], by["web_seed"], by["direct"])'
}

report() { # case run result-json peer web direct
  $PY - "$@" "$F" "$TMIN" <<'EOF'
import json, sys
case, run, result, peer, web, direct, F, tmin = sys.argv[1:9]
r = json.loads(result)
F, tmin = int(F), float(tmin)
peer, web, direct = int(peer), int(web), int(direct)
total = peer + web + direct
alls = r["all_seconds"]
times = " ".join(f"{t:.1f}" if t is not None else "-" for t in r["seconds"])
# Payload the leechers received beyond one copy each, in copies (blocks that came twice).
twice = (sum(r.get("downloaded", [])) - len(r["seconds"]) * F) / F if r.get("downloaded") else 0
print(f"{case:<11} {run:>4} {alls if alls is None else f'{alls:.1f}':>10} "
      f"{'-' if alls is None else f'{alls / tmin:.2f}':>8} {total / F:>8.2f} "
      f"{peer / F:>8.2f} {web / F:>8.2f} {direct / F:>8.2f} {twice:>8.2f}   {times}")
EOF
}

serve_case() { # case run
  local state=$WORK/state-$1-$2 log=$WORK/serve.log
  : > "$log"
  env "$CAP_ENV=$SEED_UP" BITSEED_DHT__ENABLED=false ${EXTRA_ENV:-} BITSEED_TRACKER__INTERVAL=10 BITSEED_TRACKER__MIN_INTERVAL=5 \
    "$BIN" serve --content "$WORK/content" --state "$state" --http 127.0.0.1:0 \
    --udp 127.0.0.1:0 --peer 127.0.0.1:0 2> "$log" &
  local pid=$!
  PIDS+=($pid)
  until grep -q "http listening on" "$log"; do
    kill -0 "$pid" 2>/dev/null || { echo "bitseed serve exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  local http
  http=$(grep -o "http listening on [0-9.:]*" "$log" | awk '{print $4}')
  until curl -sf -o "$WORK/served.torrent" "http://$http/torrents/file.bin.torrent"; do sleep 0.1; done
  local torrent=$WORK/served.torrent
  if [ "$1" = no-ws ]; then
    $PY bench/strip_web_seed.py "$WORK/served.torrent" "$WORK/no-ws.torrent"
    torrent=$WORK/no-ws.torrent
  fi
  rm -rf "$WORK/dl"
  local result
  result=$($PY bench/lt_swarm.py "$torrent" "$WORK/dl" "$N" "$UP" "$DOWN" "${ARRIVALS[@]}" || true)
  check_files "$WORK/dl"
  report "$1" "$2" "$result" $(egress "$http")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # SERVE_LOGS=DIR keeps each bitseed log (set RUST_LOG=bitseed::web=debug to see downloads).
  if [ -n "${SERVE_LOGS:-}" ]; then cp "$log" "$SERVE_LOGS/serve-$1-$2.log"; fi
}

libtorrent_case() { # run
  local log=$WORK/tracker.log
  "$BIN" tracker --http 127.0.0.1:0 --udp 127.0.0.1:0 --state "$WORK/tracker-$1" \
    --interval 10 --min-interval 5 > "$log" 2>&1 &
  local tpid=$!
  PIDS+=($tpid)
  until grep -q "http listening on" "$log"; do sleep 0.05; done
  local tracker
  tracker=$(grep -o "http listening on [0-9.:]*" "$log" | awk '{print $4}')
  "$BIN" create "$WORK/content/file.bin" -a "http://$tracker/announce" -o "$WORK/lt.torrent" \
    --force --no-date > /dev/null
  rm -f "$WORK/lt.stats"
  $PY bench/lt_seed.py "$WORK/lt.torrent" "$WORK/content" --up "$SEED_UP" --announce \
    --stats "$WORK/lt.stats" > /dev/null &
  local spid=$!
  PIDS+=($spid)
  until [ -s "$WORK/lt.stats" ]; do sleep 0.05; done
  sleep 1
  rm -rf "$WORK/dl"
  local result
  result=$($PY bench/lt_swarm.py "$WORK/lt.torrent" "$WORK/dl" "$N" "$UP" "$DOWN" "${ARRIVALS[@]}" || true)
  check_files "$WORK/dl"
  report libtorrent "$1" "$result" "$(cat "$WORK/lt.stats")" 0 0
  kill "$spid" "$tpid"; wait "$spid" "$tpid" 2>/dev/null || true
}

for run in $(seq 1 "$RUNS"); do
  for c in $CASES; do
    case $c in
      served | no-ws) serve_case "$c" "$run" ;;
      libtorrent) libtorrent_case "$run" ;;
    esac
  done
done
