#include "cli/run_flags.h"

#include "cli/common.h"

namespace dwdp::cli {

void AddRunFlags(CLI::App& cmd, RunFlags& flags, const std::vector<std::string>& backends) {
  RunRequest& request = flags.request;
  cmd.add_option("scenario", flags.scenario, "Scenario YAML file")->required();
  cmd.add_option("--backend", request.backend, "Backend")
      ->check(CLI::IsMember(backends))
      ->capture_default_str();
  cmd.add_option("--mode", flags.mode, "timing: sizes only; functional: move and verify every byte")
      ->check(CLI::IsMember({"timing", "functional"}))
      ->capture_default_str();
  cmd.add_option("--baseline", flags.baseline,
                 "dwdp: the scenario's DWDP group; dep: the DEP baseline on the same GPUs "
                 "(data-parallel attention, expert-parallel MoE with all-to-all)")
      ->check(CLI::IsMember({"dwdp", "dep"}))
      ->capture_default_str();
  cmd.add_option("--ep-size", request.ep_size,
                 "dep: ranks of the expert-parallel group (default: dwdp.dwdp_size); must divide "
                 "the experts");
  cmd.add_option("--tokens-cv", request.tokens_cv,
                 "dep: coefficient of variation of per-rank token counts (default: "
                 "workload.tokens_cv)");
  cmd.add_option("--forwards", request.forwards, "Forwards to run (default: the scenario's)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  cmd.add_option("--trace", request.trace_path, "Write a Chrome trace (Perfetto) JSON file");
  cmd.add_option("--inject", flags.inject, "Plant a fault that the run must catch")
      ->check(CLI::IsMember(
          {"none", "free-at-bind", "skip-ready-wait", "bad-copy-offset", "partial-map"}))
      ->capture_default_str();
  cmd.add_option("--hardware", request.hardware,
                 "Hardware preset or profile file (overrides the scenario's)");
  cmd.add_option("--contention", flags.contention, "Copy schedule (overrides the scenario's)")
      ->check(CLI::IsMember({"rotate", "ascending", "round_robin"}));
  cmd.add_option("--num-buffers", request.num_buffers, "Pool slots k (overrides the scenario's)")
      ->check(CLI::Range(int64_t{2}, int64_t{64}));
  cmd.add_option("--layer-compute-ns", request.layer_compute_ns,
                 "Compute time of every MoE layer in ns (overrides the perf model)")
      ->check(CLI::Range(0.0, 1e12));
  cmd.add_flag("--no-gpu-timing", flags.no_gpu_timing,
               "cuda: no events around each operation (measures host costs alone)");
  cmd.add_flag("--align-forwards", request.align_forwards,
               "barrier of the group's ranks before each forward, to measure schedules with "
               "aligned ranks (diagnostic; DWDP never synchronises ranks at run time)");
  cmd.add_flag("--all-ranks", request.all_ranks, "Per-layer tables for every rank");
  cmd.add_flag("--no-hazards", flags.no_hazards,
               "sim: timing mode without the race checker (faster for long runs)");
  flags.seed_option =
      cmd.add_option("--seed", flags.seed,
                     "sim: seed of the fabric's random shares (profiles with "
                     "fabric_share_spread); other seeds show how far apart runs of the machine "
                     "may be")
          ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 62))
          ->capture_default_str();
  flags.timeout_option =
      cmd.add_option("--timeout", flags.timeout_s,
                     "cuda: seconds to wait for a peer during setup and in any collective "
                     "before failing")
          ->check(CLI::Range(0.1, 86400.0))
          ->capture_default_str();
  AddFormatOption(cmd, flags.format);
}

absl::StatusOr<RunRequest> RunFlags::ToRequest() const {
  RunRequest out = request;
  out.mode = mode == "functional" ? RunMode::kFunctional : RunMode::kTiming;
  out.baseline = baseline == "dep" ? RunBaseline::kDep : RunBaseline::kDwdp;
  if (!contention.empty()) {
    out.contention = contention == "ascending"     ? ContentionMode::kAscending
                     : contention == "round_robin" ? ContentionMode::kRoundRobin
                                                   : ContentionMode::kRotate;
  }
  // Backend-specific options are set only when given, so a backend without them can refuse.
  if (no_hazards) out.check_hazards = false;
  if (no_gpu_timing) out.gpu_timing = false;
  if (seed_option != nullptr && seed_option->count() > 0) out.seed = seed;
  if (timeout_option != nullptr && timeout_option->count() > 0) out.timeout_s = timeout_s;
  absl::StatusOr<Fault> fault = ParseFault(inject);
  if (!fault.ok()) return fault.status();
  out.fault = *fault;
  return out;
}

}  // namespace dwdp::cli
