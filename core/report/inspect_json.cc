#include "core/report/inspect_json.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"

namespace dwdp {
namespace {

nlohmann::json RecipePairs(const std::vector<Recipe>& recipes) {
  nlohmann::json out = nlohmann::json::array();
  for (const Recipe& r : recipes) out.push_back({r.num_experts_per_worker, r.num_prefetch_experts});
  return out;
}

nlohmann::json PeerRangesJson(const std::vector<PeerRange>& ranges) {
  nlohmann::json out = nlohmann::json::array();
  for (const PeerRange& r : ranges) out.push_back({r.start, r.end});
  return out;
}

nlohmann::json Invalid(const std::string& check, const std::string& message,
                       const std::vector<Recipe>& recipes) {
  return {{"valid", false},
          {"error", {{"check", check}, {"message", message}, {"recipes", RecipePairs(recipes)}}}};
}

}  // namespace

nlohmann::json ValidateJson(const Scenario& scenario, std::optional<int64_t> world_size) {
  PartitionInput input = PartitionInput::FromScenario(scenario);
  input.world_size = world_size;
  if (const std::optional<PartitionError> error = ValidatePartition(input)) {
    return Invalid(error->check, error->message, error->recipes);
  }
  const absl::StatusOr<GroupLayout> layout = ComputeGroupLayout(scenario);
  if (!layout.ok()) return Invalid("layout", std::string(layout.status().message()), {});
  return {{"valid", true},
          {"name", scenario.name},
          {"dwdp_size", scenario.dwdp.dwdp_size},
          {"num_experts", scenario.model.num_experts},
          {"peer_ranges", PeerRangesJson(layout->peer_ranges)},
          {"recipes", RecipePairs(Recipes(scenario.dwdp.dwdp_size, scenario.model.num_experts))}};
}

nlohmann::json RecipesJson(int64_t dwdp_size, int64_t num_experts) {
  nlohmann::json list = nlohmann::json::array();
  for (const Recipe& r : Recipes(dwdp_size, num_experts)) {
    list.push_back({{"num_experts_per_worker", r.num_experts_per_worker},
                    {"num_prefetch_experts", r.num_prefetch_experts},
                    {"overlap", r.overlap()}});
  }
  return {{"dwdp_size", dwdp_size}, {"num_experts", num_experts}, {"recipes", list}};
}

absl::StatusOr<nlohmann::json> LayoutJson(const Scenario& scenario, std::optional<int64_t> rank) {
  if (const std::optional<PartitionError> error =
          ValidatePartition(PartitionInput::FromScenario(scenario))) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", error->check, error->message));
  }
  absl::StatusOr<GroupLayout> layout = ComputeGroupLayout(scenario);
  if (!layout.ok()) return absl::InvalidArgumentError(layout.status().message());
  if (rank && (*rank < 0 || *rank >= static_cast<int64_t>(layout->ranks.size()))) {
    return absl::OutOfRangeError(
        absl::StrFormat("rank %d is outside the group of %d ranks", *rank, layout->ranks.size()));
  }
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankLayout& r : layout->ranks) {
    if (rank && *rank != r.rank) continue;
    nlohmann::json weights = nlohmann::json::array();
    for (const WeightLayout& w : r.weights) {
      weights.push_back({{"name", w.name},
                         {"expert_bytes", w.expert_bytes},
                         {"page_start", w.page_start},
                         {"page_end", w.page_end},
                         {"leading_edge", w.leading_edge},
                         {"trailing_edge", w.trailing_edge},
                         {"mnnvl_size", w.mnnvl_size},
                         {"pre_size", w.pre_size},
                         {"pre_padding", w.pre_padding},
                         {"post_size", w.post_size},
                         {"post_padding", w.post_padding},
                         {"total_size", w.total_size}});
    }
    ranks.push_back({{"rank", r.rank},
                     {"start", r.range.start},
                     {"end", r.range.end},
                     {"local_bytes_per_layer", r.local_bytes_per_layer},
                     {"pool_pages_per_layer", r.pool_pages_per_layer},
                     {"slot_pages", r.slot_pages},
                     {"weights", weights}});
  }
  return nlohmann::json{{"num_experts", layout->num_experts},
                        {"granularity", layout->granularity},
                        {"pool_page_bytes", layout->pool_page_bytes},
                        {"num_buffers", layout->num_buffers},
                        {"peer_ranges", PeerRangesJson(layout->peer_ranges)},
                        {"ranks", ranks}};
}

}  // namespace dwdp
