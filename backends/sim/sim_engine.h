#pragma once

// The event engine of the simulator (SIMULATOR.md §2): a deterministic, single-threaded
// discrete-event simulation in virtual nanoseconds of every stream of every rank of a world.
//
// * Streams run their operations in order. Wait(e) waits for the last Record(e) enqueued
//   before it (CUDA semantics); an event never recorded is complete.
// * Copies and fills are flows from the GPU that owns the source bytes to the GPU that owns
//   the destination bytes. Every GPU has an egress and an ingress port of `peer_copy_bw` and a
//   local (HBM) port of `local_copy_bw`. Active flows share the ports by max-min fairness
//   (progressive filling), recomputed only when a flow starts or ends. When two or more remote
//   flows arrive at one GPU at once its ingress shrinks to `concurrent_pull_efficiency` of the
//   port (measured: one copy stream per peer ran at half the rate the links allow).
//   A GPU's egress port is `egress_bw` (several pullers of one GPU may together get more than
//   one pair's rate: 1.34x on one H100 x4 host); while two or more remote flows leave it, the
//   port shrinks to `egress_fanout_efficiency` of that (public nvbandwidth runs: a source read by
//   all peers at once served 0.83x of one pair's rate on H800, 0.86x on a GB200 tray). When
//   `fabric_bw` is set, every remote flow of the world also shares one fabric port of `fabric_bw` x
//   GPUs: on that host each GPU pulled only about 266 GB/s when all GPUs pulled from each other
//   (rotate and one stream per peer both 1.5x the ideal), although one pair alone ran at 398 GB/s
//   and three pullers of one GPU got 532 GB/s together. A pooled port fits those runs better than a
//   per-GPU in + out limit, which makes schedules that pile onto one GPU (ascending, round robin)
//   far too slow.
// * Every copy pays a fixed cost, `copy_latency_ns` when its path is idle (about 4 us on H100).
//   By default it is modelled as extra bytes on the copy's path (latency x port bandwidth), so
//   when k flows share a port the fixed cost stretches k times like the payload: a copy's
//   ramp-up and drain wait in the same queues as its bytes. For a remote copy those bytes go
//   first and through the puller's ingress and the fabric only: the source's egress carries
//   just the payload (pulls from one GPU in small pieces are no slower than from several). That is
//   what makes 2 MiB pieces interleaved across owners so slow (measured 3.7x ideal; a pure
//   stream-side delay gives about 2.1x, this about 2.9x). `copy_latency_on_link` < 1 turns that
//   part into a plain delay on the stream before the flow starts. A remote copy that starts while
//   other remote copies run on its GPUs pays `copy_latency_loaded_ns` instead: on two H200s, 2 MiB
//   pieces pulled both ways at once took 15.2 us each where one direction alone takes 11.5 us.
// * With `fabric_share_spread` > 0, ports are shared by weighted max-min fairness: every remote
//   copy draws a weight, log-normal with mean 1 and that spread, from a generator seeded by
//   `seed`, and gets its weight's part of every port it shares. On 4x H200 all-pairs pulls
//   gave each GPU between 241 and 354 GB/s, differently in every repetition (spread 0.13),
//   while the same pulls on 2x H200 repeated to 1%; the ranks of a run then drift apart.
//   The run stays deterministic for a given seed.
// * Kernels run for their duration, but never shorter than the bytes they read at
//   `compute_read_bw`, stretched by (1 + compute_slowdown) while any flow runs on their GPU.
// * Each rank's host pays `host_issue_ns` per enqueued operation; an operation never starts
//   before it was issued. Synchronize advances the host clock to the rank's last completion.
// * A stream holds at most `stream_queue_entries` entries of work not yet complete; an enqueue
//   that would go beyond blocks the host until enough of the stream's earlier work completes
//   (measured on H100: 1,021 entries, then the next call blocks). A timed stream, as `dwdp run
//   --backend cuda` uses by default, brackets every copy, fill, kernel and wait with two timing
//   events (3 entries) and follows every record with one (2 entries): 340 timed copies fill a
//   queue. While blocked, the host issues nothing on any stream, so compute launches that come
//   after a long prefetch in program order start late.
//   The engine stays lazy: a blocked host's clock is "when that operation completes", and every
//   later operation of the rank is issued relative to it (a host gate), resolved when the
//   simulation gets there.
//
// The simulation runs lazily: enqueuing only records operations; Synchronize (of one rank) and
// RunUntilIdle move simulated time. Use it phase-wise: enqueue a phase's work on every rank,
// then synchronize. An operation issued at a host time that simulation has already passed
// starts when it is seen (counted in late_issues()).

