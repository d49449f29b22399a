#pragma once

// The copy schedules of DWDP_SPEC §4 as `dwdp calibrate` times them on GPUs and the simulator
// replays them (backends/sim/copy_schedules.h): every rank pulls the same bytes from every
// peer at once, in one of four orders. Both build their copies with ScheduleCopies, so the
// replay runs exactly what was timed.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/layout/copy_order.h"

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

// The order in which a rank visits its peers in the schedule.
PeerOrderKind CopySchedulePeerOrder(CopySchedule schedule);

// One copy of a schedule: `bytes` from byte `offset` of `peer`'s buffer into the same offset
// of the rank's destination region for that peer (region PeerSlot(rank, peer), each
// bytes_per_peer long), on the rank's `stream`-th stream.
struct ScheduledCopy {
  int stream = 0;
  int64_t peer = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  friend bool operator==(const ScheduledCopy&, const ScheduledCopy&) = default;
};

// Every copy of `rank` in `schedule`, in issue order. The one-stream schedules use stream 0;
// concurrent streams gives peer p stream PeerSlot(rank, p). The round robin schedules copy
// `piece_bytes` at a time and drop a remainder smaller than one piece; the others ignore it.
// Empty for fewer than 2 ranks or zero sizes.
std::vector<ScheduledCopy> ScheduleCopies(CopySchedule schedule, int64_t rank, int64_t ranks,
                                          uint64_t bytes_per_peer, uint64_t piece_bytes);

}  // namespace dwdp
