# Sourced on a GPU machine next to a bundle from scripts/bundle.sh: library paths (the bundle's,
# then the CUDA toolkit's for cuBLAS and NCCL), the module, and the launch line. NVLink
# multicast stays off (NCCL_NVLS_ENABLE=0).
bundle="${DWDP_BUNDLE:-$(pwd)/dist/dwdp}"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# NCCL (the DEP baseline) is not always installed with the toolkit; PyTorch's wheels bring one.
if ! ls /usr/local/cuda/lib64/libnccl.so.2 /usr/local/cuda/lib/libnccl.so.2 >/dev/null 2>&1; then
  nccl_dir=$(find / -path /proc -prune -o -name libnccl.so.2 -print 2>/dev/null | head -1 | xargs -r dirname)
  [ -n "$nccl_dir" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$nccl_dir"
fi
export DWDP_CUDA_MODULE="$bundle/lib/libdwdp_cuda.so"
export NCCL_NVLS_ENABLE=0
dwdp_mpirun() {
  local np="$1"
  shift
  mpirun --allow-run-as-root --oversubscribe -np "$np" --bind-to none \
    -x LD_LIBRARY_PATH -x DWDP_CUDA_MODULE -x NCCL_NVLS_ENABLE "$@"
}
