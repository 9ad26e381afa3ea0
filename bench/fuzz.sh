#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each, one after another, at the lowest CPU
# priority. New corpus entries go to fuzz/target/corpus/TARGET (the committed seeds in
# fuzz/corpus/TARGET are read, never written); crashes land in fuzz/artifacts/TARGET — copy them
# to tests/fuzz_regressions/TARGET/ so CI replays them. While /tmp/PAUSE_FUZZ exists, waits
# before starting the next target (others benchmark on the same machine).
#
#   bench/fuzz.sh 600            # every target, 10 minutes each
#   bench/fuzz.sh 60 magnet      # only the named targets
#
# Needs `cargo install cargo-fuzz`; RUSTC_BOOTSTRAP=1 lets a stable toolchain build with the
# nightly flags cargo-fuzz uses. Sanitizer: ASan unless FUZZ_SANITIZER says otherwise (e.g. none).
set -euo pipefail
seconds=${1:?usage: bench/fuzz.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s "$sanitizer" -a
# The built binaries run directly: no cargo process (and no cargo lock) is held while fuzzing,
# so a paused or long run never blocks anyone's build.
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
status=0
for t in "${targets[@]}"; do
    while [ -e /tmp/PAUSE_FUZZ ]; do sleep 10; done
    mkdir -p "target/corpus/$t"
    echo "== $t: ${seconds}s from $(date -u +%H:%M:%S)"
    mkdir -p "artifacts/$t"
    if ! nice -n 19 "$bin/$t" -artifact_prefix="artifacts/$t/" "target/corpus/$t" "corpus/$t" \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 -print_final_stats=1; then
        echo "== $t FAILED: see fuzz/artifacts/$t"
        status=1
    fi
done
exit $status
