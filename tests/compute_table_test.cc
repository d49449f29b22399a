// Measured MoE compute tables in the perf model (core/perf/compute_table.h): interpolation in
// tokens, which profile table applies to which model, and that the simulator and the layer
// times take the measured number instead of the roofline.

#define BOOST_TEST_MODULE compute_table_test
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "backends/sim/simulate.h"
#include "core/config/loader.h"
#include "core/perf/compute_table.h"
#include "core/perf/layer_times.h"
#include "core/perf/perf_model.h"
#include "core/plan/plan_report.h"
#include "core/plan/planner.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

namespace tt = boost::test_tools;

MoeComputeTable SmallTable() {
  MoeComputeTable t;
  t.hidden = 1024;
  t.intermediate = 768;
  t.num_experts = 16;
  t.top_k = 2;
  t.dtype = DType::kBf16;
  t.tokens = {256, 1024, 4096};
  t.alone_ns = {50e3, 80e3, 200e3};
  return t;
}

Scenario SmallMoe() {
  auto s = LoadScenarioFile(testing::SourcePath("scenarios/moe-small-d3-6x5-modeb.yaml"));
  BOOST_REQUIRE_MESSAGE(s.ok(), s.status().message());
  return *s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(interpolation_is_linear_between_points_and_flat_below_the_first) {
  const MoeComputeTable t = SmallTable();
  // Hand-computed: 512 tokens lies a third of the way from 256 to 1024: 50 + 30/3 = 60 us.
  BOOST_TEST(InterpolateMoeTime(t.tokens, t.alone_ns, 512) == 60e3, tt::tolerance(1e-12));
  BOOST_TEST(InterpolateMoeTime(t.tokens, t.alone_ns, 1024) == 80e3, tt::tolerance(1e-12));
  // 2048: a third of the way from 1024 to 4096: 80 + 120/3 = 120 us.
  BOOST_TEST(InterpolateMoeTime(t.tokens, t.alone_ns, 2048) == 120e3, tt::tolerance(1e-12));
  // Below the first point: the weight-read floor, the first point's time.
  BOOST_TEST(InterpolateMoeTime(t.tokens, t.alone_ns, 16) == 50e3);
  // Beyond the last: the last segment's slope (120 us per 3072 tokens) continues: 8192 tokens
  // is 200 + 4096 · 120/3072 = 360 us.
  BOOST_TEST(InterpolateMoeTime(t.tokens, t.alone_ns, 8192) == 360e3, tt::tolerance(1e-12));
  BOOST_TEST(InterpolateMoeTime({1000}, {7.0}, 5) == 7.0);
}

BOOST_AUTO_TEST_CASE(a_table_applies_only_to_its_own_shape) {
  Scenario s = SmallMoe();
  HardwareProfile& hw = s.hardware;
  hw.moe_compute = {SmallTable()};
  BOOST_TEST(FindMoeComputeTable(hw, s.model) != nullptr);
  for (int field = 0; field < 5; ++field) {
    MoeComputeTable other = SmallTable();
    if (field == 0) other.hidden = 2048;
    if (field == 1) other.intermediate = 512;
    if (field == 2) other.num_experts = 32;
    if (field == 3) other.top_k = 4;
    if (field == 4) other.dtype = DType::kFp8;
    hw.moe_compute = {other};
    BOOST_TEST(FindMoeComputeTable(hw, s.model) == nullptr, "field " << field);
  }
}

BOOST_AUTO_TEST_CASE(layer_times_and_the_simulator_take_the_measured_time) {
  Scenario s = SmallMoe();  // 512 tokens per rank
  const LayerTimes roofline = ComputeLayerTimes(s);
  BOOST_TEST(roofline.source == "perf model (roofline)");
  s.hardware.moe_compute = {SmallTable()};
  const LayerTimes measured = ComputeLayerTimes(s);
  BOOST_TEST(measured.source.find("measured table") != std::string::npos);
  for (double ns : measured.moe_ns) BOOST_TEST(ns == 60e3, tt::tolerance(1e-12));
  bool depends = false;
  for (const ProfileDependency& d : measured.depends_on) {
    depends = depends || (d.name == "moe_compute" && d.source == Provenance::kMeasured);
  }
  BOOST_TEST(depends);
  // The simulator's MoE kernels run exactly that long once the slowdown under copies is off.
  auto layout = ComputeGroupLayout(s);
  BOOST_REQUIRE(layout.ok());
  sim::SimulateOptions options;
  options.forwards = 1;
  options.attention_ns = measured.attention_ns;
  options.moe_ns = measured.moe_ns;
  options.world.compute_slowdown = 0.0;
  auto result = sim::SimulateScenario(s, *layout, options);
  BOOST_REQUIRE(result.ok());
  for (const LayerReport& l : result->report.ranks[0].layers) {
    BOOST_TEST(l.compute_ns == measured.attention_ns[0] + 60e3, tt::tolerance(1e-6));
  }
}

// dwdp plan says which compute it priced: the roofline without a table for the model's shape, the
// measured table once the profile has one (text line and the JSON's "moe_compute").
BOOST_AUTO_TEST_CASE(plan_reports_whether_compute_was_measured_or_roofline) {
  Scenario s = SmallMoe();
  PlanOptions options;
  options.dwdp_sizes = {3};
  options.num_buffers = {2};
  auto roofline = PlanCapacity(s, options);
  BOOST_REQUIRE_MESSAGE(roofline.ok(), roofline.status());
  BOOST_TEST(!MoeComputeMeasured(*roofline));
  BOOST_TEST(PlanToText(*roofline, {}).find("routed-MoE compute: roofline") != std::string::npos);
  BOOST_TEST(PlanToJson(*roofline, {})["moe_compute"] == "roofline");
  s.hardware.moe_compute = {SmallTable()};
  auto measured = PlanCapacity(s, options);
  BOOST_REQUIRE_MESSAGE(measured.ok(), measured.status());
  BOOST_TEST(MoeComputeMeasured(*measured));
  BOOST_TEST(PlanToText(*measured, {}).find("routed-MoE compute: measured") != std::string::npos);
  BOOST_TEST(PlanToJson(*measured, {})["moe_compute"] == "measured");
}

// The committed measurement (one H100, 2026-12-06): the MoE layer timed on one GPU at the
// calibration grid (the profile under scenarios/profiles/) and, separately, at token counts half
// way between its points. The table, interpolated as the perf model does, predicts every
// held-out count within 10% of what was measured there.
BOOST_AUTO_TEST_CASE(measured_table_predicts_held_out_token_counts_within_ten_percent) {
  auto profile = ResolveHardware(
      testing::SourcePath("scenarios/profiles/h100-sxm-moe-measured-2026-12-06.yaml"));
  BOOST_REQUIRE_MESSAGE(profile.ok(), profile.status().message());
  auto held_out =
      ResolveHardware(testing::SourcePath("tests/data/h100-moe-heldout-2026-12-06.yaml"));
  BOOST_REQUIRE_MESSAGE(held_out.ok(), held_out.status().message());
  int checked = 0;
  for (const MoeComputeTable& measured : held_out->moe_compute) {
    for (const MoeComputeTable& table : profile->moe_compute) {
      if (table.hidden != measured.hidden || table.intermediate != measured.intermediate ||
          table.num_experts != measured.num_experts || table.top_k != measured.top_k) {
        continue;
      }
      for (size_t i = 0; i < measured.tokens.size(); ++i) {
        const double predicted = InterpolateMoeTime(table.tokens, table.alone_ns,
                                                    static_cast<double>(measured.tokens[i]));
        const double error = (predicted - measured.alone_ns[i]) / measured.alone_ns[i];
        BOOST_TEST(std::abs(error) <= 0.10, measured.hidden << "," << measured.intermediate << ","
                                                            << measured.num_experts << " at "
                                                            << measured.tokens[i]
                                                            << " tokens: " << 100 * error << "%");
        ++checked;
      }
    }
  }
  BOOST_TEST(checked >= 12);  // 3 shapes x 4 held-out counts
}

}  // namespace dwdp
