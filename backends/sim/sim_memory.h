#pragma once

// Physical device memory of every simulated GPU of a world (what cuMemCreate hands out).
// One registry for the whole world because an allocation created on one rank is referred to
// by handles and mappings of other ranks once it is exported and imported.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/backend.h"

namespace dwdp::sim {

struct PhysicalAllocation {
  uint64_t id = 0;  // unique in the world; doubles as the export token
  int64_t owner_gpu = 0;
  uint64_t bytes = 0;
  HandleKind kind = HandleKind::kNone;
  // Handles (the creator's and every import) not yet released.
  int64_t holders = 0;
  // Mappings of this allocation on any rank. The memory lives while either count is > 0.
  int64_t mappings = 0;
  // Contents, functional mode only (timing mode keeps sizes only).
  std::unique_ptr<uint8_t[]> data;

  bool alive() const { return holders > 0 || mappings > 0; }
};

class PhysicalMemory {
 public:
  // `capacity_bytes` 0: no device-memory limit. `stored_bytes_limit` caps the bytes kept in
  // functional mode over all GPUs together (host RAM, not device memory).
  PhysicalMemory(int64_t num_gpus, uint64_t capacity_bytes, bool store_bytes,
                 uint64_t stored_bytes_limit);

  // A new allocation with one holder. Fails with CUDA_ERROR_OUT_OF_MEMORY when the GPU's live
  // allocations would exceed its capacity, or with ResourceExhausted when functional mode would
  // store more bytes than allowed.
  absl::StatusOr<PhysicalAllocation*> Allocate(int64_t gpu, uint64_t bytes, HandleKind kind);

  // Null when the allocation does not exist (never created, or already destroyed).
  PhysicalAllocation* Find(uint64_t id);
  const PhysicalAllocation* Find(uint64_t id) const;

  // Destroys the allocation when no handle holds it and no mapping refers to it.
  void DestroyIfDead(PhysicalAllocation* allocation);

  // Called with the id of every destroyed allocation (the hazard checker drops its history).
  void set_on_destroy(std::function<void(uint64_t)> on_destroy) {
    on_destroy_ = std::move(on_destroy);
  }

  bool stores_bytes() const { return store_bytes_; }
  uint64_t capacity_bytes() const { return capacity_bytes_; }
  uint64_t live_bytes(int64_t gpu) const { return live_bytes_[gpu]; }
  uint64_t peak_bytes(int64_t gpu) const { return peak_bytes_[gpu]; }
  int64_t num_gpus() const { return static_cast<int64_t>(live_bytes_.size()); }

  // Live allocations in id order (leak reports).
  std::vector<const PhysicalAllocation*> LiveAllocations() const;

 private:
  uint64_t capacity_bytes_;
  bool store_bytes_;
  uint64_t stored_bytes_limit_;
  uint64_t stored_bytes_ = 0;
  uint64_t next_id_ = 1;
  std::vector<uint64_t> live_bytes_;
  std::vector<uint64_t> peak_bytes_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<PhysicalAllocation>> allocations_;
  std::function<void(uint64_t)> on_destroy_;
};

}  // namespace dwdp::sim
