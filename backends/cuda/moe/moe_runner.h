#pragma once

// The real MoE kernel behind the cuda backend's MoeKernel launches (CudaStreams' MoeExtension):
// one MoeLayer per model shape and token count, the routing of every layer planned and the GEMM
// strategy tuned at setup, and the functional check that the layer's output computed on the
// composite tensors equals, bit for bit, the same kernel on an ordinary fully resident copy of
// the layer's weights.

#include <memory>

#include "backends/cuda/cuda_streams.h"

namespace dwdp::cuda::moe {

std::unique_ptr<MoeExtension> MakeMoeRunner(int64_t rank);

}  // namespace dwdp::cuda::moe
