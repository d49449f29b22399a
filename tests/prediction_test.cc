// The simulator against GPU measurements: every case of the prediction matrix
// (scripts/compare_matrix.sh) that was run on GPUs is kept under tests/data/matrix/MACHINE/ as
// the `dwdp run --backend cuda --format json` report. Each test runs the simulator on the same
// case with the profile calibrated on that machine kind, through the built `dwdp run` and
// `dwdp compare`, and checks the prediction against the measurement: the golden values are the
// GPU's, so a change to the timing model that loses the fit fails here.

#define BOOST_TEST_MODULE prediction
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "tests/support/run_process.h"
#include "tests/support/test_paths.h"

namespace dwdp::testing {
namespace {

namespace fs = std::filesystem;

// One case, from its report's name: MODEL-PARTITION-SCHEDULE-kK-BOUND.gpu.json.
struct MatrixCase {
  std::string name;
  std::string model;      // qwen3-30b, gpt-oss-120b
  std::string partition;  // uniform, modeb
  std::string schedule;   // rotate, ascending, round_robin
  std::string k;
  std::string bound;  // copy, compute
  fs::path gpu_report;
};

std::vector<MatrixCase> CasesIn(const std::string& machine_dir) {
  std::vector<MatrixCase> cases;
  for (const auto& entry : fs::directory_iterator(SourcePath(machine_dir))) {
    const std::string file = entry.path().filename().string();
    const std::string suffix = ".gpu.json";
    if (file.size() <= suffix.size() || file.substr(file.size() - suffix.size()) != suffix) {
      continue;
    }
    MatrixCase c;
    c.name = file.substr(0, file.size() - suffix.size());
    c.gpu_report = entry.path();
    // The model names contain dashes: split from the right.
    std::vector<std::string> parts = absl::StrSplit(c.name, '-');
    BOOST_TEST_REQUIRE(parts.size() >= 5u, "case name " << c.name);
    c.bound = parts[parts.size() - 1];
    c.k = parts[parts.size() - 2].substr(1);
    c.schedule = parts[parts.size() - 3];
    c.partition = parts[parts.size() - 4];
    for (size_t i = 0; i + 4 < parts.size(); ++i) c.model += (i > 0 ? "-" : "") + parts[i];
    cases.push_back(c);
  }
  std::sort(cases.begin(), cases.end(),
            [](const MatrixCase& a, const MatrixCase& b) { return a.name < b.name; });
  return cases;
}

// The scenario file and the per-layer compute time of a case, as compare_matrix.sh sets them.
std::string ScenarioOf(const MatrixCase& c, int gpus) {
  const std::string size = gpus == 2
                               ? (c.partition == "uniform" ? "h100x2-64x64" : "h100x2-66x62-modeb")
                               : (c.partition == "uniform" ? "h100x4-32x32" : "h100x4-35x31-modeb");
  return SourcePath("scenarios/" + c.model + "-" + size + ".yaml");
}

std::string LayerNsOf(const MatrixCase& c) {
  if (c.bound == "copy") return "100000";
  return c.model == "qwen3-30b" ? "1100000" : "5600000";
}

struct Prediction {
  double copy_predicted = 0;  // mean over ranks of the mean per-layer copy time
  double copy_measured = 0;
  double forward_predicted = 0;
  double forward_measured = 0;
  bool within_tolerance = false;  // every rank's copy time and the forward within 10%
  double copy_error() const { return copy_predicted / copy_measured - 1; }
  double forward_error() const { return forward_predicted / forward_measured - 1; }
};

Prediction Predict(const MatrixCase& c, int gpus, const std::string& profile) {
  const fs::path dir = fs::temp_directory_path() / ("dwdp-prediction-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string sim_report = (dir / (c.name + ".sim.json")).string();
  const ProcessResult run = RunCommand(
      {DwdpBinary(), "run", ScenarioOf(c, gpus), "--backend", "sim", "--contention", c.schedule,
       "--num-buffers", c.k, "--layer-compute-ns", LayerNsOf(c), "--forwards", "3", "--format",
       "json", "--no-hazards", "--hardware", SourcePath(profile)});
  BOOST_TEST_REQUIRE(run.exit_code == 0, c.name << ": " << run.err);
  {
    std::ofstream out(sim_report);
    out << run.out;
  }
  const ProcessResult compared =
      RunCommand({DwdpBinary(), "compare", sim_report, c.gpu_report.string(), "--format", "json"});
  fs::remove_all(dir);
  // Exit 1 means "beyond the tolerance", which the caller judges; anything else is an error.
  BOOST_TEST_REQUIRE((compared.exit_code == 0 || compared.exit_code == 1),
                     c.name << ": " << compared.err);
  const nlohmann::json j = nlohmann::json::parse(compared.out);
  Prediction p;
  for (const nlohmann::json& rank : j.at("ranks")) {
    p.copy_predicted += rank.at("mean_over_layers").at("copy_ns").at("predicted").get<double>();
    p.copy_measured += rank.at("mean_over_layers").at("copy_ns").at("measured").get<double>();
  }
  p.forward_predicted = j.at("totals").at("forward_ns").at("predicted").get<double>();
  p.forward_measured = j.at("totals").at("forward_ns").at("measured").get<double>();
  p.within_tolerance = j.at("within_tolerance").get<bool>();
  BOOST_TEST_MESSAGE(c.name << ": copy/layer " << 100 * p.copy_error() << "%, forward "
                            << 100 * p.forward_error() << "%");
  return p;
}

// 2x H200 (NV18), the profile derived from a calibrate run on the same machine kind: every case,
// copy-bound and compute-bound, every schedule, within 10% on each rank's copy time and on the
// forward. The gpt-oss round-robin compute-bound forwards need the stream queue model: without
// it they came out 5-15% short.
BOOST_AUTO_TEST_CASE(every_2x_h200_case_is_predicted_within_10_percent) {
  const std::vector<MatrixCase> cases = CasesIn("tests/data/matrix/h200x2-2026-11-28");
  BOOST_TEST_REQUIRE(cases.size() == 48u);
  for (const MatrixCase& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      const Prediction p = Predict(c, 2, "scenarios/profiles/h200-sxm-x2-measured-2026-11-28.yaml");
      BOOST_TEST(p.within_tolerance);
      BOOST_TEST(std::abs(p.copy_error()) <= 0.10);
      BOOST_TEST(std::abs(p.forward_error()) <= 0.10);
    }
  }
}

// 4x H200: round robin (every rank pulls small pieces from its peers in rank order) and
// ascending (every rank pulls from rank 0 first) within 10% on the mean copy time per layer and
// on the forward. Round robin needs the fixed cost of a pull off the source's egress: with it
// there, the prediction was 15-19% long. Rotate is stochastic on this fabric: the GPU's own 3
// forwards of a rotate case are a median 12% apart, so one case can not be held to 10%; with
// the fabric's random shares (fabric_share_spread) most are within it on the mean copy time
// and the forward (10 of 16 with even shares, 14 with the measured spread).
BOOST_AUTO_TEST_CASE(round_robin_and_ascending_on_4x_h200_are_predicted_within_10_percent) {
  const std::vector<MatrixCase> cases = CasesIn("tests/data/matrix/h200x4-2026-11-28");
  BOOST_TEST_REQUIRE(cases.size() == 48u);
  int asserted = 0;
  int rotate_within = 0;
  for (const MatrixCase& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      const Prediction p = Predict(c, 4, "scenarios/profiles/h200-sxm-x4-measured-2026-11-28.yaml");
      if (c.schedule == "rotate") {
        rotate_within += std::abs(p.copy_error()) <= 0.10 && std::abs(p.forward_error()) <= 0.10;
        continue;
      }
      ++asserted;
      BOOST_TEST(std::abs(p.copy_error()) <= 0.10);
      BOOST_TEST(std::abs(p.forward_error()) <= 0.10);
      if (c.schedule == "round_robin") BOOST_TEST(p.within_tolerance);
    }
  }
  BOOST_TEST(asserted == 32);
  BOOST_TEST(rotate_within >= 12, "rotate cases within 10%: " << rotate_within << " of 16");
}

}  // namespace
}  // namespace dwdp::testing
