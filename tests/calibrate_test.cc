// The arithmetic, the derivation from raw measurements and the profile writing of `dwdp
// calibrate` (core/calibrate), which run on rank 0 after the GPU measurements or on a saved raw
// file (--from-raw). Expected values are worked out by hand in the comments, never taken from
// the code under test.

#define BOOST_TEST_MODULE calibrate
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "backends/sim/copy_schedules.h"
#include "core/calibrate/calibration.h"
#include "core/calibrate/copy_schedule.h"
#include "core/calibrate/derive.h"
#include "core/calibrate/fit.h"
#include "core/calibrate/raw.h"
#include "core/config/loader.h"
#include "core/util/bytes.h"
#include "tests/support/profile_quantities.h"
#include "tests/support/run_process.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

namespace tt = boost::test_tools;

BOOST_AUTO_TEST_CASE(exact_line_is_recovered_by_both_weightings) {
  // 4 us + bytes / (400 GB/s): 400 bytes per ns.
  //   1 MiB:  4000 + 1048576 / 400    =     6621.44 ns
  //  16 MiB:  4000 + 16777216 / 400   =    45943.04 ns
  //   1 GiB:  4000 + 1073741824 / 400 =  2688354.56 ns
  const std::vector<CopySample> samples = {
      {1048576, 6621.44}, {16777216, 45943.04}, {1073741824, 2688354.56}, {1048576, 6621.44}};
  for (FitWeighting w : {FitWeighting::kUniform, FitWeighting::kRelative}) {
    const absl::StatusOr<LatencyBandwidthFit> fit = FitLatencyBandwidth(samples, w);
    BOOST_REQUIRE(fit.ok());
    BOOST_TEST(fit->latency_ns == 4000.0, tt::tolerance(1e-6));
    BOOST_TEST(fit->bytes_per_s == 400e9, tt::tolerance(1e-9));
    BOOST_TEST(fit->samples == 4);
    BOOST_TEST(fit->max_relative_residual < 1e-9);
    BOOST_TEST(fit->rms_relative_residual < 1e-9);
    BOOST_TEST(fit->r_squared == 1.0, tt::tolerance(1e-9));
    BOOST_TEST(fit->PredictNs(64 * kMiB) == 4000 + 67108864 / 400.0, tt::tolerance(1e-9));
  }
}

