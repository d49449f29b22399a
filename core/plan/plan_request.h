#pragma once

// One entry point for a capacity plan as `dwdp plan` runs it: the sweep, then, when asked, the
// pick per workload point. The CLI and libdwdp.so's C ABI (dwdp_plan) both call it, so the JSON
// a script gets from either is the same document.

#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "core/config/scenario.h"
#include "core/plan/planner.h"

namespace dwdp {

struct PlanRequest {
  PlanOptions options;
  std::optional<PlanObjective> recommend;  // nullopt: no recommendation
};

struct PlanOutcome {
  Plan plan;
  std::vector<RecommendationResult> recommendations;  // empty unless asked for
};

// Errors are PlanCapacity's, prefixed with the scenario's file ("FILE: ...").
absl::StatusOr<PlanOutcome> RunPlan(const Scenario& scenario, const PlanRequest& request);

// What `dwdp plan --format json` prints without --simulate (PlanToJson of RunPlan).
absl::StatusOr<nlohmann::json> PlanJson(const Scenario& scenario, const PlanRequest& request);

}  // namespace dwdp
