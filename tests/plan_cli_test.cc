// `dwdp plan` sizing and owner options through the built binary: what each option changes, and
// bad inputs that exit 1 or 2 with one sentence.
#define BOOST_TEST_MODULE plan_cli
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "tests/support/run_process.h"

namespace dwdp::testing {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("dwdp-plan-cli-" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

// DeepSeek-V3 on GB200 with log-normal input lengths.
std::string Scenario(const TempDir& dir) {
  return dir.Write("sizing.yaml",
                   "name: sizing\nmodel: {preset: deepseek-v3-nvfp4}\ndwdp: {dwdp_size: 4}\n"
                   "hardware: gb200-nvl72\n"
                   "workload: {isl: {distribution: lognormal, mean: 8192, cv: 0.5}, "
                   "max_num_tokens: 16384}\n");
}

// A small sweep: groups of 4 and 8, one recipe, 2 slots, short DES runs.
std::vector<std::string> Sizing(const std::string& scenario, std::vector<std::string> extra) {
  std::vector<std::string> args = {"plan",          scenario, "--dwdp-sizes",   "4,8",
                                   "--num-buffers", "2",      "--des-requests", "400"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

nlohmann::json Json(const ProcessResult& r) {
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  BOOST_REQUIRE_MESSAGE(nlohmann::json::accept(r.out), "not JSON: " << r.out);
  return nlohmann::json::parse(r.out);
}

void ExpectOneSentence(const ProcessResult& r, int code, const std::string& text) {
  BOOST_TEST(r.exit_code == code, r.err);
  BOOST_TEST(r.err.rfind("error: ", 0) == 0u, r.err);
  BOOST_TEST(r.err.find(text) != std::string::npos, r.err);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
}

BOOST_AUTO_TEST_CASE(sizing_gives_dwdp_and_dep_side_by_side) {
  TempDir dir;
  const auto j = Json(
      RunDwdp(Sizing(Scenario(dir), {"--rate", "10", "--ttft-p99", "4000", "--format", "json"})));
  BOOST_TEST(j["recommended"]["gpus"].get<int64_t>() >= 4);
  BOOST_TEST(j["recommended_dep"]["gpus"].get<int64_t>() >= 4);
  BOOST_TEST(j["recommended"]["ttft_p99_ms"].get<double>() <= 4000.0);
  BOOST_TEST(j["sizing"]["recommendation"].get<std::string>().find("DWDP needs") !=
             std::string::npos);
  BOOST_TEST(j["sizing"]["ttft_model"].get<std::string>().find("discrete-event") !=
             std::string::npos);
  const auto text = RunDwdp(Sizing(Scenario(dir), {"--rate", "10", "--ttft-p99", "4000"}));
  BOOST_TEST(text.exit_code == 0, text.err);
  BOOST_TEST(text.out.find("<- pick") != std::string::npos, text.out);
  BOOST_TEST(text.out.find("recommended: For 10 requests/s") != std::string::npos, text.out);
}

BOOST_AUTO_TEST_CASE(sizing_options_change_what_is_computed) {
  TempDir dir;
  const std::string s = Scenario(dir);
  const auto base =
      Json(RunDwdp(Sizing(s, {"--rate", "10", "--ttft-p99", "4000", "--format", "json"})));
  // --max-num-tokens: one configuration per MNT.
  const auto two = Json(RunDwdp(Sizing(s, {"--rate", "10", "--ttft-p99", "4000", "--max-num-tokens",
                                           "8192,16384", "--format", "json"})));
  std::set<int64_t> mnts;
  for (const auto& c : two["dep_candidates"]) mnts.insert(c["max_num_tokens"].get<int64_t>());
  BOOST_TEST((mnts == std::set<int64_t>{8192, 16384}));
  BOOST_TEST(two["dep_candidates"].size() == 2 * base["dep_candidates"].size());
  // --owner: both policies for overlapping recipes (d = 8's 32/32 has none, d = 4's 64/64
  // neither: ask for every recipe so some overlap).
  const auto lowest = Json(RunDwdp(Sizing(s, {"--rate", "10", "--ttft-p99", "4000", "--owner",
                                              "lowest", "--all-recipes", "--format", "json"})));
  const auto both = Json(RunDwdp(Sizing(s, {"--rate", "10", "--ttft-p99", "4000", "--owner", "both",
                                            "--all-recipes", "--format", "json"})));
  BOOST_TEST(both["candidates"].size() > lowest["candidates"].size());
  // --rate-unit tokens: the same requests expressed as input tokens per second.
  const double mean = base["sizing"]["mean_input_tokens"];
  const auto tokens =
      Json(RunDwdp(Sizing(s, {"--rate", std::to_string(10 * mean), "--rate-unit", "tokens",
                              "--ttft-p99", "4000", "--format", "json"})));
  BOOST_TEST(std::abs(tokens["sizing"]["rate_requests_per_s"].get<double>() - 10.0) < 1e-6);
  // --ttft-p50: a tighter median needs more GPUs.
  const auto median = Json(RunDwdp(
      Sizing(s, {"--rate", "10", "--ttft-p99", "4000", "--ttft-p50", "500", "--format", "json"})));
  BOOST_TEST(median["recommended"]["gpus"].get<int64_t>() >
             base["recommended"]["gpus"].get<int64_t>());
  // --des-requests: another sample of requests, another TTFT.
  const auto more =
      Json(RunDwdp({"plan", s, "--dwdp-sizes", "4,8", "--num-buffers", "2", "--des-requests",
                    "1500", "--rate", "10", "--ttft-p99", "4000", "--format", "json"}));
  BOOST_TEST(more["recommended"]["ttft_p99_ms"].get<double>() !=
             base["recommended"]["ttft_p99_ms"].get<double>());
  // --isl-file replaces the scenario's lengths.
  const std::string lengths = dir.Write("lengths.txt", "# two prompts\n2048\n2048\n");
  const auto file = Json(RunDwdp(Sizing(
      s, {"--rate", "10", "--ttft-p99", "4000", "--isl-file", lengths, "--format", "json"})));
  BOOST_TEST(file["sizing"]["mean_input_tokens"].get<double>() == 2048.0);
  BOOST_TEST(file["sizing"]["input_lengths"] == "file");
}

BOOST_AUTO_TEST_CASE(sizing_writes_csv_and_pareto_files) {
  TempDir dir;
  const std::string csv = (dir.path / "sizing.csv").string();
  const std::string pareto = (dir.path / "pareto.csv").string();
  const auto r = RunDwdp(Sizing(Scenario(dir), {"--rate", "10", "--ttft-p99", "4000", "--csv-out",
                                                csv, "--pareto-out", pareto}));
  BOOST_TEST(r.exit_code == 0, r.err);
  const std::string rows = ReadWholeFile(csv);
  BOOST_TEST(rows.rfind("kind,group_size,", 0) == 0u);
  BOOST_TEST(rows.find("\nDEP,") != std::string::npos);
  BOOST_TEST(rows.find("\nDWDP,") != std::string::npos);
  const std::string points = ReadWholeFile(pareto);
  BOOST_TEST(points.rfind("kind,label,tokens_per_s_per_gpu,ttft_p99_ms", 0) == 0u);
  BOOST_TEST(std::count(points.begin(), points.end(), '\n') > 10);
}

BOOST_AUTO_TEST_CASE(bad_sizing_inputs_exit_with_one_sentence) {
  TempDir dir;
  const std::string s = Scenario(dir);
  ExpectOneSentence(RunDwdp(Sizing(s, {"--rate", "-5", "--ttft-p99", "4000"})), 2,
                    "--rate must be a positive number");
  ExpectOneSentence(RunDwdp(Sizing(s, {"--rate", "5"})), 2, "needs both --rate");
  const std::string empty = dir.Write("empty.txt", "# none\n");
  ExpectOneSentence(RunDwdp(Sizing(s, {"--rate", "5", "--ttft-p99", "4000", "--isl-file", empty})),
                    2, "holds no input lengths");
  ExpectOneSentence(RunDwdp(Sizing(s, {"--rate", "5", "--ttft-p99", "5"})), 1,
                    "no configuration meets TTFT p99");
  ExpectOneSentence(RunDwdp(Sizing(s, {"--rate", "50", "--ttft-p99", "4000", "--max-gpus", "4"})),
                    1, "on 4 GPUs or fewer");
}

BOOST_AUTO_TEST_CASE(owner_policy_prices_the_hot_source_and_the_balanced_fix) {
  TempDir dir;
  const std::string s = dir.Write("d72.yaml",
                                  "name: d72\nmodel: {preset: deepseek-v3-nvfp4}\n"
                                  "dwdp: {dwdp_size: 72, num_experts_per_worker: 43, "
                                  "num_prefetch_experts: 3}\nhardware: gb200-nvl72\n"
                                  "workload: {tokens_per_rank: 16384, sequence_length: 8192}\n");
  const auto j = Json(RunDwdp({"plan", s, "--dwdp-sizes", "72", "--num-buffers", "2", "--owner",
                               "both", "--recommend", "--format", "json"}));
  BOOST_REQUIRE(j["candidates"].size() == 2u);
  const auto& lowest =
      j["candidates"][0]["owner"] == "lowest" ? j["candidates"][0] : j["candidates"][1];
  const auto& balanced =
      j["candidates"][0]["owner"] == "lowest" ? j["candidates"][1] : j["candidates"][0];
  // The numbers: rank 0 serves 2,766 expert copies per layer under lowest.
  BOOST_TEST(lowest["max_served_experts"] == 2766);
  BOOST_TEST(lowest["hottest_rank"] == 0);
  BOOST_TEST(lowest["recommendable"] == false);
  BOOST_TEST(lowest["not_recommended"].get<std::string>().find("rank 0 serves 2766") !=
             std::string::npos);
  BOOST_TEST(balanced["max_served_experts"] == 213);
  BOOST_TEST(balanced["copy_pricing"] == "latin_square");
  BOOST_TEST(lowest["forward_ns"].get<double>() > 5 * balanced["forward_ns"].get<double>());
  BOOST_TEST(j["recommended"]["owner"] == "balanced");
}

BOOST_AUTO_TEST_CASE(plan_simulate_says_plan_and_run_agree) {
  // d = 6, every recipe under both owner policies: under lowest the ranks share sources (the
  // fluid copy model), under balanced every recipe is a Latin square. The simulator runs every
  // candidate the planner could recommend, and the planner must be within 10% of it.
  const auto r =
      RunDwdp({"plan", SourcePath("scenarios/default.yaml"), "--dwdp-sizes", "6", "--all-recipes",
               "--owner", "both", "--num-buffers", "2", "--simulate", "64", "--format", "json"});
  const auto j = Json(r);
  size_t fluid = 0;
  BOOST_TEST(j["simulated"].size() >= 3u);
  for (const auto& s : j["simulated"]) {
    fluid += s["copy_pricing"] == "fluid" ? 1 : 0;
    BOOST_TEST(s["within_10_percent"] == true, s.dump());
  }
  BOOST_TEST(fluid >= 2u);
  const auto text = RunDwdp({"plan", SourcePath("scenarios/default.yaml"), "--dwdp-sizes", "6",
                             "--owner", "balanced", "--num-buffers", "2", "--simulate", "1"});
  BOOST_TEST(text.out.find("plan and run agree on every candidate simulated") != std::string::npos,
             text.out);
}

}  // namespace
}  // namespace dwdp::testing
