#include "core/run/run_request.h"

#include "absl/strings/str_cat.h"
#include "core/config/loader.h"

namespace dwdp {
namespace {

// The command-line spelling of each backend-specific option, for the refusal sentence.
struct OptionName {
  RunOption option;
  const char* flag;
};
constexpr OptionName kOptionFlags[] = {
    {kRunOptionHazards, "--no-hazards"},
    {kRunOptionSeed, "--seed"},
    {kRunOptionTimeout, "--timeout"},
    {kRunOptionGpuTiming, "--no-gpu-timing"},
    {kRunOptionAlignForwards, "--align-forwards"},
};

}  // namespace

const char* RunModeName(RunMode mode) {
  return mode == RunMode::kFunctional ? "functional" : "timing";
}

const char* RunBaselineName(RunBaseline baseline) {
  return baseline == RunBaseline::kDep ? "dep" : "dwdp";
}

uint32_t RunRequest::options_set() const {
  uint32_t set = 0;
  if (check_hazards.has_value()) set |= kRunOptionHazards;
  if (seed.has_value()) set |= kRunOptionSeed;
  if (timeout_s.has_value()) set |= kRunOptionTimeout;
  if (gpu_timing.has_value()) set |= kRunOptionGpuTiming;
  if (align_forwards) set |= kRunOptionAlignForwards;
  return set;
}

absl::Status ApplyOverrides(const RunRequest& request, Scenario& scenario) {
  if (!request.hardware.empty()) {
    absl::StatusOr<HardwareProfile> hardware = ResolveHardware(request.hardware);
    if (!hardware.ok()) return hardware.status();
    scenario.hardware = *std::move(hardware);
  }
  if (request.contention) scenario.dwdp.contention.mode = *request.contention;
  if (request.forwards) scenario.workload.forwards = *request.forwards;
  if (request.num_buffers) scenario.dwdp.num_buffers = *request.num_buffers;
  if (request.layer_compute_ns) scenario.workload.layer_compute_ns = *request.layer_compute_ns;
  return absl::OkStatus();
}

absl::Status CheckOptionsFor(const RunRequest& request, const std::string& backend,
                             uint32_t understood) {
  const uint32_t refused = request.options_set() & ~understood;
  for (const OptionName& o : kOptionFlags) {
    if ((refused & o.option) == 0) continue;
    return absl::InvalidArgumentError(
        absl::StrCat(o.flag, " does not apply to the ", backend,
                     " backend, which would run without it; leave it out or choose a backend "
                     "that has it"));
  }
  return absl::OkStatus();
}

nlohmann::json EffectiveOptionsJson(const RunRequest& request, const Scenario& scenario,
                                    uint32_t understood) {
  const auto applicable = [understood](RunOption option, nlohmann::json value) {
    return (understood & option) != 0 ? std::move(value) : nlohmann::json(nullptr);
  };
  return {
      {"backend", request.backend},
      {"baseline", RunBaselineName(request.baseline)},
      {"mode", RunModeName(request.mode)},
      {"forwards", scenario.workload.forwards},
      {"num_buffers", scenario.dwdp.num_buffers},
      {"schedule", ContentionModeName(scenario.dwdp.contention.mode)},
      {"slice_bytes", scenario.dwdp.contention.slice_bytes},
      {"hardware", scenario.hardware.name},
      {"layer_compute_ns", scenario.workload.layer_compute_ns
                               ? nlohmann::json(*scenario.workload.layer_compute_ns)
                               : nlohmann::json(nullptr)},
      {"fault", FaultName(request.fault)},
      {"align_forwards", applicable(kRunOptionAlignForwards, request.align_forwards)},
      {"hazards", applicable(kRunOptionHazards, request.hazards_or_default())},
      {"seed", applicable(kRunOptionSeed, request.seed_or_default())},
      {"timeout_s", applicable(kRunOptionTimeout, request.timeout_or_default())},
      {"gpu_timing", applicable(kRunOptionGpuTiming, request.gpu_timing_or_default())},
      {"trace",
       request.trace_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(request.trace_path)},
  };
}

}  // namespace dwdp
