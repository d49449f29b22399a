#include "backends/sim/sim_dep.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/dep/dep_reference.h"
#include "core/dep/dep_timing.h"

namespace dwdp::sim {
namespace {

class SimDepSession : public DepSession {
 public:
  explicit SimDepSession(const Scenario& scenario) : scenario_(scenario) {}

  absl::StatusOr<DepOutcome> Run(const DepRunSpec& spec) override {
    DepOutcome outcome;
    // The routing is a function of the layer, so one plan per layer serves every forward.
    std::vector<dep::DispatchPlan> plans;
    for (size_t p = 0; p < spec.moe_layers.size(); ++p) {
      plans.push_back(spec.Plan(static_cast<int64_t>(p)));
      if (spec.functional) {
        if (absl::Status s = dep::CheckDispatchPlan(plans.back()); !s.ok()) {
          outcome.errors.push_back(
              absl::StrFormat("layer %d: %s", spec.moe_layers[p], s.message()));
        }
      }
    }
    const std::vector<dep::DepRankTimes> forward = dep::SimulateDepForward(
        scenario_.model, scenario_.hardware, plans, spec.moe_layers, spec.times, spec.mean_tokens);
    for (int64_t f = 0; f < spec.forwards; ++f) outcome.forwards.push_back(forward);
    if (spec.functional && !spec.moe_layers.empty()) {
      outcome.check = CheckDepLayer(spec, 0, kDepCheckTokensPerRank);
      if (!outcome.check.value("ok", false)) {
        outcome.errors.push_back(
            absl::StrCat("the DEP output differs from the resident-weights "
                         "reference beyond the tolerance: ",
                         outcome.check.value("first_outside", "")));
      }
    }
    return outcome;
  }

  bool reports() const override { return true; }
  int Close(int exit_code) override { return exit_code; }

 private:
  Scenario scenario_;
};

}  // namespace

std::unique_ptr<DepSession> OpenSimDepSession(const Scenario& scenario) {
  return std::make_unique<SimDepSession>(scenario);
}

nlohmann::json CheckDepLayer(const DepRunSpec& spec, int64_t position, int64_t sample) {
  const dep::DispatchPlan plan = spec.Plan(position);
  if (absl::Status s = dep::CheckDispatchPlan(plan); !s.ok()) {
    return {{"ok", false},
            {"summary", std::string(s.message())},
            {"first_outside", std::string(s.message())}};
  }
  const int64_t layer = spec.moe_layers[static_cast<size_t>(position)];
  std::vector<std::vector<int64_t>> tokens(static_cast<size_t>(spec.ep_size));
  for (int64_t r = 0; r < spec.ep_size; ++r) {
    const int64_t count = spec.tokens[static_cast<size_t>(r)];
    for (int64_t i = 0; i < std::min(sample, count); ++i) {
      // Spread over the rank's tokens: the first, the last, and evenly between.
      const int64_t t = sample > 1 ? i * (count - 1) / (sample - 1) : 0;
      tokens[static_cast<size_t>(r)].push_back(t);
    }
  }
  dep::PatternExperts experts(spec.shape, layer, spec.w13_weight, spec.w2_weight);
  const dep::ExpertWeights weights = dep::WeightsOf(experts);
  const dep::InputRow input = dep::SyntheticInput(spec.shape.hidden, layer, 0, spec.workload_seed);
  const std::vector<std::vector<float>> dep_out = dep::DepLayer(plan, tokens, input, weights);
  std::vector<float> got, reference;
  for (int64_t r = 0; r < spec.ep_size; ++r) {
    const std::vector<float> resident = dep::ResidentLayer(
        spec.shape, spec.RoutingSeed(position), r, tokens[static_cast<size_t>(r)], input, weights);
    reference.insert(reference.end(), resident.begin(), resident.end());
    got.insert(got.end(), dep_out[static_cast<size_t>(r)].begin(),
               dep_out[static_cast<size_t>(r)].end());
  }
  const dep::Agreement a = dep::OutputsAgree(got, reference, spec.shape.hidden);
  return {{"ok", a.ok},
          {"layer", layer},
          {"tokens_per_rank_checked", sample},
          {"compared", a.compared},
          {"exact", a.exact},
          {"max_error", a.max_error},
          {"scale", a.scale},
          {"tolerance", "|dep - resident| <= |resident| / 64 + max|resident| / 128"},
          {"first_outside", a.first_outside},
          {"summary",
           absl::StrFormat("layer %d, %d values of %d tokens per rank: %s, %d exact, largest "
                           "error %.3g against a scale of %.3g",
                           layer, a.compared, sample, a.ok ? "within the tolerance" : "OUTSIDE",
                           a.exact, a.max_error, a.scale)}};
}

}  // namespace dwdp::sim
