#pragma once

// Handle exchange for FABRIC VMM handles (multi-node NVLink with IMEX, DWDP_SPEC §5): a fabric
// handle is 64 opaque bytes that any process of the NVLink domain can import, so the handles
// travel by one allgather over the group.

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "core/backend.h"

namespace dwdp::cuda {

class FabricHandleExchange : public HandleExchange {
 public:
  // `group` must outlive this object. Of the options only the exit hook applies: the waits are
  // the group's (MpiComm's timeout).
  explicit FabricHandleExchange(Comm& group, HandleExchangeOptions options = {})
      : group_(group), options_(std::move(options)) {}

  // exported must hold exactly one list (this process hosts one rank) of kFabric handles.
  // result[0][r] holds rank r's handles; this rank's own entry is `exported[0]` itself.
  absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> Exchange(
      std::vector<std::vector<SharedHandle>> exported) override;
  absl::Status Barrier() override;

 private:
  Comm& group_;
  HandleExchangeOptions options_;
};

}  // namespace dwdp::cuda
