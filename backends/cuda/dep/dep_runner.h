#pragma once

// The DEP baseline on GPUs, one rank per process and per GPU (NCCL refuses two ranks of one
// communicator on one GPU). Shared by the dwdp binary and libdwdp_cuda.so: no CUDA or NCCL
// headers here.
//
// Per MoE layer and forward, on one stream, timed with CUDA events:
//   attention  a stand-in kernel of the DWDP run's attention time, scaled by this rank's tokens
//   wait       a one-element all-reduce (every rank arrives) before the dispatch ...
//   dispatch   gather this rank's rows in send order (core/dep/dep_plan.h), send every peer its
//              per-expert counts first, read them back and check them against the plan, then
//              ncclSend / ncclRecv the bf16 rows in one group (rows to itself: a device copy)
//   compute    permute the received rows into per-expert groups, the MoE kernel's grouped GEMMs
//              (backends/cuda/moe) on the local experts, back into receive order
//   wait       ... and one before the combine
//   combine    the rows back to their sources, then the router-weighted sum per token (the MoE
//              kernel's combine)
// Functional mode also runs the MoE kernel with every expert's weights (DWDP's resident view)
// on this rank's tokens after each layer, outside the timed spans, and holds the DEP output to
// it with the tolerance of core/dep/dep_reference.h.

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/dep/dep_timing.h"
#include "core/run/run_dep.h"

namespace dwdp::cuda {

struct DepRankRun {
  std::vector<dep::DepRankTimes> forwards;  // this rank, one per forward
  nlohmann::json check = nullptr;           // functional mode
  std::vector<std::string> errors;
};

class DepRunner {
 public:
  virtual ~DepRunner() = default;
  // Every forward of this rank. Collective over the group the runner was made with.
  virtual absl::StatusOr<DepRankRun> Run(const DepRunSpec& spec) = 0;
};

struct DepRunnerOptions {
  int64_t rank = 0;
  int64_t ep_size = 1;
  // Ranks share a GPU, which NCCL refuses: the exchanges go through host memory and the
  // group's allgather instead (no NCCL). For functional checks on one GPU; the times are not
  // DEP's.
  bool host_staged = false;
};

// The runner is built in its own library (NCCL, the MoE kernel) that the module links; the
// module's entry point registers its maker here, as it does the MoE kernel's.
using DepRunnerMaker =
    absl::StatusOr<std::unique_ptr<DepRunner>> (*)(Comm& group, const DepRunnerOptions& options);
void SetDepRunnerMaker(DepRunnerMaker maker);
DepRunnerMaker GetDepRunnerMaker();
// The maker (dep_runner.cc, in the module only).
absl::StatusOr<std::unique_ptr<DepRunner>> MakeDepRunner(Comm& group,
                                                         const DepRunnerOptions& options);

}  // namespace dwdp::cuda
