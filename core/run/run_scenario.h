#pragma once

// The one run path of `dwdp run`, for every backend:
//   check the request against the backend -> open the backend's session -> set up the group's
//   runtime -> forwards (each drained into the report) -> the backend's post-run measurements
//   -> teardown and the leak check -> every rank's outcome to the reporting process -> report.
// The caller prints the report and closes the session (result.session->Close(code)), so that
// on the GPU every rank agrees on the exit code after the report is out.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/perf/layer_times.h"
#include "core/run/run_backend.h"

namespace dwdp {

// What a caller may give besides the request (tests, `plan --simulate`).
struct RunInputs {
  // Compute per MoE layer; default: ComputeLayerTimes(scenario).
  std::optional<LayerTimes> times;
  // Called with (rank, step) before each setup step; a non-OK status fails that step.
  std::function<absl::Status(int64_t rank, absl::string_view step)> step_hook;
  // Keep every operation for a trace even without request.trace_path.
  bool keep_timeline = false;
};

struct RunResult {
  std::unique_ptr<RunSession> session;  // still open: Close it once the report is printed
  bool reports = false;                 // this process holds the report
  RunReport report;
  std::vector<TimedOp> timeline;  // every operation of every forward, when kept
  std::map<std::pair<int64_t, StreamId>, std::string> stream_names;
  bool setup_ok = false;
  // Why setup failed on this process, the same on every rank (setup phases end in a vote).
  absl::StatusCode setup_error = absl::StatusCode::kOk;
};

// The exit code of a finished run (core/run/exit_code.h): 0 when the report is ok; 2 when setup
// ran out of device memory (the configuration does not fit this GPU: a usage error, as any
// configuration that cannot work); 1 for every other failure the run found.
int RunExitCode(const RunResult& result);

// Fails (status) only when the run cannot start: an option the backend does not have, a
// backend that cannot open here. Everything the run itself finds (driver errors, wrong bytes,
// races, leaks) is in the report with ok = false.
absl::StatusOr<RunResult> RunScenario(const Scenario& scenario, const GroupLayout& layout,
                                      const RunRequest& request, const RunBackend& backend,
                                      const RunInputs& inputs = {});

// The same over a session the caller opened (tests wrap a backend's drivers this way);
// `understood` is the backend's RunBackend::options.
absl::StatusOr<RunResult> RunScenarioWith(const Scenario& scenario, const GroupLayout& layout,
                                          const RunRequest& request,
                                          std::unique_ptr<RunSession> session, uint32_t understood,
                                          const RunInputs& inputs = {});

}  // namespace dwdp
