// Planner speed: the full sweep a user runs to choose a DWDP configuration must be interactive.
// Target: every dwdp_size 2..72 with every recipe, for DeepSeek-V3 NVFP4 on GB200 NVL72, in
// under a second.

#include <benchmark/benchmark.h>

#include "core/config/loader.h"
#include "core/plan/planner.h"

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

}  // namespace
}  // namespace dwdp

BENCHMARK_MAIN();
