#pragma once

// One call that runs a scenario's DWDP group through the simulator: setup, forwards, teardown,
// with the same GroupRuntime the cuda backend uses, and returns the run report (plus the
// timeline for traces). Used by `dwdp run`, `dwdp plan --simulate` and the tests.

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

namespace dwdp::sim {

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

}  // namespace dwdp::sim
