#include "core/calibrate/measure.h"

#include <algorithm>
#include <map>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/calibrate/copy_schedule.h"
#include "core/calibrate/fit.h"
#include "core/calibrate/prefetch.h"
#include "core/layout/copy_order.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

absl::Status WithContext(const absl::Status& s, const std::string& what, uint64_t bytes) {
  return absl::Status(s.code(), absl::StrCat(what, " (", FormatBytes(bytes), "): ", s.message()));
}

absl::Status Prefixed(const absl::Status& s, absl::string_view what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

CalibrationSizes CalibrationBufferSizes(uint64_t granularity, uint64_t max_bytes, int64_t ranks) {
  CalibrationSizes sizes;
  const uint64_t g = std::max<uint64_t>(granularity, 1);
  sizes.src_bytes = std::max(g, AlignDown(max_bytes, g));
  sizes.per_peer_bytes = std::max(g, AlignDown(sizes.src_bytes / 2, g));
  sizes.dst_bytes =
      std::max(sizes.src_bytes,
               sizes.per_peer_bytes * static_cast<uint64_t>(std::max<int64_t>(1, ranks - 1)));
  return sizes;
}

// ---------------------------------------------------------------------------------------------
// Buffers.

absl::StatusOr<std::unique_ptr<CalibrationBuffers>> CalibrationBuffers::Setup(
    const MeasureContext& c, uint64_t src_bytes, uint64_t dst_bytes) {
  auto buffers = std::unique_ptr<CalibrationBuffers>(new CalibrationBuffers(c.driver));
  CalibrationBuffers& b = *buffers;
  const int64_t rank = c.rank(), size = c.size();
  b.peer_va_.assign(size, 0);
  Driver& drv = c.driver;
  absl::StatusOr<Handle> src = drv.Create(src_bytes, drv.shareable_kind());
  if (!src.ok()) return WithContext(src.status(), "create the shareable source buffer", src_bytes);
  b.pieces_.push_back({*src, true});
  absl::StatusOr<SharedHandle> shared = drv.Export(*src);
  if (!shared.ok()) return WithContext(shared.status(), "export the source buffer", src_bytes);
  if (absl::Status s = b.MapWhole(*src, src_bytes); !s.ok()) {
    return WithContext(s, "map the source buffer locally", src_bytes);
  }
  b.src_va_ = b.pieces_.back().va;
  absl::StatusOr<Handle> dst = drv.Create(dst_bytes, HandleKind::kNone);
  if (!dst.ok()) return WithContext(dst.status(), "create the destination buffer", dst_bytes);
  b.pieces_.push_back({*dst, true});
  if (absl::Status s = b.MapWhole(*dst, dst_bytes); !s.ok()) {
    return WithContext(s, "map the destination buffer", dst_bytes);
  }
  b.dst_va_ = b.pieces_.back().va;
  b.src_bytes_ = src_bytes;
  b.dst_bytes_ = dst_bytes;

  std::vector<std::vector<SharedHandle>> exported(1);
  exported[0].push_back(*std::move(shared));
  auto received = c.exchange.Exchange(std::move(exported));
  if (!received.ok()) {
    return Prefixed(received.status(), "exchange the source buffers' handles with every rank");
  }
  if (received->size() != 1 || static_cast<int64_t>((*received)[0].size()) != size) {
    return absl::InternalError("the handle exchange returned the wrong number of ranks");
  }
  for (int64_t peer = 0; peer < size; ++peer) {
    if (peer == rank) continue;
    if ((*received)[0][peer].size() != 1) {
      return absl::InternalError(absl::StrFormat("rank %d sent %d handles, expected 1", peer,
                                                 (*received)[0][peer].size()));
    }
    const SharedHandle& h = (*received)[0][peer][0];
    absl::StatusOr<Handle> imported = drv.Import(h);
    if (!imported.ok()) {
      return WithContext(imported.status(), absl::StrCat("import rank ", peer, "'s buffer"),
                         h.bytes());
    }
    b.pieces_.push_back({*imported, true});
    if (absl::Status s = b.MapWhole(*imported, h.bytes()); !s.ok()) {
      return WithContext(s, absl::StrCat("map rank ", peer, "'s buffer"), h.bytes());
    }
    b.peer_va_[peer] = b.pieces_.back().va;
    if (h.bytes() < src_bytes) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "rank %d's buffer is %s, this rank's %s: every rank must run with the same "
          "--max-bytes",
          peer, FormatBytes(h.bytes()), FormatBytes(src_bytes)));
    }
  }
  // Every rank has imported every handle before the exported fds (kept in `received`) close.
  if (absl::Status s = c.exchange.Barrier(); !s.ok()) {
    return Prefixed(s, "barrier after importing the peers' buffers");
  }
  return buffers;
}

absl::Status CalibrationBuffers::Teardown() {
  absl::Status first;
  for (auto it = pieces_.rbegin(); it != pieces_.rend(); ++it) {
    Piece& p = *it;
    if (p.mapped) {
      first.Update(driver_.Unmap(p.va, p.bytes));
      p.mapped = false;
    }
    if (p.va != 0) {
      first.Update(driver_.Free(p.va, p.bytes));
      p.va = 0;
    }
    if (p.has_handle) {
      first.Update(driver_.Release(p.handle));
      p.has_handle = false;
    }
  }
  pieces_.clear();
  return first;
}

// Reserves a VA range for the last piece's whole handle, maps it and grants access.
absl::Status CalibrationBuffers::MapWhole(Handle handle, uint64_t bytes) {
  Piece& p = pieces_.back();
  const uint64_t g = driver_.granularity();
  absl::StatusOr<DevPtr> va = driver_.Reserve(bytes, g);
  if (!va.ok()) return va.status();
  p.va = *va;
  p.bytes = bytes;
  if (absl::Status s = driver_.Map(*va, bytes, handle, 0); !s.ok()) return s;
  p.mapped = true;
  return driver_.SetAccess(*va, bytes);
}

// ---------------------------------------------------------------------------------------------
// The phase runner.

double PhaseOutcome::span_ns() const {
  if (jobs.empty()) return 0;
  double start = jobs.front().start_ns, end = jobs.front().end_ns;
  for (const JobTiming& j : jobs) {
    start = std::min(start, j.start_ns);
    end = std::max(end, j.end_ns);
  }
  return end - start;
}

double GateNs(size_t jobs, size_t moe_jobs) {
  return std::clamp(
      200e3 + 25e3 * static_cast<double>(jobs) + 500e3 * static_cast<double>(moe_jobs), 300e3,
      100e6);
}

absl::StatusOr<PhaseOutcome> RunPhase(const MeasureContext& c, const std::string& name,
                                      const std::vector<Job>& jobs) {
  return RunPhase(c, name, jobs, PhaseStart{});
}

