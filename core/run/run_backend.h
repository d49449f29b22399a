#pragma once

// A backend as the run path sees it: a small table (name, the options it understands, open)
// and the session `open` returns, which hands out the per-rank Driver/Streams/exchange of the
// ranks this process hosts and adds what only that backend knows (the simulator's link figures,
// a GPU's raw copy rates and memory checks). RunScenario (run_scenario.h) drives any of them
// through validate -> setup -> forwards -> drain -> report -> teardown.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/config/scenario.h"
#include "core/layout/layout.h"
#include "core/pipeline/runtime.h"
#include "core/report/run_report.h"
#include "core/run/run_request.h"

namespace dwdp {

// What one rank brings to the report: its errors, its operations (when the process does not
// host the whole group, they travel to the reporting process), and the backend's per-rank
// figures.
struct RankOutcome {
  int64_t rank = 0;
  std::vector<std::string> errors;
  std::vector<TimedOp> ops;
  std::map<StreamId, std::string> stream_names;
  uint64_t peak_device_bytes = 0;
  int64_t forwards_done = 0;
  nlohmann::json extra = nlohmann::json::object();
};
nlohmann::json RankOutcomeToJson(const RankOutcome& outcome);
absl::StatusOr<RankOutcome> RankOutcomeFromJson(const nlohmann::json& json);

// One process's part of a run on a backend. Created by RunBackend::open, used by RunScenario,
// closed by whoever printed the report.
class RunSession {
 public:
  virtual ~RunSession() = default;

  virtual Coordinator& coordinator() = 0;
  virtual int64_t group_size() const = 0;
  // Every rank of the group meets (--align-forwards).
  virtual absl::Status Barrier() = 0;
  virtual uint64_t peak_device_bytes(int64_t rank) = 0;

  // Before setup (the GPU: warm the driver up and take the memory baseline).
  virtual absl::Status BeforeSetup() { return absl::OkStatus(); }
  // After the forwards, the runtime still set up: per-rank figures into `outcome.extra`,
  // failures into `outcome.errors`. Called for every hosted rank.
  virtual void AfterForwards(GroupRuntime& /*runtime*/, RankOutcome& /*outcome*/) {}
  // After teardown (the GPU: device memory back where it was). Called for every hosted rank.
  virtual void AfterTeardown(RankOutcome& /*outcome*/) {}
  // Findings of the whole process after teardown: races, asynchronous errors no call returned,
  // and what is still alive beyond the drivers' own accounting (the simulator's physical
  // memory).
  virtual std::vector<std::string> Hazards() { return {}; }
  virtual std::vector<std::string> UnreportedErrors() { return {}; }

  // This process prints the report (the simulator: always; the GPU: group rank 0).
  virtual bool reports() const = 0;
  // What only this backend knows, added to the finished report; `outcomes` has every rank.
  virtual void Annotate(const std::vector<RankOutcome>& /*outcomes*/, RunReport& /*report*/) {}
  // Text printed after the report's own in text mode.
  virtual std::string TextAppendix(const RunReport& /*report*/) const { return ""; }

  // Ends the session. Every process of the job agrees on the exit code (the largest); the GPU
  // backend ends MPI, aborting the job when the code is not 0 (a peer may be stuck waiting).
  virtual int Close(int exit_code) = 0;
};

class DepSession;  // core/run/run_dep.h
struct DepRunSpec;

struct RunBackend {
  std::string name;
  std::string description;
  uint32_t options = 0;  // RunOption bits it understands
  std::function<absl::StatusOr<std::unique_ptr<RunSession>>(
      const Scenario& scenario, const GroupLayout& layout, const RunRequest& request)>
      open;
  // The DEP baseline (--baseline dep); empty: this backend has none.
  std::function<absl::StatusOr<std::unique_ptr<DepSession>>(
      const Scenario& scenario, const DepRunSpec& spec, const RunRequest& request)>
      open_dep;
};

// The backends a tool offers, looked up by name.
class RunBackendTable {
 public:
  void Add(RunBackend backend) { backends_.push_back(std::move(backend)); }
  const RunBackend* Find(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<RunBackend> backends_;
};

}  // namespace dwdp
