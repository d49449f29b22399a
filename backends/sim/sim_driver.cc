#include "backends/sim/sim_driver.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/util/bytes.h"

namespace dwdp::sim {
namespace {

constexpr const char* kInvalidValue = "CUDA_ERROR_INVALID_VALUE";
constexpr const char* kNotSupported = "CUDA_ERROR_NOT_SUPPORTED";
constexpr const char* kNotPermitted = "CUDA_ERROR_NOT_PERMITTED";
constexpr const char* kOutOfMemory = "CUDA_ERROR_OUT_OF_MEMORY";
constexpr const char* kIllegalAddress = "CUDA_ERROR_ILLEGAL_ADDRESS";

}  // namespace

std::string FormatVa(DevPtr va) { return absl::StrFormat("0x%x", va); }

SimDriver::SimDriver(int64_t rank, const DriverLimits& limits, PhysicalMemory* memory)
    : rank_(rank),
      limits_(limits),
      memory_(memory),
      va_base_(static_cast<DevPtr>(rank + 1) << kVaSpaceShift),
      va_limit_(va_base_ + (DevPtr{1} << kVaSpaceShift)),
      va_next_(va_base_) {}

HandleKind SimDriver::shareable_kind() const {
  return limits_.fabric_supported && limits_.imex_permitted ? HandleKind::kFabric
                                                            : HandleKind::kPosixFd;
}

absl::StatusOr<Handle> SimDriver::Create(uint64_t bytes, HandleKind kind) {
  const auto fail = [&](absl::Status (*make)(absl::string_view), absl::string_view why,
                        const char* code) {
    return make(absl::StrFormat("Create(bytes=%d, kind=%s) on rank %d: %s: %s", bytes,
                                HandleKindName(kind), rank_, why, code));
  };
  if (bytes == 0 || !IsGranular(bytes)) {
    return fail(absl::InvalidArgumentError,
                absl::StrCat("size must be a positive multiple of the granularity ",
                             FormatBytes(limits_.granularity)),
                kInvalidValue);
  }
  if (kind == HandleKind::kFabric && !(limits_.fabric_supported && limits_.imex_permitted)) {
    return fail(absl::PermissionDeniedError,
                limits_.fabric_supported
                    ? "the device supports fabric handles but no IMEX channel permits them"
                    : "the device does not support fabric handles",
                kNotPermitted);
  }
  absl::StatusOr<PhysicalAllocation*> allocation = memory_->Allocate(rank_, bytes, kind);
  if (!allocation.ok()) {
    return absl::Status(
        allocation.status().code(),
        absl::StrFormat("Create(bytes=%d, kind=%s) on rank %d: %s", bytes, HandleKindName(kind),
                        rank_, allocation.status().message()));
  }
  const uint64_t id = next_handle_id_++;
  handles_.emplace(id, HandleEntry{*allocation, false});
  return Handle{id};
}

absl::StatusOr<SharedHandle> SimDriver::Export(Handle handle) {
  auto it = handles_.find(handle.id);
  if (it == handles_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Export(handle=%d) on rank %d: no such handle (never created or already released): %s",
        handle.id, rank_, kInvalidValue));
  }
  const PhysicalAllocation& allocation = *it->second.allocation;
  if (allocation.kind == HandleKind::kNone) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Export(handle=%d) on rank %d: the allocation was created without a "
                        "shareable handle type: %s",
                        handle.id, rank_, kInvalidValue));
  }
  SharedHandle shared(allocation.kind, allocation.owner_gpu, allocation.bytes);
  shared.set_sim_token(allocation.id);
  return shared;
}

