#pragma once

// Setup, forwards and teardown of DWDP on the ranks this process hosts (DWDP_SPEC §5–6):
//
//   validate -> transport (local handles, exchange, peer views) -> composite VAs + pool
//   -> fill edge bytes -> weight manager -> allgather + scatter of small per-expert vectors
//
// A failure at any step releases everything created so far in reverse order and reports the
// first error (a failing release during rollback is appended, never replaces it). Teardown:
// synchronize -> composite VAs (unmap, free) -> pool pages -> transport (peer views unmapped
// and freed -> imported handles released -> local handles released -> fds closed). Teardown
// twice is harmless.
//
// The same code drives both backends: the simulator hosts every rank of a group in one
// process, the cuda backend one rank per process.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/backend.h"
#include "core/config/scenario.h"
#include "core/layout/layout.h"
#include "core/pipeline/weight_manager.h"

namespace dwdp {

// What a backend provides for the ranks hosted by this process.
class Coordinator {
 public:
  virtual ~Coordinator() = default;
  virtual std::vector<int64_t> hosted_ranks() const = 0;
  virtual Driver& driver(int64_t rank) = 0;
  virtual Streams& streams(int64_t rank) = 0;
  virtual HandleExchange& exchange() = 0;
  // per_hosted[i]: bytes of the i-th hosted rank. Returns every rank's bytes, by rank.
  virtual absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      std::vector<std::vector<uint8_t>> per_hosted) = 0;
};

// Planted faults of `dwdp run --inject`.
enum class Fault {
  kNone,
  kFreeAtBind,     // pipeline: free[s] recorded at bind time
  kSkipReadyWait,  // pipeline: compute does not wait on ready[s]
  kBadCopyOffset,  // one copy of one layer reads one expert off
  kPartialMap,     // setup maps part of a local handle
};
absl::StatusOr<Fault> ParseFault(absl::string_view name);
const char* FaultName(Fault fault);

// The real MoE kernel as each layer's compute (workload.compute: moe): the model's shape, the
// tokens of a forward and the two weights it reads.
struct MoeCompute {
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t tokens = 0;
  uint64_t seed = 1;  // the router's and the inputs' seeds derive from it
  MoeWeightIndex weights;
};

struct RuntimeOptions {
  bool functional = false;  // fill the synthetic pattern and verify every byte the kernel reads
  // The synthetic content of the weights (core/pattern.h): BF16 values for the real MoE kernel.
  uint32_t pattern_kind = 0;
  std::optional<MoeCompute> moe;
  Fault fault = Fault::kNone;
  // Compute per MoE layer position: work before the MoE kernel (attention) and the MoE kernel.
  std::vector<double> attention_ns;
  std::vector<double> moe_ns;
  double prelude_ns = 0;  // dense layers before the first MoE layer
  ContentionConfig contention;
  // Called with (rank, step) before each setup step; a non-OK status fails that step (tests).
  std::function<absl::Status(int64_t rank, absl::string_view step)> step_hook;
  // Where a rank's own experts come from when an engine has loaded them: the device address of
  // the rank's bytes [lsb, leb) of the layer at `position`, weight `weight`. Setup copies them
  // into the local handle at leading_edge (instead of the synthetic pattern) and waits for the
  // copies, so the engine may free its memory once Setup returns.
  std::function<absl::StatusOr<DevPtr>(int64_t rank, int64_t position, int64_t weight)>
      local_experts;
  // Streams the backend already has (an engine's own), used instead of creating the rank's
  // compute or copy stream and never destroyed by the runtime. Only with one hosted rank. Setup
  // issues its copies on the copy stream, so work the engine enqueued there before (loading
  // its chunks) is ordered before them.
  std::optional<StreamId> compute_stream;
  std::optional<StreamId> copy_stream;
};

// One undoable action of setup, in creation order; teardown runs them in reverse.
struct CleanupAction {
  std::string what;  // "release local handle of layer 7 w2_weight on rank 2"
  std::function<absl::Status()> undo;
};

