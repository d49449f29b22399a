// The DEP baseline without GPUs: per-rank token counts, the dispatch plan against an independent
// routing count, the host DEP layer against the resident-weights (DWDP) reference, the
// simulator's timing model, the run path's flags and refusals, `dwdp compare DWDP.json DEP.json`
// and the 8-GPU scenarios.

#define BOOST_TEST_MODULE dep_test
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "backends/sim/sim_dep.h"
#include "backends/sim/simulate.h"
#include "cli/run_flags.h"
#include "core/config/loader.h"
#include "core/dep/dep_compare.h"
#include "core/dep/dep_plan.h"
#include "core/dep/dep_reference.h"
#include "core/dep/dep_timing.h"
#include "core/layout/layout.h"
#include "core/moe/routing.h"
#include "core/run/exit_code.h"
#include "core/run/run_dep.h"
#include "tests/support/run_fixtures.h"
#include "tests/support/run_process.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

Scenario Load(const std::string& name) { return testing::LoadRepositoryScenario(name); }

RunRequest Parse(std::vector<std::string> args) { return testing::ParseRunFlags(std::move(args)); }

RunRequest DepRequest(int64_t ep, double cv, RunMode mode = RunMode::kTiming) {
  RunRequest r;
  r.baseline = RunBaseline::kDep;
  r.ep_size = ep;
  r.tokens_cv = cv;
  r.mode = mode;
  return r;
}

