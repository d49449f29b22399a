// Scenario loader, presets and the scenario files under scenarios/. Golden numbers come from
// /design/HARDWARE.md and DWDP_SPEC.md (or are worked out by hand in the comments), never
// from the code under test.

#define BOOST_TEST_MODULE loader
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <boost/test/unit_test.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/config/loader.h"
#include "core/config/scenario.h"
#include "core/layout/layout.h"
#include "core/util/bytes.h"
#include "tests/support/profile_quantities.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

namespace fs = std::filesystem;
using testing::FirstLine;
using testing::SourcePath;
using testing::YamlFilesIn;

std::vector<int64_t> Layers(int64_t first, int64_t last) {
  std::vector<int64_t> layers;
  for (int64_t l = first; l <= last; ++l) layers.push_back(l);
  return layers;
}

// A temporary directory removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / absl::StrCat("dwdp_loader_test_", ::getpid());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string Write(const std::string& name, const std::string& text) const {
    const fs::path file = path / name;
    std::ofstream(file) << text;
    return file.string();
  }
};

// A valid scenario whose parts tests replace one at a time.
constexpr const char* kBaseScenario = R"(name: base
model:
  preset: deepseek-v3-nvfp4
dwdp:
  dwdp_size: 4
  num_experts_per_worker: 64
  num_prefetch_experts: 64
hardware: gb200-nvl72
workload:
  tokens_per_rank: 16384
)";

// Loads `yaml` as "t.yaml" and expects an InvalidArgument whose whole message is one line
// starting with `prefix` ("t.yaml:LINE:COL: key '...': ...") and containing `detail`.
void ExpectLoadError(const std::string& yaml, const std::string& prefix,
                     const std::string& detail = "") {
  const absl::StatusOr<Scenario> scenario = LoadScenarioString(yaml, "t.yaml");
  BOOST_TEST_CONTEXT("yaml:\n" << yaml) {
    BOOST_REQUIRE(!scenario.ok());
    const std::string message(scenario.status().message());
    BOOST_TEST(absl::IsInvalidArgument(scenario.status()), message);
    BOOST_TEST(absl::StartsWith(message, prefix), message);
    BOOST_TEST(absl::StrContains(message, detail), message);
    BOOST_TEST(!absl::StrContains(message, "\n"), message);
  }
}

std::string Replace(const std::string& text, const std::string& from, const std::string& to) {
  BOOST_REQUIRE(absl::StrContains(text, from));
  return absl::StrReplaceAll(text, {{from, to}});
}

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(model_presets)

// Bytes per expert of the BF16 presets from their published shapes: gate_up [2·I, H] and
// down [H, I] at 2 bytes each, i.e. 6·H·I.
BOOST_AUTO_TEST_CASE(bf16_presets_carry_their_shapes) {
  for (const auto& [name, hidden, inter, experts] :
       {std::tuple<const char*, int64_t, int64_t, int64_t>{"qwen3-30b-a3b-bf16", 2048, 768, 128},
        {"gpt-oss-120b-bf16", 2880, 2880, 128},
        {"deepseek-v3-lite-bf16", 7168, 2048, 72}}) {
    BOOST_TEST_CONTEXT(name) {
      const absl::StatusOr<ModelSpec> m = ModelPreset(name);
      BOOST_REQUIRE(m.ok());
      BOOST_TEST(m->num_experts == experts);
      BOOST_TEST(m->expert_bytes() == static_cast<uint64_t>(6 * hidden * inter));
      BOOST_TEST((m->weights[0].shape == std::vector<int64_t>{2 * inter, hidden}));
      BOOST_TEST((m->weights[1].shape == std::vector<int64_t>{hidden, inter}));
      BOOST_TEST((m->weights[0].dtype == DType::kBf16));
    }
  }
}

BOOST_AUTO_TEST_CASE(every_required_preset_exists_and_is_consistent) {
  const std::vector<std::string> names = ModelPresetNames();
  for (const char* required :
       {"deepseek-v3-nvfp4", "deepseek-v3-fp8", "kimi-k2-nvfp4", "deepseek-v2-lite-nvfp4",
        "qwen3-30b-a3b-nvfp4", "gpt-oss-120b-nvfp4"}) {
    BOOST_TEST(std::count(names.begin(), names.end(), required) == 1, required);
  }
  for (const std::string& name : names) {
    BOOST_TEST_CONTEXT(name) {
      const absl::StatusOr<ModelSpec> model = ModelPreset(name);
      BOOST_REQUIRE(model.ok());
      BOOST_TEST(model->preset == name);
      BOOST_TEST(!model->display_name.empty());
      // NVFP4 and FP8 experts carry weights and scales; BF16 ones the two matrices.
      BOOST_TEST(model->weights.size() == (model->expert_dtype == DType::kBf16 ? 2u : 4u));
      BOOST_TEST(!model->moe_layers.empty());
      // MoE layers are consecutive and end at the model's last layer.
      BOOST_TEST(model->moe_layers.back() == model->num_layers - 1);
      BOOST_TEST(model->moe_layers.back() - model->moe_layers.front() + 1 ==
                 static_cast<int64_t>(model->moe_layers.size()));
      BOOST_TEST(model->top_k <= model->num_experts);
      BOOST_TEST(model->non_moe_bytes > 0u);
      BOOST_TEST(model->kv_bytes_per_token > 0u);
    }
  }
}

BOOST_AUTO_TEST_CASE(unknown_preset_lists_the_presets) {
  const absl::StatusOr<ModelSpec> model = ModelPreset("deepseek-v4");
  BOOST_TEST(absl::IsNotFound(model.status()));
  BOOST_TEST(absl::StrContains(model.status().message(), "qwen3-30b-a3b-nvfp4"));
}

BOOST_AUTO_TEST_CASE(deepseek_v3_nvfp4_matches_hardware_md) {
  const ModelSpec m = *ModelPreset("deepseek-v3-nvfp4");
  BOOST_TEST(m.num_experts == 256);
  BOOST_TEST(m.num_layers == 61);
  BOOST_TEST(m.moe_layers == Layers(3, 60));
  BOOST_TEST(m.moe_layers.size() == 58u);
  BOOST_TEST(m.hidden_size == 7168);
  BOOST_TEST(m.moe_intermediate_size == 2048);
  BOOST_TEST(m.dense_intermediate_size == 18432);
  BOOST_TEST(m.top_k == 8);
  BOOST_TEST(m.num_shared_experts == 1);
  BOOST_TEST(m.vocab_size == 129280);
  BOOST_TEST(DTypeName(m.expert_dtype) == std::string("fp4"));
  BOOST_TEST((m.attention.kind == AttentionKind::kMla));
  BOOST_TEST(m.attention.num_heads == 128);
  BOOST_TEST(m.attention.q_lora_rank == 1536);
  BOOST_TEST(m.attention.kv_lora_rank == 512);
  BOOST_TEST(m.attention.qk_nope_head_dim == 128);
  BOOST_TEST(m.attention.qk_rope_head_dim == 64);
  BOOST_TEST(m.attention.v_head_dim == 128);
  // DWDP_SPEC §2 golden bytes, in order.
  BOOST_REQUIRE(m.weights.size() == 4u);
  BOOST_TEST(m.weights[0].name == "w3_w1_weight");
  BOOST_TEST(m.weights[0].expert_bytes == 14680064u);  // [4096 x 448] int64
  BOOST_TEST(m.weights[1].name == "w2_weight");
  BOOST_TEST(m.weights[1].expert_bytes == 7340032u);  // [7168 x 128] int64
  BOOST_TEST(m.weights[2].name == "w3_w1_weight_scale");
  BOOST_TEST(m.weights[2].expert_bytes == 1835008u);  // [4096 x 112] int32
  BOOST_TEST(m.weights[3].name == "w2_weight_scale");
  BOOST_TEST(m.weights[3].expert_bytes == 917504u);  // [7168 x 32] int32
  BOOST_TEST(m.expert_bytes() == 24772608u);
  // "Whole routed MoE of DeepSeek-V3 in NVFP4: ≈ 367.8 GB": 256 · 58 · 24,772,608.
  BOOST_TEST(256ull * m.moe_layers.size() * m.expert_bytes() == 367823683584ull);
  // KV (MLA, BF16): (512 + 64) · 61 · 2.
  BOOST_TEST(m.kv_bytes_per_token == 70272u);
  // Replicated part, FP8 linear + BF16 embeddings/router:
  //   attention per layer 7168·1536 + 1536·128·192 + 7168·576 + 512·128·256 + 128·128·7168
  //     = 187,105,280; × 61 layers; dense FFN 3 · 3·7168·18432; shared 58 · 3·7168·2048
  //     → 15,156,838,400 B;  (2·129280·7168 + 58·256·7168) · 2 = 3,919,577,088 B.
  BOOST_TEST(m.non_moe_bytes == 15156838400ull + 3919577088ull);
}

