#include "backends/cuda/cuda_driver.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_error.h"
#include "backends/cuda/driver_api.h"
#include "core/util/bytes.h"

namespace dwdp::cuda {
namespace {

CUmemAllocationHandleType CuHandleType(HandleKind kind) {
  switch (kind) {
    case HandleKind::kPosixFd:
      return CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    case HandleKind::kFabric:
      return CU_MEM_HANDLE_TYPE_FABRIC;
    case HandleKind::kNone:
      break;
  }
  return CU_MEM_HANDLE_TYPE_NONE;
}

CUmemAllocationProp DeviceAllocationProp(int cu_device, HandleKind kind) {
  CUmemAllocationProp prop;
  std::memset(&prop, 0, sizeof(prop));
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = cu_device;
  prop.requestedHandleTypes = CuHandleType(kind);
  return prop;
}

std::string Hex(uint64_t va) { return absl::StrFormat("0x%x", va); }

std::atomic<bool> handle_choice_logged{false};

}  // namespace

CudaDriver::CudaDriver(const DriverApi* api, int64_t rank, int device_ordinal, int cu_device)
    : api_(api), rank_(rank), device_ordinal_(device_ordinal), cu_device_(cu_device) {}

std::string CudaDriver::Where() const {
  return absl::StrFormat("on device %d (rank %d)", device_ordinal_, rank_);
}

absl::StatusOr<std::unique_ptr<CudaDriver>> CudaDriver::Create(const CudaDriverOptions& options) {
  absl::StatusOr<const DriverApi*> api = LoadDriverApi();
  if (!api.ok()) return api.status();
  absl::StatusOr<int> ordinal = CurrentDevice();
  if (!ordinal.ok()) return ordinal.status();
  if (absl::Status s = UseDevice(*ordinal); !s.ok()) return s;

  CUdevice cu_device = 0;
  if (absl::Status s = CuStatus((*api)->cuDeviceGet(&cu_device, *ordinal),
                                absl::StrFormat("cuDeviceGet(%d)", *ordinal));
      !s.ok()) {
    return s;
  }
  std::unique_ptr<CudaDriver> driver(new CudaDriver(*api, options.rank, *ordinal, cu_device));

  int vmm = 0;
  if (absl::Status s =
          CuStatus((*api)->cuDeviceGetAttribute(
                       &vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, cu_device),
                   absl::StrCat("query VMM support ", driver->Where()));
      !s.ok()) {
    return s;
  }
  if (vmm == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "CUDA device %d does not support virtual memory management (cuMemCreate/cuMemMap), "
        "which DWDP needs: CUDA_ERROR_NOT_SUPPORTED",
        *ordinal));
  }
  if (absl::Status s = driver->ChooseHandleKind(options); !s.ok()) return s;

  // The granularity of the allocations this rank makes: the larger of the shareable kind's and
  // the pool pages' (they are equal on every GPU measured, 2 MiB).
  for (HandleKind kind : {driver->shareable_kind_, HandleKind::kNone}) {
    CUmemAllocationProp prop = DeviceAllocationProp(cu_device, kind);
    size_t granularity = 0;
    if (absl::Status s = CuStatus((*api)->cuMemGetAllocationGranularity(
                                      &granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
                                  absl::StrFormat("cuMemGetAllocationGranularity (%s) %s",
                                                  HandleKindName(kind), driver->Where()));
        !s.ok()) {
      return s;
    }
    driver->granularity_ = std::max<uint64_t>(driver->granularity_, granularity);
  }
  return driver;
}

