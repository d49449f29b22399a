#!/usr/bin/env bash
# The GPU acceptance runs of the cuda backend on one machine with N GPUs (2, 4 or 8): GPU unit
# tests, functional runs that verify every byte (uniform and Mode B, k = 2 and 3, 3 forwards),
# the copy schedules in timing mode, every planted fault, and a rank killed during setup.
# With 8: gpt-oss-120b BF16 with the real MoE kernel at d = 8, 7 and 5, calibrate at 8 and the
# simulator against it, and DWDP against the DEP baseline at d = 2, 4 and 8.
# Needs a bundle (scripts/bundle.sh). Logs and JSON reports go to $OUT (default: gpu-out/).
#
#   ./scripts/gpu_check.sh 2
#   ./scripts/gpu_check.sh 8
set -uo pipefail
cd "$(dirname "$0")/.."
n="${1:?usage: gpu_check.sh NUM_GPUS}"
out="${OUT:-gpu-out}"
mkdir -p "$out"
source scripts/gpu_env.sh
b="$bundle"
mpi=(mpirun --allow-run-as-root --oversubscribe -np "$n" --bind-to none
     -x LD_LIBRARY_PATH -x DWDP_CUDA_MODULE -x NCCL_NVLS_ENABLE -x DWDP_TEST_EXIT_AFTER_EXPORT_RANK)
log="$out/gpu-check-$n.log"
: >"$log"
summary() { grep -E "^(==|error:|forward |  rank [0-9]+: achieved|no hazard)" "$1" | head -"${2:-12}"; }
step() {  # step NAME EXPECTED_EXIT CMD...
  local name="$1" expected="$2"
  shift 2
  local t0=$SECONDS
  timeout "${STEP_TIMEOUT:-300}" "$@" >"$out/step.txt" 2>&1
  local rc=$?
  local verdict=ok
  [ "$rc" = "$expected" ] || verdict="UNEXPECTED (wanted $expected)"
  { echo "== $name: exit $rc $verdict ($((SECONDS - t0)) s)"; cat "$out/step.txt"; } >>"$log"
  echo "== $name: exit $rc $verdict ($((SECONDS - t0)) s)"
  grep -E "^(error:|forward |  rank [0-9]+: achieved|no hazard|rank [0-9]+ on )" "$out/step.txt" | head -6
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -"$n"
step "GPU unit tests" 0 "$b/cuda_backend_test"

if [ "$n" = 8 ]; then
  # gpt-oss-120b BF16 with the real MoE kernel on 8 GPUs: functional d = 8 uniform, Mode B d = 7
  # and d = 5 (3 forwards, every byte and output checked), the copy schedules with 7 peers
  # aligned and free, calibrate at 8 and the simulator's prediction of the d = 8 runs, and
  # DWDP against the DEP baseline (NCCL) at d = 2, 4 and 8.
  # Whole 36-layer forwards of gpt-oss-120b take longer than the 2- and 4-GPU cases.
  STEP_TIMEOUT=900
  mpin=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x DWDP_CUDA_MODULE
        -x NCCL_NVLS_ENABLE)
  for s in gpt-oss-120b-bf16-h200x8-16x16:8 gpt-oss-120b-bf16-h200x8-d7-20x18-modeb:7 \
           gpt-oss-120b-bf16-h200x8-d5-28x25-modeb:5; do
    step "functional ${s%%:*} on ${s##*:} GPUs" 0 "${mpin[@]}" -np "${s##*:}" "$b/dwdp" run "scenarios/${s%%:*}.yaml" \
      --backend cuda --mode functional --forwards 3
  done
  d8=scenarios/gpt-oss-120b-bf16-h200x8-16x16.yaml
  for c in rotate ascending round_robin; do
    step "timing d=8 $c" 0 "${mpin[@]}" -np 8 "$b/dwdp" run "$d8" --backend cuda --contention "$c" --forwards 3 \
      --format json
    cp "$out/step.txt" "$out/timing-8-$c.json"
    step "timing d=8 $c, aligned forwards" 0 "${mpin[@]}" -np 8 "$b/dwdp" run "$d8" --backend cuda --contention "$c" \
      --forwards 3 --align-forwards --format json
    cp "$out/step.txt" "$out/timing-8-$c-aligned.json"
  done
  gpu=h100
  nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && gpu=h200
  step "calibrate at 8" 0 "${mpin[@]}" -np 8 "$b/dwdp" calibrate --base "$gpu-sxm" --out "$out/$gpu-x8.yaml" \
    --raw "$out/$gpu-x8-raw.json"
  for c in rotate ascending round_robin; do
    step "simulator d=8 $c with the calibrated profile" 0 "$b/dwdp" run "$d8" --hardware "$out/$gpu-x8.yaml" \
      --contention "$c" --forwards 3 --align-forwards --format json
    cp "$out/step.txt" "$out/sim-8-$c.json"
    step "prediction d=8 $c (within 10%)" 0 "$b/dwdp" compare "$out/sim-8-$c.json" "$out/timing-8-$c-aligned.json"
  done
  # DEP (data-parallel attention, expert-parallel MoE, NCCL all-to-all) against DWDP on the same
  # GPUs and scenario (12 MoE layers, so that DEP at ep_size 2 fits 64 experts per GPU).
  for d in 2 4 8; do
    case $d in 2) p=64x64 ;; 4) p=32x32 ;; 8) p=16x16 ;; esac
    sc="scenarios/gpt-oss-120b-bf16-h200x8-d$d-$p-l12.yaml"
    step "DEP functional at $d" 0 "${mpin[@]}" -np "$d" "$b/dwdp" run "$sc" --backend cuda --baseline dep --mode functional \
      --forwards 1
    step "DWDP timing at $d" 0 "${mpin[@]}" -np "$d" "$b/dwdp" run "$sc" --backend cuda --forwards 3 --format json
    cp "$out/step.txt" "$out/dwdp-$d.json"
    step "DEP timing at $d" 0 "${mpin[@]}" -np "$d" "$b/dwdp" run "$sc" --backend cuda --baseline dep --forwards 3 \
      --format json
    cp "$out/step.txt" "$out/dep-$d.json"
    step "DEP/DWDP at $d against the planner" 0 "$b/dwdp" compare "$out/dwdp-$d.json" "$out/dep-$d.json"
    cp "$out/step.txt" "$out/dep-vs-dwdp-$d.txt"
  done
  step "DEP with no token spread at 8" 0 "${mpin[@]}" -np 8 "$b/dwdp" run scenarios/gpt-oss-120b-bf16-h200x8-d8-16x16-l12.yaml \
    --backend cuda --baseline dep --tokens-cv 0 --forwards 3 --format json
  cp "$out/step.txt" "$out/dep-8-cv0.json"
  step "DEP refuses two ranks on one GPU" 2 env CUDA_VISIBLE_DEVICES=0 mpirun --allow-run-as-root \
    --oversubscribe -np 2 --bind-to none -x LD_LIBRARY_PATH -x DWDP_CUDA_MODULE -x NCCL_NVLS_ENABLE \
    -x CUDA_VISIBLE_DEVICES "$b/dwdp" run scenarios/gpt-oss-120b-bf16-h200x8-d2-64x64-l12.yaml --backend cuda \
    --baseline dep
  echo "log: $log"
  exit 0
