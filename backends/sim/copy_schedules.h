#pragma once

// The copy-schedule microbenchmark of `dwdp calibrate` (DWDP_SPEC §4), replayed in the
// simulator: every rank pulls `bytes_per_peer` from each of its peers at once, in one of the
// orders of CopySchedule. Calibration fits profile terms by matching these replays to the GPU
// runs and prints how well the written profile predicts each schedule; the engine tests check
// the model's ordering of the schedules with it.

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/calibrate/copy_schedule.h"
#include "core/config/scenario.h"

namespace dwdp::sim {

// The critical path in ns: the time the slowest rank needs from the start of its first copy to
// the end of its last one, as calibrate measures it. On GPUs each rank queues its copies
// behind a gate kernel, so the host's issue cost is not on that path; the replay leaves out
// host_issue_ns and event_ns for the same reason. Round robin copies `piece_bytes` at a time
// and, like calibrate, drops a remainder smaller than one piece; the other schedules ignore
// `piece_bytes`. Fails (InvalidArgument) for fewer than 2 ranks or zero sizes, and with the
// simulator's reason when the profile cannot be simulated.
absl::StatusOr<double> SimulateCopySchedule(const HardwareProfile& profile, int64_t ranks,
                                            CopySchedule schedule, uint64_t bytes_per_peer,
                                            uint64_t piece_bytes);

}  // namespace dwdp::sim
