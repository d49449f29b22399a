#pragma once

// Analytical (roofline) performance model shared by the simulator and the capacity planner
// (SIMULATOR.md §3). Pure functions over the scenario value types; no state, no I/O.
//
// Units everywhere: time in nanoseconds, sizes in bytes, work in floating-point operations
// (one multiply-add = 2 FLOP), rates in bytes/s and FLOP/s as the hardware profile gives them.
// Results are doubles because they are estimates; byte counts that index memory stay uint64_t.

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/scenario.h"

namespace dwdp {

// A hardware-profile number a result depends on, so reports can say "this depends on an
// assumed compute efficiency" rather than present an estimate as a measurement.
struct ProfileDependency {
  std::string name;  // the HardwareProfile field name, e.g. "flops_fp4"
  double value = 0;
  Provenance source = Provenance::kAssumed;
  friend bool operator==(const ProfileDependency&, const ProfileDependency&) = default;
};

// Adds `name` once (by name) to `deps`.
void AddDependency(std::vector<ProfileDependency>& deps, const std::string& name,
                   const Quantity& quantity);
void MergeDependencies(std::vector<ProfileDependency>& into,
                       const std::vector<ProfileDependency>& from);

// One roofline-costed operation (or a sum of them).
struct OpCost {
  double flops = 0;
  double bytes = 0;    // HBM traffic
  double time_ns = 0;  // roofline time plus fixed kernel overheads
  int64_t kernels = 0;

  OpCost& operator+=(const OpCost& other);
};
OpCost operator+(OpCost a, const OpCost& b);

// Peak dense FLOP/s of the profile for a dtype (FP4 falls back to FP8 when the profile has no
// FP4 rate, as on Hopper, where FP4 weights run through FP8 tensor cores).
const Quantity& PeakFlops(const HardwareProfile& hw, DType dtype);
const char* PeakFlopsName(const HardwareProfile& hw, DType dtype);

// time = max(flops / (peak(dtype) · compute_efficiency), bytes / (hbm_bw · memory_efficiency))
//        + kernels · kernel_overhead_ns
// The max is the roofline: a kernel is limited either by its math or by its HBM traffic, and
// the efficiencies are the fractions of peak that real kernels reach. The overhead is the
// launch/tail cost that makes small kernels slower than their roofline.
OpCost Roofline(const HardwareProfile& hw, DType dtype, double flops, double bytes,
                int64_t kernels = 1);

// Bytes of one stored element of a dense weight or activation of this dtype. FP4 counts one
// FP8 scale per 16 values (NVFP4): 0.5 + 1/16 bytes.
double BytesPerElement(DType dtype);

// A context (prefill) forward shape on one rank.
struct ForwardShape {
  int64_t tokens_per_rank = 0;  // T: tokens this rank processes in the forward
  int64_t sequence_length = 0;  // S: the length of the sequences those tokens belong to
};

// The cost of one transformer layer for a context forward on one rank.
struct LayerCost {
  OpCost attention;           // projections + attention core
  OpCost routed_moe;          // top-k routed experts (MoE layers only)
  OpCost shared_experts;      // MoE layers only
  OpCost dense_ffn;           // dense layers only
  double active_experts = 0;  // expected experts with at least one token (MoE layers)
  // The routed MoE's time comes from the profile's measured table of this shape (moe_compute)
  // rather than the roofline.
  bool routed_moe_measured = false;

