#include "core/perf/perf_model.h"
#include "core/perf/compute_table.h"

#include <algorithm>
#include <cmath>

namespace dwdp {
namespace {

// The profile numbers every roofline result uses.
void AddRooflineDependencies(const HardwareProfile& hw, DType dtype,
                             std::vector<ProfileDependency>* deps) {
  if (deps == nullptr) return;
  AddDependency(*deps, PeakFlopsName(hw, dtype), PeakFlops(hw, dtype));
  AddDependency(*deps, "compute_efficiency", hw.compute_efficiency);
  AddDependency(*deps, "hbm_bw", hw.hbm_bw);
  AddDependency(*deps, "memory_efficiency", hw.memory_efficiency);
  AddDependency(*deps, "kernel_overhead_ns", hw.kernel_overhead_ns);
}

// Expected context length a token attends to. Causal attention over sequences of length S:
// token j sees j + 1 tokens, so the mean over the sequence is (S + 1) / 2 ≈ S / 2. A chunk of a
// longer sequence sees more, an early chunk less; over all chunks of a sequence the mean is the
// same, which is what a throughput estimate needs.
double MeanAttendedContext(const ForwardShape& shape) {
  return static_cast<double>(shape.sequence_length + 1) / 2.0;
}

OpCost AttentionCost(const ModelSpec& model, const HardwareProfile& hw, const ForwardShape& shape,
                     std::vector<ProfileDependency>* deps) {
  const AttentionSpec& a = model.attention;
  if (a.num_heads <= 0) return {};
  const double tokens = static_cast<double>(shape.tokens_per_rank);
  const double hidden = static_cast<double>(model.hidden_size);
  const double heads = static_cast<double>(a.num_heads);
  const double context = MeanAttendedContext(shape);

  // Weight parameters of the projections, per layer (each is read once per forward), and the
  // per-token width of q, k, v and the attention output (BF16 activations).
  double projection_params = 0;
  int64_t projection_kernels = 0;
  double core_flops_per_token = 0;
  double qkvo_width = 0;
  if (a.kind == AttentionKind::kMla) {
    const double qk_head = static_cast<double>(a.qk_nope_head_dim + a.qk_rope_head_dim);
    const double v_head = static_cast<double>(a.v_head_dim);
    const double kv_lora = static_cast<double>(a.kv_lora_rank);
    const double q_lora = static_cast<double>(a.q_lora_rank);
    // Query: hidden -> q_lora -> heads·qk_head (or hidden -> heads·qk_head without LoRA).
    const double q_params =
        q_lora > 0 ? hidden * q_lora + q_lora * heads * qk_head : hidden * heads * qk_head;
    // Compressed KV + decoupled RoPE key: hidden -> kv_lora + rope; up-projection of the
    // compressed KV to per-head keys (nope part) and values; output heads·v_head -> hidden.
    const double kv_down = hidden * (kv_lora + static_cast<double>(a.qk_rope_head_dim));
    const double kv_up = kv_lora * heads * (static_cast<double>(a.qk_nope_head_dim) + v_head);
    const double out = heads * v_head * hidden;
    projection_params = q_params + kv_down + kv_up + out;
    projection_kernels = q_lora > 0 ? 5 : 4;
    // Scores Q·Kᵀ over qk_head dims and the weighted sum over v_head dims, per attended token.
    core_flops_per_token = 2.0 * heads * context * (qk_head + v_head);
    qkvo_width = heads * (2.0 * qk_head + 2.0 * v_head);
  } else {
    const double head_dim = static_cast<double>(a.head_dim);
    const double kv_heads = static_cast<double>(std::max<int64_t>(a.num_kv_heads, 1));
    projection_params = hidden * heads * head_dim             // q
                        + 2.0 * hidden * kv_heads * head_dim  // k, v
                        + heads * head_dim * hidden;          // o
    projection_kernels = 2;                                   // fused qkv, o
    core_flops_per_token = 4.0 * heads * context * head_dim;
    qkvo_width = 2.0 * heads * head_dim + 2.0 * kv_heads * head_dim;
  }
  // Projections run in the dense dtype (FP8 in the NVFP4 checkpoints); their traffic is the
  // weights once plus the BF16 hidden state in and out.
  const double projection_flops = 2.0 * tokens * projection_params;
  const double projection_bytes =
      projection_params * BytesPerElement(model.dense_dtype) + tokens * hidden * 2.0 * 2.0;
  // The attention core (flash-attention style) runs in BF16 and streams q, k, v and the output
  // once; the score matrix never reaches HBM.
  const double core_flops = tokens * core_flops_per_token;
  const double core_bytes = tokens * qkvo_width * 2.0;
  AddRooflineDependencies(hw, model.dense_dtype, deps);
  AddRooflineDependencies(hw, DType::kBf16, deps);
  return Roofline(hw, model.dense_dtype, projection_flops, projection_bytes, projection_kernels) +
         Roofline(hw, DType::kBf16, core_flops, core_bytes, 1);
}

// A SwiGLU FFN of `width` on every token: gate, up and down GEMMs of hidden × width.
OpCost DenseFfnCost(const ModelSpec& model, const HardwareProfile& hw, double tokens, double width,
                    std::vector<ProfileDependency>* deps) {
  if (width <= 0 || tokens <= 0) return {};
  const double hidden = static_cast<double>(model.hidden_size);
  const double flops = 6.0 * tokens * hidden * width;
  const double bytes =
      3.0 * hidden * width * BytesPerElement(model.dense_dtype) + tokens * hidden * 3.0;
  AddRooflineDependencies(hw, model.dense_dtype, deps);
  return Roofline(hw, model.dense_dtype, flops, bytes, 2);  // fused gate/up, down
}

}  // namespace

void AddDependency(std::vector<ProfileDependency>& deps, const std::string& name,
                   const Quantity& quantity) {
  for (const ProfileDependency& d : deps) {
    if (d.name == name) return;
  }
  deps.push_back({name, quantity.value, quantity.source});
}

void MergeDependencies(std::vector<ProfileDependency>& into,
                       const std::vector<ProfileDependency>& from) {
  for (const ProfileDependency& d : from) AddDependency(into, d.name, {d.value, d.source});
}

OpCost& OpCost::operator+=(const OpCost& other) {
  flops += other.flops;
  bytes += other.bytes;
  time_ns += other.time_ns;
  kernels += other.kernels;
  return *this;
}

OpCost operator+(OpCost a, const OpCost& b) { return a += b; }

const Quantity& PeakFlops(const HardwareProfile& hw, DType dtype) {
  switch (dtype) {
    case DType::kFp4:
      return hw.flops_fp4.value > 0 ? hw.flops_fp4 : hw.flops_fp8;
    case DType::kFp8:
      return hw.flops_fp8;
    case DType::kBf16:
      return hw.flops_bf16;
  }
  return hw.flops_bf16;
}

const char* PeakFlopsName(const HardwareProfile& hw, DType dtype) {
  switch (dtype) {
    case DType::kFp4:
      return hw.flops_fp4.value > 0 ? "flops_fp4" : "flops_fp8";
    case DType::kFp8:
      return "flops_fp8";
    case DType::kBf16:
      return "flops_bf16";
  }
  return "flops_bf16";
}

double BytesPerElement(DType dtype) {
  switch (dtype) {
    case DType::kFp4:
      return 0.5 + 1.0 / 16.0;
    case DType::kFp8:
      return 1.0;
    case DType::kBf16:
      return 2.0;
  }
  return 2.0;
}

OpCost Roofline(const HardwareProfile& hw, DType dtype, double flops, double bytes,
                int64_t kernels) {
  OpCost cost;
  cost.flops = flops;
  cost.bytes = bytes;
  cost.kernels = kernels;
  const double flop_rate = PeakFlops(hw, dtype).value * hw.compute_efficiency.value;  // FLOP/s
  const double byte_rate = hw.hbm_bw.value * hw.memory_efficiency.value;              // B/s
  const double math_ns = flop_rate > 0 ? flops / flop_rate * 1e9 : 0.0;
  const double memory_ns = byte_rate > 0 ? bytes / byte_rate * 1e9 : 0.0;
  cost.time_ns =
      std::max(math_ns, memory_ns) + static_cast<double>(kernels) * hw.kernel_overhead_ns.value;
  return cost;
}

double ExpectedActiveExperts(int64_t num_experts, int64_t top_k, double tokens) {
  if (num_experts <= 0 || top_k <= 0 || tokens <= 0) return 0;
  const double n = static_cast<double>(num_experts);
  const double p_miss = 1.0 - std::min(1.0, static_cast<double>(top_k) / n);
  // (1 − top_k/N)^T: the chance that no token picks a given expert.
  return n * (1.0 - std::pow(p_miss, tokens));
}

double RoutedExpertBytes(const ModelSpec& model) {
  const uint64_t listed = model.expert_bytes();
  if (listed > 0) return static_cast<double>(listed);
  return 3.0 * static_cast<double>(model.hidden_size) *
         static_cast<double>(model.moe_intermediate_size) * BytesPerElement(model.expert_dtype);
}

OpCost RoutedMoeCost(const ModelSpec& model, const HardwareProfile& hw, double token_expert_pairs,
                     double active_experts) {
  if (token_expert_pairs <= 0) return {};
  const double hidden = static_cast<double>(model.hidden_size);
  const double inter = static_cast<double>(model.moe_intermediate_size);
  // Each (token, expert) product: gate and up (hidden -> inter each) and down (inter -> hidden),
  // 2 FLOP per multiply-add.
  const double flops = 6.0 * token_expert_pairs * hidden * inter;
  // Weights of every active expert are read once (the grouped GEMM batches all tokens of an
  // expert); per product the FP8 input row is read and the BF16 output row written.
  const double bytes =
      active_experts * RoutedExpertBytes(model) + token_expert_pairs * hidden * (1.0 + 2.0);
  return Roofline(hw, model.expert_dtype, flops, bytes, 2);  // fc1 (+ activation), fc2
}

LayerCost MoeLayerCost(const ModelSpec& model, const HardwareProfile& hw, const ForwardShape& shape,
                       std::vector<ProfileDependency>* deps) {
  LayerCost cost;
  const double tokens = static_cast<double>(shape.tokens_per_rank);
  cost.attention = AttentionCost(model, hw, shape, deps);
  cost.active_experts = ExpectedActiveExperts(model.num_experts, model.top_k, tokens);
  cost.routed_moe =
      RoutedMoeCost(model, hw, tokens * static_cast<double>(model.top_k), cost.active_experts);
  AddRooflineDependencies(hw, model.expert_dtype, deps);
  if (const MoeComputeTable* table = FindMoeComputeTable(hw, model)) {
    cost.routed_moe.time_ns = InterpolateMoeTime(table->tokens, table->alone_ns, tokens);
    cost.routed_moe_measured = true;
    if (deps != nullptr) {
      AddDependency(*deps, "moe_compute", Quantity{cost.routed_moe.time_ns, table->source});
    }
  }
  // Shared experts have the routed experts' width and see every token.
  cost.shared_experts = DenseFfnCost(
      model, hw, tokens,
      static_cast<double>(model.num_shared_experts * model.moe_intermediate_size), deps);
  return cost;
}

LayerCost DenseLayerCost(const ModelSpec& model, const HardwareProfile& hw,
                         const ForwardShape& shape, std::vector<ProfileDependency>* deps) {
  LayerCost cost;
  cost.attention = AttentionCost(model, hw, shape, deps);
  cost.dense_ffn = DenseFfnCost(model, hw, static_cast<double>(shape.tokens_per_rank),
                                static_cast<double>(model.dense_intermediate_size), deps);
  return cost;
}

double ActivationBytes(const ModelSpec& model, const ForwardShape& shape) {
  const AttentionSpec& a = model.attention;
  const double hidden = static_cast<double>(model.hidden_size);
  const double inter = static_cast<double>(model.moe_intermediate_size);
  const double heads = static_cast<double>(a.num_heads);
  double attention_width = 0;
  if (a.kind == AttentionKind::kMla) {
    const double qk_head = static_cast<double>(a.qk_nope_head_dim + a.qk_rope_head_dim);
    attention_width = heads * (2.0 * qk_head + 2.0 * static_cast<double>(a.v_head_dim)) * 2.0;
  } else {
    const double kv_heads = static_cast<double>(std::max<int64_t>(a.num_kv_heads, 1));
    attention_width = (2.0 * heads + 2.0 * kv_heads) * static_cast<double>(a.head_dim) * 2.0;
  }
  const double moe_width = static_cast<double>(model.top_k) *
                           (hidden * 1.0 + 2.0 * inter * 2.0 + inter * 1.0 + hidden * 2.0);
  const double per_token = 2.0 * hidden * 2.0 + std::max(attention_width, moe_width);
  return per_token * static_cast<double>(shape.tokens_per_rank);
}

uint64_t PulledBytesPerLayer(const ModelSpec& model, int64_t num_experts_per_worker) {
  const int64_t remote = std::max<int64_t>(0, model.num_experts - num_experts_per_worker);
  return static_cast<uint64_t>(remote) * model.expert_bytes();
}

CopyEstimate EstimateLayerCopy(const ModelSpec& model, const HardwareProfile& hw, int64_t dwdp_size,
                               int64_t num_experts_per_worker, const ContentionConfig& contention) {
  CopyEstimate est;
  est.bytes = PulledBytesPerLayer(model, num_experts_per_worker);
  if (est.bytes == 0 || dwdp_size < 2) return est;
  const double bytes = static_cast<double>(est.bytes);
  const double pair_rate = hw.peer_copy_bw.value;  // B/s, one puller from one peer
  const double latency = hw.copy_latency_ns.value;
  const double weights = static_cast<double>(std::max<size_t>(model.weights.size(), 1));
  const double d = static_cast<double>(dwdp_size);
  AddDependency(est.depends_on, "peer_copy_bw", hw.peer_copy_bw);
  AddDependency(est.depends_on, "copy_latency_ns", hw.copy_latency_ns);
  if (pair_rate <= 0) return est;
  // One copy per (weight, owner) run: d − 1 owners hold the remote experts (an owner boundary
  // inside a remote slice can add one more per weight; ignored).
  const double runs = weights * (d - 1.0);
  double copies = runs;
  double transfer_ns = bytes / pair_rate * 1e9;
  switch (contention.mode) {
    case ContentionMode::kRotate:
    case ContentionMode::kStaggered:  // a Latin square in every layer, like rotate
      break;
    case ContentionMode::kAscending:
      transfer_ns *= std::max(1.0, d / 2.0);
      break;
    case ContentionMode::kRoundRobin: {
      const double slice = static_cast<double>(std::max<uint64_t>(contention.slice_bytes, 1));
      copies = std::max(runs, std::ceil(bytes / slice));
      const double efficiency =
          hw.concurrent_pull_efficiency.value > 0 ? hw.concurrent_pull_efficiency.value : 1.0;
      transfer_ns /= efficiency;
      AddDependency(est.depends_on, "concurrent_pull_efficiency", hw.concurrent_pull_efficiency);
      break;
    }
  }
  est.copies = static_cast<int64_t>(copies);
  est.time_ns = transfer_ns + copies * latency;
  est.bandwidth = est.time_ns > 0 ? bytes / est.time_ns * 1e9 : 0;
  return est;
}

double DepAllToAllNs(const HardwareProfile& hw, double bytes_out, double bytes_in) {
  const double link = hw.nvlink_bw.value;
  if (link <= 0) return 0;
  return std::max(bytes_out, bytes_in) / link * 1e9 + hw.kernel_overhead_ns.value;
}

DepLayerCost DepMoeLayerCost(const ModelSpec& model, const HardwareProfile& hw,
                             const ForwardShape& shape, int64_t ep_size, double tokens_cv,
                             std::vector<ProfileDependency>* deps) {
  DepLayerCost cost;
  const double d = static_cast<double>(std::max<int64_t>(ep_size, 1));
  const double tokens = static_cast<double>(shape.tokens_per_rank);
  const double pairs = tokens * static_cast<double>(model.top_k);
  const double hidden = static_cast<double>(model.hidden_size);
  const double leaving = (d - 1.0) / d;  // uniform routing: 1/d of the products stay local
  if (d > 1) {
    const double dispatch_bytes = pairs * hidden * 1.0 * leaving;
    const double combine_bytes = pairs * hidden * 2.0 * leaving;
    cost.dispatch_ns = DepAllToAllNs(hw, dispatch_bytes, dispatch_bytes);
    cost.combine_ns = DepAllToAllNs(hw, combine_bytes, combine_bytes);
  }
  // All d ranks' tokens spread over all N experts; this rank holds N/d of them.
  const double active_global = ExpectedActiveExperts(model.num_experts, model.top_k, tokens * d);
  cost.routed_moe = RoutedMoeCost(model, hw, pairs, active_global / d);
  // The all-to-alls wait for the slowest rank's attention, and move the largest rank's tokens.
  const double per_rank_ns =
      MoeLayerCost(model, hw, shape).pre_moe_ns() + cost.dispatch_ns + cost.combine_ns;
  cost.sync_ns = per_rank_ns * std::max(0.0, tokens_cv) * std::sqrt(2.0 * std::log(d));
  if (deps != nullptr) {
    AddDependency(*deps, "nvlink_bw", hw.nvlink_bw);
    AddRooflineDependencies(hw, model.expert_dtype, deps);
  }
  return cost;
}

namespace {

// Layer indices 0 .. L−1 of the model, each flagged MoE or dense.
std::vector<bool> MoeFlags(const ModelSpec& model) {
  int64_t layers = model.num_layers;
  for (int64_t l : model.moe_layers) layers = std::max(layers, l + 1);
  std::vector<bool> is_moe(static_cast<size_t>(std::max<int64_t>(layers, 0)), false);
  for (int64_t l : model.moe_layers) {
    if (l >= 0) is_moe[static_cast<size_t>(l)] = true;
  }
  return is_moe;
}

}  // namespace

std::vector<bool> MoeLayerFlags(const ModelSpec& model) { return MoeFlags(model); }

DwdpForwardEstimate DwdpForwardOf(const std::vector<bool>& is_moe, const UniformLayers& layers,
                                  double compute_slowdown, int64_t num_buffers, double copy_ns) {
  DwdpForwardEstimate est;
  est.copy_ns = copy_ns;
  // Copies take HBM bandwidth and power from the kernels beside them (7–19% on GB200): slow a
  // MoE layer by compute_slowdown times the fraction of it a copy overlaps.
  const double layer_ns = layers.pre_moe_ns + layers.moe_ns;
  const double overlap = layer_ns > 0 ? std::min(1.0, copy_ns / layer_ns) : 0.0;
  const double slow = 1.0 + std::max(0.0, compute_slowdown) * overlap;
  const double pre_moe_ns = layers.pre_moe_ns * slow;
  const double moe_ns = layers.moe_ns * slow;
  est.moe_compute_ns = pre_moe_ns + moe_ns;

  const size_t k = static_cast<size_t>(std::max<int64_t>(num_buffers, 1));
  // End of each MoE position's kernel (records free[slot]); only the last k are needed.
  std::vector<double> moe_end(k, 0.0);
  size_t position = 0;
  double compute_clock = 0;  // compute stream
  double copy_clock = 0;     // copy stream
  for (bool moe : is_moe) {
    if (!moe) {
      compute_clock += layers.dense_ns;
      continue;
    }
    // prime() issues the first k copies at the start of the forward; later ones wait for
    // free[slot], recorded after the MoE kernel k positions earlier.
    const double free_at = position < k ? 0.0 : moe_end[position % k];
    const double copy_end = std::max(copy_clock, free_at) + copy_ns;
    copy_clock = copy_end;
    const double pre_moe_end = compute_clock + pre_moe_ns;
    const double moe_start = std::max(pre_moe_end, copy_end);  // C.wait(ready[slot])
    est.stall_ns += moe_start - pre_moe_end;
    compute_clock = moe_start + moe_ns;
    moe_end[position % k] = compute_clock;
    ++position;
  }
  est.forward_ns = compute_clock;
  return est;
}

DwdpForwardEstimate DwdpForward(const ModelSpec& model, const HardwareProfile& hw,
                                const ForwardShape& shape, int64_t num_buffers, double copy_ns) {
  const LayerCost moe = MoeLayerCost(model, hw, shape);
  const LayerCost dense = DenseLayerCost(model, hw, shape);
  return DwdpForwardOf(MoeFlags(model),
                       {dense.total_ns(), moe.pre_moe_ns(), moe.routed_moe.time_ns},
                       hw.compute_slowdown.value, num_buffers, copy_ns);
}

double DepForwardSampled(const ModelSpec& model, const HardwareProfile& hw,
                         const std::vector<ForwardShape>& ranks) {
  if (ranks.empty()) return 0;
  const int64_t d = static_cast<int64_t>(ranks.size());
  double dense = 0;
  double pre_moe = 0;
  int64_t most_tokens = 0;
  double tokens = 0;
  for (const ForwardShape& shape : ranks) {
    if (shape.tokens_per_rank <= 0) continue;  // an idle rank still joins the collectives
    dense = std::max(dense, DenseLayerCost(model, hw, shape).total_ns());
    pre_moe = std::max(pre_moe, MoeLayerCost(model, hw, shape).pre_moe_ns());
    most_tokens = std::max(most_tokens, shape.tokens_per_rank);
    tokens += static_cast<double>(shape.tokens_per_rank);
  }
  if (most_tokens == 0) return 0;
  const double mean_tokens = tokens / static_cast<double>(d);
  // The all-to-alls take as long as the largest rank's tokens need; the experts of every rank do
  // the mean rank's work (uniform routing spreads all ranks' tokens over all experts).
  const DepLayerCost largest = DepMoeLayerCost(model, hw, {most_tokens, 1}, d, 0);
  const double pairs = mean_tokens * static_cast<double>(model.top_k);
  const double active = ExpectedActiveExperts(model.num_experts, model.top_k, tokens);
  const double routed = RoutedMoeCost(model, hw, pairs, active / static_cast<double>(d)).time_ns;
  const double moe_layer_ns = pre_moe + largest.dispatch_ns + routed + largest.combine_ns;
  double forward = 0;
  for (bool is_moe : MoeFlags(model)) forward += is_moe ? moe_layer_ns : dense;
  return forward;
}

DepForwardEstimate DepForward(const ModelSpec& model, const HardwareProfile& hw,
                              const ForwardShape& shape, int64_t ep_size, double tokens_cv) {
  DepForwardEstimate est;
  const LayerCost moe = MoeLayerCost(model, hw, shape);
  const LayerCost dense = DenseLayerCost(model, hw, shape);
  est.moe_layer = DepMoeLayerCost(model, hw, shape, ep_size, tokens_cv);
  // DEP runs attention data-parallel exactly like DWDP; only the routed MoE differs, and its
  // all-to-alls sit on the critical path (no overlap with the layer's compute assumed).
  const double moe_layer_ns = moe.pre_moe_ns() + est.moe_layer.total_moe_ns();
  for (bool is_moe : MoeFlags(model)) est.forward_ns += is_moe ? moe_layer_ns : dense.total_ns();
  return est;
}

}  // namespace dwdp
