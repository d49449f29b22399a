// Owner policies (lowest | balanced): who serves which expert, the copy plans they give, byte-exact
// functional runs, the simulator's egress fan-out, and the planner's group copy model against the
// simulator.
#define BOOST_TEST_MODULE owner_policy
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <map>

#include "backends/sim/copy_schedules.h"
#include "backends/sim/simulate.h"
#include "core/config/loader.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "core/perf/copy_flow.h"
#include "core/perf/layer_times.h"
#include "core/plan/planner.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

Partition Make(int64_t d, int64_t size, int64_t stride, int64_t n) {
  auto p = Partition::Create(d, size, stride, n);
  BOOST_REQUIRE_MESSAGE(p.ok(), p.status().message());
  return *std::move(p);
}

int64_t Owner(const Partition& p, int64_t e, int64_t puller, OwnerPolicy policy) {
  auto owner = OwnerOf(p, e, puller, policy);
  BOOST_REQUIRE_MESSAGE(owner.ok(), owner.status().message());
  return *owner;
}

BOOST_AUTO_TEST_CASE(lowest_is_the_spec_owner_for_every_puller) {
  for (const auto& [d, size, stride] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {4, 64, 64}, {3, 86, 85}, {7, 40, 36}, {72, 43, 3}}) {
    const Partition p = Make(d, size, stride, 256);
    for (int64_t e = 0; e < 256; ++e) {
      for (int64_t puller = 0; puller < d; ++puller) {
        BOOST_TEST(Owner(p, e, puller, OwnerPolicy::kLowest) == *p.owner(e));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(balanced_takes_every_expert_from_a_rank_that_stores_it) {
  const Partition p = Make(7, 40, 36, 256);
  for (int64_t puller = 0; puller < 7; ++puller) {
    std::map<int64_t, int64_t> taken;  // owner -> experts
    for (int64_t e = 0; e < 256; ++e) {
      const int64_t owner = Owner(p, e, puller, OwnerPolicy::kBalanced);
      BOOST_TEST(p.range_of(owner).contains(e), "expert " << e << " from rank " << owner);
      if (p.range_of(puller).contains(e)) {
        BOOST_TEST(owner == puller);
      } else {
        ++taken[owner];
      }
    }
    // Exactly `stride` experts from each of the other ranks ((d - 1) · stride + size = N).
    BOOST_TEST(taken.size() == 6u);
    for (const auto& [owner, experts] : taken) BOOST_TEST(experts == 36, "from " << owner);
  }
  // Out of range: one sentence, no crash.
  BOOST_TEST(!OwnerOf(p, 256, 0, OwnerPolicy::kBalanced).ok());
  BOOST_TEST(!OwnerOf(p, -1, 0, OwnerPolicy::kBalanced).ok());
  BOOST_TEST(!OwnerOf(p, 0, 7, OwnerPolicy::kBalanced).ok());
}

BOOST_AUTO_TEST_CASE(d72_43_3_rank_0_serves_2766_copies_under_lowest_and_213_under_balanced) {
  // The numbers, worked out by hand: puller r (1..71) needs experts [0, 3r) below its
  // range; rank 0 owns [0, 43) under lowest, so it serves min(3r, 43) to each: 3 · (1 + … + 14)
  // + 57 · 43 = 315 + 2,451 = 2,766. An interior rank q owns [3q + 40, 3q + 43) and serves
  // those 3 experts to the pullers outside its range; the median is 173.
  const Partition p = Make(72, 43, 3, 256);
  std::vector<int64_t> lowest = ServedExperts(p, OwnerPolicy::kLowest);
  BOOST_TEST(lowest[0] == 2766);
  std::vector<int64_t> sorted = lowest;
  std::sort(sorted.begin(), sorted.end());
  BOOST_TEST(sorted[36] == 173);
  // Balanced: every rank serves (d − 1) · stride = 213, the mean of lowest's loads.
  for (int64_t served : ServedExperts(p, OwnerPolicy::kBalanced)) BOOST_TEST(served == 213);
  int64_t total = 0;
  for (int64_t served : lowest) total += served;
  BOOST_TEST(total == 72 * 213);
}

// Every remote byte of every weight arrives exactly once, from a rank whose handle holds it.
void CheckDelivers(const GroupLayout& layout, int64_t rank, const CopyPlan& plan) {
  for (size_t w = 0; w < layout.ranks[rank].weights.size(); ++w) {
    const WeightLayout& wl = layout.ranks[rank].weights[w];
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    for (const CopyOp& op : plan.ops) {
      if (op.weight != static_cast<int64_t>(w)) continue;
      runs.push_back({op.dst_offset, op.dst_offset + op.bytes});
      const WeightLayout& src = layout.ranks[op.src_rank].weights[w];
      BOOST_TEST(op.dst_offset >= src.local_begin);
      BOOST_TEST(op.dst_offset + op.bytes <= src.local_end);
      BOOST_TEST(op.src_offset == op.dst_offset - src.page_start);
    }
    std::sort(runs.begin(), runs.end());
    uint64_t cursor = 0;
    for (const auto& [begin, end] : runs) {
      if (cursor == wl.local_begin) cursor = wl.local_end;
      BOOST_TEST(begin == cursor);
      cursor = end;
    }
    if (cursor == wl.local_begin) cursor = wl.local_end;
    BOOST_TEST(cursor == wl.tensor_bytes);
  }
}

BOOST_AUTO_TEST_CASE(balanced_copy_plans_deliver_the_remote_bytes_and_keep_one_run_per_peer) {
  const Partition p = Make(7, 40, 36, 256);
  const std::vector<WeightSpec> weights = {{"w13", 14680064}, {"w2", 7340032}};
  for (OwnerPolicy policy : {OwnerPolicy::kLowest, OwnerPolicy::kBalanced}) {
    auto layout = ComputeGroupLayout(p, weights, {3, 4}, 2 << 20, 16 << 20, 2, policy);
    BOOST_REQUIRE(layout.ok());
    BOOST_TEST((layout->owner_policy == policy));
    for (int64_t r = 0; r < 7; ++r) {
      for (ContentionMode mode :
           {ContentionMode::kRotate, ContentionMode::kAscending, ContentionMode::kRoundRobin}) {
        CheckDelivers(*layout, r, MakeCopyPlan(*layout, r, {mode, 2 << 20}));
      }
      if (policy == OwnerPolicy::kBalanced) {
        // Rotate: one copy per (weight, peer), peers r+1, r+2, … of 36 experts each.
        const CopyPlan plan = MakeCopyPlan(*layout, r, {ContentionMode::kRotate, 2 << 20});
        BOOST_TEST(plan.ops.size() == 12u);
        for (size_t i = 0; i < plan.ops.size(); ++i) {
          BOOST_TEST(plan.ops[i].src_rank == (r + 1 + static_cast<int64_t>(i / 2)) % 7);
          BOOST_TEST(plan.ops[i].bytes == 36u * weights[i % 2].expert_bytes);
        }
      }
    }
  }
  // The same layout, the copy-plan builder told which owners to use.
  auto lowest = ComputeGroupLayout(p, weights, {3}, 2 << 20, 16 << 20, 2);
  BOOST_REQUIRE(lowest.ok());
  const CopyPlan balanced =
      MakeCopyPlan(*lowest, 3, {ContentionMode::kRotate, 2 << 20}, OwnerPolicy::kBalanced);
  const CopyPlan plain = MakeCopyPlan(*lowest, 3, {ContentionMode::kRotate, 2 << 20});
  BOOST_TEST(balanced.ops != plain.ops);
  BOOST_TEST(balanced.total_bytes() == plain.total_bytes());
}

BOOST_AUTO_TEST_CASE(owner_balanced_in_a_scenario_runs_byte_exact_with_no_hazard) {
  // sim-small-d4-7x3-redundant shrunk to 64 KiB granules so the bytes stay small: odd expert
  // sizes put rank boundaries inside pages (edge bytes).
  const auto scenario_with = [](const std::string& owner) {
    auto s = LoadScenarioString(
        "name: b\nmodel: {num_experts: 16, moe_layers: 4, hidden_size: 1024, "
        "moe_intermediate_size: 512, top_k: 2, weights: [{name: w_up, expert_bytes: 196625}, "
        "{name: w_down, expert_bytes: 65539}, {name: w_scale, expert_bytes: 771}]}\n"
        "dwdp: {dwdp_size: 4, num_experts_per_worker: 7, num_prefetch_experts: 3, "
        "num_buffers: 3, pool_page_bytes: 64KiB" +
        owner +
        "}\nhardware: {preset: h100-sxm, granularity: 65536}\n"
        "workload: {tokens_per_rank: 256, sequence_length: 256, forwards: 2, "
        "layer_compute_ns: 200000}\n");
    BOOST_REQUIRE_MESSAGE(s.ok(), s.status().message());
    return *s;
  };
  const Scenario lowest_scenario = scenario_with("");
  const Scenario balanced_scenario = scenario_with(", owner: balanced");
  BOOST_TEST((lowest_scenario.dwdp.owner == OwnerPolicy::kLowest));  // the default
  BOOST_TEST((balanced_scenario.dwdp.owner == OwnerPolicy::kBalanced));
  std::map<int64_t, std::map<int64_t, uint64_t>> from_peer;  // policy -> peer -> bytes (rank 0)
  for (const Scenario& s : {lowest_scenario, balanced_scenario}) {
    auto layout = ComputeGroupLayout(s);
    BOOST_REQUIRE(layout.ok());
    const LayerTimes times = ComputeLayerTimes(s);
    sim::SimulateOptions options;
    options.functional = true;
    options.forwards = 2;
    options.attention_ns = times.attention_ns;
    options.moe_ns = times.moe_ns;
    auto result = sim::SimulateScenario(s, *layout, options);
    BOOST_REQUIRE(result.ok());
    BOOST_TEST(result->report.ok);
    BOOST_TEST(result->report.errors.empty());
    BOOST_TEST(result->report.hazards.empty());
    for (const auto& [peer, bytes] : result->report.ranks[3].bytes_from_peer) {
      from_peer[static_cast<int64_t>(s.dwdp.owner)][peer] = bytes;
    }
  }
  // Rank 3 (experts [9, 16)) pulls [0, 9). Lowest: [0, 7) from rank 0, [7, 9) from rank 1.
  // Balanced: 3 experts from each of ranks 0, 1, 2. The report counts one forward: 4 layers.
  const uint64_t expert = 196625 + 65539 + 771;
  const std::map<int64_t, uint64_t> lowest = {{0, 4 * 7 * expert}, {1, 4 * 2 * expert}};
  const std::map<int64_t, uint64_t> even = {
      {0, 4 * 3 * expert}, {1, 4 * 3 * expert}, {2, 4 * 3 * expert}};
  BOOST_TEST((from_peer[static_cast<int64_t>(OwnerPolicy::kLowest)] == lowest));
  BOOST_TEST((from_peer[static_cast<int64_t>(OwnerPolicy::kBalanced)] == even));
}

BOOST_AUTO_TEST_CASE(egress_fanout_efficiency_slows_a_source_with_several_readers) {
  // Ascending: every rank starts on rank 0, so rank 0 has three readers at once; rotate gives
  // every source one reader. A fan-out efficiency below 1 slows only the first.
  HardwareProfile hw = *HardwarePreset("h100-sxm");
  hw.egress_bw = hw.peer_copy_bw;
  const auto time = [&](double fanout, CopySchedule schedule) {
    HardwareProfile p = hw;
    p.egress_fanout_efficiency.value = fanout;
    auto t = sim::SimulateCopySchedule(p, 4, schedule, 256 << 20, 2 << 20);
    BOOST_REQUIRE(t.ok());
    return *t;
  };
  const double ascending = time(1.0, CopySchedule::kAscending);
  const double ascending_fanout = time(0.5, CopySchedule::kAscending);
  BOOST_TEST(ascending_fanout > 1.3 * ascending);
  BOOST_TEST(std::fabs(time(0.5, CopySchedule::kRotate) - time(1.0, CopySchedule::kRotate)) <
             1e-6 * ascending);
  // The planner prices it too: the hottest source of a lowest-owner plan serves slower.
  HardwareProfile slow = *HardwarePreset("gb200-nvl72");
  Scenario s;
  s.model = *ModelPreset("deepseek-v3-nvfp4");
  s.hardware = slow;
  s.workload = {16384, 8192};
  auto fast = EvaluateCandidate(s, 72, 43, 3, 2, {16384, 8192}, ContentionMode::kRotate, 0.2);
  s.hardware.egress_fanout_efficiency.value = 0.5;
  auto slower = EvaluateCandidate(s, 72, 43, 3, 2, {16384, 8192}, ContentionMode::kRotate, 0.2);
  BOOST_REQUIRE(fast.ok() && slower.ok());
  BOOST_TEST(slower->forward_ns > 1.5 * fast->forward_ns);
}

BOOST_AUTO_TEST_CASE(staggered_changes_the_fluid_price_only_where_sources_are_shared) {
  // The planner's copy model (core/perf/copy_flow.h) with copies that outlast compute. A Latin
  // square (d = 4, 64 x 64) keeps one reader per source in every layer whatever the layer's
  // first owner: staggered prices as rotate. The redundant d = 4 recipe (70 x 62) under the
  // lowest owner shares sources; staggered starts each layer at another owner visit, and the
  // fluid model prices that differently.
  const ModelSpec model = *ModelPreset("deepseek-v3-nvfp4");
  HardwareProfile hw = *HardwarePreset("gb200-nvl72");
  hw.egress_fanout_efficiency.value = 0.5;
  PipelineCompute compute;
  compute.pre_moe_ns = 50e3;
  compute.moe_ns = 100e3;
  compute.moe_layers = 8;
  compute.num_buffers = 2;
  std::vector<int64_t> layers;
  for (int64_t l = 0; l < compute.moe_layers; ++l) layers.push_back(3 + l);
  const auto price = [&](int64_t size, int64_t stride, ContentionMode mode) {
    auto partition = Partition::Create(4, size, stride, model.num_experts);
    BOOST_REQUIRE(partition.ok());
    auto layout = ComputeGroupLayout(*partition, model.weights, layers, 2 << 20, 16 << 20, 2);
    BOOST_REQUIRE(layout.ok());
    const GroupCopies copies = GroupCopiesOf(*layout, {mode, 2 << 20});
    BOOST_TEST(copies.staggered == (mode == ContentionMode::kStaggered));
    return PriceGroupPipeline(copies, hw, compute).slowest_forward_ns();
  };
  BOOST_TEST(price(64, 64, ContentionMode::kStaggered) == price(64, 64, ContentionMode::kRotate));
  BOOST_TEST(price(70, 62, ContentionMode::kStaggered) != price(70, 62, ContentionMode::kRotate));
}

// The planner's price of a candidate against the simulator running it (timing mode, one
// forward, the slowest rank): within 10% for candidates the planner can recommend.
double Simulated(const Scenario& base, const PlanCandidate& c) {
  Scenario s = base;
  s.dwdp.dwdp_size = c.dwdp_size;
  s.dwdp.num_experts_per_worker = c.num_experts_per_worker;
  s.dwdp.num_prefetch_experts = c.num_prefetch_experts;
  s.dwdp.num_buffers = c.num_buffers;
  s.dwdp.owner = c.owner;
  auto layout = ComputeGroupLayout(s);
  BOOST_REQUIRE(layout.ok());
  const LayerTimes times = ComputeLayerTimes(s);
  sim::SimulateOptions options;
  options.check_hazards = false;
  options.attention_ns = times.attention_ns;
  options.moe_ns = times.moe_ns;
  options.prelude_ns = times.prelude_ns;
  auto result = sim::SimulateScenario(s, *layout, options);
  BOOST_REQUIRE(result.ok());
  return result->report.forward_ns;
}

BOOST_AUTO_TEST_CASE(plan_and_run_agree_within_10_percent_on_shared_and_latin_sources) {
  auto loaded = LoadScenarioFile(testing::SourcePath("scenarios/default.yaml"));
  BOOST_REQUIRE(loaded.ok());
  PlanOptions options;
  options.dwdp_sizes = {4, 6};
  options.all_recipes = true;
  options.num_buffers = {2};
  options.owners = {OwnerPolicy::kLowest, OwnerPolicy::kBalanced};
  auto plan = PlanCapacity(*loaded, options);
  BOOST_REQUIRE(plan.ok());
  int64_t checked = 0;
  int64_t fluid = 0;
  for (const PlanCandidate& c : plan->candidates) {
    // 4: 70/62 (overlap 8); 6: 56/40 (overlap 16, copy-bound under lowest), both policies.
    const bool pick = (c.dwdp_size == 4 && c.num_experts_per_worker == 70) ||
                      (c.dwdp_size == 6 && c.num_experts_per_worker == 56);
    if (!pick || !Recommendable(c)) continue;
    const double simulated = Simulated(*loaded, c);
    BOOST_TEST(std::fabs(c.forward_ns - simulated) <= 0.10 * simulated,
               "d=" << c.dwdp_size << " " << c.num_experts_per_worker << "/"
                    << c.num_prefetch_experts << " " << OwnerPolicyName(c.owner) << ": plan "
                    << c.forward_ns << " run " << simulated);
    ++checked;
    fluid += c.copy_pricing == CopyPricing::kFluid ? 1 : 0;
  }
  BOOST_TEST(checked == 4);
  BOOST_TEST(fluid == 2);  // the lowest-owner plans share sources
}

}  // namespace
}  // namespace dwdp