#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/sim/sim_driver.h"
#include "backends/sim/sim_hazard.h"
#include "backends/sim/sim_memory.h"
#include "core/backend.h"

namespace dwdp::sim {

struct EngineParams {
  double peer_copy_bw = 0;                // bytes/s, egress and ingress port of every GPU
  double local_copy_bw = 0;               // bytes/s, device-to-device on one GPU
  double copy_latency_ns = 0;             // fixed cost of every copy
  double copy_latency_on_link = 1;        // part of it that occupies the path (see above)
  double copy_latency_loaded_ns = 0;      // fixed cost of a remote copy while other remote
                                          // copies run on its GPUs (0: copy_latency_ns)
  double concurrent_pull_efficiency = 1;  // ingress factor with >= 2 remote flows in
  double egress_bw = 0;                   // bytes/s, a GPU's remote egress in all (0: peer_copy_bw)
  double egress_fanout_efficiency = 1;    // egress factor with >= 2 remote flows out
  double compute_read_bw = 0;             // bytes/s a kernel reads its tensors at (0: no floor)
  double fabric_bw = 0;  // bytes/s per GPU of remote traffic, pooled over the world (0: no limit)
  double fabric_share_spread = 0;    // coefficient of variation of a remote copy's share (0: even)
  uint64_t seed = 1;                 // of the share weights
  double compute_slowdown = 0;       // fractional stretch of kernels while flows run
  double host_issue_ns = 0;          // host cost of one enqueue
  double event_ns = 0;               // cost of a record or wait on the stream
  int64_t stream_queue_entries = 0;  // entries a stream holds before the host blocks (0: no limit)
  bool timed_streams = true;         // count the timing events of a timed cuda stream
  bool functional = false;           // move and verify real bytes
  bool check_hazards = true;
  bool record_timeline = true;
};

// An asynchronous error (illegal address, failed verification), as Synchronize reports it.
struct SimError {
  int64_t rank = 0;
  double time_ns = 0;
  absl::Status status;
};

// Traffic of one GPU's ports over the run.
struct LinkStats {
  uint64_t egress_bytes = 0;  // read from this GPU by remote flows
  uint64_t ingress_bytes = 0;
  uint64_t local_bytes = 0;   // copies and fills within the GPU
  double egress_busy_ns = 0;  // time with at least one flow on the port
  double ingress_busy_ns = 0;
  double local_busy_ns = 0;
  double compute_busy_ns = 0;      // time with at least one kernel running
  std::vector<uint64_t> bytes_to;  // remote bytes sent to each GPU
};

class Engine {
 public:
  Engine(const EngineParams& params, std::vector<SimDriver*> drivers, PhysicalMemory* memory);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // The Streams interface, per rank. A stream that is not `timed` holds one queue entry per
  // operation (a cuda Streams object with its timing events off); see stream_queue_entries.
  absl::StatusOr<StreamId> CreateStream(int64_t rank, absl::string_view name, bool timed = true);
  absl::StatusOr<EventId> CreateEvent(int64_t rank);
  absl::Status DestroyEvent(int64_t rank, EventId event);
  absl::Status DestroyStream(int64_t rank, StreamId stream);
  absl::Status Record(int64_t rank, EventId event, StreamId stream, const OpTag& tag);
  absl::Status Wait(int64_t rank, StreamId stream, EventId event, const OpTag& tag);
  absl::Status Copy(int64_t rank, DevPtr dst, DevPtr src, uint64_t bytes, StreamId stream,
                    const OpTag& tag);
  absl::Status Fill(int64_t rank, DevPtr dst, uint64_t bytes, const PatternRef& pattern,
                    uint64_t tensor_offset, StreamId stream, const OpTag& tag);
  absl::Status Launch(int64_t rank, const KernelLaunch& kernel, StreamId stream, const OpTag& tag);
  // The flag start line (Streams::WaitFlag / WriteFlags). A flag word is the physical location
  // [allocation, offset] its address resolves to, whichever rank's view names it; a wait for a
  // value completes when a write of that value to that word completes (at once when one already
  // has, and no other value was written since).
  absl::Status WaitFlag(int64_t rank, StreamId stream, DevPtr flag, uint32_t value,
                        const OpTag& tag);
  absl::Status WriteFlags(int64_t rank, absl::Span<const DevPtr> flags, uint32_t value,
                          StreamId stream, const OpTag& tag);
  absl::Status Synchronize(int64_t rank);
  // Called by the rank's driver before it unmaps [va, va + bytes): every operation of the rank
  // still queued (not known complete to the host) that uses those addresses would read or write
  // unmapped memory on a GPU, an illegal address that poisons the context; here it faults, and
  // the rank's next synchronize reports it.
  void BeforeUnmap(int64_t rank, DevPtr va, uint64_t bytes);
  std::vector<TimedOp> TakeTimeline(int64_t rank);