  // Work that runs on the compute stream before the MoE kernel of the layer binds its weights
  // (attention, and the shared experts, which read no DWDP-managed tensor).
  double pre_moe_ns() const { return attention.time_ns + shared_experts.time_ns; }
  double total_ns() const {
    return attention.time_ns + routed_moe.time_ns + shared_experts.time_ns + dense_ffn.time_ns;
  }
};

// Expected number of distinct experts hit when `token_expert_pairs / top_k` tokens each pick
// top_k of N experts uniformly: N · (1 − (1 − top_k/N)^T). With T·top_k ≫ N every expert is
// active, so the MoE kernel reads all N experts' weights once.
double ExpectedActiveExperts(int64_t num_experts, int64_t top_k, double tokens);

// Bytes of one routed expert's weights as the kernel reads them: Σ the model's DWDP-managed
// weights when listed, else 3 · hidden · moe_intermediate elements of expert_dtype.
double RoutedExpertBytes(const ModelSpec& model);

// Per-component cost of one MoE layer / one dense layer, and which profile numbers they use.
LayerCost MoeLayerCost(const ModelSpec& model, const HardwareProfile& hw, const ForwardShape& shape,
                       std::vector<ProfileDependency>* deps = nullptr);
LayerCost DenseLayerCost(const ModelSpec& model, const HardwareProfile& hw,
                         const ForwardShape& shape, std::vector<ProfileDependency>* deps = nullptr);

// Routed-MoE cost when only `experts_per_rank` experts live on this rank and the rank computes
// `token_expert_pairs` (token, expert) products for them (DEP: tokens arrive by all-to-all).
OpCost RoutedMoeCost(const ModelSpec& model, const HardwareProfile& hw, double token_expert_pairs,
                     double active_experts);

// Activation working set of a context forward on one rank (bytes), used by the planner's memory
// fit. Per token: the BF16 residual stream and its normalised copy (2 · hidden · 2 B) plus the
// larger of the attention working set (MLA: q, k, v and output per head in BF16; GQA likewise)
// and the MoE working set (top_k copies of the FP8 input, the BF16 gate/up output, the
// activated FP8 intermediate and the BF16 expert output).
double ActivationBytes(const ModelSpec& model, const ForwardShape& shape);

// ---------------------------------------------------------------------------------------------
// DWDP copy side: what a rank pulls per MoE layer and a fast estimate of how long it takes.

struct CopyEstimate {
  uint64_t bytes = 0;    // pulled by one rank per MoE layer
  int64_t copies = 0;    // copy operations issued (each pays copy_latency_ns)
  double time_ns = 0;    // one layer's copy on the rank's copy stream
  double bandwidth = 0;  // effective bytes/s the schedule reaches
  std::vector<ProfileDependency> depends_on;
};

// (N − num_experts_per_worker) · expert_bytes: every expert the rank does not store, all
// weights. (Recipes have no tail padding, so every rank stores exactly `size` experts.)
uint64_t PulledBytesPerLayer(const ModelSpec& model, int64_t num_experts_per_worker);

// Estimates per contention mode (DWDP_SPEC §4); the simulator gives the detailed answer.
//   rotate:      every rank reads from a different peer at every moment (a Latin square), so
//                each pull runs at the single-pair copy rate:
//                  t = bytes / peer_copy_bw + copies · copy_latency_ns,  copies = W · (d − 1)
//   ascending:   every rank walks owners 0, 1, …; the d − 1 ranks that do not own expert 0 all
//                start on rank 0 and share its egress. A fluid (max-min) model of equal
//                slices gives a critical path of d(d − 1)/2 slice-times against d − 1 for
//                rotate, i.e. d/2 × rotate (2.0× at d = 4, as measured on 4 H100s):
//                  t = (d/2) · bytes / peer_copy_bw + copies · copy_latency_ns
//   round_robin: every copy is cut into slice_bytes pieces interleaved across owners; each
//                piece pays the fixed copy cost, and the interleaving keeps several peers'
//                traffic in flight into one GPU, which reached only concurrent_pull_efficiency
//                of the pair rate on Hopper:
//                  t = bytes / (peer_copy_bw · concurrent_pull_efficiency)
//                      + ceil(bytes / slice_bytes) · copy_latency_ns
CopyEstimate EstimateLayerCopy(const ModelSpec& model, const HardwareProfile& hw, int64_t dwdp_size,
                               int64_t num_experts_per_worker, const ContentionConfig& contention);

// ---------------------------------------------------------------------------------------------
// DEP baseline: experts sharded N/d per GPU, tokens moved to their experts by all-to-all.

struct DepLayerCost {
  double dispatch_ns = 0;  // all-to-all of FP8 hidden states to the experts' ranks
  double combine_ns = 0;   // all-to-all of BF16 expert outputs back
  OpCost routed_moe;       // local experts, mean load
  double sync_ns = 0;      // extra wait for the most loaded rank (MoE compute imbalance)
  double total_moe_ns() const { return dispatch_ns + routed_moe.time_ns + sync_ns + combine_ns; }
};

// One all-to-all phase on one rank: it sends `bytes_out` and receives `bytes_in` over NVLink,
// nvlink_bw in each direction at once, so the larger of the two sets the time, plus one
// kernel_overhead_ns for the collective. 0 without a link figure. Shared by the planner's
// closed form below and the DEP baseline's per-rank model (core/dep/dep_timing.h).
double DepAllToAllNs(const HardwareProfile& hw, double bytes_out, double bytes_in);

//   dispatch bytes per rank = T · top_k · hidden · 1 B (FP8), combine = T · top_k · hidden · 2 B
//   (BF16); (d − 1)/d of them leave the GPU (uniform routing), at nvlink_bw per direction,
//   plus one kernel_overhead_ns per collective. No de-duplication of a token sent to several
//   experts on one rank is assumed.
//   MoE compute: each rank computes on average T · top_k products (its share of all ranks'
//   tokens) over N/d local experts; uniform routing spreads every rank's tokens over all experts,
//   so the experts' work is even whatever each rank's own token count.
//   The all-to-alls are collective: each MoE layer waits for the rank whose attention ends last
//   and moves the largest rank's tokens. With per-rank work ~ normal(mean, cv · mean), the
//   expected max of d draws is about mean · (1 + cv · sqrt(2 ln d)), so
//   sync = (attention + dispatch + combine) · cv · sqrt(2 ln d). This is the closed form (fast
//   path) of DepForwardSampled, which takes the per-rank token counts of a packed forward.
DepLayerCost DepMoeLayerCost(const ModelSpec& model, const HardwareProfile& hw,
                             const ForwardShape& shape, int64_t ep_size, double tokens_cv,
                             std::vector<ProfileDependency>* deps = nullptr);

// ---------------------------------------------------------------------------------------------
// Whole forwards.

// Layer indices 0 .. L−1 of the model: true for a MoE layer.
std::vector<bool> MoeLayerFlags(const ModelSpec& model);

// One rank's per-layer compute with uniform layers.
struct UniformLayers {
  double dense_ns = 0;    // a dense layer (all of it)
  double pre_moe_ns = 0;  // attention and shared experts of a MoE layer
  double moe_ns = 0;      // the routed-MoE kernel
};

struct DwdpForwardEstimate {
  double forward_ns = 0;
  double stall_ns = 0;        // total exposed copy wait over the forward
  double moe_compute_ns = 0;  // one MoE layer's compute, copy slowdown included
  double copy_ns = 0;         // one MoE layer's copy
};

// Runs the pipeline's event recurrence (DWDP_SPEC §4) over the model's layers with uniform
// per-layer costs, k = num_buffers slots and one copy stream:
//   copy_start(i) = max(copy_end(i − 1), moe_end(i − k))   // X.wait(free[slot]); i < k: prime
//   moe_start(i)  = max(pre_moe_end(i), copy_end(i))       // C.wait(ready[slot])
// Dense layers and each layer's attention and shared expert run before its MoE kernel binds
// the slot, so they hide copies too. The MoE layers run `compute_slowdown` slower for the
// fraction of a layer that a copy overlaps.
//
// Why k matters less than "max(0, copy − (k − 1) · compute)" suggests: prefetch(i + k) is
// issued after layer i's MoE kernel is enqueued and waits for free[slot], recorded after that
// kernel; layer i + k's MoE kernel waits for ready[slot]. Between the two lie (k − 1) whole
// layers plus layer i + k's attention, so one copy taken alone has that window. But the copies
// of all layers run one after another on the rank's single copy stream (and its one NVLink
// ingress), so in steady state a layer cannot start more often than once per copy time: when
// copy > layer, every layer waits copy − layer, for every k ≥ 2; when copy ≤ layer, nothing
// waits. Extra slots only shorten the start of a forward (prime fills k slots while dense layers
// run) and absorb layer-to-layer variation; they never raise the copy stream's throughput.
DwdpForwardEstimate DwdpForward(const ModelSpec& model, const HardwareProfile& hw,
                                const ForwardShape& shape, int64_t num_buffers, double copy_ns);
// The same recurrence over given layer costs (the sizing model's per-forward evaluation).
DwdpForwardEstimate DwdpForwardOf(const std::vector<bool>& is_moe, const UniformLayers& layers,
                                  double compute_slowdown, int64_t num_buffers, double copy_ns);

// DEP forward of one lockstep step in which rank r has shape ranks[r] (0 tokens: idle, it still
// joins the collectives): dense layers end when the slowest rank's do, every MoE layer waits for
// the slowest rank's attention, the all-to-alls move the largest rank's tokens and the experts
// do the mean rank's work. With every rank the same it equals DepForward at tokens_cv = 0.
double DepForwardSampled(const ModelSpec& model, const HardwareProfile& hw,
                         const std::vector<ForwardShape>& ranks);

struct DepForwardEstimate {
  double forward_ns = 0;
  DepLayerCost moe_layer;
};
DepForwardEstimate DepForward(const ModelSpec& model, const HardwareProfile& hw,
                              const ForwardShape& shape, int64_t ep_size, double tokens_cv);

}  // namespace dwdp
