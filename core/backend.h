#pragma once

// The narrow interface both backends implement (ARCHITECTURE.md "Backend interface").
// One Driver and one Streams object per rank. The core never includes a backend header.
//
// Driver mirrors the CUDA VMM driver API: every call returns a Status whose message carries
// the CUDA error name (e.g. "CUDA_ERROR_NOT_SUPPORTED"), so the simulator and the GPU report
// failures identically. Streams mirrors streams/events/async copies/kernel launches.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace dwdp {

using DevPtr = uint64_t;  // a device virtual address

enum class HandleKind {
  kNone,     // not shareable (pool pages)
  kPosixFd,  // CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR: one node only
  kFabric,   // CU_MEM_HANDLE_TYPE_FABRIC: multi-node NVLink with IMEX
};
const char* HandleKindName(HandleKind kind);

// A physical allocation handle, local to one Driver.
struct Handle {
  uint64_t id = 0;
  friend bool operator==(const Handle&, const Handle&) = default;
};

// An exported handle as it travels to a peer. For kPosixFd `fd` is owned by this object
// (closed on destruction); for kFabric `fabric` holds the opaque 64 bytes. The simulator
// uses `sim_token` instead of a real fd.
class SharedHandle {
 public:
  SharedHandle() = default;
  SharedHandle(HandleKind kind, int64_t owner_rank, uint64_t bytes)
      : kind_(kind), owner_rank_(owner_rank), bytes_(bytes) {}
  SharedHandle(SharedHandle&& other) noexcept;
  SharedHandle& operator=(SharedHandle&& other) noexcept;
  SharedHandle(const SharedHandle&) = delete;
  SharedHandle& operator=(const SharedHandle&) = delete;
  ~SharedHandle();

  HandleKind kind() const { return kind_; }
  int64_t owner_rank() const { return owner_rank_; }
  uint64_t bytes() const { return bytes_; }

  int fd() const { return fd_; }
  void set_fd(int fd);  // takes ownership
  int release_fd();     // gives ownership away
  void close_fd();

  const std::vector<uint8_t>& fabric() const { return fabric_; }
  void set_fabric(std::vector<uint8_t> bytes) { fabric_ = std::move(bytes); }

  uint64_t sim_token() const { return sim_token_; }
  void set_sim_token(uint64_t token) { sim_token_ = token; }

 private:
  HandleKind kind_ = HandleKind::kNone;
  int64_t owner_rank_ = -1;
  uint64_t bytes_ = 0;
  int fd_ = -1;
  std::vector<uint8_t> fabric_;
  uint64_t sim_token_ = 0;
};

// What a rank's driver still holds (after teardown: what leaked), one line per object.
struct RankResources {
  int64_t rank = 0;
  std::vector<std::string> handles;
  std::vector<std::string> mappings;
  std::vector<std::string> reservations;
  bool empty() const { return handles.empty() && mappings.empty() && reservations.empty(); }
  // "rank 2: 1 handle(s), 0 mapping(s), 1 reservation(s)" followed by the objects, or "" when
  // nothing is alive.
  std::string ToString() const;
};

class Driver {
 public:
  virtual ~Driver() = default;

  virtual int64_t rank() const = 0;
  virtual uint64_t granularity() const = 0;
  // The handle kind this driver exports (FABRIC or POSIX fd, decided at start-up).
  virtual HandleKind shareable_kind() const = 0;

  // cuMemCreate. `kind` kNone creates a non-shareable allocation.
  virtual absl::StatusOr<Handle> Create(uint64_t bytes, HandleKind kind) = 0;
  // cuMemExportToShareableHandle.
  virtual absl::StatusOr<SharedHandle> Export(Handle handle) = 0;
  // cuMemImportFromShareableHandle. The caller closes an imported fd right after.
  virtual absl::StatusOr<Handle> Import(const SharedHandle& shared) = 0;
  // cuMemAddressReserve.
  virtual absl::StatusOr<DevPtr> Reserve(uint64_t bytes, uint64_t alignment) = 0;
  // cuMemMap. Partial maps are refused with CUDA_ERROR_NOT_SUPPORTED (H100, GB200).
  virtual absl::Status Map(DevPtr va, uint64_t bytes, Handle handle, uint64_t offset) = 0;
  // cuMemSetAccess (read-write for this rank's device).
  virtual absl::Status SetAccess(DevPtr va, uint64_t bytes) = 0;
  // cuMemUnmap: exactly a range that Map created.
  virtual absl::Status Unmap(DevPtr va, uint64_t bytes) = 0;
  // cuMemRelease.
  virtual absl::Status Release(Handle handle) = 0;
  // cuMemAddressFree.
  virtual absl::Status Free(DevPtr va, uint64_t bytes) = 0;