absl::StatusOr<PhaseOutcome> RunPhase(const MeasureContext& c, const std::string& name,
                                      const std::vector<Job>& jobs, const PhaseStart& start) {
  const bool flag_start = start.kind == PhaseStart::Kind::kFlag;
  const auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrFormat("rank %d: phase '%s': %s", c.rank(), name, s.message()));
  };
  std::unique_ptr<Streams> streams;
  std::vector<StreamId> ids;
  StreamId release_stream = 0;
  EventId gate_done = 0;
  if (flag_start && jobs.empty()) {
    return fail(absl::InternalError("a phase released by a flag needs jobs on every rank"));
  }
  if (!jobs.empty()) {
    auto created = c.new_streams(/*timing=*/true);
    if (!created.ok()) return fail(created.status());
    streams = *std::move(created);
    int num_streams = 1;
    for (const Job& j : jobs) num_streams = std::max(num_streams, j.stream + 1);
    for (int i = 0; i < num_streams; ++i) {
      auto id = streams->CreateStream(absl::StrCat(name, " ", i));
      if (!id.ok()) return fail(id.status());
      ids.push_back(*id);
    }
    if (flag_start && c.rank() == 0) {
      auto id = streams->CreateStream(absl::StrCat(name, " release"));
      if (!id.ok()) return fail(id.status());
      release_stream = *id;
    }
    auto event = streams->CreateEvent();
    if (!event.ok()) return fail(event.status());
    gate_done = *event;
    // The MoE layer plans its routing and tunes its GEMMs here, before anything is timed.
    std::vector<int64_t> prepared;
    for (const Job& j : jobs) {
      if (!j.moe || std::find(prepared.begin(), prepared.end(), j.moe->tokens) != prepared.end()) {
        continue;
      }
      if (absl::Status s = streams->PrepareMoe(*j.moe); !s.ok()) {
        return fail(
            Prefixed(s, absl::StrFormat("prepare the MoE layer for %d tokens", j.moe->tokens)));
      }
      prepared.push_back(j.moe->tokens);
    }
  }
  if (start.kind == PhaseStart::Kind::kGate) {
    if (absl::Status s = c.group.Barrier(); !s.ok()) return fail(Prefixed(s, "barrier before"));
  }
  PhaseOutcome outcome;
  if (!jobs.empty()) {
    OpTag gate_tag;
    gate_tag.kind = OpKind::kCompute;
    gate_tag.label = "gate";
    // The backend reads its host clock (time since the origin) first thing in Launch: this
    // reading and the gate's issue time are the same instant to within a microsecond.
    const double gate_host_ns = c.host_now_ns();
    const size_t moe_jobs = static_cast<size_t>(
        std::count_if(jobs.begin(), jobs.end(), [](const Job& j) { return j.moe.has_value(); }));
    const absl::Status gated =
        flag_start ? streams->WaitFlag(ids[0], start.flag, start.value, gate_tag)
                   : streams->Launch(
                         {"calibration gate", {}, GateNs(jobs.size(), moe_jobs) + start.delay_ns},
                         ids[0], gate_tag);
    if (!gated.ok()) return fail(gated);
    OpTag event_tag;
    event_tag.kind = OpKind::kRecord;
    event_tag.label = "gate";
    if (absl::Status s = streams->Record(gate_done, ids[0], event_tag); !s.ok()) return fail(s);
    event_tag.kind = OpKind::kWait;
    for (size_t i = 1; i < ids.size(); ++i) {
      if (absl::Status s = streams->Wait(ids[i], gate_done, event_tag); !s.ok()) return fail(s);
    }
    for (size_t i = 0; i < jobs.size(); ++i) {
      const Job& j = jobs[i];
      OpTag tag;
      tag.slot = static_cast<int64_t>(i);  // finds the job again in the timeline
      tag.peer = j.peer;
      tag.label = name;
      absl::Status s;
      if (j.kind == Job::Kind::kCopy) {
        tag.kind = OpKind::kCopy;
        s = streams->Copy(j.dst, j.src, j.bytes, ids[j.stream], tag);
      } else {
        tag.kind = OpKind::kCompute;
        KernelLaunch kernel{absl::StrCat(name, " kernel"), {}, j.duration_ns, j.moe};
        if (j.bytes > 0) kernel.reads.push_back({j.src, j.bytes, false, {}});
        s = streams->Launch(kernel, ids[j.stream], tag);
      }
      if (!s.ok()) return fail(s);
    }
    if (flag_start) {
      // Every rank's jobs wait behind its flag; rank 0 releases them all at once.
      if (absl::Status s = c.group.Barrier(); !s.ok()) {
        return fail(Prefixed(s, "barrier after queueing behind the flag"));
      }
      if (c.rank() == 0) {
        OpTag release_tag;
        release_tag.kind = OpKind::kRecord;
        release_tag.label = "release";
        if (absl::Status s =
                streams->WriteFlags(start.release, start.value, release_stream, release_tag);
            !s.ok()) {
          return fail(s);
        }
      }
    }
    if (absl::Status s = streams->Synchronize(); !s.ok()) return fail(s);
    outcome.jobs.assign(jobs.size(), {});
    std::vector<bool> seen(jobs.size(), false);
    for (const TimedOp& op : streams->TakeTimeline()) {
      if (op.tag.label == "gate" && op.tag.kind == OpKind::kCompute) {
        outcome.host_origin_ns = gate_host_ns - op.issue_ns;
      }
      if (op.tag.label != name || op.tag.slot < 0 ||
          op.tag.slot >= static_cast<int64_t>(jobs.size())) {
        continue;
      }
      if (op.tag.kind != OpKind::kCopy && op.tag.kind != OpKind::kCompute) continue;
      outcome.jobs[op.tag.slot] = {op.issue_ns, op.start_ns, op.end_ns};
      seen[op.tag.slot] = true;
    }
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (!seen[i]) {
        return fail(absl::InternalError(
            absl::StrFormat("job %d of %d has no timing in the backend's timeline (is timing off?)",
                            i, jobs.size())));
      }
    }
    double last_issue = 0, first_start = 1e300;
    for (const JobTiming& t : outcome.jobs) {
      last_issue = std::max(last_issue, t.issue_ns);
      first_start = std::min(first_start, t.start_ns);
    }
    outcome.host_fell_behind = first_start < last_issue;
    (void)streams->DestroyEvent(gate_done);
    streams.reset();  // waits and destroys its streams and events
  }
  if (absl::Status s = c.group.Barrier(); !s.ok()) return fail(Prefixed(s, "barrier after"));
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// The phases.