absl::Status CudaDriver::ProbeFabric() {
  CUmemAllocationProp prop = DeviceAllocationProp(cu_device_, HandleKind::kFabric);
  size_t granularity = 0;
  if (absl::Status s = CuStatus(api_->cuMemGetAllocationGranularity(
                                    &granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
                                "cuMemGetAllocationGranularity(FABRIC)");
      !s.ok()) {
    return s;
  }
  CUmemGenericAllocationHandle created = 0;
  if (absl::Status s =
          CuStatus(api_->cuMemCreate(&created, granularity, &prop, 0), "cuMemCreate(FABRIC)");
      !s.ok()) {
    return s;
  }
  CUmemFabricHandle fabric;
  std::memset(&fabric, 0, sizeof(fabric));
  absl::Status status =
      CuStatus(api_->cuMemExportToShareableHandle(&fabric, created, CU_MEM_HANDLE_TYPE_FABRIC, 0),
               "cuMemExportToShareableHandle(FABRIC)");
  if (status.ok()) {
    CUmemGenericAllocationHandle imported = 0;
    status = CuStatus(
        api_->cuMemImportFromShareableHandle(&imported, &fabric, CU_MEM_HANDLE_TYPE_FABRIC),
        "cuMemImportFromShareableHandle(FABRIC)");
    if (status.ok()) api_->cuMemRelease(imported);
  }
  api_->cuMemRelease(created);
  return status;
}

absl::Status CudaDriver::ChooseHandleKind(const CudaDriverOptions& options) {
  int fd_supported = 0;
  int fabric_supported = 0;
  if (absl::Status s =
          CuStatus(api_->cuDeviceGetAttribute(
                       &fd_supported,
                       CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, cu_device_),
                   absl::StrCat("query POSIX fd handle support ", Where()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CuStatus(
          api_->cuDeviceGetAttribute(&fabric_supported,
                                     CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_SUPPORTED, cu_device_),
          absl::StrCat("query fabric handle support ", Where()));
      !s.ok()) {
    return s;
  }

  absl::Status fabric_probe = absl::FailedPreconditionError(
      "the device does not report fabric handle support (CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_FABRIC_"
      "SUPPORTED = 0)");
  if (fabric_supported != 0 && options.handle_kind != HandleKindRequest::kPosixFd) {
    fabric_probe = ProbeFabric();
  }

  switch (options.handle_kind) {
    case HandleKindRequest::kFabric:
      if (!fabric_probe.ok()) {
        return absl::FailedPreconditionError(
            absl::StrFormat("fabric handles were requested but do not work %s: %s", Where(),
                            fabric_probe.message()));
      }
      shareable_kind_ = HandleKind::kFabric;
      handle_kind_reason_ = "fabric handles requested, and a probe export/import worked";
      break;
    case HandleKindRequest::kPosixFd:
      shareable_kind_ = HandleKind::kPosixFd;
      handle_kind_reason_ = "POSIX file descriptors requested";
      break;
    case HandleKindRequest::kAuto:
      if (fabric_probe.ok()) {
        shareable_kind_ = HandleKind::kFabric;
        handle_kind_reason_ =
            "the device reports fabric support and a probe create/export/import worked";
      } else {
        shareable_kind_ = HandleKind::kPosixFd;
        handle_kind_reason_ =
            fabric_supported != 0
                ? absl::StrCat("the device reports fabric support but the probe failed (",
                               fabric_probe.message(),
                               "; no IMEX channel?), so handles work within one node only")
                : "the device has no fabric handle support, so handles work within one node only";
      }
      break;
  }
  if (shareable_kind_ == HandleKind::kPosixFd && fd_supported == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "CUDA device %d supports neither fabric nor POSIX fd shareable handles (%s)",
        device_ordinal_, handle_kind_reason_));
  }
  if (options.log_handle_choice && !handle_choice_logged.exchange(true)) {
    std::fprintf(stderr, "dwdp: rank %ld exports %s handles: %s\n", static_cast<long>(rank_),
                 shareable_kind_ == HandleKind::kFabric ? "FABRIC" : "POSIX file descriptor",
                 handle_kind_reason_.c_str());
    std::fflush(stderr);
  }
  return absl::OkStatus();
}

Handle CudaDriver::Track(HandleEntry entry) {
  const uint64_t id = next_handle_id_++;
  if (!entry.imported) {
    live_bytes_ += entry.bytes;
    peak_bytes_ = std::max(peak_bytes_, live_bytes_);
  }
  handles_.emplace(id, entry);
  return Handle{id};
}

absl::StatusOr<Handle> CudaDriver::Create(uint64_t bytes, HandleKind kind) {
  CUmemAllocationProp prop = DeviceAllocationProp(cu_device_, kind);
  CUmemGenericAllocationHandle created = 0;
  if (absl::Status s = CuStatus(api_->cuMemCreate(&created, bytes, &prop, 0),
                                absl::StrFormat("cuMemCreate of %d bytes (%s, %s handle) %s", bytes,
                                                FormatBytes(bytes), HandleKindName(kind), Where()));
      !s.ok()) {
    return s;
  }
  return Track({created, bytes, kind, /*imported=*/false});
}

absl::StatusOr<SharedHandle> CudaDriver::Export(Handle handle) {
  auto it = handles_.find(handle.id);
  if (it == handles_.end() || it->second.imported || it->second.kind == HandleKind::kNone) {
    return absl::InvalidArgumentError(
        absl::StrFormat("export of handle %d %s: %s: CUDA_ERROR_INVALID_VALUE", handle.id, Where(),
                        it == handles_.end()  ? "no such handle"
                        : it->second.imported ? "an imported handle cannot be exported again"
                                              : "it was created without a shareable handle type"));
  }
  const HandleEntry& entry = it->second;
  SharedHandle shared(entry.kind, rank_, entry.bytes);
  const std::string what = absl::StrFormat("cuMemExportToShareableHandle(%s) of handle %d %s",
                                           HandleKindName(entry.kind), handle.id, Where());
  if (entry.kind == HandleKind::kPosixFd) {
    int fd = -1;
    if (absl::Status s =
            CuStatus(api_->cuMemExportToShareableHandle(
                         &fd, entry.cu_handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
                     what);
        !s.ok()) {
      return s;
    }
    shared.set_fd(fd);
  } else {
    CUmemFabricHandle fabric;
    std::memset(&fabric, 0, sizeof(fabric));
    if (absl::Status s = CuStatus(api_->cuMemExportToShareableHandle(&fabric, entry.cu_handle,
                                                                     CU_MEM_HANDLE_TYPE_FABRIC, 0),
                                  what);
        !s.ok()) {
      return s;
    }
    const auto* data = reinterpret_cast<const uint8_t*>(&fabric);
    shared.set_fabric(std::vector<uint8_t>(data, data + sizeof(fabric)));
  }
  return shared;
}

absl::StatusOr<Handle> CudaDriver::Import(const SharedHandle& shared) {
  const std::string what = absl::StrFormat(
      "cuMemImportFromShareableHandle(%s) of a %s handle of rank %d %s",
      HandleKindName(shared.kind()), FormatBytes(shared.bytes()), shared.owner_rank(), Where());
  CUmemGenericAllocationHandle imported = 0;
  if (shared.kind() == HandleKind::kPosixFd) {
    if (shared.fd() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": the shared handle holds no fd: CUDA_ERROR_INVALID_VALUE"));
    }
    // The driver takes a POSIX fd by value, passed in the pointer argument.
    void* os_handle = reinterpret_cast<void*>(static_cast<uintptr_t>(shared.fd()));
    if (absl::Status s =
            CuStatus(api_->cuMemImportFromShareableHandle(&imported, os_handle,
                                                          CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
                     what);
        !s.ok()) {
      return s;
    }
  } else if (shared.kind() == HandleKind::kFabric) {
    CUmemFabricHandle fabric;
    if (shared.fabric().size() != sizeof(fabric)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: a fabric handle has %d bytes, got %d: CUDA_ERROR_INVALID_VALUE",
                          what, sizeof(fabric), shared.fabric().size()));
    }
    std::memcpy(&fabric, shared.fabric().data(), sizeof(fabric));
    if (absl::Status s = CuStatus(
            api_->cuMemImportFromShareableHandle(&imported, &fabric, CU_MEM_HANDLE_TYPE_FABRIC),
            what);
        !s.ok()) {
      return s;
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a shareable handle: CUDA_ERROR_INVALID_VALUE"));
  }
  return Track({imported, shared.bytes(), shared.kind(), /*imported=*/true});
}

