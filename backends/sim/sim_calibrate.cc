#include "backends/sim/sim_calibrate.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/sim/sim_threads.h"
#include "backends/sim/sim_world.h"
#include "core/perf/perf_model.h"

namespace dwdp::sim {

double MoeRooflineNs(const HardwareProfile& profile, const MoeKernel& kernel) {
  ModelSpec model;
  model.hidden_size = kernel.hidden;
  model.moe_intermediate_size = kernel.intermediate;
  model.num_experts = kernel.num_experts;
  model.top_k = kernel.top_k;
  model.expert_dtype = DType::kBf16;
  const double tokens = static_cast<double>(kernel.tokens);
  return RoutedMoeCost(model, profile, tokens * static_cast<double>(kernel.top_k),
                       ExpectedActiveExperts(kernel.num_experts, kernel.top_k, tokens))
      .time_ns;
}

absl::StatusOr<CalibrationRaw> MeasureOnSimulator(const HardwareProfile& profile,
                                                  const SimCalibrationOptions& options) {
  if (options.ranks < (options.measure.only_compute ? 1 : 2)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "calibrate measures copies between GPUs and needs at least 2 ranks, got %d (only the "
        "MoE compute phase runs on one)",
        options.ranks));
  }
  SimOptions world_options;
  world_options.check_hazards = options.check_hazards;
  world_options.seed = options.seed;
  world_options.record_timeline = true;  // the phases read their timings from it
  absl::StatusOr<std::unique_ptr<SimWorld>> created =
      SimWorld::Create(profile, options.ranks, world_options);
  if (!created.ok()) return created.status();
  SimWorld& world = **created;
  SimThreads threads(world);

  RawMachine machine;
  machine.base = options.base;
  machine.gpu_name = profile.gpu_name.empty() ? profile.name : profile.gpu_name;
  machine.gpus = options.ranks;
  machine.device_memory_bytes = profile.hbm_bytes.value;
  machine.granularity = static_cast<double>(world.driver(0).granularity());
  machine.handle_kind = HandleKindName(world.driver(0).shareable_kind());
  machine.repetitions = options.measure.repetitions;
  machine.buffer_bytes =
      static_cast<double>(CalibrationBufferSizes(world.driver(0).granularity(),
                                                 options.measure.max_bytes, options.ranks)
                              .src_bytes);
  CalibrationRaw header;
  header.measured_on = absl::StrFormat("the simulator of '%s' ×%d", profile.name, options.ranks);
  header.only = options.measure.only_compute    ? kOnlyCompute
                : options.measure.only_prefetch ? kOnlyPrefetch
                                                : "";
  header.machine = machine;
  MeasureOptions measure = options.measure;
  measure.device_memory_bytes = static_cast<uint64_t>(std::max(0.0, profile.hbm_bytes.value));
  if (!measure.moe_duration_ns) {
    measure.moe_duration_ns = [&profile](const MoeKernel& k) { return MoeRooflineNs(profile, k); };
    if (measure.moe_kernel.empty()) measure.moe_kernel = "simulated: the perf model's roofline";
  }
  if (measure.moe_kernel.empty()) measure.moe_kernel = "simulated";

  std::optional<CalibrationRaw> raw;
  absl::Status gather_error;
  const SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    MeasureContext context{
        world.driver(rank), threads.comm(rank), threads.exchange(rank),
        [&threads, rank](bool timing) -> absl::StatusOr<std::unique_ptr<Streams>> {
          return threads.NewStreams(rank, timing);
        },
        [&threads, rank] { return threads.host_now_ns(rank); }};
    absl::StatusOr<RawRank> measured = RawRank{};
    if (absl::Status s = WarmUpDriver(context); !s.ok()) {
      measured = absl::Status(s.code(), absl::StrCat("driver warm-up: ", s.message()));
    } else {
      measured = MeasureRank(context, measure);
    }
    if (measured.ok()) measured->hostname = "simulator";  // one host: clocks compare
    absl::StatusOr<std::optional<CalibrationRaw>> gathered =
        GatherCalibrationRaw(threads.comm(rank), measured, header);
    if (rank == 0) {
      if (gathered.ok()) {
        raw = *std::move(*gathered);
      } else {
        gather_error = gathered.status();
      }
    }
    return measured.status();
  });
  if (absl::Status s = outcome.first_error(); !s.ok()) return s;
  if (!gather_error.ok()) return gather_error;
  // What the GPU run checks through device memory, the simulator knows exactly.
  if (const LeakReport leaks = world.leak_report(); !leaks.empty()) {
    return absl::InternalError(
        absl::StrCat("the calibration's teardown left resources alive: ", leaks.ToString()));
  }
  if (!world.hazards().empty()) {
    return absl::InternalError(
        absl::StrCat("the calibration's phases race: ", world.hazards().front().ToString()));
  }
  if (!raw) return absl::InternalError("rank 0 gathered no measurements");
  return *std::move(raw);
}

}  // namespace dwdp::sim
