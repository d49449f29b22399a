#include "backends/cuda/driver_api.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <mutex>

#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_error.h"

namespace dwdp::cuda {
namespace {

std::atomic<const DriverApi*> loaded_api{nullptr};

template <typename Fn>
absl::Status Resolve(const char* symbol, unsigned int version, Fn* slot) {
  void* function = nullptr;
  cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSuccess;
  const cudaError_t error =
      cudaGetDriverEntryPointByVersion(symbol, &function, version, cudaEnableDefault, &query);
  if (error != cudaSuccess) {
    return RuntimeStatus(error,
                         absl::StrFormat("no usable CUDA driver (libcuda.so.1) for %s", symbol));
  }
  if (query != cudaDriverEntryPointSuccess || function == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrFormat("the CUDA driver does not provide %s (ABI %d): %s", symbol, version,
                        query == cudaDriverEntryPointVersionNotSufficent ? "the driver is too old"
                                                                         : "symbol not found"));
  }
  *slot = reinterpret_cast<Fn>(function);
  return absl::OkStatus();
}

absl::Status ResolveAll(DriverApi& api) {
#define DWDP_RESOLVE(name, version)                                   \
  if (absl::Status s = Resolve(#name, version, &api.name); !s.ok()) { \
    return s;                                                         \
  }
  DWDP_RESOLVE(cuGetErrorName, 6000)
  DWDP_RESOLVE(cuDriverGetVersion, 2020)
  DWDP_RESOLVE(cuDeviceGet, 2000)
  DWDP_RESOLVE(cuDeviceGetAttribute, 2000)
  DWDP_RESOLVE(cuCtxGetCurrent, 4000)
  DWDP_RESOLVE(cuCtxGetDevice, 2000)
  DWDP_RESOLVE(cuMemCreate, 10020)
  DWDP_RESOLVE(cuMemRelease, 10020)
  DWDP_RESOLVE(cuMemExportToShareableHandle, 10020)
  DWDP_RESOLVE(cuMemImportFromShareableHandle, 10020)
  DWDP_RESOLVE(cuMemAddressReserve, 10020)
  DWDP_RESOLVE(cuMemAddressFree, 10020)
  DWDP_RESOLVE(cuMemMap, 10020)
  DWDP_RESOLVE(cuMemUnmap, 10020)
  DWDP_RESOLVE(cuMemSetAccess, 10020)
  DWDP_RESOLVE(cuMemGetAllocationGranularity, 10020)
  DWDP_RESOLVE(cuStreamCreate, 2000)
  DWDP_RESOLVE(cuStreamDestroy, 4000)
  DWDP_RESOLVE(cuStreamSynchronize, 2000)
  DWDP_RESOLVE(cuStreamWaitEvent, 3020)
  DWDP_RESOLVE(cuEventCreate, 2000)
  DWDP_RESOLVE(cuEventDestroy, 4000)
  DWDP_RESOLVE(cuEventRecord, 2000)
  DWDP_RESOLVE(cuEventQuery, 2000)
  DWDP_RESOLVE(cuEventSynchronize, 2000)
  DWDP_RESOLVE(cuEventElapsedTime, 2000)
  DWDP_RESOLVE(cuMemAlloc, 3020)
  DWDP_RESOLVE(cuMemFree, 3020)
  DWDP_RESOLVE(cuMemcpyDtoDAsync, 3020)
  DWDP_RESOLVE(cuMemGetInfo, 3020)
  DWDP_RESOLVE(cuMemcpyDtoH, 3020)
  DWDP_RESOLVE(cuMemcpyHtoD, 3020)
  DWDP_RESOLVE(cuMemsetD8Async, 3020)
#undef DWDP_RESOLVE
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<const DriverApi*> LoadDriverApi() {
  static DriverApi api;
  static absl::Status status = absl::UnknownError("unset");
  static std::once_flag once;
  std::call_once(once, [] {
    status = ResolveAll(api);
    if (status.ok()) loaded_api.store(&api, std::memory_order_release);
  });
  if (!status.ok()) return status;
  return &api;
}

const DriverApi* LoadedDriverApi() { return loaded_api.load(std::memory_order_acquire); }

}  // namespace dwdp::cuda
