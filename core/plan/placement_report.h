#pragma once

// `dwdp place` output: the placement as JSON and as the text a user reads (table, rankfile and
// launch commands). Pure formatting of a Placement.

#include <string>
#include <vector>

#include "core/plan/placement.h"
#include "nlohmann/json.hpp"

namespace dwdp {

nlohmann::json PlacementToJson(const Placement& placement, const PlacementRequest& request,
                               const std::vector<std::string>& commands);
std::string PlacementToText(const Placement& placement, const PlacementRequest& request,
                            const std::vector<std::string>& commands);

}  // namespace dwdp
