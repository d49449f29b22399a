#pragma once

// "cuda" in the run backends' table: one process per GPU under mpirun/srun, the backend loaded
// at run time (backends/cuda/loader.h), so dwdp starts and simulates where there is no GPU.
// Besides the report every backend gives, a GPU run measures the raw copy rate of the same byte
// volumes (prefetch efficiency = achieved / raw), the host cost of wait_and_bind, and whether
// teardown gave back the device memory setup took.

#include "core/run/run_backend.h"

namespace dwdp::cuda {

// Understands --timeout, --no-gpu-timing and --align-forwards.
RunBackend CudaRunBackend();

}  // namespace dwdp::cuda
