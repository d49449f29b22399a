#include "backends/cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_error.h"
#include "core/util/bytes.h"

namespace dwdp::cuda {

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  switch (error) {
    case cudaSuccess:
      break;
    case cudaErrorNoDevice:
      return absl::FailedPreconditionError("no CUDA device is visible to this process");
    case cudaErrorInsufficientDriver:
      return absl::FailedPreconditionError(
          "no CUDA driver is installed, or it is older than the CUDA runtime this dwdp was "
          "built with (cudaErrorInsufficientDriver)");
    default:
      return absl::FailedPreconditionError(
          absl::StrFormat("the CUDA runtime cannot use a GPU here (%s)", RuntimeErrorName(error)));
  }
  if (count <= 0) {
    return absl::FailedPreconditionError("no CUDA device is visible to this process");
  }
  return count;
}

absl::Status UseDevice(int ordinal) {
  if (absl::Status s =
          RuntimeStatus(cudaSetDevice(ordinal), absl::StrFormat("select CUDA device %d", ordinal));
      !s.ok()) {
    return s;
  }
  // A no-op call that creates the primary context and makes it current for the driver API.
  return RuntimeStatus(cudaFree(nullptr),
                       absl::StrFormat("create the context of CUDA device %d", ordinal));
}

absl::StatusOr<int> CurrentDevice() {
  int ordinal = 0;
  if (absl::Status s = RuntimeStatus(cudaGetDevice(&ordinal), "query the current CUDA device");
      !s.ok()) {
    return s;
  }
  return ordinal;
}

absl::StatusOr<uint64_t> DeviceMemoryInUse() {
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  if (absl::Status s = RuntimeStatus(cudaMemGetInfo(&free_bytes, &total_bytes),
                                     "query the device memory in use");
      !s.ok()) {
    return s;
  }
  return static_cast<uint64_t>(total_bytes - free_bytes);
}

std::string DescribeDevice(int ordinal) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, ordinal) != cudaSuccess) {
    return absl::StrFormat("CUDA device %d", ordinal);
  }
  return absl::StrFormat("%s (sm_%d%d, %s)", prop.name, prop.major, prop.minor,
                         FormatBytes(prop.totalGlobalMem));
}

}  // namespace dwdp::cuda
