#include "backends/cuda/cuda_streams.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_error.h"
#include "backends/cuda/driver_api.h"
#include "backends/cuda/kernels.h"
#include "core/pattern.h"

namespace dwdp::cuda {
namespace {

// Timing events made up front, enough for a few hundred operations between TakeTimeline calls
// (the pool grows when a forward pass needs more, and then stays that size).
constexpr size_t kInitialTimingEvents = 512;
// Blocks per SM of the fill kernel (256 threads each); the compute kernel's come from its
// occupancy (kernels.h).
constexpr int kFillBlocksPerSm = 8;
constexpr uint64_t kSinkGuard = 0x9E3779B97F4A7C15ull;

std::string Hex(uint64_t va) { return absl::StrFormat("0x%x", va); }

// Operations read the same on both backends (FormatOpTag); an untagged one says so.
std::string Describe(const OpTag& tag) {
  const std::string text = FormatOpTag(tag);
  return text.empty() ? std::string("untagged") : text;
}

}  // namespace

CudaStreams::CudaStreams(const DriverApi* api, const CudaStreamsOptions& options,
                         int device_ordinal, int multiprocessor_count, int compute_blocks)
    : api_(api),
      rank_(options.rank),
      timing_(options.timing),
      device_ordinal_(device_ordinal),
      multiprocessor_count_(multiprocessor_count),
      compute_blocks_(compute_blocks) {}

std::string CudaStreams::Where() const {
  return absl::StrFormat("on device %d (rank %d)", device_ordinal_, rank_);
}

absl::StatusOr<std::unique_ptr<CudaStreams>> CudaStreams::Create(
    const CudaStreamsOptions& options) {
  absl::StatusOr<const DriverApi*> api = LoadDriverApi();
  if (!api.ok()) return api.status();
  absl::StatusOr<int> ordinal = CurrentDevice();
  if (!ordinal.ok()) return ordinal.status();
  if (absl::Status s = UseDevice(*ordinal); !s.ok()) return s;
  CUdevice device = 0;
  if (absl::Status s = CuStatus((*api)->cuDeviceGet(&device, *ordinal),
                                absl::StrFormat("cuDeviceGet(%d)", *ordinal));
      !s.ok()) {
    return s;
  }
  int sms = 0;
  if (absl::Status s = CuStatus(
          (*api)->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device),
          "query the multiprocessor count");
      !s.ok()) {
    return s;
  }
  int compute_blocks_per_sm = 1;
  if (absl::Status s = RuntimeStatus(ComputeBlocksPerSm(&compute_blocks_per_sm),
                                     "query the occupancy of the compute kernel");
      !s.ok()) {
    return s;
  }
  std::unique_ptr<CudaStreams> streams(
      new CudaStreams(*api, options, *ordinal, sms, std::max(1, sms * compute_blocks_per_sm)));
  if (absl::Status s = streams->Initialize(); !s.ok()) return s;
  return streams;
}