absl::StatusOr<DevPtr> CudaDriver::Reserve(uint64_t bytes, uint64_t alignment) {
  CUdeviceptr va = 0;
  if (absl::Status s =
          CuStatus(api_->cuMemAddressReserve(&va, bytes, alignment, 0, 0),
                   absl::StrFormat("cuMemAddressReserve of %d bytes (%s, alignment %d) %s", bytes,
                                   FormatBytes(bytes), alignment, Where()));
      !s.ok()) {
    return s;
  }
  reservations_[va] = bytes;
  return static_cast<DevPtr>(va);
}

absl::Status CudaDriver::Map(DevPtr va, uint64_t bytes, Handle handle, uint64_t offset) {
  auto it = handles_.find(handle.id);
  if (it == handles_.end()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cuMemMap of unknown handle %d at %s %s: CUDA_ERROR_INVALID_VALUE",
                        handle.id, Hex(va), Where()));
  }
  if (absl::Status s = CuStatus(
          api_->cuMemMap(va, bytes, offset, it->second.cu_handle, 0),
          absl::StrFormat("cuMemMap of %d bytes at %s from offset %d of handle %d (%s, %d bytes) "
                          "%s",
                          bytes, Hex(va), offset, handle.id,
                          it->second.imported ? "imported" : "local", it->second.bytes, Where()));
      !s.ok()) {
    return s;
  }
  mappings_[va] = {bytes, handle.id};
  return absl::OkStatus();
}

