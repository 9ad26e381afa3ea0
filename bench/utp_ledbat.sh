#!/usr/bin/env bash
# uTP congestion control behind a bottleneck: does a seed over uTP yield to the downloader's
# other traffic (LEDBAT, BEP 29) or compete with it (CUBIC)?
#
# The seeders and the downloader in network namespaces of their own, a router namespace between
# them whose link towards the downloader is a RATE token bucket with QUEUE_MS of queue (tbf), so
# queueing delay builds as on a home line's downlink (the base round trip is the veths', well
# under 1 ms: this kernel has no netem to add one). On the downloader's side: a libtorrent
# downloader over uTP only, curl fetching a big file from an HTTP server beside the seeders (the
# competing bulk TCP flow, its congestion control TCP_CC), and ping to the seeders' side (the
# delay the downloader's traffic sees). Cases: TCP alone; then for each uTP seeder (bitseed with LEDBAT,
# bitseed with CUBIC, a libtorrent 2.0 seeder, which implements LEDBAT) the uTP download alone
# and together with the TCP flow, SECS seconds each after WARM seconds of warm-up.
# Prints MB/s of each flow, the TCP flow's rate against its rate alone, and ping RTT median /
# p90, per run and as medians.
#
# Usage: bench/utp_ledbat.sh   (RATE=40mbit QUEUE_MS=300 SECS=20 WARM=8 RUNS=1 TCP_CC=cubic)
# Needs: root (ip netns, tc), ping, curl, /usr/bin/python3 with libtorrent.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "utp_ledbat.sh needs root (network namespace, tc)" >&2; exit 1; }

RATE=${RATE:-40mbit}
QUEUE_MS=${QUEUE_MS:-300}
TCP_CC=${TCP_CC:-cubic}
SECS=${SECS:-20}
WARM=${WARM:-8}
RUNS=${RUNS:-1}
PY=/usr/bin/python3

cargo build --release -q
BIN=$PWD/target/release/bitseed
WORK=$(mktemp -d /dev/shm/bitseed-ledbat.XXXXXX)
# Three namespaces: the seeders' side (S: bitseed, the libtorrent seeder, the HTTP server), a
# router (R) and the downloader's side (C), joined by veth pairs. The bottleneck is R's link
# towards C, as a home line's downlink: shaped in S itself, TCP small queues would keep the TCP
# flow's packets out of the queue and starve it.
S=bitseed-ledbat-s-$$
R=bitseed-ledbat-r-$$
C=bitseed-ledbat-c-$$
HOST=10.199.254.1
INSIDE=10.199.254.6
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in "$S" "$C"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  done
  wait 2>/dev/null || true
  for ns in "$S" "$R" "$C"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for ns in "$S" "$R" "$C"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip link add s0 netns "$S" type veth peer name r0 netns "$R"
ip link add r1 netns "$R" type veth peer name c0 netns "$C"
ip -n "$S" addr add "$HOST/30" dev s0
ip -n "$R" addr add 10.199.254.2/30 dev r0
ip -n "$R" addr add 10.199.254.5/30 dev r1
ip -n "$C" addr add "$INSIDE/30" dev c0
ip -n "$S" link set s0 up
ip -n "$R" link set r0 up
ip -n "$R" link set r1 up
ip -n "$C" link set c0 up
ip -n "$S" route add default via 10.199.254.2
ip -n "$C" route add default via 10.199.254.5
ip netns exec "$R" sysctl -q -w net.ipv4.ip_forward=1
# Towards the downloader: RATE, and a queue of QUEUE_MS at that rate (tbf's latency sets its
# byte limit).
ip netns exec "$R" tc qdisc add dev r1 root tbf rate "$RATE" burst 32kb latency "${QUEUE_MS}ms"
VN=c0
inns() { ip netns exec "$C" "$@"; }
ins() { ip netns exec "$S" "$@"; }

# 1 GiB: neither flow finishes within a case at a home line's rate.
head -c $((1024 << 20)) /dev/urandom > "$WORK/content.bin"
"$BIN" create "$WORK/content.bin" -o "$WORK/bench.torrent" --no-date --force > /dev/null
# The competing flow's server, with TCP_CC on its connections.
ins $PY bench/http_cc.py "$HOST" 8089 "$TCP_CC" "$WORK" > /dev/null 2>&1 & PIDS+=($!)
until inns curl -s -o /dev/null "http://$HOST:8089/"; do sleep 0.1; done
# What runs in S besides the seeders (the PIDs $! gives are those of subshells).
KEEP_PIDS=" $(ip netns pids "$S" | tr '\n' ' ') "

