#include "core/perf/compute_table.h"

#include <algorithm>

namespace dwdp {

const MoeComputeTable* FindMoeComputeTable(const HardwareProfile& hw, const ModelSpec& model) {
  for (const MoeComputeTable& t : hw.moe_compute) {
    if (t.hidden == model.hidden_size && t.intermediate == model.moe_intermediate_size &&
        t.num_experts == model.num_experts && t.top_k == model.top_k &&
        t.dtype == model.expert_dtype && !t.tokens.empty() &&
        t.alone_ns.size() == t.tokens.size()) {
      return &t;
    }
  }
  return nullptr;
}

double InterpolateMoeTime(const std::vector<int64_t>& tokens, const std::vector<double>& ns,
                          double at) {
  const size_t n = std::min(tokens.size(), ns.size());
  if (n == 0) return 0;
  if (n == 1 || at <= static_cast<double>(tokens.front())) return ns.front();
  size_t hi = 1;
  while (hi + 1 < n && static_cast<double>(tokens[hi]) < at) ++hi;
  const double t0 = static_cast<double>(tokens[hi - 1]);
  const double t1 = static_cast<double>(tokens[hi]);
  const double slope = (ns[hi] - ns[hi - 1]) / (t1 - t0);
  return std::max(0.0, ns[hi - 1] + slope * (at - t0));
}

}  // namespace dwdp
