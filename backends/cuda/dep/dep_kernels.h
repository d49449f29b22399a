#pragma once

// Device kernels of the DEP baseline (dep_kernels.cu). Plain C++ on both sides of nvcc.

#include <cstdint>

namespace dwdp::cuda::dep_kernels {

// out[i, :] = in[index[i], :] for i < rows; rows of `hidden` bf16 (hidden % 8 == 0, 16-byte
// aligned buffers). Returns the launch's cudaError_t value.
int LaunchGatherRows(void* stream, const uint16_t* in, const int32_t* index, int64_t rows,
                     int64_t hidden, uint16_t* out);

}  // namespace dwdp::cuda::dep_kernels
