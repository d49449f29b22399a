#pragma once

// The Coordinator of a process that hosts exactly one rank of a DWDP group (the cuda backend:
// one process per GPU). Shared by `dwdp run --backend cuda` and the engine API (libdwdp.so).
// Header-only and free of CUDA and MPI types, so the dwdp binary can use it too.

#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/pipeline/runtime.h"

namespace dwdp::cuda {

class CudaCoordinator : public Coordinator {
 public:
  // Every reference must outlive the coordinator.
  CudaCoordinator(int64_t rank, Driver& driver, Streams& streams, HandleExchange& exchange,
                  Comm& group)
      : rank_(rank), driver_(driver), streams_(streams), exchange_(exchange), group_(group) {}
  std::vector<int64_t> hosted_ranks() const override { return {rank_}; }
  Driver& driver(int64_t) override { return driver_; }
  Streams& streams(int64_t) override { return streams_; }
  HandleExchange& exchange() override { return exchange_; }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      std::vector<std::vector<uint8_t>> per_hosted) override {
    if (per_hosted.size() != 1) return absl::InternalError("one hosted rank per process");
    return group_.Allgather(per_hosted.front());
  }

 private:
  int64_t rank_;
  Driver& driver_;
  Streams& streams_;
  HandleExchange& exchange_;
  Comm& group_;
};

}  // namespace dwdp::cuda
