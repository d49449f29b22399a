// `dwdp compare` (core/report/compare.h) on hand-made run reports; relative errors are worked out
// by hand in the comments.

#define BOOST_TEST_MODULE compare
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "core/report/compare.h"
#include "tests/support/run_process.h"

namespace dwdp {
namespace {

namespace tt = boost::test_tools;
using nlohmann::json;

json Layer(int64_t layer, double copy, double compute, double stall) {
  return {{"layer", layer},  {"slot", layer % 2},     {"copy_bytes", 1000},
          {"copy_ns", copy}, {"compute_ns", compute}, {"stall_ns", stall}};
}

// Two ranks, two layers each, in the shape of `dwdp run --format json`.
json Report(const std::string& backend, json rank0_layers, json rank1_layers, double forward_ns,
            double stall_ns) {
  return {{"backend", backend},
          {"mode", "timing"},
          {"scenario", "tiny"},
          {"ok", true},
          {"forwards", 1},
          {"ranks",
           {{{"rank", 0}, {"layers", rank0_layers}, {"peak_device_bytes", 0}},
            {{"rank", 1}, {"layers", rank1_layers}, {"peak_device_bytes", 0}}}},
          {"totals", {{"forward_ns", forward_ns}, {"stall_ns", stall_ns}, {"copy_bytes", 4000}}},
          {"hazards", json::array()},
          {"errors", json::array()}};
}

// Predicted: rank 0 layers (copy, compute, stall) = (100, 50, 0), (200, 50, 10); rank 1 the same.
json Sim() {
  const json layers = {Layer(3, 100, 50, 0), Layer(4, 200, 50, 10)};
  return Report("sim", layers, layers, 1000, 10);
}

// Measured: rank 0 (110, 40, 0), (190, 60, 20): per-layer copy errors 100/110 - 1 = -9.09% and
// 200/190 - 1 = +5.26%, but the means are equal (150 and 150): 0%. Compute means 50 vs 50: 0%.
// Stall means 5 vs 10: -50% (not checked). Rank 1 copies (125, 125): mean 150 vs 125 = +20%.
// Forward 1000 vs 1100: -9.09%.
json Gpu() {
  return Report("cuda", {Layer(3, 110, 40, 0), Layer(4, 190, 60, 20)},
                {Layer(3, 125, 50, 0), Layer(4, 125, 50, 10)}, 1100, 20);
}

BOOST_AUTO_TEST_CASE(relative_errors_by_hand) {
  const auto c = CompareRunReports(Sim(), Gpu(), {.tolerance = 0.25});
  BOOST_REQUIRE(c.ok());
  BOOST_TEST(c->scenario == "tiny");
  BOOST_TEST(c->predicted_backend == "sim");
  BOOST_TEST(c->measured_backend == "cuda");
  BOOST_REQUIRE(c->ranks.size() == 2);
  const RankComparison& r0 = c->ranks[0];
  BOOST_REQUIRE(r0.layers.size() == 2);
  BOOST_TEST(r0.layers[0].layer == 3);
  BOOST_TEST(r0.layers[0].copy_ns.relative_error == 100.0 / 110 - 1, tt::tolerance(1e-12));
  BOOST_TEST(r0.layers[1].copy_ns.relative_error == 200.0 / 190 - 1, tt::tolerance(1e-12));
  BOOST_TEST(r0.layers[0].compute_ns.relative_error == 0.25, tt::tolerance(1e-12));
  BOOST_TEST(!r0.layers[0].copy_ns.checked);
  BOOST_TEST(r0.copy_ns.predicted == 150);
  BOOST_TEST(r0.copy_ns.measured == 150);
  BOOST_TEST(r0.copy_ns.relative_error == 0);
  BOOST_TEST(r0.copy_ns.checked);
  BOOST_TEST(r0.compute_ns.relative_error == 0);
  BOOST_TEST(r0.stall_ns.relative_error == -0.5, tt::tolerance(1e-12));
  BOOST_TEST(r0.stall_ns.exceeded);
  BOOST_TEST(!r0.stall_ns.checked);
  BOOST_TEST(c->ranks[1].copy_ns.relative_error == 0.2, tt::tolerance(1e-12));
  BOOST_TEST(c->forward_ns.relative_error == 1000.0 / 1100 - 1, tt::tolerance(1e-12));
  BOOST_TEST(c->forward_ns.checked);
  BOOST_TEST(c->stall_ns.relative_error == -0.5, tt::tolerance(1e-12));
  // 20% and 9.09% are inside 25%; the -50% stall is not checked.
  BOOST_TEST(c->within_tolerance());
}

BOOST_AUTO_TEST_CASE(tolerance_decides_on_mean_copy_time_and_forward_time) {
  // 10%: rank 1's +20% copy fails, the -9.09% forward passes.
  const auto ten = CompareRunReports(Sim(), Gpu(), {.tolerance = 0.10});
  BOOST_REQUIRE(ten.ok());
  BOOST_TEST(!ten->within_tolerance());
  BOOST_REQUIRE(ten->failures.size() == 1);
  BOOST_TEST(absl::StrContains(ten->failures[0], "rank 1"));
  BOOST_TEST(absl::StrContains(ten->failures[0], "+20.0%"));
  // 5%: the forward fails too.
  const auto five = CompareRunReports(Sim(), Gpu(), {.tolerance = 0.05});
  BOOST_REQUIRE(five.ok());
  BOOST_TEST(five->failures.size() == 2);
  BOOST_TEST(absl::StrContains(five->failures[1], "forward time"));
  // A report against itself is exact.
  const auto same = CompareRunReports(Sim(), Sim(), {});
  BOOST_REQUIRE(same.ok());
  BOOST_TEST(same->within_tolerance());
  BOOST_TEST(same->forward_ns.relative_error == 0);
}

BOOST_AUTO_TEST_CASE(zero_measurements) {
  const ComparedValue both_zero = CompareValue(0, 0, 0.1, true);
  BOOST_TEST(both_zero.relative_error == 0);
  BOOST_TEST(!both_zero.exceeded);
  const ComparedValue predicted_only = CompareValue(5, 0, 0.1, true);
  BOOST_TEST(std::isinf(predicted_only.relative_error));
  BOOST_TEST(predicted_only.exceeded);
  // JSON has no infinity: null.
  json sim = Sim();
  json gpu = Sim();
  gpu["totals"]["stall_ns"] = 0;
  const auto c = CompareRunReports(sim, gpu, {});
  BOOST_REQUIRE(c.ok());
  BOOST_TEST(c->ToJson()["totals"]["stall_ns"]["relative_error"].is_null());
  BOOST_TEST(c->within_tolerance());  // stall is not checked
}

BOOST_AUTO_TEST_CASE(text_and_json_outputs) {
  const auto c = CompareRunReports(Sim(), Gpu(), {.tolerance = 0.10});
  BOOST_REQUIRE(c.ok());
  const std::string text = c->ToText(false);
  BOOST_TEST(absl::StrContains(text, "+20.0% FAIL"));
  BOOST_TEST(absl::StrContains(text, "beyond tolerance"));
  BOOST_TEST(absl::StrContains(text, "largest per-layer copy error at layer 3: -9.1%"));
  BOOST_TEST(absl::StrContains(c->ToText(true), "layer 4"));
  const json j = c->ToJson();
  BOOST_TEST(j["within_tolerance"] == false);
  BOOST_TEST(j["ranks"][1]["mean_over_layers"]["copy_ns"]["relative_error"].get<double>() == 0.2,
             tt::tolerance(1e-12));
  BOOST_TEST(j["ranks"][0]["layers"].size() == 2u);
  BOOST_TEST(j["failures"].size() == 1u);
}

BOOST_AUTO_TEST_CASE(swapped_and_failed_reports_warn) {
  json gpu = Gpu();
  gpu["ok"] = false;
  const auto c = CompareRunReports(gpu, Sim(), {.tolerance = 0.5});
  BOOST_REQUIRE(c.ok());
  BOOST_REQUIRE(c->warnings.size() == 2);
  BOOST_TEST(absl::StrContains(c->warnings[0], "run failed"));
  BOOST_TEST(absl::StrContains(c->warnings[1], "swapped"));
}

BOOST_AUTO_TEST_CASE(a_measurement_that_does_not_repeat_within_the_tolerance_is_flagged) {
  // Three measured forwards of 1000, 1100 and 1200 ns: (1200 - 1000) / 1100 = 18.2% apart,
  // more than a 10% tolerance.
  json noisy = Gpu();
  noisy["totals"]["forward_ns_each"] = {1000, 1100, 1200};
  const auto c = CompareRunReports(Sim(), noisy, {.tolerance = 0.1});
  BOOST_REQUIRE(c.ok());
  BOOST_REQUIRE(c->measured_forward_spread.has_value());
  BOOST_TEST(*c->measured_forward_spread == 200.0 / 1100, tt::tolerance(1e-12));
  BOOST_REQUIRE(c->warnings.size() == 1u);
  BOOST_TEST(absl::StrContains(c->warnings[0], "differ by 18% among themselves"));
  BOOST_TEST(c->ToJson()["measured_forward_spread"].get<double>() == 200.0 / 1100,
             tt::tolerance(1e-12));
  // 1090 and 1110: 1.8% apart, no warning; the spread is still reported.
  json steady = Gpu();
  steady["totals"]["forward_ns_each"] = {1090, 1110};
  const auto d = CompareRunReports(Sim(), steady, {.tolerance = 0.1});
  BOOST_REQUIRE(d.ok());
  BOOST_TEST(*d->measured_forward_spread == 20.0 / 1100, tt::tolerance(1e-12));
  BOOST_TEST(d->warnings.empty());
  // One forward, or a report without the key: nothing to say.
  const auto e = CompareRunReports(Sim(), Gpu(), {.tolerance = 0.1});
  BOOST_REQUIRE(e.ok());
  BOOST_TEST(!e->measured_forward_spread.has_value());
  BOOST_TEST(e->ToJson()["measured_forward_spread"].is_null());
}

BOOST_AUTO_TEST_CASE(reports_that_cannot_be_compared) {
  const auto error = [](const json& a, const json& b) {
    const auto c = CompareRunReports(a, b, {});
    BOOST_REQUIRE(!c.ok());
    BOOST_TEST(absl::IsInvalidArgument(c.status()));
    return std::string(c.status().message());
  };
  json other = Gpu();
  other["scenario"] = "other";
  BOOST_TEST(absl::StrContains(error(Sim(), other), "different scenarios"));
  json one_rank = Gpu();
  one_rank["ranks"].erase(1);
  BOOST_TEST(absl::StrContains(error(Sim(), one_rank), "numbers of ranks"));
  json other_layer = Gpu();
  other_layer["ranks"][0]["layers"][1]["layer"] = 5;
  BOOST_TEST(absl::StrContains(error(Sim(), other_layer), "layer 4"));
  json no_totals = Gpu();
  no_totals.erase("totals");
  BOOST_TEST(absl::StrContains(error(Sim(), no_totals), "measured report: missing key 'totals'"));
  json text_copy = Gpu();
  text_copy["ranks"][0]["layers"][0]["copy_ns"] = "fast";
  BOOST_TEST(absl::StrContains(error(Sim(), text_copy),
                               "measured report: ranks[0].layers[0].copy_ns: expected a number"));
  json negative = Sim();
  negative["totals"]["forward_ns"] = -1;
  BOOST_TEST(absl::StrContains(error(negative, Gpu()), "predicted report: totals.forward_ns"));
  BOOST_TEST(absl::StrContains(error(json::array(), Gpu()), "a JSON object"));
  const auto bad_tolerance = CompareRunReports(Sim(), Gpu(), {.tolerance = 0});
  BOOST_TEST(!bad_tolerance.ok());
}

BOOST_AUTO_TEST_CASE(command_exit_codes) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("dwdp-compare-test-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  const std::string sim = write("sim.json", Sim().dump(2));
  const std::string gpu = write("gpu.json", Gpu().dump(2));
  const std::string broken = write("broken.json", "{\"backend\": ");
  const auto same = testing::RunDwdp({"compare", sim, sim});
  BOOST_TEST(same.exit_code == 0, same.err);
  BOOST_TEST(absl::StrContains(same.out, "within tolerance"));
  const auto off = testing::RunDwdp({"compare", sim, gpu});
  BOOST_TEST(off.exit_code == 1);
  BOOST_TEST(absl::StrContains(off.err, "rank 1"));
  const auto loose = testing::RunDwdp({"compare", sim, gpu, "--tolerance", "0.25"});
  BOOST_TEST(loose.exit_code == 0, loose.err);
  const auto as_json = testing::RunDwdp({"compare", sim, gpu, "--format", "json"});
  BOOST_TEST(as_json.exit_code == 1);
  BOOST_TEST(json::parse(as_json.out)["within_tolerance"] == false);
  const auto missing = testing::RunDwdp({"compare", sim, dir + "/nope.json"});
  BOOST_TEST(missing.exit_code == 2);
  BOOST_TEST(absl::StrContains(missing.err, "cannot read the measured report"));
  const auto malformed = testing::RunDwdp({"compare", broken, gpu});
  BOOST_TEST(malformed.exit_code == 2);
  BOOST_TEST(absl::StrContains(malformed.err, "not valid JSON"));
  const auto usage = testing::RunDwdp({"compare", sim});
  BOOST_TEST(usage.exit_code == 2);
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(real_simulator_reports_compare) {
  // Two simulator runs of one scenario on different profiles: the command reads real reports.
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("dwdp-compare-sim-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  const std::string scenario = testing::SourcePath("scenarios/sim-small-d4-4x4.yaml");
  const auto a = testing::RunDwdp({"run", scenario, "--format", "json"});
  const auto b =
      testing::RunDwdp({"run", scenario, "--format", "json", "--hardware", "gb200-nvl72"});
  BOOST_REQUIRE(a.exit_code == 0);
  BOOST_REQUIRE(b.exit_code == 0);
  std::ofstream(dir + "/a.json") << a.out;
  std::ofstream(dir + "/b.json") << b.out;
  const auto same = testing::RunDwdp({"compare", dir + "/a.json", dir + "/a.json"});
  BOOST_TEST(same.exit_code == 0, same.err);
  const auto differ =
      testing::RunDwdp({"compare", dir + "/a.json", dir + "/b.json", "--format", "json"});
  BOOST_TEST((differ.exit_code == 0 || differ.exit_code == 1), differ.err);
  BOOST_TEST(json::parse(differ.out)["ranks"].size() == 4u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dwdp