# Ends what a case started in the namespaces: the seeder in S, the downloader in C.
stop_case() {
  local p pids
  for _ in $(seq 50); do
    pids=$(ip netns pids "$C")
    for p in $(ip netns pids "$S"); do [[ "$KEEP_PIDS" == *" $p "* ]] || pids+=" $p"; done
    [ -z "${pids// /}" ] && return
    kill $pids 2> /dev/null || true
    sleep 0.1
  done
  kill -KILL $pids 2> /dev/null || true
}

declare -A RESULT

window() { # label with_tcp → measures SECS seconds; appends a line to RESULT[label]
  local label=$1 with_tcp=$2 tcp_bytes=0 link0 link1
  rm -f "$WORK/ping" "$WORK/curl"
  link0=$(inns cat "/sys/class/net/$VN/statistics/rx_bytes")
  inns ping -n -i 0.2 -w "$SECS" "$HOST" > "$WORK/ping" 2>&1 & local ping_pid=$!
  if [ "$with_tcp" = 1 ]; then
    inns curl -s -o /dev/null --max-time "$SECS" -w '%{size_download}' \
      "http://$HOST:8089/content.bin" > "$WORK/curl" || true
    tcp_bytes=$(cat "$WORK/curl")
  else
    sleep "$SECS"
  fi
  wait "$ping_pid" || true
  link1=$(inns cat "/sys/class/net/$VN/statistics/rx_bytes")
  local rtts
  rtts=$(sed -n 's/.*time=\([0-9.]*\) ms/\1/p' "$WORK/ping" | sort -n)
  local n med p90
  n=$(echo "$rtts" | grep -c . || true)
  med=$(echo "$rtts" | awk -v n="$n" 'NR == int((n + 1) / 2) { print; exit }')
  p90=$(echo "$rtts" | awk -v n="$n" 'NR == int(n * 0.9 + 0.5) { print; exit }')
  # The uTP flow: what crossed the link besides the TCP flow's payload (so it counts the
  # packet headers of both, about 3%).
  local tcp utp
  tcp=$(echo "$tcp_bytes $SECS" | awk '{ printf "%.2f", $1 / $2 / 1e6 }')
  utp=$(echo "$link1 $link0 $tcp_bytes $SECS" | awk '{ printf "%.2f", ($1 - $2 - $3) / $4 / 1e6 }')
  printf '%-22s tcp %5s MB/s  utp %5s MB/s  ping median %6s ms  p90 %6s ms\n' \
    "$label" "$tcp" "$utp" "${med:-?}" "${p90:-?}"
  RESULT[$label]+="$tcp $utp ${med:-0} ${p90:-0};"
}

run_seeder() { # kind (ledbat|cubic|libtorrent)
  rm -rf "$WORK/dl" "$WORK/seed.out"
  mkdir "$WORK/dl"
  if [ "$1" = libtorrent ]; then
    ins $PY bench/lt_seed.py "$WORK/bench.torrent" "$WORK" --mode utp --listen "$HOST" \
      > "$WORK/seed.out" 2> /dev/null &
  else
    ins "$BIN" seed "$WORK/bench.torrent" "$WORK/content.bin" --listen "$HOST:0" --no-announce \
      --utp-congestion "$1" > "$WORK/seed.out" 2> /dev/null &
  fi
  while ! grep -q "listening on" "$WORK/seed.out" 2> /dev/null; do sleep 0.05; done
  local peer
  peer=$(sed -n 's/^listening on //p' "$WORK/seed.out")
  inns $PY bench/lt_utp_leech.py "$WORK/bench.torrent" "$WORK/dl" "$peer" "$INSIDE" \
    > /dev/null 2>&1 &
  sleep "$WARM"
  window "$1 uTP alone" 0
  window "$1 uTP + TCP" 1
  stop_case
}

echo "link: $RATE, queue ${QUEUE_MS} ms, TCP $TCP_CC; ${SECS} s per case"
for run in $(seq "$RUNS"); do
  echo "run $run"
  window "idle" 0
  window "TCP alone" 1
  for kind in ledbat cubic libtorrent; do
    run_seeder "$kind"
  done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { echo "${RESULT[$1]}" | tr ';' '\n' | grep . | awk -v c="$2" '{ print $c }' | median; }
echo
echo "medians over $RUNS run(s):"
tcp_alone=$(col "TCP alone" 1)
printf '%-28s %9s %9s %11s %9s %9s\n' case "TCP MB/s" "uTP MB/s" "TCP share" "RTT med" "RTT p90"
for label in "idle" "TCP alone" "ledbat uTP alone" "ledbat uTP + TCP" "cubic uTP alone" \
  "cubic uTP + TCP" "libtorrent uTP alone" "libtorrent uTP + TCP"; do
  t=$(col "$label" 1)
  u=$(col "$label" 2)
  share=$(echo "$t $tcp_alone" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "-" }')
  printf '%-28s %9s %9s %11s %9s %9s\n' "$label" "$t" "$u" "$share" "$(col "$label" 3)" "$(col "$label" 4)"
done
