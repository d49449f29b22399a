#pragma once

// The simulator as a run backend (core/run/run_backend.h): every rank of the group in one
// process, on a SimWorld. `dwdp run --backend sim` opens it through SimRunBackend();
// SimulateScenario is the one-call form the planner, the fuzzers and the tests use.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "backends/sim/sim_world.h"
#include "core/config/scenario.h"
#include "core/layout/layout.h"
#include "core/pipeline/runtime.h"
#include "core/report/run_report.h"
#include "core/run/run_backend.h"

namespace dwdp::sim {

// The Coordinator of a SimWorld: every rank of the group hosted here.
class SimCoordinator : public Coordinator, public HandleExchange {
 public:
  explicit SimCoordinator(SimWorld& world) : world_(world) {}
  // Drivers seen by the runtime (a wrapper per rank, or the SimDriver itself).
  void set_driver(int64_t rank, Driver* driver);

  std::vector<int64_t> hosted_ranks() const override;
  Driver& driver(int64_t rank) override;
  Streams& streams(int64_t rank) override { return world_.streams(rank); }
  HandleExchange& exchange() override { return *this; }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      std::vector<std::vector<uint8_t>> per_hosted) override {
    return world_.Allgather(per_hosted);
  }
  absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> Exchange(
      std::vector<std::vector<SharedHandle>> exported) override;
  absl::Status Barrier() override { return world_.Barrier(); }

 private:
  SimWorld& world_;
  std::map<int64_t, Driver*> drivers_;
};

struct SimSessionOptions {
  // The world's model options; functional, check_hazards and seed come from the request.
  SimOptions world;
  // Tests: wrap each rank's driver (fault injection).
  std::function<Driver*(int64_t rank, Driver& inner)> wrap_driver;
};

class SimSession : public RunSession {
 public:
  // Fails when the profile cannot be simulated, or a functional run would store more bytes
  // than the world's limit.
  static absl::StatusOr<std::unique_ptr<SimSession>> Open(const Scenario& scenario,
                                                          const GroupLayout& layout,
                                                          const RunRequest& request,
                                                          const SimSessionOptions& options = {});

  Coordinator& coordinator() override { return coordinator_; }
  int64_t group_size() const override { return world_->size(); }
  absl::Status Barrier() override { return world_->Barrier(); }
  uint64_t peak_device_bytes(int64_t rank) override { return world_->peak_bytes(rank); }
  std::vector<std::string> Hazards() override;
  std::vector<std::string> UnreportedErrors() override;
  bool reports() const override { return true; }
  void Annotate(const std::vector<RankOutcome>& outcomes, RunReport& report) override;
  int Close(int exit_code) override { return exit_code; }

  SimWorld& world() { return *world_; }

 private:
  SimSession(std::unique_ptr<SimWorld> world, int64_t num_groups)
      : world_(std::move(world)), coordinator_(*world_), num_groups_(num_groups) {}

  std::unique_ptr<SimWorld> world_;
  SimCoordinator coordinator_;
  int64_t num_groups_;
};

// "sim": understands the race checker switch, the seed and aligned forwards.
RunBackend SimRunBackend();

// Physical bytes a functional run of the group keeps in host memory.
uint64_t FunctionalBytes(const GroupLayout& layout);

// ---------------------------------------------------------------------------------------------
// The one-call form.

struct SimulateOptions {
  bool functional = false;
  bool check_hazards = true;
  // Keep every operation of every forward in the result (for traces); the report itself is
  // folded forward by forward either way.
  bool keep_timeline = false;
  int64_t forwards = 1;
  Fault fault = Fault::kNone;
  // Compute per MoE layer position (attention before the MoE kernel, then the kernel) and the
  // dense layers before the first MoE layer.
  std::vector<double> attention_ns;
  std::vector<double> moe_ns;
  double prelude_ns = 0;
  // Tests: wrap each rank's driver (fault injection) and hook setup steps.
  std::function<Driver*(int64_t rank, Driver& inner)> wrap_driver;
  std::function<absl::Status(int64_t rank, absl::string_view step)> step_hook;
  SimOptions world;  // functional / check_hazards above take precedence
};

struct SimulationResult {
  RunReport report;
  std::vector<TimedOp> timeline;
  std::map<std::pair<int64_t, StreamId>, std::string> stream_names;
  LeakReport leaks;
  bool setup_ok = false;
};

// Fails (status) only when the simulator cannot be built for this profile; everything the run
// finds (driver errors, wrong bytes, races, leaks) is in the report with ok = false.
absl::StatusOr<SimulationResult> SimulateScenario(const Scenario& scenario,
                                                  const GroupLayout& layout,
                                                  const SimulateOptions& options);

}  // namespace dwdp::sim
