#include "backends/sim/plan_simulate.h"

#include "backends/sim/simulate.h"
#include "core/layout/layout.h"
#include "core/perf/layer_times.h"

namespace dwdp::sim {

absl::StatusOr<SimulatedCandidate> SimulateCandidate(const Scenario& base,
                                                     const PlanCandidate& candidate,
                                                     ContentionMode contention) {
  Scenario scenario = base;
  scenario.dwdp.dwdp_size = candidate.dwdp_size;
  scenario.dwdp.num_experts_per_worker = candidate.num_experts_per_worker;
  scenario.dwdp.num_prefetch_experts = candidate.num_prefetch_experts;
  scenario.dwdp.loaded_chunk.reset();
  scenario.dwdp.num_buffers = candidate.num_buffers;
  scenario.dwdp.contention.mode = contention;
  scenario.dwdp.owner = candidate.owner;
  scenario.workload.tokens_per_rank = candidate.tokens_per_rank;
  scenario.workload.sequence_length = candidate.sequence_length;
  auto layout = ComputeGroupLayout(scenario);
  if (!layout.ok()) return layout.status();
  const LayerTimes times = ComputeLayerTimes(scenario);
  SimulateOptions options;
  options.forwards = 1;
  options.check_hazards = false;
  options.attention_ns = times.attention_ns;
  options.moe_ns = times.moe_ns;
  options.prelude_ns = times.prelude_ns;
  auto result = SimulateScenario(scenario, *layout, options);
  if (!result.ok()) return result.status();
  // Per-layer figures of the rank with the most copy time, averaged over the MoE layers.
  SimulatedCandidate out;
  out.planned = candidate;
  double copy_ns = 0;
  double stall_ns = 0;
  size_t layers = 0;
  for (const RankReport& rank : result->report.ranks) {
    double rank_copy = 0;
    for (const LayerReport& l : rank.layers) rank_copy += l.copy_ns;
    if (rank_copy >= copy_ns) {
      copy_ns = rank_copy;
      stall_ns = rank.stall_ns;
      layers = rank.layers.size();
    }
  }
  const double per_layer = layers ? 1.0 / static_cast<double>(layers) : 0;
  out.copy_ns_per_layer = copy_ns * per_layer;
  out.stall_ns_per_layer = stall_ns * per_layer;
  out.forward_ns = result->report.forward_ns;
  out.simulation_ok = result->report.ok;
  return out;
}

}  // namespace dwdp::sim
