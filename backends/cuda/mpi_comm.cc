#include "backends/cuda/mpi_comm.h"

#include <chrono>
#include <climits>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dwdp::cuda {
namespace {

// The buffers of one non-blocking allgather. When the wait times out, MPI still owns them (a
// late rank may yet complete the operation), so they are deliberately leaked then.
struct AllgatherBuffers {
  uint64_t my_size = 0;
  std::vector<uint64_t> sizes;
  std::vector<uint8_t> send;
  std::vector<uint8_t> receive;
  std::vector<int> counts;
  std::vector<int> displacements;
};

}  // namespace

absl::Status MpiStatus(int code, absl::string_view what) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  const std::string detail = length > 0 ? std::string(text, static_cast<size_t>(length))
                                        : absl::StrCat("MPI error ", code);
  return absl::InternalError(absl::StrCat(what, ": ", detail));
}

MpiComm::MpiComm(MPI_Comm owned, int64_t rank, int64_t size, double timeout_seconds)
    : comm_(owned), rank_(rank), size_(size), timeout_seconds_(timeout_seconds) {}

absl::StatusOr<std::unique_ptr<MpiComm>> MpiComm::Duplicate(MPI_Comm comm, double timeout_seconds) {
  MPI_Comm copy = MPI_COMM_NULL;
  if (absl::Status s = MpiStatus(MPI_Comm_dup(comm, &copy), "MPI_Comm_dup"); !s.ok()) return s;
  // Failures come back as codes with the operation named, instead of aborting the job.
  MPI_Comm_set_errhandler(copy, MPI_ERRORS_RETURN);
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(copy, &rank);
  MPI_Comm_size(copy, &size);
  return std::unique_ptr<MpiComm>(new MpiComm(copy, rank, size, timeout_seconds));
}

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

absl::Status MpiComm::WaitFor(MPI_Request* request, absl::string_view what) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(timeout_seconds_));
  auto pause = std::chrono::microseconds(1);
  while (true) {
    int done = 0;
    if (absl::Status s = MpiStatus(MPI_Test(request, &done, MPI_STATUS_IGNORE),
                                   absl::StrFormat("%s on rank %d of %d", what, rank_, size_));
        !s.ok()) {
      return s;
    }
    if (done) return absl::OkStatus();
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s on rank %d of %d: not every rank joined within %g s (a rank exited, failed "
          "earlier, or is stuck)",
          what, rank_, size_, timeout_seconds_));
    }
    // Back off from polling to sleeping: setup collectives are rare, the CPU is shared.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> MpiComm::Allgather(
    absl::Span<const uint8_t> mine) {
  auto buffers = std::make_unique<AllgatherBuffers>();
  buffers->my_size = mine.size();
  buffers->sizes.resize(static_cast<size_t>(size_));
  buffers->send.assign(mine.begin(), mine.end());
  buffers->send.push_back(0);  // never empty: some MPIs dislike a null buffer

  MPI_Request request = MPI_REQUEST_NULL;
  if (absl::Status s =
          MpiStatus(MPI_Iallgather(&buffers->my_size, 1, MPI_UINT64_T, buffers->sizes.data(), 1,
                                   MPI_UINT64_T, comm_, &request),
                    "MPI_Iallgather of sizes");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WaitFor(&request, "allgather of sizes"); !s.ok()) {
    buffers.release();  // still MPI's (see AllgatherBuffers)
    return s;
  }
  uint64_t total = 0;
  buffers->counts.resize(static_cast<size_t>(size_));
  buffers->displacements.resize(static_cast<size_t>(size_));
  for (int64_t r = 0; r < size_; ++r) {
    const uint64_t n = buffers->sizes[static_cast<size_t>(r)];
    if (n > static_cast<uint64_t>(INT_MAX) || total > static_cast<uint64_t>(INT_MAX) - n) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "allgather on rank %d: %d bytes from rank %d (%d so far) exceed MPI's int counts", rank_,
          n, r, total));
    }
    buffers->counts[static_cast<size_t>(r)] = static_cast<int>(n);
    buffers->displacements[static_cast<size_t>(r)] = static_cast<int>(total);
    total += n;
  }
  buffers->receive.resize(total + 1);
  if (absl::Status s =
          MpiStatus(MPI_Iallgatherv(buffers->send.data(), static_cast<int>(buffers->my_size),
                                    MPI_BYTE, buffers->receive.data(), buffers->counts.data(),
                                    buffers->displacements.data(), MPI_BYTE, comm_, &request),
                    "MPI_Iallgatherv");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WaitFor(&request, "allgather"); !s.ok()) {
    buffers.release();  // still MPI's (see AllgatherBuffers)
    return s;
  }
  std::vector<std::vector<uint8_t>> gathered(static_cast<size_t>(size_));
  for (int64_t r = 0; r < size_; ++r) {
    const auto begin = buffers->receive.begin() + buffers->displacements[static_cast<size_t>(r)];
    gathered[static_cast<size_t>(r)].assign(begin, begin + buffers->counts[static_cast<size_t>(r)]);
  }
  return gathered;
}

absl::Status MpiComm::Barrier() {
  MPI_Request request = MPI_REQUEST_NULL;
  if (absl::Status s = MpiStatus(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier"); !s.ok()) {
    return s;
  }
  return WaitFor(&request, "barrier");
}

absl::StatusOr<std::unique_ptr<MpiComm>> MpiComm::Split(int color, int key) {
  if (absl::Status s = Barrier(); !s.ok()) return s;
  MPI_Comm split = MPI_COMM_NULL;
  if (absl::Status s =
          MpiStatus(MPI_Comm_split(comm_, color, key, &split),
                    absl::StrFormat("MPI_Comm_split (color %d) on rank %d", color, rank_));
      !s.ok()) {
    return s;
  }
  MPI_Comm_set_errhandler(split, MPI_ERRORS_RETURN);
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(split, &rank);
  MPI_Comm_size(split, &size);
  return std::unique_ptr<MpiComm>(new MpiComm(split, rank, size, timeout_seconds_));
}

}  // namespace dwdp::cuda