BOOST_AUTO_TEST_CASE(deepseek_v3_fp8_block_scales) {
  const ModelSpec m = *ModelPreset("deepseek-v3-fp8");
  BOOST_TEST(DTypeName(m.expert_dtype) == std::string("fp8"));
  BOOST_TEST(m.moe_layers == Layers(3, 60));
  BOOST_REQUIRE(m.weights.size() == 4u);
  std::map<std::string, uint64_t> bytes;
  for (const WeightSpec& w : m.weights) bytes[w.name] = w.expert_bytes;
  BOOST_TEST(bytes["w3_w1_weight"] == 2ull * 2048 * 7168);  // 29,360,128
  BOOST_TEST(bytes["w2_weight"] == 14680064u);              // 7168 · 2048
  BOOST_TEST(bytes["w3_w1_weight_scale"] == 32u * 56 * 4);  // 7,168
  BOOST_TEST(bytes["w2_weight_scale"] == 56u * 16 * 4);     // 3,584
  BOOST_TEST(m.expert_bytes() == 44050944u);
}

BOOST_AUTO_TEST_CASE(kimi_k2) {
  const ModelSpec m = *ModelPreset("kimi-k2-nvfp4");
  BOOST_TEST(m.num_experts == 384);
  BOOST_TEST(m.num_layers == 61);
  BOOST_TEST(m.moe_layers == Layers(1, 60));
  BOOST_TEST(m.expert_bytes() == 24772608u);
  BOOST_TEST((m.attention.kind == AttentionKind::kMla));
  BOOST_TEST(m.attention.num_heads == 64);
  BOOST_TEST(m.top_k == 8);
}

BOOST_AUTO_TEST_CASE(deepseek_v2_lite) {
  const ModelSpec m = *ModelPreset("deepseek-v2-lite-nvfp4");
  BOOST_TEST(m.num_experts == 64);
  BOOST_TEST(m.num_layers == 27);
  BOOST_TEST(m.moe_layers == Layers(1, 26));
  BOOST_TEST(m.hidden_size == 2048);
  BOOST_TEST(m.moe_intermediate_size == 1408);
  BOOST_TEST(m.top_k == 6);
  BOOST_TEST(m.num_shared_experts == 2);
  BOOST_TEST(m.attention.num_heads == 16);
  BOOST_TEST(m.attention.q_lora_rank == 0);
  BOOST_TEST(m.attention.kv_lora_rank == 512);
  // 1408·2048 = 2,883,584; / 2; / 8; / 16.
  BOOST_TEST(m.weights[0].expert_bytes == 2883584u);
  BOOST_TEST(m.weights[1].expert_bytes == 1441792u);
  BOOST_TEST(m.weights[2].expert_bytes == 360448u);
  BOOST_TEST(m.weights[3].expert_bytes == 180224u);
  BOOST_TEST(m.expert_bytes() == 4866048u);
  BOOST_TEST(static_cast<double>(m.expert_bytes()) / kMiB == 4.64,
             boost::test_tools::tolerance(0.001));
  BOOST_TEST(m.kv_bytes_per_token == 576u * 27 * 2);
}

BOOST_AUTO_TEST_CASE(qwen3_30b_a3b) {
  const ModelSpec m = *ModelPreset("qwen3-30b-a3b-nvfp4");
  BOOST_TEST(m.num_experts == 128);
  BOOST_TEST(m.moe_layers == Layers(0, 47));
  BOOST_TEST(m.num_layers == 48);
  BOOST_TEST(m.top_k == 8);
  BOOST_TEST(m.num_shared_experts == 0);
  BOOST_TEST((m.attention.kind == AttentionKind::kGqa));
  BOOST_TEST(m.attention.num_heads == 32);
  BOOST_TEST(m.attention.num_kv_heads == 4);
  BOOST_TEST(m.attention.head_dim == 128);
  // 768·2048 = 1,572,864 (+ / 2, / 8, / 16) = 2,654,208 = 2.53 MiB.
  BOOST_TEST(m.expert_bytes() == 2654208u);
  BOOST_TEST(static_cast<double>(m.expert_bytes()) / kMiB == 2.53,
             boost::test_tools::tolerance(0.001));
  BOOST_TEST(m.kv_bytes_per_token == 2u * 4 * 128 * 48 * 2);  // 98,304
}