absl::Status CudaStreams::Initialize() {
  if (absl::Status s = CuStatus(api_->cuStreamCreate(&origin_stream_, CU_STREAM_NON_BLOCKING),
                                absl::StrCat("cuStreamCreate (internal) ", Where()));
      !s.ok()) {
    return s;
  }
  CUdeviceptr scratch = 0;
  if (absl::Status s = CuStatus(api_->cuMemAlloc(&scratch, 2 * sizeof(uint64_t)),
                                absl::StrCat("cuMemAlloc of the verification buffer ", Where()));
      !s.ok()) {
    return s;
  }
  device_scratch_ = scratch;
  const uint64_t clean[2] = {kNoMismatch, 0};
  if (absl::Status s = CuStatus(api_->cuMemcpyHtoD(scratch, clean, sizeof(clean)),
                                absl::StrCat("reset the verification buffer ", Where()));
      !s.ok()) {
    return s;
  }
  if (!timing_) return absl::OkStatus();

  for (size_t i = 0; i < kInitialTimingEvents; ++i) {
    absl::StatusOr<CUevent_st*> event = AcquireTimingEvent();
    if (!event.ok()) return event.status();
    timing_pool_.push_back(*event);
  }
  if (absl::Status s = CuStatus(api_->cuEventCreate(&origin_, CU_EVENT_DEFAULT),
                                absl::StrCat("cuEventCreate (timing origin) ", Where()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CuStatus(api_->cuEventRecord(origin_, origin_stream_),
                                absl::StrCat("cuEventRecord (timing origin) ", Where()));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CuStatus(api_->cuEventSynchronize(origin_),
                                absl::StrCat("cuEventSynchronize (timing origin) ", Where()));
      !s.ok()) {
    return s;
  }
  // The origin event completed just now: the host clock read here is the same instant, close
  // enough for issue times (microseconds).
  origin_host_ = std::chrono::steady_clock::now();
  return absl::OkStatus();
}

CudaStreams::~CudaStreams() {
  // Errors are ignored: after a fatal device error every call fails, and destruction must
  // still release what it can.
  for (const auto& [id, entry] : streams_) api_->cuStreamSynchronize(entry.stream);
  if (origin_stream_ != nullptr) api_->cuStreamSynchronize(origin_stream_);
  moe_.reset();  // before the streams it enqueued on go
  for (CUevent_st* event : timing_events_) api_->cuEventDestroy(event);
  if (origin_ != nullptr) api_->cuEventDestroy(origin_);
  for (const auto& [id, event] : events_) api_->cuEventDestroy(event);
  for (const auto& [id, entry] : streams_) {
    if (!entry.adopted) api_->cuStreamDestroy(entry.stream);
  }
  if (origin_stream_ != nullptr) api_->cuStreamDestroy(origin_stream_);
  if (device_scratch_ != 0) api_->cuMemFree(device_scratch_);
}

absl::StatusOr<StreamId> CudaStreams::CreateStream(absl::string_view name) {
  CUstream stream = nullptr;
  if (absl::Status s = CuStatus(api_->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING),
                                absl::StrFormat("cuStreamCreate '%s' %s", name, Where()));
      !s.ok()) {
    return s;
  }
  const StreamId id = next_stream_id_++;
  streams_[id] = {stream, std::string(name)};
  return id;
}

absl::StatusOr<StreamId> CudaStreams::AdoptStream(void* stream, absl::string_view name) {
  CUstream native = static_cast<CUstream>(stream);
  for (const auto& [id, entry] : streams_) {
    if (entry.adopted && entry.stream == native) return id;
  }
  const StreamId id = next_stream_id_++;
  streams_[id] = {native, std::string(name), /*adopted=*/true};
  return id;
}

absl::StatusOr<EventId> CudaStreams::CreateEvent() {
  // Synchronisation events carry no timestamps: recording and waiting on them is cheaper.
  CUevent event = nullptr;
  if (absl::Status s = CuStatus(api_->cuEventCreate(&event, CU_EVENT_DISABLE_TIMING),
                                absl::StrCat("cuEventCreate ", Where()));
      !s.ok()) {
    return s;
  }
  const EventId id = next_event_id_++;
  events_[id] = event;
  return id;
}

absl::Status CudaStreams::DestroyEvent(EventId event) {
  auto it = events_.find(event);
  if (it == events_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuEventDestroy of unknown event %d %s: CUDA_ERROR_INVALID_VALUE", event, Where()));
  }
  absl::Status status = CuStatus(api_->cuEventDestroy(it->second),
                                 absl::StrFormat("cuEventDestroy of event %d %s", event, Where()));
  events_.erase(it);
  return status;
}

absl::Status CudaStreams::DestroyStream(StreamId stream) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuStreamDestroy of unknown stream %d %s: CUDA_ERROR_INVALID_VALUE", stream, Where()));
  }
  if (it->second.adopted) {
    streams_.erase(it);  // its owner destroys it
    return absl::OkStatus();
  }
  absl::Status status =
      CuStatus(api_->cuStreamDestroy(it->second.stream),
               absl::StrFormat("cuStreamDestroy of stream '%s' %s", it->second.name, Where()));
  streams_.erase(it);
  return status;
}

