#pragma once

// Rank placement: turns a DWDP configuration and a cluster shape into a rank -> (node, GPU) map
// and the launcher inputs (OpenMPI rankfile, Slurm hostfile for --distribution=arbitrary, and
// the plain block form when it describes the same map).
//
// Rules:
//  * every DWDP group lies inside one NVLink domain;
//  * with POSIX-fd handles (no fabric support or no IMEX permission) inside one node, because
//    file descriptors cannot cross hosts; with FABRIC handles it may span nodes of a domain;
//  * a generation server's tensor-parallel group never spans nodes;
//  * GPUs that context groups leave free in a node are offered to generation servers first
//    (best fit), so d = 3 or 5 on 4-GPU nodes leaves no idle holes when generation servers can
//    use them.
// GPU numbers inside a node follow rank order (GPU = local rank), which is what launchers bind
// by default; all GPUs of a node are equivalent on NVLink, so nothing is lost by that choice.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dwdp {

struct PlacementRequest {
  int64_t nodes = 0;
  int64_t gpus_per_node = 0;
  int64_t nvlink_domain = 0;  // GPUs per NVLink domain; a multiple of gpus_per_node
  bool fabric_handles = false;
  int64_t dwdp_size = 0;
  // A context server has ctx_tp GPUs (attention data-parallel), i.e. ctx_tp / dwdp_size DWDP
  // groups; ctx_tp must be a multiple of dwdp_size.
  int64_t ctx_servers = 1;
  int64_t ctx_tp = 0;
  int64_t gen_servers = 0;
  int64_t gen_tp = 1;
  std::vector<std::string> hostnames;  // empty: node000, node001, ...
};

enum class RankRole { kContext, kGeneration };
const char* RankRoleName(RankRole role);

struct PlacedRank {
  int64_t rank = 0;
  RankRole role = RankRole::kContext;
  int64_t server = 0;      // index among servers of its role
  int64_t group = -1;      // DWDP group index over all context servers (context only)
  int64_t group_rank = 0;  // rank in the DWDP group (context) or in the TP group (generation)
  int64_t node = 0;
  int64_t gpu = 0;
  int64_t domain = 0;
  std::string host;
};

struct Placement {
  PlacementRequest request;
  std::vector<PlacedRank> ranks;  // by rank
  std::vector<int64_t> used_gpus_per_node;
  int64_t idle_gpus = 0;  // on nodes that host at least one rank
  int64_t groups_spanning_nodes = 0;
  // Block form: rank r on node r / ranks_per_node, every used node full to ranks_per_node.
  bool block_form = false;
  int64_t block_ranks_per_node = 0;
};

// InvalidArgument for usage errors (non-positive counts, a domain that is not a whole number of
// nodes); FailedPrecondition, in one sentence, for a configuration that cannot be placed.
absl::StatusOr<Placement> PlaceRanks(const PlacementRequest& request);

// "rank R=HOST slot=GPU" lines (mpirun --rankfile FILE).
std::string OpenMpiRankfile(const Placement& placement);
// One host name per rank, in rank order (SLURM_HOSTFILE=FILE srun --distribution=arbitrary).
std::string SlurmHostfile(const Placement& placement);
// The launch lines for both launchers, and the block form when it applies.
std::vector<std::string> LaunchCommands(const Placement& placement, const std::string& rankfile,
                                        const std::string& hostfile);

}  // namespace dwdp
