// Rank placement: divisible and non-divisible shapes, POSIX-fd vs fabric handles, launcher
// files, and shapes that cannot be placed.
#define BOOST_TEST_MODULE place
#include <boost/test/unit_test.hpp>

#include <map>
#include <set>

#include "absl/status/status.h"
#include "core/plan/placement.h"

namespace dwdp {
namespace {

PlacementRequest Hgx(int64_t nodes, int64_t d) {
  PlacementRequest r;
  r.nodes = nodes;
  r.gpus_per_node = 8;
  r.nvlink_domain = 8;
  r.fabric_handles = false;
  r.dwdp_size = d;
  r.ctx_servers = 1;
  r.ctx_tp = d;
  return r;
}

PlacementRequest Gb200(int64_t nodes, int64_t d) {
  PlacementRequest r;
  r.nodes = nodes;
  r.gpus_per_node = 4;
  r.nvlink_domain = 72;
  r.fabric_handles = true;
  r.dwdp_size = d;
  r.ctx_servers = 1;
  r.ctx_tp = d;
  return r;
}

// Every placement must keep these, whatever the shape.
void CheckInvariants(const Placement& p) {
  const PlacementRequest& r = p.request;
  std::set<std::pair<int64_t, int64_t>> used;
  std::map<int64_t, std::set<int64_t>> group_nodes;
  std::map<int64_t, std::set<int64_t>> group_domains;
  std::map<std::pair<int64_t, int64_t>, std::set<int64_t>> gen_nodes;
  std::map<int64_t, int64_t> last_gpu_on_node;
  for (size_t i = 0; i < p.ranks.size(); ++i) {
    const PlacedRank& pr = p.ranks[i];
    BOOST_TEST(pr.rank == static_cast<int64_t>(i));
    BOOST_TEST(pr.gpu >= 0);
    BOOST_TEST(pr.gpu < r.gpus_per_node);
    BOOST_TEST(used.insert({pr.node, pr.gpu}).second, "GPU used twice");
    // GPU = local rank: ascending rank order on a node gives ascending GPUs from 0.
    auto [it, fresh] = last_gpu_on_node.try_emplace(pr.node, -1);
    BOOST_TEST(pr.gpu == it->second + 1);
    it->second = pr.gpu;
    if (pr.role == RankRole::kContext) {
      group_nodes[pr.group].insert(pr.node);
      group_domains[pr.group].insert(pr.domain);
    } else {
      gen_nodes[{pr.server, 0}].insert(pr.node);
    }
  }
  for (const auto& [g, domains] : group_domains) BOOST_TEST(domains.size() == 1u);
  if (!r.fabric_handles) {
    for (const auto& [g, nodes] : group_nodes) BOOST_TEST(nodes.size() == 1u);
  }
  for (const auto& [s, nodes] : gen_nodes) BOOST_TEST(nodes.size() == 1u);
}

BOOST_AUTO_TEST_CASE(hgx_divisible_shape_is_the_block_form) {
  // Two 8-GPU nodes: one context server of 2 DWDP4 groups fills node 0; two TP4 generation
  // servers fill node 1. Rank r sits on node r / 8: the plain block form.
  PlacementRequest r = Hgx(2, 4);
  r.ctx_tp = 8;
  r.gen_servers = 2;
  r.gen_tp = 4;
  auto p = PlaceRanks(r);
  BOOST_REQUIRE_MESSAGE(p.ok(), p.status());
  CheckInvariants(*p);
  BOOST_TEST(p->ranks.size() == 16u);
  BOOST_TEST(p->idle_gpus == 0);
  BOOST_TEST(p->block_form);
  BOOST_TEST(p->block_ranks_per_node == 8);
  BOOST_TEST(p->ranks[4].group == 1);
  BOOST_TEST(p->ranks[4].group_rank == 0);
  BOOST_TEST((p->ranks[8].role == RankRole::kGeneration));
  BOOST_TEST(p->ranks[8].node == 1);
  const auto commands = LaunchCommands(*p, "rf", "hf");
  BOOST_TEST(commands.size() == 4u);
  BOOST_TEST(commands[2].find("ppr:8:node") != std::string::npos);
  BOOST_TEST(commands[3].find("--distribution=block") != std::string::npos);
  BOOST_TEST(OpenMpiRankfile(*p).rfind("rank 0=node000 slot=0\n", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(posix_fd_groups_of_three_on_four_gpu_nodes_leave_holes_for_generation) {
  // d = 3 on 4-GPU nodes without fabric handles: one group per node (a group may not span
  // nodes), one GPU left on each; four TP1 generation servers fill exactly those holes.
  PlacementRequest r = Gb200(4, 3);
  r.fabric_handles = false;
  r.ctx_servers = 4;
  r.gen_servers = 4;
  r.gen_tp = 1;
  auto p = PlaceRanks(r);
  BOOST_REQUIRE_MESSAGE(p.ok(), p.status());
  CheckInvariants(*p);
  BOOST_TEST(p->idle_gpus == 0);
  BOOST_TEST(p->groups_spanning_nodes == 0);
  for (int64_t g = 0; g < 4; ++g) BOOST_TEST(p->ranks[3 * g].node == g);
  // Generation rank 12 takes node 0's fourth GPU: not the block form, so the arbitrary
  // distribution is the way to launch it.
  BOOST_TEST(p->ranks[12].node == 0);
  BOOST_TEST(p->ranks[12].gpu == 3);
  BOOST_TEST(!p->block_form);
  BOOST_TEST(LaunchCommands(*p, "rf", "hf").size() == 2u);
  const std::string hostfile = SlurmHostfile(*p);
  BOOST_TEST(hostfile.rfind("node000\nnode000\nnode000\nnode001\n", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(fabric_groups_of_three_tile_four_gpu_nodes_without_holes) {
  // With fabric handles a group may span nodes of the domain: 4 groups of 3 fill 3 nodes.
  PlacementRequest r = Gb200(3, 3);
  r.ctx_servers = 4;
  auto p = PlaceRanks(r);
  BOOST_REQUIRE_MESSAGE(p.ok(), p.status());
  CheckInvariants(*p);
  BOOST_TEST(p->ranks.size() == 12u);
  BOOST_TEST(p->idle_gpus == 0);
  BOOST_TEST(p->groups_spanning_nodes == 2);  // groups 1 (node 0+1) and 2 (node 1+2)
  BOOST_TEST(p->block_form);
  BOOST_TEST(p->ranks[3].node == 0);
  BOOST_TEST(p->ranks[4].node == 1);
}

BOOST_AUTO_TEST_CASE(fabric_groups_of_five_span_nodes) {
  PlacementRequest r = Gb200(5, 5);
  r.ctx_servers = 4;
  auto p = PlaceRanks(r);
  BOOST_REQUIRE_MESSAGE(p.ok(), p.status());
  CheckInvariants(*p);
  BOOST_TEST(p->idle_gpus == 0);
  BOOST_TEST(p->block_form);
}

BOOST_AUTO_TEST_CASE(context_server_of_several_groups) {
  // --ctx-tp 8 with d = 4: one server of two DWDP groups.
  PlacementRequest r = Gb200(2, 4);
  r.ctx_tp = 8;
  auto p = PlaceRanks(r);
  BOOST_REQUIRE(p.ok());
  CheckInvariants(*p);
  BOOST_TEST(p->ranks[7].server == 0);
  BOOST_TEST(p->ranks[7].group == 1);
  BOOST_TEST(p->ranks[7].group_rank == 3);
}

BOOST_AUTO_TEST_CASE(posix_fd_group_larger_than_a_node_is_rejected) {
  PlacementRequest r = Gb200(4, 8);
  r.fabric_handles = false;
  auto p = PlaceRanks(r);
  BOOST_TEST(absl::IsFailedPrecondition(p.status()));
  const std::string message(p.status().message());
  BOOST_TEST(message.find("POSIX file descriptors") != std::string::npos, message);
  BOOST_TEST(message.find("dwdp_size <= 4") != std::string::npos, message);
  // The same group with fabric handles spans two nodes of the domain.
  r.fabric_handles = true;
  auto fabric = PlaceRanks(r);
  BOOST_REQUIRE(fabric.ok());
  CheckInvariants(*fabric);
  BOOST_TEST(fabric->groups_spanning_nodes == 1);
}

BOOST_AUTO_TEST_CASE(group_larger_than_the_nvlink_domain_is_rejected) {
  PlacementRequest r = Hgx(4, 16);
  r.fabric_handles = true;
  auto p = PlaceRanks(r);
  BOOST_TEST(absl::IsFailedPrecondition(p.status()));
  BOOST_TEST(std::string(p.status().message()).find("NVLink domain") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(fabric_groups_never_cross_a_domain_boundary) {
  // 8-GPU domains of two 4-GPU nodes: two groups of 3 per domain, 2 GPUs left in each; a fifth
  // group has 4 free GPUs in all but 2 per domain, so it cannot be placed.
  PlacementRequest r = Gb200(4, 3);
  r.nvlink_domain = 8;
  r.ctx_servers = 4;
  auto four = PlaceRanks(r);
  BOOST_REQUIRE(four.ok());
  CheckInvariants(*four);
  BOOST_TEST(four->ranks[6].domain == 1);  // group 2 skips the 2 GPUs left in domain 0
  r.ctx_servers = 5;
  auto five = PlaceRanks(r);
  BOOST_TEST(absl::IsFailedPrecondition(five.status()));
  BOOST_TEST(std::string(five.status().message()).find("domain") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(too_many_gpus_is_rejected_with_the_counts) {
  PlacementRequest r = Hgx(1, 4);
  r.ctx_servers = 2;
  r.gen_servers = 1;
  r.gen_tp = 4;
  auto p = PlaceRanks(r);
  BOOST_TEST(absl::IsFailedPrecondition(p.status()));
  const std::string message(p.status().message());
  BOOST_TEST(message.find("needs 12 GPUs") != std::string::npos, message);
}

BOOST_AUTO_TEST_CASE(generation_tp_across_nodes_is_rejected) {
  PlacementRequest r = Gb200(4, 4);
  r.gen_servers = 1;
  r.gen_tp = 8;
  auto p = PlaceRanks(r);
  BOOST_TEST(absl::IsFailedPrecondition(p.status()));
  BOOST_TEST(std::string(p.status().message()).find("tensor-parallel") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(fragmented_free_gpus_are_reported) {
  // POSIX d = 3 on two 4-GPU nodes leaves one GPU on each: enough GPUs in total for a TP2
  // generation server, but not on one node.
  PlacementRequest r = Gb200(2, 3);
  r.fabric_handles = false;
  r.ctx_servers = 2;
  r.gen_servers = 1;
  r.gen_tp = 2;
  auto p = PlaceRanks(r);
  BOOST_TEST(absl::IsFailedPrecondition(p.status()));
  BOOST_TEST(std::string(p.status().message()).find("generation server 0") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(usage_errors_are_invalid_argument) {
  PlacementRequest r = Gb200(2, 4);
  r.nvlink_domain = 6;  // not a whole number of 4-GPU nodes
  BOOST_TEST(absl::IsInvalidArgument(PlaceRanks(r).status()));
  r = Gb200(0, 4);
  BOOST_TEST(absl::IsInvalidArgument(PlaceRanks(r).status()));
  r = Gb200(2, 4);
  r.hostnames = {"a"};
  BOOST_TEST(absl::IsInvalidArgument(PlaceRanks(r).status()));
  // A context server that is not a whole number of groups cannot be placed.
  r = Gb200(2, 4);
  r.ctx_tp = 6;
  BOOST_TEST(absl::IsFailedPrecondition(PlaceRanks(r).status()));
}

BOOST_AUTO_TEST_CASE(host_names_are_used) {
  PlacementRequest r = Gb200(2, 4);
  r.ctx_servers = 2;
  r.hostnames = {"gb-a", "gb-b"};
  auto p = PlaceRanks(r);
  BOOST_REQUIRE(p.ok());
  BOOST_TEST(p->ranks[4].host == "gb-b");
  BOOST_TEST(SlurmHostfile(*p) == "gb-a\ngb-a\ngb-a\ngb-a\ngb-b\ngb-b\ngb-b\ngb-b\n");
}

}  // namespace
}  // namespace dwdp