  // Runs until no operation is pending anywhere; the first asynchronous error of any rank.
  absl::Status RunUntilIdle();

  // Host-side collective among `ranks`: their host clocks join at the latest of them, and
  // everything each host has observed happens before what any of them enqueues afterwards.
  void JoinHosts(const std::vector<int64_t>& ranks);
  // While set, the rank is inside an incomplete collective and must not enqueue work.
  void set_in_collective(int64_t rank, bool in_collective);

  // The rank's host clock as the host reads it: a host that blocked in an enqueue reads it once
  // the call returned, so this runs the simulation until the rank's blocked enqueues return.
  double SettledHostNs(int64_t rank);

  int64_t num_ranks() const { return static_cast<int64_t>(ranks_.size()); }
  double now_ns() const { return now_; }
  double host_ns(int64_t rank) const { return ranks_[rank].host_ns; }
  int64_t pending_ops(int64_t rank) const { return ranks_[rank].pending; }
  uint64_t late_issues() const { return late_issues_; }
  // Enqueues that found their stream's queue full and blocked the host.
  uint64_t host_blocks() const { return host_blocks_; }
  uint64_t ops_completed() const { return ops_completed_; }
  const std::vector<SimError>& errors() const { return errors_; }
  const LinkStats& link_stats(int64_t gpu) const { return links_[gpu]; }
  const HazardChecker* hazard_checker() const { return hazards_.get(); }
  const EngineParams& params() const { return params_; }
  // The allocation was destroyed: forget its access history.
  void ForgetAllocation(uint64_t allocation);

 private:
  enum class OpType : uint8_t { kRecord, kWait, kCopy, kFill, kKernel };
  struct Op;
  struct Stream;

  // One Record call; waits enqueued after it (and before the next record) wait for it.
  struct RecordState {
    bool done = false;
    double end_ns = 0;
    std::vector<Op*> waiters;
  };
  // A host blocked in an enqueue until `trigger` completes: every operation the rank issues
  // afterwards is issued at the gate's time plus the host time spent since.
  struct HostGate {
    double host_since_ns = 0;  // host time from the rank's previous gate (or clock) to the block
    bool trigger_done = false;
    double trigger_end_ns = 0;
    bool resolved = false;
    double ns = 0;                 // when the host returned from the blocked call
    std::vector<Stream*> waiting;  // streams whose head waits for the gate
  };
  struct VerifyRead {
    PatternRef pattern;
    DevPtr va = 0;
    std::vector<Segment> segments;
  };
  struct Op {
    uint64_t seq = 0;
    OpType type = OpType::kRecord;
    Stream* stream = nullptr;
    OpTag tag;
    uint64_t bytes = 0;
    double issue_ns = 0;  // +infinity while `gate` is unresolved
    // Issued `gate_offset_ns` of host time after `gate` resolves (null: issue_ns is final).
    std::shared_ptr<HostGate> gate;
    double gate_offset_ns = 0;
    std::vector<std::shared_ptr<HostGate>> unblocks;  // gates this operation's completion opens
    int32_t entries = 1;                              // queue entries it takes on its stream
    double start_ns = 0;
    double end_ns = 0;
    std::shared_ptr<RecordState> record;  // kRecord: its own; kWait: the one it waits for
    // kRecord of a flag write to several words: their states complete with `record`.
    std::vector<std::shared_ptr<RecordState>> also_records;
    // kCopy / kFill
    int64_t src_gpu = -1;
    int64_t dst_gpu = -1;
    std::vector<Segment> src;  // functional mode only
    std::vector<Segment> dst;
    PatternRef pattern;
    uint64_t tensor_offset = 0;
    // kKernel
    std::string kernel_name;
    std::vector<VerifyRead> verify;
    // The virtual ranges this operation reads or writes on its rank, [va, va + bytes): an unmap
    // of any of them before the operation is known complete makes it fault.
    std::vector<std::pair<DevPtr, uint64_t>> va_ranges;
    // An illegal address found at enqueue: the operation runs (takes its fixed cost) but
    // touches no memory.
    bool faulted = false;
    // Progress while running: bytes (flows) or nanoseconds of work (kernels).
    double remaining = 0;
    // A remote copy first moves its fixed cost's bytes (see BeginFlow), then its payload.
    bool in_overhead = false;
    double weight = 1;  // its part of a shared port (fabric_share_spread)
    double rate = 0;
    double finish_ns = std::numeric_limits<double>::infinity();
  };
  struct Stream {
    uint32_t index = 0;  // world-wide; the vector-clock component
    int64_t rank = 0;
    StreamId id = 0;
    std::string name;
    bool timed = true;                      // brackets operations with timing events
    std::deque<std::unique_ptr<Op>> queue;  // front: running or next
    int64_t queued_entries = 0;             // entries of the operations in `queue`
    bool busy = false;
    bool destroyed = false;
    double kick_at = -1;
    VectorClock clock;
    uint64_t joined_host_version = 0;
  };
  struct EventState {
    std::shared_ptr<RecordState> last;
    VectorClock clock;
  };
  struct RankState {
    // The host clock; while `gates` is not empty, the clock when the oldest gate's block began
    // less its host_since_ns, and the host is at the newest gate plus host_offset_ns.
    double host_ns = 0;
    std::deque<std::shared_ptr<HostGate>> gates;  // unresolved, oldest first
    double host_offset_ns = 0;
    VectorClock host_clock;
    uint64_t host_version = 0;
    absl::flat_hash_map<StreamId, Stream*> streams;
    std::vector<Stream*> stream_list;
    absl::flat_hash_map<EventId, EventState> events;
    StreamId next_stream = 1;
    EventId next_event = 1;
    int64_t pending = 0;
    double last_end_ns = 0;
    std::vector<TimedOp> timeline;
    absl::Status first_error;
    bool in_collective = false;
  };
  enum class TimerKind : uint8_t { kKick, kComplete, kBeginFlow };
  struct Timer {
    double t = 0;
    uint64_t seq = 0;
    TimerKind kind = TimerKind::kKick;
    Stream* stream = nullptr;
    Op* op = nullptr;
  };
  struct TimerLater {
    bool operator()(const Timer& a, const Timer& b) const {
      return a.t != b.t ? a.t > b.t : a.seq > b.seq;
    }
  };