absl::Status Calibrator::RunAll() {
  for (auto step : {&Calibrator::WarmUp, &Calibrator::SinglePair, &Calibrator::EgressSharing,
                    &Calibrator::IngressConcurrency, &Calibrator::Schedules, &Calibrator::LocalCopy,
                    &Calibrator::ComputeStandIn, &Calibrator::ComputeUnderCopies,
                    &Calibrator::HostCosts, &Calibrator::StreamQueue, &Calibrator::MapCost}) {
    if (absl::Status s = (this->*step)(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

uint64_t Calibrator::per_peer_bytes() const {
  return b().dst_bytes() / static_cast<uint64_t>(std::max<int64_t>(1, c_.size() - 1));
}

void Calibrator::Warn(const std::string& phase, bool fell_behind) {
  if (!fell_behind) return;
  out_.warnings.push_back(absl::StrFormat(
      "rank %d, phase '%s': the GPU started before the host had issued every operation; "
      "short copies may include host time",
      c_.rank(), phase));
}

// Repeats a phase repetitions + 1 times and drops the first (first touch of a path: TLBs,
// copy-engine set-up).
absl::StatusOr<std::vector<PhaseOutcome>> Calibrator::Repeat(const std::string& name,
                                                             const std::vector<Job>& jobs) {
  std::vector<PhaseOutcome> kept;
  for (int rep = 0; rep <= repetitions_; ++rep) {
    absl::StatusOr<PhaseOutcome> o = RunPhase(c_, name, jobs);
    if (!o.ok()) return o.status();
    Warn(name, o->host_fell_behind);
    if (rep > 0) kept.push_back(*std::move(o));
  }
  return kept;
}

absl::Status Calibrator::WarmUp() {
  std::vector<Job> jobs;
  for (int64_t p = 0; p < c_.size(); ++p) {
    const DevPtr src = p == c_.rank() ? b().src() : b().peer(p);
    jobs.push_back(
        {Job::Kind::kCopy, 0, b().dst(), src, std::min(4 * kMiB, b().src_bytes()), p, 0});
  }
  return RunPhase(c_, "warm-up", jobs).status();
}

absl::Status Calibrator::SinglePair() {
  std::vector<Job> jobs;
  std::vector<uint64_t> sizes;
  for (uint64_t s : {256 * kKiB, kMiB, 4 * kMiB, 16 * kMiB, 64 * kMiB, 256 * kMiB, kGiB}) {
    if (s <= b().src_bytes()) sizes.push_back(s);
  }
  if (c_.rank() == 0) {
    for (uint64_t s : sizes) {
      for (int rep = 0; rep <= repetitions_; ++rep) {
        jobs.push_back({Job::Kind::kCopy, 0, b().dst(), b().peer(1), s, 1, 0});
      }
    }
  }
  absl::StatusOr<PhaseOutcome> o = RunPhase(c_, "single-pair pull", jobs);
  if (!o.ok()) return o.status();
  if (c_.rank() != 0) return absl::OkStatus();
  Warn("single-pair pull", o->host_fell_behind);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i % (repetitions_ + 1) == 0) continue;  // first of each size: warm-up
    out_.single_pair.push_back({static_cast<double>(jobs[i].bytes), o->jobs[i].duration()});
  }
  return absl::OkStatus();
}

absl::Status Calibrator::EgressSharing() {
  std::vector<Job> jobs;
  const uint64_t bytes = per_peer_bytes();
  if (c_.rank() != 0) jobs.push_back({Job::Kind::kCopy, 0, b().dst(), b().peer(0), bytes, 0, 0});
  auto reps = Repeat("egress sharing", jobs);
  if (!reps.ok()) return reps.status();
  if (c_.rank() == 0) return absl::OkStatus();
  // Start and end on the host's clock as well: the pullers' union tells how long rank 0's
  // egress was busy (their own durations overlap only in part).
  RawEgressPull egress;
  egress.bytes = static_cast<double>(bytes);
  bool on_host_clock = true;
  for (const PhaseOutcome& o : *reps) {
    egress.ns.push_back(o.jobs[0].duration());
    on_host_clock = on_host_clock && std::isfinite(o.host_origin_ns);
    egress.start_ns.push_back(o.host_origin_ns + o.jobs[0].start_ns);
    egress.end_ns.push_back(o.host_origin_ns + o.jobs[0].end_ns);
  }
  if (!on_host_clock) {
    egress.start_ns.clear();
    egress.end_ns.clear();
  }
  out_.egress = std::move(egress);
  return absl::OkStatus();
}

absl::Status Calibrator::IngressConcurrency() {
  if (c_.size() < 3) return absl::OkStatus();  // one peer: nothing concurrent to measure
  std::vector<Job> jobs;
  const uint64_t bytes = per_peer_bytes();
  if (c_.rank() == 0) {
    for (int64_t p : PeerOrder(0, c_.size(), PeerOrderKind::kAscending)) {
      const int64_t slot = PeerSlot(0, p);
      jobs.push_back({Job::Kind::kCopy, static_cast<int>(slot),
                      b().dst() + static_cast<uint64_t>(slot) * bytes, b().peer(p), bytes, p, 0});
    }
  }
  auto reps = Repeat("concurrent pulls into one GPU", jobs);
  if (!reps.ok()) return reps.status();
  if (c_.rank() != 0) return absl::OkStatus();
  RawIngress ingress{static_cast<double>(bytes), c_.size() - 1, {}};
  for (const PhaseOutcome& o : *reps) ingress.span_ns.push_back(o.span_ns());
  out_.ingress = std::move(ingress);
  return absl::OkStatus();
}

absl::Status Calibrator::Schedules() {
  const uint64_t bytes = per_peer_bytes();
  // Round robin's pieces are one granule, each piece a separate copy.
  const uint64_t piece = c_.driver.granularity();
  out_.schedules.bytes_per_peer = static_cast<double>(bytes);
  out_.schedules.piece_bytes = static_cast<double>(piece);
  // Timed in the order of their names, as calibrate always has.
  std::map<std::string, CopySchedule> by_name;
  for (CopySchedule s : kCopySchedules) by_name.emplace(CopyScheduleName(s), s);
  for (const auto& [name, schedule] : by_name) {
    std::vector<Job> jobs;
    for (const ScheduledCopy& copy : ScheduleCopies(schedule, c_.rank(), c_.size(), bytes, piece)) {
      const uint64_t region = static_cast<uint64_t>(PeerSlot(c_.rank(), copy.peer)) * bytes;
      jobs.push_back({Job::Kind::kCopy, copy.stream, b().dst() + region + copy.offset,
                      b().peer(copy.peer) + copy.offset, copy.bytes, copy.peer, 0});
    }
    auto reps = Repeat(absl::StrCat("schedule ", name), jobs);
    if (!reps.ok()) return reps.status();
    RawScheduleRun run;
    for (const Job& j : jobs) run.bytes += static_cast<double>(j.bytes);
    for (const PhaseOutcome& o : *reps) run.span_ns.push_back(o.span_ns());
    out_.schedules.runs[name] = std::move(run);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RawPrefetchCopy>> Calibrator::PrefetchRotation(
    const std::string& name, const std::vector<Job>& jobs, const PhaseStart& start) {
  absl::StatusOr<PhaseOutcome> o = RunPhase(c_, name, jobs, start);
  if (!o.ok()) return o.status();
  Warn(name, o->host_fell_behind);
  if (!std::isfinite(o->host_origin_ns)) {
    return absl::InternalError(
        absl::StrFormat("rank %d, phase '%s': the timeline has no gate to put the copies on the "
                        "host's clock",
                        c_.rank(), name));
  }
  std::vector<RawPrefetchCopy> copies;
  for (size_t i = 0; i < jobs.size(); ++i) {
    copies.push_back({jobs[i].peer, static_cast<int64_t>(i) + 1,
                      o->host_origin_ns + o->jobs[i].start_ns,
                      o->host_origin_ns + o->jobs[i].end_ns});
  }
  return copies;
}

absl::Status Calibrator::Prefetch() {
  const int64_t d = c_.size(), me = c_.rank();
  const uint64_t piece = per_peer_bytes();
  RawPrefetch out;
  out.piece_bytes = static_cast<double>(piece);
  // This rank's rotation: step s pulls the piece of (rank + s) mod d into its own region.
  std::vector<Job> rotation;
  for (int64_t p : PeerOrder(me, d, PeerOrderKind::kRotate)) {
    const uint64_t region = static_cast<uint64_t>(PeerSlot(me, p)) * piece;
    rotation.push_back({Job::Kind::kCopy, 0, b().dst() + region, b().peer(p), piece, p, 0});
  }
  // Every pair alone: one reader at a time pulls its pieces one after the other, repeatedly
  // (the first round is a warm-up).
  for (int64_t reader = 0; reader < d; ++reader) {
    std::vector<Job> jobs;
    if (me == reader) {
      for (int rep = 0; rep <= repetitions_; ++rep) {
        jobs.insert(jobs.end(), rotation.begin(), rotation.end());
      }
    }
    const std::string name = absl::StrCat("prefetch pairs of rank ", reader);
    absl::StatusOr<PhaseOutcome> o = RunPhase(c_, name, jobs);
    if (!o.ok()) return o.status();
    if (me != reader) continue;
    Warn(name, o->host_fell_behind);
    for (size_t i = rotation.size(); i < jobs.size(); ++i) {
      out.pair_ns[jobs[i].peer].push_back(o->jobs[i].duration());
    }
  }
  // One step at this rank's own pair rates (the median piece time): the unit of the drifts.
  std::vector<double> piece_ns;
  for (const auto& [peer, ns] : out.pair_ns) piece_ns.insert(piece_ns.end(), ns.begin(), ns.end());
  const double step_ns = Summarize(piece_ns).median;

  // The start line: one flag word per rank in a shareable allocation every rank maps.
  absl::StatusOr<std::unique_ptr<CalibrationBuffers>> flags =
      CalibrationBuffers::Setup(c_, c_.driver.granularity(), c_.driver.granularity());
  if (!flags.ok()) return Prefixed(flags.status(), "set up the prefetch start flags");
  std::vector<DevPtr> release;
  for (int64_t p = 0; p < d; ++p) release.push_back(p == me ? (*flags)->src() : (*flags)->peer(p));
  absl::Status status;
  {
    // Every rank clears its own word before anyone waits on it.
    absl::StatusOr<std::unique_ptr<Streams>> streams = c_.new_streams(/*timing=*/false);
    if (!streams.ok()) return streams.status();
    absl::StatusOr<StreamId> id = (*streams)->CreateStream("prefetch flag clear");
    status = id.status();
    if (status.ok()) {
      const DevPtr own = (*flags)->src();
      status = (*streams)->WriteFlags(absl::MakeConstSpan(&own, 1), 0, *id, OpTag{});
    }
    if (status.ok()) status = (*streams)->Synchronize();
  }
  status.Update(c_.group.Barrier());

  struct Run {
    PrefetchStart start;
    double drift_steps;
  };
  std::vector<Run> runs = {{PrefetchStart::kSync, 0}, {PrefetchStart::kBarrier, 0}};
  for (double drift : options_.prefetch_drift_steps) runs.push_back({PrefetchStart::kFree, drift});
  uint32_t epoch = 0;
  for (const Run& run : runs) {
    if (!status.ok()) break;
    RawPrefetchRun raw;
    raw.start = PrefetchStartName(run.start);
    raw.drift_ns = run.drift_steps * step_ns;
    const std::string name =
        run.start == PrefetchStart::kFree
            ? absl::StrFormat("prefetch rotation, free, drift %g step", run.drift_steps)
            : absl::StrCat("prefetch rotation, ", raw.start);
    for (int rep = 0; rep <= repetitions_ && status.ok(); ++rep) {
      PhaseStart start;
      switch (run.start) {
        case PrefetchStart::kSync:
          start.kind = PhaseStart::Kind::kFlag;
          start.flag = (*flags)->src();
          if (me == 0) start.release = release;
          start.value = ++epoch;
          break;
        case PrefetchStart::kBarrier:
          start.kind = PhaseStart::Kind::kGate;
          break;
        case PrefetchStart::kFree:
          start.kind = PhaseStart::Kind::kFree;
          start.delay_ns = PrefetchStartDelayNs(me, raw.drift_ns);
          break;
      }
      absl::StatusOr<std::vector<RawPrefetchCopy>> copies = PrefetchRotation(name, rotation, start);
      status = copies.status();
      if (status.ok() && rep > 0) raw.repetitions.push_back(*std::move(copies));
    }
    out.runs.push_back(std::move(raw));
  }
  status.Update((*flags)->Teardown());
  if (!status.ok()) return status;
  out_.prefetch = std::move(out);
  return absl::OkStatus();
}

absl::Status Calibrator::LocalCopy() {
  const uint64_t bytes = std::min(b().src_bytes(), b().dst_bytes());
  std::vector<Job> jobs;
  for (int rep = 0; rep <= repetitions_; ++rep) {
    jobs.push_back({Job::Kind::kCopy, 0, b().dst(), b().src(), bytes, c_.rank(), 0});
  }
  absl::StatusOr<PhaseOutcome> o = RunPhase(c_, "local copy", jobs);
  if (!o.ok()) return o.status();
  Warn("local copy", o->host_fell_behind);
  out_.local_copy.bytes = static_cast<double>(bytes);
  for (size_t i = 1; i < jobs.size(); ++i) out_.local_copy.ns.push_back(o->jobs[i].duration());
  return absl::OkStatus();
}

absl::Status Calibrator::ComputeStandIn() {
  std::vector<Job> jobs;
  for (double d : {20e3, 200e3, 2e6}) {
    for (int rep = 0; rep <= repetitions_; ++rep) {
      jobs.push_back({Job::Kind::kKernel, 0, 0, 0, 0, -1, d});
    }
  }
  absl::StatusOr<PhaseOutcome> o = RunPhase(c_, "compute stand-in", jobs);
  if (!o.ok()) return o.status();
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i % (repetitions_ + 1) == 0) continue;
    out_.kernel_accuracy.push_back({jobs[i].duration_ns, o->jobs[i].duration()});
  }
  return absl::OkStatus();
}

// The stand-in kernel reads its own buffer paced over the duration, as in `dwdp run --backend
// cuda`; the same for a kernel that only reads (memory bound), for information.
absl::Status Calibrator::ComputeUnderCopies() {
  const uint64_t read_bytes = AlignDown(b().src_bytes() / 2, kMiB);
  const uint64_t copy_bytes = std::min(b().src_bytes(), b().dst_bytes());
  // The kernel should fit well inside the copy: a third of the copy at 400 GB/s.
  const double duration = std::clamp(static_cast<double>(copy_bytes) / 400.0 / 3.0, 50e3, 2e6);
  for (const auto& [label, kernel_ns] :
       {std::pair<std::string, double>{"paced", duration}, {"read-bound", 0.0}}) {
    RawComputeUnderCopies result;
    result.requested_ns = kernel_ns;
    result.read_bytes = static_cast<double>(read_bytes);
    for (bool with_copy : {false, true}) {
      std::vector<Job> jobs;
      if (c_.rank() == 0) {
        jobs.push_back({Job::Kind::kKernel, 0, 0, b().src(), read_bytes, -1, kernel_ns});
        if (with_copy) {
          jobs.push_back({Job::Kind::kCopy, 1, b().dst(), b().peer(1), copy_bytes, 1, 0});
        }
      }
      const std::string name =
          absl::StrCat("compute ", label, with_copy ? " under an inbound copy" : " alone");
      auto reps = Repeat(name, jobs);
      if (!reps.ok()) return reps.status();
      if (c_.rank() != 0) continue;
      for (const PhaseOutcome& o : *reps) {
        (with_copy ? result.with_copy_ns : result.alone_ns).push_back(o.jobs[0].duration());
        // The copy must outlast the kernel, or part of the kernel ran without it.
        if (with_copy)
          result.copy_outlasts_kernel_by_ns.push_back(o.jobs[1].end_ns - o.jobs[0].end_ns);
      }
    }
    if (c_.rank() == 0) out_.compute_under_copies[label] = std::move(result);
  }
  return absl::OkStatus();
}

// One call of a kind the host-side phases time: a 4 KiB "copy" or a "kernel" (the stand-in at
// its shortest) on `stream`, a "record" of `event` on it, or a "wait" of it for `event`.
absl::Status Calibrator::IssueOne(Streams& s, const std::string& kind, StreamId stream,
                                  EventId event, const std::string& label) {
  OpTag tag;
  tag.label = label;
  if (kind == "record") {
    tag.kind = OpKind::kRecord;
    return s.Record(event, stream, tag);
  }
  if (kind == "wait") {
    tag.kind = OpKind::kWait;
    return s.Wait(stream, event, tag);
  }
  if (kind == "kernel") {
    tag.kind = OpKind::kCompute;
    return s.Launch({"calibrate kernel", {}, 0}, stream, tag);
  }
  tag.kind = OpKind::kCopy;
  return s.Copy(b().dst(), b().src(), 4 * kKiB, stream, tag);
}

// Host time per Copy, Record and Wait call with timing events off (the pipeline's own cost), and
// per Copy with them on (what `dwdp run --backend cuda` pays by default). Host costs involve no
// peer: every rank measures its own, at the same time.
absl::Status Calibrator::HostCosts() {
  // Few enough that the calls, their timing events included, fit in a stream's queue behind
  // the gate (a full queue would block the host and count GPU time as host time).
  constexpr int kCalls = 128;
  for (bool timing : {false, true}) {
    auto created = c_.new_streams(timing);
    if (!created.ok()) return created.status();
    Streams& s = **created;
    auto a = s.CreateStream("host cost a");
    auto b = s.CreateStream("host cost b");
    auto e = s.CreateEvent();
    if (!a.ok()) return a.status();
    if (!b.ok()) return b.status();
    if (!e.ok()) return e.status();
    std::map<std::string, std::vector<double>> per_call;
    for (int rep = 0; rep <= repetitions_; ++rep) {
      for (const std::string what : {"copy", "record", "wait"}) {
        if (timing && what != "copy") continue;
        OpTag gate;
        gate.kind = OpKind::kCompute;
        // The GPU stays busy while the host issues, so every call is a pure enqueue.
        if (absl::Status st = s.Launch({"host-cost gate", {}, 5e6}, *a, gate); !st.ok()) return st;
        const double t0 = c_.host_now_ns();
        for (int i = 0; i < kCalls; ++i) {
          // The waits go on the other stream: a stream waiting on its own record is no wait.
          const StreamId on = what == "wait" ? *b : *a;
          if (absl::Status st = IssueOne(s, what, on, *e, "host cost"); !st.ok()) return st;
        }
        const double per = (c_.host_now_ns() - t0) / kCalls;
        if (absl::Status st = s.Synchronize(); !st.ok()) return st;
        (void)s.TakeTimeline();
        if (rep > 0) per_call[what].push_back(per);
      }
    }
    for (auto& [what, values] : per_call) {
      out_.host_ns_per_call[timing ? absl::StrCat(what, "_with_timing_events") : what] =
          std::move(values);
    }
  }
  return absl::OkStatus();
}

// Behind a long kernel, calls of one kind until one takes far longer than an enqueue, for every
// kind of call the pipeline makes: copies, copies with the timing events `dwdp run --backend
// cuda` adds, kernel launches, event waits and records. The simulator blocks the host there
// (stream_queue_entries and the entries of each kind); a long prefetch can hold the compute
// launches behind it.
absl::Status Calibrator::StreamQueue() {
  constexpr int kMaxCalls = 16384;
  constexpr double kGateNs = 50e6;    // far longer than kMaxCalls enqueues
  constexpr double kBlockedNs = 1e6;  // an enqueue takes microseconds
  const int repetitions = std::clamp(repetitions_, 1, 2);
  for (const std::string what : {"copy", "timed_copy", "kernel", "wait", "record"}) {
    const bool timed = what == "timed_copy";
    auto created = c_.new_streams(timed);
    if (!created.ok()) return created.status();
    Streams& s = **created;
    auto stream = s.CreateStream("stream queue");
    auto other = s.CreateStream("stream queue, other");
    auto event = s.CreateEvent();
    if (!stream.ok()) return stream.status();
    if (!other.ok()) return other.status();
    if (!event.ok()) return event.status();
    // The waits wait for an event that is long complete: only their place in the queue counts.
    if (absl::Status st = IssueOne(s, "record", *other, *event, "stream queue"); !st.ok()) {
      return st;
    }
    if (absl::Status st = s.Synchronize(); !st.ok()) return st;
    std::vector<double> calls;
    for (int rep = 0; rep < repetitions; ++rep) {
      OpTag gate;
      gate.kind = OpKind::kCompute;
      gate.label = "stream-queue gate";
      if (absl::Status st = s.Launch({"stream-queue gate", {}, kGateNs}, *stream, gate); !st.ok()) {
        return st;
      }
      for (int i = 0; i < kMaxCalls; ++i) {
        const double t0 = c_.host_now_ns();
        if (absl::Status st = IssueOne(s, timed ? "copy" : what, *stream, *event, "stream queue");
            !st.ok()) {
          return st;
        }
        if (c_.host_now_ns() - t0 > kBlockedNs) {
          calls.push_back(i);  // the calls before this one fit
          break;
        }
      }
      if (absl::Status st = s.Synchronize(); !st.ok()) return st;
      (void)s.TakeTimeline();
    }
    // A kind that never blocked takes no room (an empty list says so).
    out_.stream_queue_calls[what] = std::move(calls);
  }
  return absl::OkStatus();
}

// Host time of map, set-access and unmap of one granule.
absl::Status Calibrator::MapCost() {
  Driver& drv = c_.driver;
  const uint64_t g = drv.granularity();
  absl::StatusOr<Handle> h = drv.Create(g, HandleKind::kNone);
  if (!h.ok()) return h.status();
  absl::StatusOr<DevPtr> va = drv.Reserve(g, g);
  if (!va.ok()) {
    (void)drv.Release(*h);
    return va.status();
  }
  RawMapCosts costs;
  costs.bytes = static_cast<double>(g);
  absl::Status result;
  const int reps = std::max(10, 4 * repetitions_);
  for (int rep = 0; rep <= reps && result.ok(); ++rep) {
    const double t0 = c_.host_now_ns();
    if (result = drv.Map(*va, g, *h, 0); !result.ok()) break;
    const double t1 = c_.host_now_ns();
    result = drv.SetAccess(*va, g);
    const double t2 = c_.host_now_ns();
    absl::Status un = drv.Unmap(*va, g);
    const double t3 = c_.host_now_ns();
    if (result.ok()) result = un;
    if (rep == 0) continue;
    costs.map.push_back(t1 - t0);
    costs.set_access.push_back(t2 - t1);
    costs.unmap.push_back(t3 - t2);
  }
  result.Update(drv.Free(*va, g));
  result.Update(drv.Release(*h));
  if (!result.ok()) return result;
  out_.map_ns = std::move(costs);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// The routed-MoE layer.

namespace {

// A GPU pair copies at well under this; it sizes the inbound copies so that they outlast the
// layer (a faster machine shows up as a negative copy_outlasts_kernel_by_ns, and a warning).
constexpr double kFastestPairBytesPerS = 1e12;

// The layer's weights on this GPU: one local buffer, w13 then w2, filled with the pattern.
class LayerWeights {
 public:
  explicit LayerWeights(Driver& driver) : driver_(driver) {}
  LayerWeights(const LayerWeights&) = delete;
  LayerWeights& operator=(const LayerWeights&) = delete;
  ~LayerWeights() { (void)Free(); }

  absl::Status Allocate(const MeasureContext& c, const MoeShape& shape) {
    const uint64_t g = driver_.granularity();
    bytes_ = ((shape.weight_bytes() + g - 1) / g) * g;
    absl::StatusOr<Handle> h = driver_.Create(bytes_, HandleKind::kNone);
    if (!h.ok()) return h.status();
    handle_ = *h;
    has_handle_ = true;
    absl::StatusOr<DevPtr> va = driver_.Reserve(bytes_, g);
    if (!va.ok()) return va.status();
    va_ = *va;
    if (absl::Status s = driver_.Map(va_, bytes_, handle_, 0); !s.ok()) return s;
    mapped_ = true;
    if (absl::Status s = driver_.SetAccess(va_, bytes_); !s.ok()) return s;
    auto streams = c.new_streams(/*timing=*/false);
    if (!streams.ok()) return streams.status();
    auto stream = (*streams)->CreateStream("moe weights");
    if (!stream.ok()) return stream.status();
    const uint64_t w13 = shape.w13_bytes(), w2 = shape.weight_bytes() - w13;
    const uint64_t experts = static_cast<uint64_t>(shape.num_experts);
    OpTag tag;
    tag.kind = OpKind::kFill;
    tag.label = "moe weights";
    if (absl::Status s = (*streams)->Fill(va_, w13, {0, 0, w13 / experts}, 0, *stream, tag);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = (*streams)->Fill(va_ + w13, w2, {0, 1, w2 / experts}, 0, *stream, tag);
        !s.ok()) {
      return s;
    }
    return (*streams)->Synchronize();
  }

  absl::Status Free() {
    absl::Status s;
    if (mapped_) s.Update(driver_.Unmap(va_, bytes_));
    if (va_ != 0) s.Update(driver_.Free(va_, bytes_));
    if (has_handle_) s.Update(driver_.Release(handle_));
    mapped_ = has_handle_ = false;
    va_ = 0;
    return s;
  }

  DevPtr va() const { return va_; }

 private:
  Driver& driver_;
  Handle handle_;
  bool has_handle_ = false;
  DevPtr va_ = 0;
  uint64_t bytes_ = 0;
  bool mapped_ = false;
};

}  // namespace

// Rank 0's decision for one shape, shared so that every rank runs the same phases.
struct Calibrator::MoePlan {
  std::vector<int64_t> tokens;
  std::vector<int64_t> skipped;
  std::string error;  // rank 0 could not hold the layer
};

absl::StatusOr<Calibrator::MoePlan> Calibrator::ShareMoePlan(const MoePlan& mine) {
  nlohmann::json j = {{"tokens", mine.tokens}, {"skipped", mine.skipped}, {"error", mine.error}};
  const std::string text = j.dump();
  auto all = c_.group.Allgather(std::vector<uint8_t>(text.begin(), text.end()));
  if (!all.ok()) return Prefixed(all.status(), "share the MoE token grid");
  const nlohmann::json theirs =
      nlohmann::json::parse((*all)[0].begin(), (*all)[0].end(), nullptr, false);
  if (theirs.is_discarded()) return absl::InternalError("rank 0 sent an unreadable MoE plan");
  return MoePlan{theirs["tokens"].get<std::vector<int64_t>>(),
                 theirs["skipped"].get<std::vector<int64_t>>(), theirs["error"].get<std::string>()};
}

uint64_t MoeShape::w13_bytes() const {
  return static_cast<uint64_t>(num_experts) * 2 * static_cast<uint64_t>(intermediate) *
         static_cast<uint64_t>(hidden) * 2;
}

uint64_t MoeShape::weight_bytes() const {
  return w13_bytes() + static_cast<uint64_t>(num_experts) * static_cast<uint64_t>(hidden) *
                           static_cast<uint64_t>(intermediate) * 2;
}

absl::StatusOr<MoeShape> ParseMoeShape(absl::string_view text) {
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoE shape '", text,
                     "' is not HIDDEN,INTERMEDIATE,EXPERTS,TOPK (e.g. 7168,2048,256,8): ", why));
  };
  if (parts.size() != 4) return bad(absl::StrCat(parts.size(), " numbers"));
  int64_t v[4];
  for (int i = 0; i < 4; ++i) {
    if (!absl::SimpleAtoi(parts[i], &v[i]) || v[i] < 1 || v[i] > (int64_t{1} << 20)) {
      return bad(absl::StrCat("'", parts[i], "' is not a whole number from 1 to 1048576"));
    }
  }
  if (v[3] > v[2]) return bad("top_k is larger than the number of experts");
  return MoeShape{v[0], v[1], v[2], v[3]};
}

