#include "backends/sim/copy_schedules.h"

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/sim/sim_world.h"
#include "core/layout/copy_order.h"

namespace dwdp::sim {
namespace {

// Maps all `bytes` of `handle` at a fresh reservation and grants access.
absl::StatusOr<DevPtr> MapWhole(SimDriver& driver, Handle handle, uint64_t bytes) {
  absl::StatusOr<DevPtr> va = driver.Reserve(bytes, 0);
  if (!va.ok()) return va.status();
  if (absl::Status s = driver.Map(*va, bytes, handle, 0); !s.ok()) return s;
  if (absl::Status s = driver.SetAccess(*va, bytes); !s.ok()) return s;
  return *va;
}

}  // namespace

absl::StatusOr<double> SimulateCopySchedule(const HardwareProfile& profile, int64_t ranks,
                                            CopySchedule schedule, uint64_t bytes_per_peer,
                                            uint64_t piece_bytes) {
  const std::string what = absl::StrFormat("simulate the '%s' copy schedule of %d ranks",
                                           CopyScheduleName(schedule), ranks);
  if (ranks < 2 || bytes_per_peer == 0 || piece_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: needs at least 2 ranks and non-zero sizes (%d bytes per peer, "
                        "pieces of %d)",
                        what, bytes_per_peer, piece_bytes));
  }
  const auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  };
  HardwareProfile replayed = profile;
  replayed.host_issue_ns = {0, replayed.host_issue_ns.source};
  replayed.event_ns = {0, replayed.event_ns.source};
  SimOptions options;
  options.check_hazards = false;
  options.record_timeline = false;
  absl::StatusOr<std::unique_ptr<SimWorld>> created = SimWorld::Create(replayed, ranks, options);
  if (!created.ok()) return fail(created.status());
  SimWorld& world = **created;
  const uint64_t g = static_cast<uint64_t>(replayed.granularity.value);
  const auto round_up = [g](uint64_t bytes) { return (bytes + g - 1) / g * g; };

  // Every rank's source, exported once and imported by every peer.
  std::vector<SharedHandle> shared;
  for (int64_t r = 0; r < ranks; ++r) {
    SimDriver& driver = world.driver(r);
    absl::StatusOr<Handle> source = driver.Create(round_up(bytes_per_peer), HandleKind::kPosixFd);
    if (!source.ok()) return fail(source.status());
    absl::StatusOr<SharedHandle> exported = driver.Export(*source);
    if (!exported.ok()) return fail(exported.status());
    shared.push_back(*std::move(exported));
  }
  for (int64_t r = 0; r < ranks; ++r) {
    SimDriver& driver = world.driver(r);
    absl::StatusOr<Handle> dst_handle = driver.Create(
        round_up(static_cast<uint64_t>(ranks - 1) * bytes_per_peer), HandleKind::kNone);
    if (!dst_handle.ok()) return fail(dst_handle.status());
    absl::StatusOr<DevPtr> dst =
        MapWhole(driver, *dst_handle, round_up(static_cast<uint64_t>(ranks - 1) * bytes_per_peer));
    if (!dst.ok()) return fail(dst.status());
    std::vector<DevPtr> view(ranks, 0);
    for (int64_t p = 0; p < ranks; ++p) {
      if (p == r) continue;
      absl::StatusOr<Handle> imported = driver.Import(shared[p]);
      if (!imported.ok()) return fail(imported.status());
      absl::StatusOr<DevPtr> va = MapWhole(driver, *imported, round_up(bytes_per_peer));
      if (!va.ok()) return fail(va.status());
      view[p] = *va;
    }
    // Peer p's bytes land in the slot p has in rank order, as in calibrate.
    const auto slot = [&](int64_t p) {
      return *dst + static_cast<uint64_t>(PeerSlot(r, p)) * bytes_per_peer;
    };
    SimStreams& streams = world.streams(r);
    std::map<int, StreamId> stream_of;  // the schedule's stream index -> this rank's stream
    absl::Status status;
    for (const ScheduledCopy& c : ScheduleCopies(schedule, r, ranks, bytes_per_peer, piece_bytes)) {
      auto [it, added] = stream_of.emplace(c.stream, 0);
      if (added) {
        absl::StatusOr<StreamId> created =
            streams.CreateStream(absl::StrCat("schedule stream ", c.stream));
        if (!created.ok()) return fail(created.status());
        it->second = *created;
      }
      OpTag tag;
      tag.kind = OpKind::kCopy;
      tag.peer = c.peer;
      status =
          streams.Copy(slot(c.peer) + c.offset, view[c.peer] + c.offset, c.bytes, it->second, tag);
      if (!status.ok()) break;
    }
    if (!status.ok()) return fail(status);
  }
  if (absl::Status s = world.SynchronizeAll(); !s.ok()) return fail(s);
  // Every host issued everything at time 0 (no issue cost) and then waited for its streams:
  // its clock now reads its last completion.
  double critical = 0;
  for (int64_t r = 0; r < ranks; ++r) critical = std::max(critical, world.host_ns(r));
  return critical;
}

}  // namespace dwdp::sim
