#pragma once

// Measured MoE layer times (HardwareProfile::moe_compute, written by `dwdp calibrate`) as the
// perf model uses them: the table of the model's shape, interpolated in tokens per rank.

#include <cstdint>
#include <vector>

#include "core/config/scenario.h"

namespace dwdp {

// The profile's table for this model's routed experts (same hidden, intermediate, expert count,
// top-k and expert dtype), or null: then the roofline prices the layer.
const MoeComputeTable* FindMoeComputeTable(const HardwareProfile& hw, const ModelSpec& model);

// Time at `tokens` from points (tokens[i], ns[i]), tokens ascending: linear between the two
// measured points around it; beyond the largest, the last segment's slope continues (a layer
// big enough to be compute bound grows linearly with its tokens); below the smallest, the
// smallest point's time (small layers are bound by reading every expert's weights once, which
// does not shrink with fewer tokens). Requires at least one point.
double InterpolateMoeTime(const std::vector<int64_t>& tokens, const std::vector<double>& ns,
                          double at_tokens);

}  // namespace dwdp