absl::StatusOr<const CudaStreams::StreamEntry*> CudaStreams::FindStream(
    StreamId stream, const char* operation) const {
  auto it = streams_.find(stream);
  if (it == streams_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s on unknown stream %d %s: CUDA_ERROR_INVALID_HANDLE", operation, stream, Where()));
  }
  return &it->second;
}

absl::StatusOr<CUevent_st*> CudaStreams::AcquireTimingEvent() {
  if (!timing_pool_.empty()) {
    CUevent_st* event = timing_pool_.back();
    timing_pool_.pop_back();
    return event;
  }
  CUevent event = nullptr;
  if (absl::Status s = CuStatus(api_->cuEventCreate(&event, CU_EVENT_DEFAULT),
                                absl::StrCat("cuEventCreate (timing) ", Where()));
      !s.ok()) {
    return s;
  }
  timing_events_.push_back(event);
  return event;
}

absl::StatusOr<CUevent_st*> CudaStreams::Stamp(CUstream_st* stream, absl::string_view what) {
  if (!timing_) return nullptr;
  absl::StatusOr<CUevent_st*> event = AcquireTimingEvent();
  if (!event.ok()) return event.status();
  if (absl::Status s =
          CuStatus(api_->cuEventRecord(*event, stream),
                   [&] { return absl::StrCat("cuEventRecord (timing of ", what, ") ", Where()); });
      !s.ok()) {
    timing_pool_.push_back(*event);
    return s;
  }
  return *event;
}

double CudaStreams::HostNowNs() const {
  if (!timing_) return 0;
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - origin_host_)
      .count();
}

void CudaStreams::Finish(StreamId stream, const OpTag& tag, uint64_t bytes, double issue_ns,
                         CUevent_st* start, CUevent_st* end) {
  if (!timing_ || end == nullptr) return;
  PendingOp pending;
  pending.op.rank = rank_;
  pending.op.stream = stream;
  pending.op.tag = tag;
  pending.op.bytes = bytes;
  pending.op.issue_ns = issue_ns;
  pending.start = start;
  pending.end = end;
  pending_.push_back(std::move(pending));
}

absl::Status CudaStreams::Record(EventId event, StreamId stream, const OpTag& tag) {
  absl::StatusOr<const StreamEntry*> entry = FindStream(stream, "cuEventRecord");
  if (!entry.ok()) return entry.status();
  auto it = events_.find(event);
  if (it == events_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuEventRecord of unknown event %d on stream '%s' %s: CUDA_ERROR_INVALID_HANDLE", event,
        (*entry)->name, Where()));
  }
  const double issue_ns = HostNowNs();
  if (absl::Status s = CuStatus(api_->cuEventRecord(it->second, (*entry)->stream),
                                [&] {
                                  return absl::StrFormat(
                                      "cuEventRecord of event %d on stream '%s' (%s) %s", event,
                                      (*entry)->name, Describe(tag), Where());
                                });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CUevent_st*> stamp = Stamp((*entry)->stream, "record");
  if (!stamp.ok()) return stamp.status();
  Finish(stream, tag, 0, issue_ns, nullptr, *stamp);
  return absl::OkStatus();
}

