#pragma once

// The copy schedules of DWDP_SPEC §4 as `dwdp calibrate` times them on GPUs and the simulator
// replays them (backends/sim/copy_schedules.h): every rank pulls the same bytes from every
// peer at once, in one of four orders.

#include <optional>
#include <string_view>

namespace dwdp {

enum class CopySchedule {
  kRotate,             // one stream, peers in the order rank+1, rank+2, ... (a Latin square)
  kAscending,          // one stream, peers in rank order (everyone starts at rank 0)
  kConcurrentStreams,  // one stream per peer, all at once
  // One stream, a piece of every peer in turn, peers in rotate order within a round: what
  // calibrate times.
  kRoundRobinPieces,
  // The same with peers in rank order within a round, as the pipeline's round_robin contention
  // mode (TensorRT-LLM's) interleaves them; every round starts on the same GPU, so it is the
  // slower of the two. Calibrate does not time it.
  kRoundRobinPiecesAscending,
};

// The schedules calibrate times, in the order its tables show them.
inline constexpr CopySchedule kCopySchedules[] = {CopySchedule::kRotate, CopySchedule::kAscending,
                                                  CopySchedule::kConcurrentStreams,
                                                  CopySchedule::kRoundRobinPieces};

// The name in the raw file and the tables: "rotate", "ascending", "concurrent streams",
// "round_robin pieces" (and "round_robin pieces ascending").
const char* CopyScheduleName(CopySchedule schedule);
std::optional<CopySchedule> CopyScheduleFromName(std::string_view name);

}  // namespace dwdp
