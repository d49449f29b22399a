#pragma once

// The planner's copy model for a whole DWDP group: what every rank pulls per MoE layer, from
// which source and in which order (the real copy plans of core/layout, so the owner policy and
// the copy schedule are the ones a run uses), priced with the sources' egress shared among the
// readers that pull from them at the same moment.
//
// Two ways to price it:
// * Latin square. When every rank's j-th visit goes to source (r + c_j) mod d with the same bytes
//   and copies for every r (a uniform partition, or any recipe under the balanced owner policy,
//   with the rotate schedule), the ranks keep step and no source ever has two readers: one
//   layer's copy is Σ bytes / pair rate + copies · copy_latency_ns, exactly.
// * Fluid pipeline. Otherwise the ranks drift apart and share sources, so the model runs every
//   rank's slot pipeline (DWDP_SPEC §4: prime k layers, a copy of layer i waits for the MoE
//   kernel of layer i − k, the MoE kernel of layer i waits for its copy) over the forward, with
//   each copy a flow from its source: while n copies read one source they share its egress
//   equally, egress_bw (or the pair rate) times egress_fanout_efficiency when n ≥ 2, each capped
//   at the puller's pair rate. Consecutive copies from one source are one visit (their fixed
//   costs first, then their bytes). Kernels run compute_slowdown slower while a copy runs on
//   their GPU, and never faster than their tensor read at compute_read_bw. This is the
//   simulator's link model (backends/sim, SIMULATOR §2) without its host, queue and event costs.

#include <cstdint>
#include <vector>

#include "core/config/scenario.h"
#include "core/layout/layout.h"

namespace dwdp {

// Consecutive copies of one layer from one source.
struct CopyVisit {
  int64_t source = 0;
  uint64_t bytes = 0;
  int64_t copies = 0;
};

struct GroupCopies {
  std::vector<std::vector<CopyVisit>> ranks;  // per rank, one layer, in issue order
  std::vector<uint64_t> served_bytes;         // per source, per layer (egress)
  uint64_t pulled_bytes_max = 0;              // the most any rank pulls per layer
  int64_t copies_max = 0;                     // the most copies any rank issues per layer
  bool latin_square = false;
  // The staggered schedule: the layer at position p starts at visit p mod visits (every rank
  // alike, so a Latin square stays one in every layer).
  bool staggered = false;
};

// The copy plans (MakeCopyPlan with the layout's owner policy and this schedule) of every rank.
GroupCopies GroupCopiesOf(const GroupLayout& layout, const ContentionConfig& contention);

// One rank's compute as the pipeline runs it (the same split as core/perf/layer_times.h).
struct PipelineCompute {
  double prelude_ns = 0;  // dense layers before the first MoE layer
  double pre_moe_ns = 0;  // attention and shared experts of a MoE layer (before the kernel binds)
  double moe_ns = 0;      // the MoE kernel
  double moe_read_bytes = 0;  // bytes the MoE kernel reads (its composite tensors)
  int64_t moe_layers = 0;
  int64_t num_buffers = 2;
};

struct GroupPipeline {
  std::vector<double> forward_ns;         // per rank, one forward
  std::vector<double> copy_ns_per_layer;  // per rank, mean time from a layer's first copy to its
                                          // last completing
  std::vector<double> stall_ns;           // per rank, total wait of MoE kernels for copies
  bool fluid = false;                     // false: the Latin-square closed form
  // Fluid runs: the slowest rank's forward in the lowest and highest of the perturbed runs.
  double forward_low_ns = 0;
  double forward_high_ns = 0;
  // (high − low) / mean: above kUnstableSpread the outcome is not predictable to 10%.
  double spread() const;
  bool unstable() const { return spread() > kUnstableSpread; }
  static constexpr double kUnstableSpread = 0.10;
  double slowest_forward_ns() const;
  int64_t slowest_rank() const;
};

// Prices one forward of every rank. A fluid pipeline whose copies may take more than 80% of a
// layer's compute runs three times, with the per-copy fixed cost as given, 5% lower and 5%
// higher, and gives the mean (see forward_low_ns). A run whose last layers repeat exactly is
// extended instead of run to the end.
GroupPipeline PriceGroupPipeline(const GroupCopies& copies, const HardwareProfile& hw,
                                 const PipelineCompute& compute);

// The Latin-square copy time of one layer of rank `rank`: Σ copies · copy_latency_ns + bytes /
// min(pair rate, egress).
double UncontendedLayerCopyNs(const GroupCopies& copies, const HardwareProfile& hw, int64_t rank);

}  // namespace dwdp
