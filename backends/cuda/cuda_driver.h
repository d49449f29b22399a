#pragma once

// CudaDriver: the Driver interface on the CUDA VMM driver API of the current device. Every
// failure is a status "<what was done>: <CUDA error name>". The driver enforces its own rules
// (granularity, whole-handle maps); this class adds the bookkeeping that makes teardown safe
// and memory accounting possible.

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "core/backend.h"

namespace dwdp::cuda {

struct DriverApi;

class CudaDriver : public Driver {
 public:
  // Uses the current device (UseDevice): checks VMM support, reads the granularity, picks the
  // shareable handle kind (FABRIC only when the device reports support AND a probe
  // create+export+import of one granule works; else POSIX fd) and logs the choice.
  static absl::StatusOr<std::unique_ptr<CudaDriver>> Create(const CudaDriverOptions& options);

  CudaDriver(const CudaDriver&) = delete;
  CudaDriver& operator=(const CudaDriver&) = delete;
  // Unmaps, frees and releases whatever is still alive (mappings, then reservations, then
  // handles) and says so on stderr: the owner should have torn down in order already.
  ~CudaDriver() override;

  int64_t rank() const override { return rank_; }
  uint64_t granularity() const override { return granularity_; }
  HandleKind shareable_kind() const override { return shareable_kind_; }

  absl::StatusOr<Handle> Create(uint64_t bytes, HandleKind kind) override;
  absl::StatusOr<SharedHandle> Export(Handle handle) override;
  absl::StatusOr<Handle> Import(const SharedHandle& shared) override;
  absl::StatusOr<DevPtr> Reserve(uint64_t bytes, uint64_t alignment) override;
  absl::Status Map(DevPtr va, uint64_t bytes, Handle handle, uint64_t offset) override;
  absl::Status SetAccess(DevPtr va, uint64_t bytes) override;
  absl::Status Unmap(DevPtr va, uint64_t bytes) override;
  absl::Status Release(Handle handle) override;
  absl::Status Free(DevPtr va, uint64_t bytes) override;

  uint64_t live_device_bytes() const override { return live_bytes_; }
  uint64_t peak_device_bytes() const override { return peak_bytes_; }
  RankResources LiveResources() const override;

  int device_ordinal() const { return device_ordinal_; }
  // Why shareable_kind() is what it is (also what was logged).
  const std::string& handle_kind_reason() const { return handle_kind_reason_; }

 private:
  struct HandleEntry {
    uint64_t cu_handle = 0;  // CUmemGenericAllocationHandle
    uint64_t bytes = 0;
    HandleKind kind = HandleKind::kNone;
    bool imported = false;
  };
  struct MappingEntry {
    uint64_t bytes = 0;
    uint64_t handle_id = 0;
  };

  CudaDriver(const DriverApi* api, int64_t rank, int device_ordinal, int cu_device);
  absl::Status ChooseHandleKind(const CudaDriverOptions& options);
  // Creates, exports, imports and releases one granule of FABRIC memory; OK when all worked.
  absl::Status ProbeFabric();
  std::string Where() const;  // "on device 0 (rank 2)"
  Handle Track(HandleEntry entry);

  const DriverApi* api_;
  int64_t rank_;
  int device_ordinal_;
  int cu_device_;
  uint64_t granularity_ = 0;
  HandleKind shareable_kind_ = HandleKind::kPosixFd;
  std::string handle_kind_reason_;
  uint64_t next_handle_id_ = 1;
  std::map<uint64_t, HandleEntry> handles_;
  std::map<DevPtr, MappingEntry> mappings_;
  std::map<DevPtr, uint64_t> reservations_;
  uint64_t live_bytes_ = 0;
  uint64_t peak_bytes_ = 0;
};

}  // namespace dwdp::cuda
