#pragma once

// CUDA error names and statuses. The names are the driver's (CUDA_ERROR_NOT_SUPPORTED), the same
// ones the simulator reports, and they are known without a driver: a status can name an error
// on a machine where libcuda could not even be loaded.

#include <string>
#include <type_traits>

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

// The same with the text made by `describe()` only on failure, so that the hot paths (records,
// waits, copies, launches) format no strings when all is well.
template <typename Describe, typename = std::enable_if_t<std::is_invocable_v<Describe>>>
absl::Status CuStatus(int result, Describe&& describe) {
  if (result == 0) return absl::OkStatus();
  return CuStatus(result, absl::string_view(describe()));
}

// Runtime API errors (cudaError_t) by their runtime name ("cudaErrorNoDevice").
std::string RuntimeErrorName(int error);
absl::Status RuntimeStatus(int error, absl::string_view what);
template <typename Describe, typename = std::enable_if_t<std::is_invocable_v<Describe>>>
absl::Status RuntimeStatus(int error, Describe&& describe) {
  if (error == 0) return absl::OkStatus();
  return RuntimeStatus(error, absl::string_view(describe()));
}

}  // namespace dwdp::cuda
