#pragma once

// SimDriver: the CUDA VMM driver rules of SIMULATOR.md §1 for one rank, with the same CUDA
// error names in the messages as the real driver reports.
//
// Every rank owns a distinct 16 TiB slice of a simulated virtual address space, so an
// address in a message says which rank's address space it belongs to.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/sim/sim_memory.h"
#include "core/backend.h"

namespace dwdp::sim {

struct DriverLimits {
  uint64_t granularity = 2ull << 20;
  bool fabric_supported = false;
  bool imex_permitted = false;
  int64_t max_mappings = 0;         // per process (rank); 0: unlimited
  int64_t max_fabric_mappings = 0;  // mappings of imported FABRIC handles per GPU; 0: unlimited
  int64_t gpus_per_node = 0;        // POSIX fds travel only inside a node; 0: one node
};

// A piece of a resolved VA range: bytes [offset, offset + bytes) of `allocation`, seen at `va`.
// `allocation` is valid only while the caller knows the mapping is alive (right after
// resolving); `allocation_id` finds it again later, or finds it gone.
struct Segment {
  PhysicalAllocation* allocation = nullptr;
  uint64_t allocation_id = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  DevPtr va = 0;
};

class SimDriver : public Driver {
 public:
  static constexpr int kVaSpaceShift = 44;  // 16 TiB of VA per rank

  SimDriver(int64_t rank, const DriverLimits& limits, PhysicalMemory* memory);
  SimDriver(const SimDriver&) = delete;
  SimDriver& operator=(const SimDriver&) = delete;
  // Releases nothing: what is still alive at destruction is what the leak report shows.
  ~SimDriver() override = default;

  int64_t rank() const override { return rank_; }
  uint64_t granularity() const override { return limits_.granularity; }
  HandleKind shareable_kind() const override;

  absl::StatusOr<Handle> Create(uint64_t bytes, HandleKind kind) override;
  absl::StatusOr<SharedHandle> Export(Handle handle) override;
  absl::StatusOr<Handle> Import(const SharedHandle& shared) override;
  absl::StatusOr<DevPtr> Reserve(uint64_t bytes, uint64_t alignment) override;
  absl::Status Map(DevPtr va, uint64_t bytes, Handle handle, uint64_t offset) override;
  absl::Status SetAccess(DevPtr va, uint64_t bytes) override;
  absl::Status Unmap(DevPtr va, uint64_t bytes) override;
  // Told before every successful unmap (the engine faults work still using the range).
  void set_before_unmap(std::function<void(DevPtr, uint64_t)> hook) {
    before_unmap_ = std::move(hook);
  }
  absl::Status Release(Handle handle) override;
  absl::Status Free(DevPtr va, uint64_t bytes) override;

  uint64_t live_device_bytes() const override;
  uint64_t peak_device_bytes() const override;

  // Resolves [va, va + bytes) of this rank's address space into physical pieces, appended to
  // `out` in address order. A byte that is not mapped, or mapped without access, is an
  // illegal address (CUDA_ERROR_ILLEGAL_ADDRESS naming the first such VA).
  absl::Status Resolve(DevPtr va, uint64_t bytes, std::vector<Segment>* out) const;

  DevPtr va_base() const { return va_base_; }
  int64_t num_mappings() const { return static_cast<int64_t>(mappings_.size()); }
  int64_t num_imported_fabric_mappings() const { return imported_fabric_mappings_; }
  RankResources LiveResources() const override;

 private:
  struct HandleEntry {
    PhysicalAllocation* allocation = nullptr;
    bool imported = false;
  };
  struct Reservation {
    uint64_t bytes = 0;
    int64_t mappings = 0;
  };
  struct Mapping {
    uint64_t bytes = 0;
    uint64_t handle_id = 0;
    PhysicalAllocation* allocation = nullptr;  // alive while mapped
    bool imported_fabric = false;
    DevPtr reservation = 0;
    // VA ranges with access set, sorted and merged; `full` when they cover the mapping.
    absl::InlinedVector<std::pair<DevPtr, DevPtr>, 1> access;
    bool full_access = false;
  };

  bool IsGranular(uint64_t value) const { return value % limits_.granularity == 0; }
  const Reservation* FindReservation(DevPtr va, uint64_t bytes, DevPtr* base) const;
  static bool HasAccess(const Mapping& mapping, DevPtr begin, DevPtr end);
  static void AddAccess(Mapping& mapping, DevPtr map_va, DevPtr begin, DevPtr end);

  int64_t rank_;
  DriverLimits limits_;
  PhysicalMemory* memory_;
  DevPtr va_base_;
  DevPtr va_limit_;
  DevPtr va_next_;
  uint64_t next_handle_id_ = 1;
  int64_t imported_fabric_mappings_ = 0;
  absl::btree_map<uint64_t, HandleEntry> handles_;
  absl::btree_map<DevPtr, Reservation> reservations_;
  absl::btree_map<DevPtr, Mapping> mappings_;
  std::function<void(DevPtr, uint64_t)> before_unmap_;
};

// "0x200000400000" — addresses in messages.
std::string FormatVa(DevPtr va);

}  // namespace dwdp::sim
