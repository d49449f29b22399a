#pragma once

// The engine API's Config (include/dwdp/dwdp.h) in the core's terms, and the checks that need
// neither a GPU nor a group. Shared by the cuda implementation of the Runtime
// (backends/cuda/engine_api.cc), the build without it (runtime_without_cuda.cc) and the C ABI,
// so a config is judged alike whichever way it arrives.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "dwdp/dwdp.h"

namespace dwdp::api {

// The VMM granularity of every GPU DWDP targets (H100, H200, GB200): the config is checked
// against it before any GPU is touched, so a bad config is reported even on a machine without
// one. The real granularity is checked again once the driver reports it.
inline constexpr uint64_t kAssumedGranularity = 2ull << 20;

PartitionInput ToPartitionInput(const Config& config);
std::vector<WeightSpec> ToWeights(const Config& config);
absl::StatusOr<GroupLayout> LayoutOf(const Config& config, uint64_t granularity);

// Everything about the config that can be checked without a GPU or MPI. Every rank passes the
// same config, so every rank fails here alike and none waits for another.
absl::Status ValidateConfig(const Config& config);

}  // namespace dwdp::api
