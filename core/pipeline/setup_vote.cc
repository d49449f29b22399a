#include "core/pipeline/setup_vote.h"

#include <string>

#include "absl/strings/str_format.h"

namespace dwdp {

std::vector<uint8_t> SetupVote(const absl::Status& local) {
  const absl::string_view message = local.message();
  std::vector<uint8_t> vote;
  vote.reserve(1 + message.size());
  vote.push_back(static_cast<uint8_t>(local.code()));
  for (char c : message) vote.push_back(static_cast<uint8_t>(c));
  return vote;
}

absl::Status AgreedSetup(absl::string_view phase, const std::vector<std::vector<uint8_t>>& votes) {
  for (size_t r = 0; r < votes.size(); ++r) {
    const std::vector<uint8_t>& v = votes[r];
    const auto code = v.empty() ? absl::StatusCode::kInternal : static_cast<absl::StatusCode>(v[0]);
    if (code == absl::StatusCode::kOk) continue;
    return absl::Status(code,
                        absl::StrFormat("%s failed on rank %d: %s", phase, r,
                                        std::string(v.begin() + (v.empty() ? 0 : 1), v.end())));
  }
  return absl::OkStatus();
}

}  // namespace dwdp
