// Model and hardware presets. Every number comes from /design/HARDWARE.md unless a comment
// names another source; hardware numbers carry the provenance that document gives them.

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/config/loader.h"
#include "core/config/model_math.h"
#include "core/config/scenario.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace config_internal {

std::vector<WeightSpec> Nvfp4ExpertWeights(int64_t hidden_size, int64_t intermediate_size) {
  const uint64_t weights_per_matrix =
      static_cast<uint64_t>(hidden_size) * static_cast<uint64_t>(intermediate_size);
  if (hidden_size <= 0 || intermediate_size <= 0 || weights_per_matrix % 16 != 0) return {};
  return {
      {"w3_w1_weight", weights_per_matrix},            // 2·I·H weights × 1/2 byte
      {"w2_weight", weights_per_matrix / 2},           // H·I weights × 1/2 byte
      {"w3_w1_weight_scale", weights_per_matrix / 8},  // 2·I·H / 16 FP8 scales
      {"w2_weight_scale", weights_per_matrix / 16},    // H·I / 16 FP8 scales
  };
}

std::vector<WeightSpec> Bf16ExpertWeights(int64_t hidden_size, int64_t intermediate_size) {
  if (hidden_size <= 0 || intermediate_size <= 0) return {};
  const uint64_t h = static_cast<uint64_t>(hidden_size);
  const uint64_t i = static_cast<uint64_t>(intermediate_size);
  return {
      {"w3_w1_weight", 2 * i * h * 2, DType::kBf16, {2 * intermediate_size, hidden_size}},
      {"w2_weight", h * i * 2, DType::kBf16, {hidden_size, intermediate_size}},
  };
}

std::vector<WeightSpec> Fp8BlockScaledExpertWeights(int64_t hidden_size,
                                                    int64_t intermediate_size) {
  if (hidden_size <= 0 || intermediate_size <= 0) return {};
  const uint64_t h = static_cast<uint64_t>(hidden_size);
  const uint64_t i = static_cast<uint64_t>(intermediate_size);
  const auto blocks = [](uint64_t n) { return (n + 127) / 128; };
  return {
      {"w3_w1_weight", 2 * i * h},
      {"w2_weight", h * i},
      {"w3_w1_weight_scale", blocks(2 * i) * blocks(h) * 4},
      {"w2_weight_scale", blocks(h) * blocks(i) * 4},
  };
}

std::vector<int64_t> LayerRange(int64_t first, int64_t last) {
  std::vector<int64_t> layers;
  for (int64_t layer = first; layer <= last; ++layer) layers.push_back(layer);
  return layers;
}

namespace {

// 128-bit intermediates: every field is bounded by the loader, but products of four of them
// can still pass 64 bits for absurd shapes, which must be reported, not wrapped.
using Wide = unsigned __int128;

std::optional<uint64_t> Narrow(Wide value) {
  if (value > static_cast<Wide>(UINT64_MAX)) return std::nullopt;
  return static_cast<uint64_t>(value);
}

Wide U(int64_t v) { return v > 0 ? static_cast<Wide>(v) : 0; }

Wide AttentionParamsPerLayer(const ModelSpec& m) {
  const AttentionSpec& a = m.attention;
  const Wide hidden = U(m.hidden_size);
  if (a.kind == AttentionKind::kMla) {
    const Wide qk_head = U(a.qk_nope_head_dim) + U(a.qk_rope_head_dim);
    // Query: hidden -> q_lora_rank -> heads·qk_head, or hidden -> heads·qk_head directly.
    const Wide query = a.q_lora_rank > 0
                           ? hidden * U(a.q_lora_rank) + U(a.q_lora_rank) * U(a.num_heads) * qk_head
                           : hidden * U(a.num_heads) * qk_head;
    const Wide kv_down = hidden * (U(a.kv_lora_rank) + U(a.qk_rope_head_dim));
    const Wide kv_up =
        U(a.kv_lora_rank) * U(a.num_heads) * (U(a.qk_nope_head_dim) + U(a.v_head_dim));
    const Wide out = U(a.num_heads) * U(a.v_head_dim) * hidden;
    return query + kv_down + kv_up + out;
  }
  const Wide query = hidden * U(a.num_heads) * U(a.head_dim);
  const Wide key_value = 2 * hidden * U(a.num_kv_heads) * U(a.head_dim);
  const Wide out = U(a.num_heads) * U(a.head_dim) * hidden;
  return query + key_value + out;
}

}  // namespace

