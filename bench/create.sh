#!/usr/bin/env bash
# Torrent creation speed: bitseed side by side with mktorrent -t 2 and libtorrent's create_torrent,
# in the same run, on a 2 GiB random file and on 2,000 small files (4–64 KiB), page cache warm.
#
#   bench/create.sh [RUNS]        (default 5 runs of each after a warm-up, timed by hyperfine;
#                                  data under $BENCH_DIR, default /dev/shm)
#
# Every tool gets the same piece size: 2 MiB for the big file, 64 KiB for the small files (what
# bitseed's auto rule picks). Prints medians and bitseed's speed-up over each competitor.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
DIR=${BENCH_DIR:-/dev/shm}/bitseed-bench-create
PY=/usr/bin/python3

for tool in mktorrent hyperfine "$PY"; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install mktorrent hyperfine python3-libtorrent)" >&2; exit 1; }
done
cargo build --release --quiet
BITSEED=$PWD/target/release/bitseed

mkdir -p "$DIR"
if [ ! -f "$DIR/big.bin" ]; then
  echo "making $DIR/big.bin (2 GiB)" >&2
  head -c $((2 * 1024 * 1024 * 1024)) /dev/urandom > "$DIR/big.bin"
fi
if [ ! -d "$DIR/small" ]; then
  echo "making $DIR/small (2,000 files of 4-64 KiB)" >&2
  $PY - "$DIR/small" <<'PYEOF'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(7)
for i in range(2000):
    d = os.path.join(root, "d%02d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%04d.bin" % i), "wb") as f:
        f.write(os.urandom(rnd.randint(4, 64) * 1024))
PYEOF
fi
# Warm the page cache.
cat "$DIR/big.bin" > /dev/null
find "$DIR/small" -type f -exec cat {} + > /dev/null

OUT=$DIR/out
mkdir -p "$OUT"
JSON=$DIR/json
mkdir -p "$JSON"

# One case: every tool's command timed by hyperfine in the same run (warm-up first, then RUNS
# runs each); the medians land in $JSON/CASE.json.
bench_case() { # name bytes command...
  local name=$1; shift
  hyperfine -N --style none --warmup 1 --runs "$RUNS" \
    --prepare "rm -f $OUT/m.torrent" \
    --export-json "$JSON/${name// /_}.json" "$@" > /dev/null
}

echo "timing (each command $RUNS times after a warm-up)" >&2
bench_case "big v1" \
  -n bitseed "$BITSEED create $DIR/big.bin -o $OUT/b.torrent --force -p 2M" \
  -n mktorrent "mktorrent -t 2 -l 21 -o $OUT/m.torrent $DIR/big.bin" \
  -n libtorrent "$PY bench/lt_create.py $DIR/big.bin $OUT/l.torrent $((2 << 20)) v1"
bench_case "big hybrid" \
  -n bitseed "$BITSEED create $DIR/big.bin -o $OUT/b.torrent --force -p 2M -f hybrid" \
  -n libtorrent "$PY bench/lt_create.py $DIR/big.bin $OUT/l.torrent $((2 << 20)) hybrid"
bench_case "small v1" \
  -n bitseed "$BITSEED create $DIR/small -o $OUT/b.torrent --force -p 64K" \
  -n mktorrent "mktorrent -t 2 -l 16 -o $OUT/m.torrent $DIR/small" \
  -n libtorrent "$PY bench/lt_create.py $DIR/small $OUT/l.torrent 65536 v1"
bench_case "small hybrid" \
  -n bitseed "$BITSEED create $DIR/small -o $OUT/b.torrent --force -p 64K -f hybrid" \
  -n libtorrent "$PY bench/lt_create.py $DIR/small $OUT/l.torrent 65536 hybrid"

big_bytes=$(stat -c %s "$DIR/big.bin")
small_bytes=$(find "$DIR/small" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
$PY - "$JSON" "$big_bytes" "$small_bytes" <<'PYEOF'
import json, os, sys
jdir, big, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("\n%-26s %10s %10s   %s" % ("case", "median s", "MB/s", "bitseed speed-up"))
for case in ["big v1", "big hybrid", "small v1", "small hybrid"]:
    results = json.load(open(os.path.join(jdir, case.replace(" ", "_") + ".json")))["results"]
    med = {r["command"]: r["median"] for r in results}
    size = big if case.startswith("big") else small
    for tool, m in med.items():
        ratio = "" if tool == "bitseed" else "%.2fx vs %s" % (m / med["bitseed"], tool)
        print("%-26s %10.3f %10.0f   %s" % (case + " " + tool, m, size / m / 1e6, ratio))
PYEOF
