// Runs the built `dwdp` binary on scenarios/ and scenarios/invalid/ and checks exit codes,
// check ids and JSON keys (INTERFACE.md).
#define BOOST_TEST_MODULE cli
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "core/config/loader.h"
#include "tests/support/run_process.h"

namespace dwdp::testing {
namespace {

namespace fs = std::filesystem;

// A scenario file in a temporary directory, removed at the end of the test.
struct TempScenario {
  fs::path path;
  explicit TempScenario(const std::string& yaml) {
    path = fs::temp_directory_path() / ("dwdp-cli-test-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(counter++) + ".yaml");
    std::ofstream(path) << yaml;
  }
  ~TempScenario() { fs::remove(path); }
  static inline int counter = 0;
};

std::string PresetScenario(const std::string& preset, int d, int size, int stride,
                           const std::string& hardware = "gb200-nvl72") {
  return "name: test\nmodel: {preset: " + preset + "}\ndwdp:\n  dwdp_size: " + std::to_string(d) +
         "\n  num_experts_per_worker: " + std::to_string(size) +
         "\n  num_prefetch_experts: " + std::to_string(stride) + "\nhardware: " + hardware +
         "\nworkload: {tokens_per_rank: 16384, sequence_length: 8192}\n";
}

nlohmann::json ParseJson(const ProcessResult& r) {
  BOOST_REQUIRE_MESSAGE(nlohmann::json::accept(r.out), "not JSON: " << r.out << r.err);
  return nlohmann::json::parse(r.out);
}

}  // namespace

BOOST_AUTO_TEST_CASE(recipes_for_d7_list_40_36_first) {
  const auto text = RunDwdp({"recipes", "--dwdp-size", "7", "--num-experts", "256"});
  BOOST_TEST(text.exit_code == 0);
  // The first row of the table is 40/36.
  BOOST_TEST(std::regex_search(text.out, std::regex("-\n\\s*40\\s+36\\s+4")), text.out);
  const auto json = ParseJson(
      RunDwdp({"recipes", "--dwdp-size", "7", "--num-experts", "256", "--format", "json"}));
  BOOST_TEST(json["dwdp_size"] == 7);
  BOOST_TEST(json["num_experts"] == 256);
  BOOST_TEST(json["recipes"][0]["num_experts_per_worker"] == 40);
  BOOST_TEST(json["recipes"][0]["num_prefetch_experts"] == 36);
  BOOST_TEST(json["recipes"][0]["overlap"] == 4);
}

BOOST_AUTO_TEST_CASE(recipes_usage_errors_exit_2) {
  BOOST_TEST(RunDwdp({"recipes", "--dwdp-size", "-3", "--num-experts", "256"}).exit_code == 2);
  BOOST_TEST(RunDwdp({"recipes", "--dwdp-size", "3"}).exit_code == 2);
  BOOST_TEST(RunDwdp({"recipes", "--dwdp-size", "abc", "--num-experts", "8"}).exit_code == 2);
  BOOST_TEST(RunDwdp({"no-such-command"}).exit_code == 2);
  BOOST_TEST(RunDwdp({}).exit_code == 2);
  BOOST_TEST(RunDwdp({"--help"}).exit_code == 0);
}

BOOST_AUTO_TEST_CASE(recipes_with_no_solution_exit_1) {
  const auto r = RunDwdp({"recipes", "--dwdp-size", "9", "--num-experts", "8"});
  BOOST_TEST(r.exit_code == 1);
  BOOST_TEST(r.err.find("no recipe") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(every_scenario_validates) {
  const auto files = YamlFilesIn("scenarios");
  BOOST_REQUIRE(files.size() >= 10u);
  for (const fs::path& file : files) {
    const auto r = RunDwdp({"validate", file.string(), "--format", "json"});
    BOOST_TEST(r.exit_code == 0, file << ": " << r.err);
    if (r.exit_code == 0) BOOST_TEST(ParseJson(r)["valid"] == true);
    BOOST_TEST(RunDwdp({"layout", file.string()}).exit_code == 0, file);
  }
}

BOOST_AUTO_TEST_CASE(every_invalid_scenario_exits_1_with_its_check) {
  const auto files = YamlFilesIn("scenarios/invalid");
  BOOST_REQUIRE(files.size() >= 8u);
  const std::regex expect_re("#\\s*expect:\\s*([a-z_]+)(?:\\s*\\(with (--[a-z-]+) (\\d+)\\))?");
  std::set<std::string> checks;
  for (const fs::path& file : files) {
    std::smatch m;
    const std::string first = FirstLine(file);
    BOOST_REQUIRE_MESSAGE(std::regex_search(first, m, expect_re), file << " has no '# expect:'");
    std::vector<std::string> args = {"validate", file.string(), "--format", "json"};
    if (m[2].matched) {
      args.push_back(m[2]);
      args.push_back(m[3]);
    }
    const auto r = RunDwdp(args);
    BOOST_TEST(r.exit_code == 1, file << ": " << r.out << r.err);
    const auto json = ParseJson(r);
    BOOST_TEST(json["valid"] == false);
    BOOST_TEST(json["error"]["check"] == m[1].str(), file);
    BOOST_TEST(json["error"]["message"].get<std::string>().size() > 20u);
    BOOST_TEST(json["error"]["recipes"].is_array());
    checks.insert(m[1]);
    // Text mode: one sentence on stderr naming the check.
    const auto text = RunDwdp(std::vector<std::string>(args.begin(), args.begin() + 2));
    if (!m[2].matched) BOOST_TEST(text.err.find(m[1].str()) != std::string::npos, text.err);
  }
  for (const char* check :
       {"dwdp_size", "size_positive", "stride_positive", "gap", "coverage", "tail_padding",
        "chunk_mismatch", "num_groups", "world_size", "group_id"}) {
    BOOST_TEST(checks.count(check) == 1u, "no invalid scenario for " << check);
  }
}

BOOST_AUTO_TEST_CASE(tail_padding_json_suggests_86_85) {
  TempScenario file(PresetScenario("deepseek-v3-nvfp4", 3, 86, 86));
  const auto json = ParseJson(RunDwdp({"validate", file.path.string(), "--format", "json"}));
  BOOST_TEST(json["error"]["check"] == "tail_padding");
  BOOST_TEST(json["error"]["recipes"][0][0] == 86);
  BOOST_TEST(json["error"]["recipes"][0][1] == 85);
}

BOOST_AUTO_TEST_CASE(layout_json_matches_the_spec_golden_values) {
  TempScenario file(PresetScenario("deepseek-v3-nvfp4", 3, 86, 85));
  const auto r = RunDwdp({"layout", file.path.string(), "--format", "json"});
  BOOST_REQUIRE(r.exit_code == 0);
  const auto json = ParseJson(r);
  BOOST_TEST(json["num_experts"] == 256);
  BOOST_TEST(json["granularity"] == 2097152);
  BOOST_TEST(json["pool_page_bytes"] == 16777216);
  BOOST_TEST(json["peer_ranges"] == nlohmann::json::parse("[[0,86],[85,171],[170,256]]"));
  const int expected_pages[] = {253, 256, 253};
  for (int r = 0; r < 3; ++r) {
    const auto& rank = json["ranks"][r];
    BOOST_TEST(rank["rank"] == r);
    BOOST_TEST(rank["pool_pages_per_layer"] == expected_pages[r]);
    BOOST_TEST(rank["slot_pages"].size() == 2u);
    BOOST_TEST(rank["weights"].size() == 4u);
    for (const char* key :
         {"name", "expert_bytes", "page_start", "page_end", "leading_edge", "trailing_edge",
          "mnnvl_size", "pre_size", "pre_padding", "post_size", "post_padding", "total_size"}) {
      BOOST_TEST(rank["weights"][0].contains(key), key);
    }
    uint64_t local = 0;
    for (const auto& w : rank["weights"]) local += w["mnnvl_size"].get<uint64_t>();
    BOOST_TEST(rank["local_bytes_per_layer"].get<uint64_t>() == local);
  }
  // --rank narrows the output to one rank.
  const auto one =
      ParseJson(RunDwdp({"layout", file.path.string(), "--rank", "1", "--format", "json"}));
  BOOST_TEST(one["ranks"].size() == 1u);
  BOOST_TEST(one["ranks"][0]["start"] == 85);
  BOOST_TEST(RunDwdp({"layout", file.path.string(), "--rank", "3"}).exit_code == 2);
}

BOOST_AUTO_TEST_CASE(kimi_k2_validates_and_lays_out_at_d5_d6_d7) {
  // 384 experts: d=5 -> stride 76, size 384 - 4*76 = 80; d=6 -> 64/64; d=7 -> stride 54,
  // size 384 - 6*54 = 60.
  const int recipes[][3] = {{5, 80, 76}, {6, 64, 64}, {7, 60, 54}};
  for (const auto& rec : recipes) {
    TempScenario file(PresetScenario("kimi-k2-nvfp4", rec[0], rec[1], rec[2]));
    const auto v = RunDwdp({"validate", file.path.string(), "--format", "json"});
    BOOST_TEST(v.exit_code == 0, v.err);
    const auto l = RunDwdp({"layout", file.path.string(), "--format", "json"});
    BOOST_TEST(l.exit_code == 0, l.err);
    const auto json = ParseJson(l);
    BOOST_TEST(json["num_experts"] == 384);
    BOOST_TEST(json["ranks"].size() == static_cast<size_t>(rec[0]));
    BOOST_TEST(json["peer_ranges"].back()[1] == 384);
  }
}

BOOST_AUTO_TEST_CASE(world_size_checks_through_the_cli) {
  TempScenario file(PresetScenario("deepseek-v3-nvfp4", 4, 64, 64));
  BOOST_TEST(RunDwdp({"validate", file.path.string(), "--world-size", "4"}).exit_code == 0);
  const auto small =
      ParseJson(RunDwdp({"validate", file.path.string(), "--world-size", "3", "--format", "json"}));
  BOOST_TEST(small["error"]["check"] == "world_size");
  const auto large =
      ParseJson(RunDwdp({"validate", file.path.string(), "--world-size", "6", "--format", "json"}));
  BOOST_TEST(large["error"]["check"] == "group_id");
}

BOOST_AUTO_TEST_CASE(unreadable_files_exit_2_with_one_sentence) {
  for (const std::string& path : {std::string("/nonexistent/dwdp.yaml"), SourcePath("scenarios")}) {
    const auto r = RunDwdp({"validate", path});
    BOOST_TEST(r.exit_code == 2, path);
    BOOST_TEST(r.err.rfind("error: ", 0) == 0u, r.err);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}

BOOST_AUTO_TEST_CASE(malformed_files_exit_2_naming_file_line_col) {
  const auto files = YamlFilesIn("scenarios/malformed");
  BOOST_REQUIRE(files.size() >= 5u);
  const std::regex expect_re("#\\s*expect-error:\\s*(.+)$");
  for (const fs::path& file : files) {
    std::smatch m;
    const std::string first = FirstLine(file);
    BOOST_REQUIRE_MESSAGE(std::regex_search(first, m, expect_re), file << " has no expect-error");
    const auto r = RunDwdp({"validate", file.string()});
    BOOST_TEST(r.exit_code == 2, file << ": " << r.err);
    BOOST_TEST(r.err.find(m[1].str()) != std::string::npos, file << ": " << r.err);
    BOOST_TEST(r.err.find(file.filename().string() + ":") != std::string::npos, r.err);
  }
}

BOOST_AUTO_TEST_CASE(plan_simulate_puts_the_simulator_next_to_the_planner) {
  const auto r = RunDwdp({"plan", SourcePath("scenarios/default.yaml"), "--dwdp-sizes", "4,8",
                          "--num-buffers", "2", "--simulate", "2", "--format", "json"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto json = ParseJson(r);
  BOOST_REQUIRE(json["simulated"].size() == 2u);
  for (const auto& s : json["simulated"]) {
    BOOST_TEST(s["simulation_ok"] == true);
    // Both use one perf model; with the copy hidden (it is at 16K tokens per rank) the
    // simulated forward and the planner's closed form must agree closely.
    const double planned = s["planned_forward_ns"];
    const double simulated = s["simulated_forward_ns"];
    BOOST_TEST(std::abs(simulated - planned) / planned < 0.05, planned << " vs " << simulated);
    BOOST_TEST(s["simulated_prefetch_ns_per_layer"].get<double>() > 0);
  }
}

// gpt-oss-120b round robin at d = 2 makes 408 timed copies per layer (1,224 queue entries) and,
// with 3 buffers, enqueues two layers ahead: more than the 1,021 entries a stream holds, so the
// host blocks and the run says so; rotate makes a few large copies per layer and never fills a
// stream.
BOOST_AUTO_TEST_CASE(a_sim_run_says_when_its_host_blocked_on_a_full_stream) {
  const auto run = [](const std::string& schedule) {
    return RunDwdp({"run", SourcePath("scenarios/gpt-oss-120b-h100x2-64x64.yaml"), "--contention",
                    schedule, "--num-buffers", "3", "--layer-compute-ns", "5600000", "--no-hazards",
                    "--hardware",
                    SourcePath("scenarios/profiles/h200-sxm-x2-measured-2026-11-28.yaml")});
  };
  const auto blocked = run("round_robin");
  BOOST_REQUIRE_MESSAGE(blocked.exit_code == 0, blocked.err);
  BOOST_TEST(blocked.out.find("the host blocked") != std::string::npos, blocked.out);
  const auto free_run = run("rotate");
  BOOST_REQUIRE_MESSAGE(free_run.exit_code == 0, free_run.err);
  BOOST_TEST(free_run.out.find("the host blocked") == std::string::npos, free_run.out);
}

// `dwdp calibrate --from-raw`: the profile of a saved 4x H100 run, without GPUs (this test runs in
// builds with and without the cuda backend).
BOOST_AUTO_TEST_CASE(calibrate_from_raw_writes_a_profile_that_loads) {
  const fs::path dir =
      fs::temp_directory_path() / ("dwdp-cli-calibrate-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string raw = SourcePath("tests/data/calibrate-h100x4-2026-11-28.json");
  const std::string out = (dir / "h100x4-again.yaml").string();
  const auto r = RunDwdp({"calibrate", "--from-raw", raw, "--out", out});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(r.out.find("derived from the raw measurements in " + raw) != std::string::npos);
  BOOST_TEST(r.out.find("schedules: measured vs simulated with the written profile") !=
             std::string::npos);
  BOOST_TEST(r.out.find("base = the 'h100-sxm' preset") != std::string::npos);  // the run's
  const absl::StatusOr<HardwareProfile> profile = LoadHardwareProfileFile(out);
  BOOST_TEST_REQUIRE(profile.ok(), profile.status().ToString());
  BOOST_TEST(profile->name == "h100x4-again");  // the --out file's stem
  BOOST_TEST(profile->gpu_name == "NVIDIA H100 80GB HBM3");
  for (const Quantity* q : {&profile->fabric_bw, &profile->egress_bw, &profile->peer_copy_bw,
                            &profile->copy_latency_on_link}) {
    BOOST_TEST(ProvenanceName(q->source) == ProvenanceName(Provenance::kMeasured));
  }
  BOOST_TEST(profile->fabric_bw.value > 0);

  // --base and --name override the run's.
  const auto renamed = RunDwdp(
      {"calibrate", "--from-raw", raw, "--out", out, "--base", "h200-sxm", "--name", "other"});
  BOOST_TEST(renamed.exit_code == 0, renamed.err);
  BOOST_TEST(renamed.out.find("base = the 'h200-sxm' preset") != std::string::npos);
  BOOST_TEST(LoadHardwareProfileFile(out)->name == "other");
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(calibrate_from_a_missing_or_malformed_raw_file_exits_2_with_one_sentence) {
  const fs::path dir = fs::temp_directory_path() / ("dwdp-cli-raw-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "p.yaml").string();
  const std::string not_json = (dir / "not.json").string();
  std::ofstream(not_json) << "{\"ranks\": [";
  const std::string not_raw = (dir / "run.json").string();
  std::ofstream(not_raw) << R"({"measured_on": "x", "ranks": [{"warnings": []}, {}]})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/nonexistent/raw.json", "cannot read the raw measurements '/nonexistent/raw.json'"},
      {not_json, "are not valid JSON"},
      {not_raw, "is not a `dwdp calibrate --raw` file: ranks[0]: missing 'single_pair'"},
  };
  for (const auto& [raw, expected] : cases) {
    const auto r = RunDwdp({"calibrate", "--from-raw", raw, "--out", out});
    BOOST_TEST(r.exit_code == 2, raw << ": " << r.err);
    BOOST_TEST(r.err.rfind("error: ", 0) == 0u, r.err);
    BOOST_TEST(r.err.find(expected) != std::string::npos, r.err);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  }
  BOOST_TEST(!fs::exists(out));
  // The measuring options mean nothing for a saved run.
  const auto mixed =
      RunDwdp({"calibrate", "--from-raw", not_raw, "--out", out, "--repetitions", "3"});
  BOOST_TEST(mixed.exit_code == 2);
  fs::remove_all(dir);
}

}  // namespace dwdp::testing