std::optional<uint64_t> EstimateNonMoeBytes(const ModelSpec& m) {
  const Wide moe_layers = m.moe_layers.size();
  const Wide dense_layers = U(m.num_layers) > moe_layers ? U(m.num_layers) - moe_layers : 0;
  const Wide hidden = U(m.hidden_size);
  const Wide linear_params =
      U(m.num_layers) * AttentionParamsPerLayer(m) +
      dense_layers * 3 * hidden * U(m.dense_intermediate_size) +
      moe_layers * U(m.num_shared_experts) * 3 * hidden * U(m.moe_intermediate_size);
  const Wide bf16_params = 2 * U(m.vocab_size) * hidden + moe_layers * U(m.num_experts) * hidden;
  // Bytes per parameter as a fraction: NVFP4 is 4 bits plus one FP8 scale per 16 weights.
  Wide numerator = 1, denominator = 1;
  switch (m.dense_dtype) {
    case DType::kFp4:
      numerator = 9;
      denominator = 16;
      break;
    case DType::kFp8:
      break;
    case DType::kBf16:
      numerator = 2;
      break;
  }
  return Narrow(linear_params * numerator / denominator + bf16_params * 2);
}

std::optional<uint64_t> EstimateKvBytesPerToken(const ModelSpec& m) {
  const AttentionSpec& a = m.attention;
  constexpr Wide kBf16Bytes = 2;
  if (a.kind == AttentionKind::kMla) {
    return Narrow((U(a.kv_lora_rank) + U(a.qk_rope_head_dim)) * U(m.num_layers) * kBf16Bytes);
  }
  return Narrow(2 * U(a.num_kv_heads) * U(a.head_dim) * U(m.num_layers) * kBf16Bytes);
}

}  // namespace config_internal

