#pragma once

// DEP per-layer times: the result type both backends report (the GPU measures it with CUDA
// events, the simulator prices it here), and the simulator's model of one DEP forward.
//
// The model, per MoE layer, all ranks in lockstep (the all-to-alls are collective):
//   attention_r  the layer's attention (LayerTimes, the same source as the DWDP run) scaled by
//                rank r's tokens over the mean
//   dispatch_r   DepAllToAllNs (core/perf/perf_model.h, the planner's term) of the bf16 rows
//                rank r sends to and receives from the other ranks; its own rows stay local
//   compute_r    the layer's routed-MoE time scaled by RoutedMoeCost(rank r's rows, its active
//                local experts) / RoutedMoeCost(tokens * top_k, every active expert): the
//                planner's roofline term, anchored to the layer time the DWDP run uses
//   combine_r    DepAllToAllNs of the same rows back
//   wait_r       every phase ends when the slowest rank's does, so rank r waits the slowest
//                rank's time minus its own, summed over the phases
// and every rank's layer takes max(attention) + max(dispatch) + max(compute) + max(combine).

#include <cstdint>
#include <vector>

#include "core/config/scenario.h"
#include "core/dep/dep_plan.h"
#include "core/perf/layer_times.h"

namespace dwdp::dep {

struct DepLayerTimes {
  int64_t layer = 0;  // the model's layer index
  double attention_ns = 0;
  double wait_ns = 0;  // for the slowest rank, all phases together
  double dispatch_ns = 0;
  double compute_ns = 0;
  double combine_ns = 0;
  uint64_t dispatch_bytes = 0;  // sent to other ranks (the combine sends what it received)
  uint64_t combine_bytes = 0;
  int64_t rows_received = 0;  // (token, expert) rows this rank's experts computed
};

struct DepRankTimes {
  int64_t rank = 0;
  int64_t tokens = 0;
  double forward_ns = 0;
  std::vector<DepLayerTimes> layers;  // MoE layers in order
};

// Bytes of the rows rank r sends to, and receives from, the other ranks (bf16 hidden states).
uint64_t RowsBytes(const DepShape& shape, int64_t rows);
int64_t RowsSentAway(const DispatchPlan& plan, int64_t rank);
int64_t RowsReceivedFromOthers(const DispatchPlan& plan, int64_t rank);

// One simulated forward of every rank. plans[p] is the plan of MoE layer position p (layer
// index moe_layers[p]); times is the scenario's LayerTimes for the mean token count.
std::vector<DepRankTimes> SimulateDepForward(const ModelSpec& model, const HardwareProfile& hw,
                                             const std::vector<DispatchPlan>& plans,
                                             const std::vector<int64_t>& moe_layers,
                                             const LayerTimes& times, int64_t mean_tokens);

}  // namespace dwdp::dep
