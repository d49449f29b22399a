#include "backends/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_driver.h"
#include "backends/cuda/cuda_error.h"
#include "backends/cuda/cuda_streams.h"
#include "backends/cuda/driver_api.h"
#include "backends/cuda/fabric_exchange.h"
#include "backends/cuda/fd_exchange.h"
#include "backends/cuda/mpi_comm.h"

namespace dwdp::cuda {
namespace {

std::string Hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

// Open MPI opens its own components with dlopen and expects libmpi's symbols to be global;
// this module (and libmpi with it) was opened RTLD_LOCAL, so libmpi is promoted first.
void PromoteMpiToGlobal() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) != 0 &&
      info.dli_fname != nullptr) {
    ::dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  }
}

// The launcher's node-local rank, when it says so (Open MPI, MPICH, Slurm).
bool LocalRankFromEnvironment(int64_t* local_rank) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && absl::SimpleAtoi(value, local_rank) && *local_rank >= 0) return true;
  }
  return false;
}

// The device of the context current on this thread (set by the embedding engine, through
// this or any other copy of the CUDA runtime: the context is the driver's, shared by all).
absl::StatusOr<int> DeviceOfCurrentContext(const DriverApi& api) {
  CUcontext context = nullptr;
  if (absl::Status s = CuStatus(api.cuCtxGetCurrent(&context), "cuCtxGetCurrent"); !s.ok()) {
    return s;
  }
  if (context == nullptr) {
    return absl::FailedPreconditionError(
        "no CUDA device is current on this thread: select the engine's GPU (cudaSetDevice) "
        "before creating the dwdp runtime");
  }
  CUdevice device = 0;
  if (absl::Status s = CuStatus(api.cuCtxGetDevice(&device), "cuCtxGetDevice"); !s.ok()) {
    return s;
  }
  int count = 0;
  if (absl::Status s = RuntimeStatus(cudaGetDeviceCount(&count), "count CUDA devices"); !s.ok()) {
    return s;
  }
  for (int ordinal = 0; ordinal < count; ++ordinal) {
    CUdevice candidate = 0;
    if (api.cuDeviceGet(&candidate, ordinal) == CUDA_SUCCESS && candidate == device) {
      return ordinal;
    }
  }
  return absl::InternalError("the current CUDA context belongs to no visible device");
}

DepRunnerMaker dep_runner_maker = nullptr;

class CudaBackendFactoryImpl final : public CudaBackendFactory {
 public:
  uint32_t abi_version() const override { return kCudaBackendAbiVersion; }

  absl::Status Initialize(const CudaInitOptions& options) override {
    if (initialized_) return absl::OkStatus();
    options_ = options;
    info_.hostname = Hostname();
    // Load every kernel when the context is created, not at its first launch: lazily loaded code
    // would stay resident after teardown and read as a leak when device memory in use is
    // compared before and after a run. A user's own setting wins.
    setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);

    // The GPU first: on a machine without one that is the sentence to print, not an MPI error.
    absl::StatusOr<int> device_count = CudaDeviceCount();
    if (!device_count.ok()) {
      return absl::FailedPreconditionError(absl::StrFormat("the cuda backend cannot run on %s: %s",
                                                           info_.hostname,
                                                           device_count.status().message()));
    }
    info_.device_count = *device_count;

    int node_rank = 0;
    if (options.use_mpi) {
      if (absl::Status s = InitializeMpi(options, &node_rank); !s.ok()) return s;
    }

