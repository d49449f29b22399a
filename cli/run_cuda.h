#pragma once

// `dwdp run --backend cuda`: the cuda backend is a module loaded at run time, so the binary
// starts and simulates on machines with no GPU, driver or MPI.

#include <string>

#include "core/config/scenario.h"
#include "core/layout/layout.h"
#include "core/perf/layer_times.h"
#include "core/pipeline/runtime.h"

namespace dwdp::cli {

struct CudaRunRequest {
  const Scenario* scenario = nullptr;
  const GroupLayout* layout = nullptr;
  const LayerTimes* times = nullptr;
  bool functional = false;
  Fault fault = Fault::kNone;
  std::string trace_path;
  bool json = false;
  bool all_ranks = false;
  double timeout_s = 60;        // bound on every wait for a peer during setup
  bool gpu_timing = true;       // events around every operation (per-layer times)
  bool align_forwards = false;  // barrier before each forward (diagnostic)
};

// Returns the exit code.
int RunOnCuda(const CudaRunRequest& request);

}  // namespace dwdp::cli