class GroupRuntime {
 public:
  // Runs every setup step for the hosted ranks; on failure rolls back and returns the error.
  static absl::StatusOr<std::unique_ptr<GroupRuntime>> Setup(const GroupLayout& layout,
                                                             Coordinator& coordinator,
                                                             RuntimeOptions options);
  ~GroupRuntime();
  GroupRuntime(const GroupRuntime&) = delete;
  GroupRuntime& operator=(const GroupRuntime&) = delete;

  // Enqueues one forward on every hosted rank (prime, then per MoE layer: attention kernel,
  // wait_and_bind, MoE kernel, record_compute, prefetch_next), then synchronizes.
  absl::Status RunForward(int64_t forward);

  // Issues the copies of the layer at `position` on a hosted rank with nothing else queued and
  // waits for them (tagged "raw copy", forward -1): the same byte volumes a prefetch moves, as
  // whole runs one owner at a time, i.e. the raw single-pair copy rate that prefetch
  // efficiency is measured against, whatever the schedule.
  absl::Status ProbeLayerCopies(int64_t rank, int64_t position);

  // Host time spent in wait_and_bind over all forwards (the engine-facing cost per layer).
  struct HostCost {
    double total_ns = 0;
    double max_ns = 0;
    int64_t calls = 0;
  };
  const HostCost& wait_and_bind_cost() const { return wait_and_bind_cost_; }

  // The weight manager calls of one hosted rank, one at a time on the given streams: an engine
  // drives its own forward with them instead of RunForward (DWDP_SPEC §4). Nothing here waits
  // for the host or for other ranks. `position` is the layer's index in the sorted MoE list.
  absl::Status Prime(int64_t rank, StreamId copy);
  absl::Status WaitAndBind(int64_t rank, int64_t position, StreamId compute);
  absl::Status RecordCompute(int64_t rank, int64_t position, StreamId compute);
  absl::Status PrefetchNext(int64_t rank, int64_t position, StreamId copy);

  // Idempotent. Returns the first error of the release calls.
  absl::Status Teardown();

  // Names of the streams of a rank, for reports and traces.
  std::string stream_name(int64_t rank, StreamId stream) const;
  // The composite VA of (position, weight) on a hosted rank (tensor byte 0 at base + pre_padding).
  DevPtr composite_base(int64_t rank, int64_t position, int64_t weight) const;
  const CopyPlan& copy_plan(int64_t rank) const;
  // The actions teardown will run, in the order it runs them (tests).
  std::vector<std::string> pending_cleanup(int64_t rank) const;

 private:
  struct RankState;
  GroupRuntime(const GroupLayout& layout, Coordinator& coordinator, RuntimeOptions options);
  // Allgathers every rank's result of a setup phase; an error of any rank is everyone's.
  absl::Status AgreeOn(absl::string_view phase, absl::Status local);
  absl::Status RunSetup();
  absl::Status SetupStreams(RankState& rank);
  absl::Status CreateLocalHandles(RankState& rank);
  absl::Status ImportPeerViews(RankState& rank,
                               std::vector<std::vector<SharedHandle>>& handles_by_rank);
  absl::Status CreatePoolAndComposites(RankState& rank);
  absl::Status FillEdgeBytes(RankState& rank);
  absl::Status CreateWeightManager(RankState& rank);
  absl::Status PrepareMoeKernels(RankState& rank);
  MoeKernel MoeKernelOf(const RankState& rank, int64_t position, int64_t forward) const;
  absl::Status IssueLayerCopies(RankState& rank, int64_t position, StreamId stream,
                                const OpTag& tag);
  absl::Status ScatterSmallVectors();
  absl::Status Step(RankState& rank, absl::string_view step);
  // The weight manager of a hosted rank, or an error naming why there is none.
  absl::StatusOr<WeightManager*> ManagerOf(int64_t rank, const char* call);
  absl::Status Unwind(RankState& rank);

  const GroupLayout& layout_;
  Coordinator& coordinator_;
  RuntimeOptions options_;
  std::vector<std::unique_ptr<RankState>> ranks_;
  HostCost wait_and_bind_cost_;
};

}  // namespace dwdp
