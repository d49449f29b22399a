#pragma once

// The measurements of `dwdp calibrate` (SIMULATOR.md §2's numbers), as one rank takes them,
// written against the backend interface (core/backend.h) so that the same phases run on the
// GPUs (one process per rank, backends/cuda/cuda_calibrate.h) and on the simulator (every rank
// on its own thread of one process, backends/sim/sim_calibrate.h).
//
// Every rank creates one shareable buffer and one local destination buffer through the Driver,
// the ranks exchange handles, and every rank maps every peer's buffer. Then the ranks go
// through the same list of phases in lockstep; a group barrier before and after each phase
// makes sure that only the ranks a phase names copy. What a rank measured is its RawRank
// (core/calibrate/raw.h); rank 0 gathers them into the raw record the profile is derived from
// (core/calibrate/derive.h).
//
// Timing uses the backend's own timeline (timing events around every operation), the same clock
// `dwdp run` reports with. Two details make the numbers mean what they say:
// * every phase gets a fresh Streams object, because timeline times are float milliseconds since
//   the Streams' origin on the GPU and lose sub-microsecond precision after a few seconds;
// * every phase's work is queued behind a "gate" kernel that keeps the GPU busy while the host
//   enqueues, so copies run back to back from the stream's queue (as the pipeline's do) and the
//   host's issue cost does not leak into a copy's measured time.

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/backend.h"
#include "core/calibrate/raw.h"

