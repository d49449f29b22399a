#pragma once

// From the raw measurements of `dwdp calibrate` (core/calibrate/raw.h) to the profile numbers
// and the summary it prints. A pure function of the raw record and the base profile, so the
// GPU run and `dwdp calibrate --from-raw` derive the same profile, and tests run it on saved
// files without GPUs.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "core/calibrate/calibration.h"
#include "core/calibrate/copy_schedule.h"
#include "core/calibrate/prefetch.h"
#include "core/calibrate/raw.h"
#include "core/config/scenario.h"

namespace dwdp {

// Replays one copy schedule in the simulator and returns its critical path in ns
// (sim::SimulateCopySchedule). Passed in because core knows no backend.
using CopyScheduleSimulator = std::function<absl::StatusOr<double>(
    const HardwareProfile& profile, int64_t ranks, CopySchedule schedule, uint64_t bytes_per_peer,
    uint64_t piece_bytes)>;

// A schedule's critical path (slowest rank) on the GPUs and in the simulator.
struct ScheduleFit {
  double measured_ns = 0;   // median over the repetitions
  double simulated_ns = 0;  // with the written profile; 0 when not simulated
  double ideal_ns = 0;      // every peer in turn at the single-pair fit
};

struct CalibrationDerivation {
  CalibrationMeasurements m;
  std::string gpu_name;  // as the driver reported it; empty when the raw file does not say
  std::string measured_on;
  // What the new copy-model terms came from, for the summary and the tests.
  double fabric_rate = 0;                 // bytes/s per GPU pulling from all peers at once
  std::optional<bool> egress_from_union;  // set when egress_bw was measured
  // Round robin pieces simulated with the whole per-copy cost off the path (0) and on it (1).
  double round_robin_at_on_link_0_ns = 0;
  double round_robin_at_on_link_1_ns = 0;
  std::map<CopySchedule, ScheduleFit> schedules;
  // The prefetch rotation (`--only prefetch`), one summary per way of starting, in run order,
  // and the fan-out fit of its free runs (unset when no copy shared its source long enough).
  std::vector<PrefetchRunSummary> prefetch;
  std::optional<FanoutFit> fanout;
  // The summary as calibrate prints it: header, the profile table, the details, notes and
  // warnings (one per line, prefixed "note: " / "warning: ").
  std::string report;
  std::vector<std::string> notes;                     // a number taken from a fallback, and why
  std::vector<std::string> warnings;                  // something in the measurements looks wrong
  nlohmann::json summary = nlohmann::json::object();  // the fits, kept in the raw file
};

// The name `dwdp calibrate` used for --base when the raw file does not record it.
inline constexpr char kDefaultCalibrationBase[] = "h100-sxm";

// Fits and summarises the raw measurements against `base` (the profile of the unmeasured
// numbers). `simulate` may be empty: then copy_latency_on_link is not fitted and the schedules
// are not compared with the simulator (both said in a note). Fails only when the single-pair
// fit fails or the simulator refuses the profile.
absl::StatusOr<CalibrationDerivation> DeriveCalibration(const CalibrationRaw& raw,
                                                        const HardwareProfile& base,
                                                        const CopyScheduleSimulator& simulate);

}  // namespace dwdp
