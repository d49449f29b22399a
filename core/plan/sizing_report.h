#pragma once

// Renderings of a sizing result: text for people, one CSV row per configuration, the Pareto
// points (scripts/plot_plan.py --pareto), and JSON that keeps the plan keys of INTERFACE.md
// ("candidates" are the DWDP configurations with the planner's candidate keys, "recommended"
// the DWDP pick) and adds "dep_candidates", "recommended_dep" and "sizing".

#include <string>

#include <nlohmann/json.hpp>

#include "core/plan/sizing.h"

namespace dwdp {

std::string SizingToText(const SizingResult& result);
std::string SizingToCsv(const SizingResult& result);
std::string ParetoToCsv(const SizingResult& result);
nlohmann::json SizingToJson(const SizingResult& result);

}  // namespace dwdp