absl::StatusOr<Handle> SimDriver::Import(const SharedHandle& shared) {
  const auto context = absl::StrFormat("Import(kind=%s, owner rank %d, token %d) on rank %d",
                                       HandleKindName(shared.kind()), shared.owner_rank(),
                                       shared.sim_token(), rank_);
  if (shared.kind() == HandleKind::kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": not a shareable handle: ", kInvalidValue));
  }
  if (shared.kind() == HandleKind::kFabric &&
      !(limits_.fabric_supported && limits_.imex_permitted)) {
    return absl::PermissionDeniedError(absl::StrCat(
        context, ": fabric handles need fabric support and an IMEX channel: ", kNotPermitted));
  }
  PhysicalAllocation* allocation = memory_->Find(shared.sim_token());
  if (allocation == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        context, ": the token names no live allocation (released by everyone?): ", kInvalidValue));
  }
  if (allocation->kind != shared.kind()) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": the allocation was exported as ",
                                                   HandleKindName(allocation->kind), ": ",
                                                   kInvalidValue));
  }
  if (shared.kind() == HandleKind::kPosixFd && limits_.gpus_per_node > 0 &&
      allocation->owner_gpu / limits_.gpus_per_node != rank_ / limits_.gpus_per_node) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: a POSIX file descriptor cannot leave node %d (GPU %d is on node %d): %s", context,
        allocation->owner_gpu / limits_.gpus_per_node, rank_, rank_ / limits_.gpus_per_node,
        kInvalidValue));
  }
  ++allocation->holders;
  const uint64_t id = next_handle_id_++;
  handles_.emplace(id, HandleEntry{allocation, true});
  return Handle{id};
}

absl::StatusOr<DevPtr> SimDriver::Reserve(uint64_t bytes, uint64_t alignment) {
  const auto context =
      absl::StrFormat("Reserve(bytes=%d, alignment=%d) on rank %d", bytes, alignment, rank_);
  if (bytes == 0 || !IsGranular(bytes) || !IsGranular(alignment)) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": size and alignment must be multiples of the granularity ",
                     FormatBytes(limits_.granularity), ": ", kInvalidValue));
  }
  // A bump allocator that never reuses addresses: deterministic, and a stale pointer into a
  // freed reservation can never alias a newer one.
  const std::optional<uint64_t> base =
      AlignUp(va_next_, std::max<uint64_t>(alignment, limits_.granularity));
  if (!base || *base > va_limit_ || bytes > va_limit_ - *base) {
    return absl::ResourceExhaustedError(absl::StrCat(
        context, ": the rank's 16 TiB of virtual address space is used up: ", kOutOfMemory));
  }
  va_next_ = *base + bytes;
  reservations_.emplace(*base, Reservation{bytes, 0});
  return *base;
}

const SimDriver::Reservation* SimDriver::FindReservation(DevPtr va, uint64_t bytes,
                                                         DevPtr* base) const {
  auto it = reservations_.upper_bound(va);
  if (it == reservations_.begin()) return nullptr;
  --it;
  const DevPtr begin = it->first;
  const uint64_t size = it->second.bytes;
  if (va - begin >= size || bytes > size - (va - begin)) return nullptr;
  *base = begin;
  return &it->second;
}

absl::Status SimDriver::Map(DevPtr va, uint64_t bytes, Handle handle, uint64_t offset) {
  const auto context = absl::StrFormat("Map(va=%s, bytes=%d, handle=%d, offset=%d) on rank %d",
                                       FormatVa(va), bytes, handle.id, offset, rank_);
  const auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": ", why, ": ", kInvalidValue));
  };
  if (bytes == 0) return invalid("size is zero");
  auto handle_it = handles_.find(handle.id);
  if (handle_it == handles_.end()) {
    return invalid("no such handle (never created or already released)");
  }
  if (!IsGranular(va) || !IsGranular(bytes) || !IsGranular(offset)) {
    return invalid(absl::StrCat("address, size and offset must be multiples of the granularity ",
                                FormatBytes(limits_.granularity)));
  }
  DevPtr reservation_base = 0;
  if (FindReservation(va, bytes, &reservation_base) == nullptr) {
    return invalid("the range does not lie inside one reservation");
  }
  auto next = mappings_.lower_bound(va);
  if (next != mappings_.end() && next->first < va + bytes) {
    return invalid(absl::StrCat("the range overlaps the mapping at ", FormatVa(next->first)));
  }
  if (next != mappings_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.bytes > va) {
      return invalid(absl::StrCat("the range overlaps the mapping at ", FormatVa(prev->first)));
    }
  }
  PhysicalAllocation* allocation = handle_it->second.allocation;
  if (offset > allocation->bytes || bytes > allocation->bytes - offset) {
    return invalid(
        absl::StrFormat("offset + size exceed the %d-byte allocation", allocation->bytes));
  }
  if (bytes != allocation->bytes || offset != 0) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s: partial mapping of a %d-byte allocation; only the whole handle at offset 0 can be "
        "mapped (H100, GB200): %s",
        context, allocation->bytes, kNotSupported));
  }
  if (limits_.max_mappings > 0 && num_mappings() >= limits_.max_mappings) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: the process already has the maximum of %d mappings: %s", context,
                        limits_.max_mappings, kOutOfMemory));
  }
  const bool imported_fabric =
      handle_it->second.imported && allocation->kind == HandleKind::kFabric;
  if (imported_fabric && limits_.max_fabric_mappings > 0 &&
      imported_fabric_mappings_ >= limits_.max_fabric_mappings) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: GPU %d already maps the maximum of %d imported fabric handles: %s",
                        context, rank_, limits_.max_fabric_mappings, kOutOfMemory));
  }
  Mapping mapping;
  mapping.bytes = bytes;
  mapping.handle_id = handle.id;
  mapping.allocation = allocation;
  mapping.imported_fabric = imported_fabric;
  mapping.reservation = reservation_base;
  mappings_.emplace(va, std::move(mapping));
  ++allocation->mappings;
  ++reservations_[reservation_base].mappings;
  if (imported_fabric) ++imported_fabric_mappings_;
  return absl::OkStatus();
}

