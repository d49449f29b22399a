// Sizing: input-length draws, the scenario fields, the DES against the M/D/1 queue, sampled
// against closed-form forwards, and the sizing answers (monotone in rate, memory respected, DEP
// and DWDP on the same GPUs and traffic, bad inputs in one sentence).
#define BOOST_TEST_MODULE sizing
#include <boost/test/unit_test.hpp>

#include <unistd.h>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "core/config/loader.h"
#include "core/perf/perf_model.h"
#include "core/plan/sizing.h"
#include "core/plan/sizing_report.h"

namespace dwdp {
namespace {

namespace fs = std::filesystem;

Scenario Load(const std::string& workload, const std::string& hardware = "gb200-nvl72") {
  auto s = LoadScenarioString(
      "name: sizing\nmodel: {preset: deepseek-v3-nvfp4}\n"
      "dwdp: {dwdp_size: 8}\nhardware: " +
      hardware + "\nworkload: " + workload + "\n");
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().message());
  return *s;
}

// A small sweep that runs in well under a second: groups of 4 and 8, one recipe, 2 slots.
SizingRequest Small(double rate, double ttft_p99_ms) {
  SizingRequest r;
  r.rate = rate;
  r.ttft_p99_ms = ttft_p99_ms;
  r.requests = 600;
  r.plan.dwdp_sizes = {4, 8};
  r.plan.num_buffers = {2};
  r.owners = {OwnerPolicy::kBalanced};
  return r;
}

BOOST_AUTO_TEST_CASE(length_draws_follow_their_distribution) {
  InputLengths fixed;
  fixed.length = 4096;
  LengthSampler f(fixed, 1);
  BOOST_TEST(f.Next() == 4096);
  BOOST_TEST(f.mean() == 4096.0);

  InputLengths uniform;
  uniform.distribution = LengthDistribution::kUniform;
  uniform.min = 100;
  uniform.max = 300;
  LengthSampler u(uniform, 2);
  double sum = 0;
  for (int i = 0; i < 20000; ++i) {
    const int64_t l = u.Next();
    BOOST_REQUIRE(l >= 100 && l <= 300);
    sum += static_cast<double>(l);
  }
  BOOST_TEST(std::fabs(sum / 20000 - 200) < 2);

  // Log-normal of mean 8192 and CV 0.5 (no clamp reached in practice at 8x the mean).
  InputLengths lognormal;
  lognormal.distribution = LengthDistribution::kLognormal;
  lognormal.mean = 8192;
  lognormal.cv = 0.5;
  lognormal.min = 1;
  lognormal.max = 8 * 8192;
  LengthSampler ln(lognormal, 3);
  std::vector<double> draws;
  for (int i = 0; i < 50000; ++i) draws.push_back(static_cast<double>(ln.Next()));
  const double mean = std::accumulate(draws.begin(), draws.end(), 0.0) / draws.size();
  double var = 0;
  for (double x : draws) var += (x - mean) * (x - mean);
  const double cv = std::sqrt(var / draws.size()) / mean;
  BOOST_TEST(std::fabs(mean / 8192 - 1) < 0.02);
  BOOST_TEST(std::fabs(cv - 0.5) < 0.03);

  // A file: only its lengths, the same draws for the same seed.
  InputLengths file;
  file.distribution = LengthDistribution::kFile;
  file.lengths = {10, 20, 30};
  LengthSampler a(file, 7), b(file, 7);
  for (int i = 0; i < 100; ++i) {
    const int64_t l = a.Next();
    BOOST_TEST((l == 10 || l == 20 || l == 30));
    BOOST_TEST(l == b.Next());
  }
  BOOST_TEST(a.longest() == 30);
}

BOOST_AUTO_TEST_CASE(scenario_isl_and_max_num_tokens_load_and_bad_ones_say_why) {
  const Scenario s = Load(
      "{tokens_per_rank: 8192, isl: {distribution: lognormal, mean: 4096, "
      "cv: 0.8}, max_num_tokens: 16384}");
  BOOST_REQUIRE(s.workload.input_lengths.has_value());
  BOOST_TEST((s.workload.input_lengths->distribution == LengthDistribution::kLognormal));
  BOOST_TEST(s.workload.input_lengths->cv == 0.8);
  BOOST_TEST(s.workload.input_lengths->max == 8 * 4096);  // the default clamp
  BOOST_TEST(s.workload.max_num_tokens == 16384);
  BOOST_TEST(Load("{isl: 2048}").workload.input_lengths->length == 2048);
  BOOST_TEST(Load("{isl: {distribution: uniform, min: 10, max: 20}}").workload.input_lengths->max ==
             20);

  const fs::path dir = fs::temp_directory_path() / ("dwdp-sizing-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "lengths.txt") << "# prompts\n100\n\n250\n";
  std::ofstream(dir / "empty.txt") << "# nothing here\n\n";
  std::ofstream(dir / "bad.txt") << "100\nmany\n";
  std::ofstream(dir / "s.yaml") << "name: f\nmodel: {preset: deepseek-v3-nvfp4}\n"
                                   "dwdp: {dwdp_size: 8}\nhardware: gb200-nvl72\n"
                                   "workload: {isl: {distribution: file, path: lengths.txt}}\n";
  auto from_file = LoadScenarioFile((dir / "s.yaml").string());
  BOOST_REQUIRE_MESSAGE(from_file.ok(), from_file.status().message());
  BOOST_TEST((from_file->workload.input_lengths->lengths == std::vector<int64_t>{100, 250}));
  auto empty = LoadLengthFile((dir / "empty.txt").string());
  BOOST_TEST(!empty.ok());
  BOOST_TEST(std::string(empty.status().message()).find("holds no input lengths") !=
             std::string::npos);
  auto bad = LoadLengthFile((dir / "bad.txt").string());
  BOOST_TEST(!bad.ok());
  BOOST_TEST(std::string(bad.status().message()).find("bad.txt:2") != std::string::npos);
  for (const char* wrong : {"{isl: {distribution: lognormal, mean: 100}}",
                            "{isl: {distribution: uniform, min: 30, max: 20}}",
                            "{isl: {distribution: gamma, mean: 100}}", "{max_num_tokens: 0}"}) {
    auto s = LoadScenarioString(
        std::string("name: x\nmodel: {preset: deepseek-v3-nvfp4}\ndwdp: {dwdp_size: 8}\n"
                    "hardware: gb200-nvl72\nworkload: ") +
        wrong + "\n");
    BOOST_TEST(!s.ok(), wrong);
  }
  fs::remove_all(dir);
}

// One rank, every request exactly one forward of max_num_tokens: an M/D/1 queue, whose mean
// wait is rho · D / (2 (1 − rho)) (Pollaczek–Khinchine). The DES must reproduce it.
BOOST_AUTO_TEST_CASE(the_des_reproduces_the_md1_queue) {
  const Scenario s = Load("{isl: 8192}");
  SizingCandidate one;
  one.kind = Parallelism::kDwdp;
  one.group_size = 1;
  one.max_num_tokens = 8192;
  one.dwdp.num_buffers = 2;
  auto idle = SimulateTtft(s, one, 1e-3, 400, 1);
  BOOST_REQUIRE(idle.ok());
  const double service_ms = idle->p50_ms;  // alone, a request takes one forward
  BOOST_TEST(service_ms > 100.0);
  for (double rho : {0.5, 0.8}) {
    auto loaded = SimulateTtft(s, one, rho / (service_ms / 1e3), 40000, 2);
    BOOST_REQUIRE(loaded.ok());
    const double expected = service_ms * (1 + rho / (2 * (1 - rho)));
    BOOST_TEST(std::fabs(loaded->mean_ms / expected - 1) < 0.05,
               "rho " << rho << ": DES " << loaded->mean_ms << " ms, M/D/1 " << expected);
  }
  // Above the service rate the queue grows without bound and the run says so.
  auto overloaded = SimulateTtft(s, one, 1.2 / (service_ms / 1e3), 4000, 3);
  BOOST_REQUIRE(overloaded.ok());
  BOOST_TEST(!overloaded->stable);
}

BOOST_AUTO_TEST_CASE(sampled_and_closed_form_agree_where_nothing_is_uneven) {
  // Every request max_num_tokens long and tokens_cv 0: every rank's forward is the same full
  // request, so the sampled DEP forward is the closed form exactly (the compute table's grid
  // holds that point) and DWDP's the planner's.
  Scenario s = Load("{isl: 16384, tokens_cv: 0, max_num_tokens: 16384}");
  auto even = SizeDeployment(s, Small(10, 60000));
  BOOST_REQUIRE_MESSAGE(even.ok(), even.status().message());
  int64_t compared = 0;
  for (const SizingCandidate& c : even->candidates) {
    if (c.saturated_tokens_per_s_per_gpu <= 0) continue;
    BOOST_TEST(
        std::fabs(c.saturated_tokens_per_s_per_gpu / c.closed_form_tokens_per_s_per_gpu - 1) < 1e-6,
        c.Label());
    BOOST_TEST(c.saturated_forward_p99_ms == c.saturated_forward_p50_ms, c.Label());
    ++compared;
  }
  BOOST_TEST(compared >= 2);
  // Uneven lengths: DEP's group waits for its slowest rank at every layer, so its sampled rate
  // falls below the closed form without imbalance; DWDP's ranks do not wait for each other.
  s = Load(
      "{isl: {distribution: lognormal, mean: 8192, cv: 1.0}, tokens_cv: 0, "
      "max_num_tokens: 16384}");
  auto uneven = SizeDeployment(s, Small(10, 60000));
  BOOST_REQUIRE(uneven.ok());
  for (const SizingCandidate& c : uneven->candidates) {
    if (c.kind != Parallelism::kDep || c.saturated_tokens_per_s_per_gpu <= 0) continue;
    BOOST_TEST(c.saturated_tokens_per_s_per_gpu < 0.97 * c.closed_form_tokens_per_s_per_gpu,
               c.Label());
    BOOST_TEST(c.saturated_forward_p99_ms > c.saturated_forward_p50_ms);
  }
}

BOOST_AUTO_TEST_CASE(gpus_grow_with_the_rate_and_never_shrink) {
  const Scenario s = Load(
      "{isl: {distribution: lognormal, mean: 8192, cv: 0.5}, "
      "max_num_tokens: 16384}");
  int64_t dwdp = 0;
  int64_t dep = 0;
  for (double rate : {2.0, 8.0, 20.0, 40.0}) {
    auto r = SizeDeployment(s, Small(rate, 4000));
    BOOST_REQUIRE_MESSAGE(r.ok(), r.status().message());
    BOOST_REQUIRE(r->best_dwdp && r->best_dep);
    const SizingCandidate& a = r->candidates[*r->best_dwdp];
    const SizingCandidate& b = r->candidates[*r->best_dep];
    BOOST_TEST(a.gpus >= dwdp, "rate " << rate);
    BOOST_TEST(b.gpus >= dep, "rate " << rate);
    dwdp = a.gpus;
    dep = b.gpus;
    // The pick holds the rate within the target, measured at its own GPU count.
    BOOST_TEST(a.at_rate.p99_ms <= 4000.0);
    BOOST_TEST(b.at_rate.p99_ms <= 4000.0);
  }
  BOOST_TEST(dwdp >= 8);
}

BOOST_AUTO_TEST_CASE(a_configuration_that_does_not_fit_is_never_recommended) {
  // DWDP d = 2 and DEP ep = 2 hold 128 experts of every layer: more than a GB200 has.
  const Scenario s = Load("{isl: 8192, max_num_tokens: 16384}");
  SizingRequest request = Small(4, 5000);
  request.plan.dwdp_sizes = {2, 4};
  auto r = SizeDeployment(s, request);
  BOOST_REQUIRE(r.ok());
  for (const SizingCandidate& c : r->candidates) {
    if (c.group_size == 2) {
      BOOST_TEST(!c.fits, c.Label());
      BOOST_TEST(c.fail_kind == "memory", c.Label());
      BOOST_TEST(c.gpus == 0);
    }
  }
  BOOST_REQUIRE(r->best_dwdp && r->best_dep);
  BOOST_TEST(r->candidates[*r->best_dwdp].group_size == 4);
  BOOST_TEST(r->candidates[*r->best_dep].group_size == 4);
  // A GPU that holds nothing: one sentence saying so.
  Scenario tiny = s;
  tiny.hardware.hbm_bytes.value = 40e9;
  auto none = SizeDeployment(tiny, request);
  BOOST_TEST(!none.ok());
  BOOST_TEST(std::string(none.status().message()).find("fits") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(dep_and_dwdp_are_priced_on_the_same_gpus_and_traffic) {
  const Scenario s = Load(
      "{isl: {distribution: uniform, min: 2048, max: 14336}, "
      "max_num_tokens: 16384}");
  auto r = SizeDeployment(s, Small(12, 5000));
  BOOST_REQUIRE(r.ok());
  BOOST_REQUIRE(r->best_dwdp && r->best_dep);
  // Both serve the requested input tokens: what their DES runs measured per GPU, times their
  // GPUs, is the same traffic.
  const double offered = r->rate * r->mean_input_tokens;
  for (size_t i : {*r->best_dwdp, *r->best_dep}) {
    const SizingCandidate& c = r->candidates[i];
    const double served = c.at_rate.tokens_per_s_per_gpu * static_cast<double>(c.gpus);
    BOOST_TEST(std::fabs(served / offered - 1) < 0.1, c.Label() << ": " << served);
  }
  // The same group sizes of the same platform for both.
  std::set<int64_t> dwdp_sizes, dep_sizes;
  for (const SizingCandidate& c : r->candidates) {
    (c.kind == Parallelism::kDwdp ? dwdp_sizes : dep_sizes).insert(c.group_size);
  }
  BOOST_TEST((dwdp_sizes == dep_sizes));
  // One candidate of each kind at one rate per GPU sees the same requests (one seed): at a
  // load where nothing queues both serve what arrives.
  auto a = SimulateTtft(s, r->candidates[*r->best_dwdp], 0.05, 500, 9);
  auto b = SimulateTtft(s, r->candidates[*r->best_dep], 0.05, 500, 9);
  BOOST_REQUIRE(a.ok() && b.ok());
  BOOST_TEST(std::fabs(a->tokens_per_s_per_gpu / b->tokens_per_s_per_gpu - 1) < 0.05);
}

BOOST_AUTO_TEST_CASE(a_median_target_and_a_gpu_budget_change_the_answer) {
  const Scenario s = Load(
      "{isl: {distribution: lognormal, mean: 8192, cv: 0.5}, "
      "max_num_tokens: 16384}");
  auto loose = SizeDeployment(s, Small(20, 4000));
  SizingRequest tight = Small(20, 4000);
  tight.ttft_p50_ms = 600;
  auto tighter = SizeDeployment(s, tight);
  BOOST_REQUIRE(loose.ok() && tighter.ok());
  BOOST_TEST(tighter->candidates[*tighter->best_dwdp].gpus >
             loose->candidates[*loose->best_dwdp].gpus);
  BOOST_TEST(tighter->candidates[*tighter->best_dwdp].at_rate.p50_ms <= 600.0);
  // A budget below what the traffic needs: no deployment, one sentence.
  SizingRequest budget = Small(20, 4000);
  budget.max_gpus = 4;
  auto over = SizeDeployment(s, budget);
  BOOST_TEST(!over.ok());
  BOOST_TEST(std::string(over.status().message()).find("4 GPUs or fewer") != std::string::npos,
             over.status().message());
  // Input tokens/s instead of requests/s: the same traffic, the same answer.
  SizingRequest tokens = Small(20 * loose->mean_input_tokens, 4000);
  tokens.rate_in_tokens = true;
  auto by_tokens = SizeDeployment(s, tokens);
  BOOST_REQUIRE(by_tokens.ok());
  BOOST_TEST(std::fabs(by_tokens->rate - 20) < 1e-9);
  BOOST_TEST(by_tokens->candidates[*by_tokens->best_dwdp].gpus ==
             loose->candidates[*loose->best_dwdp].gpus);
}

BOOST_AUTO_TEST_CASE(workload_max_num_tokens_is_the_default_chunk) {
  // Without --max-num-tokens the scenario's max_num_tokens sizes every forward.
  for (int64_t mnt : {4096, 16384}) {
    const Scenario s = Load("{isl: 8192, max_num_tokens: " + std::to_string(mnt) + "}");
    auto r = SizeDeployment(s, Small(4, 60000));
    BOOST_REQUIRE(r.ok());
    for (const SizingCandidate& c : r->candidates) BOOST_TEST(c.max_num_tokens == mnt);
    // 8K requests in 4K chunks: two forwards each, the second attending to the first half.
    if (mnt == 4096) {
      const SizingCandidate& dep = r->candidates[*r->best_dep];
      BOOST_TEST(dep.saturated_forward_p99_ms > dep.saturated_forward_p50_ms);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_inputs_get_one_sentence) {
  const Scenario s = Load("{isl: 8192, max_num_tokens: 16384}");
  auto negative = SizeDeployment(s, Small(-1, 1000));
  BOOST_TEST(absl::IsInvalidArgument(negative.status()));
  BOOST_TEST(std::string(negative.status().message()).find("--rate must be a positive") == 0u);
  auto no_target = SizeDeployment(s, Small(1, 0));
  BOOST_TEST(absl::IsInvalidArgument(no_target.status()));
  // 1 ms is below any forward: no configuration meets it at any load.
  auto unmeetable = SizeDeployment(s, Small(1, 1));
  BOOST_TEST(absl::IsFailedPrecondition(unmeetable.status()));
  const std::string message(unmeetable.status().message());
  BOOST_TEST(message.find("no configuration meets TTFT p99") == 0u, message);
  BOOST_TEST(std::count(message.begin(), message.end(), '.') <= 1, message);
  Scenario empty = s;
  empty.workload.input_lengths = InputLengths{};
  empty.workload.input_lengths->distribution = LengthDistribution::kFile;
  empty.workload.input_lengths->path = "empty.txt";
  auto no_lengths = SizeDeployment(empty, Small(1, 1000));
  BOOST_TEST(absl::IsInvalidArgument(no_lengths.status()));
  BOOST_TEST(std::string(no_lengths.status().message()).find("holds no input lengths") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_report_carries_the_plan_keys_and_a_pareto_front) {
  const Scenario s = Load(
      "{isl: {distribution: lognormal, mean: 8192, cv: 0.5}, "
      "max_num_tokens: 16384}");
  auto r = SizeDeployment(s, Small(10, 4000));
  BOOST_REQUIRE(r.ok());
  const nlohmann::json j = SizingToJson(*r);
  BOOST_TEST(j.contains("candidates"));
  BOOST_TEST(j.contains("recommended"));
  BOOST_TEST(j["recommended"]["fits"].get<bool>());
  for (const char* key : {"dwdp_size", "num_experts_per_worker", "num_prefetch_experts",
                          "forward_ns", "dwdp_over_dep", "gpus", "ttft_p99_ms"}) {
    BOOST_TEST(j["recommended"].contains(key), key);
  }
  BOOST_TEST(j["recommended_dep"]["ep_size"].get<int64_t>() >= 4);
  BOOST_TEST(!r->recommendation.empty());
  BOOST_TEST(r->recommendation.find("DWDP needs") != std::string::npos);
  BOOST_TEST(r->recommendation.find("DEP needs") != std::string::npos);
  // The front: tokens/s per GPU never falls as the TTFT it accepts grows.
  const std::string pareto = ParetoToCsv(*r);
  BOOST_TEST(pareto.rfind("kind,label,tokens_per_s_per_gpu,ttft_p99_ms", 0) == 0u);
  for (Parallelism kind : {Parallelism::kDwdp, Parallelism::kDep}) {
    std::vector<std::pair<double, double>> front;
    for (size_t i = 0; i < r->pareto.size(); ++i) {
      if (r->on_front[i] && r->pareto[i].kind == kind) {
        front.push_back({r->pareto[i].ttft_p99_ms, r->pareto[i].tokens_per_s_per_gpu});
      }
    }
    BOOST_TEST(!front.empty());
    std::sort(front.begin(), front.end());
    for (size_t i = 1; i < front.size(); ++i) BOOST_TEST(front[i].second > front[i - 1].second);
  }
  const std::string csv = SizingToCsv(*r);
  BOOST_TEST(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')) ==
             r->candidates.size() + 1);
}

}  // namespace
}  // namespace dwdp
