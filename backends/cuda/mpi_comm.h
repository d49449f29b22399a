#pragma once

// MpiComm: the Comm interface on an MPI communicator. Collectives are issued non-blocking and
// waited for with a deadline, so a rank that died or never arrived is an error naming the
// operation after the timeout, never a hang. Errors are returned (MPI_ERRORS_RETURN), not
// fatal.

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/backend.h"

namespace dwdp::cuda {

// OK for MPI_SUCCESS, else "<what>: <MPI error string>".
absl::Status MpiStatus(int code, absl::string_view what);

class MpiComm : public Comm {
 public:
  // A duplicate of `comm` (MPI_Comm_dup), owned by the returned object.
  static absl::StatusOr<std::unique_ptr<MpiComm>> Duplicate(MPI_Comm comm, double timeout_seconds);
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  // Frees the communicator unless MPI is already finalised.
  ~MpiComm() override;

  int64_t rank() const override { return rank_; }
  int64_t size() const override { return size_; }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      absl::Span<const uint8_t> mine) override;
  absl::Status Barrier() override;

  // MPI_Comm_split after a barrier with the deadline (the split itself cannot time out, so the
  // barrier makes sure every rank is there first).
  absl::StatusOr<std::unique_ptr<MpiComm>> Split(int color, int key);

  MPI_Comm comm() const { return comm_; }

 private:
  MpiComm(MPI_Comm owned, int64_t rank, int64_t size, double timeout_seconds);
  // Waits for a non-blocking collective until the deadline.
  absl::Status WaitFor(MPI_Request* request, absl::string_view what);

  MPI_Comm comm_;
  int64_t rank_;
  int64_t size_;
  double timeout_seconds_;
};

}  // namespace dwdp::cuda
