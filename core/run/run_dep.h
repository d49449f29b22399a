#pragma once

// The DEP baseline's run path (`dwdp run --baseline dep`), for every backend that has one
// (RunBackend::open_dep): the request and scenario become a DepRunSpec (validated: one sentence,
// exit 2, for an ep_size that does not divide the experts or a negative tokens_cv), the backend
// runs the forwards of its ranks and hands back every rank's per-layer times of every forward,
// and the reporting process builds the DepReport with the planner's prediction beside it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "core/config/scenario.h"
#include "core/dep/dep_plan.h"
#include "core/dep/dep_report.h"
#include "core/perf/layer_times.h"
#include "core/run/run_backend.h"

namespace dwdp {

struct DepRunSpec {
  dep::DepShape shape;
  int64_t ep_size = 0;
  double tokens_cv = 0;
  int64_t mean_tokens = 0;
  std::vector<int64_t> tokens;      // [ep_size] per-rank token counts (dep::TokensPerRank)
  std::vector<int64_t> moe_layers;  // the model's MoE layer indices
  int64_t w13_weight = 0;           // indices of the expert weights in the model's list
  int64_t w2_weight = 0;
  uint64_t w13_expert_bytes = 0;
  uint64_t w2_expert_bytes = 0;
  uint64_t workload_seed = 0;
  int64_t forwards = 0;
  bool functional = false;
  LayerTimes times;  // the DWDP run's compute of the same scenario (attention stand-in, MoE)

  uint64_t RoutingSeed(int64_t position) const;
  // The dispatch plan of MoE layer position p.
  dep::DispatchPlan Plan(int64_t position) const;
};

// InvalidArgument (one sentence) when DEP cannot run the scenario as asked: the model has no
// BF16 expert weights the MoE kernel reads (workload.compute: moe is not required, the shapes
// are), --ep-size does not divide the experts, --tokens-cv is negative, or DEP options were given
// without --baseline dep.
absl::StatusOr<DepRunSpec> MakeDepRunSpec(const Scenario& scenario, const RunRequest& request);
// DEP options (--ep-size, --tokens-cv) without --baseline dep: one sentence.
absl::Status CheckBaselineOptions(const RunRequest& request);

// What a backend's DEP run hands the reporting process.
struct DepOutcome {
  std::vector<std::vector<dep::DepRankTimes>> forwards;  // [forward][rank], every rank
  nlohmann::json check = nullptr;                        // functional mode
  std::vector<std::string> errors;
  nlohmann::json extra = nlohmann::json::object();
};

class DepSession {
 public:
  virtual ~DepSession() = default;
  // Every forward of this process's ranks; the reporting process gets every rank's.
  virtual absl::StatusOr<DepOutcome> Run(const DepRunSpec& spec) = 0;
  virtual bool reports() const = 0;
  // Ends the session with an exit code every process agrees on (see RunSession::Close).
  virtual int Close(int exit_code) = 0;
};

struct DepRunResult {
  std::unique_ptr<DepSession> session;  // still open: Close it once the report is printed
  bool reports = false;
  dep::DepReport report;
};

// Fails (status) only when the run cannot start; what it finds is in the report (ok = false).
absl::StatusOr<DepRunResult> RunDep(const Scenario& scenario, const RunRequest& request,
                                    const RunBackend& backend);

// The planner's prediction for the scenario's GPUs: {"dep_forward_ns", "dwdp_forward_ns",
// "dep_over_dwdp", "ep_size", "tokens_cv"}; null when the planner cannot price the scenario.
nlohmann::json PlannerPrediction(const Scenario& scenario, int64_t ep_size, double tokens_cv);

}  // namespace dwdp
