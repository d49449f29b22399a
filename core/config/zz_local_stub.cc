#include "core/config/loader.h"
namespace dwdp {
absl::StatusOr<Scenario> LoadScenarioFile(const std::string&) {
  return absl::UnimplementedError("stub");
}
const char* ContentionModeName(ContentionMode) { return "rotate"; }
uint64_t ModelSpec::expert_bytes() const {
  uint64_t s = 0;
  for (auto& w : weights) s += w.expert_bytes;
  return s;
}
}  // namespace dwdp