dep::DepReport RunSimDep(const Scenario& scenario, const RunRequest& request) {
  absl::StatusOr<DepRunResult> result = RunDep(scenario, request, sim::SimRunBackend());
  BOOST_REQUIRE_MESSAGE(result.ok(), result.status().message());
  BOOST_REQUIRE(result->reports);
  return result->report;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(tokens)

BOOST_AUTO_TEST_CASE(per_rank_tokens_have_the_asked_mean_and_spread) {
  const std::vector<int64_t> t = dep::TokensPerRank(1000, 8, 0.2, 1);
  BOOST_REQUIRE_EQUAL(t.size(), 8u);
  const double sum = static_cast<double>(std::accumulate(t.begin(), t.end(), int64_t{0}));
  BOOST_TEST(sum == 8000.0);
  double var = 0;
  for (int64_t v : t) var += (static_cast<double>(v) - 1000.0) * (static_cast<double>(v) - 1000.0);
  const double cv = std::sqrt(var / 8.0) / 1000.0;
  BOOST_TEST(cv == 0.2, boost::test_tools::tolerance(0.01));
  // Deterministic; another seed assigns the same counts to other ranks.
  BOOST_TEST(dep::TokensPerRank(1000, 8, 0.2, 1) == t, boost::test_tools::per_element());
  std::vector<int64_t> other = dep::TokensPerRank(1000, 8, 0.2, 2);
  BOOST_TEST(other != t);
  std::sort(other.begin(), other.end());
  std::vector<int64_t> sorted = t;
  std::sort(sorted.begin(), sorted.end());
  BOOST_TEST(other == sorted, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(no_spread_gives_every_rank_the_mean) {
  for (int64_t v : dep::TokensPerRank(512, 4, 0.0, 7)) BOOST_TEST(v == 512);
  for (int64_t v : dep::TokensPerRank(512, 1, 0.5, 7)) BOOST_TEST(v == 512);
}

BOOST_AUTO_TEST_CASE(a_large_spread_keeps_every_rank_at_one_token_or_more) {
  const std::vector<int64_t> t = dep::TokensPerRank(10, 4, 3.0, 3);
  for (int64_t v : t) BOOST_TEST(v >= 1);
  BOOST_TEST(std::accumulate(t.begin(), t.end(), int64_t{0}) == 40);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(plan)

BOOST_AUTO_TEST_CASE(bad_ep_sizes_and_spreads_are_refused_with_one_sentence) {
  const dep::DepShape shape{16, 2, 64, 32};
  BOOST_TEST(dep::ValidateDep(shape, 4, 0.2).ok());
  const absl::Status three = dep::ValidateDep(shape, 3, 0.2);
  BOOST_TEST(three.code() == absl::StatusCode::kInvalidArgument);
  BOOST_TEST(std::string(three.message()).find("does not divide") != std::string::npos);
  BOOST_TEST(!dep::ValidateDep(shape, 0, 0.2).ok());
  const absl::Status negative = dep::ValidateDep(shape, 4, -0.1);
  BOOST_TEST(negative.code() == absl::StatusCode::kInvalidArgument);
  BOOST_TEST(std::string(negative.message()).find("--tokens-cv") != std::string::npos);
  BOOST_TEST(!dep::ValidateDep(shape, 4, std::nan("")).ok());
  BOOST_TEST(ExitCodeOf(three) == kExitUsage);
}

BOOST_AUTO_TEST_CASE(every_entry_goes_to_its_experts_owner_and_comes_back) {
  const dep::DepShape shape{16, 2, 64, 32};
  const std::vector<int64_t> tokens = {5, 9, 3, 7};
  const uint64_t seed = 11;
  const dep::DispatchPlan plan = dep::PlanDispatch(shape, seed, tokens, 4);
  BOOST_REQUIRE(dep::CheckDispatchPlan(plan).ok());
  // Independently: route every token and count the entries per (source, owner, local expert).
  std::vector<int64_t> per_pair(16, 0);
  std::vector<int32_t> per_local(4 * 4 * 4, 0);  // [dst][src][local expert]
  for (int64_t s = 0; s < 4; ++s) {
    for (int64_t t = 0; t < tokens[s]; ++t) {
      int32_t e[2];
      float w[2];
      moe::RouteToken(seed, t, 16, 2, e, w);
      for (int j = 0; j < 2; ++j) {
        ++per_pair[s * 4 + e[j] / 4];
        ++per_local[(e[j] / 4) * 16 + s * 4 + e[j] % 4];
      }
    }
  }
  for (int64_t s = 0; s < 4; ++s) {
    for (int64_t d = 0; d < 4; ++d) {
      BOOST_TEST(plan.sources[s].send_counts[d] == per_pair[s * 4 + d]);
      BOOST_TEST(plan.destinations[d].recv_counts[s] == per_pair[s * 4 + d]);
      const std::vector<int32_t> message = plan.CountsMessage(s, d);
      for (int64_t e = 0; e < 4; ++e) BOOST_TEST(message[e] == per_local[d * 16 + s * 4 + e]);
    }
  }
  // The permuted rows of an owner are grouped by local expert in ascending order.
  for (int64_t d = 0; d < 4; ++d) {
    const dep::DestinationPlan& dest = plan.destinations[d];
    int64_t expected_rows = 0;
    for (int32_t c : dest.expert_counts) expected_rows += c;
    BOOST_TEST(dest.rows() == expected_rows);
  }
}

BOOST_AUTO_TEST_CASE(a_broken_permutation_is_caught) {
  const dep::DepShape shape{8, 2, 64, 32};
  dep::DispatchPlan plan = dep::PlanDispatch(shape, 3, {4, 4}, 2);
  BOOST_REQUIRE(plan.destinations[0].rows() >= 2);
  plan.destinations[0].permuted_from[1] = plan.destinations[0].permuted_from[0];
  BOOST_TEST(!dep::CheckDispatchPlan(plan).ok());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(reference)

// hidden 64 and inter 32 keep the host layer fast; pattern weights in [2^-7, 2^-5) and inputs in
// [-1, 1] give outputs of order 1e-3, so the tolerance is checked on real magnitudes.
BOOST_AUTO_TEST_CASE(the_dep_layer_agrees_with_the_resident_weights_layer_within_the_tolerance) {
  const dep::DepShape shape{8, 2, 64, 32};
  const std::vector<int64_t> tokens = {6, 3, 5, 4};
  const uint64_t seed = moe::LayerRoutingSeed(2, 1);
  const dep::DispatchPlan plan = dep::PlanDispatch(shape, seed, tokens, 4);
  dep::PatternExperts experts(shape, 2, 0, 1);
  const dep::ExpertWeights weights = dep::WeightsOf(experts);
  const dep::InputRow input = dep::SyntheticInput(shape.hidden, 2, 0, 1);
  std::vector<std::vector<int64_t>> all(4);
  for (int64_t r = 0; r < 4; ++r) {
    all[r].resize(static_cast<size_t>(tokens[r]));
    std::iota(all[r].begin(), all[r].end(), 0);
  }
  const std::vector<std::vector<float>> dep_out = dep::DepLayer(plan, all, input, weights);
  int64_t exact = 0;
  int64_t compared = 0;
  for (int64_t r = 0; r < 4; ++r) {
    const std::vector<float> resident = dep::ResidentLayer(shape, seed, r, all[r], input, weights);
    const dep::Agreement a = dep::OutputsAgree(dep_out[r], resident, shape.hidden);
    BOOST_TEST(a.ok, "rank " << r << ": " << a.first_outside);
    BOOST_TEST(a.scale > 0);
    exact += a.exact;
    compared += a.compared;
  }
  BOOST_TEST_MESSAGE(exact << " of " << compared << " values equal bit for bit");
  BOOST_TEST(compared == 18 * 64);
}

BOOST_AUTO_TEST_CASE(a_row_sent_to_the_wrong_expert_is_outside_the_tolerance) {
  const dep::DepShape shape{8, 2, 64, 32};
  const std::vector<int64_t> tokens = {6, 6};
  const uint64_t seed = 5;
  dep::DispatchPlan plan = dep::PlanDispatch(shape, seed, tokens, 2);
  // Swap two permuted rows of different local experts on rank 0.
  dep::DestinationPlan& d = plan.destinations[0];
  BOOST_REQUIRE(d.expert_counts[0] > 0);
  size_t other = static_cast<size_t>(d.expert_counts[0]);
  BOOST_REQUIRE(other < d.permuted_from.size());
  std::swap(d.permuted_from[0], d.permuted_from[other]);
  dep::PatternExperts experts(shape, 0, 0, 1);
  const dep::ExpertWeights weights = dep::WeightsOf(experts);
  const dep::InputRow input = dep::SyntheticInput(shape.hidden, 0, 0, 1);
  std::vector<std::vector<int64_t>> all = {{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}};
  const auto dep_out = dep::DepLayer(plan, all, input, weights);
  bool any_outside = false;
  for (int64_t r = 0; r < 2; ++r) {
    const auto resident = dep::ResidentLayer(shape, seed, r, all[r], input, weights);
    any_outside = any_outside || !dep::OutputsAgree(dep_out[r], resident, shape.hidden).ok;
  }
  BOOST_TEST(any_outside);
}

BOOST_AUTO_TEST_CASE(the_two_summation_orders_differ_and_stay_within_the_tolerance) {
  const dep::DepShape shape{4, 1, 1024, 256};
  dep::PatternExperts experts(shape, 1, 0, 1);
  const dep::InputRow input = dep::SyntheticInput(shape.hidden, 1, 0, 3);
  int differ = 0;
  for (int64_t t = 0; t < 8; ++t) {
    std::vector<uint16_t> x(1024);
    input(0, t, x.data());
    const auto a = dep::ExpertRow(shape, x.data(), experts.w13(t % 4).data(),
                                  experts.w2(t % 4).data(), dep::SumOrder::kAscending);
    const auto b = dep::ExpertRow(shape, x.data(), experts.w13(t % 4).data(),
                                  experts.w2(t % 4).data(), dep::SumOrder::kBlocked);
    differ += a != b ? 1 : 0;
    BOOST_TEST(dep::OutputsAgree(b, a, shape.hidden).ok);
  }
  BOOST_TEST(differ > 0);  // the tolerance is exercised, not vacuous
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(timing)

BOOST_AUTO_TEST_CASE(every_rank_spends_the_same_layer_time_and_the_fast_ones_wait) {
  const Scenario s = Load("moe-small-d3-6x5-modeb.yaml");
  absl::StatusOr<DepRunSpec> spec = MakeDepRunSpec(s, DepRequest(4, 0.3));
  BOOST_REQUIRE(spec.ok());
  std::vector<dep::DispatchPlan> plans;
  for (size_t p = 0; p < spec->moe_layers.size(); ++p) plans.push_back(spec->Plan(p));
  const auto ranks = dep::SimulateDepForward(s.model, s.hardware, plans, spec->moe_layers,
                                             spec->times, spec->mean_tokens);
  BOOST_REQUIRE_EQUAL(ranks.size(), 4u);
  for (size_t p = 0; p < plans.size(); ++p) {
    double layer = -1;
    double least_wait = 1e300;
    for (const dep::DepRankTimes& r : ranks) {
      const dep::DepLayerTimes& l = r.layers[p];
      const double total = l.attention_ns + l.wait_ns + l.dispatch_ns + l.compute_ns + l.combine_ns;
      if (layer < 0) layer = total;
      BOOST_TEST(total == layer, boost::test_tools::tolerance(1e-9));
      least_wait = std::min(least_wait, l.wait_ns);
      // Bytes: the rows the rank sends to others, bf16.
      BOOST_TEST(l.dispatch_bytes ==
                 static_cast<uint64_t>(dep::RowsSentAway(plans[p], r.rank)) * 1024 * 2);
    }
    BOOST_TEST(least_wait >= 0.0);
  }
  double waited = 0;
  for (const auto& r : ranks) waited += r.layers[0].wait_ns;
  BOOST_TEST(waited > 0);  // unequal tokens make some rank wait
}

BOOST_AUTO_TEST_CASE(one_rank_moves_nothing) {
  const Scenario s = Load("moe-small-d3-6x5-modeb.yaml");
  absl::StatusOr<DepRunSpec> spec = MakeDepRunSpec(s, DepRequest(1, 0.0));
  BOOST_REQUIRE(spec.ok());
  const auto ranks = dep::SimulateDepForward(s.model, s.hardware, {spec->Plan(0)},
                                             {spec->moe_layers[0]}, spec->times, spec->mean_tokens);
  BOOST_TEST(ranks[0].layers[0].dispatch_ns == 0.0);
  BOOST_TEST(ranks[0].layers[0].combine_ns == 0.0);
  BOOST_TEST(ranks[0].layers[0].wait_ns == 0.0);
  BOOST_TEST(ranks[0].layers[0].compute_ns > 0.0);
}

BOOST_AUTO_TEST_CASE(the_all_to_all_term_is_the_planners) {
  const Scenario s = Load("moe-small-d3-6x5-modeb.yaml");
  const HardwareProfile& hw = s.hardware;
  const double expected = 3e6 / hw.nvlink_bw.value * 1e9 + hw.kernel_overhead_ns.value;
  BOOST_TEST(DepAllToAllNs(hw, 1e6, 3e6) == expected, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(run_path)

BOOST_AUTO_TEST_CASE(the_dep_flags_reach_the_request) {
  const RunRequest r =
      Parse({"s.yaml", "--baseline", "dep", "--ep-size", "4", "--tokens-cv", "0.35"});
  BOOST_TEST(std::string(RunBaselineName(r.baseline)) == "dep");
  BOOST_TEST(r.ep_size.value_or(0) == 4);
  BOOST_TEST(r.tokens_cv.value_or(0) == 0.35);
  const RunRequest plain = Parse({"s.yaml"});
  BOOST_TEST(std::string(RunBaselineName(plain.baseline)) == "dwdp");
  BOOST_TEST(!plain.ep_size.has_value());
  BOOST_TEST(!plain.tokens_cv.has_value());
}

BOOST_AUTO_TEST_CASE(ep_size_changes_the_ranks_and_what_they_move) {
  const Scenario s = Load("moe-small-d3-6x5-modeb.yaml");
  const dep::DepReport two = RunSimDep(s, DepRequest(2, 0.0));
  const dep::DepReport four = RunSimDep(s, DepRequest(4, 0.0));
  BOOST_TEST(two.ok);
  BOOST_TEST(two.ranks.size() == 2u);
  BOOST_TEST(four.ranks.size() == 4u);
  BOOST_TEST(two.options["ep_size"] == 2);
  BOOST_TEST(four.options["ep_size"] == 4);
  // Half the rows leave a rank at ep 2, three quarters at ep 4 (about).
  BOOST_TEST(two.ranks[0].layers[0].dispatch_bytes < four.ranks[0].layers[0].dispatch_bytes);
  BOOST_TEST(two.ranks[0].layers.size() == 4u);
  BOOST_TEST(two.forwards == s.workload.forwards);
  BOOST_TEST(four.planner.is_object());
}

BOOST_AUTO_TEST_CASE(tokens_cv_changes_the_token_counts_and_the_wait) {
  const Scenario s = Load("moe-small-d3-6x5-modeb.yaml");
  const dep::DepReport even = RunSimDep(s, DepRequest(4, 0.0));
  const dep::DepReport spread = RunSimDep(s, DepRequest(4, 0.4));
  for (int64_t t : even.tokens_per_rank) BOOST_TEST(t == 512);
  BOOST_TEST(spread.tokens_per_rank != even.tokens_per_rank);
  BOOST_TEST(spread.options["tokens_cv"] == 0.4);
  double wait_even = 0, wait_spread = 0;
  for (const auto& r : even.ranks) wait_even += r.layers[0].wait_ns;
  for (const auto& r : spread.ranks) wait_spread += r.layers[0].wait_ns;
  BOOST_TEST(wait_spread > wait_even);
  BOOST_TEST(spread.forward_ns > even.forward_ns);
}

BOOST_AUTO_TEST_CASE(functional_mode_checks_the_outputs_against_the_resident_reference) {
  const Scenario s = Load("moe-small-d3-6x5-modeb.yaml");
  const dep::DepReport r = RunSimDep(s, DepRequest(4, 0.2, RunMode::kFunctional));
  BOOST_TEST(r.ok, (r.errors.empty() ? "" : r.errors.front()));
  BOOST_REQUIRE(r.check.is_object());
  BOOST_TEST(r.check["ok"].get<bool>());
  BOOST_TEST(r.check["compared"].get<int64_t>() == 4 * sim::kDepCheckTokensPerRank * 1024);
  const dep::DepReport timing = RunSimDep(s, DepRequest(4, 0.2));
  BOOST_TEST(timing.check.is_null());
}

BOOST_AUTO_TEST_CASE(bad_dep_requests_are_refused_before_running) {
  const Scenario s = Load("moe-small-d3-6x5-modeb.yaml");
  const RunBackend sim = sim::SimRunBackend();
  // The scenario's dwdp_size 3 does not divide 16 experts.
  RunRequest defaults;
  defaults.baseline = RunBaseline::kDep;
  auto by_default = RunDep(s, defaults, sim);
  BOOST_TEST(by_default.status().code() == absl::StatusCode::kInvalidArgument);
  BOOST_TEST(std::string(by_default.status().message()).find("--ep-size") != std::string::npos);
  BOOST_TEST(RunDep(s, DepRequest(5, 0.2), sim).status().code() ==
             absl::StatusCode::kInvalidArgument);
  BOOST_TEST(RunDep(s, DepRequest(4, -1.0), sim).status().code() ==
             absl::StatusCode::kInvalidArgument);
  RunRequest stray;
  stray.ep_size = 4;  // without --baseline dep
  BOOST_TEST(CheckBaselineOptions(stray).code() == absl::StatusCode::kInvalidArgument);
  RunRequest stray_cv;
  stray_cv.tokens_cv = 0.1;
  BOOST_TEST(!CheckBaselineOptions(stray_cv).ok());
  RunRequest hazards = DepRequest(4, 0.2);
  hazards.check_hazards = false;
  BOOST_TEST(RunDep(s, hazards, sim).status().code() == absl::StatusCode::kInvalidArgument);
}

BOOST_AUTO_TEST_CASE(the_binary_refuses_bad_values_with_one_sentence_and_exit_2) {
  const std::string scenario = testing::SourcePath("scenarios/moe-small-d3-6x5-modeb.yaml");
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--ep-size", "3"}, std::vector<std::string>{"--ep-size", "0"},
        std::vector<std::string>{"--ep-size", "4", "--tokens-cv", "-0.5"}}) {
    std::vector<std::string> args = {"run", scenario, "--baseline", "dep"};
    args.insert(args.end(), extra.begin(), extra.end());
    const testing::ProcessResult r = testing::RunDwdp(args);
    BOOST_TEST(r.exit_code == 2, extra[1] << ": " << r.err);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  }
  const testing::ProcessResult stray = testing::RunDwdp({"run", scenario, "--ep-size", "4"});
  BOOST_TEST(stray.exit_code == 2);
  const testing::ProcessResult ok = testing::RunDwdp(
      {"run", scenario, "--baseline", "dep", "--ep-size", "4", "--format", "json"});
  BOOST_TEST(ok.exit_code == 0, ok.err);
  const nlohmann::json j = nlohmann::json::parse(ok.out, nullptr, false);
  BOOST_REQUIRE(!j.is_discarded());
  BOOST_TEST(j["baseline"] == "dep");
  BOOST_TEST(j["ranks"].size() == 4u);
  BOOST_TEST(j["ranks"][0]["layers"][0].contains("wait_ns"));
  BOOST_TEST(j["options"]["ep_size"] == 4);
  BOOST_TEST(j["options"]["baseline"] == "dep");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(compare)

BOOST_AUTO_TEST_CASE(the_measured_ratio_sits_next_to_the_planners) {
  const nlohmann::json dwdp = {
      {"backend", "cuda"}, {"scenario", "s"}, {"ok", true}, {"totals", {{"forward_ns", 200.0}}}};
  const nlohmann::json layer = {{"attention_ns", 1.0},
                                {"wait_ns", 2.0},
                                {"dispatch_ns", 3.0},
                                {"compute_ns", 4.0},
                                {"combine_ns", 5.0}};
  nlohmann::json dep_json = {{"baseline", "dep"},
                             {"backend", "cuda"},
                             {"scenario", "s"},
                             {"ok", true},
                             {"ep_size", 4},
                             {"tokens_cv", 0.2},
                             {"summary", {{"forward_ns", 300.0}}},
                             {"planner", {{"dep_over_dwdp", 1.25}}},
                             {"ranks", {layer, layer}}};
  absl::StatusOr<dep::DepVsDwdp> c = dep::CompareDepWithDwdp(dwdp, dep_json);
  BOOST_REQUIRE(c.ok());
  BOOST_TEST(c->measured_dep_over_dwdp == 1.5);
  BOOST_TEST(c->predicted_dep_over_dwdp == 1.25);
  BOOST_TEST(c->dispatch_ns == 3.0);
  BOOST_TEST(c->ToText().find("1.500") != std::string::npos);
  BOOST_TEST(c->ToText().find("1.250") != std::string::npos);
  dep_json["scenario"] = "other";
  BOOST_TEST(!dep::CompareDepWithDwdp(dwdp, dep_json).ok());
  BOOST_TEST(!dep::CompareDepWithDwdp(dep_json, dep_json).ok());
}

BOOST_AUTO_TEST_CASE(dwdp_compare_takes_a_dwdp_and_a_dep_report_of_the_simulator) {
  const std::string scenario = testing::SourcePath("scenarios/moe-small-d3-6x5-modeb.yaml");
  const testing::ProcessResult dwdp = testing::RunDwdp({"run", scenario, "--format", "json"});
  BOOST_REQUIRE_MESSAGE(dwdp.exit_code == 0, dwdp.err);
  const testing::ProcessResult dep_run = testing::RunDwdp(
      {"run", scenario, "--baseline", "dep", "--ep-size", "4", "--format", "json"});
  BOOST_REQUIRE_MESSAGE(dep_run.exit_code == 0, dep_run.err);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dep_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string dwdp_file = (dir / "dwdp.json").string();
  const std::string dep_file = (dir / "dep.json").string();
  std::ofstream(dwdp_file) << dwdp.out;
  std::ofstream(dep_file) << dep_run.out;
  const testing::ProcessResult c =
      testing::RunDwdp({"compare", dwdp_file, dep_file, "--format", "json"});
  BOOST_TEST(c.exit_code == 0, c.err);
  const nlohmann::json j = nlohmann::json::parse(c.out, nullptr, false);
  BOOST_REQUIRE(!j.is_discarded());
  const double dwdp_ns = nlohmann::json::parse(dwdp.out)["totals"]["forward_ns"].get<double>();
  const double dep_ns = nlohmann::json::parse(dep_run.out)["summary"]["forward_ns"].get<double>();
  BOOST_TEST(j["measured_dep_over_dwdp"].get<double>() == dep_ns / dwdp_ns,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j["predicted_dep_over_dwdp"].get<double>() > 0);
  // The wrong way round is one sentence and exit 2.
  const testing::ProcessResult swapped = testing::RunDwdp({"compare", dep_file, dwdp_file});
  BOOST_TEST(swapped.exit_code == 2);
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(scenarios)

BOOST_AUTO_TEST_CASE(the_eight_gpu_scenarios_load_and_lay_out) {
  for (const char* name :
       {"gpt-oss-120b-bf16-h200x8-16x16.yaml", "gpt-oss-120b-bf16-h200x8-d7-20x18-modeb.yaml",
        "gpt-oss-120b-bf16-h200x8-d5-28x25-modeb.yaml",
        "gpt-oss-120b-bf16-h200x8-d2-64x64-l12.yaml", "gpt-oss-120b-bf16-h200x8-d4-32x32-l12.yaml",
        "gpt-oss-120b-bf16-h200x8-d8-16x16-l12.yaml"}) {
    BOOST_TEST_CONTEXT(name) {
      const Scenario s = Load(name);
      BOOST_TEST((s.workload.compute == ComputeKind::kMoe));
      BOOST_TEST(s.workload.forwards == 3);
      auto layout = ComputeGroupLayout(s);
      BOOST_TEST(layout.ok(), layout.status().message());
      // DEP runs where the group size divides the 128 experts.
      RunRequest r;
      r.baseline = RunBaseline::kDep;
      r.mode = RunMode::kFunctional;
      BOOST_TEST(MakeDepRunSpec(s, r).ok() == (128 % s.dwdp.dwdp_size == 0));
    }
  }
}

BOOST_AUTO_TEST_CASE(dep_at_eight_runs_on_the_simulator) {
  Scenario s = Load("gpt-oss-120b-bf16-h200x8-d8-16x16-l12.yaml");
  s.workload.forwards = 1;
  const dep::DepReport r = RunSimDep(s, DepRequest(8, 0.2));
  BOOST_TEST(r.ok);
  BOOST_TEST(r.ranks.size() == 8u);
  BOOST_TEST(r.ranks[0].layers.size() == 12u);
  BOOST_TEST(r.forward_ns > 0);
  BOOST_TEST(r.planner["dep_forward_ns"].get<double>() > 0);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace dwdp