bool SimDriver::HasAccess(const Mapping& mapping, DevPtr begin, DevPtr end) {
  if (mapping.full_access) return true;
  for (const auto& [lo, hi] : mapping.access) {
    if (lo <= begin && end <= hi) return true;
  }
  return false;
}

void SimDriver::AddAccess(Mapping& mapping, DevPtr map_va, DevPtr begin, DevPtr end) {
  mapping.access.emplace_back(begin, end);
  std::sort(mapping.access.begin(), mapping.access.end());
  absl::InlinedVector<std::pair<DevPtr, DevPtr>, 1> merged;
  for (const auto& range : mapping.access) {
    if (!merged.empty() && range.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, range.second);
    } else {
      merged.push_back(range);
    }
  }
  mapping.access = std::move(merged);
  mapping.full_access = mapping.access.size() == 1 && mapping.access[0].first == map_va &&
                        mapping.access[0].second == map_va + mapping.bytes;
}

absl::Status SimDriver::SetAccess(DevPtr va, uint64_t bytes) {
  const auto context =
      absl::StrFormat("SetAccess(va=%s, bytes=%d) on rank %d", FormatVa(va), bytes, rank_);
  const auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": ", why, ": ", kInvalidValue));
  };
  if (bytes == 0 || !IsGranular(va) || !IsGranular(bytes)) {
    return invalid(absl::StrCat("address and size must be positive multiples of the granularity ",
                                FormatBytes(limits_.granularity)));
  }
  const DevPtr end = va + bytes;
  // Check the whole range first: a refused call changes nothing.
  auto it = mappings_.upper_bound(va);
  if (it == mappings_.begin() || std::prev(it)->first + std::prev(it)->second.bytes <= va) {
    return invalid(absl::StrCat(FormatVa(va), " is not mapped"));
  }
  auto first = std::prev(it);
  DevPtr covered = first->first + first->second.bytes;
  for (auto walk = std::next(first); covered < end; ++walk) {
    if (walk == mappings_.end() || walk->first != covered) {
      return invalid(
          absl::StrCat("the range is not fully mapped: ", FormatVa(covered), " is not mapped"));
    }
    covered = walk->first + walk->second.bytes;
  }
  for (auto walk = first; walk != mappings_.end() && walk->first < end; ++walk) {
    AddAccess(walk->second, walk->first, std::max(va, walk->first),
              std::min(end, walk->first + walk->second.bytes));
  }
  return absl::OkStatus();
}

