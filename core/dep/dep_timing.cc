#include "core/dep/dep_timing.h"

#include <algorithm>

#include "core/perf/perf_model.h"

namespace dwdp::dep {

uint64_t RowsBytes(const DepShape& shape, int64_t rows) {
  return static_cast<uint64_t>(rows) * static_cast<uint64_t>(shape.hidden) * 2;
}

int64_t RowsSentAway(const DispatchPlan& plan, int64_t rank) {
  const SourcePlan& src = plan.sources[static_cast<size_t>(rank)];
  return src.rows() - src.send_counts[static_cast<size_t>(rank)];
}

int64_t RowsReceivedFromOthers(const DispatchPlan& plan, int64_t rank) {
  const DestinationPlan& dest = plan.destinations[static_cast<size_t>(rank)];
  return dest.rows() - dest.recv_counts[static_cast<size_t>(rank)];
}

std::vector<DepRankTimes> SimulateDepForward(const ModelSpec& model, const HardwareProfile& hw,
                                             const std::vector<DispatchPlan>& plans,
                                             const std::vector<int64_t>& moe_layers,
                                             const LayerTimes& times, int64_t mean_tokens) {
  std::vector<DepRankTimes> ranks;
  if (plans.empty()) return ranks;
  const int64_t ep = plans.front().ep_size;
  const double mean = static_cast<double>(std::max<int64_t>(mean_tokens, 1));
  ranks.resize(static_cast<size_t>(ep));
  // Dense layers before the first MoE layer: data-parallel, the slowest rank sets the start.
  double prelude = 0;
  for (int64_t r = 0; r < ep; ++r) {
    ranks[static_cast<size_t>(r)].rank = r;
    ranks[static_cast<size_t>(r)].tokens = plans.front().sources[static_cast<size_t>(r)].tokens;
    prelude =
        std::max(prelude, times.prelude_ns *
                              static_cast<double>(ranks[static_cast<size_t>(r)].tokens) / mean);
  }
  double clock = prelude;
  const double all_pairs = mean * static_cast<double>(model.top_k);
  const double all_active =
      ExpectedActiveExperts(model.num_experts, model.top_k, mean);  // the DWDP layer's experts
  const double dwdp_roofline = RoutedMoeCost(model, hw, all_pairs, all_active).time_ns;
  for (size_t p = 0; p < plans.size(); ++p) {
    const DispatchPlan& plan = plans[p];
    const double attention = p < times.attention_ns.size() ? times.attention_ns[p] : 0;
    const double moe = p < times.moe_ns.size() ? times.moe_ns[p] : 0;
    std::vector<DepLayerTimes> layer(static_cast<size_t>(ep));
    double max_attention = 0, max_dispatch = 0, max_compute = 0, max_combine = 0;
    for (int64_t r = 0; r < ep; ++r) {
      DepLayerTimes& t = layer[static_cast<size_t>(r)];
      const DestinationPlan& dest = plan.destinations[static_cast<size_t>(r)];
      t.layer = p < moe_layers.size() ? moe_layers[p] : static_cast<int64_t>(p);
      t.attention_ns =
          attention * static_cast<double>(plan.sources[static_cast<size_t>(r)].tokens) / mean;
      t.dispatch_bytes = RowsBytes(plan.shape, RowsSentAway(plan, r));
      const uint64_t received = RowsBytes(plan.shape, RowsReceivedFromOthers(plan, r));
      t.combine_bytes = received;  // every received row goes back
      t.dispatch_ns = ep > 1 ? DepAllToAllNs(hw, static_cast<double>(t.dispatch_bytes),
                                             static_cast<double>(received))
                             : 0;
      t.combine_ns = ep > 1 ? DepAllToAllNs(hw, static_cast<double>(received),
                                            static_cast<double>(t.dispatch_bytes))
                            : 0;
      t.rows_received = dest.rows();
      double active = 0;
      for (int32_t c : dest.expert_counts) active += c > 0 ? 1 : 0;
      const double own = RoutedMoeCost(model, hw, static_cast<double>(dest.rows()), active).time_ns;
      t.compute_ns = dwdp_roofline > 0 ? moe * own / dwdp_roofline : own;
      max_attention = std::max(max_attention, t.attention_ns);
      max_dispatch = std::max(max_dispatch, t.dispatch_ns);
      max_compute = std::max(max_compute, t.compute_ns);
      max_combine = std::max(max_combine, t.combine_ns);
    }
    for (int64_t r = 0; r < ep; ++r) {
      DepLayerTimes& t = layer[static_cast<size_t>(r)];
      t.wait_ns = (max_attention - t.attention_ns) + (max_dispatch - t.dispatch_ns) +
                  (max_compute - t.compute_ns) + (max_combine - t.combine_ns);
      ranks[static_cast<size_t>(r)].layers.push_back(t);
    }
    clock += max_attention + max_dispatch + max_compute + max_combine;
  }
  for (DepRankTimes& r : ranks) r.forward_ns = clock;
  return ranks;
}

}  // namespace dwdp::dep
