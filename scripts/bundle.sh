#!/usr/bin/env bash
# Builds dwdp here and bundles it for a GPU machine that has CUDA, a driver and OpenMPI but none
# of our libraries: dist/dwdp/ holds the binaries (rpath $ORIGIN/lib), the cuda backend module,
# the GPU tests and every non-system shared library they need under lib/.
#
#   ./scripts/bundle.sh            # -> dist/dwdp (copy it to the GPU machine)
#   mpirun -np 2 dist/dwdp/dwdp run scenarios/qwen3-30b-h100x2-64x64.yaml --backend cuda
#   mpirun -np 2 dist/dwdp/engine_example       # the engine API (libdwdp.so in lib/)
#   dist/dwdp/moe_bench                         # the MoE layer on one GPU
#
# libc, libstdc++, the CUDA driver, MPI and the CUDA toolkit's cuBLAS and NCCL (hundreds of MB;
# /usr/local/cuda/lib64 there, see gpu_env.sh) are left out on purpose: the GPU machine's own
# libraries are used (MPI must match the mpirun that starts the job).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh default >/dev/null
out=dist/dwdp
rm -rf "$out"
mkdir -p "$out/lib"
bins=(build/default/cli/dwdp build/default/cli/dwdp_cuda_smoke build/default/cli/engine_example
  build/default/cli/moe_bench)
for t in build/default/tests/*_test; do bins+=("$t"); done
cp "${bins[@]}" "$out/"
cp build/default/cli/libdwdp_cuda.so build/default/cli/libdwdp.so "$out/lib/"
strip --strip-debug "$out"/* "$out"/lib/* 2>/dev/null || true
system_lib='^(libcublas|libcublasLt|libnccl|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux|libcuda|libmpi|libopen-|libhwloc|libevent|libpmix|libz|libudev|libnl|libibverbs|librdmacm|libfabric|libucp|libucs|libuct|libucm|libpsm|libltdl|libnuma|libmunge|libefa|libcrypto|libssl)'
for f in "$out"/* "$out"/lib/*; do
  [ -f "$f" ] || continue
  ldd "$f" 2>/dev/null | awk '/=> \//{print $3}' | while read -r lib; do
    name=$(basename "$lib")
    if ! [[ $name =~ $system_lib ]] && [ ! -e "$out/lib/$name" ]; then cp -L "$lib" "$out/lib/"; fi
  done
done
# The tests find the scenarios, profiles and test data next to themselves, and dwdp too
# (tests/support/test_paths.h), so the bundle runs wherever it is copied.
mkdir -p "$out/tests"
cp -r scenarios "$out/"
cp -r tests/data "$out/tests/"
du -sh "$out" | awk '{print "bundle: " $1 " in '"$out"'"}'