fi

if [ "$n" = 2 ]; then
  functional=(qwen3-30b-h100x2-64x64 qwen3-30b-h100x2-66x62-modeb gpt-oss-120b-h100x2-64x64
              gpt-oss-120b-h100x2-66x62-modeb)
  timing=gpt-oss-120b-h100x2-64x64-full
  faults=qwen3-30b-h100x2-66x62-modeb
else
  functional=(qwen3-30b-h100x4-32x32 qwen3-30b-h100x4-35x31-modeb gpt-oss-120b-h100x4-32x32
              gpt-oss-120b-h100x4-35x31-modeb)
  timing=gpt-oss-120b-h100x4-32x32-full
  faults=qwen3-30b-h100x4-35x31-modeb
fi
for s in "${functional[@]}"; do
  for k in 2 3; do
    step "functional $s k=$k" 0 "${mpi[@]}" "$b/dwdp" run "scenarios/$s.yaml" --backend cuda \
      --mode functional --forwards 3 --num-buffers "$k"
  done
done
for c in rotate ascending round_robin; do
  step "timing $timing $c" 0 "${mpi[@]}" "$b/dwdp" run "scenarios/$timing.yaml" --backend cuda \
    --contention "$c" --forwards 3 --format json
  cp "$out/step.txt" "$out/timing-$n-$c.json"
  step "timing $timing $c, aligned forwards" 0 "${mpi[@]}" "$b/dwdp" run \
    "scenarios/$timing.yaml" --backend cuda --contention "$c" --forwards 3 --align-forwards \
    --format json
  cp "$out/step.txt" "$out/timing-$n-$c-aligned.json"
done
for f in bad-copy-offset partial-map; do
  step "inject $f" 1 "${mpi[@]}" "$b/dwdp" run "scenarios/$faults.yaml" --backend cuda \
    --mode functional --forwards 3 --inject "$f"
done
# The two pipeline races only corrupt bytes when a copy is still running while the kernel reads:
# 20 us of compute per layer against ~0.5 ms of copy gives that copy pressure.
for f in free-at-bind skip-ready-wait; do
  step "inject $f under copy pressure" 1 "${mpi[@]}" "$b/dwdp" run "scenarios/$faults.yaml" \
    --backend cuda --mode functional --forwards 3 --inject "$f" --layer-compute-ns 20000
done
step "host cost without GPU timing events" 0 "${mpi[@]}" "$b/dwdp" run \
  "scenarios/$timing.yaml" --backend cuda --forwards 3 --no-gpu-timing
export DWDP_TEST_EXIT_AFTER_EXPORT_RANK=1
step "rank 1 exits after exporting" 3 "${mpi[@]}" "$b/dwdp" run "scenarios/$faults.yaml" \
  --backend cuda --timeout 20
