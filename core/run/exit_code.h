#pragma once

// Exit codes of every dwdp command (INTERFACE.md), and the one mapping from a failure to its
// code, so the same failure ends `dwdp run` and `dwdp plan --simulate` alike.
//   0  success, or the scenario is valid
//   1  the scenario is invalid, or the run found an error (a race, wrong bytes, a driver error)
//   2  a usage error, an unreadable or malformed file, or a request this build or machine
//      cannot serve (no GPU, no cuda backend, an option the backend does not have)

#include "absl/status/status.h"

namespace dwdp {

inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalid = 1;
inline constexpr int kExitUsage = 2;

// The exit code of a run or command that failed with `status` before it could report: what the
// caller asked for cannot be done as asked (InvalidArgument, NotFound, PermissionDenied,
// Unimplemented, FailedPrecondition, ResourceExhausted) is 2; anything that went wrong while
// doing it is 1. OK is 0.
// A status marked by InvalidScenario is 1 whatever its code.
int ExitCodeOf(const absl::Status& status);

// Marks a failure as "the scenario is invalid" (exit 1): a partition that cannot work with the
// job's world size, say, found only once the backend knows that size.
absl::Status InvalidScenario(absl::Status status);

}  // namespace dwdp
