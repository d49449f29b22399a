#pragma once

// Renderings of a capacity plan: a table for people, CSV for scripts (scripts/plot_plan.py),
// JSON with the INTERFACE.md keys.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/plan/planner.h"

namespace dwdp {

// Where the routed-MoE compute of the plan came from: a measured moe_compute table of the profile
// (true) or the roofline (false); the text and JSON reports say which.
bool MoeComputeMeasured(const Plan& plan);
std::string MoeComputeSourceLine(const Plan& plan);

std::string PlanToText(const Plan& plan, const std::vector<RecommendationResult>& recommendations);
std::string PlanToCsv(const Plan& plan);
// {"model", "hardware", "contention", "depends_on", "candidates": [...], "recommended": {...} |
// null, "recommendations": [...]}; "recommended" is the first workload point's pick.
nlohmann::json PlanToJson(const Plan& plan,
                          const std::vector<RecommendationResult>& recommendations);
nlohmann::json CandidateToJson(const PlanCandidate& c);

}  // namespace dwdp
