#include "api/callback_comm.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace dwdp::api {
namespace {

// What the callback hands over, rank by rank.
struct Gathered {
  std::vector<std::vector<uint8_t>> parts;
  std::vector<bool> seen;
  std::string error;  // the first misuse of put, if any
};

void Put(void* sink, int64_t rank, const void* data, uint64_t bytes) {
  auto* gathered = static_cast<Gathered*>(sink);
  if (!gathered->error.empty()) return;
  const int64_t size = static_cast<int64_t>(gathered->parts.size());
  if (rank < 0 || rank >= size) {
    gathered->error = absl::StrFormat("put was called for rank %d of a group of %d", rank, size);
    return;
  }
  if (gathered->seen[rank]) {
    gathered->error = absl::StrFormat("put was called twice for rank %d", rank);
    return;
  }
  if (data == nullptr && bytes > 0) {
    gathered->error = absl::StrFormat("put was called for rank %d with no data", rank);
    return;
  }
  const auto* begin = static_cast<const uint8_t*>(data);
  gathered->parts[rank].assign(begin, begin + bytes);
  gathered->seen[rank] = true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CallbackComm>> CallbackComm::Create(const GroupComm& comm) {
  if (comm.allgather == nullptr || comm.barrier == nullptr) {
    return absl::InvalidArgumentError(
        "Options::group_comm needs both an allgather and a barrier callback");
  }
  if (comm.size <= 0 || comm.rank < 0 || comm.rank >= comm.size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Options::group_comm says rank %d of %d ranks; the rank must lie in 0 .. size-1", comm.rank,
        comm.size));
  }
  return std::unique_ptr<CallbackComm>(new CallbackComm(comm));
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> CallbackComm::Allgather(
    absl::Span<const uint8_t> mine) {
  Gathered gathered;
  gathered.parts.resize(static_cast<size_t>(comm_.size));
  gathered.seen.assign(static_cast<size_t>(comm_.size), false);
  const int code = comm_.allgather(comm_.user, mine.data(), mine.size(), &Put, &gathered);
  if (code != 0) {
    return absl::UnavailableError(absl::StrFormat(
        "the group communicator's allgather failed on group rank %d (it returned %d)", comm_.rank,
        code));
  }
  if (!gathered.error.empty()) {
    return absl::InternalError(
        absl::StrFormat("the group communicator's allgather misbehaved: %s", gathered.error));
  }
  for (int64_t r = 0; r < comm_.size; ++r) {
    if (!gathered.seen[r]) {
      return absl::InternalError(absl::StrFormat(
          "the group communicator's allgather returned without the bytes of rank %d", r));
    }
  }
  return std::move(gathered.parts);
}

absl::Status CallbackComm::Barrier() {
  const int code = comm_.barrier(comm_.user);
  if (code == 0) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrFormat("the group communicator's barrier failed on group rank %d (it returned %d)",
                      comm_.rank, code));
}

}  // namespace dwdp::api
