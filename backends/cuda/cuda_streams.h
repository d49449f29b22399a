#pragma once

// CudaStreams: the Streams interface on real CUDA streams and events of the current device.
//
// Timing (optional): every tagged operation is bracketed by two timing events from a pool (no
// event is created per operation once the pool is warm), converted in TakeTimeline to
// nanoseconds since an origin event recorded at construction. For a Wait, the event before the
// wait marks when the stream reached it and the one after when the awaited event was satisfied:
// their difference is the stall.
//
// Verification: kernels that verify their reads record the first wrong byte into a small
// device buffer (see kernels.h); Synchronize reads it back and names (layer, weight, expert,
// byte offset, expected, got).

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "core/backend.h"

struct CUstream_st;  // CUstream / cudaStream_t
struct CUevent_st;   // CUevent

namespace dwdp::cuda {

struct DriverApi;

// The real MoE kernel behind MoeKernel launches. It lives with cuBLAS in backends/cuda/moe and
// is registered by the module that links it (libdwdp_cuda.so); libdwdp.so, which an engine
// links and which runs the engine's own MoE kernels, has none and refuses such launches.
class MoeExtension {
 public:
  virtual ~MoeExtension() = default;
  // Plans the routing and tunes the GEMMs for the kernel's shape (synchronous).
  virtual absl::Status Prepare(const MoeKernel& kernel) = 0;
  // Enqueues the layer on `stream` (and, for a functional check, the resident-weights reference
  // and the comparison); never waits for the GPU.
  virtual absl::Status Enqueue(const MoeKernel& kernel, CUstream_st* stream, const OpTag& tag) = 0;
  // With every stream idle: the first output that differed from its reference since the last
  // call, as an error naming the layer and the element.
  virtual absl::Status Collect() = 0;
};
using MoeExtensionFactory = std::unique_ptr<MoeExtension> (*)(int64_t rank);
// Called once by the module that has the kernel, before any Streams is created.
void SetMoeExtensionFactory(MoeExtensionFactory factory);

class CudaStreams : public Streams {
 public:
  // Uses the current device (UseDevice).
  static absl::StatusOr<std::unique_ptr<CudaStreams>> Create(const CudaStreamsOptions& options);

  CudaStreams(const CudaStreams&) = delete;
  CudaStreams& operator=(const CudaStreams&) = delete;
  // Waits for outstanding work, then destroys every stream and event it created.
  ~CudaStreams() override;

  absl::StatusOr<StreamId> CreateStream(absl::string_view name) override;
  // Registers a stream somebody else created (an engine's cudaStream_t / CUstream, null for
  // the legacy default stream) so operations can be issued on it by StreamId. The stream stays
  // its owner's: DestroyStream and the destructor forget it without destroying it, and the
  // owner must keep it alive until then (Synchronize and the destructor wait on it). Adopting
  // the same stream again returns the same id.
  absl::StatusOr<StreamId> AdoptStream(void* stream, absl::string_view name);
  absl::StatusOr<EventId> CreateEvent() override;
  absl::Status DestroyEvent(EventId event) override;
  absl::Status DestroyStream(StreamId stream) override;

  absl::Status Record(EventId event, StreamId stream, const OpTag& tag) override;
  absl::Status Wait(StreamId stream, EventId event, const OpTag& tag) override;
  absl::Status Copy(DevPtr dst, DevPtr src, uint64_t bytes, StreamId stream,
                    const OpTag& tag) override;
  absl::Status Fill(DevPtr dst, uint64_t bytes, const PatternRef& pattern, uint64_t tensor_offset,
                    StreamId stream, const OpTag& tag) override;
  absl::Status Launch(const KernelLaunch& kernel, StreamId stream, const OpTag& tag) override;
  absl::Status WaitFlag(StreamId stream, DevPtr flag, uint32_t value, const OpTag& tag) override;
  absl::Status WriteFlags(absl::Span<const DevPtr> flags, uint32_t value, StreamId stream,
                          const OpTag& tag) override;
  absl::Status PrepareMoe(const MoeKernel& kernel) override;
  void ReleaseMoe() override { moe_.reset(); }

  absl::Status Synchronize() override;
  std::vector<TimedOp> TakeTimeline() override;

  bool timing() const { return timing_; }

 private:
  struct StreamEntry {
    CUstream_st* stream = nullptr;
    std::string name;
    bool adopted = false;  // owned by somebody else (AdoptStream): never destroyed here
  };
  // An operation whose timing events have been recorded but not yet read.
  struct PendingOp {
    TimedOp op;
    CUevent_st* start = nullptr;  // null for a Record (one event: start == end)
    CUevent_st* end = nullptr;
  };
  // A verified read, by its sequence number, to name a mismatch.
  struct VerifiedRead {
    KernelRead read;
    std::string kernel;
    OpTag tag;
  };

  CudaStreams(const DriverApi* api, const CudaStreamsOptions& options, int device_ordinal,
              int multiprocessor_count, int compute_blocks);
  absl::Status Initialize();
  absl::StatusOr<const StreamEntry*> FindStream(StreamId stream, const char* operation) const;
  absl::StatusOr<CUevent_st*> AcquireTimingEvent();
  // Records a timing event on `stream` (timing on only); null when timing is off.
  absl::StatusOr<CUevent_st*> Stamp(CUstream_st* stream, absl::string_view what);
  void Finish(StreamId stream, const OpTag& tag, uint64_t bytes, double issue_ns, CUevent_st* start,
              CUevent_st* end);
  double HostNowNs() const;
  absl::Status SynchronizeStreams();
  // Reads the mismatch buffer after the streams are idle, resets it, and names the mismatch.
  absl::Status CollectVerification();
  std::string Where() const;

  const DriverApi* api_;
  int64_t rank_;
  bool timing_;
  int device_ordinal_;
  int multiprocessor_count_;
  int compute_blocks_;  // every block resident at once (kernels.h)

  std::map<StreamId, StreamEntry> streams_;
  std::map<EventId, CUevent_st*> events_;
  StreamId next_stream_id_ = 1;
  EventId next_event_id_ = 1;

  CUstream_st* origin_stream_ = nullptr;
  CUevent_st* origin_ = nullptr;
  std::chrono::steady_clock::time_point origin_host_;
  std::vector<CUevent_st*> timing_pool_;    // free timing events
  std::vector<CUevent_st*> timing_events_;  // every timing event created (destruction)
  std::deque<PendingOp> pending_;

  uint64_t device_scratch_ = 0;               // [0]: mismatch key, [1]: compute sink
  std::vector<VerifiedRead> verified_reads_;  // index = sequence number
  absl::Status deferred_error_;        // a mismatch found while draining early (sequence overflow)
  std::unique_ptr<MoeExtension> moe_;  // created at the first MoE kernel
  absl::Status EnsureMoe();
  // The stand-in compute kernel over `reads` (verifying those marked), running `duration_ns`.
  absl::Status LaunchStandIn(const KernelLaunch& kernel, const std::vector<KernelRead>& reads,
                             double duration_ns, CUstream_st* stream, const std::string& where,
                             const OpTag& tag);
};

}  // namespace dwdp::cuda
