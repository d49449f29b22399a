// dwdp run: whole forwards of a scenario's DWDP group on any backend of the table (the
// simulator by default, or the GPUs), through the one run path of core/run.

#include <sys/resource.h>

#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/sim/simulate.h"
#include "cli/common.h"
#include "cli/run_flags.h"
#include "core/config/loader.h"
#include "core/layout/layout.h"
#include "core/run/run_dep.h"
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
  missing.open_dep = [](const Scenario&, const DepRunSpec&,
                        const RunRequest&) -> absl::StatusOr<std::unique_ptr<DepSession> > {
    return absl::UnimplementedError(
        "this dwdp was built without the cuda backend (the CUDA toolkit or MPI was not found at "
        "build time); rebuild with -DDWDP_CUDA=ON or use --backend sim");
  };
  table.Add(std::move(missing));
#endif
  return table;
}

absl::Status WriteTrace(const RunResult& result, const RunRequest& request,
                        const std::string& path) {
  std::ofstream out(path);
  const auto& names = result.stream_names;
  out << ChromeTrace(
             result.timeline,
             [&names](int64_t rank, StreamId stream) {
               auto it = names.find({rank, stream});
               return it == names.end() ? absl::StrCat("stream ", stream) : it->second;
             },
             request.align_forwards ? ForwardStarts(result.timeline) : std::vector<double>{})
             .dump();
  if (!out)
    return absl::PermissionDeniedError(absl::StrCat("cannot write the trace to '", path, "'"));
  return absl::OkStatus();
}

// --baseline dep: the DEP baseline's run path (core/run/run_dep.h), its own report.
void RunDepCommand(const Scenario& scenario, const RunRequest& request, const RunBackend& backend,
                   Format format, CommandContext& ctx) {
  absl::StatusOr<DepRunResult> result = RunDep(scenario, request, backend);
  if (!result.ok()) return ReportError(result.status(), ctx);
  int exit_code = kExitOk;
  if (result->reports) {
    const dep::DepReport& report = result->report;
    if (!report.ok) {
      std::cerr << "error: "
                << (report.errors.empty() ? std::string("no forward ran") : report.errors.front())
                << "\n";
      exit_code = kExitInvalid;
    }
    if (format == Format::kJson) {
      PrintJson(report.ToJson());
    } else {
      std::cout << report.ToText(request.all_ranks);
    }
  }
  ctx.exit_code = result->session->Close(exit_code);
}

}  // namespace

void RegisterRun(CLI::App& app, CommandContext& ctx) {
  auto flags = std::make_shared<RunFlags>();
  const RunBackendTable backends = RunBackends();
  CLI::App* cmd = app.add_subcommand("run", "Run whole forwards of a scenario (sim or cuda)");
  AddRunFlags(*cmd, *flags, backends.names());
  cmd->callback([flags, backends, &ctx] {
    const Format format = ParseFormat(flags->format);
    absl::StatusOr<RunRequest> parsed = flags->ToRequest();
    if (!parsed.ok()) return ReportError(parsed.status(), kExitUsage, ctx);
    const RunRequest* request = &*parsed;
    auto scenario = LoadScenarioOrReport(flags->scenario, ctx);
    if (!scenario) return;
    if (absl::Status s = ApplyOverrides(*request, *scenario); !s.ok()) {
      return ReportError(s, kExitUsage, ctx);
    }
    if (absl::Status s = CheckBaselineOptions(*request); !s.ok()) {
      return ReportError(s, kExitUsage, ctx);
    }
    if (request->baseline == RunBaseline::kDep) {
      return RunDepCommand(*scenario, *request, *backends.Find(request->backend), format, ctx);
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
        if (absl::Status s = WriteTrace(*result, *request, request->trace_path); !s.ok()) {
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
        exit_code = RunExitCode(*result);
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
