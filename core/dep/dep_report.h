#pragma once

// The report of a DEP baseline run (`dwdp run --baseline dep`), either backend: per rank and MoE
// layer the attention, dispatch, expert compute, combine and the wait for the slowest rank
// (means over forwards), the forward time of the slowest rank, the output check (functional
// mode), the planner's prediction for the same GPUs and the effective options.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "core/dep/dep_timing.h"

namespace dwdp::dep {

struct DepReport {
  std::string backend;
  std::string mode;
  std::string scenario;
  int64_t ep_size = 0;
  double tokens_cv = 0;
  std::vector<int64_t> tokens_per_rank;
  int64_t forwards = 0;
  std::vector<DepRankTimes> ranks;  // means over forwards
  double forward_ns = 0;            // mean over forwards of the slowest rank's forward
  std::vector<double> forward_ns_each;
  nlohmann::json check = nullptr;    // functional mode: the output check
  nlohmann::json planner = nullptr;  // the planner's DEP and DWDP forwards for these GPUs
  nlohmann::json options = nlohmann::json::object();
  nlohmann::json extra = nlohmann::json::object();
  std::vector<std::string> errors;
  bool ok = false;

  nlohmann::json ToJson() const;
  std::string ToText(bool all_ranks) const;
};

// One rank's times of one forward to JSON and back (GPU ranks send theirs to rank 0).
nlohmann::json RankTimesToJson(const DepRankTimes& times);
absl::StatusOr<DepRankTimes> RankTimesFromJson(const nlohmann::json& json);

// Folds forwards ([forward][rank], every rank in each) into the means of the report.
void FoldForwards(const std::vector<std::vector<DepRankTimes>>& forwards, DepReport& report);

}  // namespace dwdp::dep
