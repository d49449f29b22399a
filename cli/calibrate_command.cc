// dwdp calibrate --out PROFILE.yaml: measures the numbers of the simulator's timing model
// (SIMULATOR.md §2) on the GPUs of this machine and writes them as a hardware profile.
//
// One process per GPU under mpirun (N >= 2). Every rank creates one shareable buffer and one
// local destination buffer through the Driver, the ranks exchange handles, and every rank maps
// every peer's buffer. Then the ranks go through the same list of phases in lockstep; a group
// barrier before and after each phase makes sure that only the ranks a phase names copy. Rank 0
// gathers every rank's measurements, fits them and writes the profile: the `--base` preset with
// each measured number replaced (provenance `measured`).
//
// `dwdp calibrate --from-raw RAW.json --out PROFILE.yaml` derives the profile again from the raw
// measurements a run saved with --raw, without GPUs: rank 0 derives its own profile from that
// same record (core/calibrate/derive.h), so both give the same numbers and summary.
//
// Timing uses the backend's own timeline (timing events around every operation), the same clock
// `dwdp run --backend cuda` reports with. Two details make the numbers mean what they say:
// * every phase gets a fresh Streams object, because timeline times are float milliseconds since
//   the Streams' origin and lose sub-microsecond precision after a few seconds;
// * every phase's work is queued behind a "gate" kernel that keeps the GPU busy while the host
//   enqueues, so copies run back to back from the stream's queue (as the pipeline's do) and the
//   host's issue cost does not leak into a copy's measured time.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "backends/sim/copy_schedules.h"
#include "cli/common.h"
#include "core/calibrate/calibration.h"
#include "core/calibrate/derive.h"
#include "core/calibrate/fit.h"
#include "core/calibrate/raw.h"
#include "core/config/loader.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

#if defined(DWDP_HAVE_CUDA)
#include "backends/cuda/loader.h"
#endif

namespace dwdp::cli {
namespace {

struct CalibrateOptions {
  std::string out;
  std::string base = "h100-sxm";
  std::string max_bytes = "1GiB";
  std::string name;
  std::string raw;
  std::string from_raw;
  int repetitions = 5;
  double timeout_s = 60;
};

// Checks before any GPU work that the profile can be written where asked.
absl::Status CheckWritable(const std::string& path) {
  std::filesystem::path p(path);
  std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("the directory of --out '", path, "' does not exist"));
  }
  if (access(dir.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("the directory of --out '", path, "' is not writable"));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", tmp, "'"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return absl::PermissionDeniedError(absl::StrCat("cannot move the profile to '", path, "'"));
  }
  return absl::OkStatus();
}

// Derives the profile from the raw measurements (core/calibrate/derive.h), writes it, checks that
// it loads back and prints the summary. The GPU run (rank 0) and --from-raw both end here.
// Returns the exit code; `derived` gets the derivation when there was one.
int WriteCalibratedProfile(const CalibrationRaw& raw, const HardwareProfile& base,
                           const CalibrateOptions& opts,
                           std::optional<CalibrationDerivation>* derived = nullptr) {
  absl::StatusOr<CalibrationDerivation> d = DeriveCalibration(raw, base, sim::SimulateCopySchedule);
  if (!d.ok()) {
    std::cerr << "error: " << d.status().message() << "; no profile written\n";
    return kExitInvalid;
  }
  const std::string name =
      !opts.name.empty() ? opts.name : std::filesystem::path(opts.out).stem().string();
  const HardwareProfile profile = ApplyCalibration(base, d->m, {name, d->gpu_name, d->measured_on});
  const std::string yaml = absl::StrCat(
      "# Written by `dwdp calibrate` from the '", base.name,
      "' preset: every number marked `measured` was measured on this machine, the others are "
      "the preset's\n",
      HardwareProfileToYaml(profile));
  if (absl::Status s = WriteFileAtomically(opts.out, yaml); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitUsage;
  }
  // The written file must load as a profile, or the calibration is of no use.
  if (auto loaded = LoadHardwareProfileFile(opts.out); !loaded.ok()) {
    std::cerr << "error: the written profile does not load back: " << loaded.status().message()
              << "\n";
    return kExitInvalid;
  }
  std::cout << d->report << "\nwrote " << opts.out << "\n";
  if (derived != nullptr) *derived = *std::move(d);
  return kExitOk;
}

absl::StatusOr<nlohmann::json> ReadRawFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read the raw measurements '", path, "' (--from-raw)"));
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the raw measurements '", path,
        "' are not valid JSON (write them with `dwdp calibrate --raw FILE` on the GPUs)"));
  }
  return j;
}

// dwdp calibrate --from-raw: the profile of a saved run, without GPUs. The base is --base when
// given, else the one the run used.
int CalibrateFromRaw(const CalibrateOptions& opts, bool base_given) {
  const auto fail = [](const std::string& message) {
    std::cerr << "error: " << message << "\n";
    return kExitUsage;
  };
  absl::StatusOr<nlohmann::json> json = ReadRawFile(opts.from_raw);
  if (!json.ok()) return fail(std::string(json.status().message()));
  absl::StatusOr<CalibrationRaw> raw = ParseCalibrationRaw(*json);
  if (!raw.ok()) {
    return fail(absl::StrCat("'", opts.from_raw,
                             "' is not a `dwdp calibrate --raw` file: ", raw.status().message()));
  }
  const std::string base_name = base_given     ? opts.base
                                : raw->machine ? raw->machine->base
                                               : std::string(kDefaultCalibrationBase);
  absl::StatusOr<HardwareProfile> base = ResolveHardware(base_name);
  if (!base.ok()) {
    return fail(absl::StrCat(base_given ? "--base" : "the base profile the raw file names", ": ",
                             base.status().message(),
                             base_given ? "" : " (choose one with --base)"));
  }
  if (absl::Status s = CheckWritable(opts.out); !s.ok()) return fail(std::string(s.message()));
  std::cout << "derived from the raw measurements in " << opts.from_raw << "\n";
  return WriteCalibratedProfile(*raw, *base, opts);
}

// The measurements need the cuda backend; without it only the usage checks above remain.
#if defined(DWDP_HAVE_CUDA)