namespace dwdp {

// A fresh Streams object of this rank, with timing events on or off. Destroying it waits for
// its work and destroys the streams and events it created.
using StreamsFactory = std::function<absl::StatusOr<std::unique_ptr<Streams>>(bool timing)>;
// This rank's host clock in nanoseconds (any origin): the steady clock on GPUs, the simulated
// host clock on the simulator. The host-side phases (issue costs, stream queue depth, map
// cost) read it around the calls they time.
using HostClock = std::function<double()>;

// Everything a rank measures with. The group is the whole calibration (every rank).
struct MeasureContext {
  Driver& driver;
  Comm& group;
  HandleExchange& exchange;
  StreamsFactory new_streams;
  HostClock host_now_ns;
  int64_t rank() const { return group.rank(); }
  int64_t size() const { return group.size(); }
};

// A routed-MoE layer shape to time (`dwdp calibrate --moe-shape HIDDEN,INTER,EXPERTS,TOPK`),
// BF16 weights as the cuda backend's MoE kernel takes them.
struct MoeShape {
  int64_t hidden = 0;
  int64_t intermediate = 0;  // moe_intermediate_size
  int64_t num_experts = 0;
  int64_t top_k = 0;
  // The whole layer: E x (2·inter·hidden + hidden·inter) BF16 values (w13, then w2).
  uint64_t weight_bytes() const;
  uint64_t w13_bytes() const;
  friend bool operator==(const MoeShape&, const MoeShape&) = default;
};

// "7168,2048,256,8" (hidden, intermediate, experts, top_k). InvalidArgument naming the problem.
absl::StatusOr<MoeShape> ParseMoeShape(absl::string_view text);

// Tokens per rank the MoE phase times by default: 256 .. 64K, doubling.
std::vector<int64_t> DefaultMoeTokens();
// "256,1K,4K" (K = 1024), ascending without repeats, each from 1 to 1M. InvalidArgument naming
// the first bad entry.
absl::StatusOr<std::vector<int64_t>> ParseTokenCounts(absl::string_view text);

// Device memory the layer needs per token while it runs, besides its weights: the input and
// output rows (BF16), and per routed copy of a token its permuted input, its gate/up output,
// its activation and its expert output (BF16), with its routing entry; twice that, for the
// kernel's own buffers and workspace. An estimate: the grid is capped with it so that the
// largest counts are left out rather than fail.
uint64_t MoeWorkingBytesPerToken(const MoeShape& shape);

// The counts of `tokens` whose working set fits into `budget_bytes` (the device memory left
// once the weights and the calibration's buffers are in); the others are returned in
// `skipped`. A budget of 0 means unknown: every count is kept.
std::vector<int64_t> MoeTokensThatFit(const MoeShape& shape, const std::vector<int64_t>& tokens,
                                      uint64_t budget_bytes, std::vector<int64_t>* skipped);

struct MeasureOptions {
  uint64_t max_bytes = uint64_t{1} << 30;  // each rank's shareable buffer = the largest copy
  int repetitions = 5;                     // timed repetitions of every measurement
  // Only the MoE compute phase (`--only compute`); one rank is then enough.
  bool only_compute = false;
  // Only the prefetch rotation (`--only prefetch`, Calibrator::Prefetch).
  bool only_prefetch = false;
  // The free starts of the prefetch rotation: the injected drifts, in steps (one piece at the
  // rank's pair rate); rank r starts r times the drift late. 0: no drift.
  std::vector<double> prefetch_drift_steps = {0, 0.25, 1};
  // The MoE compute phase: rank 0 times the layer of every shape over `moe_tokens`.
  std::vector<MoeShape> moe_shapes;
  std::vector<int64_t> moe_tokens = DefaultMoeTokens();
  // The GPU's memory (0: unknown): caps the token grid (MoeTokensThatFit).
  uint64_t device_memory_bytes = 0;
  // The duration a MoE launch asks for: the simulator runs the launch that long, the cuda
  // backend runs the real layer and ignores it. Empty: 0.
  std::function<double(const MoeKernel&)> moe_duration_ns;
  std::string moe_kernel;  // what runs the layer, for the tables' `kernel`
};

// The buffers' sizes: the source is max_bytes rounded down to the granularity (at least one
// granule); multi-peer phases pull half a source from each peer into distinct destination
// regions, so the destination holds that much per peer (and at least one source).
struct CalibrationSizes {
  uint64_t src_bytes = 0;
  uint64_t dst_bytes = 0;
  uint64_t per_peer_bytes = 0;
};
CalibrationSizes CalibrationBufferSizes(uint64_t granularity, uint64_t max_bytes, int64_t ranks);

// This rank's shareable source, its local destination, and a view of every peer's source.
// Torn down in reverse order of creation, also when setup stopped half way.
class CalibrationBuffers {
 public:
  // Collective over the context's exchange: every rank sets up at once.
  static absl::StatusOr<std::unique_ptr<CalibrationBuffers>> Setup(const MeasureContext& c,
                                                                   uint64_t src_bytes,
                                                                   uint64_t dst_bytes);
  CalibrationBuffers(const CalibrationBuffers&) = delete;
  CalibrationBuffers& operator=(const CalibrationBuffers&) = delete;
  ~CalibrationBuffers() { (void)Teardown(); }

  // Unmaps, frees and releases everything; returns the first error (and still does the rest).
  absl::Status Teardown();

  DevPtr src() const { return src_va_; }
  DevPtr dst() const { return dst_va_; }
  DevPtr peer(int64_t rank) const { return peer_va_[rank]; }
  uint64_t src_bytes() const { return src_bytes_; }
  uint64_t dst_bytes() const { return dst_bytes_; }

 private:
  struct Piece {
    Handle handle;
    bool has_handle = false;
    DevPtr va = 0;
    uint64_t bytes = 0;
    bool mapped = false;
  };

  explicit CalibrationBuffers(Driver& driver) : driver_(driver) {}
  absl::Status MapWhole(Handle handle, uint64_t bytes);

