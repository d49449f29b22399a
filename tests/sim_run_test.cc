// Whole runs through the simulator with the same GroupRuntime the GPU uses: functional runs with
// no hazard, every planted fault caught, determinism, and rollback at every failure point.
#define BOOST_TEST_MODULE sim_run
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <map>

#include "backends/sim/simulate.h"
#include "core/config/loader.h"
#include "core/fault/faulty_driver.h"
#include "core/layout/layout.h"
#include "core/perf/layer_times.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

namespace fs = std::filesystem;

struct Loaded {
  Scenario scenario;
  GroupLayout layout;
};

Loaded Load(const std::string& relative) {
  auto scenario = LoadScenarioFile(testing::SourcePath(relative));
  BOOST_REQUIRE_MESSAGE(scenario.ok(), scenario.status().message());
  auto layout = ComputeGroupLayout(*scenario);
  BOOST_REQUIRE_MESSAGE(layout.ok(), layout.status().message());
  return {*scenario, *layout};
}

sim::SimulateOptions Options(const Scenario& scenario, bool functional,
                             Fault fault = Fault::kNone) {
  const LayerTimes times = ComputeLayerTimes(scenario);
  sim::SimulateOptions options;
  options.functional = functional;
  options.forwards = scenario.workload.forwards;
  options.fault = fault;
  options.attention_ns = times.attention_ns;
  options.moe_ns = times.moe_ns;
  options.prelude_ns = times.prelude_ns;
  return options;
}

sim::SimulationResult Simulate(const Loaded& loaded, const sim::SimulateOptions& options) {
  auto result = sim::SimulateScenario(loaded.scenario, loaded.layout, options);
  BOOST_REQUIRE_MESSAGE(result.ok(), result.status().message());
  return *std::move(result);
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// Resource-creating driver calls and the call that undoes each.
const std::map<std::string, std::string> kUndoOf = {
    {"create", "release"}, {"import", "release"}, {"reserve", "free"}, {"map", "unmap"}};

}  // namespace

BOOST_AUTO_TEST_CASE(functional_runs_of_every_small_scenario_have_no_hazard) {
  int runs = 0;
  for (const auto& entry : fs::directory_iterator(testing::SourcePath("scenarios"))) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("sim-small-", 0) != 0 && name.rfind("moe72-", 0) != 0) continue;
    const Loaded loaded = Load("scenarios/" + name);
    const auto result = Simulate(loaded, Options(loaded.scenario, /*functional=*/true));
    BOOST_TEST(result.report.ok, name << ":\n"
                                      << Joined(result.report.errors)
                                      << Joined(result.report.hazards));
    BOOST_TEST(result.report.forwards == loaded.scenario.workload.forwards);
    BOOST_TEST(result.leaks.empty(), result.leaks.ToString());
    ++runs;
  }
  BOOST_TEST(runs >= 6);
}

BOOST_AUTO_TEST_CASE(each_layer_is_copied_once_per_forward_with_its_remote_bytes) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  const auto result = Simulate(loaded, Options(loaded.scenario, true));
  for (const RankReport& rank : result.report.ranks) {
    BOOST_REQUIRE_EQUAL(rank.layers.size(), loaded.layout.moe_layers.size());
    const uint64_t remote_experts = static_cast<uint64_t>(
        loaded.scenario.model.num_experts - loaded.layout.ranks[rank.rank].range.count());
    for (const LayerReport& layer : rank.layers) {
      BOOST_TEST(layer.copy_bytes == remote_experts * loaded.scenario.model.expert_bytes());
    }
  }
}

BOOST_AUTO_TEST_CASE(staggered_contention_starts_each_layer_at_another_peer) {
  // d = 4, 4 MoE layers: under rotate every layer of rank 0 starts with rank 1; under staggered
  // layer position p starts with rank 1 + p mod 3. Functional, so every byte is still checked.
  for (ContentionMode mode : {ContentionMode::kRotate, ContentionMode::kStaggered}) {
    Loaded loaded = Load("scenarios/sim-small-d4-4x4.yaml");
    loaded.scenario.dwdp.contention.mode = mode;
    sim::SimulateOptions options = Options(loaded.scenario, /*functional=*/true);
    options.keep_timeline = true;
    const auto result = Simulate(loaded, options);
    BOOST_TEST_REQUIRE(result.report.ok, Joined(result.report.errors));
    std::map<int64_t, std::pair<double, int64_t>> first;  // layer -> (start, peer), earliest
    for (const TimedOp& op : result.timeline) {
      if (op.rank != 0 || op.tag.kind != OpKind::kCopy || op.tag.layer < 0) continue;
      auto it = first.find(op.tag.layer);
      if (it == first.end() || op.start_ns < it->second.first) {
        first[op.tag.layer] = {op.start_ns, op.tag.peer};
      }
    }
    BOOST_TEST_REQUIRE(first.size() == loaded.layout.moe_layers.size());
    int64_t position = 0;
    for (const auto& [layer, start] : first) {
      const int64_t expected = mode == ContentionMode::kRotate ? 1 : 1 + position % 3;
      BOOST_TEST(start.second == expected, ContentionModeName(mode) << " layer " << layer);
      ++position;
    }
  }
}