BOOST_AUTO_TEST_CASE(gpt_oss_120b) {
  const ModelSpec m = *ModelPreset("gpt-oss-120b-nvfp4");
  BOOST_TEST(m.num_experts == 128);
  BOOST_TEST(m.moe_layers == Layers(0, 35));
  BOOST_TEST(m.hidden_size == 2880);
  BOOST_TEST(m.moe_intermediate_size == 2880);
  BOOST_TEST(m.top_k == 4);
  BOOST_TEST(m.attention.num_heads == 64);
  BOOST_TEST(m.attention.num_kv_heads == 8);
  BOOST_TEST(m.attention.head_dim == 64);
  // 2880² = 8,294,400 (+ / 2, / 8, / 16) = 13,996,800 = 13.35 MiB; not a multiple of 2 MiB.
  BOOST_TEST(m.expert_bytes() == 13996800u);
  BOOST_TEST(static_cast<double>(m.expert_bytes()) / kMiB == 13.35,
             boost::test_tools::tolerance(0.001));
  BOOST_TEST(m.expert_bytes() % (2 * kMiB) != 0u);
  BOOST_TEST(m.kv_bytes_per_token == 2u * 8 * 64 * 36 * 2);  // 73,728
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(hardware_presets)

void ExpectQuantity(const Quantity& q, double value, Provenance source, const char* what) {
  BOOST_TEST_CONTEXT(what) {
    BOOST_TEST(q.value == value);
    BOOST_TEST(ProvenanceName(q.source) == ProvenanceName(source));
  }
}

BOOST_AUTO_TEST_CASE(every_preset_has_every_number) {
  const std::vector<std::string> names = HardwarePresetNames();
  for (const char* required : {"gb200-nvl72", "b200-hgx", "h100-sxm", "h200-sxm"}) {
    BOOST_TEST(std::count(names.begin(), names.end(), required) == 1, required);
  }
  for (const std::string& name : names) {
    BOOST_TEST_CONTEXT(name) {
      const absl::StatusOr<HardwareProfile> hw = HardwarePreset(name);
      BOOST_REQUIRE(hw.ok());
      BOOST_TEST(hw->name == name);
      BOOST_TEST(hw->source_file.empty());
      for (const Quantity* q :
           {&hw->granularity,        &hw->nvlink_bw,          &hw->peer_copy_bw,
            &hw->copy_latency_ns,    &hw->local_copy_bw,      &hw->hbm_bw,
            &hw->hbm_bytes,          &hw->flops_fp4,          &hw->flops_fp8,
            &hw->flops_bf16,         &hw->compute_efficiency, &hw->memory_efficiency,
            &hw->kernel_overhead_ns, &hw->compute_slowdown,   &hw->concurrent_pull_efficiency,
            &hw->host_issue_ns,      &hw->event_ns,           &hw->map_ns,
            &hw->nvlink_domain,      &hw->gpus_per_node,      &hw->max_mappings,
            &hw->max_fabric_mappings}) {
        BOOST_TEST(q->value > 0);
      }
      BOOST_TEST(hw->peer_copy_bw.value <= hw->nvlink_bw.value);
      BOOST_TEST(hw->compute_efficiency.value <= 1.0);
      BOOST_TEST(hw->granularity.value == 2.0 * kMiB);
    }
  }
  BOOST_TEST(absl::IsNotFound(HardwarePreset("gb300").status()));
}

BOOST_AUTO_TEST_CASE(h100_numbers_and_provenance) {
  const HardwareProfile hw = *HardwarePreset("h100-sxm");
  ExpectQuantity(hw.granularity, 2.0 * kMiB, Provenance::kMeasured, "granularity");
  ExpectQuantity(hw.nvlink_bw, 450e9, Provenance::kSpec, "nvlink_bw");
  ExpectQuantity(hw.peer_copy_bw, 398e9, Provenance::kMeasured, "peer_copy_bw");
  ExpectQuantity(hw.copy_latency_ns, 4000, Provenance::kMeasured, "copy_latency_ns");
  ExpectQuantity(hw.local_copy_bw, 1484e9, Provenance::kMeasured, "local_copy_bw");
  ExpectQuantity(hw.hbm_bw, 3.35e12, Provenance::kSpec, "hbm_bw");
  ExpectQuantity(hw.hbm_bytes, 80e9, Provenance::kSpec, "hbm_bytes");
  ExpectQuantity(hw.flops_fp8, 1.98e15, Provenance::kSpec, "flops_fp8");
  ExpectQuantity(hw.flops_bf16, 0.99e15, Provenance::kSpec, "flops_bf16");
  ExpectQuantity(hw.flops_fp4, 1.98e15, Provenance::kAssumed, "flops_fp4 (no FP4 units)");
  ExpectQuantity(hw.map_ns, 17000, Provenance::kMeasured, "map_ns (51 us / 3 calls)");
  ExpectQuantity(hw.concurrent_pull_efficiency, 0.5, Provenance::kMeasured, "concurrent pulls");
  ExpectQuantity(hw.egress_bw, 397e9, Provenance::kMeasured, "egress of one peer, 3 pullers");
  ExpectQuantity(hw.fabric_bw, 0, Provenance::kAssumed, "no fabric limit until calibrated");
  ExpectQuantity(hw.copy_latency_on_link, 1.0, Provenance::kMeasured, "round robin 3.7x");
  ExpectQuantity(hw.nvlink_domain, 8, Provenance::kSpec, "nvlink_domain");
  ExpectQuantity(hw.gpus_per_node, 8, Provenance::kSpec, "gpus_per_node");
  ExpectQuantity(hw.max_mappings, 130000, Provenance::kAssumed, "max_mappings");
  ExpectQuantity(hw.host_issue_ns, 2000, Provenance::kAssumed, "host_issue_ns");
  BOOST_TEST(hw.fabric_supported);
  BOOST_TEST(!hw.imex_permitted);
}

BOOST_AUTO_TEST_CASE(gb200_b200_h200_numbers) {
  const HardwareProfile gb = *HardwarePreset("gb200-nvl72");
  ExpectQuantity(gb.nvlink_bw, 900e9, Provenance::kSpec, "gb200 nvlink_bw");
  ExpectQuantity(gb.peer_copy_bw, 0.85 * 900e9, Provenance::kAssumed, "gb200 peer_copy_bw");
  ExpectQuantity(gb.nvlink_domain, 72, Provenance::kSpec, "gb200 nvlink_domain");
  ExpectQuantity(gb.gpus_per_node, 4, Provenance::kSpec, "gb200 gpus_per_node");
  ExpectQuantity(gb.hbm_bytes, 186e9, Provenance::kSpec, "gb200 hbm_bytes");
  ExpectQuantity(gb.hbm_bw, 8e12, Provenance::kSpec, "gb200 hbm_bw");
  ExpectQuantity(gb.flops_fp4, 10e15, Provenance::kSpec, "gb200 flops_fp4");
  ExpectQuantity(gb.flops_fp8, 5e15, Provenance::kSpec, "gb200 flops_fp8");
  ExpectQuantity(gb.flops_bf16, 2.5e15, Provenance::kSpec, "gb200 flops_bf16");
  ExpectQuantity(gb.compute_slowdown, 0.12, Provenance::kAssumed, "gb200 compute_slowdown");
  BOOST_TEST(gb.fabric_supported);
  BOOST_TEST(gb.imex_permitted);

  const HardwareProfile b200 = *HardwarePreset("b200-hgx");
  ExpectQuantity(b200.hbm_bytes, 180e9, Provenance::kSpec, "b200 hbm_bytes");
  ExpectQuantity(b200.flops_fp4, 9e15, Provenance::kSpec, "b200 flops_fp4");
  ExpectQuantity(b200.flops_fp8, 4.5e15, Provenance::kSpec, "b200 flops_fp8");
  ExpectQuantity(b200.nvlink_domain, 8, Provenance::kSpec, "b200 nvlink_domain");

  const HardwareProfile h200 = *HardwarePreset("h200-sxm");
  ExpectQuantity(h200.hbm_bytes, 141e9, Provenance::kSpec, "h200 hbm_bytes");
  ExpectQuantity(h200.hbm_bw, 4.8e12, Provenance::kSpec, "h200 hbm_bw");
  ExpectQuantity(h200.nvlink_bw, 450e9, Provenance::kSpec, "h200 nvlink_bw");
  ExpectQuantity(h200.flops_fp8, 1.98e15, Provenance::kSpec, "h200 flops_fp8");
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(byte_sizes)

BOOST_AUTO_TEST_CASE(fractional_sizes_are_exact_not_rounded) {
  // Found by fuzz_byte_size: the fraction went through long double, so a fraction that is not
  // a whole number of bytes was rounded into one and accepted.
  const absl::StatusOr<uint64_t> rounded = ParseByteSize(" 6744073709551616.00000212");
  BOOST_REQUIRE(!rounded.ok());
  BOOST_TEST(absl::StrContains(rounded.status().message(), "is not a whole number of bytes"),
             rounded.status().message());
  BOOST_TEST(!ParseByteSize("1.0000000000000000000001").ok());
  BOOST_TEST(!ParseByteSize("4095.99999999999999999999 B").ok());
  BOOST_TEST(!ParseByteSize("0.3 KiB").ok());  // 307.2 bytes
  // Exact fractions are whole numbers of bytes however they are written.
  BOOST_TEST(ParseByteSize("0.5KiB").value_or(0) == 512u);
  BOOST_TEST(ParseByteSize("1.5GiB").value_or(0) == 3 * kGiB / 2);
  BOOST_TEST(ParseByteSize("0.0009765625 KiB").value_or(0) == 1u);  // 2^-10 KiB
  BOOST_TEST(ParseByteSize("2.000000000000000000000000 MB").value_or(0) == 2000000u);
  BOOST_TEST(ParseByteSize(".25k").value_or(0) == 256u);
  // The 64-bit limit is exact too: 2^64 - 1 written with a fraction was rejected as an
  // overflow, the next integer still is one.
  BOOST_TEST(ParseByteSize("18446744073709551615.0").value_or(0) == UINT64_MAX);
  const absl::StatusOr<uint64_t> too_large = ParseByteSize("18446744073709551616.0");
  BOOST_REQUIRE(!too_large.ok());
  BOOST_TEST(absl::StrContains(too_large.status().message(), "overflows 64 bits"),
             too_large.status().message());
  BOOST_TEST(!ParseByteSize("16777216 TiB").ok());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(scenario_strings)

BOOST_AUTO_TEST_CASE(base_scenario_loads_with_defaults) {
  const absl::StatusOr<Scenario> s = LoadScenarioString(kBaseScenario, "base.yaml");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  BOOST_TEST(s->name == "base");
  BOOST_TEST(s->model.preset == "deepseek-v3-nvfp4");
  BOOST_TEST(s->dwdp.dwdp_size == 4);
  BOOST_TEST(s->dwdp.num_groups == 1);
  BOOST_TEST(s->dwdp.num_experts_per_worker == 64);
  BOOST_TEST(s->dwdp.num_prefetch_experts == 64);
  BOOST_TEST(s->dwdp.num_buffers == 2);
  BOOST_TEST(s->dwdp.pool_page_bytes == 16 * kMiB);
  BOOST_TEST(!s->dwdp.loaded_chunk.has_value());
  BOOST_TEST(ContentionModeName(s->dwdp.contention.mode) == std::string("rotate"));
  BOOST_TEST(s->dwdp.contention.slice_bytes == 2 * kMiB);
  BOOST_TEST(s->hardware.name == "gb200-nvl72");
  BOOST_TEST(s->workload.tokens_per_rank == 16384);
  BOOST_TEST(s->workload.sequence_length == 16384);  // defaults to tokens_per_rank
  BOOST_TEST(s->workload.forwards == 1);
  BOOST_TEST(!s->workload.layer_compute_ns.has_value());
}

BOOST_AUTO_TEST_CASE(uniform_partition_is_the_default_when_d_divides_n) {
  const absl::StatusOr<Scenario> s = LoadScenarioString(
      "model: deepseek-v3-nvfp4\ndwdp: {dwdp_size: 8}\nhardware: h100-sxm\n", "mini.yaml");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  BOOST_TEST(s->name == "mini");  // the file stem
  BOOST_TEST(s->dwdp.num_experts_per_worker == 32);
  BOOST_TEST(s->dwdp.num_prefetch_experts == 32);
  BOOST_TEST(s->workload.tokens_per_rank == 8192);  // no workload section
  // d = 3 does not divide 256: the user must choose a recipe.
  ExpectLoadError("model: deepseek-v3-nvfp4\ndwdp: {dwdp_size: 3}\nhardware: h100-sxm\n",
                  "t.yaml:2:7: key 'dwdp.num_experts_per_worker': missing",
                  "dwdp recipes --dwdp-size 3 --num-experts 256");
}

BOOST_AUTO_TEST_CASE(unit_strings_for_sizes) {
  const std::string yaml = R"(name: units
model:
  num_experts: 8
  moe_layers: 2
  weights:
    - {name: a, expert_bytes: 2MiB}
    - {name: b, expert_bytes: "3 KiB"}
    - {name: c, expert_bytes: 1.5GiB}
    - {name: d, expert_bytes: 4096}
    - {name: e, expert_bytes: 2MB}
  non_moe_bytes: 10GiB
dwdp:
  dwdp_size: 2
  pool_page_bytes: 32MiB
  contention: {mode: round_robin, slice_bytes: 512KiB}
hardware:
  preset: h100-sxm
  hbm_bytes: 80GB
  granularity: {value: 2MiB, source: measured}
)";
  const absl::StatusOr<Scenario> s = LoadScenarioString(yaml, "units.yaml");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  const std::vector<WeightSpec>& w = s->model.weights;
  BOOST_REQUIRE(w.size() == 5u);
  BOOST_TEST(w[0].expert_bytes == 2097152u);
  BOOST_TEST(w[1].expert_bytes == 3072u);
  BOOST_TEST(w[2].expert_bytes == 1610612736u);
  BOOST_TEST(w[3].expert_bytes == 4096u);
  BOOST_TEST(w[4].expert_bytes == 2000000u);
  BOOST_TEST(s->model.non_moe_bytes == 10737418240ull);
  BOOST_TEST(s->dwdp.pool_page_bytes == 33554432u);
  BOOST_TEST(ContentionModeName(s->dwdp.contention.mode) == std::string("round_robin"));
  BOOST_TEST(s->dwdp.contention.slice_bytes == 524288u);
  // The staggered schedule by name, as a map and as a scalar.
  for (const char* form : {"{mode: staggered, slice_bytes: 512KiB}", "staggered"}) {
    std::string text = yaml;
    const std::string old_line = "{mode: round_robin, slice_bytes: 512KiB}";
    text.replace(text.find(old_line), old_line.size(), form);
    const absl::StatusOr<Scenario> staggered = LoadScenarioString(text, "units.yaml");
    BOOST_REQUIRE_MESSAGE(staggered.ok(), staggered.status().ToString());
    BOOST_TEST((staggered->dwdp.contention.mode == ContentionMode::kStaggered));
  }
  BOOST_TEST(s->hardware.hbm_bytes.value == 80e9);
  BOOST_TEST(ProvenanceName(s->hardware.hbm_bytes.source) == std::string("assumed"));
  BOOST_TEST(ProvenanceName(s->hardware.granularity.source) == std::string("measured"));
  // No preset, no num_layers: an all-MoE model of moe_layers layers.
  BOOST_TEST(s->model.moe_layers == Layers(0, 1));
  BOOST_TEST(s->model.num_layers == 2);
}

BOOST_AUTO_TEST_CASE(explicit_fields_override_a_preset) {
  const std::string yaml = R"(model:
  preset: deepseek-v3-nvfp4
  moe_layers: 6
  top_k: 6
  display_name: DeepSeek-V3 cut to six MoE layers
dwdp: {dwdp_size: 4}
hardware: gb200-nvl72
)";
  const absl::StatusOr<Scenario> s = LoadScenarioString(yaml, "cut.yaml");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  const ModelSpec& m = s->model;
  BOOST_TEST(m.preset == "deepseek-v3-nvfp4");
  BOOST_TEST(m.display_name == "DeepSeek-V3 cut to six MoE layers");
  // A count keeps the preset's first MoE layer (3): layers 3..8, model ends at layer 8.
  BOOST_TEST(m.moe_layers == Layers(3, 8));
  BOOST_TEST(m.num_layers == 9);
  BOOST_TEST(m.top_k == 6);
  BOOST_TEST(m.hidden_size == 7168);  // untouched preset field
  BOOST_TEST(m.expert_bytes() == 24772608u);
  // Estimates follow the shorter model: 9 · 187,105,280 attention + 3 · 396,361,728 dense
  // + 6 · 44,040,192 shared = 3,137,273,856 FP8 bytes; (2·129280·7168 + 6·256·7168)·2 =
  // 3,728,736,256 BF16 bytes. KV: 576 · 9 · 2.
  BOOST_TEST(m.non_moe_bytes == 3137273856ull + 3728736256ull);
  BOOST_TEST(m.kv_bytes_per_token == 10368u);

  // [first, last] is taken as given; explicit weights replace the preset's list.
  const absl::StatusOr<Scenario> ranged = LoadScenarioString(R"(model:
  preset: qwen3-30b-a3b-nvfp4
  moe_layers: [10, 13]
  weights: [{name: only, expert_bytes: 3MiB}]
  kv_bytes_per_token: 1000
dwdp: {dwdp_size: 2}
hardware: h100-sxm
)",
                                                             "ranged.yaml");
  BOOST_REQUIRE_MESSAGE(ranged.ok(), ranged.status().ToString());
  BOOST_TEST(ranged->model.moe_layers == Layers(10, 13));
  BOOST_TEST(ranged->model.num_layers == 14);
  BOOST_REQUIRE(ranged->model.weights.size() == 1u);
  BOOST_TEST(ranged->model.expert_bytes() == 3 * kMiB);
  BOOST_TEST(ranged->model.kv_bytes_per_token == 1000u);

  // Without a preset, a count means the last N of num_layers.
  const absl::StatusOr<Scenario> tail = LoadScenarioString(R"(model:
  num_experts: 16
  num_layers: 10
  moe_layers: 8
  weights: [{name: w, expert_bytes: 4096}]
dwdp: {dwdp_size: 2}
hardware: h100-sxm
)",
                                                           "tail.yaml");
  BOOST_REQUIRE_MESSAGE(tail.ok(), tail.status().ToString());
  BOOST_TEST(tail->model.moe_layers == Layers(2, 9));
  BOOST_TEST(tail->model.num_layers == 10);
  BOOST_TEST(tail->model.preset.empty());
}

