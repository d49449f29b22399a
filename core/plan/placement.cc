#include "core/plan/placement.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dwdp {
namespace {

// One unit to place: a DWDP group or a generation server, as GPU counts per node.
struct Unit {
  RankRole role = RankRole::kContext;
  int64_t server = 0;
  int64_t group = -1;
  std::vector<std::pair<int64_t, int64_t>> node_counts;  // (node, GPUs), in rank order
};

std::string HostName(const PlacementRequest& req, int64_t node) {
  if (node < static_cast<int64_t>(req.hostnames.size())) return req.hostnames[node];
  return absl::StrFormat("node%03d", node);
}

absl::Status CheckRequest(const PlacementRequest& r) {
  if (r.nodes < 1 || r.gpus_per_node < 1) {
    return absl::InvalidArgumentError("--nodes and --gpus-per-node must be at least 1");
  }
  if (r.nvlink_domain < 1 || r.nvlink_domain % r.gpus_per_node != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the NVLink domain (", r.nvlink_domain,
                                                   " GPUs) must be a whole number of ",
                                                   r.gpus_per_node, "-GPU nodes"));
  }
  if (r.dwdp_size < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("dwdp_size must be at least 2 (got ", r.dwdp_size, ")"));
  }
  if (r.ctx_servers < 0 || r.gen_servers < 0 || r.ctx_tp < 1 || r.gen_tp < 1) {
    return absl::InvalidArgumentError(
        "server counts must be non-negative and --ctx-tp / --gen-tp at least 1");
  }
  if (!r.hostnames.empty() && static_cast<int64_t>(r.hostnames.size()) != r.nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--hosts names ", r.hostnames.size(), " hosts but --nodes is ", r.nodes));
  }
  return absl::OkStatus();
}

// Why a configuration cannot be placed, before trying: shapes no packing can satisfy.
absl::Status CheckShape(const PlacementRequest& r) {
  const int64_t d = r.dwdp_size;
  if (r.ctx_tp % d != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("a context server of ", r.ctx_tp, " GPUs cannot be cut into DWDP groups of ",
                     d, " (--ctx-tp must be a multiple of dwdp_size)"));
  }
  if (d > r.nvlink_domain) {
    return absl::FailedPreconditionError(
        absl::StrCat("a DWDP group of ", d, " GPUs does not fit the ", r.nvlink_domain,
                     "-GPU NVLink domain: every group must stay inside one domain"));
  }
  if (!r.fabric_handles && d > r.gpus_per_node) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a DWDP group of ", d, " GPUs must stay inside one ", r.gpus_per_node,
        "-GPU node because this platform shares handles as POSIX file descriptors (no fabric "
        "handles/IMEX); use dwdp_size <= ",
        r.gpus_per_node));
  }
  if (r.gen_servers > 0 && r.gen_tp > r.gpus_per_node) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a generation server with TP ", r.gen_tp, " would split its tensor-parallel group across ",
        r.gpus_per_node, "-GPU nodes"));
  }
  const int64_t needed = r.ctx_servers * r.ctx_tp + r.gen_servers * r.gen_tp;
  if (needed > r.nodes * r.gpus_per_node) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the configuration needs ", needed, " GPUs (", r.ctx_servers, " context server(s) x ",
        r.ctx_tp, " + ", r.gen_servers, " generation server(s) x ", r.gen_tp, ") but ", r.nodes,
        " nodes x ", r.gpus_per_node, " GPUs have ", r.nodes * r.gpus_per_node));
  }
  if (needed == 0) {
    return absl::FailedPreconditionError("the configuration has no server to place");
  }
  return absl::OkStatus();
}

}  // namespace

const char* RankRoleName(RankRole role) {
  return role == RankRole::kContext ? "context" : "generation";
}

