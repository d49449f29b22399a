#include "backends/cuda/cuda_session.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cuda/loader.h"

namespace dwdp::cuda {

absl::StatusOr<std::unique_ptr<CudaSession>> CudaSession::Load(const CudaSessionOptions& options) {
  absl::StatusOr<CudaBackendFactory*> factory = LoadCudaBackend();
  if (!factory.ok()) return factory.status();
  return Open(**factory, options);
}

absl::StatusOr<std::unique_ptr<CudaSession>> CudaSession::Open(CudaBackendFactory& factory,
                                                               const CudaSessionOptions& options) {
  CudaInitOptions init;
  init.timeout_seconds = options.timeout_s;
  init.use_current_device = options.use_current_device;
  init.use_mpi = options.use_mpi;
  if (absl::Status s = factory.Initialize(init); !s.ok()) {
    // Nothing was started that a peer waits for: end MPI quietly, whatever the others do.
    if (!options.use_current_device) factory.Shutdown(0);
    return absl::FailedPreconditionError(s.message());
  }
  return std::unique_ptr<CudaSession>(new CudaSession(factory));
}

absl::StatusOr<int64_t> CudaSession::ProcessesOnThisGpu(Comm& comm) {
  const CudaProcessInfo& me = process();
  const std::string id = absl::StrCat(me.hostname, "\t", me.device_ordinal);
  absl::StatusOr<std::vector<std::vector<uint8_t>>> all =
      comm.Allgather(std::vector<uint8_t>(id.begin(), id.end()));
  if (!all.ok()) {
    return absl::Status(all.status().code(),
                        absl::StrCat("learn which ranks share this GPU: ", all.status().message()));
  }
  int64_t count = 0;
  for (const std::vector<uint8_t>& theirs : *all) {
    if (std::string(theirs.begin(), theirs.end()) == id) ++count;
  }
  return count;
}

void CudaSession::WarmUp(Driver& driver, Streams& streams) {
  const uint64_t g = driver.granularity();
  absl::StatusOr<Handle> probe = driver.Create(g, driver.shareable_kind());
  if (!probe.ok()) return;
  absl::StatusOr<SharedHandle> shared = driver.Export(*probe);
  absl::StatusOr<DevPtr> va = driver.Reserve(g, g);
  if (va.ok() && driver.Map(*va, g, *probe, 0).ok()) {
    absl::StatusOr<StreamId> stream = streams.CreateStream("warm-up");
    if (driver.SetAccess(*va, g).ok() && stream.ok()) {
      const PatternRef pattern{0, 0, g / 2};
      OpTag tag;
      tag.label = "warm-up";
      (void)streams.Fill(*va, g, pattern, 0, *stream, tag);
      (void)streams.Copy(*va + g / 2, *va, g / 2, *stream, tag);
      (void)streams.Launch({"warm-up", {{*va, g / 2, true, pattern}}, 0}, *stream, tag);
      (void)streams.Synchronize();
      (void)streams.TakeTimeline();
    }
    if (stream.ok()) (void)streams.DestroyStream(*stream);
    (void)driver.Unmap(*va, g);
  }
  if (va.ok()) (void)driver.Free(*va, g);
  (void)driver.Release(*probe);
}

int CudaSession::Finish(int exit_code) {
  int agreed = exit_code;
  absl::StatusOr<std::vector<std::vector<uint8_t>>> codes =
      world().Allgather(std::vector<uint8_t>{static_cast<uint8_t>(exit_code)});
  if (codes.ok()) {
    for (const std::vector<uint8_t>& c : *codes)
      agreed = std::max<int>(agreed, c.empty() ? 1 : c[0]);
  } else if (agreed == 0) {
    agreed = 1;  // a peer is gone: this job did not end well
  }
  factory_.Shutdown(agreed);
  return agreed;
}

}  // namespace dwdp::cuda
