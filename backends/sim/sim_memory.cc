#include "backends/sim/sim_memory.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/util/bytes.h"

namespace dwdp::sim {

PhysicalMemory::PhysicalMemory(int64_t num_gpus, uint64_t capacity_bytes, bool store_bytes,
                               uint64_t stored_bytes_limit)
    : capacity_bytes_(capacity_bytes),
      store_bytes_(store_bytes),
      stored_bytes_limit_(stored_bytes_limit),
      live_bytes_(num_gpus, 0),
      peak_bytes_(num_gpus, 0) {}

absl::StatusOr<PhysicalAllocation*> PhysicalMemory::Allocate(int64_t gpu, uint64_t bytes,
                                                             HandleKind kind) {
  const uint64_t live = live_bytes_[gpu];
  if (capacity_bytes_ != 0 && (bytes > capacity_bytes_ || live > capacity_bytes_ - bytes)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("GPU %d has %s of %s device memory in use; %s more does not fit: "
                        "CUDA_ERROR_OUT_OF_MEMORY",
                        gpu, FormatBytes(live), FormatBytes(capacity_bytes_), FormatBytes(bytes)));
  }
  auto allocation = std::make_unique<PhysicalAllocation>();
  if (store_bytes_) {
    if (bytes > stored_bytes_limit_ || stored_bytes_ > stored_bytes_limit_ - bytes) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "functional mode stores every byte in host memory: %s more on top of %s exceeds the "
          "limit of %s; use timing mode for a scenario this large",
          FormatBytes(bytes), FormatBytes(stored_bytes_), FormatBytes(stored_bytes_limit_)));
    }
    // Zeroed, so that bytes nobody wrote are deterministic (and wrong for any pattern check
    // that expects real data, which is the point).
    allocation->data = std::make_unique<uint8_t[]>(bytes);
    stored_bytes_ += bytes;
  }
  allocation->id = next_id_++;
  allocation->owner_gpu = gpu;
  allocation->bytes = bytes;
  allocation->kind = kind;
  allocation->holders = 1;
  live_bytes_[gpu] = live + bytes;
  peak_bytes_[gpu] = std::max(peak_bytes_[gpu], live_bytes_[gpu]);
  PhysicalAllocation* raw = allocation.get();
  allocations_.emplace(raw->id, std::move(allocation));
  return raw;
}

PhysicalAllocation* PhysicalMemory::Find(uint64_t id) {
  auto it = allocations_.find(id);
  return it == allocations_.end() ? nullptr : it->second.get();
}

const PhysicalAllocation* PhysicalMemory::Find(uint64_t id) const {
  auto it = allocations_.find(id);
  return it == allocations_.end() ? nullptr : it->second.get();
}

void PhysicalMemory::DestroyIfDead(PhysicalAllocation* allocation) {
  if (allocation == nullptr || allocation->alive()) return;
  const uint64_t id = allocation->id;
  live_bytes_[allocation->owner_gpu] -= allocation->bytes;
  if (allocation->data) stored_bytes_ -= allocation->bytes;
  allocations_.erase(id);
  if (on_destroy_) on_destroy_(id);
}

std::vector<const PhysicalAllocation*> PhysicalMemory::LiveAllocations() const {
  std::vector<const PhysicalAllocation*> out;
  out.reserve(allocations_.size());
  for (const auto& [id, allocation] : allocations_) out.push_back(allocation.get());
  std::sort(out.begin(), out.end(),
            [](const PhysicalAllocation* a, const PhysicalAllocation* b) { return a->id < b->id; });
  return out;
}

}  // namespace dwdp::sim
