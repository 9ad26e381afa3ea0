#!/usr/bin/env bash
# Torrent creation speed: bitseed side by side with mktorrent -t 2 and libtorrent's create_torrent,
# in the same run, on a 2 GiB random file and on 2,000 small files (4–64 KiB), page cache warm.
#
#   bench/create.sh [RUNS]        (default 3 runs of each; data under $BENCH_DIR, default /dev/shm)
#
# Every tool gets the same piece size: 2 MiB for the big file, 64 KiB for the small files (what
# bitseed's auto rule picks). Prints medians and bitseed's speed-up over each competitor.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DIR=${BENCH_DIR:-/dev/shm}/bitseed-bench-create
PY=/usr/bin/python3

for tool in mktorrent "$PY"; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install mktorrent python3-libtorrent)" >&2; exit 1; }
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
# time_of CMD...: wall seconds of one run.
time_of() {
  local s e
  s=$(date +%s.%N)
  "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A times
run_case() { # name command...
  local name=$1; shift
  times[$name]+="$(time_of "$@") "
}

for ((i = 1; i <= RUNS; i++)); do
  echo "round $i/$RUNS" >&2
  # Big file, v1.
  run_case "big v1 bitseed" "$BITSEED" create "$DIR/big.bin" -o "$OUT/b.torrent" --force -p 2M
  rm -f "$OUT/m.torrent"
  run_case "big v1 mktorrent" mktorrent -t 2 -l 21 -o "$OUT/m.torrent" "$DIR/big.bin"
  run_case "big v1 libtorrent" $PY bench/lt_create.py "$DIR/big.bin" "$OUT/l.torrent" $((2 << 20)) v1
  # Big file, hybrid.
  run_case "big hybrid bitseed" "$BITSEED" create "$DIR/big.bin" -o "$OUT/b.torrent" --force -p 2M -f hybrid
  run_case "big hybrid libtorrent" $PY bench/lt_create.py "$DIR/big.bin" "$OUT/l.torrent" $((2 << 20)) hybrid
  # Small files.
  run_case "small v1 bitseed" "$BITSEED" create "$DIR/small" -o "$OUT/b.torrent" --force -p 64K
  rm -f "$OUT/m.torrent"
  run_case "small v1 mktorrent" mktorrent -t 2 -l 16 -o "$OUT/m.torrent" "$DIR/small"
  run_case "small v1 libtorrent" $PY bench/lt_create.py "$DIR/small" "$OUT/l.torrent" 65536 v1
  run_case "small hybrid bitseed" "$BITSEED" create "$DIR/small" -o "$OUT/b.torrent" --force -p 64K -f hybrid
  run_case "small hybrid libtorrent" $PY bench/lt_create.py "$DIR/small" "$OUT/l.torrent" 65536 hybrid
done

big_bytes=$(stat -c %s "$DIR/big.bin")
small_bytes=$(find "$DIR/small" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
printf '\n%-24s %10s %10s %22s\n' "case" "median s" "MB/s" "bitseed speed-up"
for c in "big v1" "big hybrid" "small v1" "small hybrid"; do
  bytes=$big_bytes; [[ $c == small* ]] && bytes=$small_bytes
  ours=$(echo "${times[$c bitseed]}" | tr ' ' '\n' | grep . | median)
  for tool in bitseed mktorrent libtorrent; do
    [ -n "${times[$c $tool]:-}" ] || continue
    m=$(echo "${times[$c $tool]}" | tr ' ' '\n' | grep . | median)
    rate=$(echo "$bytes / $m / 1000000" | bc -l)
    ratio=""
    [ "$tool" != bitseed ] && ratio=$(printf '%.2fx vs %s' "$(echo "$m / $ours" | bc -l)" "$tool")
    printf '%-24s %10.3f %10.0f %22s\n' "$c $tool" "$m" "$rate" "$ratio"
  done
done
