#pragma once

// The hazard checker of SIMULATOR.md §4: every memory access resolved to (physical allocation,
// byte range), happens-before from vector clocks over all streams of the world.
//
// Accesses are checked in enqueue order, which is a linearisation of happens-before (an edge
// always points from an operation enqueued earlier to one enqueued later: stream order,
// record -> wait, host synchronisation and barriers all do), so the result does not depend
// on simulated timing. Per allocation the checker keeps, per byte range, the last write and
// the reads since that are not ordered before one another (at most one per stream): the
// history stays bounded however long the run.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "core/backend.h"

namespace dwdp::sim {

// One component per stream of the world (its global index).
class VectorClock {
 public:
  uint32_t get(size_t component) const {
    return component < clocks_.size() ? clocks_[component] : 0;
  }
  uint32_t Tick(size_t component);
  void Join(const VectorClock& other);
  bool operator==(const VectorClock&) const = default;

 private:
  std::vector<uint32_t> clocks_;
};

enum class AccessKind { kRead, kWrite };
enum class HazardKind { kReadAfterWrite, kWriteAfterRead, kWriteAfterWrite };
const char* HazardKindName(HazardKind kind);  // "read-after-write", ...

enum class AccessOpType { kCopy, kFill, kKernel };

// The operation behind accesses, shared (reference counted) by every history entry naming it.
struct AccessOp {
  uint32_t refs = 0;
  uint64_t seq = 0;  // world-wide enqueue order
  int64_t rank = 0;
  StreamId stream = 0;
  const std::string* stream_name = nullptr;  // owned by the engine, lives as long as it
  uint32_t component = 0;                    // vector-clock component of the stream
  uint32_t clock = 0;                        // the operation's epoch on that component
  AccessOpType type = AccessOpType::kCopy;
  OpTag tag;
  std::string kernel;  // kernel name (kKernel)
  DevPtr dst = 0;      // copy / fill destination
  DevPtr src = 0;      // copy source
  uint64_t bytes = 0;  // copy / fill size

  std::string Describe() const;  // "copy 0x... <- 0x... (16 MiB) [layer 3 weight 0 ...]"
};

// An intrusive, single-threaded reference to an AccessOp.
class AccessRef {
 public:
  AccessRef() = default;
  explicit AccessRef(AccessOp* op) : op_(op) { ++op_->refs; }
  AccessRef(const AccessRef& other) : op_(other.op_) {
    if (op_ != nullptr) ++op_->refs;
  }
  AccessRef(AccessRef&& other) noexcept : op_(std::exchange(other.op_, nullptr)) {}
  AccessRef& operator=(AccessRef other) noexcept {
    std::swap(op_, other.op_);
    return *this;
  }
  ~AccessRef() {
    if (op_ != nullptr && --op_->refs == 0) delete op_;
  }
  AccessOp* get() const { return op_; }
  AccessOp* operator->() const { return op_; }
  AccessOp& operator*() const { return *op_; }
  explicit operator bool() const { return op_ != nullptr; }
  bool operator==(const AccessRef& other) const { return op_ == other.op_; }

 private:
  AccessOp* op_ = nullptr;
};

// One side of a race as reported.
struct HazardAccess {
  int64_t rank = 0;
  StreamId stream = 0;
  std::string stream_name;
  AccessKind access = AccessKind::kRead;
  OpTag tag;
  std::string op;  // AccessOp::Describe()
  DevPtr va = 0;   // where this operation sees the first overlapping byte
};

struct Hazard {
  HazardKind kind = HazardKind::kReadAfterWrite;
  HazardAccess first;   // enqueued first
  HazardAccess second;  // enqueued later, not ordered after `first`
  uint64_t allocation = 0;
  int64_t owner_gpu = 0;
  uint64_t begin = 0;  // first overlapping byte range found, in the allocation
  uint64_t end = 0;
  uint64_t overlap_bytes = 0;  // every overlapping byte found for this pair of operations

  std::string ToString() const;
};

class HazardChecker {
 public:
  explicit HazardChecker(size_t max_reports = 1000) : max_reports_(max_reports) {}

  // Bytes [begin, end) of `allocation` accessed by `op`, seen at VA `va_of_begin`. `clock` is
  // the vector clock of the operation (its stream's clock including the operation).
  void Access(uint64_t allocation, int64_t owner_gpu, uint64_t begin, uint64_t end, AccessKind kind,
              const AccessRef& op, const VectorClock& clock, DevPtr va_of_begin);

  // The allocation was destroyed: its history goes too.
  void Forget(uint64_t allocation) {
    if (allocation < shadows_.size()) std::vector<ShadowRange>().swap(shadows_[allocation]);
  }

  const std::vector<Hazard>& hazards() const { return hazards_; }
  // Races found after `max_reports` distinct pairs were reported.
  uint64_t dropped() const { return dropped_; }
  // History entries held now (tests check that it stays bounded).
  size_t history_size() const;

 private:
  struct Accessor {
    AccessRef op;
    int64_t va_shift = 0;  // VA of allocation byte x = x + va_shift (wraps like the VA does)
    bool operator==(const Accessor& other) const {
      return op == other.op && va_shift == other.va_shift;
    }
  };
  struct ShadowRange {
    uint64_t begin = 0;
    uint64_t end = 0;
    Accessor write;  // op null: never written (since the history started)
    absl::InlinedVector<Accessor, 2> reads;
  };
  struct Current {
    uint64_t allocation;
    int64_t owner_gpu;
    AccessKind kind;
    const AccessRef* op;
    const VectorClock* clock;
    int64_t va_shift;
  };

  void Apply(ShadowRange& range, const Current& current);
  void Append(ShadowRange range);
  void Report(HazardKind kind, const Accessor& first, AccessKind first_kind, const Current& current,
              uint64_t begin, uint64_t end);

  size_t max_reports_;
  uint64_t dropped_ = 0;
  std::vector<Hazard> hazards_;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, size_t> reported_;  // (seq, seq) -> index
  // Indexed by allocation id (ids are dense and never reused): no hashing on the hot path.
  std::vector<std::vector<ShadowRange>> shadows_;
  std::vector<ShadowRange> scratch_;
};

}  // namespace dwdp::sim
