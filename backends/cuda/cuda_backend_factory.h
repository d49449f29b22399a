#pragma once

// The cuda backend as the dwdp binary sees it. The backend lives in a loadable module
// (libdwdp_cuda.so) that links MPI and the static CUDA runtime, so that `dwdp` itself starts on
// a machine with no GPU, no driver and no MPI runtime. The module exports one C entry point
// (kCudaBackendEntryPoint) returning a CudaBackendFactory; loader.h finds and opens it.
//
// This header is shared by the binary and the module: it must not include CUDA or MPI headers.
//
// Use, one process per rank (mpirun -np N dwdp run --backend cuda ...):
//   CudaBackendFactory* factory = LoadCudaBackend().value();
//   factory->Initialize({});              // GPU check, MPI_Init_thread, device selection
//   Comm& world = factory->world();
//   auto group = factory->CreateGroupComm(dwdp_size);          // MPI_Comm_split(rank / d)
//   auto driver = factory->CreateDriver({.rank = group->rank()});
//   auto streams = factory->CreateStreams({.rank = group->rank()});
//   auto exchange = factory->CreateHandleExchange(**group, driver->shareable_kind(), {});
//   ... setup, forwards, teardown; destroy every object above ...
//   factory->Shutdown(exit_code);         // MPI_Finalize, or MPI_Abort when a rank failed

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/cuda/dep/dep_runner.h"
#include "core/backend.h"

namespace dwdp::cuda {

// Bumped whenever anything in this header changes; the loader refuses a module built from a
// different version of it (the binary and the module share C++ types across the boundary).
inline constexpr uint32_t kCudaBackendAbiVersion = 5;
inline constexpr char kCudaBackendEntryPoint[] = "dwdp_cuda_backend_factory";
inline constexpr char kCudaBackendModuleFile[] = "libdwdp_cuda.so";

struct CudaInitOptions {
  // Bound on every wait of an MPI collective issued by the backend (allgather, barrier): a rank
  // that died or never arrived is an error after this long, never a hang.
  double timeout_seconds = 60;
  // Keep the GPU whose (primary) context is current on the calling thread instead of picking
  // local rank modulo the device count: an engine that embeds dwdp has chosen its GPU already.
  // No current context is then an error that says so.
  bool use_current_device = false;
  // false: leave MPI alone (neither initialised nor used) because the caller brings its own
  // group communicator (the engine API's Options::group_comm, e.g. torch.distributed). world()
  // and CreateGroupComm are then unavailable, and world_rank / world_size stay 0 / 1.
  bool use_mpi = true;
};

// What Initialize found out about this process and its GPU.
struct CudaProcessInfo {
  int64_t world_rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;  // rank among the processes of this node
  int64_t local_size = 1;
  std::string hostname;
  int device_ordinal = 0;  // the GPU this process uses: local_rank % device_count
  int device_count = 0;
  std::string device_name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  uint64_t device_memory_bytes = 0;
  int multiprocessor_count = 0;
  int driver_version = 0;   // e.g. 13000
  int runtime_version = 0;  // the CUDA runtime the module was built with
};

// Which shareable handle type exported allocations use.
enum class HandleKindRequest {
  kAuto,     // FABRIC when the device reports support and a probe works, else POSIX fd
  kPosixFd,  // force POSIX file descriptors (one node)
  kFabric,   // force FABRIC (multi-node NVLink with IMEX); an error when unavailable
};

struct CudaDriverOptions {
  int64_t rank = 0;  // Driver::rank(), the owner rank of exported handles, and in messages
  HandleKindRequest handle_kind = HandleKindRequest::kAuto;
  // Print the handle-kind decision and its reason to stderr, once per process. Through the
  // factory only world rank 0 prints.
  bool log_handle_choice = true;
};

struct CudaStreamsOptions {
  int64_t rank = 0;  // TimedOp::rank
  // Record start/end timing events around every tagged operation (TakeTimeline). Off, the host
  // cost of enqueuing (e.g. wait_and_bind) can be measured without the events' own cost, and
  // TakeTimeline returns nothing.
  bool timing = true;
};

struct HandleExchangeOptions {
  // Bound on every wait of the exchange (peers connecting, handles arriving, barriers).
  double timeout_seconds = 60;
  // File descriptors per SCM_RIGHTS message (the kernel accepts at most 253).
  int max_fds_per_message = 250;
  // Only processes of this uid may connect to the exchange socket. Empty: this process's
  // effective uid. Tests override it to prove that a foreign uid is turned away.
  std::optional<uint32_t> allowed_peer_uid;
  // Test hook for the killed-rank test: the process whose group rank equals this exits with
  // `exit_after_export_code` inside Exchange, its handles exported but none sent (fd: after the
  // ranks agreed on the socket names; fabric: before the allgather). The others must fail
  // within the timeout with a message naming the rank or the operation. When -1, the
  // environment variable DWDP_TEST_EXIT_AFTER_EXPORT_RANK (read by CreateHandleExchange) may
  // set it.
  int64_t exit_after_export_rank = -1;
  int exit_after_export_code = 3;
};

// One per process, owned by the module (never deleted; the module is never unloaded).
// Every method is called from the thread that called Initialize.
class CudaBackendFactory {
 public:
  virtual uint32_t abi_version() const = 0;

