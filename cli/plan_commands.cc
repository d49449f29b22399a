// dwdp plan | place: choose dwdp_size, recipe and slot count for a model and platform, and lay
// the chosen configuration out on a cluster.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/sim/simulate.h"
#include "cli/common.h"
#include "core/config/loader.h"
#include "core/layout/layout.h"
#include "core/perf/layer_times.h"
#include "core/plan/placement.h"
#include "core/plan/plan_report.h"
#include "core/plan/plan_request.h"
#include "core/plan/planner.h"
#include "core/plan/sizing.h"
#include "core/plan/sizing_report.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

namespace dwdp::cli {
namespace {

std::optional<ContentionMode> ParseContention(const std::string& name) {
  if (name == "rotate") return ContentionMode::kRotate;
  if (name == "ascending") return ContentionMode::kAscending;
  if (name == "round_robin") return ContentionMode::kRoundRobin;
  if (name == "staggered") return ContentionMode::kStaggered;
  return std::nullopt;
}

bool WriteFileOrReport(const std::string& path, const std::string& text, CommandContext& ctx) {
  std::ofstream out(path);
  out << text;
  if (!out) {
    ReportError(absl::StrCat("cannot write ", path), kExitUsage, ctx);
    return false;
  }
  return true;
}

}  // namespace

namespace {

// The planner's closed-form numbers next to the simulator's for the `count` fitting candidates
// with the highest throughput per GPU: same perf model, but the simulator runs the real slot
// pipeline, copy schedule and link sharing.
nlohmann::json SimulateBest(const Scenario& base, const Plan& plan, int64_t count,
                            CommandContext& ctx) {
  nlohmann::json out = nlohmann::json::array();
  if (count <= 0) return out;
  std::vector<const PlanCandidate*> fitting;
  for (const PlanCandidate& c : plan.candidates) {
    if (Recommendable(c)) fitting.push_back(&c);
  }
  std::sort(fitting.begin(), fitting.end(), [](const PlanCandidate* a, const PlanCandidate* b) {
    return a->tokens_per_s_per_gpu > b->tokens_per_s_per_gpu;
  });
  if (static_cast<int64_t>(fitting.size()) > count) fitting.resize(static_cast<size_t>(count));
  for (const PlanCandidate* c : fitting) {
    Scenario scenario = base;
    scenario.dwdp.dwdp_size = c->dwdp_size;
    scenario.dwdp.num_experts_per_worker = c->num_experts_per_worker;
    scenario.dwdp.num_prefetch_experts = c->num_prefetch_experts;
    scenario.dwdp.loaded_chunk.reset();
    scenario.dwdp.num_buffers = c->num_buffers;
    scenario.dwdp.contention.mode = plan.contention;
    scenario.dwdp.owner = c->owner;
    scenario.workload.tokens_per_rank = c->tokens_per_rank;
    scenario.workload.sequence_length = c->sequence_length;
    auto layout = ComputeGroupLayout(scenario);
    if (!layout.ok()) {
      ReportError(layout.status(), kExitInvalid, ctx);
      continue;
    }
    const LayerTimes times = ComputeLayerTimes(scenario);
    sim::SimulateOptions options;
    options.forwards = 1;
    options.check_hazards = false;
    options.attention_ns = times.attention_ns;
    options.moe_ns = times.moe_ns;
    options.prelude_ns = times.prelude_ns;
    auto result = sim::SimulateScenario(scenario, *layout, options);
    if (!result.ok()) {
      ReportError(result.status(), ctx);
      continue;
    }
    // Per-layer figures of the slowest rank, averaged over the MoE layers.
    double copy_ns = 0;
    double stall_ns = 0;
    size_t layers = 0;
    for (const RankReport& rank : result->report.ranks) {
      double rank_copy = 0;
      for (const LayerReport& l : rank.layers) rank_copy += l.copy_ns;
      if (rank_copy >= copy_ns) {
        copy_ns = rank_copy;
        stall_ns = rank.stall_ns;
        layers = rank.layers.size();
      }
    }
    const double per_layer = layers ? 1.0 / static_cast<double>(layers) : 0;
    const double planned = c->forward_ns;
    const double simulated = result->report.forward_ns;
    out.push_back(
        {{"dwdp_size", c->dwdp_size},
         {"owner", OwnerPolicyName(c->owner)},
         {"copy_pricing", CopyPricingName(c->copy_pricing)},
         {"within_10_percent", planned > 0 && std::fabs(simulated - planned) <= 0.1 * planned},
         {"num_experts_per_worker", c->num_experts_per_worker},
         {"num_prefetch_experts", c->num_prefetch_experts},
         {"num_buffers", c->num_buffers},
         {"tokens_per_rank", c->tokens_per_rank},
         {"sequence_length", c->sequence_length},
         {"planned_prefetch_ns_per_layer", c->prefetch_ns_per_layer},
         {"simulated_prefetch_ns_per_layer", copy_ns * per_layer},
         {"planned_stall_ns_per_layer", c->stall_ns_per_layer},
         {"simulated_stall_ns_per_layer", stall_ns * per_layer},
         {"planned_forward_ns", c->forward_ns},
         {"simulated_forward_ns", result->report.forward_ns},
         {"simulation_ok", result->report.ok}});
  }
  return out;
}

std::string SimulatedText(const nlohmann::json& simulated) {
  TextTable table({"d", "recipe", "owner", "k", "tokens", "seq", "copy/layer plan",
                   "copy/layer sim", "stall/layer plan", "stall/layer sim", "forward plan",
                   "forward sim", "diff"});
  size_t agree = 0;
  for (const auto& s : simulated) {
    const double planned = s["planned_forward_ns"];
    const double sim = s["simulated_forward_ns"];
    agree += s["within_10_percent"].get<bool>() ? 1 : 0;
    table.AddRow({std::to_string(s["dwdp_size"].get<int64_t>()),
                  absl::StrCat(s["num_experts_per_worker"].get<int64_t>(), "/",
                               s["num_prefetch_experts"].get<int64_t>()),
                  s["owner"].get<std::string>(), std::to_string(s["num_buffers"].get<int64_t>()),
                  std::to_string(s["tokens_per_rank"].get<int64_t>()),
                  std::to_string(s["sequence_length"].get<int64_t>()),
                  FormatNanos(s["planned_prefetch_ns_per_layer"]),
                  FormatNanos(s["simulated_prefetch_ns_per_layer"]),
                  FormatNanos(s["planned_stall_ns_per_layer"]),
                  FormatNanos(s["simulated_stall_ns_per_layer"]), FormatNanos(planned),
                  FormatNanos(sim),
                  planned > 0 ? absl::StrFormat("%+.1f%%", 100 * (sim - planned) / planned) : "-"});
  }
  return absl::StrFormat(
      "\nplanner vs simulator (timing mode, one forward, slowest rank):\n%s%d of %d within "
      "10%%%s\n",
      table.Render({1}), agree, simulated.size(),
      agree == simulated.size() ? ": plan and run agree on every candidate simulated" : "");
}

}  // namespace

namespace {

struct PlanFlags {
  std::string scenario;
  std::string hardware;
  std::string format;
  std::vector<int64_t> dwdp_sizes;
  int64_t max_dwdp_size = 0;
  std::vector<int64_t> num_buffers = {2, 3, 4};
  std::vector<int64_t> tokens_per_rank;
  std::vector<int64_t> sequence_lengths;
  std::string contention;
  std::optional<double> tokens_cv;
  bool all_recipes = false;
  bool recommend = false;
  std::string objective = "throughput";
  std::string csv_out;
  int64_t simulate = 0;
  std::string owner;
  // Sizing.
  std::optional<double> rate;
  std::string rate_unit = "requests";
  std::optional<double> ttft_p99;
  std::optional<double> ttft_p50;
  std::vector<int64_t> max_num_tokens;
  std::string isl_file;
  int64_t max_gpus = 0;
  int64_t des_requests = 2000;
  std::string pareto_out;
};

// dwdp plan --rate: the smallest DWDP and DEP deployments for the traffic.
void RunSizing(const Scenario& scenario, const PlanOptions& options, const PlanFlags& flags,
               CommandContext& ctx) {
  if (!flags.rate || !flags.ttft_p99) {
    ReportError("sizing needs both --rate (requests/s) and --ttft-p99 (ms)", kExitUsage, ctx);
    return;
  }
  SizingRequest request;
  request.rate = *flags.rate;
  request.rate_in_tokens = flags.rate_unit == "tokens";
  request.ttft_p99_ms = *flags.ttft_p99;
  request.ttft_p50_ms = flags.ttft_p50;
  request.max_num_tokens = flags.max_num_tokens;
  request.owners = options.owners;
  request.max_gpus = flags.max_gpus;
  request.requests = flags.des_requests;
  request.plan = options;
  auto result = SizeDeployment(scenario, request);
  if (!result.ok()) {
    ReportError(result.status(),
                absl::IsInvalidArgument(result.status()) ? kExitUsage : kExitInvalid, ctx);
    return;
  }
  if (!flags.csv_out.empty() && !WriteFileOrReport(flags.csv_out, SizingToCsv(*result), ctx)) {
    return;
  }
  if (!flags.pareto_out.empty() &&
      !WriteFileOrReport(flags.pareto_out, ParetoToCsv(*result), ctx)) {
    return;
  }
  // --simulate: the simulator on the DWDP configurations that need the fewest GPUs.
  Plan checked;
  checked.contention = options.contention.value_or(scenario.dwdp.contention.mode);
  std::vector<const SizingCandidate*> ranked;
  for (const SizingCandidate& c : result->candidates) {
    if (c.kind == Parallelism::kDwdp && c.gpus > 0) ranked.push_back(&c);
  }
  std::sort(ranked.begin(), ranked.end(), [](const SizingCandidate* a, const SizingCandidate* b) {
    return a->gpus != b->gpus ? a->gpus < b->gpus : a->max_rate_per_gpu > b->max_rate_per_gpu;
  });
  for (size_t i = 0; i < ranked.size() && static_cast<int64_t>(i) < flags.simulate; ++i) {
    checked.candidates.push_back(ranked[i]->dwdp);
  }
  const nlohmann::json simulated =
      SimulateBest(scenario, checked, static_cast<int64_t>(checked.candidates.size()), ctx);
  switch (ParseFormat(flags.format)) {
    case Format::kJson: {
      nlohmann::json json = SizingToJson(*result);
      if (flags.simulate > 0) json["simulated"] = simulated;
      PrintJson(json);
      break;
    }
    case Format::kCsv:
      std::cout << SizingToCsv(*result);
      break;
    case Format::kText:
      std::cout << SizingToText(*result);
      if (flags.simulate > 0) std::cout << SimulatedText(simulated);
      break;
  }
}

}  // namespace

void RegisterPlan(CLI::App& app, CommandContext& ctx) {
  auto opts = std::make_shared<PlanFlags>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Sweep dwdp_size, recipes and slots: memory fit, copy vs compute, DWDP vs DEP");
  cmd->add_option("scenario", opts->scenario, "Scenario YAML file (model, workload, pool)")
      ->required();
  cmd->add_option("--hardware", opts->hardware,
                  "Hardware preset or profile file (default: the scenario's)");
  AddFormatOption(*cmd, opts->format, {"text", "csv", "json"});
  cmd->add_option("--dwdp-sizes", opts->dwdp_sizes,
                  "Only these group sizes (default: 2 .. the NVLink domain)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{2}, int64_t{4096}));
  cmd->add_option("--max-dwdp-size", opts->max_dwdp_size,
                  "Largest group size (default: the NVLink domain)")
      ->check(CLI::Range(int64_t{2}, int64_t{4096}));
  cmd->add_option("--num-buffers", opts->num_buffers, "Pool slot counts to sweep")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{2}, int64_t{64}))
      ->capture_default_str();
  cmd->add_option("--tokens-per-rank", opts->tokens_per_rank,
                  "Context tokens per rank per forward (default: the scenario's workload)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--sequence-length", opts->sequence_lengths,
                  "Sequence lengths, e.g. 8192,16384 (default: the scenario's workload)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--contention", opts->contention,
                  "Copy schedule to estimate (default: the scenario's)")
      ->check(CLI::IsMember({"rotate", "ascending", "round_robin", "staggered"}));
  cmd->add_option("--tokens-cv", opts->tokens_cv,
                  "Coefficient of variation of per-rank tokens (DEP sync term)")
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_flag("--all-recipes", opts->all_recipes,
                "Every valid recipe per size (default: the least-overlap one)");
  cmd->add_flag("--recommend", opts->recommend, "Pick the best candidate that fits and say why");
  cmd->add_option("--objective", opts->objective, "What --recommend optimises")
      ->check(CLI::IsMember({"throughput", "smallest"}))
      ->capture_default_str();
  cmd->add_option("--simulate", opts->simulate,
                  "Also run the simulator (timing mode) on the N best fitting candidates")
      ->check(CLI::Range(int64_t{0}, int64_t{64}));
  cmd->add_option("--csv-out", opts->csv_out, "Also write the CSV (for scripts/plot_plan.py)");
  cmd->add_option("--owner", opts->owner,
                  "Owner policy to price: lowest, balanced or both (default: the scenario's; "
                  "with --rate both)")
      ->check(CLI::IsMember({"lowest", "balanced", "both"}));
  cmd->add_option("--rate", opts->rate,
                  "Size a deployment for this traffic: requests/s (or input tokens/s with "
                  "--rate-unit tokens); needs --ttft-p99");
  cmd->add_option("--rate-unit", opts->rate_unit, "Unit of --rate")
      ->check(CLI::IsMember({"requests", "tokens"}))
      ->capture_default_str();
  cmd->add_option("--ttft-p99", opts->ttft_p99, "Time-to-first-token target, 99th percentile (ms)");
  cmd->add_option("--ttft-p50", opts->ttft_p50, "Time-to-first-token target, median (ms)");
  cmd->add_option("--max-num-tokens", opts->max_num_tokens,
                  "Max tokens per forward and rank to sweep (default: workload.max_num_tokens or "
                  "tokens_per_rank)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--isl-file", opts->isl_file,
                  "Input lengths, one per line (replaces the scenario's workload.isl)");
  cmd->add_option("--max-gpus", opts->max_gpus, "GPU budget of a deployment (default: none)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--des-requests", opts->des_requests, "Requests per TTFT simulation")
      ->check(CLI::Range(int64_t{100}, int64_t{1} << 22))
      ->capture_default_str();
  cmd->add_option("--pareto-out", opts->pareto_out,
                  "With --rate: write the Pareto points (tokens/s per GPU vs TTFT) as CSV");
  cmd->callback([opts, &ctx] {
    auto scenario = LoadScenarioOrReport(opts->scenario, ctx);
    if (!scenario) return;
    if (!opts->hardware.empty()) {
      auto hw = ResolveHardware(opts->hardware);
      if (!hw.ok()) {
        ReportError(hw.status(), kExitUsage, ctx);
        return;
      }
      scenario->hardware = *std::move(hw);
    }
    PlanRequest request;
    PlanOptions& options = request.options;
    options.dwdp_sizes = opts->dwdp_sizes;
    options.max_dwdp_size = opts->max_dwdp_size;
    options.num_buffers = opts->num_buffers;
    options.tokens_per_rank = opts->tokens_per_rank;
    options.sequence_lengths = opts->sequence_lengths;
    options.all_recipes = opts->all_recipes;
    options.contention = ParseContention(opts->contention);
    options.tokens_cv = opts->tokens_cv;
    if (opts->owner == "lowest" || opts->owner == "both") {
      options.owners.push_back(OwnerPolicy::kLowest);
    }
    if (opts->owner == "balanced" || opts->owner == "both") {
      options.owners.push_back(OwnerPolicy::kBalanced);
    }
    if (!opts->isl_file.empty()) {
      auto lengths = LoadLengthFile(opts->isl_file);
      if (!lengths.ok()) {
        ReportError(lengths.status(), kExitUsage, ctx);
        return;
      }
      InputLengths isl;
      isl.distribution = LengthDistribution::kFile;
      isl.path = opts->isl_file;
      isl.lengths = *std::move(lengths);
      scenario->workload.input_lengths = std::move(isl);
    }
    if (opts->rate || opts->ttft_p99 || opts->ttft_p50) {
      RunSizing(*scenario, options, *opts, ctx);
      return;
    }
    if (opts->recommend) {
      request.recommend =
          opts->objective == "smallest" ? PlanObjective::kSmallest : PlanObjective::kThroughput;
    }
    auto outcome = RunPlan(*scenario, request);
    if (!outcome.ok()) {
      ReportError(outcome.status(), kExitInvalid, ctx);
      return;
    }
    const Plan* plan = &outcome->plan;
    const std::vector<RecommendationResult>& recommendations = outcome->recommendations;
    if (!opts->csv_out.empty() && !WriteFileOrReport(opts->csv_out, PlanToCsv(*plan), ctx)) return;
    const nlohmann::json simulated = SimulateBest(*scenario, *plan, opts->simulate, ctx);
    switch (ParseFormat(opts->format)) {
      case Format::kJson: {
        nlohmann::json json = PlanToJson(*plan, recommendations);
        if (opts->simulate > 0) json["simulated"] = simulated;
        PrintJson(json);
        break;
      }
      case Format::kCsv:
        std::cout << PlanToCsv(*plan);
        break;
      case Format::kText:
        std::cout << PlanToText(*plan, recommendations);
        if (opts->simulate > 0) std::cout << SimulatedText(simulated);
        break;
    }
    // A recommendation was asked for and nothing fits: the scenario cannot run as planned.
    for (const RecommendationResult& r : recommendations) {
      if (!r.recommendation) {
        ReportError(
            absl::StrFormat("no candidate fits at %d tokens per rank, sequence length %d: %s",
                            r.workload.tokens_per_rank, r.workload.sequence_length, r.none_reason),
            kExitInvalid, ctx);
      }
    }
  });
}

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
      nlohmann::json ranks = nlohmann::json::array();
      for (const PlacedRank& pr : placement->ranks) {
        nlohmann::json r = {{"rank", pr.rank},     {"role", RankRoleName(pr.role)},
                            {"server", pr.server}, {"group_rank", pr.group_rank},
                            {"node", pr.node},     {"host", pr.host},
                            {"gpu", pr.gpu},       {"domain", pr.domain}};
        if (pr.group >= 0) r["group"] = pr.group;
        ranks.push_back(std::move(r));
      }
      PrintJson({{"world_size", placement->ranks.size()},
                 {"handles", req.fabric_handles ? "fabric" : "posix_fd"},
                 {"dwdp_size", req.dwdp_size},
                 {"idle_gpus", placement->idle_gpus},
                 {"groups_spanning_nodes", placement->groups_spanning_nodes},
                 {"block_form", placement->block_form},
                 {"ranks", ranks},
                 {"rankfile", OpenMpiRankfile(*placement)},
                 {"hostfile", SlurmHostfile(*placement)},
                 {"commands", commands}});
      return;
    }
    std::cout << absl::StrFormat(
        "%d ranks on %d x %d GPUs; DWDP groups of %d with %s handles (%s); NVLink domain %d "
        "GPUs\n\n",
        placement->ranks.size(), req.nodes, req.gpus_per_node, req.dwdp_size,
        req.fabric_handles ? "fabric" : "POSIX-fd",
        req.fabric_handles ? "groups may span nodes of a domain" : "one node per group",
        req.nvlink_domain);
    TextTable table({"rank", "role", "server", "group", "member", "host", "gpu", "domain"});
    for (const PlacedRank& pr : placement->ranks) {
      table.AddRow({absl::StrCat(pr.rank), RankRoleName(pr.role), absl::StrCat(pr.server),
                    pr.group >= 0 ? absl::StrCat(pr.group) : "-", absl::StrCat(pr.group_rank),
                    pr.host, absl::StrCat(pr.gpu), absl::StrCat(pr.domain)});
    }
    std::cout << table.Render({1, 5}) << "\n";
    if (placement->idle_gpus > 0) {
      std::cout << placement->idle_gpus << " GPU(s) idle on the nodes in use\n";
    }
    std::cout << "rankfile (OpenMPI; slot = GPU = local rank):\n"
              << OpenMpiRankfile(*placement) << "\nlaunch:\n";
    for (const std::string& c : commands) std::cout << "  " << c << "\n";
  });
}

}  // namespace dwdp::cli
