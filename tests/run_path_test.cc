// The one run path (core/run): what `dwdp run`'s flags put into a RunRequest, which backend
// takes which option, the options every report records, the device-memory verdict and the exit
// codes. Three flags of `dwdp run` once never reached the cuda backend; these tests hold every
// flag to the request and every request option to the backend.

#define BOOST_TEST_MODULE run_path_test
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "backends/sim/simulate.h"
#include "cli/run_flags.h"
#include "core/config/loader.h"
#include "core/report/run_report.h"
#include "core/run/exit_code.h"
#include "core/run/memory_check.h"
#include "core/run/run_scenario.h"
#include "core/util/bytes.h"
#include "tests/support/run_fixtures.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

RunRequest Parse(std::vector<std::string> args) { return testing::ParseRunFlags(std::move(args)); }

Scenario Load(const std::string& name) { return testing::LoadRepositoryScenario(name); }

}  // namespace

BOOST_AUTO_TEST_SUITE(flags)

BOOST_AUTO_TEST_CASE(every_flag_reaches_the_request) {
  const RunRequest r = Parse({"s.yaml",
                              "--backend",
                              "cuda",
                              "--mode",
                              "functional",
                              "--forwards",
                              "3",
                              "--trace",
                              "t.json",
                              "--inject",
                              "partial-map",
                              "--hardware",
                              "h200-sxm",
                              "--contention",
                              "ascending",
                              "--num-buffers",
                              "3",
                              "--layer-compute-ns",
                              "5000",
                              "--no-gpu-timing",
                              "--align-forwards",
                              "--all-ranks",
                              "--no-hazards",
                              "--seed",
                              "9",
                              "--timeout",
                              "5"});
  BOOST_TEST(r.backend == "cuda");
  BOOST_TEST(r.functional());
  BOOST_TEST(r.forwards.value_or(0) == 3);
  BOOST_TEST(r.trace_path == "t.json");
  BOOST_TEST(FaultName(r.fault) == std::string("partial-map"));
  BOOST_TEST(r.hardware == "h200-sxm");
  BOOST_TEST((r.contention == ContentionMode::kAscending));
  BOOST_TEST(r.num_buffers.value_or(0) == 3);
  BOOST_TEST(r.layer_compute_ns.value_or(0) == 5000.0);
  BOOST_TEST(r.gpu_timing.has_value());
  BOOST_TEST(!r.gpu_timing_or_default());
  BOOST_TEST(r.align_forwards);
  BOOST_TEST(r.all_ranks);
  BOOST_TEST(r.check_hazards.has_value());
  BOOST_TEST(!*r.check_hazards);
  BOOST_TEST(r.seed.value_or(0) == 9u);
  BOOST_TEST(r.timeout_s.value_or(0) == 5.0);
}

BOOST_AUTO_TEST_CASE(backend_specific_options_are_unset_unless_given) {
  const RunRequest r = Parse({"s.yaml"});
  BOOST_TEST(r.options_set() == 0u);
  BOOST_TEST(r.timeout_or_default() == RunRequest::kDefaultTimeoutS);
  BOOST_TEST(r.gpu_timing_or_default());
  BOOST_TEST(r.seed_or_default() == RunRequest::kDefaultSeed);
  BOOST_TEST(r.hazards_or_default());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(backend_table)

BOOST_AUTO_TEST_CASE(the_simulator_refuses_cuda_only_options_with_one_sentence) {
  for (const auto& [args, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"s.yaml", "--timeout", "5"}, "--timeout"},
           {{"s.yaml", "--no-gpu-timing"}, "--no-gpu-timing"}}) {
    const absl::Status s = CheckOptionsFor(Parse(args), "sim", sim::SimRunBackend().options);
    BOOST_TEST(absl::IsInvalidArgument(s));
    BOOST_TEST(s.message().find(flag + " does not apply to the sim backend") == 0u, s.message());
    BOOST_TEST(ExitCodeOf(s) == kExitUsage);
  }
  BOOST_TEST(CheckOptionsFor(Parse({"s.yaml", "--seed", "3", "--no-hazards", "--align-forwards"}),
                             "sim", sim::SimRunBackend().options)
                 .ok());
}

