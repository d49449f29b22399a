// dwdp plan | place: choose dwdp_size, recipe and slot count for a model and platform, and lay
// the chosen configuration out on a cluster.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/sim/plan_simulate.h"
#include "cli/common.h"
#include "core/config/loader.h"
#include "core/layout/layout.h"
#include "core/perf/layer_times.h"
#include "core/plan/placement.h"
#include "core/plan/placement_report.h"
#include "core/plan/plan_check.h"
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
  for (ContentionMode m : {ContentionMode::kRotate, ContentionMode::kAscending,
                           ContentionMode::kRoundRobin, ContentionMode::kStaggered}) {
    if (name == ContentionModeName(m)) return m;
  }
  return std::nullopt;
}

}  // namespace

namespace {

// --simulate: the simulator on the chosen candidates; a candidate it cannot run is reported and
// left out of the table.
std::vector<SimulatedCandidate> SimulateCandidates(const Scenario& scenario,
                                                   const std::vector<PlanCandidate>& candidates,
                                                   ContentionMode contention, CommandContext& ctx) {
  std::vector<SimulatedCandidate> out;
  for (const PlanCandidate& c : candidates) {
    auto simulated = sim::SimulateCandidate(scenario, c, contention);
    if (!simulated.ok()) {
      ReportError(simulated.status(), kExitInvalid, ctx);
      continue;
    }
    out.push_back(*std::move(simulated));
  }
  return out;
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
  std::vector<const SizingCandidate*> ranked;
  for (const SizingCandidate& c : result->candidates) {
    if (c.kind == Parallelism::kDwdp && c.gpus > 0) ranked.push_back(&c);
  }
  std::sort(ranked.begin(), ranked.end(), [](const SizingCandidate* a, const SizingCandidate* b) {
    return a->gpus != b->gpus ? a->gpus < b->gpus : a->max_rate_per_gpu > b->max_rate_per_gpu;
  });
  std::vector<PlanCandidate> chosen;
  for (size_t i = 0; i < ranked.size() && static_cast<int64_t>(i) < flags.simulate; ++i) {
    chosen.push_back(ranked[i]->dwdp);
  }
  const std::vector<SimulatedCandidate> simulated = SimulateCandidates(
      scenario, chosen, options.contention.value_or(scenario.dwdp.contention.mode), ctx);
  switch (ParseFormat(flags.format)) {
    case Format::kJson: {
      nlohmann::json json = SizingToJson(*result);
      if (flags.simulate > 0) json["simulated"] = SimulatedToJson(simulated);
      PrintJson(json);
      break;
    }
    case Format::kCsv:
      std::cout << SizingToCsv(*result);
      break;
    case Format::kText:
      std::cout << SizingToText(*result);
      if (flags.simulate > 0) std::cout << SimulatedToText(simulated);
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
    const std::vector<SimulatedCandidate> simulated = SimulateCandidates(
        *scenario, BestFittingCandidates(*plan, opts->simulate), plan->contention, ctx);
    switch (ParseFormat(opts->format)) {
      case Format::kJson: {
        nlohmann::json json = PlanToJson(*plan, recommendations);
        if (opts->simulate > 0) json["simulated"] = SimulatedToJson(simulated);
        PrintJson(json);
        break;
      }
      case Format::kCsv:
        std::cout << PlanToCsv(*plan);
        break;
      case Format::kText:
        std::cout << PlanToText(*plan, recommendations);
        if (opts->simulate > 0) std::cout << SimulatedToText(simulated);
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

}  // namespace dwdp::cli