namespace {

using config_internal::LayerRange;

void FillEstimates(ModelSpec& m) {
  m.non_moe_bytes = config_internal::EstimateNonMoeBytes(m).value_or(0);
  m.kv_bytes_per_token = config_internal::EstimateKvBytesPerToken(m).value_or(0);
}

AttentionSpec DeepSeekMla(int64_t num_heads, int64_t q_lora_rank) {
  AttentionSpec a;
  a.kind = AttentionKind::kMla;
  a.num_heads = num_heads;
  a.q_lora_rank = q_lora_rank;
  a.kv_lora_rank = 512;
  a.qk_nope_head_dim = 128;
  a.qk_rope_head_dim = 64;
  a.v_head_dim = 128;
  return a;
}

AttentionSpec Gqa(int64_t num_heads, int64_t num_kv_heads, int64_t head_dim) {
  AttentionSpec a;
  a.kind = AttentionKind::kGqa;
  a.num_heads = num_heads;
  a.num_kv_heads = num_kv_heads;
  a.head_dim = head_dim;
  return a;
}

// DeepSeek-V3 / R1: 61 layers, the first 3 dense, layers 3..60 MoE.
ModelSpec DeepSeekV3Shape() {
  ModelSpec m;
  m.num_experts = 256;
  m.num_layers = 61;
  m.moe_layers = LayerRange(3, 60);
  m.hidden_size = 7168;
  m.moe_intermediate_size = 2048;
  m.dense_intermediate_size = 18432;
  m.top_k = 8;
  m.num_shared_experts = 1;
  m.vocab_size = 129280;
  m.attention = DeepSeekMla(/*num_heads=*/128, /*q_lora_rank=*/1536);
  // Attention, dense FFN and shared experts stay in the checkpoint's native FP8.
  m.dense_dtype = DType::kFp8;
  return m;
}

ModelSpec DeepSeekV3Nvfp4() {
  ModelSpec m = DeepSeekV3Shape();
  m.preset = "deepseek-v3-nvfp4";
  m.display_name = "DeepSeek-V3 (NVFP4 experts)";
  m.expert_dtype = DType::kFp4;
  // [4096×448] int64, [7168×128] int64, [4096×112] int32, [7168×32] int32: 24,772,608 B.
  m.weights = config_internal::Nvfp4ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  // non_moe_bytes = 19,076,415,488:
  //   attention/layer = 7168·1536 + 1536·128·192 + 7168·576 + 512·128·256 + 128·128·7168
  //                   = 187,105,280;  ×61 = 11,413,422,080
  //   dense FFN 3 layers × 3·7168·18432 = 1,189,085,184; shared 58 × 3·7168·2048 = 2,554,331,136
  //   FP8: 15,156,838,400 B;  BF16: (2·129280·7168 + 58·256·7168)·2 = 3,919,577,088 B
  // kv_bytes_per_token = (512 + 64)·61·2 = 70,272.
  FillEstimates(m);
  return m;
}

ModelSpec DeepSeekV3Fp8() {
  ModelSpec m = DeepSeekV3Shape();
  m.preset = "deepseek-v3-fp8";
  m.display_name = "DeepSeek-V3 (FP8, 128x128 block scales)";
  m.expert_dtype = DType::kFp8;
  // 29,360,128 + 14,680,064 + 32·56·4 = 7,168 + 56·16·4 = 3,584: 44,050,944 B per expert.
  m.weights = config_internal::Fp8BlockScaledExpertWeights(m.hidden_size, m.moe_intermediate_size);
  FillEstimates(m);  // same replicated part as deepseek-v3-nvfp4
  return m;
}

ModelSpec KimiK2Nvfp4() {
  ModelSpec m;
  m.preset = "kimi-k2-nvfp4";
  m.display_name = "Kimi K2 (NVFP4 experts)";
  m.num_experts = 384;
  // 61 layers, the first dense (first_k_dense_replace = 1 in the published config).
  m.num_layers = 61;
  m.moe_layers = LayerRange(1, 60);
  m.hidden_size = 7168;
  m.moe_intermediate_size = 2048;
  m.dense_intermediate_size = 18432;
  m.top_k = 8;
  m.num_shared_experts = 1;
  m.vocab_size = 163840;  // published config
  m.attention = DeepSeekMla(/*num_heads=*/64, /*q_lora_rank=*/1536);
  m.expert_dtype = DType::kFp4;
  m.dense_dtype = DType::kFp8;
  m.weights = config_internal::Nvfp4ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  // non_moe_bytes = 14,235,140,096:
  //   attention/layer = 7168·1536 + 1536·64·192 + 7168·576 + 512·64·256 + 64·128·7168
  //                   = 101,122,048;  ×61 = 6,168,444,928
  //   dense FFN 1 × 3·7168·18432 = 396,361,728; shared 60 × 3·7168·2048 = 2,642,411,520
  //   FP8: 9,207,218,176 B;  BF16: (2·163840·7168 + 60·384·7168)·2 = 5,027,921,920 B
  // kv_bytes_per_token = (512 + 64)·61·2 = 70,272.
  FillEstimates(m);
  return m;
}

ModelSpec DeepSeekV2LiteNvfp4() {
  ModelSpec m;
  m.preset = "deepseek-v2-lite-nvfp4";
  m.display_name = "DeepSeek-V2-Lite (NVFP4 experts)";
  m.num_experts = 64;
  m.num_layers = 27;
  m.moe_layers = LayerRange(1, 26);
  m.hidden_size = 2048;
  m.moe_intermediate_size = 1408;
  m.dense_intermediate_size = 10944;  // published config
  m.top_k = 6;
  m.num_shared_experts = 2;
  m.vocab_size = 102400;  // published config
  m.attention = DeepSeekMla(/*num_heads=*/16, /*q_lora_rank=*/0);
  m.expert_dtype = DType::kFp4;
  m.dense_dtype = DType::kBf16;  // the checkpoint is BF16
  // 2,883,584 + 1,441,792 + 360,448 + 180,224 = 4,866,048 B (4.64 MiB) per expert.
  m.weights = config_internal::Nvfp4ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  // non_moe_bytes = 2,623,012,864:
  //   attention/layer = 2048·16·192 + 2048·576 + 512·16·256 + 16·128·2048 = 13,762,560; ×27
  //   dense FFN 1 × 3·2048·10944; shared 26 × 2·3·2048·1408: BF16 888,668,160 params
  //   BF16 embeddings + head + router: 2·102400·2048 + 26·64·2048 = 422,838,272 params
  // kv_bytes_per_token = (512 + 64)·27·2 = 31,104.
  FillEstimates(m);
  return m;
}

ModelSpec Qwen3_30B_A3B_Nvfp4() {
  ModelSpec m;
  m.preset = "qwen3-30b-a3b-nvfp4";
  m.display_name = "Qwen3-30B-A3B (NVFP4 experts)";
  m.num_experts = 128;
  m.num_layers = 48;
  m.moe_layers = LayerRange(0, 47);
  m.hidden_size = 2048;
  m.moe_intermediate_size = 768;
  m.dense_intermediate_size = 0;  // every layer is MoE
  m.top_k = 8;
  m.num_shared_experts = 0;
  m.vocab_size = 151936;  // published config
  m.attention = Gqa(/*num_heads=*/32, /*num_kv_heads=*/4, /*head_dim=*/128);
  m.expert_dtype = DType::kFp4;
  m.dense_dtype = DType::kBf16;
  // 1,572,864 + 786,432 + 196,608 + 98,304 = 2,654,208 B (2.53 MiB) per expert.
  m.weights = config_internal::Nvfp4ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  // non_moe_bytes = 3,081,764,864:
  //   attention/layer = 2048·32·128 + 2·2048·4·128 + 32·128·2048 = 18,874,368; ×48 (BF16)
  //   BF16 embeddings + head + router: 2·151936·2048 + 48·128·2048 = 634,912,768 params
  // kv_bytes_per_token = 2·4·128·48·2 = 98,304.
  FillEstimates(m);
  return m;
}

ModelSpec GptOss120bNvfp4() {
  ModelSpec m;
  m.preset = "gpt-oss-120b-nvfp4";
  m.display_name = "gpt-oss-120b (NVFP4-equivalent experts)";
  m.num_experts = 128;
  m.num_layers = 36;
  m.moe_layers = LayerRange(0, 35);
  m.hidden_size = 2880;
  m.moe_intermediate_size = 2880;
  m.dense_intermediate_size = 0;
  m.top_k = 4;
  m.num_shared_experts = 0;
  m.vocab_size = 201088;  // published config
  m.attention = Gqa(/*num_heads=*/64, /*num_kv_heads=*/8, /*head_dim=*/64);
  m.expert_dtype = DType::kFp4;
  m.dense_dtype = DType::kBf16;
  // 8,294,400 + 4,147,200 + 1,036,800 + 518,400 = 13,996,800 B (13.35 MiB) per expert; not a
  // multiple of 2 MiB, so every partition has edge bytes.
  m.weights = config_internal::Nvfp4ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  // non_moe_bytes = 4,254,105,600:
  //   attention/layer = 2880·64·64 + 2·2880·8·64 + 64·64·2880 = 26,542,080; ×36 (BF16)
  //   BF16 embeddings + head + router: 2·201088·2880 + 36·128·2880 = 1,171,537,920 params
  // kv_bytes_per_token = 2·8·64·36·2 = 73,728 (every layer counted at full length, although
  // half of gpt-oss's layers use a sliding window: an upper bound).
  FillEstimates(m);
  return m;
}

// The BF16 checkpoints, as the real MoE kernel runs them (workload.compute: moe): same shapes as
// their NVFP4 presets, experts in BF16. The replicated part is the NVFP4 presets' (already BF16
// for Qwen3 and gpt-oss).
ModelSpec Qwen3_30B_A3B_Bf16() {
  ModelSpec m = Qwen3_30B_A3B_Nvfp4();
  m.preset = "qwen3-30b-a3b-bf16";
  m.display_name = "Qwen3-30B-A3B (BF16 experts)";
  m.expert_dtype = DType::kBf16;
  // 2·768·2048·2 + 2048·768·2 = 9,437,184 B (9 MiB) per expert.
  m.weights = config_internal::Bf16ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  return m;
}

ModelSpec GptOss120bBf16() {
  ModelSpec m = GptOss120bNvfp4();
  m.preset = "gpt-oss-120b-bf16";
  m.display_name = "gpt-oss-120b (BF16 experts)";
  m.expert_dtype = DType::kBf16;
  // 2·2880·2880·2 + 2880·2880·2 = 49,766,400 B per expert; not a multiple of 2 MiB.
  m.weights = config_internal::Bf16ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  return m;
}

// DeepSeek-V3's expert shape with 72 routed experts, the trimmed model TensorRT-LLM's DWDP
// accuracy test runs (Mode B 40/32 on 2 GPUs); 4 MoE layers after one dense layer.
ModelSpec DeepSeekV3LiteBf16() {
  ModelSpec m = DeepSeekV3Nvfp4();
  m.preset = "deepseek-v3-lite-bf16";
  m.display_name = "DeepSeek-V3-Lite shape (72 BF16 experts)";
  m.num_experts = 72;
  m.num_layers = 5;
  m.moe_layers = LayerRange(1, 4);
  m.expert_dtype = DType::kBf16;
  // 2·2048·7168·2 + 7168·2048·2 = 88,080,384 B (84 MiB) per expert.
  m.weights = config_internal::Bf16ExpertWeights(m.hidden_size, m.moe_intermediate_size);
  FillEstimates(m);
  return m;
}

struct ModelPresetEntry {
  const char* name;
  ModelSpec (*make)();
};

constexpr ModelPresetEntry kModelPresets[] = {
    {"deepseek-v3-nvfp4", DeepSeekV3Nvfp4},
    {"deepseek-v3-fp8", DeepSeekV3Fp8},
    {"kimi-k2-nvfp4", KimiK2Nvfp4},
    {"deepseek-v2-lite-nvfp4", DeepSeekV2LiteNvfp4},
    {"qwen3-30b-a3b-nvfp4", Qwen3_30B_A3B_Nvfp4},
    {"gpt-oss-120b-nvfp4", GptOss120bNvfp4},
    {"qwen3-30b-a3b-bf16", Qwen3_30B_A3B_Bf16},
    {"gpt-oss-120b-bf16", GptOss120bBf16},
    {"deepseek-v3-lite-bf16", DeepSeekV3LiteBf16},
};

Quantity Spec(double value) { return {value, Provenance::kSpec}; }
Quantity Measured(double value) { return {value, Provenance::kMeasured}; }
Quantity Assumed(double value) { return {value, Provenance::kAssumed}; }

// Numbers no platform has measured yet; the same for every preset until calibrated.
void FillModelAssumptions(HardwareProfile& hw) {
  hw.compute_efficiency = Assumed(0.6);
  hw.memory_efficiency = Assumed(0.8);
  hw.kernel_overhead_ns = Assumed(3000);
  // GB200 DWDP runs showed compute 7-19% slower while the copy engines pull; midpoint.
  hw.compute_slowdown = Assumed(0.12);
  hw.host_issue_ns = Assumed(2000);
  hw.event_ns = Assumed(1000);
  // The H100 figure: the host blocks in the call after 1,021 pending entries on a stream.
  hw.stream_queue_entries = Assumed(1021);
  // 0: a GPU serves its pullers at the single-pair rate and has no combined in + out limit,
  // until a calibration on the machine says otherwise.
  hw.egress_bw = Assumed(0);
  hw.fabric_bw = Assumed(0);
  hw.fabric_share_spread = Assumed(0);     // an even share, until a calibration measures it
  hw.compute_read_bw = Assumed(0);         // hbm_bw x memory_efficiency
  hw.copy_latency_loaded_ns = Assumed(0);  // copy_latency_ns
  // The DWDP authors report about 130K VMM mappings per process on GB200.
  hw.max_mappings = Assumed(130000);
  // "A finite number of fabric routing entries per GPU": no public figure, so a bound that
  // does not constrain plans until someone measures it.
  hw.max_fabric_mappings = Assumed(65536);
}

HardwareProfile Gb200Nvl72() {
  HardwareProfile hw;
  hw.name = "gb200-nvl72";
  hw.gpu_name = "NVIDIA GB200 (NVL72)";
  FillModelAssumptions(hw);
  hw.granularity = Assumed(2 * kMiB);  // DWDP_SPEC: 2 MiB on GB200; not measured here
  hw.nvlink_bw = Spec(900e9);
  // No public GB200 copy-engine figure: Hopper copies reach 83-88% of the link.
  hw.peer_copy_bw = Assumed(0.85 * 900e9);
  hw.copy_latency_ns = Assumed(4000);  // the H100 figure
  // H100 copies locally at 1484 GB/s of 3.35 TB/s HBM (44%); the same fraction of 8 TB/s.
  hw.local_copy_bw = Assumed(3.5e12);
  hw.hbm_bw = Spec(8e12);
  hw.hbm_bytes = Spec(186e9);
  hw.flops_fp4 = Spec(10e15);
  hw.flops_fp8 = Spec(5e15);
  hw.flops_bf16 = Spec(2.5e15);
  // Public nvbandwidth runs on a GB200 tray: one GPU pulling from all peers at once got 1.03x
  // one pair's read rate (all_to_one_read_ce 794.9 vs 768.0 GB/s), so no loss (the model caps a
  // puller at its pair rate); a source read by all peers at once served 0.86x of it in total
  // (one_to_all_read_ce 658.7 GB/s). Not measured by calibrate here yet.
  hw.concurrent_pull_efficiency = Assumed(1.0);
  hw.egress_fanout_efficiency = Assumed(0.86);
  hw.map_ns = Assumed(51000.0 / 3);  // the H100 figure
  hw.nvlink_domain = Spec(72);       // 18 trays × 4 GPUs
  hw.gpus_per_node = Spec(4);
  hw.fabric_supported = true;
  hw.imex_permitted = true;
  return hw;
}

HardwareProfile B200Hgx() {
  HardwareProfile hw;
  hw.name = "b200-hgx";
  hw.gpu_name = "NVIDIA B200 (HGX)";
  FillModelAssumptions(hw);
  hw.granularity = Assumed(2 * kMiB);
  hw.nvlink_bw = Spec(900e9);
  hw.peer_copy_bw = Assumed(0.85 * 900e9);
  hw.copy_latency_ns = Assumed(4000);
  hw.local_copy_bw = Assumed(3.5e12);
  hw.hbm_bw = Spec(8e12);
  hw.hbm_bytes = Spec(180e9);
  hw.flops_fp4 = Spec(9e15);
  hw.flops_fp8 = Spec(4.5e15);
  hw.flops_bf16 = Spec(2.25e15);
  // The GB200 tray's nvbandwidth fan-in and fan-out (same NVLink generation), until measured.
  hw.concurrent_pull_efficiency = Assumed(1.0);
  hw.egress_fanout_efficiency = Assumed(0.86);
  hw.map_ns = Assumed(51000.0 / 3);
  hw.nvlink_domain = Spec(8);
  hw.gpus_per_node = Spec(8);
  // One NVLink node without IMEX, like the measured H100 machines: POSIX fds.
  hw.fabric_supported = true;
  hw.imex_permitted = false;
  return hw;
}

HardwareProfile H100Sxm() {
  HardwareProfile hw;
  hw.name = "h100-sxm";
  hw.gpu_name = "NVIDIA H100 80GB HBM3 (SXM)";
  hw.measured_on = "2x H100 80GB HBM3, NV18, driver 580 / CUDA 13.0, 2026-11-28";
  FillModelAssumptions(hw);
  hw.granularity = Measured(2 * kMiB);
  hw.nvlink_bw = Spec(450e9);
  hw.peer_copy_bw = Measured(398e9);    // cuMemcpyDtoDAsync, 1 GiB, 10×
  hw.copy_latency_ns = Measured(4000);  // 14 MiB pieces reached 357 GB/s
  // All on the path: 2 MiB pieces interleaved over 3 peers took 3.7x the ideal there.
  hw.copy_latency_on_link = Measured(1.0);
  hw.local_copy_bw = Measured(1484e9);  // 1 GiB device-to-device
  hw.hbm_bw = Spec(3.35e12);
  hw.hbm_bytes = Spec(80e9);
  hw.flops_fp4 = Assumed(1.98e15);  // no FP4 tensor cores: FP4 weights run at the FP8 rate
  hw.flops_fp8 = Spec(1.98e15);
  hw.flops_bf16 = Spec(0.99e15);
  // H100 ×4: three GPUs pulling at once shared one peer's egress; all pulls at once 2.0×.
  hw.concurrent_pull_efficiency = Measured(0.5);
  hw.egress_bw = Measured(397e9);     // three GPUs pulling from one peer: 132 GB/s each
  hw.map_ns = Measured(51000.0 / 3);  // map + set-access + unmap of one 2 MiB page: 51 us
  // Copies enqueued behind a long kernel: the 1,022nd call blocked the host.
  hw.stream_queue_entries = Measured(1021);
  hw.nvlink_domain = Spec(8);
  hw.gpus_per_node = Spec(8);
  hw.fabric_supported = true;  // the device attribute says yes…
  hw.imex_permitted = false;   // …but FABRIC cuMemCreate returns CUDA_ERROR_NOT_PERMITTED
  return hw;
}

HardwareProfile H200Sxm() {
  HardwareProfile hw;
  hw.name = "h200-sxm";
  hw.gpu_name = "NVIDIA H200 141GB HBM3e (SXM)";
  hw.measured_on = "4x H200, NV18 between every pair (peer copies and concurrent pulls only)";
  FillModelAssumptions(hw);
  hw.granularity = Assumed(2 * kMiB);  // measured on H100
  // 1,021 untimed copies or kernels behind a long kernel, 340 timed copies (3 entries each).
  hw.stream_queue_entries = Measured(1021);
  hw.nvlink_bw = Spec(450e9);
  hw.peer_copy_bw = Measured(398e9);  // one GPU pulling from one peer: 379-398 GB/s
  hw.copy_latency_ns = Assumed(4000);
  hw.local_copy_bw = Assumed(2.1e12);  // the H100 fraction (44%) of 4.8 TB/s
  hw.hbm_bw = Spec(4.8e12);
  hw.hbm_bytes = Spec(141e9);
  hw.flops_fp4 = Assumed(1.98e15);
  hw.flops_fp8 = Spec(1.98e15);
  hw.flops_bf16 = Spec(0.99e15);
  hw.concurrent_pull_efficiency = Measured(0.5);
  hw.egress_bw = Measured(397e9);  // the same host kind: 397 GB/s of one peer's egress, shared
  hw.map_ns = Assumed(51000.0 / 3);
  hw.nvlink_domain = Spec(8);
  hw.gpus_per_node = Spec(8);
  hw.fabric_supported = true;
  hw.imex_permitted = false;
  return hw;
}

struct HardwarePresetEntry {
  const char* name;
  HardwareProfile (*make)();
};

constexpr HardwarePresetEntry kHardwarePresets[] = {
    {"gb200-nvl72", Gb200Nvl72},
    {"b200-hgx", B200Hgx},
    {"h100-sxm", H100Sxm},
    {"h200-sxm", H200Sxm},
};

}  // namespace

absl::StatusOr<ModelSpec> ModelPreset(absl::string_view name) {
  for (const ModelPresetEntry& entry : kModelPresets) {
    if (name == entry.name) return entry.make();
  }
  return absl::NotFoundError(absl::StrCat("unknown model preset '", name,
                                          "'; presets: ", absl::StrJoin(ModelPresetNames(), ", ")));
}

std::vector<std::string> ModelPresetNames() {
  std::vector<std::string> names;
  for (const ModelPresetEntry& entry : kModelPresets) names.emplace_back(entry.name);
  return names;
}

absl::StatusOr<HardwareProfile> HardwarePreset(absl::string_view name) {
  for (const HardwarePresetEntry& entry : kHardwarePresets) {
    if (name == entry.name) return entry.make();
  }
  return absl::NotFoundError(absl::StrCat("unknown hardware preset '", name, "'; presets: ",
                                          absl::StrJoin(HardwarePresetNames(), ", ")));
}

std::vector<std::string> HardwarePresetNames() {
  std::vector<std::string> names;
  for (const HardwarePresetEntry& entry : kHardwarePresets) names.emplace_back(entry.name);
  return names;
}

}  // namespace dwdp
