#include "core/run/run_dep.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/config/moe_weights.h"
#include "core/moe/routing.h"
#include "core/perf/perf_model.h"
#include "core/plan/planner.h"

namespace dwdp {

uint64_t DepRunSpec::RoutingSeed(int64_t position) const {
  return moe::LayerRoutingSeed(moe_layers[static_cast<size_t>(position)], workload_seed);
}

dep::DispatchPlan DepRunSpec::Plan(int64_t position) const {
  return dep::PlanDispatch(shape, RoutingSeed(position), tokens, ep_size);
}

absl::Status CheckBaselineOptions(const RunRequest& request) {
  if (request.baseline == RunBaseline::kDep) {
    if (request.fault != Fault::kNone) {
      return absl::InvalidArgumentError(
          "--inject plants faults in DWDP's weight pipeline, which --baseline dep does not run");
    }
    if (!request.trace_path.empty()) {
      return absl::InvalidArgumentError(
          "--trace records DWDP's operations; --baseline dep reports per-layer times instead");
    }
    return absl::OkStatus();
  }
  if (request.ep_size) {
    return absl::InvalidArgumentError("--ep-size applies to --baseline dep only");
  }
  if (request.tokens_cv) {
    return absl::InvalidArgumentError(
        "--tokens-cv applies to --baseline dep only (DWDP ranks run the same tokens)");
  }
  return absl::OkStatus();
}

absl::StatusOr<DepRunSpec> MakeDepRunSpec(const Scenario& scenario, const RunRequest& request) {
  if (absl::Status s = CheckBaselineOptions(request); !s.ok()) return s;
  const ModelSpec& m = scenario.model;
  DepRunSpec spec;
  spec.shape = {m.num_experts, m.top_k, m.hidden_size, m.moe_intermediate_size};
  spec.ep_size = request.ep_size.value_or(scenario.dwdp.dwdp_size);
  spec.tokens_cv = request.tokens_cv.value_or(scenario.workload.tokens_cv);
  if (absl::Status s = dep::ValidateDep(spec.shape, spec.ep_size, spec.tokens_cv); !s.ok()) {
    if (!request.ep_size && spec.ep_size > 0 && m.num_experts % spec.ep_size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("DEP runs on the scenario's dwdp_size ", spec.ep_size,
                       " GPUs by default, which does not "
                       "divide the model's ",
                       m.num_experts, " experts; give --ep-size with a divisor"));
    }
    return s;
  }
  if (m.hidden_size % 8 != 0 || m.moe_intermediate_size % 8 != 0 || m.hidden_size <= 0 ||
      m.moe_intermediate_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DEP moves bf16 rows of 16-byte vectors: hidden_size ", m.hidden_size,
        " and moe_intermediate_size ", m.moe_intermediate_size, " must be multiples of 8"));
  }
  absl::StatusOr<MoeWeightIndex> weights = FindMoeWeights(m);
  if (weights.ok()) {
    spec.w13_weight = weights->w13;
    spec.w2_weight = weights->w2;
    spec.w13_expert_bytes = m.weights[static_cast<size_t>(weights->w13)].expert_bytes;
    spec.w2_expert_bytes = m.weights[static_cast<size_t>(weights->w2)].expert_bytes;
  } else if (request.functional() || request.backend != "sim") {
    // Only the simulator's timing mode runs without the weights' contents.
    return weights.status();
  } else {
    spec.w13_weight = spec.w2_weight = -1;
  }
  spec.mean_tokens = scenario.workload.tokens_per_rank;
  spec.tokens =
      dep::TokensPerRank(spec.mean_tokens, spec.ep_size, spec.tokens_cv, scenario.workload.seed);
  const std::vector<bool> flags = MoeLayerFlags(m);
  for (size_t l = 0; l < flags.size(); ++l) {
    if (flags[l]) spec.moe_layers.push_back(static_cast<int64_t>(l));
  }
  spec.workload_seed = scenario.workload.seed;
  spec.forwards = scenario.workload.forwards;
  spec.functional = request.functional();
  spec.times = ComputeLayerTimes(scenario);
  return spec;
}

nlohmann::json PlannerPrediction(const Scenario& scenario, int64_t ep_size, double tokens_cv) {
  const auto& w = scenario.workload;
  absl::StatusOr<PlanCandidate> c = EvaluateCandidate(
      scenario, scenario.dwdp.dwdp_size, scenario.dwdp.num_experts_per_worker,
      scenario.dwdp.num_prefetch_experts, scenario.dwdp.num_buffers,
      {w.tokens_per_rank, w.sequence_length}, scenario.dwdp.contention.mode, tokens_cv);
  if (!c.ok() || c->forward_ns <= 0) return nullptr;
  const double dep_ns = DepForward(scenario.model, scenario.hardware,
                                   {w.tokens_per_rank, w.sequence_length}, ep_size, tokens_cv)
                            .forward_ns;
  return {{"dep_forward_ns", dep_ns},
          {"dwdp_forward_ns", c->forward_ns},
          {"dep_over_dwdp", dep_ns / c->forward_ns},
          {"ep_size", ep_size},
          {"dwdp_size", scenario.dwdp.dwdp_size},
          {"tokens_cv", tokens_cv},
          {"note",
           "the planner's closed form: FP8 dispatch, BF16 combine, uniform routing, "
           "sync = cv * sqrt(2 ln d)"}};
}

absl::StatusOr<DepRunResult> RunDep(const Scenario& scenario, const RunRequest& request,
                                    const RunBackend& backend) {
  if (!backend.open_dep) {
    return absl::UnimplementedError(
        absl::StrCat("the ", backend.name, " backend has no DEP baseline"));
  }
  // Of the backend-specific options only --timeout means something to DEP.
  if (absl::Status s = CheckOptionsFor(request, absl::StrCat(backend.name, " DEP"),
                                       backend.options & kRunOptionTimeout);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<DepRunSpec> spec = MakeDepRunSpec(scenario, request);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::unique_ptr<DepSession>> session = backend.open_dep(scenario, *spec, request);
  if (!session.ok()) return session.status();
  DepRunResult result;
  absl::StatusOr<DepOutcome> outcome = (*session)->Run(*spec);
  result.reports = (*session)->reports();
  result.session = *std::move(session);
  if (!result.reports) return result;
  dep::DepReport& report = result.report;
  report.backend = request.backend;
  report.mode = RunModeName(request.mode);
  report.scenario = scenario.name;
  report.ep_size = spec->ep_size;
  report.tokens_cv = spec->tokens_cv;
  report.tokens_per_rank = spec->tokens;
  if (!outcome.ok()) {
    report.errors.push_back(std::string(outcome.status().message()));
  } else {
    dep::FoldForwards(outcome->forwards, report);
    report.check = outcome->check;
    report.errors = outcome->errors;
    report.extra = outcome->extra;
  }
  report.extra["compute_source"] = spec->times.source;
  report.planner = PlannerPrediction(scenario, spec->ep_size, spec->tokens_cv);
  nlohmann::json options =
      EffectiveOptionsJson(request, scenario, backend.options & kRunOptionTimeout);
  options["ep_size"] = spec->ep_size;
  options["tokens_cv"] = spec->tokens_cv;
  options["tokens_per_rank"] = spec->tokens;
  report.options = std::move(options);
  report.ok = report.errors.empty() && report.forwards > 0;
  return result;
}

}  // namespace dwdp
