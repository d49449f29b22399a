#pragma once

// The engine's own group communicator (Options::group_comm: C callbacks, e.g. torch.distributed
// driven from Python) as the core's Comm, so the handle exchange and Create's config vote run
// over it exactly as over MPI.

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend.h"
#include "dwdp/dwdp.h"

namespace dwdp::api {

class CallbackComm final : public Comm {
 public:
  // Checks the struct (callbacks present, 0 <= rank < size) and copies it.
  static absl::StatusOr<std::unique_ptr<CallbackComm>> Create(const GroupComm& comm);

  int64_t rank() const override { return comm_.rank; }
  int64_t size() const override { return comm_.size; }
  // Fails when the callback fails, or hands over no bytes, or twice, for some rank.
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      absl::Span<const uint8_t> mine) override;
  absl::Status Barrier() override;

 private:
  explicit CallbackComm(const GroupComm& comm) : comm_(comm) {}
  GroupComm comm_;
};

}  // namespace dwdp::api
