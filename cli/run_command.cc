// dwdp run: whole forwards of a scenario's DWDP group on any backend of the table (the
// simulator by default, or the GPUs), through the one run path of core/run.

#include <sys/resource.h>

#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/sim/simulate.h"
#include "cli/common.h"
#include "core/config/loader.h"
#include "core/layout/layout.h"
#include "core/run/run_scenario.h"

#if defined(DWDP_HAVE_CUDA)
#include "backends/cuda/cuda_run_backend.h"
#endif

namespace dwdp::cli {
namespace {

// The backends `dwdp run` offers. A build without the cuda backend still lists it, so that
// asking for it says why it is missing rather than "unknown backend".
RunBackendTable RunBackends() {
  RunBackendTable table;
  table.Add(sim::SimRunBackend());
#if defined(DWDP_HAVE_CUDA)
  table.Add(cuda::CudaRunBackend());
#else
  RunBackend missing;
  missing.name = "cuda";
  missing.description = "not built";
  missing.options = ~0u;  // the refusal below says more than an option check would
  missing.open = [](const Scenario&, const GroupLayout&,
                    const RunRequest&) -> absl::StatusOr<std::unique_ptr<RunSession> > {
    return absl::UnimplementedError(
        "this dwdp was built without the cuda backend (the CUDA toolkit or MPI was not found at "
        "build time); rebuild with -DDWDP_CUDA=ON or use --backend sim");
  };
  table.Add(std::move(missing));
#endif
  return table;
}

// The flags as CLI11 parses them; turned into a RunRequest once parsing is done.
struct RunFlags {
  std::string scenario;
  std::string format;
  std::string mode = "timing";
  std::string inject = "none";
  std::string contention;
  bool no_hazards = false;
  bool no_gpu_timing = false;
  uint64_t seed = RunRequest::kDefaultSeed;
  double timeout_s = RunRequest::kDefaultTimeoutS;
  CLI::Option* seed_option = nullptr;
  CLI::Option* timeout_option = nullptr;
};

absl::Status WriteTrace(const RunResult& result, const std::string& path) {
  std::ofstream out(path);
  const auto& names = result.stream_names;
  out << ChromeTrace(result.timeline, [&names](int64_t rank, StreamId stream) {
           auto it = names.find({rank, stream});
           return it == names.end() ? absl::StrCat("stream ", stream) : it->second;
         }).dump();
  if (!out)
    return absl::PermissionDeniedError(absl::StrCat("cannot write the trace to '", path, "'"));
  return absl::OkStatus();
}

}  // namespace

void RegisterRun(CLI::App& app, CommandContext& ctx) {
  auto request = std::make_shared<RunRequest>();
  auto flags = std::make_shared<RunFlags>();
  const RunBackendTable backends = RunBackends();
  CLI::App* cmd = app.add_subcommand("run", "Run whole forwards of a scenario (sim or cuda)");
  cmd->add_option("scenario", flags->scenario, "Scenario YAML file")->required();
  cmd->add_option("--backend", request->backend, "Backend")
      ->check(CLI::IsMember(backends.names()))
      ->capture_default_str();
  cmd->add_option("--mode", flags->mode,
                  "timing: sizes only; functional: move and verify every byte")
      ->check(CLI::IsMember({"timing", "functional"}))
      ->capture_default_str();
  cmd->add_option("--forwards", request->forwards, "Forwards to run (default: the scenario's)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  cmd->add_option("--trace", request->trace_path, "Write a Chrome trace (Perfetto) JSON file");
  cmd->add_option("--inject", flags->inject, "Plant a fault that the run must catch")
      ->check(CLI::IsMember(
          {"none", "free-at-bind", "skip-ready-wait", "bad-copy-offset", "partial-map"}))
      ->capture_default_str();
  cmd->add_option("--hardware", request->hardware,
                  "Hardware preset or profile file (overrides the scenario's)");
  cmd->add_option("--contention", flags->contention, "Copy schedule (overrides the scenario's)")
      ->check(CLI::IsMember({"rotate", "ascending", "round_robin"}));
  cmd->add_option("--num-buffers", request->num_buffers, "Pool slots k (overrides the scenario's)")
      ->check(CLI::Range(int64_t{2}, int64_t{64}));
  cmd->add_option("--layer-compute-ns", request->layer_compute_ns,
                  "Compute time of every MoE layer in ns (overrides the perf model)")
      ->check(CLI::Range(0.0, 1e12));
  cmd->add_flag("--no-gpu-timing", flags->no_gpu_timing,
                "cuda: no events around each operation (measures host costs alone)");
  cmd->add_flag("--align-forwards", request->align_forwards,
                "barrier of the group's ranks before each forward, to measure schedules with "
                "aligned ranks (diagnostic; DWDP never synchronises ranks at run time)");
  cmd->add_flag("--all-ranks", request->all_ranks, "Per-layer tables for every rank");
  cmd->add_flag("--no-hazards", flags->no_hazards,
                "sim: timing mode without the race checker (faster for long runs)");
  flags->seed_option =
      cmd->add_option("--seed", flags->seed,
                      "sim: seed of the fabric's random shares (profiles with "
                      "fabric_share_spread); other seeds show how far apart runs of the machine "
                      "may be")
          ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 62))
          ->capture_default_str();
  flags->timeout_option =
      cmd->add_option("--timeout", flags->timeout_s,
                      "cuda: seconds to wait for a peer during setup and in any collective "
                      "before failing")
          ->check(CLI::Range(0.1, 86400.0))
          ->capture_default_str();
  AddFormatOption(*cmd, flags->format);
  cmd->callback([request, flags, backends, &ctx] {
    const Format format = ParseFormat(flags->format);
    request->mode = flags->mode == "functional" ? RunMode::kFunctional : RunMode::kTiming;
    if (!flags->contention.empty()) {
      request->contention = flags->contention == "ascending"     ? ContentionMode::kAscending
                            : flags->contention == "round_robin" ? ContentionMode::kRoundRobin
                                                                 : ContentionMode::kRotate;
    }
    // Backend-specific options are set only when given, so a backend without them can refuse.
    if (flags->no_hazards) request->check_hazards = false;
    if (flags->no_gpu_timing) request->gpu_timing = false;
    if (flags->seed_option->count() > 0) request->seed = flags->seed;
    if (flags->timeout_option->count() > 0) request->timeout_s = flags->timeout_s;
    absl::StatusOr<Fault> fault = ParseFault(flags->inject);
    if (!fault.ok()) return ReportError(fault.status(), kExitUsage, ctx);
    request->fault = *fault;

    auto scenario = LoadScenarioOrReport(flags->scenario, ctx);
    if (!scenario) return;
    if (absl::Status s = ApplyOverrides(*request, *scenario); !s.ok()) {
      return ReportError(s, kExitUsage, ctx);
    }
    auto layout = ComputeGroupLayout(*scenario);
    if (!layout.ok()) return ReportError(layout.status(), kExitInvalid, ctx);
    if (auto st = CheckCopyPlanSize(*layout, scenario->dwdp.contention); !st.ok()) {
      return ReportError(st, kExitUsage, ctx);
    }
    const RunBackend* backend = backends.Find(request->backend);
    absl::StatusOr<RunResult> result = RunScenario(*scenario, *layout, *request, *backend);
    if (!result.ok()) return ReportError(result.status(), ctx);
    int exit_code = kExitOk;
    if (result->reports) {
      RunReport& report = result->report;
      rusage usage{};
      if (getrusage(RUSAGE_SELF, &usage) == 0) {
        report.extra["host_peak_rss_bytes"] = static_cast<uint64_t>(usage.ru_maxrss) * 1024;
      }
      if (!request->trace_path.empty()) {
        if (absl::Status s = WriteTrace(*result, request->trace_path); !s.ok()) {
          ReportError(s, ctx);
          ctx.exit_code = result->session->Close(ctx.exit_code);
          return;
        }
      }
      if (!report.ok) {
        const std::string first = !report.errors.empty()
                                      ? report.errors.front()
                                      : absl::StrCat("race: ", report.hazards.front());
        std::cerr << "error: " << first << "\n";
        exit_code = kExitInvalid;
      }
      if (format == Format::kJson) {
        PrintJson(report.ToJson());
      } else {
        std::cout << report.ToText(request->all_ranks) << result->session->TextAppendix(report);
      }
    }
    ctx.exit_code = result->session->Close(exit_code);
  });
}

}  // namespace dwdp::cli