    absl::StatusOr<const DriverApi*> api = LoadDriverApi();
    if (!api.ok()) {
      return absl::FailedPreconditionError(absl::StrFormat("the cuda backend cannot run on %s: %s",
                                                           info_.hostname, api.status().message()));
    }
    if (options.use_current_device) {
      absl::StatusOr<int> current = DeviceOfCurrentContext(**api);
      if (!current.ok()) return current.status();
      info_.device_ordinal = *current;
    } else {
      info_.device_ordinal = static_cast<int>(info_.local_rank % info_.device_count);
    }
    if (absl::Status s = UseDevice(info_.device_ordinal); !s.ok()) return s;
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, info_.device_ordinal) == cudaSuccess) {
      info_.device_name = prop.name;
      info_.compute_capability_major = prop.major;
      info_.compute_capability_minor = prop.minor;
      info_.device_memory_bytes = prop.totalGlobalMem;
      info_.multiprocessor_count = prop.multiProcessorCount;
    }
    cudaDriverGetVersion(&info_.driver_version);
    cudaRuntimeGetVersion(&info_.runtime_version);
    if (absl::StatusOr<uint64_t> limit = RaiseOpenFileLimit(); !limit.ok()) {
      return limit.status();
    }
    if (info_.local_size > info_.device_count && node_rank == 0) {
      std::fprintf(stderr, "dwdp: %ld ranks share %d GPUs on %s (rank -> GPU local_rank %% %d)\n",
                   static_cast<long>(info_.local_size), info_.device_count, info_.hostname.c_str(),
                   info_.device_count);
    }
    initialized_ = true;
    return absl::OkStatus();
  }

  bool initialized() const override { return initialized_; }
  const CudaProcessInfo& process() const override { return info_; }

  Comm& world() override { return *world_; }

  absl::StatusOr<std::unique_ptr<Comm>> CreateGroupComm(int64_t dwdp_size) override {
    if (absl::Status s = RequireInitialized("CreateGroupComm"); !s.ok()) return s;
    if (world_ == nullptr) {
      return absl::FailedPreconditionError(
          "CreateGroupComm: the cuda backend was initialised without MPI (the caller brought its "
          "own group communicator)");
    }
    if (dwdp_size <= 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("dwdp_size must be positive, got %d", dwdp_size));
    }
    const int color = static_cast<int>(info_.world_rank / dwdp_size);
    absl::StatusOr<std::unique_ptr<MpiComm>> group =
        world_->Split(color, static_cast<int>(info_.world_rank));
    if (!group.ok()) return group.status();
    return std::unique_ptr<Comm>(std::move(*group));
  }

  absl::StatusOr<std::unique_ptr<Driver>> CreateDriver(const CudaDriverOptions& options) override {
    if (absl::Status s = RequireInitialized("CreateDriver"); !s.ok()) return s;
    CudaDriverOptions effective = options;
    effective.log_handle_choice = options.log_handle_choice && info_.world_rank == 0;
    absl::StatusOr<std::unique_ptr<CudaDriver>> driver = CudaDriver::Create(effective);
    if (!driver.ok()) return driver.status();
    return std::unique_ptr<Driver>(std::move(*driver));
  }

  absl::StatusOr<std::unique_ptr<Streams>> CreateStreams(
      const CudaStreamsOptions& options) override {
    if (absl::Status s = RequireInitialized("CreateStreams"); !s.ok()) return s;
    absl::StatusOr<std::unique_ptr<CudaStreams>> streams = CudaStreams::Create(options);
    if (!streams.ok()) return streams.status();
    return std::unique_ptr<Streams>(std::move(*streams));
  }

  absl::StatusOr<std::unique_ptr<HandleExchange>> CreateHandleExchange(
      Comm& group, HandleKind kind, const HandleExchangeOptions& options) override {
    switch (kind) {
      case HandleKind::kPosixFd:
        return std::unique_ptr<HandleExchange>(
            std::make_unique<FdHandleExchange>(group, WithEnvironmentHooks(options)));
      case HandleKind::kFabric:
        return std::unique_ptr<HandleExchange>(
            std::make_unique<FabricHandleExchange>(group, WithEnvironmentHooks(options)));
      case HandleKind::kNone:
        break;
    }
    return absl::InvalidArgumentError("a handle exchange needs a shareable handle kind");
  }

  absl::StatusOr<std::unique_ptr<DepRunner>> CreateDepRunner(
      Comm& group, const DepRunnerOptions& options) override {
    if (absl::Status s = RequireInitialized("CreateDepRunner"); !s.ok()) return s;
    const DepRunnerMaker maker = GetDepRunnerMaker();
    if (maker == nullptr) {
      return absl::UnimplementedError("this cuda backend was built without the DEP baseline");
    }
    return maker(group, options);
  }

  absl::StatusOr<uint64_t> DeviceMemoryInUse() override {
    if (absl::Status s = RequireInitialized("DeviceMemoryInUse"); !s.ok()) return s;
    return dwdp::cuda::DeviceMemoryInUse();
  }

  void Shutdown(int exit_code) override {
    int initialized = 0;
    int finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    const bool alone = world_ == nullptr || world_->size() <= 1;
    world_.reset();
    if (!initialized || finalized) return;
    std::fflush(stdout);
    std::fflush(stderr);
    if (exit_code != 0 && !alone) {
      // Peers may wait in a collective for this rank; only an abort ends them promptly.
      MPI_Abort(MPI_COMM_WORLD, exit_code);
    }
    if (owns_mpi_) MPI_Finalize();
    initialized_ = false;
  }

 private:
  // MPI_Init_thread unless MPI is up already, the world communicator, and this process's rank
  // among those of its node.
  absl::Status InitializeMpi(const CudaInitOptions& options, int* node_rank) {
    PromoteMpiToGlobal();
    int mpi_ready = 0;
    MPI_Initialized(&mpi_ready);
    if (!mpi_ready) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "the cuda backend cannot run on %s: MPI could not be initialised (start it with "
            "mpirun, or check the Open MPI installation)",
            info_.hostname));
      }
      owns_mpi_ = true;
    }
    absl::StatusOr<std::unique_ptr<MpiComm>> world =
        MpiComm::Duplicate(MPI_COMM_WORLD, options.timeout_seconds);
    if (!world.ok()) return world.status();
    world_ = std::move(*world);
    info_.world_rank = world_->rank();
    info_.world_size = world_->size();

    MPI_Comm node = MPI_COMM_NULL;
    if (absl::Status s =
            MpiStatus(MPI_Comm_split_type(world_->comm(), MPI_COMM_TYPE_SHARED,
                                          static_cast<int>(info_.world_rank), MPI_INFO_NULL, &node),
                      "MPI_Comm_split_type(SHARED)");
        !s.ok()) {
      return s;
    }
    int node_size = 1;
    MPI_Comm_rank(node, node_rank);
    MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
    info_.local_size = node_size;
    if (!LocalRankFromEnvironment(&info_.local_rank)) info_.local_rank = *node_rank;
    return absl::OkStatus();
  }

  absl::Status RequireInitialized(const char* what) const {
    if (initialized_) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrFormat("%s before the cuda backend was initialised", what));
  }

  CudaInitOptions options_;
  CudaProcessInfo info_;
  std::unique_ptr<MpiComm> world_;
  bool owns_mpi_ = false;
  bool initialized_ = false;
};

}  // namespace

void SetDepRunnerMaker(DepRunnerMaker maker) { dep_runner_maker = maker; }
DepRunnerMaker GetDepRunnerMaker() { return dep_runner_maker; }

CudaBackendFactory& GetCudaBackendFactory() {
  // Never destroyed: the module is never unloaded, and MPI teardown is Shutdown's job.
  static CudaBackendFactoryImpl* factory = new CudaBackendFactoryImpl();
  return *factory;
}

}  // namespace dwdp::cuda
