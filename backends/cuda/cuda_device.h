#pragma once

// The GPU this process uses, through the static CUDA runtime (which finds libcuda at run time).

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dwdp::cuda {

// The number of CUDA devices. FailedPrecondition with one sentence when there is no driver, no
// device, or the driver is too old for this build.
absl::StatusOr<int> CudaDeviceCount();

// Makes `ordinal` this thread's device and creates its primary context, which the driver API
// calls of CudaDriver and CudaStreams then use.
absl::Status UseDevice(int ordinal);

// The current device ordinal (after UseDevice, or 0 by default).
absl::StatusOr<int> CurrentDevice();

// Device memory in use on the current device (total - free): compared before setup and after
// teardown to prove that nothing is left behind.
absl::StatusOr<uint64_t> DeviceMemoryInUse();

// One line for logs and test messages: "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)".
std::string DescribeDevice(int ordinal);

}  // namespace dwdp::cuda