absl::Status CudaStreams::Wait(StreamId stream, EventId event, const OpTag& tag) {
  absl::StatusOr<const StreamEntry*> entry = FindStream(stream, "cuStreamWaitEvent");
  if (!entry.ok()) return entry.status();
  auto it = events_.find(event);
  if (it == events_.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cuStreamWaitEvent on unknown event %d on stream '%s' %s: CUDA_ERROR_INVALID_HANDLE", event,
        (*entry)->name, Where()));
  }
  const double issue_ns = HostNowNs();
  absl::StatusOr<CUevent_st*> reached = Stamp((*entry)->stream, "wait");
  if (!reached.ok()) return reached.status();
  if (absl::Status s = CuStatus(api_->cuStreamWaitEvent((*entry)->stream, it->second, 0),
                                [&] {
                                  return absl::StrFormat(
                                      "cuStreamWaitEvent of stream '%s' on event %d (%s) %s",
                                      (*entry)->name, event, Describe(tag), Where());
                                });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CUevent_st*> satisfied = Stamp((*entry)->stream, "wait");
  if (!satisfied.ok()) return satisfied.status();
  Finish(stream, tag, 0, issue_ns, *reached, *satisfied);
  return absl::OkStatus();
}

absl::Status CudaStreams::Copy(DevPtr dst, DevPtr src, uint64_t bytes, StreamId stream,
                               const OpTag& tag) {
  absl::StatusOr<const StreamEntry*> entry = FindStream(stream, "cuMemcpyDtoDAsync");
  if (!entry.ok()) return entry.status();
  if (bytes == 0) return absl::OkStatus();
  const double issue_ns = HostNowNs();
  absl::StatusOr<CUevent_st*> start = Stamp((*entry)->stream, "copy");
  if (!start.ok()) return start.status();
  if (absl::Status s =
          CuStatus(api_->cuMemcpyDtoDAsync(dst, src, bytes, (*entry)->stream),
                   [&] {
                     return absl::StrFormat(
                         "cuMemcpyDtoDAsync of %d bytes from %s to %s on stream '%s' (%s) %s",
                         bytes, Hex(src), Hex(dst), (*entry)->name, Describe(tag), Where());
                   });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CUevent_st*> end = Stamp((*entry)->stream, "copy");
  if (!end.ok()) return end.status();
  Finish(stream, tag, bytes, issue_ns, *start, *end);
  return absl::OkStatus();
}

absl::Status CudaStreams::Fill(DevPtr dst, uint64_t bytes, const PatternRef& pattern,
                               uint64_t tensor_offset, StreamId stream, const OpTag& tag) {
  absl::StatusOr<const StreamEntry*> entry = FindStream(stream, "fill kernel launch");
  if (!entry.ok()) return entry.status();
  if (bytes == 0) return absl::OkStatus();
  const double issue_ns = HostNowNs();
  absl::StatusOr<CUevent_st*> start = Stamp((*entry)->stream, "fill");
  if (!start.ok()) return start.status();
  const int error = LaunchFill((*entry)->stream, dst, bytes, pattern.layer, pattern.weight,
                               pattern.expert_bytes, tensor_offset,
                               std::max(1, multiprocessor_count_ * kFillBlocksPerSm), pattern.kind);
  if (absl::Status s =
          RuntimeStatus(error,
                        [&] {
                          return absl::StrFormat(
                              "fill of %d bytes at %s (layer %d, weight %d, tensor offset %d) "
                              "on stream '%s' (%s) %s",
                              bytes, Hex(dst), pattern.layer, pattern.weight, tensor_offset,
                              (*entry)->name, Describe(tag), Where());
                        });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CUevent_st*> end = Stamp((*entry)->stream, "fill");
  if (!end.ok()) return end.status();
  Finish(stream, tag, bytes, issue_ns, *start, *end);
  return absl::OkStatus();
}

// A rank that never releases the start line would otherwise hold the GPU for good.
constexpr uint64_t kFlagWaitTimeoutNs = 60'000'000'000;

absl::Status CudaStreams::WaitFlag(StreamId stream, DevPtr flag, uint32_t value, const OpTag& tag) {
  absl::StatusOr<const StreamEntry*> entry = FindStream(stream, "flag wait");
  if (!entry.ok()) return entry.status();
  const double issue_ns = HostNowNs();
  absl::StatusOr<CUevent_st*> start = Stamp((*entry)->stream, "flag wait");
  if (!start.ok()) return start.status();
  const int error = LaunchSpinUntil((*entry)->stream, flag, value, kFlagWaitTimeoutNs);
  if (absl::Status s = RuntimeStatus(
          error,
          [&] {
            return absl::StrFormat("flag wait on %s for %d on stream '%s' (%s) %s", Hex(flag),
                                   value, (*entry)->name, Describe(tag), Where());
          });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CUevent_st*> end = Stamp((*entry)->stream, "flag wait");
  if (!end.ok()) return end.status();
  Finish(stream, tag, 0, issue_ns, *start, *end);
  return absl::OkStatus();
}

absl::Status CudaStreams::WriteFlags(absl::Span<const DevPtr> flags, uint32_t value,
                                     StreamId stream, const OpTag& tag) {
  absl::StatusOr<const StreamEntry*> entry = FindStream(stream, "flag write");
  if (!entry.ok()) return entry.status();
  if (flags.empty()) return absl::OkStatus();
  if (flags.size() > static_cast<size_t>(kMaxFlagTargets)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a flag write reaches at most %d words, got %d", kMaxFlagTargets, flags.size()));
  }
  const double issue_ns = HostNowNs();
  absl::StatusOr<CUevent_st*> start = Stamp((*entry)->stream, "flag write");
  if (!start.ok()) return start.status();
  const std::vector<uint64_t> words(flags.begin(), flags.end());
  const int error =
      LaunchWriteFlags((*entry)->stream, words.data(), static_cast<int>(words.size()), value);
  if (absl::Status s = RuntimeStatus(
          error,
          [&] {
            return absl::StrFormat("flag write of %d to %d word(s) on stream '%s' (%s) %s", value,
                                   words.size(), (*entry)->name, Describe(tag), Where());
          });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CUevent_st*> end = Stamp((*entry)->stream, "flag write");
  if (!end.ok()) return end.status();
  Finish(stream, tag, 0, issue_ns, *start, *end);
  return absl::OkStatus();
}

namespace {
MoeExtensionFactory moe_extension_factory = nullptr;
}  // namespace

void SetMoeExtensionFactory(MoeExtensionFactory factory) { moe_extension_factory = factory; }

absl::Status CudaStreams::EnsureMoe() {
  if (moe_ != nullptr) return absl::OkStatus();
  if (moe_extension_factory == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        "this build of the cuda backend has no MoE kernel (libdwdp.so runs the engine's own MoE "
        "kernels; `dwdp run` loads libdwdp_cuda.so, which has it) ",
        Where()));
  }
  moe_ = moe_extension_factory(rank_);
  return absl::OkStatus();
}

absl::Status CudaStreams::PrepareMoe(const MoeKernel& kernel) {
  if (absl::Status s = EnsureMoe(); !s.ok()) return s;
  return moe_->Prepare(kernel);
}

absl::Status CudaStreams::LaunchStandIn(const KernelLaunch& kernel,
                                        const std::vector<KernelRead>& reads, double duration_ns,
                                        CUstream_st* stream, const std::string& where,
                                        const OpTag& tag) {
  size_t verified = 0;
  uint64_t total_bytes = 0;
  for (const KernelRead& read : reads) {
    if (read.verify) {
      ++verified;
      if (read.bytes > kMaxVerifiedReadBytes) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "kernel '%s' verifies a read of %d bytes; at most %d bytes per read can be verified",
            kernel.name, read.bytes, kMaxVerifiedReadBytes));
      }
    }
    total_bytes += read.bytes;
  }
  // The mismatch key has room for kMaxVerifySeq reads between synchronisations; past that, wait
  // for the work so far and keep any mismatch it found for the next Synchronize.
  if (verified > 0 && verified_reads_.size() + verified > kMaxVerifySeq) {
    if (absl::Status s = SynchronizeStreams(); !s.ok()) return s;
    absl::Status found = CollectVerification();
    if (!found.ok() && deferred_error_.ok()) deferred_error_ = found;
  }
  size_t next = 0;
  do {
    ComputeArgs args;
    args.mismatch = reinterpret_cast<uint64_t*>(device_scratch_);
    args.sink = reinterpret_cast<uint64_t*>(device_scratch_) + 1;
    args.sink_guard = kSinkGuard;
    while (next < reads.size() && args.num_reads < kMaxReadsPerLaunch) {
      const KernelRead& read = reads[next++];
      DeviceRead& device_read = args.reads[args.num_reads++];
      device_read.va = read.va;
      device_read.bytes = read.bytes;
      device_read.layer = read.pattern.layer;
      device_read.weight = read.pattern.weight;
      device_read.expert_bytes = read.pattern.expert_bytes == 0 ? 1 : read.pattern.expert_bytes;
      device_read.verify = read.verify ? 1 : 0;
      device_read.pattern_kind = read.pattern.kind;
      if (read.verify) {
        device_read.seq = static_cast<uint32_t>(verified_reads_.size());
        verified_reads_.push_back({read, kernel.name, tag});
      }
    }
    // Reads beyond kMaxReadsPerLaunch go to earlier launches; the last one runs the duration.
    const bool last = next >= reads.size();
    args.duration_ns = last && duration_ns > 0 ? static_cast<uint64_t>(duration_ns) : 0;
    const int error = LaunchCompute(stream, args, compute_blocks_);
    if (absl::Status s = RuntimeStatus(error,
                                       [&] {
                                         return absl::StrFormat(
                                             "launch of kernel '%s' (%d reads, %d bytes) %s",
                                             kernel.name, reads.size(), total_bytes, where);
                                       });
        !s.ok()) {
      return s;
    }
  } while (next < reads.size());
  return absl::OkStatus();
}

