#!/usr/bin/env bash
# Seeder benchmark on loopback: a 1 GiB file downloaded by aria2c and by libtorrent, seeded in
# turn by bitseed and by a libtorrent seeder, RUNS times each, in each mode: plain TCP, uTP
# (libtorrent only: aria2c has no uTP) and RC4 encryption over TCP (MSE, both sides forced).
# Prints MB/s, the seeder's CPU seconds and peak RSS per run, then medians and the
# bitseed/libtorrent ratios, and each mode against bitseed's own plain TCP.
#
# Usage: bench/seed.sh            (RUNS=3 SIZE_MIB=1024 by default)
#        CASES="libtorrent/utp aria2c/rc4" bench/seed.sh     (a subset; the default is all:
#        aria2c/tcp aria2c/rc4 libtorrent/tcp libtorrent/utp libtorrent/rc4)
#        PIN=1 bench/seed.sh    (the seeder on core 0, the downloader on core 1, so neither
#        waits for the other's core; the downloader's CPU seconds are printed too)
# Needs: aria2c, /usr/bin/python3 with libtorrent. Everything lives in /dev/shm and loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
PIN=${PIN:-0}
SEED_CPU=()
DL_CPU=()
if [ "$PIN" = 1 ]; then
  SEED_CPU=(taskset -c 0)
  DL_CPU=(taskset -c 1)
fi
SIZE_MIB=${SIZE_MIB:-1024}
PY=/usr/bin/python3
$PY -c 'import libtorrent' 2>/dev/null && command -v aria2c >/dev/null || {
  echo "bench/seed.sh needs aria2c and libtorrent for $PY: apt-get install aria2 python3-libtorrent (tests/run.sh installs them)" >&2
  exit 1
}
CLK=$(getconf CLK_TCK)