// Everything a rank needs to take part in the phases.
struct RankContext {
  cuda::CudaBackendFactory& factory;
  Comm& group;
  Driver& driver;
  int64_t rank = 0;
  int64_t size = 0;
  int repetitions = 0;
};

double HostNowNs() {
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------------
// Buffers: this rank's shareable source, its local destination, and a view of every peer's
// source. Torn down in reverse order of creation, also when setup stopped half way.

class CalibrationBuffers {
 public:
  static absl::StatusOr<std::unique_ptr<CalibrationBuffers>> Setup(const RankContext& c,
                                                                   HandleExchange& exchange,
                                                                   uint64_t src_bytes,
                                                                   uint64_t dst_bytes) {
    auto buffers = std::unique_ptr<CalibrationBuffers>(new CalibrationBuffers(c.driver));
    CalibrationBuffers& b = *buffers;
    b.peer_va_.assign(c.size, 0);
    Driver& drv = c.driver;
    absl::StatusOr<Handle> src = drv.Create(src_bytes, drv.shareable_kind());
    if (!src.ok()) return Context(src.status(), "create the shareable source buffer", src_bytes);
    b.pieces_.push_back({*src, true});
    absl::StatusOr<SharedHandle> shared = drv.Export(*src);
    if (!shared.ok()) return Context(shared.status(), "export the source buffer", src_bytes);
    if (absl::Status s = b.MapWhole(*src, src_bytes); !s.ok()) {
      return Context(s, "map the source buffer locally", src_bytes);
    }
    b.src_va_ = b.pieces_.back().va;
    absl::StatusOr<Handle> dst = drv.Create(dst_bytes, HandleKind::kNone);
    if (!dst.ok()) return Context(dst.status(), "create the destination buffer", dst_bytes);
    b.pieces_.push_back({*dst, true});
    if (absl::Status s = b.MapWhole(*dst, dst_bytes); !s.ok()) {
      return Context(s, "map the destination buffer", dst_bytes);
    }
    b.dst_va_ = b.pieces_.back().va;
    b.src_bytes_ = src_bytes;
    b.dst_bytes_ = dst_bytes;

    std::vector<std::vector<SharedHandle>> exported(1);
    exported[0].push_back(*std::move(shared));
    auto received = exchange.Exchange(std::move(exported));
    if (!received.ok()) {
      return absl::Status(received.status().code(),
                          absl::StrCat("exchange the source buffers' handles with every rank: ",
                                       received.status().message()));
    }
    if (received->size() != 1 || static_cast<int64_t>((*received)[0].size()) != c.size) {
      return absl::InternalError("the handle exchange returned the wrong number of ranks");
    }
    for (int64_t peer = 0; peer < c.size; ++peer) {
      if (peer == c.rank) continue;
      if ((*received)[0][peer].size() != 1) {
        return absl::InternalError(absl::StrFormat("rank %d sent %d handles, expected 1", peer,
                                                   (*received)[0][peer].size()));
      }
      const SharedHandle& h = (*received)[0][peer][0];
      absl::StatusOr<Handle> imported = drv.Import(h);
      if (!imported.ok()) {
        return Context(imported.status(), absl::StrCat("import rank ", peer, "'s buffer"),
                       h.bytes());
      }
      b.pieces_.push_back({*imported, true});
      if (absl::Status s = b.MapWhole(*imported, h.bytes()); !s.ok()) {
        return Context(s, absl::StrCat("map rank ", peer, "'s buffer"), h.bytes());
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
    if (absl::Status s = exchange.Barrier(); !s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("barrier after importing the peers' buffers: ", s.message()));
    }
    return buffers;
  }

  CalibrationBuffers(const CalibrationBuffers&) = delete;
  CalibrationBuffers& operator=(const CalibrationBuffers&) = delete;
  ~CalibrationBuffers() { (void)Teardown(); }

  // Unmaps, frees and releases everything; returns the first error (and still does the rest).
  absl::Status Teardown() {
    absl::Status first;
    for (auto it = pieces_.rbegin(); it != pieces_.rend(); ++it) {
      Piece& p = *it;
      if (p.mapped) {
        if (absl::Status s = driver_.Unmap(p.va, p.bytes); !s.ok() && first.ok()) first = s;
        p.mapped = false;
      }
      if (p.va != 0) {
        if (absl::Status s = driver_.Free(p.va, p.bytes); !s.ok() && first.ok()) first = s;
        p.va = 0;
      }
      if (p.has_handle) {
        if (absl::Status s = driver_.Release(p.handle); !s.ok() && first.ok()) first = s;
        p.has_handle = false;
      }
    }
    pieces_.clear();
    return first;
  }

  DevPtr src() const { return src_va_; }
  DevPtr dst() const { return dst_va_; }
  DevPtr peer(int64_t rank) const { return peer_va_[rank]; }
  uint64_t src_bytes() const { return src_bytes_; }
  uint64_t dst_bytes() const { return dst_bytes_; }

 private:
  struct Piece {
    Handle handle;
    bool has_handle = false;
    DevPtr va = 0;
    uint64_t bytes = 0;
    bool mapped = false;
  };

  explicit CalibrationBuffers(Driver& driver) : driver_(driver) {}

  static absl::Status Context(const absl::Status& s, const std::string& what, uint64_t bytes) {
    return absl::Status(s.code(), absl::StrCat(what, " (", FormatBytes(bytes), "): ", s.message()));
  }

  // Reserves a VA range for the last piece's whole handle, maps it and grants access.
  absl::Status MapWhole(Handle handle, uint64_t bytes) {
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

  Driver& driver_;
  std::vector<Piece> pieces_;
  DevPtr src_va_ = 0;
  DevPtr dst_va_ = 0;
  uint64_t src_bytes_ = 0;
  uint64_t dst_bytes_ = 0;
  std::vector<DevPtr> peer_va_;
};

// ---------------------------------------------------------------------------------------------
// Timed work: copies and kernels on a few streams, queued behind a gate kernel.

struct Job {
  enum class Kind { kCopy, kKernel } kind = Kind::kCopy;
  int stream = 0;  // index among the phase's streams
  DevPtr dst = 0;
  DevPtr src = 0;
  uint64_t bytes = 0;  // copy size, or bytes the kernel reads from `src`
  int64_t peer = -1;
  double duration_ns = 0;  // kernel
};

struct JobTiming {
  double issue_ns = 0;  // host clock of the Streams object
  double start_ns = 0;  // GPU clock
  double end_ns = 0;
  double duration() const { return end_ns - start_ns; }
};

struct PhaseOutcome {
  std::vector<JobTiming> jobs;  // in job order; empty for a rank without work
  // The instant of the timeline's origin on this host's steady clock (HostNowNs), so that job
  // times of ranks on one host compare: a job's start there is host_origin_ns + start_ns. NaN
  // when the phase had no jobs.
  double host_origin_ns = std::nan("");
  // The GPU started the first job before the host had issued the last one: the gate kernel was
  // too short and later jobs may include host issue time.
  bool host_fell_behind = false;
  double span_ns() const {
    if (jobs.empty()) return 0;
    double start = jobs.front().start_ns, end = jobs.front().end_ns;
    for (const JobTiming& j : jobs) {
      start = std::min(start, j.start_ns);
      end = std::max(end, j.end_ns);
    }
    return end - start;
  }
};

// Long enough for the host to enqueue everything behind it (a copy with its two timing events
// costs the host about 10 us; 25 us each leaves room), bounded so a phase stays short.
double GateNs(size_t jobs) {
  return std::clamp(200e3 + 25e3 * static_cast<double>(jobs), 300e3, 100e6);
}

// Runs one phase on every rank: each rank passes its own jobs (none when it only watches). The
// barriers make the ranks start together and keep an idle rank from starting the next phase
// while others still copy.
absl::StatusOr<PhaseOutcome> RunPhase(const RankContext& c, const std::string& name,
                                      const std::vector<Job>& jobs) {
  const auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrFormat("rank %d: phase '%s': %s", c.rank, name, s.message()));
  };
  std::unique_ptr<Streams> streams;
  std::vector<StreamId> ids;
  EventId gate_done = 0;
  if (!jobs.empty()) {
    auto created = c.factory.CreateStreams({.rank = c.rank, .timing = true});
    if (!created.ok()) return fail(created.status());
    streams = *std::move(created);
    int num_streams = 1;
    for (const Job& j : jobs) num_streams = std::max(num_streams, j.stream + 1);
    for (int i = 0; i < num_streams; ++i) {
      auto id = streams->CreateStream(absl::StrCat(name, " ", i));
      if (!id.ok()) return fail(id.status());
      ids.push_back(*id);
    }
    auto event = streams->CreateEvent();
    if (!event.ok()) return fail(event.status());
    gate_done = *event;
  }
  if (absl::Status s = c.group.Barrier(); !s.ok()) {
    return fail(absl::Status(s.code(), absl::StrCat("barrier before: ", s.message())));
  }
  PhaseOutcome outcome;
  if (!jobs.empty()) {
    OpTag gate_tag;
    gate_tag.kind = OpKind::kCompute;
    gate_tag.label = "gate";
    // The backend reads its host clock (time since the origin) first thing in Launch: this
    // reading and the gate's issue time are the same instant to within a microsecond.
    const double gate_host_ns = HostNowNs();
    if (absl::Status s =
            streams->Launch({"calibration gate", {}, GateNs(jobs.size())}, ids[0], gate_tag);
        !s.ok()) {
      return fail(s);
    }
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
        KernelLaunch kernel{absl::StrCat(name, " kernel"), {}, j.duration_ns};
        if (j.bytes > 0) kernel.reads.push_back({j.src, j.bytes, false, {}});
        s = streams->Launch(kernel, ids[j.stream], tag);
      }
      if (!s.ok()) return fail(s);
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
  if (absl::Status s = c.group.Barrier(); !s.ok()) {
    return fail(absl::Status(s.code(), absl::StrCat("barrier after: ", s.message())));
  }
  return outcome;
}

// The phases a rank takes part in; what it measured goes to `out` (JSON, gathered by rank 0).
class Calibrator {
 public:
  Calibrator(const RankContext& c, const CalibrationBuffers& b, nlohmann::json& out)
      : c_(c), b_(b), out_(out) {
    out_["warnings"] = nlohmann::json::array();
  }

  absl::Status Run() {
    for (auto step :
         {&Calibrator::WarmUp, &Calibrator::SinglePair, &Calibrator::EgressSharing,
          &Calibrator::IngressConcurrency, &Calibrator::Schedules, &Calibrator::LocalCopy,
          &Calibrator::ComputeStandIn, &Calibrator::ComputeUnderCopies}) {
      if (absl::Status s = (this->*step)(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Host-side costs that involve no peer: every rank measures its own, at the same time.
  absl::Status HostCosts();
  absl::Status StreamQueue();
  // One call of a kind the host-side phases time: a 4 KiB "copy" or a "kernel" (the stand-in
  // at its shortest) on `stream`, a "record" of `event` on it, or a "wait" of it for `event`.
  absl::Status IssueOne(Streams& s, absl::string_view kind, StreamId stream, EventId event,
                        absl::string_view label);
  absl::Status MapCost();

 private:
  uint64_t per_peer_bytes() const { return b_.dst_bytes() / static_cast<uint64_t>(c_.size - 1); }

  void Warn(const std::string& phase, bool fell_behind) {
    if (!fell_behind) return;
    out_["warnings"].push_back(absl::StrFormat(
        "rank %d, phase '%s': the GPU started before the host had issued every operation; "
        "short copies may include host time",
        c_.rank, phase));
  }

  // Repeats a phase repetitions + 1 times and drops the first (first touch of a path: TLBs,
  // copy-engine set-up).
  absl::StatusOr<std::vector<PhaseOutcome>> Repeat(const std::string& name,
                                                   const std::vector<Job>& jobs) {
    std::vector<PhaseOutcome> kept;
    for (int rep = 0; rep <= c_.repetitions; ++rep) {
      absl::StatusOr<PhaseOutcome> o = RunPhase(c_, name, jobs);
      if (!o.ok()) return o.status();
      Warn(name, o->host_fell_behind);
      if (rep > 0) kept.push_back(*std::move(o));
    }
    return kept;
  }

  absl::Status WarmUp() {
    std::vector<Job> jobs;
    for (int64_t p = 0; p < c_.size; ++p) {
      const DevPtr src = p == c_.rank ? b_.src() : b_.peer(p);
      jobs.push_back({Job::Kind::kCopy, 0, b_.dst(), src, 4 * kMiB, p, 0});
    }
    return RunPhase(c_, "warm-up", jobs).status();
  }

  // Rank 0 pulls from rank 1, every size several times, back to back on one stream.
  absl::Status SinglePair() {
    std::vector<Job> jobs;
    std::vector<uint64_t> sizes;
    for (uint64_t s : {256 * kKiB, kMiB, 4 * kMiB, 16 * kMiB, 64 * kMiB, 256 * kMiB, kGiB}) {
      if (s <= b_.src_bytes()) sizes.push_back(s);
    }
    if (c_.rank == 0) {
      for (uint64_t s : sizes) {
        for (int rep = 0; rep <= c_.repetitions; ++rep) {
          jobs.push_back({Job::Kind::kCopy, 0, b_.dst(), b_.peer(1), s, 1, 0});
        }
      }
    }
    absl::StatusOr<PhaseOutcome> o = RunPhase(c_, "single-pair pull", jobs);
    if (!o.ok()) return o.status();
    if (c_.rank != 0) return absl::OkStatus();
    Warn("single-pair pull", o->host_fell_behind);
    nlohmann::json samples = nlohmann::json::array();
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (i % (c_.repetitions + 1) == 0) continue;  // first of each size: warm-up
      samples.push_back({jobs[i].bytes, o->jobs[i].duration()});
    }
    out_["single_pair"] = samples;
    return absl::OkStatus();
  }

  // Every rank but 0 pulls from rank 0 at once: how rank 0's egress is shared.
  absl::Status EgressSharing() {
    std::vector<Job> jobs;
    const uint64_t bytes = per_peer_bytes();
    if (c_.rank != 0) jobs.push_back({Job::Kind::kCopy, 0, b_.dst(), b_.peer(0), bytes, 0, 0});
    auto reps = Repeat("egress sharing", jobs);
    if (!reps.ok()) return reps.status();
    if (c_.rank == 0) return absl::OkStatus();
    // Start and end on the host's steady clock as well: the pullers' union tells how long rank
    // 0's egress was busy (their own durations overlap only in part).
    nlohmann::json ns = nlohmann::json::array(), start = nlohmann::json::array(),
                   end = nlohmann::json::array();
    bool on_host_clock = true;
    for (const PhaseOutcome& o : *reps) {
      ns.push_back(o.jobs[0].duration());
      on_host_clock = on_host_clock && std::isfinite(o.host_origin_ns);
      start.push_back(o.host_origin_ns + o.jobs[0].start_ns);
      end.push_back(o.host_origin_ns + o.jobs[0].end_ns);
    }
    out_["egress"] = {{"bytes", bytes}, {"ns", ns}};
    if (on_host_clock) {
      out_["egress"]["start_ns"] = start;
      out_["egress"]["end_ns"] = end;
    }
    return absl::OkStatus();
  }

  // Rank 0 pulls from every peer at once, one stream per peer.
  absl::Status IngressConcurrency() {
    if (c_.size < 3) return absl::OkStatus();  // one peer: nothing concurrent to measure
    std::vector<Job> jobs;
    const uint64_t bytes = per_peer_bytes();
    if (c_.rank == 0) {
      for (int64_t p = 1; p < c_.size; ++p) {
        jobs.push_back({Job::Kind::kCopy, static_cast<int>(p - 1),
                        b_.dst() + static_cast<uint64_t>(p - 1) * bytes, b_.peer(p), bytes, p, 0});
      }
    }
    auto reps = Repeat("concurrent pulls into one GPU", jobs);
    if (!reps.ok()) return reps.status();
    if (c_.rank != 0) return absl::OkStatus();
    nlohmann::json spans = nlohmann::json::array();
    for (const PhaseOutcome& o : *reps) spans.push_back(o.span_ns());
    out_["ingress"] = {{"bytes_per_peer", bytes}, {"peers", c_.size - 1}, {"span_ns", spans}};
    return absl::OkStatus();
  }

  // The copy schedules of DWDP_SPEC §4, all ranks at once, each pulling `bytes` from every peer.
  absl::Status Schedules() {
    const uint64_t bytes = per_peer_bytes();
    const int64_t d = c_.size;
    const auto slot = [&](int64_t p) {  // destination region of peer p
      return b_.dst() + static_cast<uint64_t>(p < c_.rank ? p : p - 1) * bytes;
    };
    std::map<std::string, std::vector<Job>> schedules;
    for (int64_t k = 1; k < d; ++k) {
      const int64_t p = (c_.rank + k) % d;
      schedules["rotate"].push_back({Job::Kind::kCopy, 0, slot(p), b_.peer(p), bytes, p, 0});
    }
    for (int64_t p = 0; p < d; ++p) {
      if (p == c_.rank) continue;
      schedules["ascending"].push_back({Job::Kind::kCopy, 0, slot(p), b_.peer(p), bytes, p, 0});
      schedules["concurrent streams"].push_back({Job::Kind::kCopy,
                                                 static_cast<int>(p < c_.rank ? p : p - 1), slot(p),
                                                 b_.peer(p), bytes, p, 0});
    }
    // Round robin over the owners in granule-sized pieces, each piece a separate copy.
    const uint64_t piece = c_.driver.granularity();
    for (uint64_t off = 0; off + piece <= bytes; off += piece) {
      for (int64_t k = 1; k < d; ++k) {
        const int64_t p = (c_.rank + k) % d;
        schedules["round_robin pieces"].push_back(
            {Job::Kind::kCopy, 0, slot(p) + off, b_.peer(p) + off, piece, p, 0});
      }
    }
    nlohmann::json result = nlohmann::json::object();
    for (const auto& [name, jobs] : schedules) {
      auto reps = Repeat(absl::StrCat("schedule ", name), jobs);
      if (!reps.ok()) return reps.status();
      nlohmann::json spans = nlohmann::json::array();
      uint64_t moved = 0;
      for (const Job& j : jobs) moved += j.bytes;
      for (const PhaseOutcome& o : *reps) spans.push_back(o.span_ns());
      result[name] = {{"span_ns", spans}, {"bytes", moved}};
    }
    out_["schedules"] = {{"bytes_per_peer", bytes}, {"piece_bytes", piece}, {"runs", result}};
    return absl::OkStatus();
  }

  // Device-to-device on every GPU at once (no GPU shares anything with another here).
  absl::Status LocalCopy() {
    const uint64_t bytes = std::min(b_.src_bytes(), b_.dst_bytes());
    std::vector<Job> jobs;
    for (int rep = 0; rep <= c_.repetitions; ++rep) {
      jobs.push_back({Job::Kind::kCopy, 0, b_.dst(), b_.src(), bytes, c_.rank, 0});
    }
    absl::StatusOr<PhaseOutcome> o = RunPhase(c_, "local copy", jobs);
    if (!o.ok()) return o.status();
    Warn("local copy", o->host_fell_behind);
    nlohmann::json ns = nlohmann::json::array();
    for (size_t i = 1; i < jobs.size(); ++i) ns.push_back(o->jobs[i].duration());
    out_["local_copy"] = {{"bytes", bytes}, {"ns", ns}};
    return absl::OkStatus();
  }

  // How closely the compute stand-in kernel keeps the duration it is given.
  absl::Status ComputeStandIn() {
    std::vector<Job> jobs;
    const std::vector<double> durations = {20e3, 200e3, 2e6};
    for (double d : durations) {
      for (int rep = 0; rep <= c_.repetitions; ++rep) {
        jobs.push_back({Job::Kind::kKernel, 0, 0, 0, 0, -1, d});
      }
    }
    absl::StatusOr<PhaseOutcome> o = RunPhase(c_, "compute stand-in", jobs);
    if (!o.ok()) return o.status();
    nlohmann::json rows = nlohmann::json::array();
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (i % (c_.repetitions + 1) == 0) continue;
      rows.push_back({jobs[i].duration_ns, o->jobs[i].duration()});
    }
    out_["kernel_accuracy"] = rows;
    return absl::OkStatus();
  }

  // Rank 0 runs the stand-in kernel (reads of its own buffer paced over the duration, as in
  // `dwdp run --backend cuda`) alone and while rank 1's buffer is pulled into it; the same for a
  // kernel that only reads (memory bound), for information.
  absl::Status ComputeUnderCopies() {
    const uint64_t read_bytes = AlignDown(b_.src_bytes() / 2, kMiB);
    const uint64_t copy_bytes = std::min(b_.src_bytes(), b_.dst_bytes());
    // The kernel should fit well inside the copy: a third of the copy at 400 GB/s.
    const double duration = std::clamp(static_cast<double>(copy_bytes) / 400.0 / 3.0, 50e3, 2e6);
    nlohmann::json result = nlohmann::json::object();
    for (const auto& [label, kernel_ns] :
         {std::pair<std::string, double>{"paced", duration}, {"read-bound", 0.0}}) {
      for (bool with_copy : {false, true}) {
        std::vector<Job> jobs;
        if (c_.rank == 0) {
          jobs.push_back({Job::Kind::kKernel, 0, 0, b_.src(), read_bytes, -1, kernel_ns});
          if (with_copy) {
            jobs.push_back({Job::Kind::kCopy, 1, b_.dst(), b_.peer(1), copy_bytes, 1, 0});
          }
        }
        const std::string name =
            absl::StrCat("compute ", label, with_copy ? " under an inbound copy" : " alone");
        auto reps = Repeat(name, jobs);
        if (!reps.ok()) return reps.status();
        if (c_.rank != 0) continue;
        nlohmann::json kernel = nlohmann::json::array(), copy_end = nlohmann::json::array();
        for (const PhaseOutcome& o : *reps) {
          kernel.push_back(o.jobs[0].duration());
          // The copy must outlast the kernel, or part of the kernel ran without it.
          if (with_copy) copy_end.push_back(o.jobs[1].end_ns - o.jobs[0].end_ns);
        }
        result[label][with_copy ? "with_copy_ns" : "alone_ns"] = kernel;
        if (with_copy) result[label]["copy_outlasts_kernel_by_ns"] = copy_end;
        result[label]["requested_ns"] = kernel_ns;
        result[label]["read_bytes"] = read_bytes;
      }
    }
    if (c_.rank == 0) out_["compute_under_copies"] = result;
    return absl::OkStatus();
  }

  const RankContext& c_;
  const CalibrationBuffers& b_;
  nlohmann::json& out_;
};

absl::Status Calibrator::IssueOne(Streams& s, absl::string_view kind, StreamId stream,
                                  EventId event, absl::string_view label) {
  OpTag tag;
  tag.label = std::string(label);
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
  return s.Copy(b_.dst(), b_.src(), 4 * kKiB, stream, tag);
}

// Host time per Copy, Record and Wait call with timing events off (the pipeline's own cost), and
// per Copy with them on (what `dwdp run --backend cuda` pays by default).
absl::Status Calibrator::HostCosts() {
  // Few enough that the calls, their timing events included, fit in a stream's queue behind
  // the gate (a full queue would block the host and count GPU time as host time).
  constexpr int kCalls = 128;
  nlohmann::json result = nlohmann::json::object();
  for (bool timing : {false, true}) {
    auto created = c_.factory.CreateStreams({.rank = c_.rank, .timing = timing});
    if (!created.ok()) return created.status();
    Streams& s = **created;
    auto a = s.CreateStream("host cost a");
    auto b = s.CreateStream("host cost b");
    auto e = s.CreateEvent();
    if (!a.ok()) return a.status();
    if (!b.ok()) return b.status();
    if (!e.ok()) return e.status();
    std::map<std::string, std::vector<double>> per_call;
    for (int rep = 0; rep <= c_.repetitions; ++rep) {
      for (const char* what : {"copy", "record", "wait"}) {
        if (timing && std::string(what) != "copy") continue;
        OpTag gate;
        gate.kind = OpKind::kCompute;
        // The GPU stays busy while the host issues, so every call is a pure enqueue.
        if (absl::Status st = s.Launch({"host-cost gate", {}, 5e6}, *a, gate); !st.ok()) return st;
        const double t0 = HostNowNs();
        for (int i = 0; i < kCalls; ++i) {
          // The waits go on the other stream: a stream waiting on its own record is no wait.
          const StreamId on = std::string(what) == "wait" ? *b : *a;
          if (absl::Status st = IssueOne(s, what, on, *e, "host cost"); !st.ok()) return st;
        }
        const double per = (HostNowNs() - t0) / kCalls;
        if (absl::Status st = s.Synchronize(); !st.ok()) return st;
        (void)s.TakeTimeline();
        if (rep > 0) per_call[what].push_back(per);
      }
    }
    for (const auto& [what, values] : per_call) {
      result[timing ? absl::StrCat(what, "_with_timing_events") : what] = values;
    }
  }
  out_["host_ns_per_call"] = result;
  return absl::OkStatus();
}

// How much work a stream holds before the host blocks in the next call: behind a long kernel,
// calls of one kind until one takes far longer than an enqueue, for every kind of call the
// pipeline makes: copies, copies with the timing events `dwdp run --backend cuda` adds, kernel
// launches, event waits and records. The simulator blocks the host there (stream_queue_entries
// and the entries of each kind); a long prefetch can hold the compute launches behind it.
absl::Status Calibrator::StreamQueue() {
  constexpr int kMaxCalls = 16384;
  constexpr double kGateNs = 50e6;    // far longer than kMaxCalls enqueues
  constexpr double kBlockedNs = 1e6;  // an enqueue takes microseconds
  nlohmann::json result = nlohmann::json::object();
  const int repetitions = std::clamp(c_.repetitions, 1, 2);
  for (const char* what : {"copy", "timed_copy", "kernel", "wait", "record"}) {
    const bool timed = std::string(what) == "timed_copy";
    auto created = c_.factory.CreateStreams({.rank = c_.rank, .timing = timed});
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
        const double t0 = HostNowNs();
        if (absl::Status st = IssueOne(s, timed ? "copy" : what, *stream, *event, "stream queue");
            !st.ok()) {
          return st;
        }
        if (HostNowNs() - t0 > kBlockedNs) {
          calls.push_back(i);  // the calls before this one fit
          break;
        }
      }
      if (absl::Status st = s.Synchronize(); !st.ok()) return st;
      (void)s.TakeTimeline();
    }
    // A kind that never blocked takes no room (an empty list says so).
    result[what] = calls;
  }
  out_["stream_queue_calls"] = result;
  return absl::OkStatus();
}

// Host time of cuMemMap, cuMemSetAccess and cuMemUnmap of one granule.
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
  std::vector<double> map, access, unmap;
  absl::Status result;
  const int reps = std::max(10, 4 * c_.repetitions);
  for (int rep = 0; rep <= reps && result.ok(); ++rep) {
    const double t0 = HostNowNs();
    if (result = drv.Map(*va, g, *h, 0); !result.ok()) break;
    const double t1 = HostNowNs();
    result = drv.SetAccess(*va, g);
    const double t2 = HostNowNs();
    absl::Status un = drv.Unmap(*va, g);
    const double t3 = HostNowNs();
    if (result.ok()) result = un;
    if (rep == 0) continue;
    map.push_back(t1 - t0);
    access.push_back(t2 - t1);
    unmap.push_back(t3 - t2);
  }
  absl::Status freed = drv.Free(*va, g);
  absl::Status released = drv.Release(*h);
  if (!result.ok()) return result;
  if (!freed.ok()) return freed;
  if (!released.ok()) return released;
  out_["map_ns"] = {{"bytes", g}, {"map", map}, {"set_access", access}, {"unmap", unmap}};
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Rank 0: the machine's identity for the raw record.

std::string Today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}

