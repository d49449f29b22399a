#include "backends/sim/simulate.h"

#include "backends/sim/sim_dep.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/run/run_scenario.h"
#include "core/util/bytes.h"

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

absl::StatusOr<std::unique_ptr<SimSession>> SimSession::Open(const Scenario& scenario,
                                                             const GroupLayout& layout,
                                                             const RunRequest& request,
                                                             const SimSessionOptions& options) {
  SimOptions world_options = options.world;
  world_options.functional = request.functional();
  world_options.check_hazards = request.hazards_or_default();
  world_options.seed = request.seed_or_default();
  world_options.record_timeline = true;  // drained after every forward
  const int64_t num_ranks = static_cast<int64_t>(layout.ranks.size());
  auto world = SimWorld::Create(scenario.hardware, num_ranks, world_options);
  if (!world.ok()) return world.status();
  auto session =
      std::unique_ptr<SimSession>(new SimSession(*std::move(world), scenario.dwdp.num_groups));
  if (options.wrap_driver) {
    for (int64_t r = 0; r < num_ranks; ++r) {
      session->coordinator_.set_driver(r, options.wrap_driver(r, session->world_->driver(r)));
    }
  }
  return session;
}

std::vector<std::string> SimSession::Hazards() {
  std::vector<std::string> out;
  for (const Hazard& h : world_->hazards()) out.push_back(h.ToString());
  if (world_->hazards_dropped() > 0) {
    out.push_back(absl::StrFormat("... and %d more hazards not listed", world_->hazards_dropped()));
  }
  return out;
}

std::vector<std::string> SimSession::UnreportedErrors() {
  std::vector<std::string> out;
  for (const SimError& e : world_->errors()) out.emplace_back(e.status.message());
  // The drivers' own accounting is checked rank by rank; physical memory that outlives every
  // handle and mapping is only visible here.
  const LeakReport leaks = world_->leak_report();
  if (!leaks.allocations.empty()) {
    out.push_back(absl::StrCat("resources still alive after teardown: ", leaks.ToString()));
  }
  return out;
}

void SimSession::Annotate(const std::vector<RankOutcome>& /*outcomes*/, RunReport& report) {
  nlohmann::json links = nlohmann::json::array();
  for (int64_t g = 0; g < world_->size(); ++g) {
    const LinkStats& s = world_->link_stats(g);
    links.push_back({{"gpu", g},
                     {"egress_bytes", s.egress_bytes},
                     {"ingress_bytes", s.ingress_bytes},
                     {"egress_busy_ns", s.egress_busy_ns},
                     {"ingress_busy_ns", s.ingress_busy_ns},
                     {"compute_busy_ns", s.compute_busy_ns}});
  }
  report.extra["links"] = links;
  report.extra["simulated_ns"] = world_->now_ns();
  // Enqueues that found a full stream queue (the profile's stream_queue_entries) and blocked
  // their host: launches behind them came late.
  report.extra["host_blocks"] = world_->host_blocks();
  if (num_groups_ > 1) {
    report.extra["note"] =
        absl::StrFormat("the %d groups are identical; one group of %d ranks was simulated",
                        num_groups_, world_->size());
  }
}

uint64_t FunctionalBytes(const GroupLayout& layout) {
  uint64_t total = 0;
  for (const RankLayout& r : layout.ranks) {
    uint64_t pool = 0;
    for (uint64_t pages : r.slot_pages) pool += pages * layout.pool_page_bytes;
    total += r.local_bytes_per_layer * static_cast<uint64_t>(layout.num_layers()) + pool;
  }
  return total;
}

RunBackend SimRunBackend() {
  RunBackend backend;
  backend.name = "sim";
  backend.description = "the simulator: every rank of the group in this process, no GPU";
  backend.options = kRunOptionHazards | kRunOptionSeed | kRunOptionAlignForwards;
  backend.open = [](const Scenario& scenario, const GroupLayout& layout,
                    const RunRequest& request) -> absl::StatusOr<std::unique_ptr<RunSession>> {
    SimSessionOptions options;
    if (request.functional()) {
      const uint64_t needed = FunctionalBytes(layout);
      if (needed > options.world.functional_byte_limit) {
        return absl::ResourceExhaustedError(absl::StrFormat(
            "functional mode stores every byte and this scenario needs %s (limit %s); use "
            "--mode timing or a scenario with fewer layers or smaller experts",
            FormatBytes(needed), FormatBytes(options.world.functional_byte_limit)));
      }
    }
    auto session = SimSession::Open(scenario, layout, request, options);
    if (!session.ok()) return session.status();
    return std::unique_ptr<RunSession>(*std::move(session));
  };
  backend.open_dep = [](const Scenario& scenario, const DepRunSpec&,
                        const RunRequest&) -> absl::StatusOr<std::unique_ptr<DepSession>> {
    return OpenSimDepSession(scenario);
  };
  return backend;
}

absl::StatusOr<SimulationResult> SimulateScenario(const Scenario& scenario,
                                                  const GroupLayout& layout,
                                                  const SimulateOptions& options) {
  RunRequest request;
  request.backend = "sim";
  request.mode = options.functional ? RunMode::kFunctional : RunMode::kTiming;
  request.fault = options.fault;
  request.check_hazards = options.check_hazards;
  request.seed = options.world.seed;
  Scenario run = scenario;
  run.workload.forwards = options.forwards;
  SimSessionOptions session_options;
  session_options.world = options.world;
  session_options.wrap_driver = options.wrap_driver;
  auto session = SimSession::Open(run, layout, request, session_options);
  if (!session.ok()) return session.status();
  SimSession* sim = session->get();
  RunInputs inputs;
  LayerTimes times;
  times.attention_ns = options.attention_ns;
  times.moe_ns = options.moe_ns;
  times.prelude_ns = options.prelude_ns;
  times.source = "given";
  inputs.times = times;
  inputs.step_hook = options.step_hook;
  inputs.keep_timeline = options.keep_timeline;
  auto run_result =
      RunScenarioWith(run, layout, request, *std::move(session), SimRunBackend().options, inputs);
  if (!run_result.ok()) return run_result.status();
  SimulationResult result;
  result.report = std::move(run_result->report);
  result.timeline = std::move(run_result->timeline);
  result.stream_names = std::move(run_result->stream_names);
  result.leaks = sim->world().leak_report();
  result.setup_ok = run_result->setup_ok;
  return result;
}

}  // namespace dwdp::sim