  Driver& driver_;
  std::vector<Piece> pieces_;
  DevPtr src_va_ = 0;
  DevPtr dst_va_ = 0;
  uint64_t src_bytes_ = 0;
  uint64_t dst_bytes_ = 0;
  std::vector<DevPtr> peer_va_;
};

// One timed operation of a phase: a copy, or a compute stand-in kernel of `duration_ns` that
// reads `bytes` at `src`.
struct Job {
  enum class Kind { kCopy, kKernel } kind = Kind::kCopy;
  int stream = 0;  // index among the phase's streams
  DevPtr dst = 0;
  DevPtr src = 0;
  uint64_t bytes = 0;
  int64_t peer = -1;
  double duration_ns = 0;
  // A kernel that is the routed-MoE layer (prepared with Streams::PrepareMoe before the phase's
  // first barrier, outside the timed work).
  std::optional<MoeKernel> moe;
};

struct JobTiming {
  double issue_ns = 0;  // host clock of the Streams object
  double start_ns = 0;  // GPU clock
  double end_ns = 0;
  double duration() const { return end_ns - start_ns; }
};

struct PhaseOutcome {
  std::vector<JobTiming> jobs;  // in job order; empty for a rank without work
  // The instant of the timeline's origin on this rank's host clock (MeasureContext::host_now_ns),
  // so that job times of ranks on one host compare: a job's start there is host_origin_ns +
  // start_ns. NaN when the phase had no jobs.
  double host_origin_ns = std::nan("");
  // The GPU started the first job before the host had issued the last one: the gate kernel was
  // too short and later jobs may include host issue time.
  bool host_fell_behind = false;
  double span_ns() const;  // first start to last end; 0 without jobs
};

// How long the gate kernel in front of `jobs` jobs runs: long enough for the host to enqueue
// everything behind it (a copy with its two timing events costs the host about 10 us; 25 us
// each leaves room; a MoE layer, `moe_jobs` of them, launches several kernels: 500 us each),
// bounded so a phase stays short.
double GateNs(size_t jobs, size_t moe_jobs = 0);

// How a phase's jobs are released on every rank.
struct PhaseStart {
  enum class Kind {
    // A group barrier, then the gate kernel (delay_ns longer than GateNs) in front of the jobs.
    kGate,
    // No barrier before: the gate kernel, delay_ns longer than GateNs, then the jobs.
    kFree,
    // The jobs wait behind a flag wait (Streams::WaitFlag) on this rank's flag word for
    // `value`; once every rank has queued its jobs (a group barrier), rank 0 writes `value` into
    // every rank's word (`release`, as rank 0 maps them) and every rank starts at once. Every
    // rank must have jobs.
    kFlag,
  } kind = Kind::kGate;
  double delay_ns = 0;
  DevPtr flag = 0;
  std::vector<DevPtr> release;  // rank 0 only
  uint32_t value = 0;
};

// Runs one phase on every rank: each rank passes its own jobs (none when it only watches). The
// barriers make the ranks start together and keep an idle rank from starting the next phase
// while others still copy.
absl::StatusOr<PhaseOutcome> RunPhase(const MeasureContext& c, const std::string& name,
                                      const std::vector<Job>& jobs);
absl::StatusOr<PhaseOutcome> RunPhase(const MeasureContext& c, const std::string& name,
                                      const std::vector<Job>& jobs, const PhaseStart& start);

// The phases one rank takes part in; what it measured goes to result(). Every rank calls the
// same phases in the same order (they synchronise through the group).
class Calibrator {
 public:
  // `b` may be null with one rank, where only MoeCompute runs.
  Calibrator(const MeasureContext& c, const CalibrationBuffers* b, const MeasureOptions& options)
      : c_(c), b_(b), options_(options), repetitions_(options.repetitions) {}

  // The GPU phases: warm-up, single pair, egress sharing, ingress concurrency, schedules, local
  // copy, compute stand-in, compute under copies. Then the host-side phases. Not MoeCompute.
  absl::Status RunAll();