// The kernel driver's version ("580.95.05") from /proc; empty where it cannot be read.
std::string KernelDriverVersion() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(in, line)) return "";
  for (absl::string_view token : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    const bool versionish = token.find('.') != absl::string_view::npos &&
                            std::all_of(token.begin(), token.end(), [](char ch) {
                              return (ch >= '0' && ch <= '9') || ch == '.';
                            });
    if (versionish) return std::string(token);
  }
  return "";
}

absl::Status WarmUpDriver(const RankContext& c, HandleExchange& exchange) {
  const uint64_t g = c.driver.granularity();
  auto buffers = CalibrationBuffers::Setup(c, exchange, g, g);
  if (!buffers.ok()) return buffers.status();
  const CalibrationBuffers& b = **buffers;
  std::vector<Job> jobs;
  for (int64_t p = 0; p < c.size; ++p) {
    jobs.push_back({Job::Kind::kCopy, 0, b.dst(), p == c.rank ? b.src() : b.peer(p), g, p, 0});
  }
  jobs.push_back({Job::Kind::kKernel, 0, 0, b.src(), g, -1, 1e3});
  absl::Status s = RunPhase(c, "driver warm-up", jobs).status();
  absl::Status t = (*buffers)->Teardown();
  if (!s.ok()) return s;
  if (!t.ok()) return t;
  // Peers release their imports of this rank's buffer before anyone measures memory.
  return c.group.Barrier();
}