absl::Status SimDriver::Unmap(DevPtr va, uint64_t bytes) {
  const auto context =
      absl::StrFormat("Unmap(va=%s, bytes=%d) on rank %d", FormatVa(va), bytes, rank_);
  auto it = mappings_.find(va);
  if (it == mappings_.end() || it->second.bytes != bytes) {
    std::string why = "no mapping was created with exactly this range";
    auto containing = mappings_.upper_bound(va);
    if (containing != mappings_.begin()) {
      --containing;
      if (containing->first + containing->second.bytes > va) {
        why = absl::StrFormat("the range is not the mapping at %s of %d bytes (no sub-ranges)",
                              FormatVa(containing->first), containing->second.bytes);
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(context, ": ", why, ": ", kInvalidValue));
  }
  if (before_unmap_) before_unmap_(va, bytes);
  PhysicalAllocation* allocation = it->second.allocation;
  --reservations_[it->second.reservation].mappings;
  if (it->second.imported_fabric) --imported_fabric_mappings_;
  mappings_.erase(it);
  --allocation->mappings;
  memory_->DestroyIfDead(allocation);
  return absl::OkStatus();
}

absl::Status SimDriver::Release(Handle handle) {
  auto it = handles_.find(handle.id);
  if (it == handles_.end()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Release(handle=%d) on rank %d: no such handle (never created or "
                        "already released): %s",
                        handle.id, rank_, kInvalidValue));
  }
  PhysicalAllocation* allocation = it->second.allocation;
  handles_.erase(it);
  --allocation->holders;
  // Memory still mapped somewhere lives on until the last unmap.
  memory_->DestroyIfDead(allocation);
  return absl::OkStatus();
}

absl::Status SimDriver::Free(DevPtr va, uint64_t bytes) {
  const auto context =
      absl::StrFormat("Free(va=%s, bytes=%d) on rank %d", FormatVa(va), bytes, rank_);
  auto it = reservations_.find(va);
  if (it == reservations_.end() || it->second.bytes != bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        context, ": no reservation was made with exactly this range: ", kInvalidValue));
  }
  if (it->second.mappings > 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the reservation still has %d mapping(s); unmap them first: %s",
                        context, it->second.mappings, kInvalidValue));
  }
  reservations_.erase(it);
  return absl::OkStatus();
}

uint64_t SimDriver::live_device_bytes() const { return memory_->live_bytes(rank_); }
uint64_t SimDriver::peak_device_bytes() const { return memory_->peak_bytes(rank_); }

absl::Status SimDriver::Resolve(DevPtr va, uint64_t bytes, std::vector<Segment>* out) const {
  if (bytes == 0) return absl::OkStatus();
  const auto illegal = [&](DevPtr where, absl::string_view why) {
    return absl::InternalError(absl::StrFormat("illegal address %s on rank %d (%s): %s",
                                               FormatVa(where), rank_, why, kIllegalAddress));
  };
  if (va > ~DevPtr{0} - bytes) return illegal(va, "the range wraps around");
  const DevPtr end = va + bytes;
  auto it = mappings_.upper_bound(va);
  if (it == mappings_.begin()) return illegal(va, "not mapped");
  --it;
  DevPtr cursor = va;
  while (cursor < end) {
    if (it == mappings_.end() || it->first > cursor || it->first + it->second.bytes <= cursor) {
      return illegal(cursor, "not mapped");
    }
    const Mapping& mapping = it->second;
    const DevPtr piece_end = std::min(end, it->first + mapping.bytes);
    if (!HasAccess(mapping, cursor, piece_end)) {
      return illegal(cursor, "mapped, but access was never set with cuMemSetAccess");
    }
    out->push_back(Segment{mapping.allocation, mapping.allocation->id, cursor - it->first,
                           piece_end - cursor, cursor});
    cursor = piece_end;
    ++it;
  }
  return absl::OkStatus();
}

RankResources SimDriver::LiveResources() const {
  RankResources resources;
  resources.rank = rank_;
  for (const auto& [id, entry] : handles_) {
    resources.handles.push_back(
        absl::StrFormat("handle %d: %s allocation %d of %s on GPU %d (%s)", id,
                        entry.imported ? "imported" : "local", entry.allocation->id,
                        FormatBytes(entry.allocation->bytes), entry.allocation->owner_gpu,
                        HandleKindName(entry.allocation->kind)));
  }
  for (const auto& [va, mapping] : mappings_) {
    resources.mappings.push_back(
        absl::StrFormat("mapping %s + %s -> handle %d (allocation %d on GPU %d)", FormatVa(va),
                        FormatBytes(mapping.bytes), mapping.handle_id, mapping.allocation->id,
                        mapping.allocation->owner_gpu));
  }
  for (const auto& [va, reservation] : reservations_) {
    resources.reservations.push_back(absl::StrFormat("reservation %s + %s (%d mapping(s))",
                                                     FormatVa(va), FormatBytes(reservation.bytes),
                                                     reservation.mappings));
  }
  return resources;
}

}  // namespace dwdp::sim
