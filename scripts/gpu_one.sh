#!/usr/bin/env bash
# The GPU checks that need only ONE GPU: several ranks share it (local rank modulo the device
# count), so everything is functional; timings of shared runs mean nothing, so compute is timed
# by `dwdp calibrate --only compute` with one rank. Needs a bundle (scripts/bundle.sh).
# Logs, JSON reports and profiles go to $OUT (default: gpu-out/).
#
#   ./scripts/gpu_one.sh tests      # the bundle's unit tests (GPU cases run here)
#   ./scripts/gpu_one.sh moe        # MoE kernel benchmark and functional runs of the BF16 scenarios
#   ./scripts/gpu_one.sh options    # --no-gpu-timing, --align-forwards, --timeout shown to act
#   ./scripts/gpu_one.sh calibrate  # measured MoE compute tables (and held-out token counts)
#   ./scripts/gpu_one.sh reference  # torch._grouped_mm on this GPU next to our MoE kernel
#   ./scripts/gpu_one.sh torch      # the PyTorch package: bitwise logits, memory per rank
#                                   # (torch-tests: the unit tests without the example)
#   ./scripts/gpu_one.sh prefetch   # calibrate --only prefetch, 2 ranks on one GPU: the flag start,
#                                   # the rotation and the fit run (functional only: shared timings)
#   ./scripts/gpu_one.sh dep        # the DEP baseline at ep_size 1, and its refusal of a shared GPU
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
source scripts/gpu_env.sh
b="$bundle"
export DWDP_SOURCE_DIR="$PWD"
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x DWDP_CUDA_MODULE
     -x NCCL_NVLS_ENABLE -x DWDP_TEST_EXIT_AFTER_EXPORT_RANK -x DWDP_SOURCE_DIR)
