#include "backends/sim/sim_hazard.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/sim/sim_driver.h"
#include "core/util/bytes.h"

namespace dwdp::sim {

uint32_t VectorClock::Tick(size_t component) {
  if (component >= clocks_.size()) clocks_.resize(component + 1, 0);
  return ++clocks_[component];
}

void VectorClock::Join(const VectorClock& other) {
  if (other.clocks_.size() > clocks_.size()) clocks_.resize(other.clocks_.size(), 0);
  for (size_t i = 0; i < other.clocks_.size(); ++i) {
    clocks_[i] = std::max(clocks_[i], other.clocks_[i]);
  }
}

const char* HazardKindName(HazardKind kind) {
  switch (kind) {
    case HazardKind::kReadAfterWrite:
      return "read-after-write";
    case HazardKind::kWriteAfterRead:
      return "write-after-read";
    case HazardKind::kWriteAfterWrite:
      return "write-after-write";
  }
  return "?";
}

std::string AccessOp::Describe() const {
  std::string what;
  switch (type) {
    case AccessOpType::kCopy:
      what =
          absl::StrFormat("copy %s <- %s (%s)", FormatVa(dst), FormatVa(src), FormatBytes(bytes));
      break;
    case AccessOpType::kFill:
      what = absl::StrFormat("fill %s (%s)", FormatVa(dst), FormatBytes(bytes));
      break;
    case AccessOpType::kKernel:
      what = absl::StrFormat("kernel '%s'", kernel);
      break;
  }
  const std::string tag_text = FormatOpTag(tag);
  if (!tag_text.empty()) absl::StrAppend(&what, " [", tag_text, "]");
  return what;
}

std::string Hazard::ToString() const {
  const auto side = [](const HazardAccess& a) {
    return absl::StrFormat("%s on rank %d stream %d '%s' %s VA %s", a.op, a.rank, a.stream,
                           a.stream_name, a.access == AccessKind::kWrite ? "writes" : "reads",
                           FormatVa(a.va));
  };
  return absl::StrFormat(
      "%s race on bytes [%d, %d) of allocation %d (GPU %d; %s overlap in all): %s, then %s, "
      "with no event edge ordering them",
      HazardKindName(kind), begin, end, allocation, owner_gpu, FormatBytes(overlap_bytes),
      side(first), side(second));
}

size_t HazardChecker::history_size() const {
  size_t total = 0;
  for (const std::vector<ShadowRange>& ranges : shadows_) {
    for (const ShadowRange& range : ranges) total += (range.write.op ? 1 : 0) + range.reads.size();
  }
  return total;
}

void HazardChecker::Access(uint64_t allocation, int64_t owner_gpu, uint64_t begin, uint64_t end,
                           AccessKind kind, const AccessRef& op, const VectorClock& clock,
                           DevPtr va_of_begin) {
  if (begin >= end) return;
  const Current current{allocation, owner_gpu, kind,
                        &op,        &clock,    static_cast<int64_t>(va_of_begin - begin)};
  if (allocation >= shadows_.size()) shadows_.resize(allocation + 1);
  std::vector<ShadowRange>& ranges = shadows_[allocation];
  // The first range that ends after `begin`.
  const size_t first = static_cast<size_t>(
      std::partition_point(ranges.begin(), ranges.end(),
                           [begin](const ShadowRange& range) { return range.end <= begin; }) -
      ranges.begin());

  // Fast path, the common case: the access covers exactly one existing range (a whole pool
  // page written by one copy and read by one kernel, a peer's whole local range).
  if (first < ranges.size() && ranges[first].begin == begin && ranges[first].end == end) {
    Apply(ranges[first], current);
    return;
  }

  // Rebuild the sorted, disjoint range list: untouched prefix, the accessed window split at
  // its edges (gaps become fresh ranges), untouched suffix. Neighbours with equal state merge.
  scratch_.clear();
  size_t i = 0;
  for (; i < first; ++i) Append(std::move(ranges[i]));
  uint64_t cursor = begin;
  for (; i < ranges.size() && ranges[i].begin < end; ++i) {
    ShadowRange& range = ranges[i];
    if (range.begin < cursor) {
      ShadowRange left = range;
      left.end = cursor;
      Append(std::move(left));
      range.begin = cursor;
    }
    if (cursor < range.begin) {
      ShadowRange fresh{cursor, range.begin, {}, {}};
      Apply(fresh, current);
      Append(std::move(fresh));
    }
    if (range.end > end) {
      ShadowRange middle = range;
      middle.end = end;
      Apply(middle, current);
      Append(std::move(middle));
      range.begin = end;
      Append(std::move(range));
      cursor = end;
    } else {
      cursor = range.end;
      Apply(range, current);
      Append(std::move(range));
    }
  }
  if (cursor < end) {
    ShadowRange fresh{cursor, end, {}, {}};
    Apply(fresh, current);
    Append(std::move(fresh));
  }
  for (; i < ranges.size(); ++i) Append(std::move(ranges[i]));
  ranges.swap(scratch_);
}

void HazardChecker::Append(ShadowRange range) {
  if (!scratch_.empty()) {
    ShadowRange& last = scratch_.back();
    if (last.end == range.begin && last.write == range.write && last.reads == range.reads) {
      last.end = range.end;
      return;
    }
  }
  scratch_.push_back(std::move(range));
}

void HazardChecker::Apply(ShadowRange& range, const Current& current) {
  const VectorClock& clock = *current.clock;
  const auto ordered_before = [&clock](const Accessor& prior) {
    return clock.get(prior.op->component) >= prior.op->clock;
  };
  if (current.kind == AccessKind::kWrite) {
    if (range.write.op && !ordered_before(range.write)) {
      Report(HazardKind::kWriteAfterWrite, range.write, AccessKind::kWrite, current, range.begin,
             range.end);
    }
    for (const Accessor& read : range.reads) {
      if (!ordered_before(read)) {
        Report(HazardKind::kWriteAfterRead, read, AccessKind::kRead, current, range.begin,
               range.end);
      }
    }
    range.write = Accessor{*current.op, current.va_shift};
    range.reads.clear();
    return;
  }
  if (range.write.op && !ordered_before(range.write)) {
    Report(HazardKind::kReadAfterWrite, range.write, AccessKind::kWrite, current, range.begin,
           range.end);
  }
  // A read ordered before this one adds nothing: any later write unordered with it is
  // unordered with this read too, which is then reported instead.
  range.reads.erase(std::remove_if(range.reads.begin(), range.reads.end(), ordered_before),
                    range.reads.end());
  range.reads.push_back(Accessor{*current.op, current.va_shift});
}

void HazardChecker::Report(HazardKind kind, const Accessor& first, AccessKind first_kind,
                           const Current& current, uint64_t begin, uint64_t end) {
  const AccessOp& a = *first.op;
  const AccessOp& b = **current.op;
  const auto key = std::make_pair(a.seq, b.seq);
  if (auto it = reported_.find(key); it != reported_.end()) {
    hazards_[it->second].overlap_bytes += end - begin;
    return;
  }
  if (hazards_.size() >= max_reports_) {
    ++dropped_;
    return;
  }
  const auto side = [](const AccessOp& op, AccessKind access, DevPtr va) {
    HazardAccess out;
    out.rank = op.rank;
    out.stream = op.stream;
    out.stream_name = op.stream_name != nullptr ? *op.stream_name : "";
    out.access = access;
    out.tag = op.tag;
    out.op = op.Describe();
    out.va = va;
    return out;
  };
  Hazard hazard;
  hazard.kind = kind;
  hazard.first = side(a, first_kind, static_cast<DevPtr>(begin + first.va_shift));
  hazard.second = side(b, current.kind, static_cast<DevPtr>(begin + current.va_shift));
  hazard.allocation = current.allocation;
  hazard.owner_gpu = current.owner_gpu;
  hazard.begin = begin;
  hazard.end = end;
  hazard.overlap_bytes = end - begin;
  reported_.emplace(key, hazards_.size());
  hazards_.push_back(std::move(hazard));
}

}  // namespace dwdp::sim