// One rank's whole calibration; returns the exit code. Rank 0 also writes the profile.
int CalibrateRank(cuda::CudaBackendFactory& factory, const CalibrateOptions& opts,
                  const HardwareProfile& base, uint64_t max_bytes) {
  const cuda::CudaProcessInfo& info = factory.process();
  const int64_t world_rank = info.world_rank;
  const auto error = [&](const std::string& message) {
    std::cerr << "error: rank " << world_rank << ": " << message << "\n";
    return kExitInvalid;
  };
  auto group = factory.CreateGroupComm(info.world_size);
  if (!group.ok()) return error(absl::StrCat("group communicator: ", group.status().message()));
  // One rank per GPU, on one node for POSIX-fd handles: checked on every rank, the same answer.
  {
    const std::string me = absl::StrCat(info.hostname, "\t", info.device_ordinal);
    auto all = (*group)->Allgather(std::vector<uint8_t>(me.begin(), me.end()));
    if (!all.ok()) return error(absl::StrCat("gather GPU identities: ", all.status().message()));
    std::map<std::string, int64_t> owner;
    for (size_t r = 0; r < all->size(); ++r) {
      const std::string id((*all)[r].begin(), (*all)[r].end());
      if (auto [it, inserted] = owner.emplace(id, static_cast<int64_t>(r)); !inserted) {
        if (world_rank == 0) {
          std::cerr << absl::StrFormat(
              "error: ranks %d and %d use the same GPU (%s); run one rank per GPU (-np at most "
              "the number of GPUs)\n",
              it->second, r, absl::StrReplaceAll(id, {{"\t", ", device "}}));
        }
        return kExitUsage;
      }
    }
  }
  const int64_t rank = (*group)->rank();
  auto driver = factory.CreateDriver({.rank = rank});
  if (!driver.ok()) return error(std::string(driver.status().message()));
  cuda::HandleExchangeOptions exchange_options;
  exchange_options.timeout_seconds = opts.timeout_s;
  auto exchange =
      factory.CreateHandleExchange(**group, (*driver)->shareable_kind(), exchange_options);
  if (!exchange.ok()) return error(std::string(exchange.status().message()));
  RankContext c{factory, **group, **driver, rank, (*group)->size(), opts.repetitions};
  // Kept by value: the driver is gone by the time rank 0 writes the profile.
  const HandleKind handle_kind = (*driver)->shareable_kind();

  const uint64_t g = (*driver)->granularity();
  const uint64_t src_bytes = std::max(g, AlignDown(max_bytes, g));
  // Multi-peer phases pull half a buffer from each peer into distinct destination regions.
  const uint64_t per_peer = std::max(g, AlignDown(src_bytes / 2, g));
  const uint64_t dst_bytes =
      std::max(src_bytes, per_peer * static_cast<uint64_t>(std::max<int64_t>(1, c.size - 1)));

  // The first VMM map of a peer's memory, kernel and copy make the driver keep some memory for
  // itself; go through them once on granule-sized buffers before taking the baseline that
  // teardown must come back to.
  if (absl::Status s = WarmUpDriver(c, **exchange); !s.ok()) {
    return error(absl::StrCat("driver warm-up: ", s.message()));
  }
  const absl::StatusOr<uint64_t> memory_before = factory.DeviceMemoryInUse();
  int exit_code = kExitOk;
  nlohmann::json out = nlohmann::json::object();
  {
    auto buffers = CalibrationBuffers::Setup(c, **exchange, src_bytes, dst_bytes);
    if (!buffers.ok()) {
      exit_code = error(absl::StrCat("setup: ", buffers.status().message()));
    } else {
      Calibrator calibrator(c, **buffers, out);
      absl::Status s = calibrator.Run();
      if (s.ok()) s = calibrator.HostCosts();
      if (s.ok()) s = calibrator.StreamQueue();
      if (s.ok()) s = calibrator.MapCost();
      if (!s.ok()) exit_code = error(std::string(s.message()));
      if (absl::Status t = (*buffers)->Teardown(); !t.ok()) {
        exit_code = error(absl::StrCat("teardown: ", t.message()));
      }
    }
  }
  // A peer's import keeps this GPU's memory alive until the peer releases it.
  if (absl::Status s = (*group)->Barrier(); !s.ok()) {
    exit_code = error(absl::StrCat("barrier after teardown: ", s.message()));
  }
  auto memory_after = factory.DeviceMemoryInUse();
  if (memory_before.ok() && memory_after.ok()) {
    out["device_memory_before"] = *memory_before;
    out["device_memory_after"] = *memory_after;
    // More in use than before is either a leak or memory the driver keeps after the first large
    // peer mapping. One more setup/teardown of the same buffers tells them apart: a leak grows
    // again, the driver's one-time cost does not. Every rank votes, so all take part or none.
    const bool differs = *memory_after > *memory_before;
    bool any_differs = differs;
    auto votes = (*group)->Allgather(std::vector<uint8_t>{differs ? uint8_t{1} : uint8_t{0}});
    if (votes.ok()) {
      for (const auto& v : *votes) any_differs = any_differs || (!v.empty() && v[0] == 1);
    }
    if (any_differs && votes.ok()) {
      {
        auto again = CalibrationBuffers::Setup(c, **exchange, src_bytes, dst_bytes);
        if (again.ok()) (void)(*again)->Teardown();
      }
      (void)(*group)->Barrier();
      auto memory_again = factory.DeviceMemoryInUse();
      if (memory_again.ok()) {
        out["device_memory_after_second_setup"] = *memory_again;
        if (*memory_again > *memory_after) {
          exit_code = error(absl::StrFormat(
              "device memory in use grows with every setup/teardown: %s before, %s after the "
              "calibration, %s after one more setup/teardown",
              FormatBytes(*memory_before), FormatBytes(*memory_after), FormatBytes(*memory_again)));
        } else {
          out["driver_retained_bytes"] = *memory_after - *memory_before;
        }
      }
    }
  }
  out["hostname"] = info.hostname;  // egress start and end times compare within one host
  out["exit_code"] = exit_code;
  exchange->reset();
  driver->reset();

  const std::string text = out.dump();
  auto gathered = (*group)->Allgather(std::vector<uint8_t>(text.begin(), text.end()));
  if (!gathered.ok()) return error(absl::StrCat("gather results: ", gathered.status().message()));
  if (rank != 0) return exit_code;

  nlohmann::json raw = {
      {"measured_on", MeasuredOnLine(info.device_name, c.size, KernelDriverVersion(),
                                     info.driver_version, Today())},
      // What the derivation needs besides the timings, so --from-raw derives the same profile.
      {"machine",
       {{"base", opts.base},
        {"gpu_name", info.device_name},
        {"gpus", c.size},
        {"device_memory_bytes", info.device_memory_bytes},
        {"granularity", g},
        {"handle_kind", HandleKindName(handle_kind)},
        {"repetitions", opts.repetitions},
        {"buffer_bytes", src_bytes}}},
      {"ranks", nlohmann::json::array()}};
  for (size_t r = 0; r < gathered->size(); ++r) {
    raw["ranks"].push_back(nlohmann::json::parse((*gathered)[r].begin(), (*gathered)[r].end()));
    if (raw["ranks"].back().value("exit_code", kExitInvalid) != kExitOk) {
      std::cerr << absl::StrFormat(
          "error: rank %d did not finish its measurements (its error is above); no profile "
          "written\n",
          r);
      return kExitInvalid;
    }
  }
  // The profile comes from the raw record itself, as `--from-raw` reads it back.
  std::optional<CalibrationDerivation> derived;
  int code = kExitInvalid;
  if (absl::StatusOr<CalibrationRaw> parsed = ParseCalibrationRaw(raw); parsed.ok()) {
    code = WriteCalibratedProfile(*parsed, base, opts, &derived);
  } else {
    std::cerr << "error: the gathered measurements are incomplete: " << parsed.status().message()
              << "; no profile written\n";
  }
  // Kept also when no profile came of it: a fixed dwdp can derive it with --from-raw.
  if (!opts.raw.empty()) {
    if (derived) {
      raw["derived"] = derived->summary;
      raw["notes"] = derived->notes;
      raw["warnings"] = derived->warnings;
    }
    std::ofstream r(opts.raw);
    r << raw.dump(1) << "\n";
    if (!r) {
      std::cerr << "error: cannot write the raw measurements to '" << opts.raw << "'\n";
      return kExitUsage;
    }
    std::cout << "wrote the raw measurements to " << opts.raw << "\n";
  }
  return code != kExitOk ? code : exit_code;
}

