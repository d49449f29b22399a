#pragma once

// `dwdp plan --simulate N`: which candidates the simulator checks, and the planner-vs-simulator
// table. The simulation itself lives with the sim backend (backends/sim/plan_simulate.h); this
// part is pure.

#include <cstdint>
#include <string>
#include <vector>

#include "core/plan/planner.h"
#include "nlohmann/json.hpp"

namespace dwdp {

// The `count` recommendable candidates with the highest throughput per GPU, best first.
std::vector<PlanCandidate> BestFittingCandidates(const Plan& plan, int64_t count);

// One row of the check: the planner's closed-form figures next to the simulator's, per layer of
// the slowest rank and per forward.
struct SimulatedCandidate {
  PlanCandidate planned;
  double copy_ns_per_layer = 0;
  double stall_ns_per_layer = 0;
  double forward_ns = 0;
  bool simulation_ok = false;
};

bool ForwardWithinTenPercent(const SimulatedCandidate& s);
nlohmann::json SimulatedToJson(const std::vector<SimulatedCandidate>& simulated);
std::string SimulatedToText(const std::vector<SimulatedCandidate>& simulated);

}  // namespace dwdp
