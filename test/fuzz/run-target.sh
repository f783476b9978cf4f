#!/usr/bin/env bash
# test/fuzz/run-target.sh MODE TARGET SECONDS — run one built fuzz target.
#
#   regress  replay corpus/TARGET and regressions/TARGET (every input must
#            pass), then fuzz SECONDS from them
#   fuzz     fuzz SECONDS from corpus/TARGET (and build/corpus/TARGET, where
#            new inputs go; the committed corpus is not touched)
#
# Prints one line "TARGET: N execs in S s (E exec/s), cov: C ft: F" and
# exits non-zero when libFuzzer found a crash, leak, timeout or UB; the
# input that did it is in build/artifacts/TARGET/.
set -uo pipefail

mode=$1 target=$2 seconds=$3
cd "$(dirname "${BASH_SOURCE[0]}")"
bin=build/$target
scratch=build/corpus/$target
artifacts=build/artifacts/$target/
log=build/$target.$mode.log
mkdir -p "$scratch" "$artifacts" "regressions/$target"

flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1
       -artifact_prefix="$artifacts")
[ -f "$target.dict" ] && flags+=(-dict="$target.dict")

if [ "$mode" = regress ]; then
    # every committed input, once; libFuzzer exits non-zero on any finding
    if ! "$bin" "${flags[@]}" -runs=0 "corpus/$target" "regressions/$target" >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "$target: FAILED replaying its corpus and regressions (log: test/fuzz/$log)"
        exit 1
    fi
fi

if ! "$bin" "${flags[@]}" -max_total_time="$seconds" \
        "$scratch" "corpus/$target" "regressions/$target" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "$target: FAILED while fuzzing; the input is in test/fuzz/$artifacts (log: test/fuzz/$log)"
    exit 1
fi

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
took=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$log" | tail -n 1)
took=${took:-$seconds}
echo "$target: ${execs:-0} execs in ${took} s ($(( ${execs:-0} / (took > 0 ? took : 1) )) exec/s), cov: ${cov:-?} ft: ${ft:-?}"