  absl::StatusOr<Stream*> FindStream(int64_t rank, StreamId stream, absl::string_view call);
  absl::Status CheckRank(int64_t rank, absl::string_view call) const;
  // Host side of every enqueue: issue cost, queueing.
  Op* Enqueue(Stream* stream, std::unique_ptr<Op> op);
  // The stream's vector clock advanced past one more operation (hazard checking only).
  const VectorClock& TickClock(Stream* stream);
  AccessRef MakeAccessOp(const Op& op, AccessOpType type, DevPtr dst, DevPtr src);
  void RecordAccesses(const std::vector<Segment>& segments, AccessKind kind, const AccessRef& op,
                      const VectorClock& clock);
  void AddError(int64_t rank, absl::Status status);
  int64_t MajorityOwner(const std::vector<Segment>& segments) const;

  template <typename Done>
  absl::Status Run(Done done);
  // When `op` is issued: +infinity while its host gate is unresolved.
  double IssueTime(Op* op);
  // Resolves the rank's gates whose triggers completed, oldest first, and restarts the streams
  // that waited for them.
  void ResolveGates(RankState& rank);
  int32_t EntriesOf(const Stream& stream, const Op& op) const;
  void Schedule(double t, TimerKind kind, Stream* stream, Op* op);
  void Kick(Stream* stream);
  void StartHead(Stream* stream);
  void BeginFlow(Op* op);
  // A log-normal weight of mean 1 and coefficient of variation fabric_share_spread.
  double DrawShareWeight();
  // The fixed cost of `op`: copy_latency_loaded_ns when it is a remote copy and another remote
  // flow runs on its source or destination GPU, else copy_latency_ns.
  double CopyLatencyNs(const Op* op) const;
  void CompleteOp(Op* op);
  void RecomputeRates();
  void AdvanceTo(double t);
  void Verify(Op* op);
  void MoveBytes(Op* op);
  std::string DescribeStuck() const;

