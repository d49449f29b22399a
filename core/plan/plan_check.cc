#include "core/plan/plan_check.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

namespace dwdp {

std::vector<PlanCandidate> BestFittingCandidates(const Plan& plan, int64_t count) {
  std::vector<PlanCandidate> fitting;
  if (count <= 0) return fitting;
  for (const PlanCandidate& c : plan.candidates) {
    if (Recommendable(c)) fitting.push_back(c);
  }
  std::stable_sort(fitting.begin(), fitting.end(),
                   [](const PlanCandidate& a, const PlanCandidate& b) {
                     return a.tokens_per_s_per_gpu > b.tokens_per_s_per_gpu;
                   });
  if (static_cast<int64_t>(fitting.size()) > count) fitting.resize(static_cast<size_t>(count));
  return fitting;
}

bool ForwardWithinTenPercent(const SimulatedCandidate& s) {
  const double planned = s.planned.forward_ns;
  return planned > 0 && std::fabs(s.forward_ns - planned) <= 0.1 * planned;
}

nlohmann::json SimulatedToJson(const std::vector<SimulatedCandidate>& simulated) {
  nlohmann::json out = nlohmann::json::array();
  for (const SimulatedCandidate& s : simulated) {
    const PlanCandidate& c = s.planned;
    out.push_back({{"dwdp_size", c.dwdp_size},
                   {"owner", OwnerPolicyName(c.owner)},
                   {"copy_pricing", CopyPricingName(c.copy_pricing)},
                   {"within_10_percent", ForwardWithinTenPercent(s)},
                   {"num_experts_per_worker", c.num_experts_per_worker},
                   {"num_prefetch_experts", c.num_prefetch_experts},
                   {"num_buffers", c.num_buffers},
                   {"tokens_per_rank", c.tokens_per_rank},
                   {"sequence_length", c.sequence_length},
                   {"planned_prefetch_ns_per_layer", c.prefetch_ns_per_layer},
                   {"simulated_prefetch_ns_per_layer", s.copy_ns_per_layer},
                   {"planned_stall_ns_per_layer", c.stall_ns_per_layer},
                   {"simulated_stall_ns_per_layer", s.stall_ns_per_layer},
                   {"planned_forward_ns", c.forward_ns},
                   {"simulated_forward_ns", s.forward_ns},
                   {"simulation_ok", s.simulation_ok}});
  }
  return out;
}

std::string SimulatedToText(const std::vector<SimulatedCandidate>& simulated) {
  TextTable table({"d", "recipe", "owner", "k", "tokens", "seq", "copy/layer plan",
                   "copy/layer sim", "stall/layer plan", "stall/layer sim", "forward plan",
                   "forward sim", "diff"});
  size_t agree = 0;
  for (const SimulatedCandidate& s : simulated) {
    const PlanCandidate& c = s.planned;
    agree += ForwardWithinTenPercent(s) ? 1 : 0;
    table.AddRow(
        {absl::StrCat(c.dwdp_size),
         absl::StrCat(c.num_experts_per_worker, "/", c.num_prefetch_experts),
         OwnerPolicyName(c.owner), absl::StrCat(c.num_buffers), absl::StrCat(c.tokens_per_rank),
         absl::StrCat(c.sequence_length), FormatNanos(c.prefetch_ns_per_layer),
         FormatNanos(s.copy_ns_per_layer), FormatNanos(c.stall_ns_per_layer),
         FormatNanos(s.stall_ns_per_layer), FormatNanos(c.forward_ns), FormatNanos(s.forward_ns),
         c.forward_ns > 0
             ? absl::StrFormat("%+.1f%%", 100 * (s.forward_ns - c.forward_ns) / c.forward_ns)
             : "-"});
  }
  return absl::StrFormat(
      "\nplanner vs simulator (timing mode, one forward, slowest rank):\n%s%d of %d within "
      "10%%%s\n",
      table.Render({1}), agree, simulated.size(),
      agree == simulated.size() ? ": plan and run agree on every candidate simulated" : "");
}

}  // namespace dwdp