BOOST_AUTO_TEST_CASE(free_at_bind_is_a_write_after_read_race) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  const auto result = Simulate(loaded, Options(loaded.scenario, true, Fault::kFreeAtBind));
  BOOST_TEST(!result.report.ok);
  BOOST_REQUIRE(!result.report.hazards.empty());
  BOOST_TEST(Joined(result.report.hazards).find("write-after-read") != std::string::npos,
             Joined(result.report.hazards));
}

BOOST_AUTO_TEST_CASE(skip_ready_wait_is_a_read_after_write_race) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  const auto result = Simulate(loaded, Options(loaded.scenario, true, Fault::kSkipReadyWait));
  BOOST_TEST(!result.report.ok);
  BOOST_REQUIRE(!result.report.hazards.empty());
  BOOST_TEST(Joined(result.report.hazards).find("read-after-write") != std::string::npos,
             Joined(result.report.hazards));
}

BOOST_AUTO_TEST_CASE(races_are_found_in_timing_mode_too) {
  const Loaded loaded = Load("scenarios/sim-small-d4-4x4.yaml");
  const auto result = Simulate(loaded, Options(loaded.scenario, false, Fault::kFreeAtBind));
  BOOST_TEST(!result.report.hazards.empty());
}

BOOST_AUTO_TEST_CASE(bad_copy_offset_names_the_wrong_byte) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  const auto result = Simulate(loaded, Options(loaded.scenario, true, Fault::kBadCopyOffset));
  BOOST_TEST(!result.report.ok);
  const std::string errors = Joined(result.report.errors);
  BOOST_TEST(errors.find("wrong byte") != std::string::npos, errors);
  BOOST_TEST(errors.find("layer 1") != std::string::npos, errors);  // the planted layer
  BOOST_TEST(result.leaks.empty(), result.leaks.ToString());
}

BOOST_AUTO_TEST_CASE(partial_map_fails_setup_with_not_supported_and_leaks_nothing) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  const auto result = Simulate(loaded, Options(loaded.scenario, true, Fault::kPartialMap));
  BOOST_TEST(!result.report.ok);
  BOOST_TEST(!result.setup_ok);
  const std::string errors = Joined(result.report.errors);
  BOOST_TEST(errors.find("CUDA_ERROR_NOT_SUPPORTED") != std::string::npos, errors);
  BOOST_TEST(errors.find("map local handle") != std::string::npos, errors);
  BOOST_TEST(result.leaks.empty(), result.leaks.ToString());
}

BOOST_AUTO_TEST_CASE(two_runs_give_identical_json) {
  const Loaded loaded = Load("scenarios/sim-small-d4-round-robin-3buf.yaml");
  const auto options = Options(loaded.scenario, false);
  const std::string first = Simulate(loaded, options).report.ToJson().dump();
  const std::string second = Simulate(loaded, options).report.ToJson().dump();
  BOOST_TEST(first == second);
}

BOOST_AUTO_TEST_CASE(a_failure_at_every_setup_step_rolls_back_everything) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  const std::vector<std::string> steps = {
      "streams",    "local handles",  "peer views", "pool and composite VAs",
      "edge bytes", "weight manager", "scatter"};
  for (int64_t failing_rank = 0; failing_rank < 3; ++failing_rank) {
    for (const std::string& step : steps) {
      auto options = Options(loaded.scenario, true);
      options.step_hook = [&](int64_t rank, absl::string_view s) {
        if (rank == failing_rank && s == step)
          return absl::UnavailableError("planted step failure");
        return absl::OkStatus();
      };
      const auto result = Simulate(loaded, options);
      BOOST_TEST(!result.setup_ok);
      BOOST_REQUIRE(!result.report.errors.empty());
      const std::string& first = result.report.errors.front();
      BOOST_TEST(first.find("planted step failure") != std::string::npos, first);
      BOOST_TEST(first.find("'" + step + "'") != std::string::npos, first);
      BOOST_TEST(result.leaks.empty(),
                 step << " on rank " << failing_rank << ": " << result.leaks.ToString());
    }
  }
}