  // Physical bytes this rank has allocated now and at most (memory accounting).
  virtual uint64_t live_device_bytes() const = 0;
  virtual uint64_t peak_device_bytes() const = 0;
  // Every handle, mapping and reservation this driver created or imported and has not yet
  // released, unmapped or freed: the process's own accounting, exact whatever else shares the
  // GPU, so a teardown that leaves anything behind is found by name.
  virtual RankResources LiveResources() const = 0;
};

using StreamId = int64_t;
using EventId = int64_t;

// The synthetic content of tensor bytes: byte x of (layer, weight) is a function of
// (layer, weight, expert = x / expert_bytes, offset = x % expert_bytes). Functional mode fills
// local handles with it and the verification kernel checks every byte against it.
struct PatternRef {
  int64_t layer = 0;
  int64_t weight = 0;
  uint64_t expert_bytes = 0;
  uint32_t kind = 0;  // kPatternBytes or kPatternBf16 (core/pattern.h)
};
uint8_t PatternByte(const PatternRef& pattern, uint64_t tensor_offset);
// Writes the pattern of tensor bytes [tensor_offset, tensor_offset + bytes) to `out`, a word
// at a time (the same bytes as PatternByte, fast enough for GiB-sized functional runs).
void FillPattern(const PatternRef& pattern, uint64_t tensor_offset, uint8_t* out, uint64_t bytes);

// What an operation is, for timing reports, traces and error messages.
enum class OpKind { kCopy, kEdgeCopy, kFill, kCompute, kWait, kRecord };
struct OpTag {
  OpKind kind = OpKind::kCopy;
  int64_t layer = -1;   // MoE layer index, -1 when none
  int64_t weight = -1;  // weight index, -1 when none
  int64_t peer = -1;    // source rank of a copy
  int64_t slot = -1;
  int64_t forward = -1;
  std::string label;
};
const char* OpKindName(OpKind kind);
// "layer 3 weight 0 slot 1 peer 1 forward 0 'label'" (fields that are -1 left out; "" for an
// empty tag). Both backends name operations with it, so a failure reads the same on either.
std::string FormatOpTag(const OpTag& tag);

// A read of one composite tensor by a kernel. With `verify` set the kernel checks every byte
// of [va, va + bytes) against the pattern (tensor offset 0 at va).
struct KernelRead {
  DevPtr va = 0;
  uint64_t bytes = 0;
  bool verify = false;
  PatternRef pattern;
};

// The routed-MoE layer of a model, run on a layer's composite tensors (workload.compute: moe):
// router over seeded logits, token permutation, the gate_up and down grouped GEMMs over the
// [num_experts, ...] BF16 tensors, SiLU·mul, un-permute and weighted combine. The cuda backend
// runs the real kernel; the simulator takes `duration_ns` of the launch (the perf model's, from
// a measured table when the profile has one) and checks the reads as for any kernel.
struct MoeKernel {
  int64_t hidden = 0;
  int64_t intermediate = 0;  // moe_intermediate_size
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t tokens = 0;         // tokens this rank computes in the forward
  uint64_t routing_seed = 0;  // seeds the router's logits (the routing of the layer)
  uint64_t input_seed = 0;    // seeds the layer's input activations
  DevPtr w13 = 0;             // tensor byte 0 of [E, 2·intermediate, hidden]
  DevPtr w2 = 0;              // tensor byte 0 of [E, hidden, intermediate]
  // Functional runs: the same kernel, plan and strategy also run on an ordinary, fully resident
  // copy of the layer's weights filled with the pattern of (layer, w13_weight / w2_weight), and
  // the two outputs must be bitwise equal; the first differing element is an error.
  bool check_against_resident = false;
  int64_t layer = 0;
  int64_t w13_weight = 0;
  int64_t w2_weight = 1;
};

struct KernelLaunch {
  std::string name;
  std::vector<KernelRead> reads;
  double duration_ns = 0;  // how long the kernel runs (compute stand-in; the sim's MoE time)
  std::optional<MoeKernel> moe;
};

