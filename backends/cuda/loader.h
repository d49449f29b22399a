#pragma once

// Finds and opens the cuda backend module (libdwdp_cuda.so) at run time. Compiled into dwdp
// with no CUDA and no MPI dependency: a machine without them runs the simulator and is told in
// one sentence why `--backend cuda` cannot run.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "backends/cuda/cuda_backend_factory.h"

namespace dwdp::cuda {

// Where the module is looked for, in order: $DWDP_CUDA_MODULE when set; next to the running
// executable; in lib/ next to it.
std::vector<std::string> CudaModuleCandidates();

// Opens the first candidate that exists. Errors are FailedPrecondition with one sentence
// (module not built, MPI runtime missing, ABI mismatch). The module is never unloaded; a
// second call returns the same factory.
absl::StatusOr<CudaBackendFactory*> LoadCudaBackend();

// Opens exactly `module_path`.
absl::StatusOr<CudaBackendFactory*> LoadCudaBackendFrom(const std::string& module_path);

}  // namespace dwdp::cuda
