#pragma once

// Byte arithmetic of model presets, shared by core/config/presets.cc and the loader (which
// re-derives the estimates after a scenario overrides a preset's shape). Private to
// core/config.

#include <cstdint>
#include <optional>
#include <vector>

#include "core/config/scenario.h"

namespace dwdp::config_internal {

// The four DWDP-managed tensors of one NVFP4 expert of a gated FFN (w3 and w1 fused):
//   w3_w1_weight        2·I·H weights at 4 bits      = I·H bytes
//   w2_weight           H·I weights at 4 bits        = H·I / 2 bytes
//   w3_w1_weight_scale  one FP8 per 16 weights       = 2·I·H / 16 bytes
//   w2_weight_scale     one FP8 per 16 weights       = H·I / 16 bytes
// Empty when H·I is not a multiple of 16 (the byte counts would not be whole).
std::vector<WeightSpec> Nvfp4ExpertWeights(int64_t hidden_size, int64_t intermediate_size);

// FP8 expert with 128×128 block scales stored as fp32:
//   w3_w1_weight        2·I·H bytes;  w3_w1_weight_scale ceil(2I/128)·ceil(H/128)·4 bytes
//   w2_weight           H·I bytes;    w2_weight_scale    ceil(H/128)·ceil(I/128)·4 bytes
std::vector<WeightSpec> Fp8BlockScaledExpertWeights(int64_t hidden_size, int64_t intermediate_size);

// The two tensors of one BF16 expert of a gated FFN, with their shapes (what the real MoE
// kernel reads; TensorRT-LLM's names):
//   w3_w1_weight  [2·I, H] bf16 (gate rows, then up rows) = 4·I·H bytes
//   w2_weight     [H, I]   bf16                          = 2·H·I bytes
std::vector<WeightSpec> Bf16ExpertWeights(int64_t hidden_size, int64_t intermediate_size);

// Layers first..last inclusive.
std::vector<int64_t> LayerRange(int64_t first, int64_t last);

// Replicated (non-expert) weight bytes on every GPU: attention of every layer, the FFN of
// the dense layers and the shared experts of the MoE layers at `dense_dtype`; token
// embedding, untied LM head and MoE router in BF16. Norms, biases and multi-token-
// prediction heads are left out (well under 1% for every preset). Empty on overflow.
std::optional<uint64_t> EstimateNonMoeBytes(const ModelSpec& model);

// KV cache bytes per token over all layers, BF16 cache:
//   MLA: (kv_lora_rank + qk_rope_head_dim) · num_layers · 2
//   GQA: 2 (K and V) · num_kv_heads · head_dim · num_layers · 2
// Empty on overflow.
std::optional<uint64_t> EstimateKvBytesPerToken(const ModelSpec& model);

}  // namespace dwdp::config_internal