step() {  # step NAME EXPECTED_EXIT TIMEOUT CMD...
  local name="$1" expected="$2" limit="$3"
  shift 3
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/step.txt" 2>&1
  local rc=$?
  local verdict=ok
  [ "$rc" = "$expected" ] || verdict="UNEXPECTED (wanted $expected)"
  { echo "== $name: exit $rc $verdict ($((SECONDS - t0)) s)"; cat "$out/step.txt"; } >>"$out/gpu-one.log"
  echo "== $name: exit $rc $verdict ($((SECONDS - t0)) s)"
  grep -E "^(error:|forward |  rank [0-9]+:|no hazard|\*\*\*|rank [0-9]+: )" "$out/step.txt" | head -8
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# The hardware preset the calibration starts from, and the name of what it writes.
gpu=h100
nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && gpu=h200
for stage in "$@"; do
  case "$stage" in
    tests)
      for t in moe_layer_test cuda_backend_test run_path_test test_paths_test conformance_test dep_gpu_test; do
        step "$t" 0 240 "$b/$t" --report_level=short
      done
      # With a GPU visible it checks the refusals and skips (77) what needs a group of ranks;
      # the engine example below runs that part.
      step "engine_api_test" 77 60 "$b/engine_api_test"
      step "engine example, 2 ranks on one GPU" 0 120 "${mpi[@]}" -np 2 "$b/engine_example"
      ;;
    moe)
      step "MoE kernel benchmark" 0 240 "$b/moe_bench" --strategy all
      cp "$out/step.txt" "$out/moe-bench.txt"
      for s in moe-small-d3-6x5-modeb:3 qwen3-30b-bf16-h200x2-64x64:2 qwen3-30b-bf16-h200x2-66x62-modeb:2 \
               qwen3-30b-bf16-h200x4-35x31-modeb:4 dsv3-lite-bf16-h200x2-40x32-modeb:2 \
               gpt-oss-120b-bf16-h200x4-32x32:4; do
        ks="3"
        case "$s" in moe-small*|*66x62-modeb*) ks="2 3" ;; esac
        # gpt-oss with 4 ranks on one GPU needs more than 80 GB (each rank's local experts, pool
        # and resident reference copy): on an 80 GB GPU it must stop with one sentence (exit 2).
        expected=0
        [ "$gpu" = h100 ] && [ "${s%%:*}" = gpt-oss-120b-bf16-h200x4-32x32 ] && expected=2
        for k in $ks; do
          step "functional ${s%%:*} k=$k, ${s##*:} ranks on one GPU" "$expected" 300 "${mpi[@]}" -np "${s##*:}" "$b/dwdp" run \
            "scenarios/${s%%:*}.yaml" --backend cuda --mode functional --forwards 3 --num-buffers "$k"
        done
      done
      ;;
    options)
      s=scenarios/qwen3-30b-h100x2-66x62-modeb.yaml
      step "timing, 2 ranks on one GPU" 0 120 "${mpi[@]}" -np 2 "$b/dwdp" run $s --backend cuda --forwards 3 \
        --format json
      cp "$out/step.txt" "$out/options-default.json"
      step "--no-gpu-timing" 0 120 "${mpi[@]}" -np 2 "$b/dwdp" run $s --backend cuda --forwards 3 --no-gpu-timing \
        --format json
      cp "$out/step.txt" "$out/options-no-gpu-timing.json"
      step "--align-forwards with a trace" 0 120 "${mpi[@]}" -np 2 "$b/dwdp" run $s --backend cuda --forwards 3 \
        --align-forwards --trace "$out/aligned-trace.json" --format json
      cp "$out/step.txt" "$out/options-aligned.json"
      # Exit 3 is the leaving rank's own code: OpenMPI aborts the job when a rank exits non-zero,
      # which may end rank 0 before its deadline; rank 0's timeout sentence shows only where the
      # launcher lets the job run on (OpenMPI: --mca orte_abort_on_non_zero_status 0).
      export DWDP_TEST_EXIT_AFTER_EXPORT_RANK=1
      step "--timeout 7 with rank 1 gone after export" 3 60 "${mpi[@]}" -np 2 "$b/dwdp" run $s --backend cuda \
        --timeout 7
      unset DWDP_TEST_EXIT_AFTER_EXPORT_RANK
      step "--timeout on the simulator is refused" 2 30 "$b/dwdp" run $s --timeout 7
      ;;
    calibrate)
      # The default grid (256, 512, 1K ... 64K tokens), then counts half-way between its points
      # (in log) and a shape it never measured, to check the predictions the table gives.
      shapes=(--moe-shape 2048,768,128,8 --moe-shape 2880,2880,128,4 --moe-shape 7168,2048,256,8)
      step "calibrate compute, 1 rank" 0 420 "${mpi[@]}" -np 1 "$b/dwdp" calibrate --only compute --base "$gpu-sxm" \
        "${shapes[@]}" --out "$out/$gpu-moe.yaml" --raw "$out/$gpu-moe-raw.json"
      step "calibrate compute at held-out token counts and a held-out shape (72 experts)" 0 300 "${mpi[@]}" -np 1 \
        "$b/dwdp" calibrate --only compute --base "$gpu-sxm" "${shapes[@]}" --moe-shape 7168,2048,72,8 \
        --moe-tokens 768,3072,12288,49152 --out "$out/$gpu-moe-heldout.yaml" --raw "$out/$gpu-moe-heldout-raw.json"
      ;;
    reference)
      # torch._grouped_mm timed on this GPU next to our kernel's GEMM part (bench/torch_moe_reference.py).
      "$b/moe_bench" --strategy all --format json >"$out/moe-bench.json" 2>>"$out/gpu-one.log"
      step "torch._grouped_mm on this GPU vs ours" 0 300 python3 bench/torch_moe_reference.py "$out/moe-bench.json"
      ;;
    dep)
      # The DEP baseline's path at ep_size 1 (one rank, the NCCL communicator of one, the MoE
      # kernel on every expert, combine), checked against the resident-weights kernel; the
      # refusal of timing runs with two ranks on one GPU (NCCL needs one GPU per rank), and
      # functional runs of ranks sharing the GPU through the host-staged exchange.
      step "dep_gpu_test" 0 240 "$b/dep_gpu_test" --report_level=short
      step "DEP ep_size 1 functional, small model" 0 120 "$b/dwdp" run scenarios/moe-small-d3-6x5-modeb.yaml \
        --backend cuda --baseline dep --ep-size 1 --mode functional
      step "DEP ep_size 1 functional, gpt-oss-120b BF16 4 layers" 0 300 "$b/dwdp" run \
        scenarios/gpt-oss-120b-bf16-h200x4-32x32.yaml --backend cuda --baseline dep --ep-size 1 --mode functional
      step "DEP ep_size 1 timing" 0 300 "$b/dwdp" run scenarios/gpt-oss-120b-bf16-h200x4-32x32.yaml \
        --backend cuda --baseline dep --ep-size 1 --format json
      step "DEP timing with 2 ranks on one GPU is refused" 2 120 "${mpi[@]}" -np 2 "$b/dwdp" run \
        scenarios/moe-small-d3-6x5-modeb.yaml --backend cuda --baseline dep --ep-size 2
      step "DEP functional with 2 ranks on one GPU (host-staged exchange)" 0 300 "${mpi[@]}" -np 2 \
        "$b/dwdp" run scenarios/moe-small-d3-6x5-modeb.yaml --backend cuda --baseline dep --ep-size 2 \
        --mode functional
      step "DEP functional with 4 ranks on one GPU, gpt-oss-120b BF16" 0 180 "${mpi[@]}" -np 4 \
        "$b/dwdp" run scenarios/gpt-oss-120b-bf16-h200x4-32x32.yaml --backend cuda --baseline dep \
        --mode functional --forwards 1
      ;;
    torch | torch-tests)
      export DWDP_LIBRARY="$b/lib/libdwdp.so" PYTHONPATH="$PWD/python" PYTHONUNBUFFERED=1
      if [ "$stage" = torch ]; then
        step "torch example, 2 ranks on one GPU" 0 300 torchrun --nproc-per-node 2 examples/torch_moe.py --all
      fi
      step "torch GPU tests, 2 ranks on one GPU" 0 300 torchrun --nproc-per-node 2 \
        tests/python/gpu_torch_test.py -v
      ;;
    prefetch)
      step "calibrate --only prefetch, 2 ranks on one GPU (functional)" 0 300 "${mpi[@]}" -np 2 "$b/dwdp" \
        calibrate --only prefetch --base "$gpu-sxm" --max-bytes 64MiB --repetitions 2 --prefetch-drift 0,1 \
        --out "$out/prefetch-shared.yaml" --raw "$out/prefetch-shared-raw.json"
      ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
rm -f "$out/step.txt"
