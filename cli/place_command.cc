// dwdp place: lay a chosen configuration out on a cluster (rank -> node and GPU, rankfile,
// Slurm hostfile, launch commands).

#include <algorithm>
#include <iostream>

#include "cli/common.h"
#include "core/plan/placement.h"
#include "core/plan/placement_report.h"

namespace dwdp::cli {

void RegisterPlace(CLI::App& app, CommandContext& ctx) {
  struct Options {
    std::string scenario;
    int64_t nodes = 0;
    int64_t gpus_per_node = 0;
    std::optional<int64_t> nvlink_domain;
    std::optional<int64_t> ctx_servers;
    std::optional<int64_t> ctx_tp;
    int64_t gen_servers = 0;
    int64_t gen_tp = 1;
    std::vector<std::string> hosts;
    std::string rankfile;
    std::string hostfile;
    std::string format;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "place", "Map a configuration onto nodes and GPUs (rankfile, Slurm hostfile)");
  cmd->add_option("scenario", opts->scenario, "Scenario YAML file")->required();
  cmd->add_option("--nodes", opts->nodes, "Nodes in the allocation")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  cmd->add_option("--gpus-per-node", opts->gpus_per_node, "GPUs per node")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  cmd->add_option("--nvlink-domain", opts->nvlink_domain,
                  "GPUs per NVLink domain (default: the hardware profile's)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--ctx-servers", opts->ctx_servers,
                  "Context servers (default: 1, or the scenario's num_groups groups)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--ctx-tp", opts->ctx_tp,
                  "GPUs per context server, a multiple of dwdp_size (default: dwdp_size x "
                  "num_groups)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--gen-servers", opts->gen_servers, "Generation servers")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--gen-tp", opts->gen_tp, "GPUs per generation server (TP, one node)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--hosts", opts->hosts, "Host names, one per node (default node000, ...)")
      ->delimiter(',');
  cmd->add_option("--rankfile", opts->rankfile, "Write the OpenMPI rankfile here");
  cmd->add_option("--hostfile", opts->hostfile, "Write the Slurm hostfile here");
  AddFormatOption(*cmd, opts->format);
  cmd->callback([opts, &ctx] {
    auto scenario = LoadScenarioOrReport(opts->scenario, ctx);
    if (!scenario) return;
    const HardwareProfile& hw = scenario->hardware;
    PlacementRequest req;
    req.nodes = opts->nodes;
    req.gpus_per_node = opts->gpus_per_node;
    req.nvlink_domain = opts->nvlink_domain.value_or(static_cast<int64_t>(hw.nvlink_domain.value));
    if (!opts->nvlink_domain && req.nvlink_domain < req.gpus_per_node) {
      req.nvlink_domain = req.gpus_per_node;  // a node is always one NVLink domain at least
    }
    req.fabric_handles = hw.fabric_supported && hw.imex_permitted;
    req.dwdp_size = scenario->dwdp.dwdp_size;
    req.ctx_tp = opts->ctx_tp.value_or(scenario->dwdp.dwdp_size *
                                       std::max<int64_t>(scenario->dwdp.num_groups, 1));
    req.ctx_servers = opts->ctx_servers.value_or(1);
    req.gen_servers = opts->gen_servers;
    req.gen_tp = opts->gen_tp;
    req.hostnames = opts->hosts;
    auto placement = PlaceRanks(req);
    if (!placement.ok()) {
      ReportError(placement.status(),
                  absl::IsInvalidArgument(placement.status()) ? kExitUsage : kExitInvalid, ctx);
      return;
    }
    const std::string rankfile = opts->rankfile.empty() ? "rankfile" : opts->rankfile;
    const std::string hostfile = opts->hostfile.empty() ? "hostfile" : opts->hostfile;
    if (!opts->rankfile.empty() &&
        !WriteFileOrReport(opts->rankfile, OpenMpiRankfile(*placement), ctx)) {
      return;
    }
    if (!opts->hostfile.empty() &&
        !WriteFileOrReport(opts->hostfile, SlurmHostfile(*placement), ctx)) {
      return;
    }
    const std::vector<std::string> commands = LaunchCommands(*placement, rankfile, hostfile);
    if (ParseFormat(opts->format) == Format::kJson) {
      PrintJson(PlacementToJson(*placement, req, commands));
    } else {
      std::cout << PlacementToText(*placement, req, commands);
    }
  });
}

}  // namespace dwdp::cli
