#include "core/plan/placement_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/report/table.h"

namespace dwdp {

nlohmann::json PlacementToJson(const Placement& placement, const PlacementRequest& request,
                               const std::vector<std::string>& commands) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const PlacedRank& pr : placement.ranks) {
    nlohmann::json r = {{"rank", pr.rank},     {"role", RankRoleName(pr.role)},
                        {"server", pr.server}, {"group_rank", pr.group_rank},
                        {"node", pr.node},     {"host", pr.host},
                        {"gpu", pr.gpu},       {"domain", pr.domain}};
    if (pr.group >= 0) r["group"] = pr.group;
    ranks.push_back(std::move(r));
  }
  return {{"world_size", placement.ranks.size()},
          {"handles", request.fabric_handles ? "fabric" : "posix_fd"},
          {"dwdp_size", request.dwdp_size},
          {"idle_gpus", placement.idle_gpus},
          {"groups_spanning_nodes", placement.groups_spanning_nodes},
          {"block_form", placement.block_form},
          {"ranks", ranks},
          {"rankfile", OpenMpiRankfile(placement)},
          {"hostfile", SlurmHostfile(placement)},
          {"commands", commands}};
}

std::string PlacementToText(const Placement& placement, const PlacementRequest& request,
                            const std::vector<std::string>& commands) {
  std::string out = absl::StrFormat(
      "%d ranks on %d x %d GPUs; DWDP groups of %d with %s handles (%s); NVLink domain %d "
      "GPUs\n\n",
      placement.ranks.size(), request.nodes, request.gpus_per_node, request.dwdp_size,
      request.fabric_handles ? "fabric" : "POSIX-fd",
      request.fabric_handles ? "groups may span nodes of a domain" : "one node per group",
      request.nvlink_domain);
  TextTable table({"rank", "role", "server", "group", "member", "host", "gpu", "domain"});
  for (const PlacedRank& pr : placement.ranks) {
    table.AddRow({absl::StrCat(pr.rank), RankRoleName(pr.role), absl::StrCat(pr.server),
                  pr.group >= 0 ? absl::StrCat(pr.group) : "-", absl::StrCat(pr.group_rank),
                  pr.host, absl::StrCat(pr.gpu), absl::StrCat(pr.domain)});
  }
  absl::StrAppend(&out, table.Render({1, 5}), "\n");
  if (placement.idle_gpus > 0) {
    absl::StrAppend(&out, placement.idle_gpus, " GPU(s) idle on the nodes in use\n");
  }
  absl::StrAppend(&out, "rankfile (OpenMPI; slot = GPU = local rank):\n",
                  OpenMpiRankfile(placement), "\nlaunch:\n");
  for (const std::string& c : commands) absl::StrAppend(&out, "  ", c, "\n");
  return out;
}

}  // namespace dwdp
