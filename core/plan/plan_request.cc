#include "core/plan/plan_request.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/plan/plan_report.h"

namespace dwdp {

absl::StatusOr<PlanOutcome> RunPlan(const Scenario& scenario, const PlanRequest& request) {
  absl::StatusOr<Plan> plan = PlanCapacity(scenario, request.options);
  if (!plan.ok()) {
    return absl::Status(plan.status().code(),
                        absl::StrCat(scenario.source_file, ": ", plan.status().message()));
  }
  PlanOutcome outcome;
  outcome.plan = *std::move(plan);
  if (request.recommend) outcome.recommendations = Recommend(outcome.plan, *request.recommend);
  return outcome;
}

absl::StatusOr<nlohmann::json> PlanJson(const Scenario& scenario, const PlanRequest& request) {
  absl::StatusOr<PlanOutcome> outcome = RunPlan(scenario, request);
  if (!outcome.ok()) return outcome.status();
  return PlanToJson(outcome->plan, outcome->recommendations);
}

}  // namespace dwdp
