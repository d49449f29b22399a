#!/usr/bin/env bash
# Builds one libFuzzer target of tests/fuzz (the `fuzz` preset, clang) and runs it.
#
#   scripts/fuzz.sh TARGET SECONDS [LIBFUZZER_FLAG...]
#
# SECONDS > 0: fuzzes for that long, starting from the seed corpus tests/fuzz/corpus/TARGET plus
#   whatever earlier runs found (build/fuzz/corpus/TARGET, a working copy; the seeds in the
#   repository are never written). A crashing input is kept as build/fuzz/crashes/TARGET/crash-*.
# SECONDS = 0: replays the seed corpus once (a quick regression check) and exits.
#
# Prints the executions and crashes, and exits non-zero when a crash was found. The libFuzzer
# log is build/fuzz/logs/TARGET.log. Runs under `nice`: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh TARGET SECONDS [LIBFUZZER_FLAG...]   (SECONDS=0 replays the seeds)" >&2
  exit 2
fi
target="$1"
seconds="$2"
shift 2
seeds="tests/fuzz/corpus/${target}"
if [ ! -f "tests/fuzz/${target}.cc" ] || [ ! -d "$seeds" ]; then
  echo "fuzz.sh: no target '${target}' (expected tests/fuzz/${target}.cc and ${seeds}/)" >&2
  exit 2
fi

# DWDP_FUZZ_PRESET=ci-sanitize reuses CI's clang build (unit tests and fuzz targets in one).
preset="${DWDP_FUZZ_PRESET:-fuzz}"
dir="build/${preset}"
if [ ! -f "${dir}/build.ninja" ]; then
  cmake --preset "$preset" >/dev/null
fi
nice -n 10 cmake --build "$dir" --target "$target" -j2 >/dev/null
binary="${dir}/tests/fuzz/${target}"

crashes="${dir}/crashes/${target}"
work_corpus="${dir}/corpus/${target}"
mkdir -p "$crashes" "$work_corpus" "${dir}/logs"
log="${dir}/logs/${target}.log"

flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "-artifact_prefix=${crashes}/")
if [ -f "tests/fuzz/${target}.dict" ]; then
  flags+=("-dict=tests/fuzz/${target}.dict")
fi

crashes_before=$(find "$crashes" -type f | wc -l)
marker="${dir}/logs/${target}.started"
touch "$marker"
started=$SECONDS
status=0
if [ "$seconds" -eq 0 ]; then
  # -runs=0 executes every corpus input once and stops.
  nice -n 10 "$binary" "${flags[@]}" -runs=0 "$@" "$seeds" >"$log" 2>&1 || status=$?
else
  nice -n 10 "$binary" "${flags[@]}" -max_total_time="$seconds" "$@" "$work_corpus" "$seeds" \
    >"$log" 2>&1 || status=$?
fi
elapsed=$((SECONDS - started))
crashes_after=$(find "$crashes" -type f | wc -l)
new_crashes=$((crashes_after - crashes_before))

# Final stats when libFuzzer ends normally; after a crash, the last progress line's count.
executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
if [ -z "$executions" ]; then
  executions=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
fi
corpus_size=$(find "$work_corpus" -type f | wc -l)
if [ "$seconds" -eq 0 ]; then
  echo "${target}: replayed $(find "$seeds" -type f | wc -l) seed inputs, status ${status}"
else
  echo "${target}: ${executions:-?} executions in ${elapsed} s, working corpus ${corpus_size} inputs"
fi
if [ "$new_crashes" -gt 0 ] || [ "$status" -ne 0 ]; then
  echo "${target}: CRASH (libFuzzer exit ${status}); ${new_crashes} new input(s) in ${crashes}/:"
  find "$crashes" -type f -newer "$marker" -printf '  %p\n'
  grep -E "fuzz property violated|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY" "$log" |
    head -5 | sed 's/^/  /'
  echo "  full log: ${log}"
  exit 1
fi
echo "${target}: no crash"