absl::Status CudaStreams::Launch(const KernelLaunch& kernel, StreamId stream, const OpTag& tag) {
  absl::StatusOr<const StreamEntry*> entry = FindStream(stream, "kernel launch");
  if (!entry.ok()) return entry.status();
  if (kernel.moe) {
    if (absl::Status s = EnsureMoe(); !s.ok()) return s;
  }
  uint64_t total_bytes = 0;
  for (const KernelRead& read : kernel.reads) total_bytes += read.bytes;
  const std::string where =
      absl::StrFormat("on stream '%s' (%s) %s", (*entry)->name, Describe(tag), Where());
  const double issue_ns = HostNowNs();
  absl::StatusOr<CUevent_st*> start = Stamp((*entry)->stream, "kernel");
  if (!start.ok()) return start.status();
  if (!kernel.moe) {
    if (absl::Status s =
            LaunchStandIn(kernel, kernel.reads, kernel.duration_ns, (*entry)->stream, where, tag);
        !s.ok()) {
      return s;
    }
  } else {
    // The real kernel reads the weights itself; in functional runs the byte check of every
    // tensor runs first, on the same stream (so a wrong byte is named by position, and the
    // kernel's own reference check then covers the arithmetic).
    std::vector<KernelRead> verified;
    for (const KernelRead& read : kernel.reads) {
      if (read.verify) verified.push_back(read);
    }
    if (!verified.empty()) {
      if (absl::Status s = LaunchStandIn(kernel, verified, 0, (*entry)->stream, where, tag);
          !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = moe_->Enqueue(*kernel.moe, (*entry)->stream, tag); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(s.message(), " ", where));
    }
  }
  absl::StatusOr<CUevent_st*> end = Stamp((*entry)->stream, "kernel");
  if (!end.ok()) return end.status();
  Finish(stream, tag, total_bytes, issue_ns, *start, *end);
  return absl::OkStatus();
}

