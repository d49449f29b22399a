#pragma once

// The one CUDA bring-up of every tool that runs on GPUs: `dwdp run --backend cuda`,
// `dwdp calibrate`, the engine API (libdwdp.so) and dwdp_cuda_smoke. It opens the backend
// (GPU check, MPI, device selection), warms the driver up, does the device-memory accounting
// that tells a leak from what the driver keeps, and ends the job with one agreed exit code.
//
// Free of CUDA and MPI headers (it talks to the backend through CudaBackendFactory), so the
// dwdp binary, which loads the backend at run time, uses it as the module's users do.

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "core/backend.h"

namespace dwdp::cuda {

struct CudaSessionOptions {
  // Bound on every wait of a collective (a dead or absent rank is an error, never a hang).
  double timeout_s = 60;
  // Keep the GPU already current on this thread (an engine chose it) instead of local rank
  // modulo the device count.
  bool use_current_device = false;
  // Initialise MPI (the default). An engine that passes its own group communicator (e.g.
  // torch.distributed) runs without MPI; world() is then unavailable.
  bool use_mpi = true;
};

class CudaSession {
 public:
  // Through the loader (dwdp, dwdp_cuda_smoke). A machine that cannot run the backend gets
  // FailedPrecondition with one sentence, MPI already ended.
  static absl::StatusOr<std::unique_ptr<CudaSession>> Load(const CudaSessionOptions& options);
  // Over a factory the caller has (libdwdp.so links the backend).
  static absl::StatusOr<std::unique_ptr<CudaSession>> Open(CudaBackendFactory& factory,
                                                           const CudaSessionOptions& options);

  CudaSession(const CudaSession&) = delete;
  CudaSession& operator=(const CudaSession&) = delete;
  // Leaves MPI as it is: an engine that embeds dwdp finalises MPI itself. Tools call Finish.
  ~CudaSession() = default;

  CudaBackendFactory& factory() { return factory_; }
  const CudaProcessInfo& process() const { return factory_.process(); }
  Comm& world() { return factory_.world(); }

  // How many processes of `comm` use this process's GPU (same host, same device), this one
  // included. Collective over `comm`.
  absl::StatusOr<int64_t> ProcessesOnThisGpu(Comm& comm);

  // The driver and the runtime keep some device memory for themselves the first time a VMM
  // handle is mapped, a kernel is launched (its local memory) or a copy runs. Going through
  // those paths once on a scratch granule makes the memory baseline taken after it the one a
  // correct teardown returns to. Best effort: a failure here shows up in the real setup.
  static void WarmUp(Driver& driver, Streams& streams);

  // Device memory in use on this GPU (total - free), all processes together.
  absl::StatusOr<uint64_t> DeviceMemoryInUse() { return factory_.DeviceMemoryInUse(); }

  // Every process of the job agrees on the exit code (the largest), then MPI ends: finalised
  // when it is 0, aborted otherwise (a peer may wait in a collective). Every Comm, Driver,
  // Streams and HandleExchange of the factory must be gone. Returns the agreed code (when
  // aborting it does not return).
  int Finish(int exit_code);

 private:
  explicit CudaSession(CudaBackendFactory& factory) : factory_(factory) {}
  CudaBackendFactory& factory_;
};

}  // namespace dwdp::cuda
