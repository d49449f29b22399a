#include "core/calibrate/copy_schedule.h"

namespace dwdp {

const char* CopyScheduleName(CopySchedule schedule) {
  switch (schedule) {
    case CopySchedule::kRotate:
      return "rotate";
    case CopySchedule::kAscending:
      return "ascending";
    case CopySchedule::kConcurrentStreams:
      return "concurrent streams";
    case CopySchedule::kRoundRobinPieces:
      return "round_robin pieces";
    case CopySchedule::kRoundRobinPiecesAscending:
      return "round_robin pieces ascending";
  }
  return "?";
}

std::optional<CopySchedule> CopyScheduleFromName(std::string_view name) {
  for (CopySchedule s :
       {CopySchedule::kRotate, CopySchedule::kAscending, CopySchedule::kConcurrentStreams,
        CopySchedule::kRoundRobinPieces, CopySchedule::kRoundRobinPiecesAscending}) {
    if (name == CopyScheduleName(s)) return s;
  }
  return std::nullopt;
}

PeerOrderKind CopySchedulePeerOrder(CopySchedule schedule) {
  switch (schedule) {
    case CopySchedule::kRotate:
    case CopySchedule::kRoundRobinPieces:
      return PeerOrderKind::kRotate;
    case CopySchedule::kAscending:
    case CopySchedule::kConcurrentStreams:
    case CopySchedule::kRoundRobinPiecesAscending:
      return PeerOrderKind::kAscending;
  }
  return PeerOrderKind::kRotate;
}

std::vector<ScheduledCopy> ScheduleCopies(CopySchedule schedule, int64_t rank, int64_t ranks,
                                          uint64_t bytes_per_peer, uint64_t piece_bytes) {
  std::vector<ScheduledCopy> copies;
  if (ranks < 2 || bytes_per_peer == 0) return copies;
  const std::vector<int64_t> peers = PeerOrder(rank, ranks, CopySchedulePeerOrder(schedule));
  switch (schedule) {
    case CopySchedule::kRotate:
    case CopySchedule::kAscending:
      for (int64_t p : peers) copies.push_back({0, p, 0, bytes_per_peer});
      break;
    case CopySchedule::kConcurrentStreams:
      for (int64_t p : peers) {
        copies.push_back({static_cast<int>(PeerSlot(rank, p)), p, 0, bytes_per_peer});
      }
      break;
    case CopySchedule::kRoundRobinPieces:
    case CopySchedule::kRoundRobinPiecesAscending:
      if (piece_bytes == 0) return copies;
      for (uint64_t offset = 0; offset + piece_bytes <= bytes_per_peer; offset += piece_bytes) {
        for (int64_t p : peers) copies.push_back({0, p, offset, piece_bytes});
      }
      break;
  }
  return copies;
}

}  // namespace dwdp