std::vector<int64_t> DefaultMoeTokens() {
  std::vector<int64_t> tokens;
  for (int64_t t = 256; t <= 65536; t *= 2) tokens.push_back(t);
  return tokens;
}

absl::StatusOr<std::vector<int64_t>> ParseTokenCounts(absl::string_view text) {
  std::vector<int64_t> tokens;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t scale = 1;
    absl::string_view digits = part;
    if (!digits.empty() && (digits.back() == 'K' || digits.back() == 'k')) {
      scale = 1024;
      digits.remove_suffix(1);
    }
    int64_t n = 0;
    if (!absl::SimpleAtoi(digits, &n) || n < 1 || n * scale > (int64_t{1} << 20)) {
      return absl::InvalidArgumentError(
          absl::StrCat("token count '", part, "' is not a whole number from 1 to 1M (K = 1024)"));
    }
    if (!tokens.empty() && n * scale <= tokens.back()) {
      return absl::InvalidArgumentError(absl::StrCat("token counts must ascend without repeats: '",
                                                     part, "' after ", tokens.back()));
    }
    tokens.push_back(n * scale);
  }
  return tokens;
}

uint64_t MoeWorkingBytesPerToken(const MoeShape& shape) {
  const uint64_t h = static_cast<uint64_t>(shape.hidden);
  const uint64_t i = static_cast<uint64_t>(shape.intermediate);
  const uint64_t k = static_cast<uint64_t>(shape.top_k);
  const uint64_t per_routed = (h + 2 * i + i + h) * 2 + 16;
  return 2 * (2 * h * 2 + k * per_routed);
}