  // Checks for a usable GPU and driver first (so that a machine without one gets that sentence,
  // not an MPI error), then initialises MPI (MPI_Init_thread, funneled) unless it already is,
  // picks the GPU (local rank modulo the device count), creates its primary context, loads the
  // driver entry points and raises the open-file limit (fd passing). A FailedPrecondition status
  // means this machine cannot run the cuda backend; the message says why in one sentence.
  virtual absl::Status Initialize(const CudaInitOptions& options) = 0;
  virtual bool initialized() const = 0;
  virtual const CudaProcessInfo& process() const = 0;

  // MPI_COMM_WORLD (a duplicate), valid from Initialize until Shutdown (with use_mpi only).
  virtual Comm& world() = 0;
  // The DWDP group of this rank: MPI_Comm_split with color world_rank / dwdp_size, ordered by
  // world rank. Destroy it before Shutdown.
  virtual absl::StatusOr<std::unique_ptr<Comm>> CreateGroupComm(int64_t dwdp_size) = 0;

  virtual absl::StatusOr<std::unique_ptr<Driver>> CreateDriver(
      const CudaDriverOptions& options) = 0;
  virtual absl::StatusOr<std::unique_ptr<Streams>> CreateStreams(
      const CudaStreamsOptions& options) = 0;
  // kPosixFd: fds over Unix domain sockets with SCM_RIGHTS (all ranks of `group` on one node);
  // kFabric: the opaque 64-byte handles by allgather over `group`. `group` must outlive the
  // returned object.
  virtual absl::StatusOr<std::unique_ptr<HandleExchange>> CreateHandleExchange(
      Comm& group, HandleKind kind, const HandleExchangeOptions& options) = 0;

  // The DEP baseline's rank on this GPU (backends/cuda/dep/dep_runner.h): an NCCL communicator
  // of `group` (its unique id travels by allgather over `group`), which must outlive the runner.
  // NCCL_NVLS_ENABLE is set to 0 unless the environment sets it.
  virtual absl::StatusOr<std::unique_ptr<DepRunner>> CreateDepRunner(
      Comm& group, const DepRunnerOptions& options) = 0;

  // Device memory in use on this process's GPU (total - free, cuMemGetInfo): compared before
  // setup and after teardown to show that every run gives back what it took.
  virtual absl::StatusOr<uint64_t> DeviceMemoryInUse() = 0;

  // Ends MPI. exit_code 0, or a single-rank job: MPI_Finalize, then returns. Otherwise
  // MPI_Abort(exit_code), which ends every rank of the job (peers may be stuck in a collective
  // with the failed rank) and does not return. Every Comm, Driver, Streams and HandleExchange
  // must be destroyed before. Harmless when MPI was never initialised or is already finalised.
  virtual void Shutdown(int exit_code) = 0;

 protected:
  ~CudaBackendFactory() = default;
};

}  // namespace dwdp::cuda

// The module's only exported symbol (kCudaBackendEntryPoint). Returns null when the caller was
// built against a different kCudaBackendAbiVersion.
extern "C" {
using DwdpCudaBackendFactoryFn = dwdp::cuda::CudaBackendFactory* (*)(uint32_t abi_version);
}
