#include "core/perf/layer_times.h"

namespace dwdp {

LayerTimes ComputeLayerTimes(const Scenario& scenario) {
  LayerTimes times;
  const size_t layers = scenario.model.moe_layers.size();
  if (scenario.workload.layer_compute_ns) {
    // A measured or chosen per-layer time: all of it is the MoE kernel, which is what reads
    // the pulled experts and so what the copy must beat.
    times.attention_ns.assign(layers, 0);
    times.moe_ns.assign(layers, *scenario.workload.layer_compute_ns);
    times.source = "scenario (workload.layer_compute_ns)";
    return times;
  }
  const ForwardShape shape{scenario.workload.tokens_per_rank, scenario.workload.sequence_length};
  const LayerCost moe = MoeLayerCost(scenario.model, scenario.hardware, shape, &times.depends_on);
  times.attention_ns.assign(layers, moe.pre_moe_ns());
  times.moe_ns.assign(layers, moe.routed_moe.time_ns);
  const int64_t dense_before = layers == 0 ? 0 : scenario.model.moe_layers.front();
  if (dense_before > 0) {
    const LayerCost dense =
        DenseLayerCost(scenario.model, scenario.hardware, shape, &times.depends_on);
    times.prelude_ns = static_cast<double>(dense_before) * dense.total_ns();
  }
  times.source = moe.routed_moe_measured
                     ? "perf model; MoE layer from the profile's measured table (moe_compute)"
                     : "perf model (roofline)";
  return times;
}

}  // namespace dwdp