BOOST_AUTO_TEST_CASE(hardware_overrides_keep_provenance) {
  const std::string yaml = Replace(kBaseScenario, "hardware: gb200-nvl72\n", R"(hardware:
  preset: h100-sxm
  peer_copy_bw: 380e9
  hbm_bw: {value: 3.3e12, source: measured}
  fabric_supported: false
)");
  const absl::StatusOr<Scenario> s = LoadScenarioString(yaml, "hw.yaml");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  const HardwareProfile& hw = s->hardware;
  BOOST_TEST(hw.name == "h100-sxm");
  BOOST_TEST(hw.peer_copy_bw.value == 380e9);
  BOOST_TEST(ProvenanceName(hw.peer_copy_bw.source) == std::string("assumed"));  // plain number
  BOOST_TEST(hw.hbm_bw.value == 3.3e12);
  BOOST_TEST(ProvenanceName(hw.hbm_bw.source) == std::string("measured"));
  BOOST_TEST(hw.local_copy_bw.value == 1484e9);  // from the preset, with its provenance
  BOOST_TEST(ProvenanceName(hw.local_copy_bw.source) == std::string("measured"));
  BOOST_TEST(!hw.fabric_supported);

  // Without a preset every number must be given.
  ExpectLoadError(Replace(kBaseScenario, "hardware: gb200-nvl72\n",
                          "hardware:\n  name: mine\n  hbm_bw: 1e12\n"),
                  "t.yaml:9:3: key 'hardware.granularity': missing",
                  "a hardware map without 'preset' must give every number; missing: "
                  "granularity, nvlink_bw");
}

BOOST_AUTO_TEST_CASE(fraction_and_exponent_numbers_are_exact_not_rounded) {
  // The same rounding fuzz_byte_size found in ParseByteSize, in the loader's own number
  // reading: a double rounded "4.0000000000000001" to 4, so a number that is not whole loaded.
  ExpectLoadError(Replace(kBaseScenario, "dwdp_size: 4", "dwdp_size: 4.0000000000000001"),
                  "t.yaml:5:14: key 'dwdp.dwdp_size': expected a whole number, got "
                  "'4.0000000000000001'");
  ExpectLoadError(Replace(kBaseScenario, "  preset: deepseek-v3-nvfp4\n",
                          "  preset: deepseek-v3-nvfp4\n"
                          "  weights: [{name: w, expert_bytes: 4097.0000000000000001}]\n"),
                  "t.yaml:4:", "expected a whole number of bytes, got '4097.0000000000000001'");
  ExpectLoadError(Replace(kBaseScenario, "tokens_per_rank: 16384", "tokens_per_rank: 1e-1"),
                  "t.yaml:10:", "expected a whole number, got '1e-1'");
  // Exact forms still load, with their exact value; hexadecimal keeps working.
  const absl::StatusOr<Scenario> s = LoadScenarioString(
      absl::StrReplaceAll(kBaseScenario,
                          {{"dwdp_size: 4", "dwdp_size: 0.04e2"},
                           {"num_prefetch_experts: 64", "num_prefetch_experts: 6.4e1"},
                           {"tokens_per_rank: 16384", "tokens_per_rank: 0x4000"},
                           {"  preset: deepseek-v3-nvfp4\n",
                            "  preset: deepseek-v3-nvfp4\n"
                            "  weights: [{name: w, expert_bytes: 4.097000e3}]\n"}}),
      "t.yaml");
  BOOST_TEST_REQUIRE(s.ok(), s.status().ToString());
  BOOST_TEST(s->dwdp.dwdp_size == 4);
  BOOST_TEST(s->dwdp.num_prefetch_experts == 64);
  BOOST_TEST(s->workload.tokens_per_rank == 16384);
  BOOST_TEST(s->model.weights.at(0).expert_bytes == 4097u);
}

