#pragma once

// `dwdp compare DWDP.json DEP.json`: the measured DEP/DWDP forward-time ratio of two runs of one
// scenario (`dwdp run` and `dwdp run --baseline dep`, either backend) next to the planner's
// prediction that the DEP report carries, and where DEP's time goes (means over the DEP ranks of
// the per-forward sums of its per-layer phases).

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace dwdp::dep {

struct DepVsDwdp {
  std::string scenario;
  std::string dwdp_backend;
  std::string dep_backend;
  int64_t ep_size = 0;
  double tokens_cv = 0;
  double dwdp_forward_ns = 0;
  double dep_forward_ns = 0;
  double measured_dep_over_dwdp = 0;   // > 1: DWDP faster
  double predicted_dep_over_dwdp = 0;  // the planner's; 0 when the report has none
  double attention_ns = 0, wait_ns = 0, dispatch_ns = 0, compute_ns = 0, combine_ns = 0;
  std::vector<std::string> warnings;

  nlohmann::json ToJson() const;
  std::string ToText() const;
};

// True when the report is a DEP baseline's ("baseline": "dep").
bool IsDepReport(const nlohmann::json& report);

// InvalidArgument when the first is not a DWDP run report or the second not a DEP report, or
// they are of different scenarios.
absl::StatusOr<DepVsDwdp> CompareDepWithDwdp(const nlohmann::json& dwdp, const nlohmann::json& dep);

}  // namespace dwdp::dep
