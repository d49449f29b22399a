#pragma once

// The process-wide CudaBackendFactory. The module's entry point returns it; tests that link
// dwdp_cuda directly may use it too.

#include "backends/cuda/cuda_backend_factory.h"

namespace dwdp::cuda {

CudaBackendFactory& GetCudaBackendFactory();

}  // namespace dwdp::cuda