std::vector<int64_t> MoeTokensThatFit(const MoeShape& shape, const std::vector<int64_t>& tokens,
                                      uint64_t budget_bytes, std::vector<int64_t>* skipped) {
  std::vector<int64_t> fit;
  const uint64_t per_token = MoeWorkingBytesPerToken(shape);
  for (int64_t t : tokens) {
    const bool fits =
        budget_bytes == 0 || static_cast<double>(t) * static_cast<double>(per_token) <=
                                 static_cast<double>(budget_bytes);
    if (fits) {
      fit.push_back(t);
    } else if (skipped != nullptr) {
      skipped->push_back(t);
    }
  }
  return fit;
}

absl::Status Calibrator::MoeCompute() {
  for (const MoeShape& shape : options_.moe_shapes) {
    const std::string what = absl::StrFormat("MoE layer %d,%d,%d,%d", shape.hidden,
                                             shape.intermediate, shape.num_experts, shape.top_k);
    LayerWeights weights(c_.driver);
    MoePlan mine;
    if (c_.rank() == 0) {
      // What is left of the GPU once the weights and the calibration's buffers are in (a
      // tenth kept back for the driver and the runtime).
      double budget = 0;
      if (options_.device_memory_bytes > 0) {
        budget = 0.9 * static_cast<double>(options_.device_memory_bytes) -
                 static_cast<double>(shape.weight_bytes()) -
                 (b_ != nullptr ? static_cast<double>(b().src_bytes() + b().dst_bytes()) : 0.0);
      }
      if (options_.device_memory_bytes > 0 && budget <= 0) {
        mine.error = absl::StrFormat("its weights (%s) do not fit on the GPU (%s)",
                                     FormatBytes(shape.weight_bytes()),
                                     FormatBytes(options_.device_memory_bytes));
      } else if (absl::Status s = weights.Allocate(c_, shape); !s.ok()) {
        mine.error =
            absl::StrCat("its weights (", FormatBytes(shape.weight_bytes()), "): ", s.message());
      } else {
        mine.tokens = MoeTokensThatFit(shape, options_.moe_tokens,
                                       static_cast<uint64_t>(std::max(1.0, budget)), &mine.skipped);
        if (options_.device_memory_bytes == 0) mine.tokens = options_.moe_tokens;
      }
    }
    absl::StatusOr<MoePlan> plan = ShareMoePlan(mine);
    if (!plan.ok()) return plan.status();
    if (!plan->error.empty()) {
      return absl::ResourceExhaustedError(absl::StrCat(what, " on rank 0: ", plan->error));
    }
    absl::StatusOr<RawMoeCompute> table = MoeShapeTimes(shape, weights.va(), *plan);
    absl::Status freed = weights.Free();
    if (!table.ok()) return table.status();
    if (!freed.ok()) return Prefixed(freed, absl::StrCat(what, ": free the weights"));
    if (c_.rank() == 0) out_.moe_compute.push_back(*std::move(table));
  }
  return absl::OkStatus();
}