  // First touch of every path (TLBs, copy-engine set-up); nothing recorded.
  absl::Status WarmUp();
  // Rank 0 pulls from rank 1, every size several times, back to back on one stream.
  absl::Status SinglePair();
  // Every rank but 0 pulls from rank 0 at once: how rank 0's egress is shared.
  absl::Status EgressSharing();
  // Rank 0 pulls from every peer at once, one stream per peer (3 ranks or more).
  absl::Status IngressConcurrency();
  // The copy schedules of DWDP_SPEC §4 (core/calibrate/copy_schedule.h), all ranks at once.
  absl::Status Schedules();
  // Device-to-device on every GPU at once.
  absl::Status LocalCopy();
  // How closely the compute stand-in kernel keeps the duration it is given.
  absl::Status ComputeStandIn();
  // Rank 0 runs the stand-in kernel alone and while rank 1's buffer is pulled into it.
  absl::Status ComputeUnderCopies();
  // Host time per Copy, Record and Wait call, with timing events off and (copies) on.
  absl::Status HostCosts();
  // Calls of each kind a stream takes behind a long kernel before the host blocks.
  absl::Status StreamQueue();
  // Host time of map, set-access and unmap of one granule.
  absl::Status MapCost();
  // Rank 0 times the routed-MoE layer of every shape of the options over the token grid, alone
  // and (2 ranks or more) while its peers' buffers are pulled into it. Nothing without shapes.
  absl::Status MoeCompute();
  // The prefetch rotation (`--only prefetch`, core/calibrate/prefetch.h): every rank pulls one
  // piece (per_peer_bytes) from every peer alone, then all ranks pull their pieces from every
  // peer in rotation order (step s from rank + s) started three ways: released by one flag,
  // after a barrier, and free with each injected drift of the options.
  absl::Status Prefetch();

  const RawRank& result() const { return out_; }
  RawRank TakeResult() { return std::move(out_); }

 private:
  uint64_t per_peer_bytes() const;
  const CalibrationBuffers& b() const { return *b_; }
  struct MoePlan;  // rank 0's token grid for one shape, shared with every rank
  absl::StatusOr<MoePlan> ShareMoePlan(const MoePlan& mine);
  absl::StatusOr<RawMoeCompute> MoeShapeTimes(const MoeShape& shape, DevPtr weights,
                                              const MoePlan& plan);
  void Warn(const std::string& phase, bool fell_behind);
  absl::StatusOr<std::vector<PhaseOutcome>> Repeat(const std::string& name,
                                                   const std::vector<Job>& jobs);
  absl::Status IssueOne(Streams& s, const std::string& kind, StreamId stream, EventId event,
                        const std::string& label);
  absl::StatusOr<std::vector<RawPrefetchCopy>> PrefetchRotation(const std::string& name,
                                                                const std::vector<Job>& jobs,
                                                                const PhaseStart& start);

  const MeasureContext& c_;
  const CalibrationBuffers* b_;
  const MeasureOptions& options_;
  int repetitions_;
  RawRank out_;
};

// The first VMM map of a peer's memory, the first kernel and copy make the driver keep some
// memory for itself: one pass through them on granule-sized buffers (set up and torn down like
// the real ones) before a device-memory baseline is taken. Collective.
absl::Status WarmUpDriver(const MeasureContext& c);

// One rank's whole measurement: setup of the buffers, every phase, teardown, and a barrier
// after it (a peer's import keeps this GPU's memory alive until the peer releases it).
// Collective: every rank calls it. The hostname and the device-memory fields of the result are
// left to the caller.
absl::StatusOr<RawRank> MeasureRank(const MeasureContext& c, const MeasureOptions& options);

// One more setup and teardown of the same buffers, then a barrier: the device-memory check's
// second run, which tells a leak (grows again) from what the driver keeps once. Collective.
absl::Status SetupAndTeardownAgain(const MeasureContext& c, const MeasureOptions& options);

// Sends this rank's measurements (or its error) to rank 0 and assembles the raw record there:
// `header` (measured_on, only, machine; no ranks) with every rank's measurements. Rank 0 gets
// the record, the others nullopt. A rank that failed makes rank 0's result an error naming it
// ("rank 2 did not finish its measurements ..."). Collective over `group`.
absl::StatusOr<std::optional<CalibrationRaw>> GatherCalibrationRaw(
    Comm& group, const absl::StatusOr<RawRank>& mine, const CalibrationRaw& header);

}  // namespace dwdp
