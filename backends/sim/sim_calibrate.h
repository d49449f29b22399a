#pragma once

// `dwdp calibrate --backend sim`: the calibration's measurements (core/calibrate/measure.h) on
// a simulated machine, every rank on its own thread of one process (SimThreads). Calibrating
// the simulator against its own profile shows what the measurements recover of the numbers it
// was given, and what they cannot see.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/calibrate/measure.h"
#include "core/calibrate/raw.h"
#include "core/config/scenario.h"

namespace dwdp::sim {

struct SimCalibrationOptions {
  int64_t ranks = 2;
  // What to measure. The GPUs' memory is the profile's hbm_bytes; a MoE launch runs for
  // measure.moe_duration_ns (the simulator has no MoE kernel of its own).
  MeasureOptions measure;
  std::string base;  // recorded in the raw file's machine record (`--base`)
  // Race checking of every operation: slower, and the phases are written not to race.
  bool check_hazards = false;
  uint64_t seed = 1;  // of the fabric's random shares (fabric_share_spread)
};

// How long the simulator runs a MoE launch when the caller gives no duration: the perf model's
// roofline time of the routed-MoE layer (RoutedMoeCost, BF16 experts) on `profile`, the time
// `dwdp run --backend sim` gives a layer without a measured table.
double MoeRooflineNs(const HardwareProfile& profile, const MoeKernel& kernel);

// The raw record rank 0 gathers, as the GPU run would write it with --raw. Its `measured_on`
// names the simulator and the profile (no date, so the same profile gives the same file). Fails
// when the profile cannot be simulated or a rank's measurements failed (the error names it).
absl::StatusOr<CalibrationRaw> MeasureOnSimulator(const HardwareProfile& profile,
                                                  const SimCalibrationOptions& options);

}  // namespace dwdp::sim
