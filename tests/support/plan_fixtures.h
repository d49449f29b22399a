#pragma once

// Models and platforms for the perf/plan tests, built in code so the tests do not depend on the
// scenario loader's presets. The toy numbers are chosen so the expected values can be worked out
// by hand (see the comments in the tests).

#include <cstdint>
#include <vector>

#include "core/config/scenario.h"
#include "core/util/bytes.h"

namespace dwdp::testing {

// Toy model: N = 8 experts, top-2, hidden 1024, expert intermediate 512, 4 layers (layer 0
// dense with FFN 2048, layers 1..3 MoE), one shared expert, GQA 8 heads / 2 KV heads of 128.
// Two DWDP-managed weights of 2 MiB and 1 MiB per expert (3 MiB per expert).
inline ModelSpec ToyModel() {
  ModelSpec m;
  m.display_name = "toy";
  m.num_experts = 8;
  m.moe_layers = {1, 2, 3};
  m.num_layers = 4;
  m.hidden_size = 1024;
  m.moe_intermediate_size = 512;
  m.dense_intermediate_size = 2048;
  m.top_k = 2;
  m.num_shared_experts = 1;
  m.attention.kind = AttentionKind::kGqa;
  m.attention.num_heads = 8;
  m.attention.num_kv_heads = 2;
  m.attention.head_dim = 128;
  m.expert_dtype = DType::kFp8;
  m.dense_dtype = DType::kFp8;
  m.weights = {{"w13", 2 * kMiB}, {"w2", 1 * kMiB}};
  m.non_moe_bytes = 100 * kMiB;
  m.kv_bytes_per_token = 25600;
  return m;
}

// Toy platform: FP8 1 PFLOP/s, BF16 0.5 PFLOP/s, both at 50% efficiency (5e5 and 2.5e5 FLOP per
// ns); HBM 1 TB/s at 50% (500 B/ns); 1 us per kernel; peer copies 100 GB/s (100 B/ns) with 1 us
// per copy; NVLink 200 GB/s (200 B/ns); 200 MiB of device memory; 2 MiB granularity.
inline HardwareProfile ToyHardware() {
  HardwareProfile hw;
  hw.name = "toy";
  hw.granularity = {2.0 * kMiB, Provenance::kSpec};
  hw.nvlink_bw = {2e11, Provenance::kSpec};
  hw.peer_copy_bw = {1e11, Provenance::kMeasured};
  hw.copy_latency_ns = {1000, Provenance::kMeasured};
  hw.hbm_bw = {1e12, Provenance::kSpec};
  hw.hbm_bytes = {200.0 * kMiB, Provenance::kSpec};
  hw.flops_fp4 = {2e15, Provenance::kSpec};
  hw.flops_fp8 = {1e15, Provenance::kSpec};
  hw.flops_bf16 = {0.5e15, Provenance::kSpec};
  hw.compute_efficiency = {0.5, Provenance::kAssumed};
  hw.memory_efficiency = {0.5, Provenance::kAssumed};
  hw.kernel_overhead_ns = {1000, Provenance::kAssumed};
  hw.compute_slowdown = {0.0, Provenance::kAssumed};
  hw.concurrent_pull_efficiency = {0.5, Provenance::kAssumed};
  hw.nvlink_domain = {8, Provenance::kSpec};
  hw.gpus_per_node = {8, Provenance::kSpec};
  return hw;
}

inline Scenario ToyScenario() {
  Scenario s;
  s.name = "toy";
  s.model = ToyModel();
  s.hardware = ToyHardware();
  s.dwdp.dwdp_size = 2;
  s.dwdp.num_experts_per_worker = 4;
  s.dwdp.num_prefetch_experts = 4;
  s.dwdp.pool_page_bytes = 2 * kMiB;
  s.workload.tokens_per_rank = 1024;
  s.workload.sequence_length = 1024;
  return s;
}

// DeepSeek-V3 with NVFP4 experts (HARDWARE.md): 256 experts, top-8, 58 MoE layers (3..60) of
// 61, MLA 128 heads, 24,772,608 B per expert in four tensors.
inline ModelSpec DeepSeekV3Nvfp4() {
  ModelSpec m;
  m.display_name = "DeepSeek-V3 NVFP4";
  m.num_experts = 256;
  for (int64_t l = 3; l <= 60; ++l) m.moe_layers.push_back(l);
  m.num_layers = 61;
  m.hidden_size = 7168;
  m.moe_intermediate_size = 2048;
  m.dense_intermediate_size = 18432;
  m.top_k = 8;
  m.num_shared_experts = 1;
  m.vocab_size = 129280;
  m.attention.kind = AttentionKind::kMla;
  m.attention.num_heads = 128;
  m.attention.q_lora_rank = 1536;
  m.attention.kv_lora_rank = 512;
  m.attention.qk_nope_head_dim = 128;
  m.attention.qk_rope_head_dim = 64;
  m.attention.v_head_dim = 128;
  m.expert_dtype = DType::kFp4;
  m.dense_dtype = DType::kFp8;
  m.weights = {{"w3_w1_weight", 14680064},
               {"w2_weight", 7340032},
               {"w3_w1_weight_scale", 1835008},
               {"w2_weight_scale", 917504}};
  m.non_moe_bytes = 19ull * 1000 * 1000 * 1000;  // about 19 GB of replicated weights
  m.kv_bytes_per_token = 70272;                  // (512 + 64) · 61 layers · 2 B
  return m;
}

// GB200 (NVL72) per HARDWARE.md: spec rates, 0.85 × 900 GB/s assumed copy rate.
inline HardwareProfile Gb200() {
  HardwareProfile hw;
  hw.name = "gb200-nvl72";
  hw.granularity = {2.0 * kMiB, Provenance::kSpec};
  hw.nvlink_bw = {900e9, Provenance::kSpec};
  hw.peer_copy_bw = {0.85 * 900e9, Provenance::kAssumed};
  hw.copy_latency_ns = {4000, Provenance::kAssumed};
  hw.hbm_bw = {8e12, Provenance::kSpec};
  hw.hbm_bytes = {186e9, Provenance::kSpec};
  hw.flops_fp4 = {10e15, Provenance::kSpec};
  hw.flops_fp8 = {5e15, Provenance::kSpec};
  hw.flops_bf16 = {2.5e15, Provenance::kSpec};
  hw.compute_efficiency = {0.6, Provenance::kAssumed};
  hw.memory_efficiency = {0.8, Provenance::kAssumed};
  hw.kernel_overhead_ns = {3000, Provenance::kAssumed};
  hw.compute_slowdown = {0.12, Provenance::kAssumed};
  hw.concurrent_pull_efficiency = {0.5, Provenance::kAssumed};
  hw.max_mappings = {130000, Provenance::kAssumed};
  hw.nvlink_domain = {72, Provenance::kSpec};
  hw.gpus_per_node = {4, Provenance::kSpec};
  hw.fabric_supported = true;
  hw.imex_permitted = true;
  return hw;
}

inline Scenario DeepSeekOnGb200(int64_t tokens_per_rank, int64_t sequence_length) {
  Scenario s;
  s.name = "dsv3-gb200";
  s.model = DeepSeekV3Nvfp4();
  s.hardware = Gb200();
  s.dwdp.dwdp_size = 4;
  s.dwdp.num_experts_per_worker = 64;
  s.dwdp.num_prefetch_experts = 64;
  s.workload.tokens_per_rank = tokens_per_rank;
  s.workload.sequence_length = sequence_length;
  return s;
}

}  // namespace dwdp::testing