// A backend that understands the cuda-only options, records the request it was opened with and
// runs it on the simulator: what the run path hands a backend, option by option.
BOOST_AUTO_TEST_CASE(a_backend_is_opened_with_every_option_it_understands) {
  const Scenario scenario = Load("sim-small-d3-6x5-modeb.yaml");
  auto layout = ComputeGroupLayout(scenario);
  BOOST_REQUIRE(layout.ok());
  RunRequest seen;
  RunBackend recording;
  recording.name = "recording";
  recording.options = kRunOptionTimeout | kRunOptionGpuTiming | kRunOptionAlignForwards;
  recording.open = [&seen](
                       const Scenario& s, const GroupLayout& l,
                       const RunRequest& request) -> absl::StatusOr<std::unique_ptr<RunSession>> {
    seen = request;
    RunRequest sim_request = request;
    sim_request.timeout_s.reset();
    sim_request.gpu_timing.reset();
    auto session = sim::SimSession::Open(s, l, sim_request);
    if (!session.ok()) return session.status();
    return std::unique_ptr<RunSession>(*std::move(session));
  };
  RunRequest request = Parse({"s.yaml", "--timeout", "5", "--no-gpu-timing", "--align-forwards"});
  request.backend = "recording";
  auto result = RunScenario(scenario, *layout, request, recording);
  BOOST_REQUIRE_MESSAGE(result.ok(), result.status().message());
  BOOST_TEST(seen.timeout_s.value_or(0) == 5.0);
  BOOST_TEST(!seen.gpu_timing_or_default());
  BOOST_TEST(seen.align_forwards);
  const nlohmann::json& options = result->report.extra["options"];
  BOOST_TEST(options["timeout_s"].get<double>() == 5.0);
  BOOST_TEST(!options["gpu_timing"].get<bool>());
  BOOST_TEST(options["align_forwards"].get<bool>());
  BOOST_TEST(options["seed"].is_null());  // not this backend's
  BOOST_TEST(options["hazards"].is_null());
  BOOST_TEST(result->report.ok);
}

BOOST_AUTO_TEST_CASE(the_report_records_the_effective_options) {
  Scenario scenario = Load("sim-small-d3-6x5-modeb.yaml");
  RunRequest request = Parse({"s.yaml", "--num-buffers", "3", "--contention", "round_robin",
                              "--seed", "7", "--forwards", "2"});
  BOOST_REQUIRE(ApplyOverrides(request, scenario).ok());
  auto layout = ComputeGroupLayout(scenario);
  BOOST_REQUIRE(layout.ok());
  auto result = RunScenario(scenario, *layout, request, sim::SimRunBackend());
  BOOST_REQUIRE(result.ok());
  const nlohmann::json& o = result->report.extra["options"];
  BOOST_TEST(o["backend"] == "sim");
  BOOST_TEST(o["mode"] == "timing");
  BOOST_TEST(o["forwards"] == 2);
  BOOST_TEST(o["num_buffers"] == 3);
  BOOST_TEST(o["schedule"] == "round_robin");
  BOOST_TEST(o["seed"] == 7);
  BOOST_TEST(o["hazards"] == true);
  BOOST_TEST(o["align_forwards"] == false);
  BOOST_TEST(o["timeout_s"].is_null());
  BOOST_TEST(o["gpu_timing"].is_null());
  BOOST_TEST(result->report.forwards == 2);
}

// With a barrier before each forward every forward starts from the same state, so all take the
// same time; without it the ranks of an uneven (Mode B) group drift apart from forward to
// forward and the forwards differ.
BOOST_AUTO_TEST_CASE(aligned_forwards_change_the_simulated_run) {
  const auto forwards = [](bool align) {
    Scenario scenario = Load("sim-small-d3-6x5-modeb.yaml");
    RunRequest request = Parse({"s.yaml", "--forwards", "3", "--layer-compute-ns", "1000"});
    request.align_forwards = align;
    BOOST_REQUIRE(ApplyOverrides(request, scenario).ok());
    auto layout = ComputeGroupLayout(scenario);
    BOOST_REQUIRE(layout.ok());
    auto result = RunScenario(scenario, *layout, request, sim::SimRunBackend());
    BOOST_REQUIRE(result.ok());
    return result->report.forward_ns_each;
  };
  const std::vector<double> aligned = forwards(true);
  const std::vector<double> free = forwards(false);
  BOOST_REQUIRE(aligned.size() == 3u);
  BOOST_REQUIRE(free.size() == 3u);
  namespace tt = boost::test_tools;
  BOOST_TEST(aligned[1] == aligned[0], tt::tolerance(1e-9));
  BOOST_TEST(aligned[2] == aligned[0], tt::tolerance(1e-9));
  BOOST_TEST(std::abs(free[1] - free[0]) > 1e-3 * free[0]);
}