BOOST_AUTO_TEST_CASE(uniform_least_squares_by_hand) {
  // (x, t) = (1, 3), (2, 5), (3, 8): mean x 2, mean t 16/3; Sxx = 2,
  // Sxt = (-1)(3 - 16/3) + (1)(8 - 16/3) = 7/3 + 8/3 = 5 -> slope 2.5 ns/byte (4e8 bytes/s),
  // intercept 16/3 - 2 * 2.5 = 1/3.
  // Predictions 17/6, 16/3, 47/6: residuals 1/6, 1/3, 1/6; relative 1/18, 1/15, 1/48.
  // rms = sqrt((1/324 + 1/225 + 1/2304) / 3); SSres = 1/36 + 4/36 + 1/36 = 1/6;
  // SStot = (49 + 1 + 64) / 9 = 114/9 -> R^2 = 1 - (1/6) / (114/9) = 1 - 9/684.
  const std::vector<CopySample> samples = {{1, 3}, {2, 5}, {3, 8}};
  const absl::StatusOr<LatencyBandwidthFit> fit =
      FitLatencyBandwidth(samples, FitWeighting::kUniform);
  BOOST_REQUIRE(fit.ok());
  BOOST_TEST(fit->latency_ns == 1.0 / 3, tt::tolerance(1e-12));
  BOOST_TEST(fit->bytes_per_s == 4e8, tt::tolerance(1e-12));
  BOOST_TEST(fit->max_relative_residual == 1.0 / 15, tt::tolerance(1e-12));
  BOOST_TEST(fit->rms_relative_residual == std::sqrt((1.0 / 324 + 1.0 / 225 + 1.0 / 2304) / 3),
             tt::tolerance(1e-12));
  BOOST_TEST(fit->r_squared == 1.0 - 9.0 / 684, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(relative_weighting_by_hand) {
  // (x, t) = (1, 2), (2, 4), (3, 4), weights 1/t^2 = 1/4, 1/16, 1/16 (sum 3/8).
  // Weighted means: x = (1/4 + 2/16 + 3/16) / (3/8) = 1.5; t = (2/4 + 4/16 + 4/16) / (3/8) = 8/3.
  // Sxx = 1/4 * 0.25 + 1/16 * 0.25 + 1/16 * 2.25 = 7/32;
  // Sxt = 1/4 * (-0.5)(-2/3) + 1/16 * 0.5 * 4/3 + 1/16 * 1.5 * 4/3 = 1/12 + 1/24 + 1/8 = 1/4.
  // slope = (1/4) / (7/32) = 8/7 ns/byte; intercept = 8/3 - 1.5 * 8/7 = 20/21.
  // (Unweighted the same points give slope 1 and intercept 4/3: the weighting matters.)
  const std::vector<CopySample> samples = {{1, 2}, {2, 4}, {3, 4}};
  const absl::StatusOr<LatencyBandwidthFit> rel =
      FitLatencyBandwidth(samples, FitWeighting::kRelative);
  BOOST_REQUIRE(rel.ok());
  BOOST_TEST(rel->latency_ns == 20.0 / 21, tt::tolerance(1e-12));
  BOOST_TEST(rel->bytes_per_s == 1e9 * 7 / 8, tt::tolerance(1e-12));
  const absl::StatusOr<LatencyBandwidthFit> uni =
      FitLatencyBandwidth(samples, FitWeighting::kUniform);
  BOOST_REQUIRE(uni.ok());
  BOOST_TEST(uni->latency_ns == 4.0 / 3, tt::tolerance(1e-12));
  BOOST_TEST(uni->bytes_per_s == 1e9, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(relative_weighting_keeps_a_small_latency_next_to_noisy_large_copies) {
  // 4 us + 400 bytes/ns, with the 1 GiB copies off by +-0.5% (+-13.4 us, three times the
  // latency). Unweighted, that noise lands in the intercept; weighted by 1/t^2 the small copies
  // pin it.
  std::vector<CopySample> samples;
  for (double bytes : {262144.0, 1048576.0, 4194304.0}) {
    samples.push_back({bytes, 4000 + bytes / 400});
  }
  const double big = 4000 + 1073741824 / 400.0;
  samples.push_back({1073741824, big * 1.005});
  samples.push_back({1073741824, big * 1.005});
  samples.push_back({536870912, (4000 + 536870912 / 400.0) * 0.995});
  const auto rel = FitLatencyBandwidth(samples, FitWeighting::kRelative);
  const auto uni = FitLatencyBandwidth(samples, FitWeighting::kUniform);
  BOOST_REQUIRE(rel.ok());
  BOOST_REQUIRE(uni.ok());
  BOOST_TEST(std::abs(rel->latency_ns - 4000) < 100);
  BOOST_TEST(std::abs(uni->latency_ns - 4000) > std::abs(rel->latency_ns - 4000));
}

BOOST_AUTO_TEST_CASE(fit_refuses_what_is_not_a_line) {
  const auto message = [](std::vector<CopySample> s) {
    const auto fit = FitLatencyBandwidth(s, FitWeighting::kRelative);
    BOOST_REQUIRE(!fit.ok());
    BOOST_TEST(absl::IsInvalidArgument(fit.status()));
    return std::string(fit.status().message());
  };
  BOOST_TEST(absl::StrContains(message({}), "two distinct copy sizes"));
  BOOST_TEST(absl::StrContains(message({{1024, 10}, {1024, 11}}), "two distinct copy sizes"));
  BOOST_TEST(absl::StrContains(message({{1024, 10}, {2048, 0}}), "sample 1"));
  BOOST_TEST(absl::StrContains(message({{1024, 10}, {2048, NAN}}), "sample 1"));
  BOOST_TEST(absl::StrContains(message({{1024, 10}, {2048, 5}}), "does not grow"));
}

BOOST_AUTO_TEST_CASE(summaries) {
  const Summary even = Summarize({3, 1, 2, 10});
  BOOST_TEST(even.count == 4);
  BOOST_TEST(even.min == 1);
  BOOST_TEST(even.max == 10);
  BOOST_TEST(even.median == 2.5);
  BOOST_TEST(even.mean == 4);
  BOOST_TEST(even.spread == 3.6);  // (10 - 1) / 2.5
  const Summary odd = Summarize({5, 1, 3});
  BOOST_TEST(odd.median == 3);
  const Summary none = Summarize({});
  BOOST_TEST(none.count == 0);
  BOOST_TEST(none.median == 0);
}

// ---------------------------------------------------------------------------------------------
// The roofline fit to MoE layer times.

// Times made by the roofline with 1 PFLOP/s x 0.55 and 3 TB/s x 0.85, plus 6 us of fixed cost:
// math 1e12 FLOP takes 1e12 / 0.55e15 s = 1818181.8 ns, 1e9 bytes take 1e9 / 2.55e12 s
// = 392156.9 ns.
std::vector<RooflinePoint> SyntheticRoofline() {
  std::vector<RooflinePoint> points;
  for (const auto& [flops, bytes] : std::vector<std::pair<double, double>>{
           {1e10, 1e9}, {2e10, 1.2e9}, {1e11, 1.5e9}, {1e12, 1e9}, {4e12, 2e9}, {8e12, 3e9}}) {
    const double ns = std::max(flops / 0.55e15, bytes / 2.55e12) * 1e9 + 6000;
    points.push_back({flops, bytes, 6000, ns});
  }
  return points;
}

BOOST_AUTO_TEST_CASE(roofline_fit_recovers_the_efficiencies_that_made_the_times) {
  const absl::StatusOr<RooflineFit> fit = FitRoofline(SyntheticRoofline(), 1e15, 3e12);
  BOOST_TEST_REQUIRE(fit.ok(), fit.status().ToString());
  BOOST_REQUIRE(fit->compute_efficiency.has_value());
  BOOST_REQUIRE(fit->memory_efficiency.has_value());
  BOOST_TEST(*fit->compute_efficiency == 0.55, tt::tolerance(1e-9));
  BOOST_TEST(*fit->memory_efficiency == 0.85, tt::tolerance(1e-9));
  // 1e10 FLOP / 1e9 B: 18182 ns of math vs 392157 of memory; the first three points are
  // memory-bound (1e11 / 1.5e9: 181818 vs 588235), the last three compute-bound.
  BOOST_TEST(fit->memory_bound == 3);
  BOOST_TEST(fit->compute_bound == 3);
  BOOST_TEST(fit->max_relative_residual < 1e-9);
}

BOOST_AUTO_TEST_CASE(roofline_fit_with_noise_stays_close) {
  // Every other time 2% slow: the efficiencies stay within a few percent.
  std::vector<RooflinePoint> points = SyntheticRoofline();
  for (size_t i = 0; i < points.size(); i += 2) points[i].measured_ns *= 1.02;
  const absl::StatusOr<RooflineFit> fit = FitRoofline(points, 1e15, 3e12);
  BOOST_TEST_REQUIRE(fit.ok(), fit.status().ToString());
  BOOST_TEST(*fit->compute_efficiency == 0.55, tt::tolerance(0.03));
  BOOST_TEST(*fit->memory_efficiency == 0.85, tt::tolerance(0.03));
  BOOST_TEST(fit->rms_relative_residual > 0.001);
}

BOOST_AUTO_TEST_CASE(roofline_fit_leaves_a_side_no_point_reaches_unset) {
  // Only the memory-bound points: nothing says how fast the math is.
  std::vector<RooflinePoint> points = SyntheticRoofline();
  points.resize(3);
  const absl::StatusOr<RooflineFit> fit = FitRoofline(points, 1e15, 3e12);
  BOOST_TEST_REQUIRE(fit.ok(), fit.status().ToString());
  BOOST_TEST(!fit->compute_efficiency.has_value());
  BOOST_TEST(*fit->memory_efficiency == 0.85, tt::tolerance(1e-9));
  // A point no slower than its fixed cost says nothing either: left out and counted.
  points.push_back({1e9, 1e6, 6000, 5000});
  const absl::StatusOr<RooflineFit> with_fast = FitRoofline(points, 1e15, 3e12);
  BOOST_TEST_REQUIRE(with_fast.ok());
  BOOST_TEST(with_fast->below_fixed_cost == 1);
  BOOST_TEST(*with_fast->memory_efficiency == 0.85, tt::tolerance(1e-9));
  // Refused: too few points, a bad number, a bad peak.
  BOOST_TEST(!FitRoofline({points[0]}, 1e15, 3e12).ok());
  BOOST_TEST(!FitRoofline({points[0], {1e9, NAN, 0, 1000}}, 1e15, 3e12).ok());
  BOOST_TEST(!FitRoofline(points, 0, 3e12).ok());
}

BOOST_AUTO_TEST_CASE(measured_on_line) {
  BOOST_TEST(MeasuredOnLine("NVIDIA H100 80GB HBM3", 4, "580.95.05", 13000, "2026-11-28") ==
             "NVIDIA H100 80GB HBM3 ×4, driver 580.95.05 / CUDA 13.0, 2026-11-28");
  BOOST_TEST(MeasuredOnLine("NVIDIA H200", 2, "", 12080, "2026-11-29") ==
             "NVIDIA H200 ×2, driver CUDA 12.8, 2026-11-29");
  BOOST_TEST(MeasuredOnLine("GPU", 2, "", 0, "2026-11-29") == "GPU ×2, 2026-11-29");
}

// ---------------------------------------------------------------------------------------------
// The copy schedules as calibrate times them and the simulator replays them.

BOOST_AUTO_TEST_CASE(schedules_visit_the_peers_in_their_order) {
  using C = ScheduledCopy;
  // Rank 1 of 4, 8 MiB from each peer.
  const uint64_t b = 8 * kMiB;
  BOOST_TEST((ScheduleCopies(CopySchedule::kRotate, 1, 4, b, 2 * kMiB) ==
              std::vector<C>{{0, 2, 0, b}, {0, 3, 0, b}, {0, 0, 0, b}}));
  BOOST_TEST((ScheduleCopies(CopySchedule::kAscending, 1, 4, b, 2 * kMiB) ==
              std::vector<C>{{0, 0, 0, b}, {0, 2, 0, b}, {0, 3, 0, b}}));
  // One stream per peer, numbered by the peer's place in rank order.
  BOOST_TEST((ScheduleCopies(CopySchedule::kConcurrentStreams, 1, 4, b, 2 * kMiB) ==
              std::vector<C>{{0, 0, 0, b}, {1, 2, 0, b}, {2, 3, 0, b}}));
}

BOOST_AUTO_TEST_CASE(round_robin_takes_a_piece_of_every_peer_in_turn) {
  using C = ScheduledCopy;
  // 5 MiB per peer in 2 MiB pieces: two rounds, the last 1 MiB dropped.
  const uint64_t p = 2 * kMiB;
  BOOST_TEST((ScheduleCopies(CopySchedule::kRoundRobinPieces, 2, 3, 5 * kMiB, p) ==
              std::vector<C>{{0, 0, 0, p}, {0, 1, 0, p}, {0, 0, p, p}, {0, 1, p, p}}));
  BOOST_TEST((ScheduleCopies(CopySchedule::kRoundRobinPieces, 0, 3, 4 * kMiB, p) ==
              std::vector<C>{{0, 1, 0, p}, {0, 2, 0, p}, {0, 1, p, p}, {0, 2, p, p}}));
  // Rank order within a round: rank 1 of 3 starts every round on rank 0 (rotate: on rank 2).
  BOOST_TEST((ScheduleCopies(CopySchedule::kRoundRobinPiecesAscending, 1, 3, 2 * kMiB, p) ==
              std::vector<C>{{0, 0, 0, p}, {0, 2, 0, p}}));
  BOOST_TEST((ScheduleCopies(CopySchedule::kRoundRobinPieces, 1, 3, 2 * kMiB, p) ==
              std::vector<C>{{0, 2, 0, p}, {0, 0, 0, p}}));
  BOOST_TEST(ScheduleCopies(CopySchedule::kRoundRobinPieces, 0, 1, 4 * kMiB, p).empty());
  BOOST_TEST(ScheduleCopies(CopySchedule::kRotate, 0, 2, 0, p).empty());
}

// What a 4-GPU calibration could produce (numbers of the order of HARDWARE.md's).
CalibrationMeasurements SomeMeasurements() {
  CalibrationMeasurements m;
  m.granularity = 2097152;
  m.peer_copy_bw = 391.3e9;
  m.copy_latency_ns = 4211.7;
  m.local_copy_bw = 1471.9e9;
  m.hbm_bytes = 85520809984;
  m.concurrent_pull_efficiency = 0.512;
  m.compute_slowdown = 0.013;
  m.host_issue_ns = 2380.5;
  m.event_ns = 611.25;
  m.map_ns = 16912.3;
  m.imex_permitted = false;
  return m;
}

BOOST_AUTO_TEST_CASE(calibration_replaces_only_what_was_measured) {
  const HardwareProfile base = HardwarePreset("h100-sxm").value();
  CalibrationMeasurements m;
  m.peer_copy_bw = 390e9;
  m.copy_latency_ns = -250;             // fit noise around zero
  m.concurrent_pull_efficiency = 1.07;  // beat the pair fit by noise
  m.compute_slowdown = -0.004;
  m.fabric_bw = 0;                // measured: the fabric does not limit
  m.copy_latency_on_link = 1.02;  // a fraction
  const HardwareProfile hw =
      ApplyCalibration(base, m, {"h100-x4-measured", "NVIDIA H100 80GB HBM3", "on a test"});
  BOOST_TEST(hw.name == "h100-x4-measured");
  BOOST_TEST(hw.gpu_name == "NVIDIA H100 80GB HBM3");
  BOOST_TEST(hw.measured_on == "on a test");
  BOOST_TEST(hw.peer_copy_bw.value == 390e9);
  BOOST_TEST(ProvenanceName(hw.peer_copy_bw.source) == ProvenanceName(Provenance::kMeasured));
  BOOST_TEST(hw.copy_latency_ns.value == 0);
  BOOST_TEST(hw.concurrent_pull_efficiency.value == 1);
  BOOST_TEST(hw.compute_slowdown.value == 0);
  BOOST_TEST(ProvenanceName(hw.compute_slowdown.source) == ProvenanceName(Provenance::kMeasured));
  BOOST_TEST(hw.fabric_bw.value == 0);
  BOOST_TEST(ProvenanceName(hw.fabric_bw.source) == ProvenanceName(Provenance::kMeasured));
  BOOST_TEST(hw.copy_latency_on_link.value == 1);
  // Not measured: the base's value and provenance stay.
  BOOST_TEST(hw.nvlink_bw.value == base.nvlink_bw.value);
  BOOST_TEST(ProvenanceName(hw.nvlink_bw.source) == ProvenanceName(base.nvlink_bw.source));
  BOOST_TEST(hw.host_issue_ns.value == base.host_issue_ns.value);
  BOOST_TEST(ProvenanceName(hw.host_issue_ns.source) == ProvenanceName(base.host_issue_ns.source));
  BOOST_TEST(hw.imex_permitted == base.imex_permitted);
  BOOST_TEST(hw.egress_bw.value == base.egress_bw.value);
  BOOST_TEST(ProvenanceName(hw.egress_bw.source) == ProvenanceName(base.egress_bw.source));
}

BOOST_AUTO_TEST_CASE(calibrated_profile_round_trips_through_yaml_and_drives_the_simulator) {
  const HardwareProfile base = HardwarePreset("h100-sxm").value();
  const std::string measured_on =
      MeasuredOnLine("NVIDIA H100 80GB HBM3", 4, "580.95.05", 13000, "2026-11-28");
  const HardwareProfile written = ApplyCalibration(
      base, SomeMeasurements(), {"h100-sxm-x4-measured", "NVIDIA H100 80GB HBM3", measured_on});
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("dwdp-calibrate-test-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/profile.yaml";
  {
    std::ofstream out(path);
    out << HardwareProfileToYaml(written);
  }
  const absl::StatusOr<HardwareProfile> loaded = LoadHardwareProfileFile(path);
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.status().ToString());
  BOOST_TEST(loaded->name == "h100-sxm-x4-measured");
  BOOST_TEST(loaded->gpu_name == "NVIDIA H100 80GB HBM3");
  BOOST_TEST(loaded->measured_on == measured_on);  // the multiplication sign survives
  BOOST_TEST(loaded->imex_permitted == false);
  BOOST_TEST(loaded->fabric_supported == written.fabric_supported);
  testing::ExpectSameQuantities(written, *loaded);
  BOOST_TEST(ProvenanceName(loaded->map_ns.source) == ProvenanceName(Provenance::kMeasured));
  BOOST_TEST(ProvenanceName(loaded->flops_fp8.source) == ProvenanceName(Provenance::kSpec));

  // The simulator takes it as --hardware.
  const testing::ProcessResult run =
      testing::RunDwdp({"run", testing::SourcePath("scenarios/sim-small-d4-4x4.yaml"), "--hardware",
                        path, "--format", "json"});
  BOOST_TEST(run.exit_code == 0, run.err);
  BOOST_TEST(absl::StrContains(run.out, "\"backend\": \"sim\""));
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(calibrate_usage_errors_exit_2_before_touching_a_gpu) {
  const auto bad_dir = testing::RunDwdp({"calibrate", "--out", "/nonexistent-dir/p.yaml"});
  BOOST_TEST(bad_dir.exit_code == 2);
  BOOST_TEST(absl::StrContains(bad_dir.err, "does not exist"));
  const auto bad_base = testing::RunDwdp({"calibrate", "--out", "p.yaml", "--base", "gb300"});
  BOOST_TEST(bad_base.exit_code == 2);
  BOOST_TEST(absl::StrContains(bad_base.err, "gb300"));
  const auto bad_size =
      testing::RunDwdp({"calibrate", "--out", "p.yaml", "--max-bytes", "12 apples"});
  BOOST_TEST(bad_size.exit_code == 2);
  BOOST_TEST(absl::StrContains(bad_size.err, "--max-bytes"));
  const auto tiny = testing::RunDwdp({"calibrate", "--out", "p.yaml", "--max-bytes", "1MiB"});
  BOOST_TEST(tiny.exit_code == 2);
  const auto no_out = testing::RunDwdp({"calibrate"});
  BOOST_TEST(no_out.exit_code == 2);
}

// ---------------------------------------------------------------------------------------------
// Derivation from raw measurements (core/calibrate/derive.h).

const CopyScheduleSimulator kSimulator = sim::SimulateCopySchedule;

CalibrationRaw ParseOrDie(const nlohmann::json& j) {
  absl::StatusOr<CalibrationRaw> raw = ParseCalibrationRaw(j);
  BOOST_TEST_REQUIRE(raw.ok(), raw.status().ToString());
  return *std::move(raw);
}

CalibrationDerivation DeriveOrDie(
    const nlohmann::json& j, const HardwareProfile& base = HardwarePreset("h100-sxm").value()) {
  absl::StatusOr<CalibrationDerivation> d = DeriveCalibration(ParseOrDie(j), base, kSimulator);
  BOOST_TEST_REQUIRE(d.ok(), d.status().ToString());
  return *std::move(d);
}

nlohmann::json H100x4Raw() {
  std::ifstream in(testing::SourcePath("tests/data/calibrate-h100x4-2026-11-28.json"));
  BOOST_TEST_REQUIRE(static_cast<bool>(in));
  return nlohmann::json::parse(in);
}

bool HasNote(const CalibrationDerivation& d, const std::string& text) {
  for (const std::string& note : d.notes) {
    if (absl::StrContains(note, text)) return true;
  }
  return false;
}

// The raw file of the 4x H100 run of 2026-11-28 (`dwdp calibrate --raw`), with the machine record
// that run did not write yet added by hand from its printed output and its profile.
BOOST_AUTO_TEST_CASE(derivation_of_the_h100x4_run) {
  const CalibrationDerivation d = DeriveOrDie(H100x4Raw());
  // The numbers the GPU run itself wrote into its profile (commit 4063cc6): moving the
  // derivation out of the GPU path changed none of them.
  BOOST_TEST(*d.m.peer_copy_bw == 395755053167.90765, tt::tolerance(1e-12));
  BOOST_TEST(*d.m.copy_latency_ns == 6266.46930934547, tt::tolerance(1e-12));
  BOOST_TEST(*d.m.local_copy_bw == 1500880314110.6616, tt::tolerance(1e-12));
  BOOST_TEST(*d.m.hbm_bytes == 85017493504.0);
  BOOST_TEST(*d.m.granularity == 2097152.0);
  BOOST_TEST(*d.m.compute_slowdown == 0.00245253867548878, tt::tolerance(1e-12));
  BOOST_TEST(*d.m.host_issue_ns == 15406.71875, tt::tolerance(1e-12));
  BOOST_TEST(*d.m.event_ns == 695.576171875, tt::tolerance(1e-12));
  BOOST_TEST(*d.m.map_ns == 42416.916666666664, tt::tolerance(1e-12));
  BOOST_TEST(*d.m.imex_permitted == false);  // posix_fd handles
  BOOST_TEST(d.gpu_name == "NVIDIA H100 80GB HBM3");

  // fabric_bw: every rank pulled 3 x 512 MiB = 1610612736 B in "concurrent streams"; its 20
  // spans (4 ranks x 5 repetitions) sorted have 5770976.07 and 5787551.64 ns in the middle, so
  // the median rate is (1610612736 / 5770976.07 + 1610612736 / 5787551.64) / 2 ns
  // = (279.0884 + 278.2891) / 2 = 278.6888 GB/s; 1610612736 B over the median span 5779263.85 ns
  // is 278.6882 GB/s. That is 0.70 x the pair's 395.76 GB/s: a fabric limit.
  BOOST_TEST(*d.m.fabric_bw == 278.6888e9, tt::tolerance(1e-5));
  BOOST_TEST(*d.m.fabric_bw == 1610612736 / 5779263.854e-9, tt::tolerance(1e-5));

  // egress_bw: the file has only durations, so the sum of the three pullers' median rates:
  // 536870912 B over 3183552.03, 2711903.93 and 3246463.78 ns = 168.639 + 197.968 + 165.371
  // = 531.978 GB/s, with a note.
  BOOST_TEST(*d.m.egress_bw == 531.978e9, tt::tolerance(1e-5));
  BOOST_TEST((d.egress_from_union == std::optional<bool>(false)));
  BOOST_TEST(HasNote(d, "egress_bw is the sum"));

  // copy_latency_on_link: a fraction whose round robin replay comes within 3% of the measured
  // critical path (the median of the five slowest-rank spans: 12633375.17 ns).
  BOOST_REQUIRE(d.m.copy_latency_on_link.has_value());
  BOOST_TEST(*d.m.copy_latency_on_link >= 0.0);
  BOOST_TEST(*d.m.copy_latency_on_link <= 1.0);
  const ScheduleFit& rr = d.schedules.at(CopySchedule::kRoundRobinPieces);
  BOOST_TEST(rr.measured_ns == 12633375.16784668, tt::tolerance(1e-12));
  BOOST_TEST(std::abs(rr.simulated_ns / rr.measured_ns - 1) <= 0.03);
  // Every schedule is compared with its replay in the summary.
  BOOST_TEST(d.schedules.size() == 4u);
  for (const auto& [schedule, fit] : d.schedules) {
    BOOST_TEST_CONTEXT(CopyScheduleName(schedule)) { BOOST_TEST(fit.simulated_ns > 0); }
  }
  BOOST_TEST(absl::StrContains(d.report, "schedules: measured vs simulated with the written"));
  BOOST_TEST(absl::StrContains(d.report, "calibrated on NVIDIA H100 80GB HBM3 ×4"));
}

// The raw file of the 2x H200 run of 2026-11-28 (no machine record). Two terms come from it
// that the 4x run did not need:
// * compute_read_bw: the stand-in kernel read 536870912 B in (median of 331008, 332160,
//   333536, 334848, 334240 ns) 333536 ns: 1.6096 TB/s.
// * copy_latency_loaded_ns: round robin 2 MiB pieces took 7.765 ms (median span of rank 0;
//   7775200, 7774177, 7761121, 7765247, 7748321 ns), but the replay with the whole 6.2 us idle
//   fixed cost on the path gives only 6.25 ms: each piece paid more while both GPUs pulled, so
//   the loaded cost is fitted above the idle one and the replay matches.
BOOST_AUTO_TEST_CASE(derivation_of_the_h200x2_run_fits_the_read_rate_and_the_loaded_latency) {
  std::ifstream in(testing::SourcePath("tests/data/calibrate-h200x2-2026-11-28.json"));
  BOOST_TEST_REQUIRE(static_cast<bool>(in));
  const CalibrationDerivation d =
      DeriveOrDie(nlohmann::json::parse(in), HardwarePreset("h200-sxm").value());
  BOOST_REQUIRE(d.m.compute_read_bw.has_value());
  BOOST_TEST(*d.m.compute_read_bw == 536870912 / 333535.96925735474e-9, tt::tolerance(1e-9));
  BOOST_REQUIRE(d.m.copy_latency_loaded_ns.has_value());
  BOOST_TEST(*d.m.copy_latency_loaded_ns > *d.m.copy_latency_ns);
  const ScheduleFit& rr = d.schedules.at(CopySchedule::kRoundRobinPieces);
  BOOST_TEST(rr.measured_ns == 7765247.344970703, tt::tolerance(1e-12));
  BOOST_TEST(std::abs(rr.simulated_ns / rr.measured_ns - 1) <= 0.01);
  // Both directions at once ran at 0.95 of one direction: a fabric limit of the pair.
  BOOST_REQUIRE(d.m.fabric_bw.has_value());
  BOOST_TEST(*d.m.fabric_bw / *d.m.peer_copy_bw == 0.95, tt::tolerance(0.01));
}

BOOST_AUTO_TEST_CASE(a_raw_file_without_a_machine_record_still_derives) {
  nlohmann::json j = H100x4Raw();
  j.erase("machine");  // as `dwdp calibrate` wrote it on 2026-11-28
  const CalibrationDerivation d = DeriveOrDie(j);
  BOOST_TEST(d.gpu_name == "NVIDIA H100 80GB HBM3");  // from measured_on
  BOOST_TEST(*d.m.granularity == 2097152.0);          // round robin's piece
  BOOST_TEST(!d.m.hbm_bytes.has_value());
  BOOST_TEST(!d.m.imex_permitted.has_value());
  BOOST_TEST(HasNote(d, "no machine record"));
}

// A raw file of `ranks` ranks with round numbers: one pair copies at 400 B/ns after 4 us; each
// rank pulls 64 MiB from every peer in every schedule, in `schedule_span_ns` (round robin twice
// that); every puller of rank 0 pulls 64 MiB in 1 ms.
nlohmann::json SyntheticRaw(int ranks, double schedule_span_ns) {
  using Json = nlohmann::json;
  const double per_peer = 64.0 * kMiB;
  Json raw = {{"measured_on", "Test GPU ×" + std::to_string(ranks) + ", 2026-12-01"},
              {"machine",
               {{"base", "h100-sxm"},
                {"gpu_name", "Test GPU"},
                {"gpus", ranks},
                {"device_memory_bytes", 80e9},
                {"granularity", 2097152},
                {"handle_kind", "fabric"},
                {"repetitions", 1},
                {"buffer_bytes", 128.0 * kMiB}}},
              {"ranks", Json::array()}};
  for (int r = 0; r < ranks; ++r) {
    Json rank = {
        {"hostname", "node-a"},
        {"local_copy", {{"bytes", 128.0 * kMiB}, {"ns", {100e3}}}},
        {"schedules",
         {{"bytes_per_peer", per_peer}, {"piece_bytes", 2097152}, {"runs", Json::object()}}},
        {"kernel_accuracy", {{20e3, 20.5e3}}},
        {"host_ns_per_call", {{"copy", {2000}}, {"record", {700}}, {"wait", {700}}}},
        {"map_ns",
         {{"bytes", 2097152}, {"map", {3000}}, {"set_access", {6000}}, {"unmap", {3000}}}}};
    for (CopySchedule s : kCopySchedules) {
      const double span =
          s == CopySchedule::kRoundRobinPieces ? 2 * schedule_span_ns : schedule_span_ns;
      rank["schedules"]["runs"][CopyScheduleName(s)] = {{"bytes", (ranks - 1) * per_peer},
                                                        {"span_ns", {span}}};
    }
    if (r == 0) {
      // 4000 ns + bytes / 400 B/ns exactly.
      for (double bytes : {1.0 * kMiB, 16.0 * kMiB, 256.0 * kMiB}) {
        rank["single_pair"].push_back({bytes, 4000 + bytes / 400});
      }
    } else {
      rank["egress"] = {{"bytes", per_peer}, {"ns", {1e6}}};
    }
    raw["ranks"].push_back(rank);
  }
  return raw;
}

BOOST_AUTO_TEST_CASE(two_ranks_at_the_pair_rate_in_both_directions_write_no_fabric_limit) {
  // Each rank pulls 64 MiB from the other in 67108864 / 400 = 167772.16 ns: 400 GB/s, the pair's
  // rate (100% >= 97%), so the fabric does not limit and fabric_bw is 0. The base's egress is
  // the pair's rate too (0), so that every port runs at the same 400 B/ns.
  HardwareProfile base = HardwarePreset("h100-sxm").value();
  base.egress_bw = {0, Provenance::kAssumed};
  const CalibrationDerivation d = DeriveOrDie(SyntheticRaw(2, 67108864 / 400.0), base);
  BOOST_TEST(*d.m.peer_copy_bw == 400e9, tt::tolerance(1e-9));
  BOOST_TEST(d.fabric_rate == 400e9, tt::tolerance(1e-9));
  BOOST_REQUIRE(d.m.fabric_bw.has_value());
  BOOST_TEST(*d.m.fabric_bw == 0.0);
  BOOST_TEST(absl::StrContains(d.report, "fabric_bw written as 0 (no limit)"));
  // One puller: no egress sharing to measure.
  BOOST_TEST(!d.m.egress_bw.has_value());
  BOOST_TEST(HasNote(d, "egress_bw needs at least 3 ranks"));
  // With one flow on every port (and no fabric limit) the per-copy cost delays round robin the
  // same whether it is on the path or not: nothing to fit.
  BOOST_TEST(!d.m.copy_latency_on_link.has_value());
  BOOST_TEST(HasNote(d, "copy_latency_on_link kept from the base profile"));
  BOOST_TEST(*d.m.imex_permitted == true);  // fabric handles
  BOOST_TEST(*d.m.hbm_bytes == 80e9);
}

BOOST_AUTO_TEST_CASE(stream_queue_entries_is_the_median_over_ranks_of_the_copies_that_fit) {
  // Rank 0's copies blocked after 1021 and 1023 calls (median 1022), rank 1's and rank 2's
  // after 1021: the median over ranks is 1021, written as measured.
  nlohmann::json j = SyntheticRaw(3, 67108864 / 400.0);
  j["ranks"][0]["stream_queue_calls"] = {{"copy", {1021, 1023}},
                                         {"record", nlohmann::json::array()}};
  j["ranks"][1]["stream_queue_calls"] = {{"copy", {1021}}, {"kernel", {1021}}};
  j["ranks"][2]["stream_queue_calls"] = {{"copy", {1021, 1021}}, {"kernel", {1021}}};
  const CalibrationDerivation d = DeriveOrDie(j);
  BOOST_REQUIRE(d.m.stream_queue_entries.has_value());
  BOOST_TEST(*d.m.stream_queue_entries == 1021.0);
  const HardwareProfile written = ApplyCalibration(HardwarePreset("h100-sxm").value(), d.m,
                                                   {"test", "Test GPU", "Test GPU ×3"});
  BOOST_TEST(written.stream_queue_entries.value == 1021.0);
  BOOST_TEST((written.stream_queue_entries.source == Provenance::kMeasured));
  BOOST_TEST(absl::StrContains(d.report, "kernel 1021, record never blocked"));

  // A file written before calibrate measured it keeps the base's number, with a note.
  const CalibrationDerivation older = DeriveOrDie(SyntheticRaw(3, 67108864 / 400.0));
  BOOST_TEST(!older.m.stream_queue_entries.has_value());
  BOOST_TEST(HasNote(older, "stream_queue_entries is not in the raw file"));

  // Not an array of numbers: refused, naming the entry.
  j["ranks"][1]["stream_queue_calls"]["kernel"] = "many";
  absl::StatusOr<CalibrationRaw> bad = ParseCalibrationRaw(j);
  BOOST_REQUIRE(!bad.ok());
  BOOST_TEST(absl::StrContains(bad.status().message(), "ranks[1].stream_queue_calls.kernel"));
}

BOOST_AUTO_TEST_CASE(fabric_share_spread_is_the_coefficient_of_variation_of_the_rotate_rates) {
  // Each rank pulls 2 x 64 MiB = 134217728 B in rotate; spans that make 300, 400 and 500 GB/s:
  // mean 400, standard deviation sqrt((100^2 + 0 + 100^2) / 3) = 81.65, so 0.20412.
  nlohmann::json j = SyntheticRaw(3, 67108864 / 400.0);
  const double bytes = 134217728;
  const double rates[] = {300, 400, 500};  // bytes per ns
  for (int r = 0; r < 3; ++r) {
    j["ranks"][r]["schedules"]["runs"]["rotate"]["span_ns"] = {bytes / rates[r]};
  }
  const CalibrationDerivation d = DeriveOrDie(j);
  BOOST_REQUIRE(d.m.fabric_share_spread.has_value());
  BOOST_TEST(*d.m.fabric_share_spread == std::sqrt(20000.0 / 3) / 400, tt::tolerance(1e-9));
  const HardwareProfile written = ApplyCalibration(HardwarePreset("h100-sxm").value(), d.m,
                                                   {"test", "Test GPU", "Test GPU ×3"});
  BOOST_TEST(written.fabric_share_spread.value == *d.m.fabric_share_spread);
  BOOST_TEST((written.fabric_share_spread.source == Provenance::kMeasured));
  // Every rank at the same rate: an even fabric.
  BOOST_TEST(*DeriveOrDie(SyntheticRaw(3, 67108864 / 400.0)).m.fabric_share_spread == 0.0);
}

BOOST_AUTO_TEST_CASE(two_ranks_below_the_pair_rate_write_their_rate_as_fabric_bw) {
  // 67108864 B in 1.25 x 167772.16 ns = 209715.2 ns: 320 GB/s, 80% of the pair.
  const CalibrationDerivation d = DeriveOrDie(SyntheticRaw(2, 1.25 * 67108864 / 400.0));
  BOOST_TEST(*d.m.fabric_bw == 320e9, tt::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(egress_is_all_bytes_over_the_union_of_the_pulls) {
  // Ranks 1 and 2 each pull 64 MiB from rank 0 in 1 ms (67.1 GB/s each, 134.2 GB/s summed), but
  // rank 2 starts 0.25 ms after rank 1: the union is 1.25 ms, so rank 0 served
  // 2 x 67108864 B / 1.25 ms = 107.374 GB/s.
  nlohmann::json j = SyntheticRaw(3, 67108864 / 400.0);
  j["ranks"][1]["egress"]["start_ns"] = {5e9};
  j["ranks"][1]["egress"]["end_ns"] = {5e9 + 1e6};
  j["ranks"][2]["egress"]["start_ns"] = {5e9 + 0.25e6};
  j["ranks"][2]["egress"]["end_ns"] = {5e9 + 1.25e6};
  const CalibrationDerivation d = DeriveOrDie(j);
  BOOST_TEST(*d.m.egress_bw == 2 * 67108864 / 1.25e-3, tt::tolerance(1e-9));
  BOOST_TEST((d.egress_from_union == std::optional<bool>(true)));

  // Pullers on different hosts: their steady clocks do not compare, so the sum of the rates.
  nlohmann::json other_host = j;
  other_host["ranks"][2]["hostname"] = "node-b";
  const CalibrationDerivation summed = DeriveOrDie(other_host);
  BOOST_TEST(*summed.m.egress_bw == 2 * 67108864 / 1e-3, tt::tolerance(1e-9));
  BOOST_TEST((summed.egress_from_union == std::optional<bool>(false)));
  BOOST_TEST(HasNote(summed, "not known to share one host"));

  // Pulls that do not overlap at all (rank 2 starts 5 ms after rank 1 ended): not one event.
  nlohmann::json apart = j;
  apart["ranks"][2]["egress"]["start_ns"] = {5e9 + 6e6};
  apart["ranks"][2]["egress"]["end_ns"] = {5e9 + 7e6};
  const CalibrationDerivation fallback = DeriveOrDie(apart);
  BOOST_TEST((fallback.egress_from_union == std::optional<bool>(false)));
  BOOST_TEST(HasNote(fallback, "do not overlap"));
}

BOOST_AUTO_TEST_CASE(a_malformed_raw_file_is_refused_naming_the_entry) {
  const auto message = [](const nlohmann::json& j) {
    const absl::StatusOr<CalibrationRaw> raw = ParseCalibrationRaw(j);
    BOOST_REQUIRE(!raw.ok());
    BOOST_TEST(absl::IsInvalidArgument(raw.status()));
    return std::string(raw.status().message());
  };
  BOOST_TEST(absl::StrContains(message(nlohmann::json::array()), "expected a JSON object"));
  BOOST_TEST(absl::StrContains(message({{"measured_on", "x"}}), "missing 'ranks'"));
  nlohmann::json j = SyntheticRaw(3, 1e6);
  j["ranks"][1]["egress"]["ns"] = "fast";
  BOOST_TEST(absl::StrContains(message(j), "ranks[1].egress.ns: expected an array of numbers"));
  j = SyntheticRaw(3, 1e6);
  j["ranks"][0].erase("single_pair");
  BOOST_TEST(absl::StrContains(message(j), "ranks[0]: missing 'single_pair'"));
  j = SyntheticRaw(3, 1e6);
  j["ranks"][2]["schedules"]["runs"]["rotate"]["span_ns"][0] = nullptr;
  BOOST_TEST(absl::StrContains(message(j), "ranks[2].schedules.runs['rotate'].span_ns[0]"));
  j = SyntheticRaw(3, 1e6);
  j["ranks"].erase(1);
  BOOST_TEST(absl::StrContains(message(j), "machine.gpus is 3 but the file has 2 ranks"));
}

}  // namespace
}  // namespace dwdp
