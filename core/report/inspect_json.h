#pragma once

// The JSON documents of `dwdp validate | recipes | layout --format json` (INTERFACE.md keys).
// The CLI prints them and libdwdp.so's C ABI returns them (include/dwdp/dwdp_c.h), so a
// notebook and a script see the same document from this one code path.

#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "core/config/scenario.h"

namespace dwdp {

// {"valid": true, "name", "dwdp_size", "num_experts", "peer_ranges", "recipes"} or
// {"valid": false, "error": {"check", "message", "recipes"}}. With a world size the group
// checks run too. A layout that cannot be built (page size, byte overflow) is check "layout".
nlohmann::json ValidateJson(const Scenario& scenario, std::optional<int64_t> world_size);

// {"dwdp_size", "num_experts", "recipes": [{"num_experts_per_worker", "num_prefetch_experts",
// "overlap"}]}, least overlap first; the list is empty when no recipe exists.
nlohmann::json RecipesJson(int64_t dwdp_size, int64_t num_experts);

// {"num_experts", "granularity", "pool_page_bytes", "num_buffers", "peer_ranges", "ranks"}
// for a scenario that validates; `rank` keeps only that rank. An invalid partition or layout is
// an InvalidArgument error (ValidateJson says which check failed); a rank outside the group is
// OutOfRange.
absl::StatusOr<nlohmann::json> LayoutJson(const Scenario& scenario, std::optional<int64_t> rank);

}  // namespace dwdp
