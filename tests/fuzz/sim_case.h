#pragma once

// The input of fuzz_sim: a small DWDP scenario decoded from fuzzer bytes, the Scenario it
// stands for, and (through case_coder.h) the encoder that make_sim_seeds uses for seed files.
// CodeSimCase lists the fields once for both directions.
//
// Everything is small so that a functional simulation with the hazard checker (every byte
// stored, moved and verified) runs in milliseconds under ASan: at most 5 ranks, 16 experts,
// 4 weights, 3 MoE layers, 2 forwards, a granularity of 4 or 8 KiB and experts of at most
// three granules. The ranges are the loader's wherever it has one (granularity, page size and
// round-robin slice at least 4 KiB), so every case is a scenario a user could write.

#include <cstdint>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "case_coder.h"
#include "core/config/loader.h"
#include "core/config/scenario.h"
#include "core/partition/partition.h"
#include "core/util/bytes.h"

namespace dwdp::fuzz {

// The hardware presets a case can simulate: their links, mapping limits and handle kinds
// (FABRIC on GB200 with ranks past one 4-GPU node, POSIX fds elsewhere).
inline constexpr const char* kSimHardware[] = {"h100-sxm", "h200-sxm", "b200-hgx", "gb200-nvl72"};
inline constexpr int kNumSimHardware = 4;

// How the partition is chosen.
enum class SimPartitionKind : int {
  // One of Recipes(d, N), valid by construction: uniform, Mode B (overlap 1) or redundant.
  kRecipe = 0,
  // size and stride as given: mostly validation errors, which must come back as clean statuses.
  kRaw = 1,
};

// How the DWDP-managed weights are chosen.
enum class SimWeightsKind : int {
  // 1 to 4 weights of [1, 3·G] bytes per expert: odd sizes put rank boundaries inside pages.
  kBytes = 0,
  // The four NVFP4 tensors of a gated FFN with tiny hidden and intermediate sizes (multiples
  // of 16 up to 128, so H·I is at most 4 granules of 4 KiB): I·H, H·I/2, I·H/8, H·I/16 bytes.
  kNvfp4 = 1,
};

// Compute times around the copies; they change which copies overlap which kernels (the hazard
// checker itself does not depend on timing).
enum class SimCompute : int {
  kNone = 0,    // everything back to back: copies stall every kernel
  kShort = 1,   // 2 µs attention + 10 µs MoE per layer
  kLong = 2,    // 200 µs per MoE kernel: prefetches finish early
  kUneven = 3,  // alternating 1 µs / 300 µs kernels and a dense prelude
};
inline constexpr int kNumSimCompute = 4;

struct SimCase {
  int hardware = 0;                 // index into kSimHardware
  int granularity_shift = 0;        // G = 4 KiB << shift, shift 0..1
  int page_shift = 0;               // PG = G << shift, shift 0..3
  int64_t dwdp_size = 2;            // 2..5
  int partition = 0;                // SimPartitionKind
  int64_t num_experts = 4;          // kRecipe: d..16; kRaw: 1..16
  int64_t recipe = 0;               // kRecipe: index into Recipes(d, N), modulo their number
  int64_t size = 2;                 // kRaw only
  int64_t stride = 2;               // kRaw only
  bool wrong_loaded_chunk = false;  // the checkpoint chunk differs from size: chunk_mismatch
  int64_t num_groups = 1;
  int weights = 0;                              // SimWeightsKind
  std::vector<uint64_t> expert_bytes = {1000};  // kBytes
  int64_t hidden_units = 1;                     // kNvfp4: H = 16 · units
  int64_t intermediate_units = 1;               // kNvfp4: I = 16 · units
  int64_t num_moe_layers = 1;                   // 1..3
  int64_t first_moe_layer = 0;                  // 0..3
  int64_t moe_layer_gap = 1;      // 1..2: consecutive MoE layers or dense layers between them
  int64_t num_buffers = 2;        // 2..4
  bool contention_given = false;  // otherwise the scenario default (rotate)
  int contention_mode = 0;        // ContentionMode
  uint64_t slice_bytes = 4096;    // round_robin pieces, [4 KiB, 32 KiB]
  // Link contention in the timing model (the profile's concurrent-pull efficiency and compute
  // slowdown, the copy latency on the link), or none (full-rate concurrent pulls, no slowdown,
  // the latency a plain delay).
  bool link_contention = true;
  int compute = 0;             // SimCompute
  int64_t forwards = 1;        // 1..2
  bool keep_timeline = false;  // keep every operation, as `dwdp run --trace` does
  // Entries a stream holds before the host blocks: 0 keeps the preset's (which these small
  // cases never fill); 1..64 makes hosts block all the time, so the lazy host gates run under
  // the hazard checker and the byte checks. Last, so older corpus files decode as before.
  int64_t stream_queue_entries = 0;
  // The fabric's random shares: 0 (even), 0.1, 0.3 or 1.0 (fabric_share_spread).
  int share_spread = 0;
  // dwdp.owner: OwnerPolicy (lowest, balanced). Last, so older corpus files decode as before.
  int owner_policy = 0;
  double fabric_share_spread() const {
    constexpr double kSpreads[] = {0, 0.1, 0.3, 1.0};
    return kSpreads[share_spread];
  }