BOOST_AUTO_TEST_CASE(a_rank_outcome_survives_its_trip_to_the_reporting_rank) {
  RankOutcome o;
  o.rank = 2;
  o.errors = {"a", "b"};
  TimedOp op;
  op.rank = 2;
  op.stream = 5;
  op.tag.kind = OpKind::kCopy;
  op.tag.layer = 7;
  op.tag.peer = 1;
  op.tag.label = "x";
  op.bytes = 123;
  op.start_ns = 1.5;
  op.end_ns = 2.5;
  o.ops = {op};
  o.stream_names[5] = "copy X";
  o.peak_device_bytes = 99;
  o.forwards_done = 3;
  o.extra["k"] = 1;
  auto back = RankOutcomeFromJson(nlohmann::json::parse(RankOutcomeToJson(o).dump()));
  BOOST_REQUIRE(back.ok());
  BOOST_TEST(back->rank == 2);
  BOOST_TEST(back->errors == o.errors);
  BOOST_REQUIRE(back->ops.size() == 1u);
  BOOST_TEST(back->ops[0].tag.layer == 7);
  BOOST_TEST(back->ops[0].bytes == 123u);
  BOOST_TEST(back->ops[0].end_ns == 2.5);
  BOOST_TEST(back->stream_names[5] == "copy X");
  BOOST_TEST(back->peak_device_bytes == 99u);
  BOOST_TEST(back->forwards_done == 3);
  BOOST_TEST(back->extra["k"] == 1);
  BOOST_TEST(!RankOutcomeFromJson(nlohmann::json::parse("{\"rank\": 1}")).ok());
}

BOOST_AUTO_TEST_SUITE_END()

// Ranks sharing one GPU change its free memory for each other: a correct run must never fail
// on that, and memory that went down is not "growth".
BOOST_AUTO_TEST_SUITE(device_memory)

