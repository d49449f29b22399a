#pragma once

// A Driver wrapper that makes the n-th driver call fail with a chosen CUDA error, to prove
// that every failure point is reported with its context and rolls back everything created
// so far. Works over any backend's Driver.

#include <cstdint>
#include <string>
#include <vector>

#include "core/backend.h"

namespace dwdp {

class FaultyDriver : public Driver {
 public:
  // `fail_at`: 1-based index of the call that fails (0: none). `error_name`: the CUDA error
  // the failing call reports, e.g. "CUDA_ERROR_OUT_OF_MEMORY".
  FaultyDriver(Driver& inner, int64_t fail_at, std::string error_name)
      : inner_(inner), fail_at_(fail_at), error_name_(std::move(error_name)) {}

  // Release/Unmap/Free calls fail too from this call index on (rollback with failing releases).
  void fail_releases_from(int64_t call) { fail_releases_from_ = call; }

  int64_t calls() const { return calls_; }
  // "create", "map", ... of every call so far, in order.
  const std::vector<std::string>& call_log() const { return call_log_; }
  bool injected() const { return injected_; }

  int64_t rank() const override { return inner_.rank(); }
  uint64_t granularity() const override { return inner_.granularity(); }
  HandleKind shareable_kind() const override { return inner_.shareable_kind(); }
  uint64_t live_device_bytes() const override { return inner_.live_device_bytes(); }
  uint64_t peak_device_bytes() const override { return inner_.peak_device_bytes(); }
  RankResources LiveResources() const override { return inner_.LiveResources(); }

  absl::StatusOr<Handle> Create(uint64_t bytes, HandleKind kind) override;
  absl::StatusOr<SharedHandle> Export(Handle handle) override;
  absl::StatusOr<Handle> Import(const SharedHandle& shared) override;
  absl::StatusOr<DevPtr> Reserve(uint64_t bytes, uint64_t alignment) override;
  absl::Status Map(DevPtr va, uint64_t bytes, Handle handle, uint64_t offset) override;
  absl::Status SetAccess(DevPtr va, uint64_t bytes) override;
  absl::Status Unmap(DevPtr va, uint64_t bytes) override;
  absl::Status Release(Handle handle) override;
  absl::Status Free(DevPtr va, uint64_t bytes) override;

 private:
  // Counts the call; returns the injected error if this call must fail.
  absl::Status Next(const char* call, bool is_release);

  Driver& inner_;
  int64_t fail_at_;
  std::string error_name_;
  int64_t fail_releases_from_ = 0;
  int64_t calls_ = 0;
  bool injected_ = false;
  std::vector<std::string> call_log_;
};

}  // namespace dwdp