int Calibrate(const CalibrateOptions& opts, const HardwareProfile& base, uint64_t max_bytes) {
  auto factory = cuda::LoadCudaBackend();
  if (!factory.ok()) {
    std::cerr << "error: " << factory.status().message() << "\n";
    return kExitUsage;
  }
  cuda::CudaInitOptions init;
  init.timeout_seconds = opts.timeout_s;
  if (absl::Status st = (*factory)->Initialize(init); !st.ok()) {
    std::cerr << "error: " << st.message() << "\n";
    (*factory)->Shutdown(0);
    return kExitUsage;
  }
  const cuda::CudaProcessInfo& info = (*factory)->process();
  if (info.world_size < 2) {
    std::cerr << "error: calibrate measures copies between GPUs and needs at least 2 ranks, one "
                 "per GPU: mpirun -np N dwdp calibrate ... with N >= 2\n";
    (*factory)->Shutdown(0);
    return kExitUsage;
  }
  int exit_code = CalibrateRank(**factory, opts, base, max_bytes);
  // Every rank agrees on the exit code; a failed rank aborts the job (its peers may wait).
  auto codes = (*factory)->world().Allgather(std::vector<uint8_t>{static_cast<uint8_t>(exit_code)});
  if (codes.ok()) {
    for (const auto& code : *codes)
      exit_code = std::max<int>(exit_code, code.empty() ? 1 : code[0]);
  } else if (exit_code == kExitOk) {
    exit_code = kExitInvalid;
  }
  (*factory)->Shutdown(exit_code);
  return exit_code;
}

