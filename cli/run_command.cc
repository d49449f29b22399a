// dwdp run: whole forwards of a scenario's DWDP group on the simulator (default) or the GPUs.

#include <sys/resource.h>

#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/sim/simulate.h"
#include "cli/common.h"
#include "cli/run_cuda.h"
#include "core/config/loader.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "core/perf/layer_times.h"
#include "core/util/bytes.h"

namespace dwdp::cli {
namespace {

struct RunOptions {
  std::string scenario;
  std::string backend = "sim";
  std::string mode = "timing";
  std::optional<int64_t> forwards;
  std::string trace;
  std::string inject = "none";
  std::string format;
  std::string hardware;
  std::string contention;
  bool all_ranks = false;
  bool no_hazards = false;
  double timeout_s = 60;
  std::optional<int64_t> num_buffers;
  std::optional<double> layer_compute_ns;
  bool no_gpu_timing = false;
  bool align_forwards = false;
  uint64_t seed = 1;
};

// Physical bytes the simulator would hold for the whole group in functional mode.
uint64_t FunctionalBytes(const GroupLayout& layout) {
  uint64_t total = 0;
  for (const RankLayout& r : layout.ranks) {
    uint64_t pool = 0;
    for (uint64_t pages : r.slot_pages) pool += pages * layout.pool_page_bytes;
    total += r.local_bytes_per_layer * static_cast<uint64_t>(layout.num_layers()) + pool;
  }
  return total;
}

void PrintReport(const RunReport& report, Format format, bool all_ranks) {
  if (format == Format::kJson) {
    PrintJson(report.ToJson());
  } else {
    std::cout << report.ToText(all_ranks);
  }
}

}  // namespace

void RegisterRun(CLI::App& app, CommandContext& ctx) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run whole forwards of a scenario (sim or cuda)");
  cmd->add_option("scenario", opts->scenario, "Scenario YAML file")->required();
  cmd->add_option("--backend", opts->backend, "Backend")
      ->check(CLI::IsMember({"sim", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--mode", opts->mode,
                  "timing: sizes only; functional: move and verify every byte")
      ->check(CLI::IsMember({"timing", "functional"}))
      ->capture_default_str();
  cmd->add_option("--forwards", opts->forwards, "Forwards to run (default: the scenario's)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  cmd->add_option("--trace", opts->trace, "Write a Chrome trace (Perfetto) JSON file");
  cmd->add_option("--inject", opts->inject, "Plant a fault that the run must catch")
      ->check(CLI::IsMember(
          {"none", "free-at-bind", "skip-ready-wait", "bad-copy-offset", "partial-map"}))
      ->capture_default_str();
  cmd->add_option("--hardware", opts->hardware,
                  "Hardware preset or profile file (overrides the scenario's)");
  cmd->add_option("--contention", opts->contention, "Copy schedule (overrides the scenario's)")
      ->check(CLI::IsMember({"rotate", "ascending", "round_robin"}));
  cmd->add_option("--num-buffers", opts->num_buffers, "Pool slots k (overrides the scenario's)")
      ->check(CLI::Range(int64_t{2}, int64_t{64}));
  cmd->add_option("--layer-compute-ns", opts->layer_compute_ns,
                  "Compute time of every MoE layer in ns (overrides the perf model)")
      ->check(CLI::Range(0.0, 1e12));
  cmd->add_flag("--no-gpu-timing", opts->no_gpu_timing,
                "cuda: no events around each operation (measures host costs alone)");
  cmd->add_flag("--align-forwards", opts->align_forwards,
                "cuda: barrier before each forward, to measure schedules with aligned ranks "
                "(diagnostic; DWDP never synchronises ranks at run time)");
  cmd->add_flag("--all-ranks", opts->all_ranks, "Per-layer tables for every rank");
  cmd->add_flag("--no-hazards", opts->no_hazards,
                "Timing mode without the race checker (faster for long runs)");
  cmd->add_option("--seed", opts->seed,
                  "sim: seed of the fabric's random shares (profiles with fabric_share_spread); "
                  "other seeds show how far apart runs of the machine may be")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 62))
      ->capture_default_str();
  cmd->add_option("--timeout", opts->timeout_s,
                  "cuda: seconds to wait for a peer during setup before failing")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  AddFormatOption(*cmd, opts->format);
  cmd->callback([opts, &ctx] {
    const Format format = ParseFormat(opts->format);
    auto scenario = LoadScenarioOrReport(opts->scenario, ctx);
    if (!scenario) return;
    if (!opts->hardware.empty()) {
      auto hardware = ResolveHardware(opts->hardware);
      if (!hardware.ok()) return ReportError(hardware.status(), kExitUsage, ctx);
      scenario->hardware = *std::move(hardware);
    }
    if (!opts->contention.empty()) {
      scenario->dwdp.contention.mode = opts->contention == "ascending" ? ContentionMode::kAscending
                                       : opts->contention == "round_robin"
                                           ? ContentionMode::kRoundRobin
                                           : ContentionMode::kRotate;
    }
    if (opts->forwards) scenario->workload.forwards = *opts->forwards;
    if (opts->num_buffers) scenario->dwdp.num_buffers = *opts->num_buffers;
    if (opts->layer_compute_ns) scenario->workload.layer_compute_ns = *opts->layer_compute_ns;
    auto layout = ComputeGroupLayout(*scenario);
    if (!layout.ok()) return ReportError(layout.status(), kExitInvalid, ctx);
    if (auto st = CheckCopyPlanSize(*layout, scenario->dwdp.contention); !st.ok()) {
      return ReportError(st, kExitUsage, ctx);
    }
    auto fault = ParseFault(opts->inject);
    if (!fault.ok()) return ReportError(fault.status(), kExitUsage, ctx);
    const bool functional = opts->mode == "functional";
    const LayerTimes times = ComputeLayerTimes(*scenario);

    if (opts->backend == "cuda") {
      CudaRunRequest request{&*scenario,
                             &*layout,
                             &times,
                             functional,
                             *fault,
                             opts->trace,
                             format == Format::kJson,
                             opts->all_ranks};
      ctx.exit_code = RunOnCuda(request);
      return;
    }

    sim::SimulateOptions sim_options;
    sim_options.functional = functional;
    sim_options.check_hazards = !opts->no_hazards;
    sim_options.world.seed = opts->seed;
    sim_options.forwards = scenario->workload.forwards;
    sim_options.fault = *fault;
    sim_options.attention_ns = times.attention_ns;
    sim_options.moe_ns = times.moe_ns;
    sim_options.prelude_ns = times.prelude_ns;
    sim_options.keep_timeline = !opts->trace.empty();
    if (functional) {
      const uint64_t needed = FunctionalBytes(*layout);
      if (needed > sim_options.world.functional_byte_limit) {
        return ReportError(
            absl::StrFormat("functional mode stores every byte and this scenario needs %s "
                            "(limit %s); use --mode timing or a scenario with fewer layers or "
                            "smaller experts",
                            FormatBytes(needed),
                            FormatBytes(sim_options.world.functional_byte_limit)),
            kExitUsage, ctx);
      }
    }
    auto result = sim::SimulateScenario(*scenario, *layout, sim_options);
    if (!result.ok()) return ReportError(result.status(), kExitUsage, ctx);
    RunReport& report = result->report;
    report.extra["compute_source"] = times.source;
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
      report.extra["host_peak_rss_bytes"] = static_cast<uint64_t>(usage.ru_maxrss) * 1024;
    }
    report.extra["fault"] = FaultName(*fault);
    if (!opts->trace.empty()) {
      std::ofstream out(opts->trace);
      const auto& names = result->stream_names;
      out << ChromeTrace(result->timeline, [&names](int64_t rank, StreamId stream) {
               auto it = names.find({rank, stream});
               return it == names.end() ? absl::StrCat("stream ", stream) : it->second;
             }).dump();
      if (!out) {
        return ReportError(absl::StrCat("cannot write the trace to '", opts->trace, "'"),
                           kExitUsage, ctx);
      }
    }
    if (!report.ok) {
      const std::string first = !report.errors.empty()
                                    ? report.errors.front()
                                    : absl::StrCat("race: ", report.hazards.front());
      std::cerr << "error: " << first << "\n";
      ctx.exit_code = kExitInvalid;
    }
    PrintReport(report, format, opts->all_ranks);
  });
}

}  // namespace dwdp::cli
