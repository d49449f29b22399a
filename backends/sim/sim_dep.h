#pragma once

// The DEP baseline on the simulator (`dwdp run --baseline dep --backend sim`): every rank in
// this process, priced by core/dep/dep_timing.h. Functional mode checks every layer's dispatch
// plan and, on the first MoE layer, that the DEP path's outputs agree with the resident-weights
// (DWDP) reference within the stated tolerance for a sample of every rank's tokens.

#include <memory>

#include "absl/status/statusor.h"
#include "core/run/run_dep.h"

namespace dwdp::sim {

// Tokens per rank the functional check computes on the host (the first and the last).
inline constexpr int64_t kDepCheckTokensPerRank = 2;

std::unique_ptr<DepSession> OpenSimDepSession(const Scenario& scenario);

// The functional check of one layer position on the host (also used by the tests): plan
// invariants, then DepLayer against ResidentLayer on `sample` tokens per rank. JSON with
// "ok", "compared", "exact", "max_error", "scale", "summary", "first_outside".
nlohmann::json CheckDepLayer(const DepRunSpec& spec, int64_t position, int64_t sample);

}  // namespace dwdp::sim
