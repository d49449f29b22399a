#pragma once

// `dwdp compare`: the simulator's prediction against a GPU measurement of the same scenario, both
// as `dwdp run --format json` reports. Per rank and MoE layer (copy, compute and stall time, and
// their means over the layers) and per forward (forward time, exposed stall), with relative
// errors. The check that decides the exit code covers what calibration is for: each rank's mean
// per-layer copy time and the total forward time.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace dwdp {

struct CompareOptions {
  double tolerance = 0.10;  // largest |relative error| a checked figure may have
};

// One figure, predicted and measured. relative_error = (predicted - measured) / measured; when
// the measurement is 0 it is 0 for a prediction of 0 and infinite otherwise.
struct ComparedValue {
  double predicted = 0;
  double measured = 0;
  double relative_error = 0;
  bool checked = false;   // counts for the exit code
  bool exceeded = false;  // |relative_error| > tolerance (also set for unchecked figures)
};

struct LayerComparison {
  int64_t layer = 0;
  ComparedValue copy_ns;
  ComparedValue compute_ns;
  ComparedValue stall_ns;
};

struct RankComparison {
  int64_t rank = 0;
  std::vector<LayerComparison> layers;
  // Means over the layers; copy_ns is checked.
  ComparedValue copy_ns;
  ComparedValue compute_ns;
  ComparedValue stall_ns;
};

struct ReportComparison {
  std::string scenario;
  std::string predicted_backend;
  std::string measured_backend;
  double tolerance = 0;
  std::vector<RankComparison> ranks;
  ComparedValue forward_ns;  // checked
  ComparedValue stall_ns;
  // (max - min) / mean of the measured report's forward times, when it has two or more.
  std::optional<double> measured_forward_spread;
  // One sentence per checked figure beyond the tolerance.
  std::vector<std::string> failures;
  // Things a reader should know that do not make the comparison meaningless (a report that says
  // its run failed, the backends the wrong way round).
  std::vector<std::string> warnings;

  bool within_tolerance() const { return failures.empty(); }
  nlohmann::json ToJson() const;
  // `all_layers`: every layer of every rank; otherwise the per-rank means and the worst layer.
  std::string ToText(bool all_layers) const;
};

ComparedValue CompareValue(double predicted, double measured, double tolerance, bool checked);

// InvalidArgument (with the JSON path) when a report lacks the fixed keys of INTERFACE.md, when
// the two are of different scenarios, or their ranks or layers differ; the tolerance must be
// positive.
absl::StatusOr<ReportComparison> CompareRunReports(const nlohmann::json& predicted,
                                                   const nlohmann::json& measured,
                                                   const CompareOptions& options);

}  // namespace dwdp
