// LoadScenarioString (core/config/loader.h) on arbitrary bytes.
//
// Properties:
// * it never crashes, hangs, leaks or throws;
// * a rejection is one line that starts with the display name ("fuzz.yaml:LINE:COL: ..." where
//   a position applies), as every `dwdp` command prints it as the first sentence on stderr;
// * an accepted scenario holds every value inside the limits loader.cc enforces (the limits
//   that keep the core's arithmetic far from overflow), and every text in it can be written as
//   JSON (the commands print names with nlohmann::json, which throws on invalid UTF-8);
// * loader.cc promises that its limits keep partition and layout arithmetic from overflowing:
//   when the loaded partition validates, ComputeGroupLayout succeeds.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/config/loader.h"
#include "core/config/scenario.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "core/util/bytes.h"
#include "fuzz_check.h"

namespace dwdp {
namespace {

constexpr absl::string_view kDisplayName = "fuzz.yaml";

// The loader's limits (loader.cc), restated here so the harness checks them rather than
// trusting the code under test.
constexpr int64_t kMaxRanks = 65536;
constexpr int64_t kMaxExperts = 1000000;
constexpr int64_t kMaxLayers = 65536;
constexpr int64_t kMaxDimension = int64_t{1} << 20;
constexpr int64_t kMaxTokens = int64_t{1} << 30;
constexpr uint64_t kMaxExpertBytes = uint64_t{1} << 40;
constexpr unsigned __int128 kMaxTotalBytes = static_cast<unsigned __int128>(1) << 62;
// Layouts of bigger groups are correct but slow enough to stall the search; the layout
// target covers the arithmetic on its own.
constexpr int64_t kMaxWeightLayoutsChecked = 4096;

bool InRange(int64_t value, int64_t low, int64_t high) { return value >= low && value <= high; }

void CheckJsonText(const std::string& text, absl::string_view what) {
  bool dumps = true;
  try {
    (void)nlohmann::json(text).dump();
  } catch (const nlohmann::json::exception&) {
    dumps = false;
  }
  DWDP_FUZZ_CHECK(dumps, absl::StrCat(what, " is not valid UTF-8, so JSON output of it throws"));
}

void CheckModel(const ModelSpec& model) {
  DWDP_FUZZ_CHECK(InRange(model.num_experts, 1, kMaxExperts),
                  absl::StrCat("num_experts ", model.num_experts));
  DWDP_FUZZ_CHECK(InRange(model.num_layers, 1, kMaxLayers),
                  absl::StrCat("num_layers ", model.num_layers));
  DWDP_FUZZ_CHECK(!model.moe_layers.empty(), "a model has MoE layers");
  DWDP_FUZZ_CHECK(model.moe_layers.front() >= 0,
                  absl::StrCat("first MoE layer ", model.moe_layers.front()));
  for (size_t i = 1; i < model.moe_layers.size(); ++i) {
    DWDP_FUZZ_CHECK(model.moe_layers[i - 1] < model.moe_layers[i],
                    absl::StrCat("MoE layers are not strictly ascending at position ", i));
  }
  DWDP_FUZZ_CHECK(model.moe_layers.back() < model.num_layers,
                  absl::StrCat("MoE layer ", model.moe_layers.back(), " of a ", model.num_layers,
                               "-layer model"));
  DWDP_FUZZ_CHECK(InRange(model.top_k, 0, model.num_experts),
                  absl::StrCat("top_k ", model.top_k, " of ", model.num_experts, " experts"));
  for (int64_t dimension :
       {model.hidden_size, model.moe_intermediate_size, model.dense_intermediate_size,
        model.attention.num_heads, model.attention.num_kv_heads, model.attention.head_dim,
        model.attention.q_lora_rank, model.attention.kv_lora_rank, model.attention.qk_nope_head_dim,
        model.attention.qk_rope_head_dim, model.attention.v_head_dim}) {
    DWDP_FUZZ_CHECK(InRange(dimension, 0, kMaxDimension), absl::StrCat("dimension ", dimension));
  }
  DWDP_FUZZ_CHECK(InRange(model.num_shared_experts, 0, 1024),
                  absl::StrCat("num_shared_experts ", model.num_shared_experts));
  DWDP_FUZZ_CHECK(InRange(model.vocab_size, 0, int64_t{1} << 24),
                  absl::StrCat("vocab_size ", model.vocab_size));

  DWDP_FUZZ_CHECK(!model.weights.empty(), "a model has DWDP-managed weights");
  std::set<std::string> names;
  unsigned __int128 expert_bytes = 0;
  for (const WeightSpec& weight : model.weights) {
    DWDP_FUZZ_CHECK(!weight.name.empty(), "a weight has a name");
    DWDP_FUZZ_CHECK(names.insert(weight.name).second,
                    absl::StrCat("weight '", weight.name, "' is listed twice"));
    DWDP_FUZZ_CHECK(
        weight.expert_bytes >= 1 && weight.expert_bytes <= kMaxExpertBytes,
        absl::StrCat("weight '", weight.name, "' has ", weight.expert_bytes, " bytes per expert"));
    CheckJsonText(weight.name, "a weight name");
    expert_bytes += weight.expert_bytes;
  }
  DWDP_FUZZ_CHECK(expert_bytes == model.expert_bytes(),
                  absl::StrCat("expert_bytes() ", model.expert_bytes(), " is not the sum"));
  const unsigned __int128 total =
      expert_bytes * static_cast<uint64_t>(model.num_experts) * model.moe_layers.size();
  DWDP_FUZZ_CHECK(total <= kMaxTotalBytes,
                  absl::StrCat(model.num_experts, " experts × ", model.expert_bytes(), " bytes × ",
                               model.moe_layers.size(), " layers passes 2^62"));
  DWDP_FUZZ_CHECK(!model.display_name.empty(), "a model has a display name");
  CheckJsonText(model.display_name, "the model's display name");
  CheckJsonText(model.preset, "the model preset");
}

void CheckDwdp(const DwdpConfig& dwdp, const HardwareProfile& hardware) {
  DWDP_FUZZ_CHECK(InRange(dwdp.dwdp_size, -kMaxRanks, kMaxRanks),
                  absl::StrCat("dwdp_size ", dwdp.dwdp_size));
  DWDP_FUZZ_CHECK(InRange(dwdp.num_groups, -kMaxRanks, kMaxRanks),
                  absl::StrCat("num_groups ", dwdp.num_groups));
  if (dwdp.dwdp_size > 0 && dwdp.num_groups > 0) {
    DWDP_FUZZ_CHECK(dwdp.dwdp_size * dwdp.num_groups <= kMaxRanks,
                    absl::StrCat(dwdp.dwdp_size, " × ", dwdp.num_groups, " ranks"));
  }
  DWDP_FUZZ_CHECK(InRange(dwdp.num_experts_per_worker, -kMaxExperts, kMaxExperts),
                  absl::StrCat("num_experts_per_worker ", dwdp.num_experts_per_worker));
  DWDP_FUZZ_CHECK(InRange(dwdp.num_prefetch_experts, -kMaxExperts, kMaxExperts),
                  absl::StrCat("num_prefetch_experts ", dwdp.num_prefetch_experts));
  if (dwdp.loaded_chunk) {
    DWDP_FUZZ_CHECK(InRange(*dwdp.loaded_chunk, -kMaxExperts, kMaxExperts),
                    absl::StrCat("loaded_chunk ", *dwdp.loaded_chunk));
  }
  DWDP_FUZZ_CHECK(InRange(dwdp.num_buffers, 2, 64), absl::StrCat("num_buffers ", dwdp.num_buffers));
  DWDP_FUZZ_CHECK(IsPowerOfTwo(dwdp.pool_page_bytes) && dwdp.pool_page_bytes >= 4 * kKiB &&
                      dwdp.pool_page_bytes <= 64 * kGiB,
                  absl::StrCat("pool_page_bytes ", dwdp.pool_page_bytes));
  // DWDP_SPEC §2: the pool page is a multiple of the granularity, given or defaulted.
  const auto granularity = static_cast<uint64_t>(hardware.granularity.value);
  DWDP_FUZZ_CHECK(dwdp.pool_page_bytes % granularity == 0,
                  absl::StrCat("pool_page_bytes ", dwdp.pool_page_bytes,
                               " is not a multiple of the granularity ", granularity));
  DWDP_FUZZ_CHECK(
      dwdp.contention.slice_bytes >= 4 * kKiB && dwdp.contention.slice_bytes <= 64 * kGiB,
      absl::StrCat("slice_bytes ", dwdp.contention.slice_bytes));
  const auto mode = dwdp.contention.mode;
  DWDP_FUZZ_CHECK(mode == ContentionMode::kRotate || mode == ContentionMode::kAscending ||
                      mode == ContentionMode::kRoundRobin || mode == ContentionMode::kStaggered,
                  absl::StrCat("contention mode ", static_cast<int>(mode)));
}

// One hardware number: finite, within [low, high] (or (low, high]).
void CheckQuantity(const Quantity& quantity, absl::string_view key, double low, double high,
                   bool low_exclusive = false) {
  const double v = quantity.value;
  const bool above_low = low_exclusive ? v > low : v >= low;
  DWDP_FUZZ_CHECK(std::isfinite(v) && above_low && v <= high,
                  absl::StrCat("hardware ", key, " = ", v));
  const Provenance p = quantity.source;
  DWDP_FUZZ_CHECK(p == Provenance::kSpec || p == Provenance::kMeasured || p == Provenance::kAssumed,
                  absl::StrCat("hardware ", key, " has provenance ", static_cast<int>(p)));
}

void CheckWholeNumber(const Quantity& quantity, absl::string_view key) {
  DWDP_FUZZ_CHECK(quantity.value == std::floor(quantity.value),
                  absl::StrCat("hardware ", key, " = ", quantity.value, " is not whole"));
}

void CheckHardware(const HardwareProfile& hw) {
  constexpr double kMaxBandwidth = 1e15;
  constexpr double kMaxFlops = 1e18;
  constexpr double kMaxNanos = 1e12;
  CheckQuantity(hw.granularity, "granularity", 4096, 1 << 30);
  const auto granularity = static_cast<uint64_t>(hw.granularity.value);
  DWDP_FUZZ_CHECK(IsPowerOfTwo(granularity) && hw.granularity.value == granularity,
                  absl::StrCat("granularity ", hw.granularity.value, " is not a power of two"));
  CheckQuantity(hw.nvlink_bw, "nvlink_bw", 0, kMaxBandwidth, true);
  CheckQuantity(hw.peer_copy_bw, "peer_copy_bw", 0, kMaxBandwidth, true);
  CheckQuantity(hw.copy_latency_ns, "copy_latency_ns", 0, kMaxNanos);
  CheckQuantity(hw.local_copy_bw, "local_copy_bw", 0, kMaxBandwidth, true);
  CheckQuantity(hw.hbm_bw, "hbm_bw", 0, kMaxBandwidth, true);
  CheckQuantity(hw.hbm_bytes, "hbm_bytes", 1 << 20, static_cast<double>(uint64_t{1} << 50));
  CheckWholeNumber(hw.hbm_bytes, "hbm_bytes");
  CheckQuantity(hw.flops_fp4, "flops_fp4", 0, kMaxFlops, true);
  CheckQuantity(hw.flops_fp8, "flops_fp8", 0, kMaxFlops, true);
  CheckQuantity(hw.flops_bf16, "flops_bf16", 0, kMaxFlops, true);
  CheckQuantity(hw.compute_efficiency, "compute_efficiency", 0, 1, true);
  CheckQuantity(hw.memory_efficiency, "memory_efficiency", 0, 1, true);
  CheckQuantity(hw.kernel_overhead_ns, "kernel_overhead_ns", 0, kMaxNanos);
  CheckQuantity(hw.compute_slowdown, "compute_slowdown", 0, 10);
  CheckQuantity(hw.concurrent_pull_efficiency, "concurrent_pull_efficiency", 0, 1, true);
  CheckQuantity(hw.host_issue_ns, "host_issue_ns", 0, kMaxNanos);
  CheckQuantity(hw.event_ns, "event_ns", 0, kMaxNanos);
  CheckQuantity(hw.map_ns, "map_ns", 0, kMaxNanos);
  CheckQuantity(hw.nvlink_domain, "nvlink_domain", 1, kMaxRanks);
  CheckWholeNumber(hw.nvlink_domain, "nvlink_domain");
  CheckQuantity(hw.gpus_per_node, "gpus_per_node", 1, 1024);
  CheckWholeNumber(hw.gpus_per_node, "gpus_per_node");
  CheckQuantity(hw.max_mappings, "max_mappings", 1, 1e9);
  CheckWholeNumber(hw.max_mappings, "max_mappings");
  CheckQuantity(hw.max_fabric_mappings, "max_fabric_mappings", 1, 1e9);
  CheckWholeNumber(hw.max_fabric_mappings, "max_fabric_mappings");
  DWDP_FUZZ_CHECK(!hw.name.empty(), "a hardware profile has a name");
  CheckJsonText(hw.name, "the hardware name");
  CheckJsonText(hw.gpu_name, "the GPU name");
  CheckJsonText(hw.measured_on, "measured_on");
  CheckJsonText(hw.source_file, "the profile path");
}

void CheckWorkload(const Workload& workload) {
  DWDP_FUZZ_CHECK(InRange(workload.tokens_per_rank, 0, kMaxTokens),
                  absl::StrCat("tokens_per_rank ", workload.tokens_per_rank));
  DWDP_FUZZ_CHECK(InRange(workload.sequence_length, 0, kMaxTokens),
                  absl::StrCat("sequence_length ", workload.sequence_length));
  DWDP_FUZZ_CHECK(InRange(workload.forwards, 1, 1000000),
                  absl::StrCat("forwards ", workload.forwards));
  DWDP_FUZZ_CHECK(
      std::isfinite(workload.tokens_cv) && workload.tokens_cv >= 0 && workload.tokens_cv <= 10,
      absl::StrCat("tokens_cv ", workload.tokens_cv));
  if (workload.layer_compute_ns) {
    const double ns = *workload.layer_compute_ns;
    DWDP_FUZZ_CHECK(std::isfinite(ns) && ns >= 0 && ns <= 1e12,
                    absl::StrCat("layer_compute_ns ", ns));
  }
}

// The partition and layout computed from a loaded scenario.
void CheckLayoutOfScenario(const Scenario& scenario) {
  const PartitionInput input = PartitionInput::FromScenario(scenario);
  if (ValidatePartition(input)) return;
  const int64_t weight_layouts =
      scenario.dwdp.dwdp_size * static_cast<int64_t>(scenario.model.weights.size());
  if (weight_layouts > kMaxWeightLayoutsChecked) return;
  const absl::StatusOr<GroupLayout> layout = ComputeGroupLayout(scenario);
  DWDP_FUZZ_CHECK(layout.ok(), absl::StrCat("a loaded scenario whose partition validates has no "
                                            "layout: ",
                                            layout.status().ToString()));
}

void CheckLoad(absl::string_view text) {
  const absl::StatusOr<Scenario> scenario = LoadScenarioString(text, kDisplayName);
  if (!scenario.ok()) {
    const absl::string_view message = scenario.status().message();
    DWDP_FUZZ_CHECK(absl::StartsWith(message, absl::StrCat(kDisplayName, ":")),
                    absl::StrCat("the message does not start with the file name: ", message));
    DWDP_FUZZ_CHECK(!absl::StrContains(message, "\n"),
                    absl::StrCat("the message is more than one line: ", message));
    return;
  }
  DWDP_FUZZ_CHECK(!scenario->name.empty(), "a scenario has a name");
  CheckJsonText(scenario->name, "the scenario name");
  CheckModel(scenario->model);
  CheckHardware(scenario->hardware);
  CheckDwdp(scenario->dwdp, scenario->hardware);
  CheckWorkload(scenario->workload);
  CheckLayoutOfScenario(*scenario);
}

}  // namespace
}  // namespace dwdp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dwdp::CheckLoad(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