BOOST_AUTO_TEST_CASE(text_values_must_be_utf8) {
  // Found by fuzz_loader: yaml-cpp passes bytes that are not UTF-8 through, so a name like
  // "c\xF2lf" loaded and `dwdp validate --format json` then aborted in nlohmann::json.
  ExpectLoadError(Replace(kBaseScenario, "name: base", "name: c\xF2lf"),
                  "t.yaml:1:7: key 'name': expected UTF-8 text, got byte 0xF2 at offset 1");
  ExpectLoadError(Replace(kBaseScenario, "  preset: deepseek-v3-nvfp4\n",
                          "  preset: deepseek-v3-nvfp4\n"
                          "  weights: [{name: \"w\xC0\xAF\", expert_bytes: 4096}]\n"),
                  "t.yaml:4:", "expected UTF-8 text, got byte 0xC0 at offset 1");  // overlong '/'
  ExpectLoadError(Replace(kBaseScenario, "hardware: gb200-nvl72",
                          "hardware: {preset: gb200-nvl72, gpu_name: \"\xED\xA0\x80\"}"),
                  "t.yaml:8:43:", "expected UTF-8 text, got byte 0xED at offset 0");  // a surrogate
  // UTF-8 text of every length loads as written.
  const std::string name =
      "gr\xC3\xB6\xC3\x9F"
      "e-\xE2\x9C\x93-\xF0\x9F\x9A\x80";  // größe-✓-🚀
  const absl::StatusOr<Scenario> s =
      LoadScenarioString(Replace(kBaseScenario, "name: base", "name: " + name), "t.yaml");
  BOOST_TEST_REQUIRE(s.ok(), s.status().ToString());
  BOOST_TEST(s->name == name);
}

BOOST_AUTO_TEST_CASE(messages_quoting_control_characters_stay_one_line) {
  // Found by fuzz_loader: for "---\x06\x00\n" yaml-cpp reports "unknown escape character: "
  // followed by a raw newline, which went into the message unchanged.
  ExpectLoadError(std::string("---\x06\0\n", 6),
                  "t.yaml:2:1: malformed YAML: unknown escape character: \\n");
  // The user's own text, quoted in a message, is escaped the same way.
  ExpectLoadError(Replace(kBaseScenario, "dwdp_size: 4", "dwdp_size: |\n    4\n    5\x7F\x01\t"),
                  "t.yaml:5:", "expected an integer, got '4\\n5\\x7F\\x01'");
}

BOOST_AUTO_TEST_CASE(stray_comma_at_the_top_level_is_an_error_not_a_hang) {
  // Found by fuzz_loader (a timeout with 2 GB of memory): for ",--" yaml-cpp 0.7's LoadAll
  // starts empty documents on the ',' forever.
  ExpectLoadError(",--\n", "t.yaml:1:1: malformed YAML: ',' outside a list or map");
  ExpectLoadError(kBaseScenario + std::string(",\n"), "t.yaml:11:1: malformed YAML");
  ExpectLoadError("- a\n, b\n", "t.yaml:2:1: malformed YAML: ',' outside a list or map");
  ExpectLoadError("[a] ,", "t.yaml:1:5: malformed YAML: ',' outside a list or map");
  // More than one document is still counted and reported at the second one.
  ExpectLoadError(kBaseScenario + std::string("---\nname: second\n---\n"),
                  "t.yaml:12:1: the file holds 3 YAML documents; it must hold one");
}

BOOST_AUTO_TEST_CASE(default_pool_page_is_eight_granules) {
  // Found by the fuzz_loader property "the pool page is a multiple of the granularity": with
  // a 32 MiB granularity the fixed 16 MiB default loaded, and `dwdp layout` then failed.
  const absl::StatusOr<Scenario> large =
      LoadScenarioString(Replace(kBaseScenario, "hardware: gb200-nvl72",
                                 "hardware: {preset: gb200-nvl72, granularity: 32MiB}"),
                         "t.yaml");
  BOOST_TEST_REQUIRE(large.ok(), large.status().ToString());
  BOOST_TEST(large->dwdp.pool_page_bytes == 256 * kMiB);  // DWDP_SPEC: PG defaults to 8·G
  BOOST_TEST(ComputeGroupLayout(*large).ok());
  const absl::StatusOr<Scenario> small =
      LoadScenarioString(Replace(kBaseScenario, "hardware: gb200-nvl72",
                                 "hardware: {preset: gb200-nvl72, granularity: 64KiB}"),
                         "t.yaml");
  BOOST_TEST_REQUIRE(small.ok(), small.status().ToString());
  BOOST_TEST(small->dwdp.pool_page_bytes == 512 * kKiB);
  // Every preset's granularity is 2 MiB: the default stays 16 MiB there.
  const absl::StatusOr<Scenario> preset = LoadScenarioString(kBaseScenario, "t.yaml");
  BOOST_TEST_REQUIRE(preset.ok(), preset.status().ToString());
  BOOST_TEST(preset->dwdp.pool_page_bytes == 16 * kMiB);
}

BOOST_AUTO_TEST_CASE(partition_values_that_validation_reports_still_load) {
  struct Case {
    const char* from;
    const char* to;
  };
  for (const Case& c : {Case{"num_experts_per_worker: 64", "num_experts_per_worker: 0"},
                        Case{"num_experts_per_worker: 64", "num_experts_per_worker: -5"},
                        Case{"num_prefetch_experts: 64", "num_prefetch_experts: 0"},
                        Case{"num_prefetch_experts: 64", "num_prefetch_experts: -1"},
                        Case{"dwdp_size: 4", "dwdp_size: 1"}, Case{"dwdp_size: 4", "dwdp_size: 0"},
                        Case{"num_prefetch_experts: 64", "num_prefetch_experts: 128"}}) {
    BOOST_TEST_CONTEXT(c.to) {
      const absl::StatusOr<Scenario> s =
          LoadScenarioString(Replace(kBaseScenario, c.from, c.to), "p.yaml");
      BOOST_TEST(s.ok(), s.status().ToString());
    }
  }
  const absl::StatusOr<Scenario> negative = LoadScenarioString(
      Replace(kBaseScenario, "num_experts_per_worker: 64", "num_experts_per_worker: -5"), "p.yaml");
  BOOST_REQUIRE(negative.ok());
  BOOST_TEST(negative->dwdp.num_experts_per_worker == -5);
  const absl::StatusOr<Scenario> groups = LoadScenarioString(
      Replace(kBaseScenario, "dwdp_size: 4", "dwdp_size: 4\n  num_groups: 0\n  loaded_chunk: 32"),
      "p.yaml");
  BOOST_REQUIRE(groups.ok());
  BOOST_TEST(groups->dwdp.num_groups == 0);
  BOOST_TEST(groups->dwdp.loaded_chunk.value_or(-1) == 32);
}