absl::Status CudaDriver::SetAccess(DevPtr va, uint64_t bytes) {
  CUmemAccessDesc access;
  std::memset(&access, 0, sizeof(access));
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = cu_device_;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return CuStatus(
      api_->cuMemSetAccess(va, bytes, &access, 1),
      absl::StrFormat("cuMemSetAccess (read-write) of %d bytes at %s %s", bytes, Hex(va), Where()));
}

absl::Status CudaDriver::Unmap(DevPtr va, uint64_t bytes) {
  if (absl::Status s =
          CuStatus(api_->cuMemUnmap(va, bytes),
                   absl::StrFormat("cuMemUnmap of %d bytes at %s %s", bytes, Hex(va), Where()));
      !s.ok()) {
    return s;
  }
  mappings_.erase(va);
  return absl::OkStatus();
}

absl::Status CudaDriver::Release(Handle handle) {
  auto it = handles_.find(handle.id);
  if (it == handles_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuMemRelease of unknown handle %d %s: CUDA_ERROR_INVALID_VALUE", handle.id, Where()));
  }
  if (absl::Status s = CuStatus(api_->cuMemRelease(it->second.cu_handle),
                                absl::StrFormat("cuMemRelease of handle %d (%s) %s", handle.id,
                                                FormatBytes(it->second.bytes), Where()));
      !s.ok()) {
    return s;
  }
  if (!it->second.imported) live_bytes_ -= it->second.bytes;
  handles_.erase(it);
  return absl::OkStatus();
}

absl::Status CudaDriver::Free(DevPtr va, uint64_t bytes) {
  if (absl::Status s = CuStatus(
          api_->cuMemAddressFree(va, bytes),
          absl::StrFormat("cuMemAddressFree of %d bytes at %s %s", bytes, Hex(va), Where()));
      !s.ok()) {
    return s;
  }
  reservations_.erase(va);
  return absl::OkStatus();
}

RankResources CudaDriver::LiveResources() const {
  RankResources live;
  live.rank = rank_;
  for (const auto& [id, entry] : handles_) {
    live.handles.push_back(absl::StrFormat("%s handle %d of %s (%s)",
                                           entry.imported ? "imported" : "created", id,
                                           FormatBytes(entry.bytes), HandleKindName(entry.kind)));
  }
  for (const auto& [va, mapping] : mappings_) {
    live.mappings.push_back(absl::StrFormat("mapping of handle %d at VA 0x%x, %s",
                                            mapping.handle_id, va, FormatBytes(mapping.bytes)));
  }
  for (const auto& [va, bytes] : reservations_) {
    live.reservations.push_back(
        absl::StrFormat("reservation at VA 0x%x, %s", va, FormatBytes(bytes)));
  }
  return live;
}

CudaDriver::~CudaDriver() {
  const size_t mappings = mappings_.size();
  const size_t reservations = reservations_.size();
  const size_t handles = handles_.size();
  // Errors are ignored: after a fatal device error every call fails, and there is nothing
  // better to do with a leak at teardown than to try.
  for (const auto& [va, mapping] : mappings_) api_->cuMemUnmap(va, mapping.bytes);
  for (const auto& [va, bytes] : reservations_) api_->cuMemAddressFree(va, bytes);
  for (const auto& [id, entry] : handles_) api_->cuMemRelease(entry.cu_handle);
  if (mappings + reservations + handles > 0) {
    std::fprintf(stderr,
                 "dwdp: rank %ld: the cuda driver cleaned up %zu mappings, %zu reservations and "
                 "%zu handles left alive at teardown\n",
                 static_cast<long>(rank_), mappings, reservations, handles);
  }
}

}  // namespace dwdp::cuda
