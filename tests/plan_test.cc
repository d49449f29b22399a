// Capacity planner: hand-computed memory on the toy model (tests/support/plan_fixtures.h),
// recipe properties over DeepSeek-V3 on GB200, and recommendations.
#define BOOST_TEST_MODULE plan
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/partition/partition.h"
#include "core/plan/plan_check.h"
#include "core/plan/plan_report.h"
#include "core/plan/planner.h"
#include "tests/support/plan_fixtures.h"

namespace dwdp {
namespace {

using testing::ToyScenario;

const PlanCandidate& Find(const Plan& plan, int64_t d, int64_t k) {
  for (const PlanCandidate& c : plan.candidates) {
    if (c.dwdp_size == d && c.num_buffers == k) return c;
  }
  BOOST_FAIL("no candidate d=" << d << " k=" << k);
  return plan.candidates.front();
}

// Toy: 3 MoE layers, weights of 2 MiB and 1 MiB per expert, pool pages = granularity = 2 MiB,
// 100 MiB replicated, 200 MiB of device memory, 25,600 B of KV per token, workload 1024 tokens
// at 1024. Activations 15,360 B per token × 1024 = 15 MiB (perf_test).
BOOST_AUTO_TEST_CASE(toy_memory_by_hand) {
  PlanOptions options;
  options.num_buffers = {2, 3};
  auto plan = PlanCapacity(ToyScenario(), options);
  BOOST_REQUIRE_MESSAGE(plan.ok(), plan.status());
  // Sizes 2..8 (NVLink domain 8, 8 experts), least-overlap recipe each, 2 slot counts.
  BOOST_TEST(plan->candidates.size() == 7u * 2u);

  // d = 2, 4/4: each rank stores 4 experts: 8 MiB + 4 MiB = 12 MiB per layer, × 3 = 36 MiB;
  // the other 4 experts are 12 MiB = 6 pool pages per layer; k = 2 → 24 MiB of pool.
  // weights = 36 + 24 + 100 = 160 MiB; + 15 MiB activations = 175 MiB; KV 25 MiB =
  // 26,214,400 B = 1024 tokens of 25,600 B: exactly the 1024 the forward needs → fits.
  const PlanCandidate& d2 = Find(*plan, 2, 2);
  BOOST_TEST(d2.num_experts_per_worker == 4);
  BOOST_TEST(d2.local_expert_bytes == 36 * kMiB);
  BOOST_TEST(d2.pool_bytes == 24 * kMiB);
  BOOST_TEST(d2.weights_bytes_per_gpu == 160 * kMiB);
  BOOST_TEST(d2.activation_bytes == 15 * kMiB);
  BOOST_TEST(d2.kv_bytes_per_gpu == 25 * kMiB);
  BOOST_TEST(d2.kv_tokens == 1024u);
  BOOST_TEST(d2.fits);
  // k = 3: 36 MiB of pool, weights 172 MiB, KV 13 MiB = 532 tokens < 1024 → does not fit.
  const PlanCandidate& d2k3 = Find(*plan, 2, 3);
  BOOST_TEST(d2k3.pool_bytes == 36 * kMiB);
  BOOST_TEST(d2k3.kv_tokens == 532u);
  BOOST_TEST(!d2k3.fits);
  BOOST_TEST(!d2k3.fit_note.empty());

  // d = 3: recipes 4/2 (overlap 2) and 6/1; least overlap 4/2. Every rank stores 4 experts at
  // 2 MiB-aligned offsets: the same 36 MiB local and 24 MiB pool as d = 2.
  const PlanCandidate& d3 = Find(*plan, 3, 2);
  BOOST_TEST(d3.num_experts_per_worker == 4);
  BOOST_TEST(d3.num_prefetch_experts == 2);
  BOOST_TEST(d3.weights_bytes_per_gpu == 160 * kMiB);

  // d = 4, 2/2: 6 MiB local per layer → 18 MiB; 6 remote experts = 18 MiB = 9 pages per
  // layer, × 2 slots = 36 MiB; weights 154 MiB; KV 200 − 154 − 15 = 31 MiB = 32,505,856 B
  // = 1269 tokens.
  const PlanCandidate& d4 = Find(*plan, 4, 2);
  BOOST_TEST(d4.local_expert_bytes == 18 * kMiB);
  BOOST_TEST(d4.pool_bytes == 36 * kMiB);
  BOOST_TEST(d4.kv_tokens == 1269u);
  BOOST_TEST(d4.fits);

  // Copy per layer, d = 2 (rotate): 12 MiB = 12,582,912 B at 100 B/ns = 125,829.12 ns + 2
  // copies (2 weights × 1 owner) × 1000 ns.
  BOOST_TEST(d2.prefetch_bytes_per_layer == 12 * kMiB);
  BOOST_TEST(std::fabs(d2.prefetch_ns_per_layer - 127829.12) < 1e-6);
  // VMM mappings per process: 3 layers × (6 pool pages + 2 weights × 2 views) = 30.
  BOOST_TEST(d2.vmm_mappings == 30u);
  BOOST_TEST(d2.dwdp_over_dep > 0.0);
  BOOST_TEST(std::fabs(d2.dwdp_over_dep - d2.dep_forward_ns / d2.forward_ns) < 1e-12);
}

BOOST_AUTO_TEST_CASE(mapping_limit_makes_a_candidate_not_fit) {
  Scenario s = ToyScenario();
  s.hardware.max_mappings = {29, Provenance::kAssumed};
  PlanOptions options;
  options.dwdp_sizes = {2};
  options.num_buffers = {2};
  auto plan = PlanCapacity(s, options);
  BOOST_REQUIRE(plan.ok());
  BOOST_TEST(!plan->candidates[0].fits);
  BOOST_TEST(plan->candidates[0].fit_note.find("VMM mappings") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(sweep_covers_the_nvlink_domain_and_workload_points) {
  Scenario s = testing::DeepSeekOnGb200(16384, 8192);
  PlanOptions options;
  options.sequence_lengths = {8192, 16384};
  auto plan = PlanCapacity(s, options);
  BOOST_REQUIRE(plan.ok());
  // 71 sizes (2..72) × 3 slot counts × 2 workload points.
  BOOST_TEST(plan->candidates.size() == 71u * 3u * 2u);
  BOOST_TEST(plan->workloads.size() == 2u);
  int64_t largest = 0;
  for (const PlanCandidate& c : plan->candidates) largest = std::max(largest, c.dwdp_size);
  BOOST_TEST(largest == 72);
  // On an 8-GPU HGX domain the sweep stops at 8.
  s.hardware.nvlink_domain.value = 8;
  auto hgx = PlanCapacity(s, {});
  BOOST_REQUIRE(hgx.ok());
  for (const PlanCandidate& c : hgx->candidates) BOOST_TEST(c.dwdp_size <= 8);
}

BOOST_AUTO_TEST_CASE(every_proposed_recipe_validates_and_none_has_tail_padding) {
  Scenario s = testing::DeepSeekOnGb200(16384, 8192);
  PlanOptions options;
  options.all_recipes = true;
  options.num_buffers = {2};
  auto plan = PlanCapacity(s, options);
  BOOST_REQUIRE(plan.ok());
  std::map<int64_t, int64_t> per_size;
  for (const PlanCandidate& c : plan->candidates) {
    ++per_size[c.dwdp_size];
    const int64_t coverage = (c.dwdp_size - 1) * c.num_prefetch_experts + c.num_experts_per_worker;
    BOOST_TEST(coverage == 256, "tail padding or gap at d=" << c.dwdp_size);
    PartitionInput input;
    input.dwdp_size = c.dwdp_size;
    input.num_experts_per_worker = c.num_experts_per_worker;
    input.num_prefetch_experts = c.num_prefetch_experts;
    input.num_experts = 256;
    input.loaded_chunk = c.num_experts_per_worker;
    BOOST_TEST(!ValidatePartition(input).has_value());
  }
  // --all-recipes lists every recipe: floor(256 / d) of them (stride 1 .. floor(N/d)).
  for (const auto& [d, count] : per_size) BOOST_TEST(count == 256 / d, "d=" << d);
  // Without it, one per size, the least-overlap one, first in the recipe list.
  options.all_recipes = false;
  auto least = PlanCapacity(s, options);
  BOOST_REQUIRE(least.ok());
  for (const PlanCandidate& c : least->candidates) {
    BOOST_TEST(c.num_experts_per_worker ==
               Recipes(c.dwdp_size, 256).front().num_experts_per_worker);
  }
}

BOOST_AUTO_TEST_CASE(local_memory_by_group_size) {
  Scenario s = testing::DeepSeekOnGb200(16384, 8192);
  PlanOptions options;
  options.num_buffers = {2};
  auto plan = PlanCapacity(s, options);
  BOOST_REQUIRE(plan.ok());
  std::map<int64_t, const PlanCandidate*> by_size;
  for (const PlanCandidate& c : plan->candidates) by_size[c.dwdp_size] = &c;
  // Uniform recipes (d divides 256): local memory halves as d doubles and never grows.
  uint64_t previous = ~0ull;
  for (int64_t d : {2, 4, 8, 16, 32, 64}) {
    BOOST_TEST(by_size[d]->local_expert_bytes < previous, "d=" << d);
    previous = by_size[d]->local_expert_bytes;
  }
  // d = 4, 64/64: 64 × 24,772,608 B × 58 layers (every offset 2 MiB-aligned).
  BOOST_TEST(by_size[4]->local_expert_bytes == 64ull * 24772608ull * 58ull);
  // No group stores less than ceil(N / d) experts, and the least-overlap recipe is the one
  // with the fewest local experts, so the sweep shows each size at its leanest.
  for (const auto& [d, c] : by_size) {
    BOOST_TEST(c->num_experts_per_worker >= (256 + d - 1) / d);
    for (const Recipe& r : Recipes(d, 256)) {
      BOOST_TEST(c->num_experts_per_worker <= r.num_experts_per_worker);
    }
  }
  // But when d does not divide N, the only valid recipes (no tail padding) can store more
  // than a smaller group: d = 12 → 25/21, d = 13 → 28/19 (12 · 19 + 28 = 256). Local memory is
  // not monotone in d over all sizes; the planner reports it as it is.
  BOOST_TEST(by_size[12]->num_experts_per_worker == 25);
  BOOST_TEST(by_size[13]->num_experts_per_worker == 28);
  BOOST_TEST(by_size[13]->local_expert_bytes > by_size[12]->local_expert_bytes);
  // Over the whole sweep, no size stores more than d = 2 does.
  for (const auto& [d, c] : by_size) {
    BOOST_TEST(c->local_expert_bytes <= by_size[2]->local_expert_bytes, "d=" << d);
  }
}

BOOST_AUTO_TEST_CASE(a_candidate_that_does_not_fit_is_never_recommended) {
  // DeepSeek-V3 on GB200: d = 2 (128 experts local, ~195 GiB with the pool) does not fit in
  // 186 GB yet copies the least, so a planner that ignored the fit would pick it.
  Scenario s = testing::DeepSeekOnGb200(16384, 8192);
  PlanOptions options;
  options.sequence_lengths = {8192, 16384};
  auto plan = PlanCapacity(s, options);
  BOOST_REQUIRE(plan.ok());
  BOOST_TEST(!Find(*plan, 2, 2).fits);
  for (PlanObjective objective : {PlanObjective::kThroughput, PlanObjective::kSmallest}) {
    const auto recs = Recommend(*plan, objective);
    BOOST_TEST(recs.size() == 2u);
    for (const RecommendationResult& r : recs) {
      BOOST_REQUIRE(r.recommendation.has_value());
      BOOST_TEST(r.recommendation->candidate.fits);
      BOOST_TEST(r.recommendation->candidate.dwdp_size >= 3);
      BOOST_TEST(!r.recommendation->reasons.empty());
    }
  }
  // The smallest group that fits is d = 3 (86/85).
  const auto smallest = Recommend(*plan, PlanObjective::kSmallest);
  BOOST_TEST(smallest[0].recommendation->candidate.dwdp_size == 3);
  BOOST_TEST(smallest[0].recommendation->candidate.num_experts_per_worker == 86);
  // No fitting candidate at all: no recommendation, and a reason.
  s.hardware.hbm_bytes.value = 40e9;
  auto tiny = PlanCapacity(s, options);
  BOOST_REQUIRE(tiny.ok());
  for (const RecommendationResult& r : Recommend(*tiny, PlanObjective::kThroughput)) {
    BOOST_TEST(!r.recommendation.has_value());
    BOOST_TEST(r.none_reason.find("no candidate fits") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(dwdp_wins_long_context_and_loses_short_context) {
  Scenario s = testing::DeepSeekOnGb200(16384, 8192);
  PlanOptions options;
  options.dwdp_sizes = {4};
  options.num_buffers = {2};
  options.tokens_per_rank = {16384, 2048};
  options.sequence_lengths = {8192, 2048};
  auto plan = PlanCapacity(s, options);
  BOOST_REQUIRE(plan.ok());
  for (const PlanCandidate& c : plan->candidates) {
    if (c.tokens_per_rank == 16384 && c.sequence_length == 8192) {
      BOOST_TEST(c.stall_ns_per_layer == 0.0);
      BOOST_TEST(c.dwdp_over_dep > 1.0);
    }
    if (c.tokens_per_rank == 2048 && c.sequence_length == 2048) {
      BOOST_TEST(c.stall_ns_per_layer > 0.0);
      BOOST_TEST(c.dwdp_over_dep < 1.0);
    }
  }
}

BOOST_AUTO_TEST_CASE(errors_say_what_to_set) {
  Scenario s = ToyScenario();
  s.model.weights.clear();
  auto no_weights = PlanCapacity(s, {});
  BOOST_TEST(!no_weights.ok());
  BOOST_TEST(std::string(no_weights.status().message()).find("weights") != std::string::npos);

  s = ToyScenario();
  PlanOptions options;
  options.dwdp_sizes = {16};
  auto too_big = PlanCapacity(s, options);
  BOOST_TEST(!too_big.ok());
  BOOST_TEST(std::string(too_big.status().message()).find("NVLink domain") != std::string::npos);

  s.workload.sequence_length = 0;
  s.workload.tokens_per_rank = 0;
  auto no_workload = PlanCapacity(s, {});
  BOOST_TEST(!no_workload.ok());

  // A tail-padding recipe is not a candidate.
  auto tail = EvaluateCandidate(testing::DeepSeekOnGb200(1024, 1024), 3, 86, 86, 2, {1024, 1024},
                                ContentionMode::kRotate, 0.2);
  BOOST_TEST(!tail.ok());
}

BOOST_AUTO_TEST_CASE(the_plan_is_the_same_on_one_thread_or_several) {
  Scenario s = testing::DeepSeekOnGb200(16384, 8192);
  PlanOptions options;
  options.dwdp_sizes = {3, 5, 6, 8};
  options.all_recipes = true;
  options.num_buffers = {2};
  options.owners = {OwnerPolicy::kLowest, OwnerPolicy::kBalanced};
  options.threads = 1;
  auto one = PlanCapacity(s, options);
  options.threads = 3;
  auto three = PlanCapacity(s, options);
  BOOST_REQUIRE(one.ok() && three.ok());
  BOOST_REQUIRE(one->candidates.size() == three->candidates.size());
  for (size_t i = 0; i < one->candidates.size(); ++i) {
    BOOST_TEST(one->candidates[i].forward_ns == three->candidates[i].forward_ns);
    BOOST_TEST((one->candidates[i].owner == three->candidates[i].owner));
  }
  // Both owner policies only where a recipe overlaps: d = 8's 32/32 appears once.
  size_t uniform = 0;
  for (const PlanCandidate& c : one->candidates) uniform += c.dwdp_size == 8 && c.overlap == 0;
  BOOST_TEST(uniform == 1u);
}

BOOST_AUTO_TEST_CASE(json_and_csv_carry_the_interface_keys) {
  auto plan = PlanCapacity(ToyScenario(), {});
  BOOST_REQUIRE(plan.ok());
  const auto recs = Recommend(*plan, PlanObjective::kThroughput);
  const nlohmann::json j = PlanToJson(*plan, recs);
  BOOST_TEST(j["candidates"].size() == plan->candidates.size());
  for (const char* key : {"dwdp_size", "num_experts_per_worker", "num_prefetch_experts", "fits",
                          "weights_bytes_per_gpu", "kv_bytes_per_gpu", "prefetch_ns_per_layer",
                          "compute_ns_per_layer", "stall_ns_per_layer", "dwdp_over_dep",
                          "num_buffers", "tokens_per_rank", "sequence_length", "kv_tokens",
                          "forward_ns", "dep_forward_ns", "overlap"}) {
    BOOST_TEST(j["candidates"][0].contains(key), key);
  }
  BOOST_TEST(j.contains("recommended"));
  BOOST_TEST(j["recommended"]["fits"].get<bool>());
  const std::string csv = PlanToCsv(*plan);
  const size_t lines = static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n'));
  BOOST_TEST(lines == plan->candidates.size() + 1);
  BOOST_TEST(csv.rfind("dwdp_size,", 0) == 0u);
}

// --simulate N checks the N fitting candidates with the highest throughput per GPU; one that does
// not fit is never among them, however fast it would be.
BOOST_AUTO_TEST_CASE(simulate_checks_the_fastest_fitting_candidates) {
  Plan plan;
  auto candidate = [](int64_t d, double rate, bool fits) {
    PlanCandidate c;
    c.dwdp_size = d;
    c.tokens_per_s_per_gpu = rate;
    c.fits = fits;
    c.fit_note = fits ? "" : "out of memory";
    return c;
  };
  plan.candidates = {candidate(2, 100, true), candidate(3, 400, false), candidate(4, 300, true),
                     candidate(5, 200, true)};
  const std::vector<PlanCandidate> best = BestFittingCandidates(plan, 2);
  BOOST_REQUIRE(best.size() == 2u);
  BOOST_TEST(best[0].dwdp_size == 4);
  BOOST_TEST(best[1].dwdp_size == 5);
  BOOST_TEST(BestFittingCandidates(plan, 0).empty());
  BOOST_TEST(BestFittingCandidates(plan, 10).size() == 3u);
}

// Agreement is |simulated - planned| <= 10% of the planned forward: 110 of 100 agrees, 111 not.
BOOST_AUTO_TEST_CASE(planner_and_simulator_agree_within_ten_percent) {
  SimulatedCandidate s;
  s.planned.forward_ns = 100;
  s.forward_ns = 110;
  BOOST_TEST(ForwardWithinTenPercent(s));
  s.forward_ns = 111;
  BOOST_TEST(!ForwardWithinTenPercent(s));
  s.forward_ns = 90;
  BOOST_TEST(ForwardWithinTenPercent(s));
  const std::string text = SimulatedToText({s});
  BOOST_TEST(text.find("1 of 1 within 10%: plan and run agree") != std::string::npos);
  BOOST_TEST(text.find("-10.0%") != std::string::npos);
  BOOST_TEST(SimulatedToJson({s})[0]["within_10_percent"].get<bool>());
}

}  // namespace
}  // namespace dwdp