BOOST_AUTO_TEST_CASE(errors_name_file_line_column_and_key) {
  const std::string base = kBaseScenario;
  // Integers: words, fractions, exponent forms that do not fit, quoted numbers are fine.
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: four"),
                  "t.yaml:5:14: key 'dwdp.dwdp_size': expected an integer, got 'four'");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 1e30"),
                  "t.yaml:5:14: key 'dwdp.dwdp_size': must be between -65536 and 65536",
                  "got 1e30");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4.5"),
                  "t.yaml:5:14: key 'dwdp.dwdp_size': expected a whole number, got '4.5'");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: [4]"),
                  "t.yaml:5:14: key 'dwdp.dwdp_size': expected an integer, got a list");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size:"),
                  "t.yaml:5:3: key 'dwdp.dwdp_size': expected an integer, got nothing");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 10000000"),
                  "t.yaml:5:14: key 'dwdp.dwdp_size': must be between -65536 and 65536 "
                  "(dwdp supports at most 65536 ranks), got 10000000");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4096\n  num_groups: 32"),
                  "t.yaml:6:15: key 'dwdp.num_groups': dwdp_size 4096 × num_groups 32 = 131072 "
                  "ranks");
  // Sizes.
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4\n  pool_page_bytes: -16MiB"),
                  "t.yaml:6:20: key 'dwdp.pool_page_bytes': a size cannot be negative");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4\n  pool_page_bytes: 1MiB"),
                  "t.yaml:6:20: key 'dwdp.pool_page_bytes': must be a multiple of the VMM "
                  "granularity of gb200-nvl72 (2 MiB), got 1 MiB");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4\n  pool_page_bytes: 1e30"),
                  "t.yaml:6:20: key 'dwdp.pool_page_bytes': must be between 4096");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4\n  pool_page_bytes: 16.5MiB"),
                  "t.yaml:6:20: key 'dwdp.pool_page_bytes': must be a power of two");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4\n  num_buffers: 65"),
                  "t.yaml:6:16: key 'dwdp.num_buffers': must be between 2 and 64");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4\n  contention: {mode: fastest}"),
                  "t.yaml:6:22: key 'dwdp.contention.mode': must be one of rotate, ascending, "
                  "round_robin, staggered; got 'fastest'");
  ExpectLoadError(Replace(base, "dwdp_size: 4", "dwdp_size: 4\n  contention: {slices: 2MiB}"),
                  "t.yaml:6:16: key 'dwdp.contention.slices': unknown key; did you mean "
                  "'slice_bytes'?");
  // Workload.
  ExpectLoadError(Replace(base, "tokens_per_rank: 16384", "tokens_per_rank: -1"),
                  "t.yaml:10:20: key 'workload.tokens_per_rank': must be between 0 and");
  ExpectLoadError(Replace(base, "tokens_per_rank: 16384", "tokens_per_rank: 1\n  tokens_cv: nan"),
                  "t.yaml:11:14: key 'workload.tokens_cv': expected a number, got 'nan'");
  ExpectLoadError(Replace(base, "tokens_per_rank: 16384", "forwards: 0"),
                  "t.yaml:10:13: key 'workload.forwards': must be between 1 and 1000000");
  // Model.
  ExpectLoadError(
      Replace(base, "preset: deepseek-v3-nvfp4", "preset: deepseek-v3-nvfp4\n  num_experts: 0"),
      "t.yaml:4:16: key 'model.num_experts': must be between 1 and 1000000");
  ExpectLoadError(
      Replace(base, "preset: deepseek-v3-nvfp4", "preset: deepseek-v3-nvfp4\n  top_k: 300"),
      "t.yaml:4:10: key 'model.top_k': top_k 300 is more than the 256 experts");
  ExpectLoadError(
      Replace(base, "preset: deepseek-v3-nvfp4", "preset: deepseek-v3-nvfp4\n  moe_layers: [9, 3]"),
      "t.yaml:4:15: key 'model.moe_layers': first layer 9 comes after last layer 3");
  ExpectLoadError(Replace(base, "preset: deepseek-v3-nvfp4",
                          "preset: deepseek-v3-nvfp4\n  moe_layers: [1, 2, 3]"),
                  "t.yaml:4:15: key 'model.moe_layers': expected a count or [first, last] layer "
                  "indices, got a list of 3");
  ExpectLoadError(
      Replace(base, "preset: deepseek-v3-nvfp4", "preset: deepseek-v3-nvfp4\n  num_layers: 40"),
      "t.yaml:4:15: key 'model.num_layers': MoE layer 60 does not exist in a "
      "40-layer model");
  ExpectLoadError(Replace(base, "preset: deepseek-v3-nvfp4",
                          "preset: deepseek-v3-nvfp4\n  attention: {kind: mla, heads: 3}"),
                  "t.yaml:4:26: key 'model.attention.heads': unknown key; did you mean "
                  "'num_heads'?");
  ExpectLoadError(
      Replace(base, "preset: deepseek-v3-nvfp4", "preset: deepseek-v3-nvfp4\n  expert_dtype: int4"),
      "t.yaml:4:17: key 'model.expert_dtype': must be one of fp4, fp8, bf16");
  ExpectLoadError(Replace(base, "preset: deepseek-v3-nvfp4",
                          "preset: deepseek-v3-nvfp4\n  weights: [{name: a, expert_bytes: 1}, "
                          "{name: a, expert_bytes: 2}]"),
                  "t.yaml:4:48: key 'model.weights[1].name': weight 'a' is listed twice");
  ExpectLoadError(Replace(base, "preset: deepseek-v3-nvfp4",
                          "preset: deepseek-v3-nvfp4\n  weights: [{name: a}]"),
                  "t.yaml:4:13: key 'model.weights[0].expert_bytes': missing");
  ExpectLoadError(
      Replace(base, "preset: deepseek-v3-nvfp4", "preset: deepseek-v3-nvfp4\n  weights: []"),
      "t.yaml:4:12: key 'model.weights': needs at least one weight");
  ExpectLoadError("model:\n  num_experts: 8\ndwdp: {dwdp_size: 2}\nhardware: h100-sxm\n",
                  "t.yaml:2:3: key 'model.moe_layers': missing", "presets: deepseek-v3-nvfp4");
  // Structure.
  ExpectLoadError(Replace(base, "name: base", "name: base\n? [a, b]\n: 1"),
                  "t.yaml:2:3: map keys must be plain names");
  ExpectLoadError(Replace(base, "hardware: gb200-nvl72", "hardware: [gb200-nvl72]"),
                  "t.yaml:8:11: key 'hardware': expected a hardware preset name, a profile file "
                  "path or a map, got a list");
  ExpectLoadError(Replace(base, "hardware: gb200-nvl72",
                          "hardware: {preset: h100-sxm, hbm_bw: {value: 1e12, src: spec}}"),
                  "t.yaml:8:52: key 'hardware.hbm_bw.src': unknown key; did you mean 'source'?");
  ExpectLoadError(Replace(base, "hardware: gb200-nvl72",
                          "hardware: {preset: h100-sxm, compute_efficiency: 1.5}"),
                  "t.yaml:8:50: key 'hardware.compute_efficiency': must be greater than 0 and "
                  "at most 1, got 1.5");
  ExpectLoadError(
      Replace(base, "hardware: gb200-nvl72", "hardware: {preset: h100-sxm, granularity: 3MiB}"),
      "t.yaml:8:43: key 'hardware.granularity': must be a power of two");
  ExpectLoadError(Replace(base, "hardware: gb200-nvl72",
                          "hardware: {preset: h100-sxm, fabric_supported: maybe}"),
                  "t.yaml:8:48: key 'hardware.fabric_supported': expected true or false, got "
                  "'maybe'");
  ExpectLoadError(std::string(200, '[') + "1" + std::string(200, ']'),
                  "t.yaml:1:65: lists and maps are nested deeper than 64 levels");
  ExpectLoadError("model: [unclosed\n", "t.yaml:2:1: malformed YAML:");
  ExpectLoadError("   \n# nothing\n", "t.yaml:1:1: the file is empty");
}

// workload.compute and the weights' dtype and shape: bytes per expert follow from the shape
// (bf16: 2 bytes per element; the golden numbers are the products), disagreements are one
// sentence at the key, and `compute: moe` needs the two BF16 matrices of the model's shape.
constexpr const char* kMoeScenario = R"(name: moe
model:
  num_experts: 8
  moe_layers: 2
  hidden_size: 256
  moe_intermediate_size: 128
  top_k: 2
  vocab_size: 1000
  attention: {kind: gqa, num_heads: 4, num_kv_heads: 2, head_dim: 64}
  weights:
    - {name: w13, dtype: bf16, shape: [256, 256]}
    - {name: w2, dtype: bf16, shape: [256, 128]}
dwdp:
  dwdp_size: 2
  num_experts_per_worker: 4
  num_prefetch_experts: 4
hardware: h200-sxm
workload:
  compute: moe
  seed: 7
  tokens_per_rank: 64
)";

BOOST_AUTO_TEST_CASE(weight_shapes_and_the_moe_compute_mode) {
  const absl::StatusOr<Scenario> s = LoadScenarioString(kMoeScenario, "t.yaml");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  BOOST_TEST(s->model.weights[0].expert_bytes == 256u * 256u * 2u);
  BOOST_TEST(s->model.weights[1].expert_bytes == 256u * 128u * 2u);
  BOOST_TEST((s->workload.compute == ComputeKind::kMoe));
  BOOST_TEST(s->workload.seed == 7u);
  // Given both ways, they must agree.
  const std::string both =
      Replace(kMoeScenario, "shape: [256, 128]}", "shape: [256, 128], expert_bytes: 65536}");
  BOOST_TEST(LoadScenarioString(both, "t.yaml").ok());
  ExpectLoadError(
      Replace(kMoeScenario, "shape: [256, 128]}", "shape: [256, 128], expert_bytes: 65537}"),
      "t.yaml:12:",
      "expert_bytes 65537 disagrees with its shape [256, 128] in bf16, "
      "which is 65536 bytes per expert");
  ExpectLoadError(Replace(kMoeScenario, "{name: w2, dtype: bf16, shape", "{name: w2, shape"),
                  "t.yaml:12:", "gives a shape but no dtype");
  ExpectLoadError(Replace(kMoeScenario, "shape: [256, 128]}", "shape: [256, 0]}"), "t.yaml:12:");
  ExpectLoadError(Replace(kMoeScenario, "{name: w2, dtype: bf16, shape: [256, 128]}", "{name: w2}"),
                  "t.yaml:12:", "missing");
  // The stand-in compute takes any weights; moe wants [2·I, H] and [H, I] in bf16.
  ExpectLoadError(Replace(kMoeScenario, "shape: [256, 128]}", "shape: [128, 256]}"),
                  "t.yaml:19:12: key 'workload.compute':",
                  "one of shape [hidden_size, moe_intermediate_size] = [256, 128] (down)");
  ExpectLoadError(
      Replace(kMoeScenario, "dtype: bf16, shape: [256, 256]", "dtype: fp8, shape: [256, 256]"),
      "t.yaml:19:12: key 'workload.compute':", "w13 fp8 [256, 256]");
  BOOST_TEST(
      LoadScenarioString(Replace(Replace(kMoeScenario, "shape: [256, 128]}", "shape: [128, 256]}"),
                                 "compute: moe", "compute: stand-in"),
                         "t.yaml")
          .ok());
  ExpectLoadError(Replace(kMoeScenario, "compute: moe", "compute: gemm"),
                  "t.yaml:19:12:", "stand-in");
  ExpectLoadError(Replace(kMoeScenario, "seed: 7", "seed: -1"), "t.yaml:20:9:");
  // A preset's NVFP4 weights are opaque bytes to the real kernel.
  ExpectLoadError(Replace(kBaseScenario, "tokens_per_rank: 16384", "compute: moe"),
                  "t.yaml:10:12: key 'workload.compute':", "w3_w1_weight (no dtype and shape)");
}