absl::StatusOr<Placement> PlaceRanks(const PlacementRequest& request) {
  if (absl::Status s = CheckRequest(request); !s.ok()) return s;
  if (absl::Status s = CheckShape(request); !s.ok()) return s;
  const PlacementRequest& r = request;
  const int64_t g = r.gpus_per_node;
  const int64_t nodes_per_domain = r.nvlink_domain / g;
  std::vector<int64_t> free(static_cast<size_t>(r.nodes), g);
  std::vector<Unit> units;

  // Context groups first, in order. POSIX fds: the first node with room for the whole group.
  // Fabric: the group takes the next free GPUs in node order inside one domain, so groups of 3
  // or 5 tile 4-GPU nodes without holes.
  const int64_t groups_per_server = r.ctx_tp / r.dwdp_size;
  int64_t group_index = 0;
  for (int64_t server = 0; server < r.ctx_servers; ++server) {
    for (int64_t k = 0; k < groups_per_server; ++k, ++group_index) {
      Unit unit{RankRole::kContext, server, group_index, {}};
      if (!r.fabric_handles) {
        auto it =
            std::find_if(free.begin(), free.end(), [&](int64_t f) { return f >= r.dwdp_size; });
        if (it == free.end()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "DWDP group ", group_index, " (", r.dwdp_size,
              " GPUs) finds no node with that many free GPUs: POSIX-fd handles keep a group "
              "inside one node, and ",
              g, "-GPU nodes hold only ", g / r.dwdp_size, " group(s) each"));
        }
        const int64_t node = it - free.begin();
        unit.node_counts.push_back({node, r.dwdp_size});
        *it -= r.dwdp_size;
      } else {
        bool placed = false;
        for (int64_t first = 0; first < r.nodes && !placed; first += nodes_per_domain) {
          const int64_t last = std::min(r.nodes, first + nodes_per_domain);
          int64_t room = 0;
          for (int64_t n = first; n < last; ++n) room += free[n];
          if (room < r.dwdp_size) continue;
          int64_t left = r.dwdp_size;
          for (int64_t n = first; n < last && left > 0; ++n) {
            const int64_t take = std::min(left, free[n]);
            if (take == 0) continue;
            unit.node_counts.push_back({n, take});
            free[n] -= take;
            left -= take;
          }
          placed = true;
        }
        if (!placed) {
          return absl::FailedPreconditionError(absl::StrCat(
              "DWDP group ", group_index, " (", r.dwdp_size,
              " GPUs) finds no NVLink domain with that many free GPUs: a group must stay inside "
              "one ",
              r.nvlink_domain, "-GPU domain"));
        }
      }
      units.push_back(std::move(unit));
    }
  }
  // Generation servers: best fit (the node with the fewest free GPUs that still holds the TP
  // group), which fills the holes context groups leave before opening fresh nodes.
  for (int64_t server = 0; server < r.gen_servers; ++server) {
    int64_t best = -1;
    for (int64_t n = 0; n < r.nodes; ++n) {
      if (free[n] >= r.gen_tp && (best < 0 || free[n] < free[best])) best = n;
    }
    if (best < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "generation server ", server, " (TP ", r.gen_tp,
          ") finds no node with that many free GPUs left; the free GPUs are scattered in "
          "pieces smaller than its tensor-parallel group"));
    }
    units.push_back({RankRole::kGeneration, server, -1, {{best, r.gen_tp}}});
    free[best] -= r.gen_tp;
  }

  Placement placement;
  placement.request = r;
  placement.used_gpus_per_node.assign(static_cast<size_t>(r.nodes), 0);
  int64_t next_rank = 0;
  for (const Unit& unit : units) {
    int64_t member = 0;
    if (unit.node_counts.size() > 1) ++placement.groups_spanning_nodes;
    for (const auto& [node, count] : unit.node_counts) {
      for (int64_t i = 0; i < count; ++i, ++member) {
        PlacedRank pr;
        pr.rank = next_rank++;
        pr.role = unit.role;
        pr.server = unit.server;
        pr.group = unit.group;
        pr.group_rank = member;
        pr.node = node;
        pr.gpu = placement.used_gpus_per_node[node]++;  // GPU = local rank
        pr.domain = node / nodes_per_domain;
        pr.host = HostName(r, node);
        placement.ranks.push_back(std::move(pr));
      }
    }
  }
  // Ranks are numbered in increasing order and each node hands out its GPUs in that order, so
  // on every node GPU index = local rank (the launchers' default binding).
  for (int64_t n = 0; n < r.nodes; ++n) {
    if (placement.used_gpus_per_node[n] > 0)
      placement.idle_gpus += g - placement.used_gpus_per_node[n];
  }
  // Block form: ranks fill nodes in order, the same count on every used node.
  const int64_t ppn = placement.used_gpus_per_node.empty() ? 0 : placement.used_gpus_per_node[0];
  bool block = ppn > 0;
  for (const PlacedRank& pr : placement.ranks) {
    if (pr.node != pr.rank / ppn) block = false;
  }
  const int64_t world = static_cast<int64_t>(placement.ranks.size());
  if (block && world % ppn == 0) {
    placement.block_form = true;
    placement.block_ranks_per_node = ppn;
  }
  return placement;
}

std::string OpenMpiRankfile(const Placement& placement) {
  std::string out;
  for (const PlacedRank& pr : placement.ranks) {
    absl::StrAppend(&out, "rank ", pr.rank, "=", pr.host, " slot=", pr.gpu, "\n");
  }
  return out;
}

std::string SlurmHostfile(const Placement& placement) {
  std::string out;
  for (const PlacedRank& pr : placement.ranks) absl::StrAppend(&out, pr.host, "\n");
  return out;
}

std::vector<std::string> LaunchCommands(const Placement& placement, const std::string& rankfile,
                                        const std::string& hostfile) {
  const int64_t world = static_cast<int64_t>(placement.ranks.size());
  int64_t nodes = 0;
  for (int64_t used : placement.used_gpus_per_node) nodes += used > 0 ? 1 : 0;
  std::vector<std::string> out;
  out.push_back(absl::StrFormat("mpirun -np %d --rankfile %s dwdp run ...", world, rankfile));
  out.push_back(absl::StrFormat(
      "SLURM_HOSTFILE=%s srun --ntasks %d --distribution=arbitrary dwdp run ...", hostfile, world));
  if (placement.block_form) {
    const int64_t ppn = placement.block_ranks_per_node;
    out.push_back(absl::StrFormat("mpirun -np %d --map-by ppr:%d:node dwdp run ...", world, ppn));
    out.push_back(absl::StrFormat(
        "srun --nodes %d --ntasks-per-node %d --distribution=block dwdp run ...", nodes, ppn));
  }
  return out;
}

}  // namespace dwdp
