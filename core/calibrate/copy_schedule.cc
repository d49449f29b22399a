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

}  // namespace dwdp