// One operation as it ran, in nanoseconds since the backend's time origin.
struct TimedOp {
  int64_t rank = 0;
  StreamId stream = 0;
  OpTag tag;
  uint64_t bytes = 0;
  double issue_ns = 0;  // host enqueued it
  double start_ns = 0;  // the stream started it (for waits: the stream reached it)
  double end_ns = 0;    // done (for waits: the event was satisfied)
};

class Streams {
 public:
  virtual ~Streams() = default;

  virtual absl::StatusOr<StreamId> CreateStream(absl::string_view name) = 0;
  virtual absl::StatusOr<EventId> CreateEvent() = 0;
  virtual absl::Status DestroyEvent(EventId event) = 0;
  virtual absl::Status DestroyStream(StreamId stream) = 0;

  virtual absl::Status Record(EventId event, StreamId stream, const OpTag& tag) = 0;
  // The stream waits for the last Record of `event` enqueued before this call (CUDA semantics).
  virtual absl::Status Wait(StreamId stream, EventId event, const OpTag& tag) = 0;
  // Asynchronous copy; `src` may lie in a peer view (an imported peer handle).
  virtual absl::Status Copy(DevPtr dst, DevPtr src, uint64_t bytes, StreamId stream,
                            const OpTag& tag) = 0;
  // Writes the synthetic pattern for tensor bytes [tensor_offset, tensor_offset + bytes) at dst.
  virtual absl::Status Fill(DevPtr dst, uint64_t bytes, const PatternRef& pattern,
                            uint64_t tensor_offset, StreamId stream, const OpTag& tag) = 0;
  virtual absl::Status Launch(const KernelLaunch& kernel, StreamId stream, const OpTag& tag) = 0;
  // A start line for the ranks of one machine (the calibration's synchronised start): the stream
  // holds until the 32-bit word at `flag` (this rank's memory or a mapped view of a peer's)
  // equals `value`, so what is queued behind it starts the moment another rank writes it. A spin
  // kernel on the GPU, a flag state in the simulator's engine.
  virtual absl::Status WaitFlag(StreamId stream, DevPtr flag, uint32_t value, const OpTag& tag) = 0;
  // Writes `value` into the 32-bit word at every one of `flags` (views of peers' memory
  // included), from the GPU, in stream order.
  virtual absl::Status WriteFlags(absl::Span<const DevPtr> flags, uint32_t value, StreamId stream,
                                  const OpTag& tag) = 0;
  // Set-up work for MoE launches of this shape, token count and routing seed (the cuda backend
  // plans the routing and tunes its GEMMs here, synchronously, so that no launch inside a
  // forward waits for the host). Backends without a real MoE kernel have nothing to do.
  virtual absl::Status PrepareMoe(const MoeKernel& /*kernel*/) { return absl::OkStatus(); }
  // Frees what PrepareMoe and MoE launches hold (their buffers, plans, reference weights); the
  // runtime calls it at teardown, so device memory is back where setup found it.
  virtual void ReleaseMoe() {}

  // Waits for all work; returns the first asynchronous error (a failed verification, an
  // illegal address) with context.
  virtual absl::Status Synchronize() = 0;

  // Operations that completed since the last call (timing reports, traces).
  virtual std::vector<TimedOp> TakeTimeline() = 0;
};

// Process-group services between ranks; MPI on cuda, in-process on sim.
class Comm {
 public:
  virtual ~Comm() = default;
  virtual int64_t rank() const = 0;
  virtual int64_t size() const = 0;
  virtual absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      absl::Span<const uint8_t> mine) = 0;
  virtual absl::Status Barrier() = 0;
};

// Moves exported handles between the ranks of a group during setup (DWDP_SPEC §5). The sim
// backend runs every rank of a group in one process; the cuda backend runs one rank per
// process (fabric handles by MPI allgather, POSIX fds over Unix sockets with SCM_RIGHTS).
class HandleExchange {
 public:
  virtual ~HandleExchange() = default;
  // exported[i]: the handles of the i-th rank hosted by this process, in the order every rank
  // agrees on (sorted (layer, weight)). Returns, for each hosted rank i, the handles of every
  // rank of the group: result[i][rank][k]. A peer that never shows up is an error after the
  // exchange's timeout, never a hang.
  virtual absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> Exchange(
      std::vector<std::vector<SharedHandle>> exported) = 0;
  // All ranks of the group have finished setup up to this point.
  virtual absl::Status Barrier() = 0;
};

}  // namespace dwdp