// Makes the n-th driver call of one rank fail, for every n of a whole setup + forwards +
// teardown, and checks: the injected error is the one reported, with its context; nothing is
// left alive; resources were undone in the reverse order of their creation.
BOOST_AUTO_TEST_CASE(a_failing_driver_call_anywhere_is_reported_and_rolled_back) {
  // Two MoE layers keep every driver call of the Mode B setup (edges included) and halve the
  // number of failure points, which matters under the sanitizers.
  Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  loaded.scenario.model.moe_layers.resize(2);
  auto two_layers = ComputeGroupLayout(loaded.scenario);
  BOOST_REQUIRE(two_layers.ok());
  loaded.layout = *two_layers;
  const int64_t rank = 1;
  int64_t total_calls = 0;
  {
    std::unique_ptr<FaultyDriver> counting;
    auto options = Options(loaded.scenario, false);
    options.wrap_driver = [&](int64_t r, Driver& inner) -> Driver* {
      if (r != rank) return nullptr;
      counting = std::make_unique<FaultyDriver>(inner, 0, "");
      return counting.get();
    };
    const auto clean = Simulate(loaded, options);
    BOOST_REQUIRE(clean.report.ok);
    total_calls = counting->calls();
  }
  BOOST_REQUIRE(total_calls > 50);
  for (int64_t n = 1; n <= total_calls; ++n) {
    std::unique_ptr<FaultyDriver> faulty;
    auto options = Options(loaded.scenario, false);
    options.wrap_driver = [&](int64_t r, Driver& inner) -> Driver* {
      if (r != rank) return nullptr;
      faulty = std::make_unique<FaultyDriver>(inner, n, "CUDA_ERROR_OUT_OF_MEMORY");
      return faulty.get();
    };
    const auto result = Simulate(loaded, options);
    BOOST_REQUIRE(faulty->injected());
    BOOST_TEST(!result.report.ok, "call " << n);
    const std::string errors = Joined(result.report.errors);
    BOOST_TEST(errors.find("(injected at driver call " + std::to_string(n) +
                           "): CUDA_ERROR_OUT_OF_MEMORY") != std::string::npos,
               "call " << n << ": " << errors);
    BOOST_TEST(errors.find("rank 1") != std::string::npos, errors);  // the context names the rank
    BOOST_TEST(result.leaks.empty(), "call " << n << ": " << result.leaks.ToString());
    // Reverse order: after the failure, each undo call matches the most recent live creation.
    if (!result.setup_ok) {
      std::vector<std::string> live;
      const auto& log = faulty->call_log();
      for (int64_t i = 0; i < static_cast<int64_t>(log.size()); ++i) {
        const std::string& call = log[i];
        if (i + 1 < n) {
          if (kUndoOf.count(call)) live.push_back(call);
          for (const auto& [create, undo] : kUndoOf) {
            // Staging views are unmapped/freed during setup itself.
            if (call == undo && !live.empty() && kUndoOf.at(live.back()) == undo) live.pop_back();
          }
          continue;
        }
        if (i + 1 == n || !kUndoOf.count(live.empty() ? std::string() : live.back())) continue;
        BOOST_TEST(call == kUndoOf.at(live.back()), "call " << n << ", undo #" << i);
        live.pop_back();
      }
      BOOST_TEST(live.empty(), "call " << n << ": " << live.size() << " creations not undone");
    }
  }
}

BOOST_AUTO_TEST_CASE(a_failing_release_during_rollback_does_not_hide_the_first_error) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  std::unique_ptr<FaultyDriver> faulty;
  auto options = Options(loaded.scenario, false);
  options.wrap_driver = [&](int64_t r, Driver& inner) -> Driver* {
    if (r != 1) return nullptr;
    faulty = std::make_unique<FaultyDriver>(inner, 40, "CUDA_ERROR_INVALID_VALUE");
    faulty->fail_releases_from(41);
    return faulty.get();
  };
  const auto result = Simulate(loaded, options);
  BOOST_TEST(!result.setup_ok);
  BOOST_REQUIRE(!result.report.errors.empty());
  const std::string& first = result.report.errors.front();
  BOOST_TEST(
      first.find("(injected at driver call 40): CUDA_ERROR_INVALID_VALUE") != std::string::npos,
      first);
  BOOST_TEST(first.find("rollback also failed") != std::string::npos, first);
  BOOST_TEST(first.find("injected at driver call 40") < first.find("rollback also failed"));
  BOOST_TEST(result.leaks.empty(), result.leaks.ToString());
}

BOOST_AUTO_TEST_CASE(setup_works_again_after_a_failed_setup) {
  const Loaded loaded = Load("scenarios/sim-small-d3-6x5-modeb.yaml");
  auto failing = Options(loaded.scenario, true, Fault::kPartialMap);
  BOOST_TEST(!Simulate(loaded, failing).report.ok);
  BOOST_TEST(Simulate(loaded, Options(loaded.scenario, true)).report.ok);
}

}  // namespace dwdp
