#include "backends/sim/simulate.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dwdp::sim {

void SimCoordinator::set_driver(int64_t rank, Driver* driver) { drivers_[rank] = driver; }

std::vector<int64_t> SimCoordinator::hosted_ranks() const {
  std::vector<int64_t> ranks;
  for (int64_t r = 0; r < world_.size(); ++r) ranks.push_back(r);
  return ranks;
}

Driver& SimCoordinator::driver(int64_t rank) {
  auto it = drivers_.find(rank);
  if (it != drivers_.end() && it->second != nullptr) return *it->second;
  return world_.driver(rank);
}

absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> SimCoordinator::Exchange(
    std::vector<std::vector<SharedHandle>> exported) {
  if (static_cast<int64_t>(exported.size()) != world_.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "exchange: %d ranks posted handles, the group has %d", exported.size(), world_.size()));
  }
  // Every rank receives its own copy of every rank's handles (a sim token is just a number).
  std::vector<std::vector<std::vector<SharedHandle>>> result(exported.size());
  for (size_t receiver = 0; receiver < exported.size(); ++receiver) {
    result[receiver].resize(exported.size());
    for (size_t sender = 0; sender < exported.size(); ++sender) {
      for (const SharedHandle& handle : exported[sender]) {
        SharedHandle copy(handle.kind(), handle.owner_rank(), handle.bytes());
        copy.set_sim_token(handle.sim_token());
        copy.set_fabric(handle.fabric());
        result[receiver][sender].push_back(std::move(copy));
      }
    }
  }
  return result;
}

absl::StatusOr<SimulationResult> SimulateScenario(const Scenario& scenario,
                                                  const GroupLayout& layout,
                                                  const SimulateOptions& options) {
  SimOptions world_options = options.world;
  world_options.functional = options.functional;
  world_options.check_hazards = options.check_hazards || options.functional;
  world_options.record_timeline = true;  // drained after every forward
  const int64_t num_ranks = static_cast<int64_t>(layout.ranks.size());
  auto world = SimWorld::Create(scenario.hardware, num_ranks, world_options);
  if (!world.ok()) return world.status();
  SimCoordinator coordinator(**world);
  std::vector<std::unique_ptr<Driver>> owned_wrappers;
  if (options.wrap_driver) {
    for (int64_t r = 0; r < num_ranks; ++r) {
      coordinator.set_driver(r, options.wrap_driver(r, (*world)->driver(r)));
    }
  }

  RuntimeOptions runtime_options;
  runtime_options.functional = options.functional;
  runtime_options.fault = options.fault;
  runtime_options.attention_ns = options.attention_ns;
  runtime_options.moe_ns = options.moe_ns;
  runtime_options.prelude_ns = options.prelude_ns;
  runtime_options.contention = scenario.dwdp.contention;
  runtime_options.step_hook = options.step_hook;

  SimulationResult result;
  std::vector<std::string> errors;
  auto runtime = GroupRuntime::Setup(layout, coordinator, runtime_options);
  int64_t forwards_done = 0;
  RunReportAccumulator accumulator;
  if (!runtime.ok()) {
    errors.push_back(absl::StrCat("setup: ", runtime.status().message()));
  } else {
    result.setup_ok = true;
    // Setup operations are not part of any forward; drop them from the timeline.
    for (int64_t r = 0; r < num_ranks; ++r) (void)(*world)->streams(r).TakeTimeline();
    // Each forward's operations are folded into the report as soon as it ends, so memory
    // stays flat over long runs; the whole timeline is kept only when asked for (traces).
    for (int64_t f = 0; f < options.forwards; ++f) {
      absl::Status st = (*runtime)->RunForward(f);
      ++forwards_done;
      std::vector<TimedOp> forward_ops;
      for (int64_t r = 0; r < num_ranks; ++r) {
        for (TimedOp& op : (*world)->streams(r).TakeTimeline()) {
          if (options.keep_timeline) {
            result.stream_names[{op.rank, op.stream}] = (*runtime)->stream_name(op.rank, op.stream);
            result.timeline.push_back(op);
          }
          if (op.tag.forward == f) op.tag.forward = 0;
          forward_ops.push_back(std::move(op));
        }
      }
      SimWorld& current = **world;
      accumulator.Add(BuildRunReport(forward_ops, num_ranks, 1, [&current](int64_t rank) {
        return current.peak_bytes(rank);
      }));
      if (!st.ok()) {
        errors.push_back(std::string(st.message()));
        break;
      }
    }
    if (absl::Status st = (*runtime)->Teardown(); !st.ok()) {
      errors.push_back(absl::StrCat("teardown: ", st.message()));
    }
    runtime->reset();
  }
  SimWorld& w = **world;
  result.report =
      accumulator.count() > 0
          ? accumulator.Result()
          : BuildRunReport({}, num_ranks, 0, [&w](int64_t rank) { return w.peak_bytes(rank); });
  (void)forwards_done;
  result.report.backend = "sim";
  result.report.mode = options.functional ? "functional" : "timing";
  result.report.scenario = scenario.name;
  for (const Hazard& h : w.hazards()) result.report.hazards.push_back(h.ToString());
  if (w.hazards_dropped() > 0) {
    result.report.hazards.push_back(
        absl::StrFormat("... and %d more hazards not listed", w.hazards_dropped()));
  }
  for (const SimError& e : w.errors()) {
    const std::string text(e.status.message());
    bool seen = false;
    for (const std::string& existing : errors)
      seen = seen || existing.find(text) != std::string::npos;
    if (!seen) errors.push_back(text);
  }
  result.leaks = w.leak_report();
  if (!result.leaks.empty()) {
    errors.push_back(
        absl::StrCat("resources still alive after teardown: ", result.leaks.ToString()));
  }
  result.report.errors = std::move(errors);
  result.report.ok = result.report.errors.empty() && result.report.hazards.empty();

  nlohmann::json links = nlohmann::json::array();
  for (int64_t g = 0; g < num_ranks; ++g) {
    const LinkStats& s = w.link_stats(g);
    links.push_back({{"gpu", g},
                     {"egress_bytes", s.egress_bytes},
                     {"ingress_bytes", s.ingress_bytes},
                     {"egress_busy_ns", s.egress_busy_ns},
                     {"ingress_busy_ns", s.ingress_busy_ns},
                     {"compute_busy_ns", s.compute_busy_ns}});
  }
  result.report.extra["links"] = links;
  result.report.extra["simulated_ns"] = w.now_ns();
  // Enqueues that found a full stream queue (the profile's stream_queue_entries) and blocked
  // their host: launches behind them came late.
  result.report.extra["host_blocks"] = w.host_blocks();
  if (scenario.dwdp.num_groups > 1) {
    result.report.extra["note"] =
        absl::StrFormat("the %d groups are identical; one group of %d ranks was simulated",
                        scenario.dwdp.num_groups, num_ranks);
  }
  return result;
}

}  // namespace dwdp::sim
