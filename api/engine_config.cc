#include "api/engine_config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dwdp::api {

PartitionInput ToPartitionInput(const Config& config) {
  PartitionInput input;
  input.dwdp_size = config.dwdp_size;
  input.num_experts_per_worker = config.num_experts_per_worker;
  input.num_prefetch_experts = config.num_prefetch_experts;
  input.num_experts = config.num_experts;
  // The engine loads exactly the rank's range: its chunk size is the config's by construction
  // (each chunk's byte count is checked at Create instead).
  input.loaded_chunk = config.num_experts_per_worker;
  input.num_groups = config.num_groups;
  return input;
}

std::vector<WeightSpec> ToWeights(const Config& config) {
  std::vector<WeightSpec> weights;
  for (const Weight& w : config.weights) weights.push_back({w.name, w.bytes_per_expert});
  return weights;
}

absl::StatusOr<GroupLayout> LayoutOf(const Config& config, uint64_t granularity) {
  auto partition = Partition::Create(ToPartitionInput(config));
  if (!partition.ok()) return partition.status();
  return ComputeGroupLayout(*partition, ToWeights(config), config.moe_layers, granularity,
                            config.pool_page_bytes, config.num_buffers);
}

absl::Status ValidateConfig(const Config& config) {
  if (config.num_experts <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("num_experts is %d; it must be positive", config.num_experts));
  }
  if (config.moe_layers.empty()) return absl::InvalidArgumentError("moe_layers is empty");
  for (size_t i = 0; i < config.moe_layers.size(); ++i) {
    if (config.moe_layers[i] < 0 || (i > 0 && config.moe_layers[i] <= config.moe_layers[i - 1])) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "moe_layers must be non-negative layer indices in ascending order without repeats; "
          "entry %d is %d",
          i, config.moe_layers[i]));
    }
  }
  if (config.weights.empty()) return absl::InvalidArgumentError("weights is empty");
  for (size_t i = 0; i < config.weights.size(); ++i) {
    if (config.weights[i].name.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("weight %d has no name", i));
    }
    for (size_t j = 0; j < i; ++j) {
      if (config.weights[j].name == config.weights[i].name) {
        return absl::InvalidArgumentError(
            absl::StrFormat("weight name '%s' appears twice", config.weights[i].name));
      }
    }
  }
  if (config.contention_mode == ContentionMode::kRoundRobin && config.contention_slice_bytes == 0) {
    return absl::InvalidArgumentError("contention_slice_bytes must be positive for round robin");
  }
  if (auto error = ValidatePartition(ToPartitionInput(config))) {
    return absl::InvalidArgumentError(absl::StrCat(error->check, ": ", error->message));
  }
  // The whole layout (byte overflow, page size) with the granularity every target GPU has.
  if (auto layout = LayoutOf(config, kAssumedGranularity); !layout.ok()) return layout.status();
  return absl::OkStatus();
}

Status CheckConfig(const Config& config) {
  absl::Status status = ValidateConfig(config);
  if (status.ok()) return Status::Ok();
  return Status::Error(absl::StrCat("dwdp: ", status.message()));
}

}  // namespace dwdp::api
