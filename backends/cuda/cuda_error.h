#pragma once

// CUDA error names and statuses. The names are the driver's (CUDA_ERROR_NOT_SUPPORTED), the same
// ones the simulator reports, and they are known without a driver: a status can name an error
// on a machine where libcuda could not even be loaded.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dwdp::cuda {

// "CUDA_ERROR_INVALID_VALUE" for the CUresult value 1; "CUresult 12345" for a value this build
// does not know (asked of the driver first when its entry points are loaded).
std::string CuResultName(int result);

// The absl code a CUresult maps to (CUDA_ERROR_OUT_OF_MEMORY -> kResourceExhausted, ...).
absl::StatusCode CuResultCode(int result);

// OK for CUDA_SUCCESS, else "<what>: <CUDA error name>" with CuResultCode.
absl::Status CuStatus(int result, absl::string_view what);

// Runtime API errors (cudaError_t) by their runtime name ("cudaErrorNoDevice").
std::string RuntimeErrorName(int error);
absl::Status RuntimeStatus(int error, absl::string_view what);

}  // namespace dwdp::cuda