cargo build --release -q
# BITSEED_BIN: another build to measure (e.g. an older commit's, side by side with this one);
# SEED_ARGS: more arguments to `bitseed seed` (e.g. "--utp-congestion cubic").
SEED_ARGS=${SEED_ARGS:-}
BIN=${BITSEED_BIN:-$PWD/target/release/bitseed}
WORK=$(mktemp -d /dev/shm/bitseed-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/content.bin"
$PY bench/tracker.py "$WORK/tracker.port" "$WORK/peer" & PIDS+=($!)
while [ ! -s "$WORK/tracker.port" ]; do sleep 0.05; done
TRACKER="http://127.0.0.1:$(cat "$WORK/tracker.port")/announce"
"$BIN" create "$WORK/content.bin" -o "$WORK/bench.torrent" -a "$TRACKER" --no-date --force > /dev/null
BYTES=$((SIZE_MIB << 20))

CASES=${CASES:-aria2c/tcp aria2c/rc4 libtorrent/tcp libtorrent/utp libtorrent/rc4}

start_seeder() { # kind mode → sets SEED_PID, SEED_PORT
  rm -f "$WORK/seed.out"
  if [ "$1" = bitseed ]; then
    local enc=()
    [ "$2" = rc4 ] && enc=(--encryption require)
    "${SEED_CPU[@]}" "$BIN" seed "$WORK/bench.torrent" "$WORK/content.bin" --listen 127.0.0.1:0 --no-announce \
      "${enc[@]}" $SEED_ARGS > "$WORK/seed.out" 2> /dev/null &
  else
    "${SEED_CPU[@]}" $PY bench/lt_seed.py "$WORK/bench.torrent" "$WORK" --mode "$2" > "$WORK/seed.out" 2> /dev/null &
  fi
  SEED_PID=$!
  PIDS+=("$SEED_PID")
  while ! grep -q "listening on" "$WORK/seed.out" 2> /dev/null; do sleep 0.05; done
  SEED_PORT=$(sed -n 's/^listening on 127.0.0.1://p' "$WORK/seed.out")
  echo "127.0.0.1:$SEED_PORT" > "$WORK/peer"
}

cpu_seconds() { awk -v clk="$CLK" '{ printf "%.2f", ($14 + $15) / clk }' "/proc/$1/stat"; }
rss_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

download() { # downloader mode → prints seconds (libtorrent: in $WORK/first_piece, the first piece's
  # time from the start and from the client's connection to the seeder)
  rm -rf "$WORK/dl" "$WORK/first_piece"
  mkdir "$WORK/dl"
  if [ "$1" = aria2c ]; then
    local t0 t1 crypto=()
    [ "$2" = rc4 ] && crypto=(--bt-require-crypto=true --bt-min-crypto-level=arc4)
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$WORK/dl_cpu" "${DL_CPU[@]}" aria2c --dir="$WORK/dl" --seed-time=0 --enable-dht=false --enable-dht6=false \
      --bt-enable-lpd=false --enable-peer-exchange=false --summary-interval=0 \
      --console-log-level=error --file-allocation=none --listen-port=40000-49999 \
      "${crypto[@]}" "$WORK/bench.torrent" > /dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  else
    local mode=(--transport tcp)
    [ "$2" = utp ] && mode=(--transport utp)
    [ "$2" = rc4 ] && mode=(--encryption forced)
    /usr/bin/time -f "%U %S" -o "$WORK/dl_cpu" "${DL_CPU[@]}" $PY tests/interop/lt_download.py --torrent "$WORK/bench.torrent" --save "$WORK/dl" \
      --peer "127.0.0.1:$SEED_PORT" --timeout 600 "${mode[@]}" |
      $PY -c 'import json,sys; r=json.load(sys.stdin); assert r["ok"], r; print(r["seconds"]); print("%.3f %.3f" % (r["first_piece"], r["first_piece_after_connect"]), file=open(sys.argv[1], "w"))' "$WORK/first_piece"
  fi
  cmp -s "$WORK/dl/content.bin" "$WORK/content.bin" || { echo "download differs" >&2; exit 1; }
}

printf "%-10s %-5s %-10s %4s %9s %8s %8s %9s %10s %8s\n" downloader mode seeder run "MB/s" "cpu s" "rss MiB" "1st piece" "after conn" "dl cpu s"
RESULTS="$WORK/results"
: > "$RESULTS"
for case in $CASES; do
  downloader=${case%/*}
  mode=${case#*/}
  for run in $(seq "$RUNS"); do
    for seeder in bitseed libtorrent; do
      start_seeder "$seeder" "$mode"
      cpu0=$(cpu_seconds "$SEED_PID")
      secs=$(download "$downloader" "$mode")
      cpu1=$(cpu_seconds "$SEED_PID")
      rss=$(rss_mib "$SEED_PID")
      kill "$SEED_PID"
      wait "$SEED_PID" 2> /dev/null || true
      mbs=$(echo "$BYTES / $secs / 1000000" | bc -l)
      cpu=$(echo "$cpu1 - $cpu0" | bc -l)
      { read -r first after < "$WORK/first_piece"; } 2> /dev/null || { first=-; after=-; }
      dl_cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/dl_cpu")
      printf "%-10s %-5s %-10s %4s %9.1f %8.2f %8s %9s %10s %8s\n" "$downloader" "$mode" "$seeder" "$run" "$mbs" "$cpu" "$rss" "$first" "$after" "$dl_cpu"
      echo "$downloader $mode $seeder $mbs $cpu $rss $first $after $dl_cpu" >> "$RESULTS"
    done
  done
done

echo
echo "medians (MB/s, seeder CPU s per GiB, peak RSS MiB) and bitseed/libtorrent ratios:"
$PY - "$RESULTS" "$SIZE_MIB" << 'PYEOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
gib = int(sys.argv[2]) / 1024
med = {}
cases = []
for r in rows:
    if (r[0], r[1]) not in cases:
        cases.append((r[0], r[1]))
for d, m in cases:
    for s in ("bitseed", "libtorrent"):
        r = [x for x in rows if x[0] == d and x[1] == m and x[2] == s]
        med[d, m, s] = (
            statistics.median(float(x[3]) for x in r),
            statistics.median(float(x[4]) for x in r) / gib,
            statistics.median(float(x[5]) for x in r),
        )
        v = med[d, m, s]
        firsts = [float(x[6]) for x in r if x[6] != "-"]
        afters = [float(x[7]) for x in r if x[7] != "-"]
        first = (f" first piece {statistics.median(firsts):.3f} s"
                 f" ({statistics.median(afters):.3f} s after connecting)") if firsts else ""
        dl = statistics.median(float(x[8]) for x in r) / gib
        print(f"  into {d:<10} {m:<4} from {s:<10} {v[0]:8.1f} MB/s {v[1]:6.2f} cpu s/GiB {v[2]:6.0f} MiB"
              f" (downloader {dl:.2f} cpu s/GiB){first}")
    b, l = med[d, m, "bitseed"], med[d, m, "libtorrent"]
    line = f"  into {d:<10} {m:<4} ratio bitseed/libtorrent: throughput {b[0] / l[0]:.2f}x, cpu per byte {b[1] / l[1]:.2f}x"
    if m != "tcp" and (d, "tcp", "bitseed") in med:
        line += f"; bitseed {m}/tcp throughput {b[0] / med[d, 'tcp', 'bitseed'][0]:.2f}x"
    print(line)
PYEOF
