#include "core/run/exit_code.h"

#include "absl/strings/cord.h"

namespace dwdp {
namespace {
constexpr char kInvalidScenarioPayload[] = "dwdp/invalid-scenario";
}  // namespace

absl::Status InvalidScenario(absl::Status status) {
  status.SetPayload(kInvalidScenarioPayload, absl::Cord("1"));
  return status;
}

int ExitCodeOf(const absl::Status& status) {
  if (status.GetPayload(kInvalidScenarioPayload).has_value()) return kExitInvalid;
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
      return kExitUsage;
    default:
      return kExitInvalid;
  }
}

}  // namespace dwdp
