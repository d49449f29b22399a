#pragma once

// Everything `dwdp run` can be asked, as one value with named fields and its defaults in one
// place, and the small table a backend fills in to run it (the way a transport is a table of
// functions in NCCL: the run path never knows which backend it drives).
//
// Options common to every backend are plain fields. Options only some backend understands are
// optional: unset means "the default", and a backend that does not understand an option that
// was set refuses the request with one sentence rather than run without it.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "core/config/scenario.h"
#include "core/pipeline/runtime.h"

namespace dwdp {

enum class RunMode { kTiming, kFunctional };
const char* RunModeName(RunMode mode);

// What runs: the DWDP group of the scenario, or the DEP baseline on the same GPUs
// (data-parallel attention, experts sharded over ep_size ranks, tokens moved by all-to-all;
// core/run/run_dep.h).
enum class RunBaseline { kDwdp, kDep };
const char* RunBaselineName(RunBaseline baseline);

// The options a backend may or may not understand (RunBackend::options).
enum RunOption : uint32_t {
  kRunOptionHazards = 1u << 0,        // check_hazards: the race checker (sim)
  kRunOptionSeed = 1u << 1,           // seed: the fabric's random shares (sim)
  kRunOptionTimeout = 1u << 2,        // timeout_s: bound on every wait for a peer (cuda)
  kRunOptionGpuTiming = 1u << 3,      // gpu_timing: events around every operation (cuda)
  kRunOptionAlignForwards = 1u << 4,  // align_forwards: a barrier before each forward
};

struct RunRequest {
  static constexpr double kDefaultTimeoutS = 60;
  static constexpr uint64_t kDefaultSeed = 1;

  std::string backend = "sim";
  RunMode mode = RunMode::kTiming;
  RunBaseline baseline = RunBaseline::kDwdp;
  // DEP only (--baseline dep): ranks of the expert-parallel group (default: dwdp.dwdp_size) and
  // the spread of per-rank token counts (default: workload.tokens_cv).
  std::optional<int64_t> ep_size;
  std::optional<double> tokens_cv;
  std::optional<int64_t> forwards;  // default: the scenario's workload.forwards
  Fault fault = Fault::kNone;
  // Overrides of the scenario (empty / unset: the scenario's).
  std::string hardware;  // a preset name or a profile file
  std::optional<ContentionMode> contention;
  std::optional<int64_t> num_buffers;
  std::optional<double> layer_compute_ns;
  // Diagnostic: every rank of the group meets before each forward, so schedules can be measured
  // with aligned starts (DWDP itself never synchronises ranks at run time).
  bool align_forwards = false;

  // Backend-specific (see RunOption).
  std::optional<bool> check_hazards;  // default true (functional mode always checks)
  std::optional<uint64_t> seed;       // default kDefaultSeed
  std::optional<double> timeout_s;    // default kDefaultTimeoutS
  std::optional<bool> gpu_timing;     // default true

  // Output.
  std::string trace_path;  // Chrome trace (Perfetto) JSON; empty: none
  bool all_ranks = false;  // per-layer text tables for every rank

  bool functional() const { return mode == RunMode::kFunctional; }
  bool hazards_or_default() const { return check_hazards.value_or(true) || functional(); }
  uint64_t seed_or_default() const { return seed.value_or(kDefaultSeed); }
  double timeout_or_default() const { return timeout_s.value_or(kDefaultTimeoutS); }
  bool gpu_timing_or_default() const { return gpu_timing.value_or(true); }
  // The options of RunOption that were set.
  uint32_t options_set() const;
};

// Applies the request's overrides (hardware, contention, slots, compute time, forwards) to a
// loaded scenario. Fails with one sentence when the hardware override cannot be resolved.
absl::Status ApplyOverrides(const RunRequest& request, Scenario& scenario);

// OK when the backend understands every option that was set; else one sentence naming the
// first option it does not ("--timeout applies to the cuda backend only; ...").
absl::Status CheckOptionsFor(const RunRequest& request, const std::string& backend,
                             uint32_t understood);

// The effective options of a run, as its JSON report records them under "options": what ran,
// defaults filled in. An option the backend does not understand is null ("not applicable").
nlohmann::json EffectiveOptionsJson(const RunRequest& request, const Scenario& scenario,
                                    uint32_t understood);

}  // namespace dwdp
