#pragma once

// Which of a model's DWDP-managed weights the real MoE kernel reads (workload.compute: moe).

#include "absl/status/statusor.h"
#include "core/config/scenario.h"

namespace dwdp {

// The BF16 gate_up weight ([2·moe_intermediate_size, hidden_size] per expert) and the BF16 down
// weight ([hidden_size, moe_intermediate_size]) among the model's weights, found by dtype and
// shape. Fails with one sentence naming the shapes it needs and what the model lists.
absl::StatusOr<MoeWeightIndex> FindMoeWeights(const ModelSpec& model);

// Bytes of one element of a stored dtype: 2 (bf16), 1 (fp8); fp4 is half a byte, so this
// returns the byte count of `elements` elements, or nullopt when fp4 leaves half a byte.
std::optional<uint64_t> BytesOfElements(DType dtype, uint64_t elements);

}  // namespace dwdp