  EngineParams params_;
  std::vector<SimDriver*> drivers_;
  PhysicalMemory* memory_;
  std::unique_ptr<HazardChecker> hazards_;
  std::vector<RankState> ranks_;
  std::vector<std::unique_ptr<Stream>> streams_;  // by world-wide index
  std::priority_queue<Timer, std::vector<Timer>, TimerLater> timers_;
  // The flag words' states by (allocation, offset, value) (WaitFlag / WriteFlags).
  struct FlagKey {
    uint64_t allocation = 0;
    uint64_t offset = 0;
    uint32_t value = 0;
    template <typename H>
    friend H AbslHashValue(H h, const FlagKey& k) {
      return H::combine(std::move(h), k.allocation, k.offset, k.value);
    }
    friend bool operator==(const FlagKey&, const FlagKey&) = default;
  };
  absl::StatusOr<FlagKey> ResolveFlag(int64_t rank, DevPtr flag, uint32_t value,
                                      absl::string_view call) const;
  absl::flat_hash_map<FlagKey, std::shared_ptr<RecordState>> flags_;
  std::vector<Op*> flows_;    // copies and fills moving bytes now
  std::vector<Op*> kernels_;  // kernels running now
  std::vector<Op*> finished_;
  int64_t total_pending_ = 0;
  bool rates_dirty_ = false;
  double now_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t next_timer_seq_ = 1;
  uint64_t late_issues_ = 0;
  uint64_t host_blocks_ = 0;
  uint64_t ops_completed_ = 0;
  std::vector<SimError> errors_;
  std::vector<LinkStats> links_;
  // Scratch space reused across calls (no allocation per operation in steady state).
  std::vector<Segment> scratch_src_;
  std::vector<Segment> scratch_dst_;
  std::vector<uint8_t> scratch_bytes_;
  std::vector<double> port_capacity_;
  std::vector<int32_t> port_users_;
  std::vector<double> port_weight_;  // weight of the unfrozen flows per port
  uint64_t rng_state_ = 0;
  std::vector<int32_t> port_active_;  // flows per port since the last rate computation
  std::vector<int32_t> remote_in_;
  std::vector<uint8_t> gpu_has_flow_;
  std::vector<uint8_t> gpu_has_kernel_;
};

// The Streams of one rank of an Engine. With `timed` off its streams count one queue entry per
// operation, as a cuda Streams object without timing events (the timeline is kept either way).
class SimStreams : public Streams {
 public:
  SimStreams(Engine* engine, int64_t rank, bool timed = true)
      : engine_(engine), rank_(rank), timed_(timed) {}

  absl::StatusOr<StreamId> CreateStream(absl::string_view name) override {
    return engine_->CreateStream(rank_, name, timed_);
  }
  absl::StatusOr<EventId> CreateEvent() override { return engine_->CreateEvent(rank_); }
  absl::Status DestroyEvent(EventId event) override { return engine_->DestroyEvent(rank_, event); }
  absl::Status DestroyStream(StreamId stream) override {
    return engine_->DestroyStream(rank_, stream);
  }
  absl::Status Record(EventId event, StreamId stream, const OpTag& tag) override {
    return engine_->Record(rank_, event, stream, tag);
  }
  absl::Status Wait(StreamId stream, EventId event, const OpTag& tag) override {
    return engine_->Wait(rank_, stream, event, tag);
  }
  absl::Status Copy(DevPtr dst, DevPtr src, uint64_t bytes, StreamId stream,
                    const OpTag& tag) override {
    return engine_->Copy(rank_, dst, src, bytes, stream, tag);
  }
  absl::Status Fill(DevPtr dst, uint64_t bytes, const PatternRef& pattern, uint64_t tensor_offset,
                    StreamId stream, const OpTag& tag) override {
    return engine_->Fill(rank_, dst, bytes, pattern, tensor_offset, stream, tag);
  }
  absl::Status Launch(const KernelLaunch& kernel, StreamId stream, const OpTag& tag) override {
    return engine_->Launch(rank_, kernel, stream, tag);
  }
  absl::Status WaitFlag(StreamId stream, DevPtr flag, uint32_t value, const OpTag& tag) override {
    return engine_->WaitFlag(rank_, stream, flag, value, tag);
  }
  absl::Status WriteFlags(absl::Span<const DevPtr> flags, uint32_t value, StreamId stream,
                          const OpTag& tag) override {
    return engine_->WriteFlags(rank_, flags, value, stream, tag);
  }
  absl::Status Synchronize() override { return engine_->Synchronize(rank_); }
  std::vector<TimedOp> TakeTimeline() override { return engine_->TakeTimeline(rank_); }

  int64_t rank() const { return rank_; }
  double host_ns() const { return engine_->host_ns(rank_); }

 private:
  Engine* engine_;
  int64_t rank_;
  bool timed_;
};

}  // namespace dwdp::sim
