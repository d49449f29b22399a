#!/usr/bin/env bash
# The prediction matrix: Qwen3-30B-A3B and gpt-oss-120b, uniform and Mode B, the three copy
# schedules, k = 2 and 3, one copy-bound and one compute-bound layer time, on N GPUs.
#
#   scripts/compare_matrix.sh gpu N OUTDIR
#       On a GPU machine, next to a bundle (scripts/bundle.sh): every case through
#       `dwdp run --backend cuda` under mpirun, JSON reports to OUTDIR/CASE.gpu.json.
#   scripts/compare_matrix.sh sim N PROFILE OUTDIR
#       Here: every case through the simulator with the calibrated PROFILE
#       (OUTDIR/CASE.sim.json), then `dwdp compare` against OUTDIR/CASE.gpu.json, and a
#       Markdown table (OUTDIR/table.md) of predicted vs measured copy time per layer (mean
#       over ranks) and forward time, and how far apart the GPU's own forwards were
#       ((max - min) / mean). Exits 1 when any case is beyond 10%.
#
# DWDP_SIM_SEED=N seeds the simulator's random fabric shares (profiles with
# fabric_share_spread; default 1): other seeds show how much of a case's error is the draw.
#
# DWDP_MATRIX_ONLY=REGEX keeps only the cases whose name (MODEL-PARTITION-SCHEDULE-kK-BOUND)
# matches, e.g. to split the GPU runs over calls: DWDP_MATRIX_ONLY='^qwen3' or '^gpt-oss'.
#
# GPU forwards run with --align-forwards: the simulator starts every rank's forward together,
# so the measurement does too (without it, ranks drift apart by whatever their setup took, and
# how much their copies overlap is an accident of the run).
set -uo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: compare_matrix.sh gpu N OUTDIR | compare_matrix.sh sim N PROFILE OUTDIR" >&2
  exit 2
}
[ $# -ge 3 ] || usage
what="$1"
n="$2"
[[ "$n" =~ ^(2|4)$ ]] || { echo "compare_matrix.sh: N is 2 or 4 (the scenario files)" >&2; exit 2; }

# CASE = model partition schedule k bound; the scenario file and the layer time follow.
scenario_of() {  # model partition
  local m="$1" p="$2"
  if [ "$n" = 2 ]; then
    [ "$p" = uniform ] && echo "scenarios/$m-h100x2-64x64.yaml" || echo "scenarios/$m-h100x2-66x62-modeb.yaml"
  else
    [ "$p" = uniform ] && echo "scenarios/$m-h100x4-32x32.yaml" || echo "scenarios/$m-h100x4-35x31-modeb.yaml"
  fi
}
# Copy-bound: 100 us of compute per layer, far below any layer's copy. Compute-bound: about
# 2.5x the single-pair copy time of a layer at d = 2 (Qwen3 64 x 2.65 MB, gpt-oss 64 x 14 MB).
layer_ns_of() {  # model bound
  case "$1/$2" in
    */copy) echo 100000 ;;
    qwen3-30b/compute) echo 1100000 ;;
    gpt-oss-120b/compute) echo 5600000 ;;
  esac
}
cases() {
  for m in qwen3-30b gpt-oss-120b; do
    for p in uniform modeb; do
      for s in rotate ascending round_robin; do
        for k in 2 3; do
          for b in copy compute; do
            [[ "$m-$p-$s-k$k-$b" =~ ${DWDP_MATRIX_ONLY:-.} ]] && echo "$m $p $s $k $b"
          done
        done
      done
    done
  done
}
run_case() {  # backend model partition schedule k bound [extra...]
  local backend="$1" m="$2" p="$3" s="$4" k="$5" b="$6"
  shift 6
  echo "$(scenario_of "$m" "$p")" --backend "$backend" --contention "$s" --num-buffers "$k" \
    --layer-compute-ns "$(layer_ns_of "$m" "$b")" --forwards 3 --format json "$@"
}

case "$what" in
  gpu)
    out="$3"
    mkdir -p "$out"
    source scripts/gpu_env.sh
    while read -r m p s k b; do
      name="$m-$p-$s-k$k-$b"
      # shellcheck disable=SC2046
      timeout 300 mpirun --allow-run-as-root --oversubscribe -np "$n" --bind-to none \
        -x LD_LIBRARY_PATH -x DWDP_CUDA_MODULE -x NCCL_NVLS_ENABLE \
        "$bundle/dwdp" run $(run_case cuda "$m" "$p" "$s" "$k" "$b" --align-forwards) \
        </dev/null >"$out/$name.gpu.json" 2>"$out/$name.gpu.err"
      echo "$name: exit $?"
    done < <(cases)
    ;;
  sim)
    [ $# -eq 4 ] || usage
    profile="$3"
    out="$4"
    dwdp="${DWDP:-build/default/cli/dwdp}"
    table="$out/table.md"
    {
      echo "| scenario | schedule | k | bound | copy/layer predicted | measured | error | forward predicted | measured | error | GPU forwards apart |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|"
    } >"$table"
    failed=0
    while read -r m p s k b; do
      name="$m-$p-$s-k$k-$b"
      if [ ! -s "$out/$name.gpu.json" ]; then
        echo "$name: no GPU report ($out/$name.gpu.json)" >&2
        failed=1
        continue
      fi
      # shellcheck disable=SC2046
      "$dwdp" run $(run_case sim "$m" "$p" "$s" "$k" "$b") --hardware "$profile" --no-hazards \
        --seed "${DWDP_SIM_SEED:-1}" \
        >"$out/$name.sim.json" || { echo "$name: simulation failed" >&2; failed=1; continue; }
      "$dwdp" compare "$out/$name.sim.json" "$out/$name.gpu.json" --format json \
        >"$out/$name.compare.json" 2>/dev/null || failed=1
      python3 - "$out/$name.compare.json" "$m" "$p" "$s" "$k" "$b" >>"$table" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
m, p, s, k, b = sys.argv[2:]
def mean(key, side):
    values = [r["mean_over_layers"][key][side] for r in c["ranks"]]
    return sum(values) / len(values)
def ms(ns): return f"{ns / 1e6:.3f} ms"
cp, cm = mean("copy_ns", "predicted"), mean("copy_ns", "measured")
fp, fm = c["totals"]["forward_ns"]["predicted"], c["totals"]["forward_ns"]["measured"]
err = lambda a, b: f"{(a - b) / b * 100:+.1f}%"
mark = "" if c["within_tolerance"] else " ✗"
spread = c.get("measured_forward_spread")
apart = "-" if spread is None else f"{spread * 100:.0f}%"
print(f"| {m} {p} | {s} | {k} | {b} | {ms(cp)} | {ms(cm)} | {err(cp, cm)} | {ms(fp)} | {ms(fm)} | {err(fp, fm)}{mark} | {apart} |")
EOF
    done < <(cases)
    cat "$table"
    fails=$(grep -c "✗" "$table")
    echo "cases beyond the tolerance (✗: a rank's mean copy time or the forward beyond 10%): $fails"
    [ "$failed" = 0 ] && [ "$fails" = 0 ]
    ;;
  *) usage ;;
esac