absl::Status CudaStreams::SynchronizeStreams() {
  absl::Status first = absl::OkStatus();
  for (const auto& [id, entry] : streams_) {
    absl::Status s =
        CuStatus(api_->cuStreamSynchronize(entry.stream),
                 absl::StrFormat("work on stream '%s' %s failed", entry.name, Where()));
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

absl::Status CudaStreams::CollectVerification() {
  uint64_t key = kNoMismatch;
  if (absl::Status s = CuStatus(api_->cuMemcpyDtoH(&key, device_scratch_, sizeof(key)),
                                absl::StrCat("read the verification result ", Where()));
      !s.ok()) {
    return s;
  }
  std::vector<VerifiedRead> reads = std::move(verified_reads_);
  verified_reads_.clear();
  if (key == kNoMismatch) return absl::OkStatus();
  const uint64_t clean = kNoMismatch;
  if (absl::Status s = CuStatus(api_->cuMemcpyHtoD(device_scratch_, &clean, sizeof(clean)),
                                absl::StrCat("reset the verification result ", Where()));
      !s.ok()) {
    return s;
  }
  const uint64_t seq = key >> kMismatchSeqShift;
  const uint64_t index = (key >> kMismatchIndexShift) &
                         ((uint64_t{1} << (kMismatchSeqShift - kMismatchIndexShift)) - 1);
  const unsigned got = static_cast<unsigned>(key & 0xFF);
  if (seq >= reads.size()) {
    return absl::DataLossError(absl::StrFormat(
        "verification failed %s: a kernel read a wrong byte (got 0x%02x), but its read %d is "
        "unknown",
        Where(), got, seq));
  }
  const VerifiedRead& bad = reads[seq];
  const PatternRef& pattern = bad.read.pattern;
  const uint64_t eb = pattern.expert_bytes == 0 ? 1 : pattern.expert_bytes;
  const unsigned expected = PatternByte(pattern, index);
  return absl::DataLossError(absl::StrFormat(
      "wrong byte %s: kernel '%s' (%s) read layer %d, weight %d, expert %d, byte offset %d "
      "(tensor byte %d at %s): expected 0x%02x, got 0x%02x",
      Where(), bad.kernel, Describe(bad.tag), pattern.layer, pattern.weight, index / eb, index % eb,
      index, Hex(bad.read.va + index), expected, got));
}

absl::Status CudaStreams::Synchronize() {
  if (absl::Status s = SynchronizeStreams(); !s.ok()) return s;
  absl::Status found = CollectVerification();
  if (moe_ != nullptr && found.ok()) found = moe_->Collect();
  if (!deferred_error_.ok()) {
    absl::Status earlier = std::exchange(deferred_error_, absl::OkStatus());
    return earlier;
  }
  return found;
}

std::vector<TimedOp> CudaStreams::TakeTimeline() {
  std::vector<TimedOp> done;
  if (!timing_) return done;
  std::deque<PendingOp> still_running;
  for (PendingOp& pending : pending_) {
    const CUresult state = api_->cuEventQuery(pending.end);
    if (state == CUDA_ERROR_NOT_READY) {
      still_running.push_back(std::move(pending));
      continue;
    }
    if (state == CUDA_SUCCESS) {
      float end_ms = 0;
      float start_ms = 0;
      const bool have_end = api_->cuEventElapsedTime(&end_ms, origin_, pending.end) == CUDA_SUCCESS;
      const bool have_start =
          pending.start == nullptr ||
          api_->cuEventElapsedTime(&start_ms, origin_, pending.start) == CUDA_SUCCESS;
      if (have_end && have_start) {
        TimedOp op = std::move(pending.op);
        op.end_ns = static_cast<double>(end_ms) * 1e6;
        op.start_ns = pending.start == nullptr ? op.end_ns : static_cast<double>(start_ms) * 1e6;
        done.push_back(std::move(op));
      }
    }
    // Completed or failed (the failure surfaces in Synchronize): the events go back to the pool.
    if (pending.start != nullptr) timing_pool_.push_back(pending.start);
    timing_pool_.push_back(pending.end);
  }
  pending_ = std::move(still_running);
  std::sort(done.begin(), done.end(),
            [](const TimedOp& a, const TimedOp& b) { return a.start_ns < b.start_ns; });
  return done;
}

}  // namespace dwdp::cuda
