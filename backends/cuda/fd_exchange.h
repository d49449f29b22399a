#pragma once

// Handle exchange for POSIX-fd VMM handles (DWDP_SPEC §5): file descriptors cannot travel
// through MPI, so every rank of the group listens on an abstract-namespace Unix socket
// (SOCK_SEQPACKET), connects to every peer and sends its exported fds with SCM_RIGHTS, in the
// agreed order, in batches. Only processes of the same uid are accepted (SO_PEERCRED) and every
// message carries the group's random nonce (chosen by group rank 0), so a stray process can
// neither inject handles nor be confused with a peer. Every wait is bounded by the timeout.
//
// Pure POSIX + the Comm interface: no CUDA, no MPI; tests drive it with forked processes.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "core/backend.h"

namespace dwdp::cuda {

class FdHandleExchange : public HandleExchange {
 public:
  // `group` must outlive this object; its ranks are the exchange's ranks.
  FdHandleExchange(Comm& group, HandleExchangeOptions options);

  // exported must hold exactly one list (this process hosts one rank): its POSIX-fd handles.
  // result[0][r] holds rank r's handles (imported fds, owned by the SharedHandles); this rank's
  // own entry holds `exported[0]` itself, so its fds stay open until the caller drops them
  // (after the barrier).
  absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> Exchange(
      std::vector<std::vector<SharedHandle>> exported) override;
  absl::Status Barrier() override;

 private:
  Comm& group_;
  HandleExchangeOptions options_;
};

// Returns OK when the process at the other end of the connected Unix socket `socket_fd` runs as
// `allowed_uid`, else PermissionDenied naming its uid and pid.
absl::Status CheckPeerUid(int socket_fd, uid_t allowed_uid);

// Raises the soft RLIMIT_NOFILE to the hard limit (every imported handle is an open fd until
// it is imported) and returns the soft limit now in force.
absl::StatusOr<uint64_t> RaiseOpenFileLimit();

// The group's exchange options with the test hook filled from DWDP_TEST_EXIT_AFTER_EXPORT_RANK
// when the caller left it unset.
HandleExchangeOptions WithEnvironmentHooks(HandleExchangeOptions options);

}  // namespace dwdp::cuda
