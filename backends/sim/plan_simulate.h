#pragma once

// The simulator's answer for one planner candidate: the same perf model as the planner, but the
// real slot pipeline, copy schedule and link sharing (timing mode, one forward).

#include "absl/status/statusor.h"
#include "core/config/scenario.h"
#include "core/plan/plan_check.h"

namespace dwdp::sim {

absl::StatusOr<SimulatedCandidate> SimulateCandidate(const Scenario& base,
                                                     const PlanCandidate& candidate,
                                                     ContentionMode contention);

}  // namespace dwdp::sim