absl::StatusOr<RawMoeCompute> Calibrator::MoeShapeTimes(const MoeShape& shape, DevPtr weights,
                                                        const MoePlan& plan) {
  RawMoeCompute table;
  table.hidden = shape.hidden;
  table.intermediate = shape.intermediate;
  table.num_experts = shape.num_experts;
  table.top_k = shape.top_k;
  table.kernel = options_.moe_kernel;
  table.tokens = plan.tokens;
  table.skipped_tokens = plan.skipped;
  const bool rank0 = c_.rank() == 0;
  for (int64_t tokens : plan.tokens) {
    MoeKernel kernel;
    kernel.hidden = shape.hidden;
    kernel.intermediate = shape.intermediate;
    kernel.num_experts = shape.num_experts;
    kernel.top_k = shape.top_k;
    kernel.tokens = tokens;
    kernel.routing_seed = 1;
    kernel.input_seed = 2;
    kernel.w13 = weights;
    kernel.w2 = weights + shape.w13_bytes();
    const double duration = options_.moe_duration_ns ? options_.moe_duration_ns(kernel) : 0.0;
    const Job layer{Job::Kind::kKernel, 0, 0, 0, 0, -1, duration, kernel};
    const std::string name =
        absl::StrFormat("moe %d,%d,%d,%d at %d tokens", shape.hidden, shape.intermediate,
                        shape.num_experts, shape.top_k, tokens);
    // Alone: back to back, as the layers of a forward run; the first is a warm-up.
    std::vector<Job> jobs;
    if (rank0) jobs.assign(static_cast<size_t>(repetitions_) + 1, layer);
    absl::StatusOr<PhaseOutcome> alone = RunPhase(c_, absl::StrCat(name, " alone"), jobs);
    if (!alone.ok()) return alone.status();
    std::vector<double> alone_ns;
    if (rank0) {
      Warn(absl::StrCat(name, " alone"), alone->host_fell_behind);
      for (size_t i = 1; i < alone->jobs.size(); ++i) alone_ns.push_back(alone->jobs[i].duration());
      table.alone_ns.push_back(alone_ns);
    }
    if (c_.size() < 2) continue;
    // Under copies: the same launches back to back while the peers' buffers are pulled in turn
    // (rotate order, as a prefetch) on another stream, enough of them to outlast every launch at
    // any pair rate up to kFastestPairBytesPerS. One phase, so the layer is prepared once.
    const size_t launches = static_cast<size_t>(repetitions_) + 1;
    jobs.clear();
    if (rank0) {
      jobs.assign(launches, layer);
      const double layers_ns = Summarize(alone_ns).median * static_cast<double>(launches);
      const uint64_t bytes = b().src_bytes();
      const int copies = static_cast<int>(std::clamp(
          std::ceil(2 * layers_ns * 1e-9 * kFastestPairBytesPerS / static_cast<double>(bytes)) + 1,
          2.0, 4096.0));
      const std::vector<int64_t> peers = PeerOrder(0, c_.size(), PeerOrderKind::kRotate);
      for (int i = 0; i < copies; ++i) {
        const int64_t p = peers[static_cast<size_t>(i) % peers.size()];
        jobs.push_back({Job::Kind::kCopy, 1, b().dst(), b().peer(p), bytes, p, 0});
      }
    }
    absl::StatusOr<PhaseOutcome> under = RunPhase(c_, absl::StrCat(name, " under copies"), jobs);
    if (!under.ok()) return under.status();
    if (!rank0) continue;
    Warn(absl::StrCat(name, " under copies"), under->host_fell_behind);
    double copies_end = 0;
    for (size_t i = launches; i < under->jobs.size(); ++i) {
      copies_end = std::max(copies_end, under->jobs[i].end_ns);
    }
    std::vector<double> with, outlasts;
    for (size_t i = 1; i < launches; ++i) {  // the first is a warm-up, as alone
      with.push_back(under->jobs[i].duration());
      outlasts.push_back(copies_end - under->jobs[i].end_ns);
    }
    table.under_copy_ns.push_back(std::move(with));
    table.copy_outlasts_kernel_by_ns.push_back(std::move(outlasts));
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// A rank's whole measurement.

absl::Status WarmUpDriver(const MeasureContext& c) {
  if (c.size() < 2) return absl::OkStatus();  // no peer to map
  const uint64_t g = c.driver.granularity();
  auto buffers = CalibrationBuffers::Setup(c, g, g);
  if (!buffers.ok()) return buffers.status();
  const CalibrationBuffers& b = **buffers;
  std::vector<Job> jobs;
  for (int64_t p = 0; p < c.size(); ++p) {
    jobs.push_back({Job::Kind::kCopy, 0, b.dst(), p == c.rank() ? b.src() : b.peer(p), g, p, 0});
  }
  jobs.push_back({Job::Kind::kKernel, 0, 0, b.src(), g, -1, 1e3});
  absl::Status s = RunPhase(c, "driver warm-up", jobs).status();
  s.Update((*buffers)->Teardown());
  if (!s.ok()) return s;
  // Peers release their imports of this rank's buffer before anyone measures memory.
  return c.group.Barrier();
}

absl::StatusOr<RawRank> MeasureRank(const MeasureContext& c, const MeasureOptions& options) {
  const CalibrationSizes sizes =
      CalibrationBufferSizes(c.driver.granularity(), options.max_bytes, c.size());
  absl::Status status;
  RawRank out;
  {
    // One rank (only the MoE phase) has no peer to copy from and needs no buffers.
    absl::StatusOr<std::unique_ptr<CalibrationBuffers>> buffers =
        std::unique_ptr<CalibrationBuffers>();
    if (c.size() >= 2) buffers = CalibrationBuffers::Setup(c, sizes.src_bytes, sizes.dst_bytes);
    if (!buffers.ok()) {
      status = Prefixed(buffers.status(), "setup");
    } else {
      Calibrator calibrator(c, buffers->get(), options);
      if (options.only_prefetch) {
        status = calibrator.WarmUp();
        if (status.ok()) status = calibrator.Prefetch();
      } else if (!options.only_compute) {
        status = calibrator.RunAll();
      }
      if (status.ok()) status = calibrator.MoeCompute();
      out = calibrator.TakeResult();
      if (*buffers != nullptr) {
        if (absl::Status t = (*buffers)->Teardown(); !t.ok() && status.ok()) {
          status = Prefixed(t, "teardown");
        }
      }
    }
  }
  // A peer's import keeps this GPU's memory alive until the peer releases it.
  if (absl::Status s = c.group.Barrier(); !s.ok() && status.ok()) {
    status = Prefixed(s, "barrier after teardown");
  }
  if (!status.ok()) return status;
  return out;
}

absl::Status SetupAndTeardownAgain(const MeasureContext& c, const MeasureOptions& options) {
  if (c.size() < 2) return c.group.Barrier();
  const CalibrationSizes sizes =
      CalibrationBufferSizes(c.driver.granularity(), options.max_bytes, c.size());
  absl::Status status;
  {
    auto again = CalibrationBuffers::Setup(c, sizes.src_bytes, sizes.dst_bytes);
    status = again.ok() ? (*again)->Teardown() : again.status();
  }
  status.Update(c.group.Barrier());
  return status;
}

absl::StatusOr<std::optional<CalibrationRaw>> GatherCalibrationRaw(
    Comm& group, const absl::StatusOr<RawRank>& mine, const CalibrationRaw& header) {
  nlohmann::json message = nlohmann::json::object();
  if (mine.ok()) {
    message["rank"] = RawRankToJson(*mine);
  } else {
    message["error"] = std::string(mine.status().message());
  }
  const std::string text = message.dump();
  auto gathered = group.Allgather(std::vector<uint8_t>(text.begin(), text.end()));
  if (!gathered.ok()) return Prefixed(gathered.status(), "gather the measurements");
  if (group.rank() != 0) return std::optional<CalibrationRaw>();
  CalibrationRaw record = header;
  record.ranks.clear();
  nlohmann::json raw = CalibrationRawToJson(record);
  for (size_t r = 0; r < gathered->size(); ++r) {
    const std::vector<uint8_t>& bytes = (*gathered)[r];
    nlohmann::json theirs = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr,
                                                  /*allow_exceptions=*/false);
    if (theirs.is_discarded() || !theirs.is_object()) {
      return absl::InternalError(absl::StrFormat("rank %d sent unreadable measurements", r));
    }
    if (theirs.contains("error") || !theirs.contains("rank")) {
      return absl::AbortedError(
          absl::StrFormat("rank %d did not finish its measurements (its error is above)", r));
    }
    raw["ranks"].push_back(std::move(theirs["rank"]));
  }
  absl::StatusOr<CalibrationRaw> parsed = ParseCalibrationRaw(raw);
  if (!parsed.ok()) return Prefixed(parsed.status(), "the gathered measurements are incomplete");
  return std::optional<CalibrationRaw>(*std::move(parsed));
}

}  // namespace dwdp
