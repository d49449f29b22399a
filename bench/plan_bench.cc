// Planner speed: the full sweep a user runs to choose a DWDP configuration must be interactive.
// Targets: every dwdp_size 2..72 with every recipe, for DeepSeek-V3 NVFP4 on GB200 NVL72, in
// about a second; the whole sizing sweep (every size, recipe, slot count, owner policy and
// max_num_tokens, DWDP and DEP, TTFT by DES) in under 5 s on a 2-core machine.

#include <benchmark/benchmark.h>

#include "core/config/loader.h"
#include "core/plan/planner.h"
#include "core/plan/sizing.h"

namespace dwdp {
namespace {

// DeepSeek-V3 NVFP4 on GB200 at 16K tokens per rank and ISL 8K, from the presets.
bool MakeScenario(Scenario& scenario, benchmark::State& state) {
  auto model = ModelPreset("deepseek-v3-nvfp4");
  auto hardware = HardwarePreset("gb200-nvl72");
  if (!model.ok() || !hardware.ok()) {
    state.SkipWithError("deepseek-v3-nvfp4 or gb200-nvl72 preset missing");
    return false;
  }
  scenario.model = *std::move(model);
  scenario.hardware = *std::move(hardware);
  scenario.workload.tokens_per_rank = 16384;
  scenario.workload.sequence_length = 8192;
  return true;
}

void BM_PlanEveryRecipe(benchmark::State& state) {
  Scenario scenario;
  if (!MakeScenario(scenario, state)) return;
  PlanOptions options;
  options.all_recipes = true;
  options.min_dwdp_size = 2;
  options.max_dwdp_size = 72;
  options.num_buffers = {2, 3, 4};
  size_t candidates = 0;
  for (auto _ : state) {
    auto plan = PlanCapacity(scenario, options);
    if (!plan.ok()) {
      state.SkipWithError(std::string(plan.status().message()).c_str());
      return;
    }
    candidates = plan->candidates.size();
    benchmark::DoNotOptimize(plan->candidates.data());
  }
  state.counters["candidates"] = static_cast<double>(candidates);
}
BENCHMARK(BM_PlanEveryRecipe)->Unit(benchmark::kMillisecond);

// The default sweep (least-overlap recipe per size) at two sequence lengths, with the
// recommendation: what `dwdp plan --recommend` does.
void BM_PlanDefaultWithRecommendation(benchmark::State& state) {
  Scenario scenario;
  if (!MakeScenario(scenario, state)) return;
  PlanOptions options;
  options.sequence_lengths = {8192, 16384};
  for (auto _ : state) {
    auto plan = PlanCapacity(scenario, options);
    if (!plan.ok()) {
      state.SkipWithError(std::string(plan.status().message()).c_str());
      return;
    }
    auto recommendations = Recommend(*plan, PlanObjective::kThroughput);
    benchmark::DoNotOptimize(recommendations.data());
  }
}
BENCHMARK(BM_PlanDefaultWithRecommendation)->Unit(benchmark::kMillisecond);

// `dwdp plan --rate 20 --ttft-p99 3000 --all-recipes --max-num-tokens 8192,16384,32768` on
// log-normal input lengths (mean 8K, CV 0.5): 71 sizes x every recipe x 3 slot counts x 2 owner
// policies x 3 MNT for DWDP, 71 ep sizes x 3 MNT for DEP, then the TTFT search.
void BM_SizingSweep(benchmark::State& state) {
  Scenario scenario;
  if (!MakeScenario(scenario, state)) return;
  InputLengths isl;
  isl.distribution = LengthDistribution::kLognormal;
  isl.mean = 8192;
  isl.cv = 0.5;
  isl.max = 8 * 8192;
  scenario.workload.input_lengths = isl;
  SizingRequest request;
  request.rate = 20;
  request.ttft_p99_ms = 3000;
  request.max_num_tokens = {8192, 16384, 32768};
  request.plan.all_recipes = true;
  request.plan.num_buffers = {2, 3, 4};
  size_t candidates = 0;
  int64_t des_runs = 0;
  for (auto _ : state) {
    auto result = SizeDeployment(scenario, request);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    candidates = result->candidates.size();
    des_runs = result->des_runs;
    benchmark::DoNotOptimize(result->candidates.data());
  }
  state.counters["candidates"] = static_cast<double>(candidates);
  state.counters["des_runs"] = static_cast<double>(des_runs);
}
BENCHMARK(BM_SizingSweep)->Unit(benchmark::kMillisecond)->Iterations(3);

// The full plan sweep with both owner policies priced in full (the fluid model for every plan
// whose ranks share a source).
void BM_PlanEveryRecipeBothOwners(benchmark::State& state) {
  Scenario scenario;
  if (!MakeScenario(scenario, state)) return;
  PlanOptions options;
  options.all_recipes = true;
  options.owners = {OwnerPolicy::kLowest, OwnerPolicy::kBalanced};
  options.tokens_per_rank = {8192, 16384, 32768};
  for (auto _ : state) {
    auto plan = PlanCapacity(scenario, options);
    if (!plan.ok()) {
      state.SkipWithError(std::string(plan.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(plan->candidates.data());
  }
}
BENCHMARK(BM_PlanEveryRecipeBothOwners)->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace
}  // namespace dwdp

BENCHMARK_MAIN();
