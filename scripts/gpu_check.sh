#!/usr/bin/env bash
# The GPU acceptance runs of the cuda backend on one machine with N GPUs (2 or 4): GPU unit
# tests, functional runs that verify every byte (uniform and Mode B, k = 2 and 3, 3 forwards),
# the copy schedules in timing mode, every planted fault, and a rank killed during setup.
# Needs a bundle (scripts/bundle.sh). Logs and JSON reports go to $OUT (default: gpu-out/).
#
#   ./scripts/gpu_check.sh 2
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
  timeout 300 "$@" >"$out/step.txt" 2>&1
  local rc=$?
  local verdict=ok
  [ "$rc" = "$expected" ] || verdict="UNEXPECTED (wanted $expected)"
  { echo "== $name: exit $rc $verdict ($((SECONDS - t0)) s)"; cat "$out/step.txt"; } >>"$log"
  echo "== $name: exit $rc $verdict ($((SECONDS - t0)) s)"
  grep -E "^(error:|forward |  rank [0-9]+: achieved|no hazard|rank [0-9]+ on )" "$out/step.txt" | head -6
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -"$n"
step "GPU unit tests" 0 "$b/cuda_backend_test"

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