BOOST_AUTO_TEST_CASE(a_shared_gpu_is_never_judged) {
  const DeviceMemoryVerdict v = JudgeDeviceMemory({false, 1036 * kMiB, 1034 * kMiB, 1032 * kMiB});
  BOOST_TEST(!v.leak);
  BOOST_TEST(!v.run_again);
  BOOST_TEST(v.message.find("other ranks share this GPU") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(memory_that_went_down_shrinks_and_passes) {
  const DeviceMemoryVerdict v = JudgeDeviceMemory({true, 1036 * kMiB, 1034 * kMiB, std::nullopt});
  BOOST_TEST(!v.leak);
  BOOST_TEST(!v.run_again);
  BOOST_TEST(v.message.find("shrinks") != std::string::npos, v.message);
  BOOST_TEST(v.message.find("grows") == std::string::npos, v.message);
}

BOOST_AUTO_TEST_CASE(growth_once_is_the_driver_and_growth_again_is_a_leak) {
  DeviceMemoryReadings r{true, 100 * kMiB, 102 * kMiB, std::nullopt};
  BOOST_TEST(JudgeDeviceMemory(r).run_again);
  r.again = 102 * kMiB;
  const DeviceMemoryVerdict once = JudgeDeviceMemory(r);
  BOOST_TEST(!once.leak);
  BOOST_TEST(once.retained == 2 * kMiB);
  r.again = 104 * kMiB;
  const DeviceMemoryVerdict leak = JudgeDeviceMemory(r);
  BOOST_TEST(leak.leak);
  BOOST_TEST(leak.message.find("grows with every setup/teardown") != std::string::npos,
             leak.message);
}

BOOST_AUTO_TEST_SUITE_END()

// --align-forwards shows in the trace: one instant per forward at which every rank had met, at
// the start of that forward's first operation.
BOOST_AUTO_TEST_CASE(aligned_forwards_put_a_barrier_per_forward_in_the_trace) {
  Scenario scenario = Load("sim-small-d3-6x5-modeb.yaml");
  RunRequest request = Parse({"s.yaml", "--forwards", "3", "--align-forwards"});
  BOOST_REQUIRE(ApplyOverrides(request, scenario).ok());
  auto layout = ComputeGroupLayout(scenario);
  BOOST_REQUIRE(layout.ok());
  RunInputs inputs;
  inputs.keep_timeline = true;
  auto result = RunScenario(scenario, *layout, request, sim::SimRunBackend(), inputs);
  BOOST_REQUIRE(result.ok());
  const std::vector<double> starts = ForwardStarts(result->timeline);
  BOOST_REQUIRE(starts.size() == 3u);
  for (size_t f = 0; f < starts.size(); ++f) {
    for (const TimedOp& op : result->timeline) {
      if (op.tag.forward == static_cast<int64_t>(f)) BOOST_TEST(op.start_ns >= starts[f]);
    }
  }
  const auto barriers = [](const nlohmann::json& trace) {
    int n = 0;
    for (const auto& e : trace["traceEvents"]) n += e.value("cat", "") == "barrier" ? 1 : 0;
    return n;
  };
  BOOST_TEST(barriers(ChromeTrace(result->timeline, nullptr, starts)) == 3);
  BOOST_TEST(barriers(ChromeTrace(result->timeline, nullptr)) == 0);
}

// A setup that runs out of device memory is a configuration that does not fit: exit 2, as any
// configuration that cannot work; any other failure the run finds is exit 1.
BOOST_AUTO_TEST_CASE(a_setup_out_of_memory_exits_2_and_other_run_failures_exit_1) {
  const auto run_failing_with = [](absl::Status failure) {
    Scenario scenario = Load("sim-small-d3-6x5-modeb.yaml");
    RunRequest request = Parse({"s.yaml"});
    BOOST_REQUIRE(ApplyOverrides(request, scenario).ok());
    auto layout = ComputeGroupLayout(scenario);
    BOOST_REQUIRE(layout.ok());
    RunInputs inputs;
    inputs.step_hook = [failure](int64_t rank, absl::string_view step) {
      return rank == 1 && step == "scatter" ? failure : absl::OkStatus();
    };
    auto result = RunScenario(scenario, *layout, request, sim::SimRunBackend(), inputs);
    BOOST_REQUIRE(result.ok());
    BOOST_TEST(!result->report.ok);
    return RunExitCode(*result);
  };
  BOOST_TEST(run_failing_with(absl::ResourceExhaustedError("CUDA_ERROR_OUT_OF_MEMORY")) ==
             kExitUsage);
  BOOST_TEST(run_failing_with(absl::InternalError("CUDA_ERROR_ILLEGAL_ADDRESS")) == kExitInvalid);
}

BOOST_AUTO_TEST_CASE(exit_codes_follow_the_failure_not_the_command) {
  BOOST_TEST(ExitCodeOf(absl::OkStatus()) == kExitOk);
  BOOST_TEST(ExitCodeOf(absl::InvalidArgumentError("x")) == kExitUsage);
  BOOST_TEST(ExitCodeOf(absl::NotFoundError("x")) == kExitUsage);
  BOOST_TEST(ExitCodeOf(absl::FailedPreconditionError("no GPU")) == kExitUsage);
  BOOST_TEST(ExitCodeOf(absl::UnimplementedError("not built")) == kExitUsage);
  BOOST_TEST(ExitCodeOf(absl::InternalError("x")) == kExitInvalid);
  BOOST_TEST(ExitCodeOf(absl::DeadlineExceededError("x")) == kExitInvalid);
  BOOST_TEST(ExitCodeOf(InvalidScenario(absl::InvalidArgumentError("world"))) == kExitInvalid);
}

}  // namespace dwdp