BOOST_AUTO_TEST_CASE(moe_compute_tables_in_profiles) {
  TempDir dir;
  HardwareProfile p = *HardwarePreset("h200-sxm");
  MoeComputeTable t;
  t.hidden = 2048;
  t.intermediate = 768;
  t.num_experts = 128;
  t.top_k = 8;
  t.kernel = "cublas padded";
  t.tokens = {256, 1024, 4096};
  t.alone_ns = {100000.5, 200000, 700000};
  t.under_copy_ns = {110000, 220000, 1.0 / 3.0 * 3e6};
  p.moe_compute = {t};
  const std::string path = dir.Write("p.yaml", HardwareProfileToYaml(p));
  const absl::StatusOr<HardwareProfile> back = LoadHardwareProfileFile(path);
  BOOST_REQUIRE_MESSAGE(back.ok(), back.status().ToString());
  BOOST_REQUIRE(back->moe_compute.size() == 1u);
  const MoeComputeTable& b = back->moe_compute[0];
  BOOST_TEST(b.hidden == 2048);
  BOOST_TEST(b.top_k == 8);
  BOOST_TEST(b.kernel == "cublas padded");
  BOOST_TEST((b.source == Provenance::kMeasured));
  BOOST_TEST(b.tokens == t.tokens);
  BOOST_TEST(b.alone_ns == t.alone_ns);
  BOOST_TEST(b.under_copy_ns == t.under_copy_ns);
  // Bad tables: one sentence at the key.
  const std::string text = HardwareProfileToYaml(p);
  for (const auto& [from, to, expected] :
       {std::tuple<std::string, std::string, std::string>{
            "tokens: [256, 1024, 4096]", "tokens: [256, 256, 4096]", "ascending order"},
        {"tokens: [256, 1024, 4096]", "tokens: [256, 1024]", "expected 2 times"},
        {"alone_ns: [100000.5", "alone_ns: [-1", "must be"},
        {"top_k: 8", "top_k: 800", "larger than experts"}}) {
    BOOST_TEST_CONTEXT(to) {
      const std::string bad_path = dir.Write("bad.yaml", Replace(text, from, to));
      const absl::StatusOr<HardwareProfile> bad = LoadHardwareProfileFile(bad_path);
      BOOST_REQUIRE(!bad.ok());
      BOOST_TEST(absl::StrContains(bad.status().message(), expected), bad.status().message());
      BOOST_TEST(absl::StrContains(bad.status().message(), "bad.yaml:"), bad.status().message());
    }
  }
}

BOOST_AUTO_TEST_CASE(quoted_numbers_aliases_and_shorthands) {
  const std::string yaml = R"(name: shorthand
model: deepseek-v3-nvfp4
dwdp:
  dwdp_size: &d 4
  num_experts_per_worker: "64"
  num_prefetch_experts: 64
  num_buffers: 3
  contention: ascending
hardware: h200-sxm
workload: {tokens_per_rank: 1e4, forwards: *d, layer_compute_ns: 125000.5}
)";
  const absl::StatusOr<Scenario> s = LoadScenarioString(yaml, "short.yaml");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  BOOST_TEST(s->model.preset == "deepseek-v3-nvfp4");
  BOOST_TEST(s->dwdp.num_experts_per_worker == 64);
  BOOST_TEST(s->dwdp.num_buffers == 3);
  BOOST_TEST(ContentionModeName(s->dwdp.contention.mode) == std::string("ascending"));
  BOOST_TEST(s->hardware.name == "h200-sxm");
  BOOST_TEST(s->workload.tokens_per_rank == 10000);
  BOOST_TEST(s->workload.forwards == 4);
  BOOST_TEST(s->workload.layer_compute_ns.value_or(0) == 125000.5);
}