#else

int Calibrate(const CalibrateOptions&, const HardwareProfile&, uint64_t) {
  std::cerr << "error: this dwdp was built without the cuda backend (the CUDA toolkit or MPI was "
               "not found at build time); calibrate needs it to measure: rebuild with "
               "-DDWDP_CUDA=ON, or derive a profile from a saved run with --from-raw\n";
  return kExitUsage;
}

#endif

}  // namespace

void RegisterCalibrate(CLI::App& app, CommandContext& ctx) {
  auto opts = std::make_shared<CalibrateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate",
      "Measure a hardware profile on this machine's GPUs (cuda backend, mpirun -np N >= 2), or "
      "derive it again from saved raw measurements (--from-raw)");
  cmd->add_option("--out", opts->out, "Profile YAML file to write")->required();
  CLI::Option* base_option = cmd->add_option(
      "--base", opts->base,
      "Preset or profile whose numbers are kept where nothing is measured (with --from-raw: "
      "default the one the run used)");
  base_option->capture_default_str();
  CLI::Option* max_bytes =
      cmd->add_option("--max-bytes", opts->max_bytes,
                      "Size of each rank's shareable buffer = the largest copy measured");
  max_bytes->capture_default_str();
  cmd->add_option("--name", opts->name, "Profile name (default: the --out file's stem)");
  CLI::Option* repetitions =
      cmd->add_option("--repetitions", opts->repetitions, "Timed repetitions of every measurement");
  repetitions->check(CLI::Range(1, 100))->capture_default_str();
  CLI::Option* raw =
      cmd->add_option("--raw", opts->raw, "Also write every rank's raw measurements as JSON");
  CLI::Option* timeout = cmd->add_option(
      "--timeout", opts->timeout_s, "Seconds to wait for a peer in any collective before failing");
  timeout->check(CLI::Range(1.0, 3600.0))->capture_default_str();
  cmd->add_option("--from-raw", opts->from_raw,
                  "Derive the profile from a --raw file of an earlier run instead of measuring "
                  "(no GPU needed)")
      ->excludes(max_bytes)
      ->excludes(repetitions)
      ->excludes(raw)
      ->excludes(timeout);
  cmd->callback([opts, base_option, &ctx] {
    if (!opts->from_raw.empty()) {
      ctx.exit_code = CalibrateFromRaw(*opts, base_option->count() > 0);
      return;
    }
    absl::StatusOr<uint64_t> max_bytes = ParseByteSize(opts->max_bytes);
    if (!max_bytes.ok()) {
      return ReportError(absl::StrCat("--max-bytes: ", max_bytes.status().message()), kExitUsage,
                         ctx);
    }
    if (*max_bytes < 4 * kMiB || *max_bytes > 64 * kGiB) {
      return ReportError(absl::StrFormat("--max-bytes must be between 4 MiB and 64 GiB, got %s",
                                         FormatBytes(*max_bytes)),
                         kExitUsage, ctx);
    }
    absl::StatusOr<HardwareProfile> base = ResolveHardware(opts->base);
    if (!base.ok()) return ReportError(base.status(), kExitUsage, ctx);
    if (absl::Status s = CheckWritable(opts->out); !s.ok()) {
      return ReportError(s, kExitUsage, ctx);
    }
    ctx.exit_code = Calibrate(*opts, *base, *max_bytes);
  });
}

}  // namespace dwdp::cli