  uint64_t granularity() const { return (4 * kKiB) << granularity_shift; }
  uint64_t pool_page_bytes() const { return granularity() << page_shift; }
};

// The field order of a case, for both directions. Later ranges depend on earlier fields
// (bytes per expert on G, N on d), which both directions know by then.
template <typename Coder>
void CodeSimCase(Coder& coder, SimCase& c) {
  coder.Field(c.hardware, 0, kNumSimHardware - 1);
  coder.Field(c.granularity_shift, 0, 1);
  coder.Field(c.page_shift, 0, 3);
  coder.Field(c.dwdp_size, int64_t{2}, int64_t{5});
  coder.Field(c.partition, 0, 1);
  switch (static_cast<SimPartitionKind>(c.partition)) {
    case SimPartitionKind::kRecipe:
      coder.Field(c.num_experts, c.dwdp_size, int64_t{16});
      coder.Field(c.recipe, int64_t{0}, int64_t{15});
      break;
    case SimPartitionKind::kRaw:
      coder.Field(c.num_experts, int64_t{1}, int64_t{16});
      coder.Field(c.size, int64_t{-1}, int64_t{17});
      coder.Field(c.stride, int64_t{-1}, int64_t{17});
      break;
  }
  coder.Flag(c.wrong_loaded_chunk);
  coder.Field(c.num_groups, int64_t{1}, int64_t{2});
  coder.Field(c.weights, 0, 1);
  switch (static_cast<SimWeightsKind>(c.weights)) {
    case SimWeightsKind::kBytes:
      coder.Count(c.expert_bytes, 1, 4);
      for (uint64_t& bytes : c.expert_bytes) coder.Field(bytes, uint64_t{1}, 3 * c.granularity());
      break;
    case SimWeightsKind::kNvfp4:
      coder.Field(c.hidden_units, int64_t{1}, int64_t{8});
      coder.Field(c.intermediate_units, int64_t{1}, int64_t{8});
      break;
  }
  coder.Field(c.num_moe_layers, int64_t{1}, int64_t{3});
  coder.Field(c.first_moe_layer, int64_t{0}, int64_t{3});
  coder.Field(c.moe_layer_gap, int64_t{1}, int64_t{2});
  coder.Field(c.num_buffers, int64_t{2}, int64_t{4});
  coder.Flag(c.contention_given);
  if (c.contention_given) {
    coder.Field(c.contention_mode, 0, 2);
    coder.Field(c.slice_bytes, 4 * kKiB, 32 * kKiB);
  }
  coder.Flag(c.link_contention);
  coder.Field(c.compute, 0, kNumSimCompute - 1);
  coder.Field(c.forwards, int64_t{1}, int64_t{2});
  coder.Flag(c.keep_timeline);
  coder.Field(c.stream_queue_entries, int64_t{0}, int64_t{64});
  coder.Field(c.share_spread, 0, 3);
  coder.Field(c.owner_policy, 0, 1);
}

inline SimCase DecodeSimCase(FuzzedDataProvider& provider) {
  SimCase c;
  CaseReader reader(provider);
  CodeSimCase(reader, c);
  return c;
}

inline std::string EncodeSimCase(SimCase c) {
  CaseWriter writer;
  CodeSimCase(writer, c);
  return writer.Bytes();
}

// The DWDP-managed weights of the case.
inline std::vector<WeightSpec> SimWeights(const SimCase& c) {
  std::vector<WeightSpec> weights;
  if (c.weights == static_cast<int>(SimWeightsKind::kNvfp4)) {
    // DWDP_SPEC's NVFP4 expert: 4-bit weights and one FP8 scale per 16 weights; H is a
    // multiple of 16, so every count is whole.
    const uint64_t h = 16 * static_cast<uint64_t>(c.hidden_units);
    const uint64_t i = 16 * static_cast<uint64_t>(c.intermediate_units);
    weights.push_back({"w3_w1_weight", i * h});
    weights.push_back({"w2_weight", h * i / 2});
    weights.push_back({"w3_w1_weight_scale", 2 * i * h / 16});
    weights.push_back({"w2_weight_scale", h * i / 16});
    return weights;
  }
  for (size_t w = 0; w < c.expert_bytes.size(); ++w) {
    weights.push_back({absl::StrCat("w", w), c.expert_bytes[w]});
  }
  return weights;
}

// The scenario of the case, built the way the loader would from a file with these numbers.
inline absl::StatusOr<Scenario> MakeSimScenario(const SimCase& c) {
  Scenario s;
  s.name = "fuzz-sim";
  absl::StatusOr<HardwareProfile> hardware = HardwarePreset(kSimHardware[c.hardware]);
  if (!hardware.ok()) return hardware.status();
  s.hardware = *std::move(hardware);
  s.hardware.granularity.value = static_cast<double>(c.granularity());
  if (c.stream_queue_entries > 0) {
    s.hardware.stream_queue_entries.value = static_cast<double>(c.stream_queue_entries);
  }
  s.hardware.fabric_share_spread.value = c.fabric_share_spread();

  ModelSpec& model = s.model;
  model.display_name = "fuzz";
  model.num_experts = c.num_experts;
  for (int64_t l = 0; l < c.num_moe_layers; ++l) {
    model.moe_layers.push_back(c.first_moe_layer + l * c.moe_layer_gap);
  }
  model.num_layers = model.moe_layers.back() + 1;
  model.hidden_size = 16 * c.hidden_units;
  model.moe_intermediate_size = 16 * c.intermediate_units;
  model.top_k = 1;
  model.weights = SimWeights(c);

  DwdpConfig& dwdp = s.dwdp;
  dwdp.dwdp_size = c.dwdp_size;
  dwdp.num_groups = c.num_groups;
  if (c.partition == static_cast<int>(SimPartitionKind::kRecipe)) {
    const std::vector<Recipe> recipes = Recipes(c.dwdp_size, c.num_experts);
    if (recipes.empty()) {
      // N >= d always gives the uniform-or-Mode-B recipe with stride 1.
      return absl::InternalError(
          absl::StrCat("no recipe for d=", c.dwdp_size, " N=", c.num_experts));
    }
    const Recipe& recipe = recipes[static_cast<size_t>(c.recipe) % recipes.size()];
    dwdp.num_experts_per_worker = recipe.num_experts_per_worker;
    dwdp.num_prefetch_experts = recipe.num_prefetch_experts;
  } else {
    dwdp.num_experts_per_worker = c.size;
    dwdp.num_prefetch_experts = c.stride;
  }
  if (c.wrong_loaded_chunk) dwdp.loaded_chunk = dwdp.num_experts_per_worker + 1;
  dwdp.num_buffers = c.num_buffers;
  dwdp.pool_page_bytes = c.pool_page_bytes();
  if (c.contention_given) {
    dwdp.contention.mode = static_cast<ContentionMode>(c.contention_mode);
    dwdp.contention.slice_bytes = c.slice_bytes;
  }
  dwdp.owner = static_cast<OwnerPolicy>(c.owner_policy);
  s.workload.tokens_per_rank = 16;
  s.workload.sequence_length = 16;
  s.workload.forwards = c.forwards;
  return s;
}

}  // namespace dwdp::fuzz