BOOST_AUTO_TEST_CASE(no_input_crashes_the_loader) {
  // Every prefix of a real scenario and a set of byte mutations either loads or fails with
  // a one-line message that starts with the file name.
  const std::string text = kBaseScenario + std::string("  forwards: 2\n");
  std::vector<std::string> inputs;
  for (size_t n = 0; n <= text.size(); ++n) inputs.push_back(text.substr(0, n));
  const std::string noise = "{}[]:-,&*!|>'\"%@`#?\t\n 0";
  for (size_t i = 0; i < text.size(); i += 3) {
    std::string mutated = text;
    mutated[i] = noise[i % noise.size()];
    inputs.push_back(mutated);
  }
  int loaded = 0;
  for (const std::string& input : inputs) {
    absl::StatusOr<Scenario> s;
    BOOST_REQUIRE_NO_THROW(s = LoadScenarioString(input, "fuzz.yaml"));
    if (s.ok()) {
      ++loaded;
      continue;
    }
    const std::string message(s.status().message());
    BOOST_TEST_INFO("input:\n" << input);
    BOOST_TEST(absl::StartsWith(message, "fuzz.yaml:"), message);
    BOOST_TEST(!absl::StrContains(message, "\n"), message);
  }
  BOOST_TEST(loaded > 0);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(files)

BOOST_AUTO_TEST_CASE(missing_file_and_directory) {
  const std::string missing = SourcePath("scenarios/no-such-scenario.yaml");
  const absl::StatusOr<Scenario> s = LoadScenarioFile(missing);
  BOOST_TEST(absl::IsNotFound(s.status()));
  BOOST_TEST(absl::StartsWith(s.status().message(), missing + ": no such scenario file"));

  const std::string dir = SourcePath("scenarios");
  const absl::StatusOr<Scenario> d = LoadScenarioFile(dir);
  BOOST_TEST(absl::IsFailedPrecondition(d.status()));
  BOOST_TEST(s.status().message() != d.status().message());
  BOOST_TEST(absl::StartsWith(d.status().message(), dir + ": is a directory"));

  BOOST_TEST(absl::IsNotFound(LoadHardwareProfileFile(missing).status()));
  BOOST_TEST(absl::IsFailedPrecondition(LoadHardwareProfileFile(dir).status()));
  BOOST_TEST(absl::IsFailedPrecondition(LoadScenarioFile("/dev/null").status()));
}

BOOST_AUTO_TEST_CASE(every_scenario_file_loads) {
  const std::vector<fs::path> files = YamlFilesIn("scenarios");
  BOOST_TEST(files.size() >= 25u);
  // Names like dsv3-nvfp4-gb200-d3-86x85.yaml promise d, size and stride.
  const std::regex partition_in_name(R"(-d(\d+)-(\d+)x(\d+))");
  const std::regex hosts_in_name(R"(h100x(\d+)-(\d+)x(\d+))");
  for (const fs::path& file : files) {
    BOOST_TEST_CONTEXT(file.filename().string()) {
      const absl::StatusOr<Scenario> s = LoadScenarioFile(file.string());
      BOOST_REQUIRE_MESSAGE(s.ok(), s.status().ToString());
      BOOST_TEST(s->source_file == file.string());
      BOOST_TEST(!s->name.empty());
      if (file.stem() != "default") BOOST_TEST(s->name == file.stem().string());
      const DwdpConfig& c = s->dwdp;
      // Every scenario here is meant to be valid: 0 < stride <= size, exact coverage.
      BOOST_TEST(c.num_prefetch_experts > 0);
      BOOST_TEST(c.num_prefetch_experts <= c.num_experts_per_worker);
      BOOST_TEST((c.dwdp_size - 1) * c.num_prefetch_experts + c.num_experts_per_worker ==
                 s->model.num_experts);
      std::smatch match;
      const std::string stem = file.stem().string();
      if (std::regex_search(stem, match, partition_in_name) ||
          std::regex_search(stem, match, hosts_in_name)) {
        BOOST_TEST(c.dwdp_size == std::stoll(match[1]));
        BOOST_TEST(c.num_experts_per_worker == std::stoll(match[2]));
        BOOST_TEST(c.num_prefetch_experts == std::stoll(match[3]));
      }
      if (absl::StartsWith(stem, "dsv3-nvfp4") || stem == "default") {
        BOOST_TEST(s->model.expert_bytes() == 24772608u);
        BOOST_TEST(s->hardware.name == "gb200-nvl72");
      }
      if (absl::StrContains(stem, "h100x")) {
        BOOST_TEST(s->hardware.name == "h100-sxm");
        // Functional variants are short; the -full variants keep the preset's depth.
        if (absl::EndsWith(stem, "-full")) {
          BOOST_TEST(s->model.moe_layers == ModelPreset(s->model.preset)->moe_layers);
        } else {
          BOOST_TEST(s->model.moe_layers.size() <= 8u);
        }
      }
      if (absl::StartsWith(stem, "sim-small")) {
        BOOST_TEST(s->model.expert_bytes() == 6291473u + 1048579u + 12289u);
        BOOST_TEST(s->model.weights[0].expert_bytes % (2 * kMiB) == 17u);
      }
    }
  }
  const Scenario d = *LoadScenarioFile(SourcePath("scenarios/default.yaml"));
  BOOST_TEST(d.dwdp.dwdp_size == 4);
  BOOST_TEST(d.workload.tokens_per_rank == 16384);
  BOOST_TEST(d.model.preset == "deepseek-v3-nvfp4");
}

BOOST_AUTO_TEST_CASE(scenario_with_profile_file_and_inline_hardware) {
  const Scenario p = *LoadScenarioFile(SourcePath("scenarios/sim-small-profile-d4.yaml"));
  BOOST_TEST(p.hardware.name == "h100-sxm-example");
  BOOST_TEST(absl::EndsWith(p.hardware.source_file, "scenarios/profiles/h100-sxm-example.yaml"));
  BOOST_TEST(p.hardware.peer_copy_bw.value == 398e9);

  const Scenario i = *LoadScenarioFile(SourcePath("scenarios/sim-small-gb200-inline-d4.yaml"));
  BOOST_TEST(i.hardware.name == "gb200-nvl72-calibrated");
  BOOST_TEST(i.hardware.peer_copy_bw.value == 7.2e11);
  BOOST_TEST(i.hardware.copy_latency_ns.value == 3500);
  BOOST_TEST(i.hardware.nvlink_domain.value == 72);  // from the preset

  const Scenario g = *LoadScenarioFile(SourcePath("scenarios/sim-small-d2-2groups.yaml"));
  BOOST_TEST(g.dwdp.num_groups == 2);
  BOOST_TEST(g.model.moe_layers == Layers(1, 4));
  BOOST_TEST(g.model.num_layers == 6);
  BOOST_TEST(g.dwdp.loaded_chunk.value_or(0) == 8);
}

BOOST_AUTO_TEST_CASE(invalid_scenarios_load_and_name_their_check) {
  const std::set<std::string> check_ids = {
      "dwdp_size",    "size_positive",  "stride_positive", "gap",        "coverage",
      "tail_padding", "chunk_mismatch", "num_groups",      "world_size", "group_id"};
  std::set<std::string> seen;
  const std::regex expect(R"(# expect: ([a-z_]+)( \(with --world-size \d+\))?)");
  for (const fs::path& file : YamlFilesIn("scenarios/invalid")) {
    BOOST_TEST_CONTEXT(file.filename().string()) {
      std::smatch match;
      const std::string first_line = FirstLine(file);
      BOOST_REQUIRE(std::regex_match(first_line, match, expect));
      const std::string check = match[1];
      BOOST_TEST(check_ids.count(check) == 1u);
      // World-size checks need a world size on the command line, and say which.
      BOOST_TEST(match[2].matched == (check == "world_size" || check == "group_id"));
      seen.insert(check);
      const absl::StatusOr<Scenario> s = LoadScenarioFile(file.string());
      BOOST_TEST(s.ok(), s.status().ToString());
    }
  }
  BOOST_TEST(seen == check_ids);
}

BOOST_AUTO_TEST_CASE(malformed_scenarios_fail_with_their_documented_message) {
  const std::vector<fs::path> files = YamlFilesIn("scenarios/malformed");
  BOOST_TEST(files.size() >= 6u);
  const std::string kExpect = "# expect-error: ";
  for (const fs::path& file : files) {
    BOOST_TEST_CONTEXT(file.filename().string()) {
      const std::string first_line = FirstLine(file);
      BOOST_REQUIRE(absl::StartsWith(first_line, kExpect));
      const std::string expected = first_line.substr(kExpect.size());
      // The documented text starts with the file name and position.
      BOOST_TEST(absl::StartsWith(expected, file.filename().string() + ":"));
      const absl::StatusOr<Scenario> s = LoadScenarioFile(file.string());
      BOOST_REQUIRE(!s.ok());
      const std::string message(s.status().message());
      BOOST_TEST_INFO("message: " << message);
      BOOST_TEST(absl::StrContains(message, expected));
      BOOST_TEST(absl::StartsWith(message, file.string() + ":"));
      BOOST_TEST(!absl::StrContains(message, "\n"));
      if (file.stem() == "missing-profile-file") {
        BOOST_TEST(absl::IsNotFound(s.status()));
      } else {
        BOOST_TEST(absl::IsInvalidArgument(s.status()));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(hardware_profile_round_trip) {
  TempDir dir;
  std::vector<HardwareProfile> profiles;
  for (const std::string& name : HardwarePresetNames()) profiles.push_back(*HardwarePreset(name));
  // Values that have no short decimal form must survive too.
  HardwareProfile odd = *HardwarePreset("h100-sxm");
  odd.name = "odd: name # with yaml characters";
  odd.measured_on = "true";
  odd.peer_copy_bw = {1.0 / 3.0 * 1e12, Provenance::kMeasured};
  odd.compute_efficiency = {0.1 + 0.2, Provenance::kSpec};
  odd.hbm_bytes = {static_cast<double>((uint64_t{1} << 40) + 1), Provenance::kMeasured};
  odd.fabric_supported = false;
  odd.imex_permitted = true;
  profiles.push_back(odd);

  for (const HardwareProfile& original : profiles) {
    BOOST_TEST_CONTEXT(original.name) {
      const std::string path = dir.Write("profile.yaml", HardwareProfileToYaml(original));
      const absl::StatusOr<HardwareProfile> loaded = LoadHardwareProfileFile(path);
      BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.status().ToString());
      BOOST_TEST(loaded->source_file == path);
      BOOST_TEST(loaded->name == original.name);
      BOOST_TEST(loaded->gpu_name == original.gpu_name);
      BOOST_TEST(loaded->measured_on == original.measured_on);
      BOOST_TEST(loaded->fabric_supported == original.fabric_supported);
      BOOST_TEST(loaded->imex_permitted == original.imex_permitted);
      testing::ExpectSameQuantities(original, *loaded);
      // ResolveHardware takes the same path.
      const absl::StatusOr<HardwareProfile> resolved = ResolveHardware(path);
      BOOST_REQUIRE(resolved.ok());
      BOOST_TEST(resolved->peer_copy_bw.value == original.peer_copy_bw.value);
    }
  }
  BOOST_TEST(ResolveHardware("h100-sxm")->name == "h100-sxm");
  const absl::Status unknown = ResolveHardware("gb300").status();
  BOOST_TEST(absl::IsNotFound(unknown));
  BOOST_TEST(absl::StrContains(unknown.message(), "gb200-nvl72"));
}

// A full map written before the egress/fabric terms existed still loads, as the older model;
// given, the terms are read with their provenance and checked like every number.
BOOST_AUTO_TEST_CASE(full_maps_may_leave_out_the_later_contention_terms) {
  const absl::StatusOr<HardwareProfile> measured = LoadHardwareProfileFile(
      SourcePath("scenarios/profiles/h100-sxm-x4-measured-2026-11-28.yaml"));
  BOOST_REQUIRE_MESSAGE(measured.ok(), measured.status().ToString());
  TempDir dir;
  YAML::Node node = YAML::Load(HardwareProfileToYaml(*measured));
  node.remove("egress_bw");
  node.remove("fabric_bw");
  node.remove("copy_latency_on_link");
  const absl::StatusOr<HardwareProfile> older =
      LoadHardwareProfileFile(dir.Write("older.yaml", YAML::Dump(node)));
  BOOST_REQUIRE_MESSAGE(older.ok(), older.status().ToString());
  hardware_presets::ExpectQuantity(older->egress_bw, 0, Provenance::kAssumed,
                                   "egress: the pair rate");
  hardware_presets::ExpectQuantity(older->fabric_bw, 0, Provenance::kAssumed, "fabric: no limit");
  hardware_presets::ExpectQuantity(older->copy_latency_on_link, 1.0, Provenance::kAssumed,
                                   "all on the path");
  node["egress_bw"] = YAML::Load("{value: 5.32e11, source: measured}");
  node["fabric_bw"] = YAML::Load("{value: 2.66e11, source: measured}");
  node["copy_latency_on_link"] = YAML::Load("0.5");
  const absl::StatusOr<HardwareProfile> newer =
      LoadHardwareProfileFile(dir.Write("newer.yaml", YAML::Dump(node)));
  BOOST_REQUIRE_MESSAGE(newer.ok(), newer.status().ToString());
  hardware_presets::ExpectQuantity(newer->egress_bw, 532e9, Provenance::kMeasured, "egress");
  hardware_presets::ExpectQuantity(newer->fabric_bw, 266e9, Provenance::kMeasured, "fabric");
  hardware_presets::ExpectQuantity(newer->copy_latency_on_link, 0.5, Provenance::kAssumed,
                                   "a plain number");
  node["copy_latency_on_link"] = YAML::Load("1.5");
  const absl::Status above =
      LoadHardwareProfileFile(dir.Write("above.yaml", YAML::Dump(node))).status();
  BOOST_TEST(absl::StrContains(above.message(), "key 'copy_latency_on_link'"), above.message());
}

BOOST_AUTO_TEST_CASE(profile_files_in_the_repository_load) {
  for (const fs::path& file : YamlFilesIn("scenarios/profiles")) {
    BOOST_TEST_CONTEXT(file.filename().string()) {
      const absl::StatusOr<HardwareProfile> hw = LoadHardwareProfileFile(file.string());
      BOOST_TEST(hw.ok(), hw.status().ToString());
    }
  }
  TempDir dir;
  const std::string bad = dir.Write("bad.yaml", "preset: h100-sxm\nhbm_bw: fast\n");
  const absl::Status status = LoadHardwareProfileFile(bad).status();
  BOOST_TEST(absl::IsInvalidArgument(status));
  BOOST_TEST(absl::StartsWith(status.message(), bad + ":2:9: key 'hbm_bw': expected a number"),
             status.message());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace dwdp
