#include "backends/cuda/dep/dep_kernels.h"

#include <cuda_runtime.h>

namespace dwdp::cuda::dep_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;

__global__ void GatherRowsKernel(const uint4* in, const int32_t* index, int64_t rows,
                                 int64_t vectors, uint4* out) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t from = index[row];
    for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
      out[row * vectors + v] = in[from * vectors + v];
    }
  }
}

}  // namespace

int LaunchGatherRows(void* stream, const uint16_t* in, const int32_t* index, int64_t rows,
                     int64_t hidden, uint16_t* out) {
  if (rows < 0 || hidden <= 0 || hidden % 8 != 0) return static_cast<int>(cudaErrorInvalidValue);
  if (rows == 0) return cudaSuccess;
  if (in == nullptr || index == nullptr || out == nullptr) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  const unsigned grid = static_cast<unsigned>(rows < kMaxGrid ? rows : kMaxGrid);
  GatherRowsKernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const uint4*>(in), index, rows, hidden / 8, reinterpret_cast<uint4*>(out));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace dwdp::cuda::dep_kernels
