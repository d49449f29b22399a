// Writes the seed corpus of fuzz_sim: one small scenario of each kind the simulator runs
// (uniform, Mode B and redundant partitions, every copy schedule, FABRIC and POSIX handles,
// NVFP4 and odd byte counts, several buffers and groups) and a few invalid ones, encoded as
// the bytes the target decodes.
//   make_sim_seeds DIR            writes the seeds into DIR
//   make_sim_seeds --print FILE   prints the case FILE decodes to (to read a crash input)
//
// Every seed is decoded again here and must re-encode to the same bytes, so a seed file always
// means the case named by its file.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "core/partition/partition.h"
#include "seed_writer.h"
#include "sim_case.h"

namespace dwdp::fuzz {
namespace {

int HardwareIndex(const std::string& name) {
  for (int i = 0; i < kNumSimHardware; ++i) {
    if (name == kSimHardware[i]) return i;
  }
  std::fprintf(stderr, "no simulated hardware '%s'\n", name.c_str());
  std::exit(1);
}

// A valid partition, given as the recipe (size, stride) of d ranks over N experts.
SimCase FromRecipe(int64_t d, int64_t n, int64_t size, int64_t stride,
                   std::vector<uint64_t> expert_bytes) {
  SimCase c;
  c.hardware = HardwareIndex("h100-sxm");
  c.dwdp_size = d;
  c.partition = static_cast<int>(SimPartitionKind::kRecipe);
  c.num_experts = n;
  const std::vector<::dwdp::Recipe> recipes = Recipes(d, n);
  c.recipe = -1;
  for (size_t i = 0; i < recipes.size(); ++i) {
    if (recipes[i] == ::dwdp::Recipe{size, stride}) c.recipe = static_cast<int64_t>(i);
  }
  if (c.recipe < 0) {
    std::fprintf(stderr, "%lld/%lld is not a recipe of d=%lld N=%lld\n",
                 static_cast<long long>(size), static_cast<long long>(stride),
                 static_cast<long long>(d), static_cast<long long>(n));
    std::exit(1);
  }
  c.weights = static_cast<int>(SimWeightsKind::kBytes);
  c.expert_bytes = std::move(expert_bytes);
  c.num_moe_layers = 3;
  return c;
}

// Partition numbers as given (validation decides).
SimCase Raw(int64_t d, int64_t n, int64_t size, int64_t stride) {
  SimCase c = FromRecipe(2, 2, 1, 1, {1000});
  c.partition = static_cast<int>(SimPartitionKind::kRaw);
  c.dwdp_size = d;
  c.num_experts = n;
  c.recipe = 0;
  c.size = size;
  c.stride = stride;
  return c;
}

SimCase WithSchedule(SimCase c, ContentionMode mode, uint64_t slice_bytes = 4 * kKiB) {
  c.contention_given = true;
  c.contention_mode = static_cast<int>(mode);
  c.slice_bytes = slice_bytes;
  return c;
}

std::vector<std::pair<std::string, SimCase>> Seeds() {
  // G = 4 KiB unless said.
  constexpr uint64_t g = 4 * kKiB;
  std::vector<std::pair<std::string, SimCase>> seeds;
  // Uniform: rank boundaries inside pages (odd bytes), the default schedule.
  seeds.emplace_back("d4-4x4-uniform-odd-bytes", FromRecipe(4, 16, 4, 4, {g + 1000, 1500, 13}));
  {
    // Mode B like scenarios/sim-small-d3-6x5-modeb.yaml, at this granularity.
    SimCase c = FromRecipe(3, 16, 6, 5, {2 * g + 17, g + 3, 3 * kKiB + 1});
    c.forwards = 2;
    c.compute = static_cast<int>(SimCompute::kShort);
    c.keep_timeline = true;
    seeds.emplace_back("d3-6x5-modeb-2-forwards-timeline", c);
  }
  {
    // The balanced owner policy: every puller takes `stride` experts from each peer, edge bytes
    // from the storer nearest it.
    SimCase c = FromRecipe(4, 16, 7, 3, {g + 11, 2 * g + 5});
    c.owner_policy = static_cast<int>(OwnerPolicy::kBalanced);
    c.compute = static_cast<int>(SimCompute::kShort);
    seeds.emplace_back("d4-7x3-redundant-owner-balanced", c);
    c = FromRecipe(5, 16, 8, 2, {3 * kKiB + 7});
    c.owner_policy = static_cast<int>(OwnerPolicy::kBalanced);
    c.forwards = 2;
    c.num_buffers = 3;
    seeds.emplace_back("d5-8x2-owner-balanced-3buf", c);
  }
  seeds.emplace_back(
      "d4-7x3-redundant-ascending",
      WithSchedule(FromRecipe(4, 16, 7, 3, {g, 2 * g + 5}), ContentionMode::kAscending));
  {
    // Round robin over the four NVFP4 tensors of H = 64, I = 32, three buffers.
    SimCase c = WithSchedule(FromRecipe(5, 15, 3, 3, {}), ContentionMode::kRoundRobin, 4 * kKiB);
    c.weights = static_cast<int>(SimWeightsKind::kNvfp4);
    c.hidden_units = 4;
    c.intermediate_units = 2;
    c.num_buffers = 3;
    seeds.emplace_back("d5-3x3-nvfp4-round-robin-3buf", c);
  }
  {
    // Round robin pieces that do not divide the runs, 8 KiB granules, one page per granule.
    SimCase c = WithSchedule(FromRecipe(3, 11, 5, 3, {3 * 8 * kKiB - 7, 777}),
                             ContentionMode::kRoundRobin, 5000);
    c.granularity_shift = 1;
    c.page_shift = 0;
    seeds.emplace_back("d3-5x3-8k-granule-rr-5000", c);
  }
  {
    // Streams that hold 3 entries, one timed copy: the host blocks before almost every copy
    // and every launch behind it waits, three buffers deep and over two forwards.
    SimCase c = WithSchedule(FromRecipe(3, 9, 3, 3, {g, 5000}), ContentionMode::kRoundRobin, 4096);
    c.num_buffers = 3;
    c.forwards = 2;
    c.stream_queue_entries = 3;
    c.share_spread = 2;
    seeds.emplace_back("d3-rr-stream-queue-3-share-spread", c);
  }
  {
    // Mode B with a queue of 8 entries: waits, records and copies fill it in turn.
    SimCase c = FromRecipe(4, 14, 5, 3, {2 * g + 1});
    c.compute = static_cast<int>(SimCompute::kLong);
    c.stream_queue_entries = 8;
    seeds.emplace_back("d4-modeb-stream-queue-8", c);
  }
  {
    // GB200: FABRIC handles, rank 4 on the second 4-GPU node.
    SimCase c = FromRecipe(5, 10, 2, 2, {3000, 2 * g});
    c.hardware = HardwareIndex("gb200-nvl72");
    c.compute = static_cast<int>(SimCompute::kLong);
    seeds.emplace_back("gb200-d5-2x2-fabric", c);
  }
  {
    SimCase c = FromRecipe(2, 8, 4, 4, {g});
    c.num_groups = 2;
    c.hardware = HardwareIndex("b200-hgx");
    seeds.emplace_back("b200-d2-two-groups", c);
  }
  {
    // One expert byte: the whole tensor inside one granule, every handle all edges.
    SimCase c = FromRecipe(2, 16, 9, 7, {1, 3});
    c.page_shift = 3;
    seeds.emplace_back("d2-9x7-one-byte-experts", c);
  }
  {
    SimCase c = FromRecipe(4, 12, 3, 3, {g + 1});
    c.num_moe_layers = 1;
    c.num_buffers = 4;
    seeds.emplace_back("d4-one-layer-4buf", c);
  }
  {
    // Dense layers between the MoE layers, uneven kernels, no link contention in the model.
    SimCase c = FromRecipe(3, 9, 3, 3, {5000, 60});
    c.first_moe_layer = 3;
    c.moe_layer_gap = 2;
    c.compute = static_cast<int>(SimCompute::kUneven);
    c.link_contention = false;
    c.forwards = 2;
    c.hardware = HardwareIndex("h200-sxm");
    seeds.emplace_back("h200-d3-gapped-layers-uneven", c);
  }
  // Invalid scenarios: clean errors, nothing simulated.
  seeds.emplace_back("invalid-gap", Raw(4, 16, 2, 5));
  seeds.emplace_back("invalid-tail-padding", Raw(3, 16, 6, 6));
  seeds.emplace_back("invalid-coverage", Raw(4, 16, 3, 3));
  seeds.emplace_back("invalid-size-0", Raw(2, 4, 0, 2));
  seeds.emplace_back("invalid-d-exceeds-n", Raw(5, 3, 1, 1));
  {
    SimCase c = FromRecipe(2, 8, 4, 4, {g});
    c.wrong_loaded_chunk = true;
    seeds.emplace_back("invalid-chunk-mismatch", c);
  }
  return seeds;
}

void Print(const SimCase& c) {
  const absl::StatusOr<Scenario> s = MakeSimScenario(c);
  if (!s.ok()) {
    std::printf("no scenario: %s\n", s.status().ToString().c_str());
    return;
  }
  const DwdpConfig& dwdp = s->dwdp;
  std::printf("hardware %s, G=%llu PG=%llu\n", s->hardware.name.c_str(),
              static_cast<unsigned long long>(c.granularity()),
              static_cast<unsigned long long>(dwdp.pool_page_bytes));
  std::printf("d=%lld size=%lld stride=%lld N=%lld%s groups=%lld buffers=%lld\n",
              static_cast<long long>(dwdp.dwdp_size),
              static_cast<long long>(dwdp.num_experts_per_worker),
              static_cast<long long>(dwdp.num_prefetch_experts),
              static_cast<long long>(s->model.num_experts),
              dwdp.loaded_chunk ? " (loaded chunk differs)" : "",
              static_cast<long long>(dwdp.num_groups), static_cast<long long>(dwdp.num_buffers));
  std::printf("MoE layers");
  for (int64_t layer : s->model.moe_layers) std::printf(" %lld", static_cast<long long>(layer));
  std::printf(" of %lld\n", static_cast<long long>(s->model.num_layers));
  for (const WeightSpec& w : s->model.weights) {
    std::printf("weight %s: %llu bytes per expert\n", w.name.c_str(),
                static_cast<unsigned long long>(w.expert_bytes));
  }
  static const char* const kCompute[] = {"none", "short", "long", "uneven"};
  std::printf("schedule %s%s, slice %llu; link contention %s; compute %s; %lld forward(s)\n",
              ContentionModeName(dwdp.contention.mode), c.contention_given ? "" : " (default)",
              static_cast<unsigned long long>(dwdp.contention.slice_bytes),
              c.link_contention ? "on" : "off", kCompute[c.compute],
              static_cast<long long>(c.forwards));
  if (c.stream_queue_entries > 0) {
    std::printf("streams hold %lld entries\n", static_cast<long long>(c.stream_queue_entries));
  }
  if (c.share_spread > 0) std::printf("fabric share spread %g\n", c.fabric_share_spread());
  std::printf("owner %s\n", OwnerPolicyName(static_cast<OwnerPolicy>(c.owner_policy)));
}

}  // namespace
}  // namespace dwdp::fuzz

int main(int argc, char** argv) {
  using namespace dwdp::fuzz;
  return SeedWriterMain(
      argc, argv, Seeds(), [](const SimCase& c) { return EncodeSimCase(c); },
      [](FuzzedDataProvider& provider) { return DecodeSimCase(provider); },
      [](const SimCase& c) { Print(c); });
}
