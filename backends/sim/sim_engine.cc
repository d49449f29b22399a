#include "backends/sim/sim_engine.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/util/bytes.h"

namespace dwdp::sim {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr const char* kInvalidHandle = "CUDA_ERROR_INVALID_HANDLE";

std::string TagSuffix(const OpTag& tag) {
  const std::string text = FormatOpTag(tag);
  return text.empty() ? "" : absl::StrCat(" [", text, "]");
}

}  // namespace

Engine::Engine(const EngineParams& params, std::vector<SimDriver*> drivers, PhysicalMemory* memory)
    : params_(params), drivers_(std::move(drivers)), memory_(memory) {
  const size_t gpus = drivers_.size();
  ranks_.resize(gpus);
  if (params_.check_hazards || params_.functional) hazards_ = std::make_unique<HazardChecker>();
  links_.resize(gpus);
  for (LinkStats& link : links_) link.bytes_to.assign(gpus, 0);
  // Egress, ingress and local port of every GPU, then the fabric port of the world.
  port_capacity_.assign(3 * gpus + 1, 0);
  port_users_.assign(3 * gpus + 1, 0);
  port_weight_.assign(3 * gpus + 1, 0);
  rng_state_ = 0x9E3779B97F4A7C15ull * (params_.seed + 1);
  port_active_.assign(3 * gpus + 1, 0);
  remote_in_.assign(gpus, 0);
  gpu_has_flow_.assign(gpus, 0);
  gpu_has_kernel_.assign(gpus, 0);
}

Engine::~Engine() = default;

absl::Status Engine::CheckRank(int64_t rank, absl::string_view call) const {
  if (rank < 0 || rank >= num_ranks()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: rank %d is not in the world of %d ranks", call, rank, num_ranks()));
  }
  if (ranks_[rank].in_collective) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s on rank %d: the rank is inside a barrier or allgather that the other ranks have not "
        "joined yet; complete the collective on every rank before enqueuing more work",
        call, rank));
  }
  return absl::OkStatus();
}

absl::StatusOr<Engine::Stream*> Engine::FindStream(int64_t rank, StreamId stream,
                                                   absl::string_view call) {
  if (absl::Status status = CheckRank(rank, call); !status.ok()) return status;
  auto it = ranks_[rank].streams.find(stream);
  if (it == ranks_[rank].streams.end() || it->second->destroyed) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s on rank %d: stream %d does not exist or was destroyed: %s", call, rank,
                        stream, kInvalidHandle));
  }
  return it->second;
}

absl::StatusOr<StreamId> Engine::CreateStream(int64_t rank, absl::string_view name, bool timed) {
  if (absl::Status status = CheckRank(rank, "CreateStream"); !status.ok()) return status;
  RankState& state = ranks_[rank];
  auto stream = std::make_unique<Stream>();
  stream->index = static_cast<uint32_t>(streams_.size());
  stream->rank = rank;
  stream->id = state.next_stream++;
  stream->name = std::string(name);
  stream->timed = timed;
  state.streams.emplace(stream->id, stream.get());
  state.stream_list.push_back(stream.get());
  const StreamId id = stream->id;
  streams_.push_back(std::move(stream));
  return id;
}

absl::Status Engine::DestroyStream(int64_t rank, StreamId stream) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "DestroyStream");
  if (!found.ok()) return found.status();
  // Like cudaStreamDestroy: work already enqueued still runs.
  (*found)->destroyed = true;
  return absl::OkStatus();
}

absl::StatusOr<EventId> Engine::CreateEvent(int64_t rank) {
  if (absl::Status status = CheckRank(rank, "CreateEvent"); !status.ok()) return status;
  RankState& state = ranks_[rank];
  const EventId id = state.next_event++;
  state.events.emplace(id, EventState{});
  return id;
}

absl::Status Engine::DestroyEvent(int64_t rank, EventId event) {
  if (absl::Status status = CheckRank(rank, "DestroyEvent"); !status.ok()) return status;
  if (ranks_[rank].events.erase(event) == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DestroyEvent on rank %d: event %d does not exist: %s", rank, event, kInvalidHandle));
  }
  return absl::OkStatus();
}

const VectorClock& Engine::TickClock(Stream* stream) {
  RankState& rank = ranks_[stream->rank];
  if (stream->joined_host_version != rank.host_version) {
    // Whatever the host has observed (synchronize, barrier) happens before what it enqueues.
    stream->clock.Join(rank.host_clock);
    stream->joined_host_version = rank.host_version;
  }
  stream->clock.Tick(stream->index);
  return stream->clock;
}

int32_t Engine::EntriesOf(const Stream& stream, const Op& op) const {
  const bool timed = params_.timed_streams && stream.timed;
  switch (op.type) {
    case OpType::kRecord:
      return timed ? 2 : 1;  // the record and its timing event
    case OpType::kCopy:
    case OpType::kFill:
      if (op.bytes == 0) return 0;  // the cuda backend enqueues nothing for 0 bytes
      return timed ? 3 : 1;
    case OpType::kWait:
    case OpType::kKernel:
      return timed ? 3 : 1;  // timing events before and after
  }
  return 1;
}

Engine::Op* Engine::Enqueue(Stream* stream, std::unique_ptr<Op> op) {
  RankState& rank = ranks_[stream->rank];
  op->entries = EntriesOf(*stream, *op);
  const int64_t depth = params_.stream_queue_entries;
  if (depth > 0 && !stream->queue.empty() && stream->queued_entries + op->entries > depth) {
    // The stream is full: the host blocks in this call until the earlier work that frees
    // enough entries completes.
    int64_t excess = stream->queued_entries + op->entries - depth;
    Op* trigger = nullptr;
    for (const std::unique_ptr<Op>& queued : stream->queue) {
      trigger = queued.get();
      excess -= queued->entries;
      if (excess <= 0) break;
    }
    auto gate = std::make_shared<HostGate>();
    gate->host_since_ns = rank.gates.empty() ? 0.0 : rank.host_offset_ns;
    rank.host_offset_ns = 0;
    trigger->unblocks.push_back(gate);
    rank.gates.push_back(std::move(gate));
    ++host_blocks_;
  }
  if (rank.gates.empty()) {
    rank.host_ns += params_.host_issue_ns;
    op->issue_ns = rank.host_ns;
    if (op->issue_ns < now_) ++late_issues_;
  } else {
    rank.host_offset_ns += params_.host_issue_ns;
    op->gate = rank.gates.back();
    op->gate_offset_ns = rank.host_offset_ns;
    op->issue_ns = kInfinity;
  }
  op->seq = next_seq_++;
  op->stream = stream;
  ++rank.pending;
  ++total_pending_;
  Op* raw = op.get();
  const bool was_idle = stream->queue.empty();
  stream->queued_entries += raw->entries;
  stream->queue.push_back(std::move(op));
  if (was_idle) Kick(stream);
  return raw;
}

double Engine::IssueTime(Op* op) {
  if (op->gate != nullptr && op->gate->resolved) {
    op->issue_ns = op->gate->ns + op->gate_offset_ns;
    op->gate.reset();
  }
  return op->issue_ns;
}

void Engine::ResolveGates(RankState& rank) {
  while (!rank.gates.empty() && rank.gates.front()->trigger_done) {
    const std::shared_ptr<HostGate> gate = std::move(rank.gates.front());
    rank.gates.pop_front();
    gate->ns = std::max(rank.host_ns + gate->host_since_ns, gate->trigger_end_ns);
    gate->resolved = true;
    rank.host_ns = gate->ns;
    if (rank.gates.empty()) {
      rank.host_ns += rank.host_offset_ns;
      rank.host_offset_ns = 0;
    }
    for (Stream* stream : gate->waiting) Kick(stream);
  }
}

AccessRef Engine::MakeAccessOp(const Op& op, AccessOpType type, DevPtr dst, DevPtr src) {
  auto* access = new AccessOp;
  access->seq = op.seq;
  access->rank = op.stream->rank;
  access->stream = op.stream->id;
  access->stream_name = &op.stream->name;
  access->component = op.stream->index;
  access->clock = op.stream->clock.get(op.stream->index);
  access->type = type;
  access->tag = op.tag;
  access->kernel = op.kernel_name;
  access->dst = dst;
  access->src = src;
  access->bytes = op.bytes;
  return AccessRef(access);
}

void Engine::RecordAccesses(const std::vector<Segment>& segments, AccessKind kind,
                            const AccessRef& op, const VectorClock& clock) {
  for (const Segment& segment : segments) {
    hazards_->Access(segment.allocation_id, segment.allocation->owner_gpu, segment.offset,
                     segment.offset + segment.bytes, kind, op, clock, segment.va);
  }
}

void Engine::BeforeUnmap(int64_t rank, DevPtr va, uint64_t bytes) {
  if (rank < 0 || rank >= num_ranks() || bytes == 0) return;
  const DevPtr end = va + bytes;
  for (Stream* stream : ranks_[rank].stream_list) {
    for (const std::unique_ptr<Op>& op : stream->queue) {
      if (op->faulted) continue;
      for (const auto& [start, length] : op->va_ranges) {
        if (length == 0 || start >= end || va >= start + length) continue;
        op->faulted = true;
        AddError(rank, absl::InternalError(absl::StrFormat(
                           "%s on rank %d stream '%s'%s uses %s, unmapped by the host before the "
                           "operation was known complete (no synchronize or event wait in "
                           "between): illegal address %s: CUDA_ERROR_ILLEGAL_ADDRESS",
                           op->type == OpType::kKernel ? "kernel '" + op->kernel_name + "'"
                           : op->type == OpType::kFill ? std::string("fill")
                                                       : std::string("copy"),
                           rank, stream->name, TagSuffix(op->tag), FormatVa(start),
                           FormatVa(std::max(start, va)))));
        break;
      }
    }
  }
}

void Engine::AddError(int64_t rank, absl::Status status) {
  if (ranks_[rank].first_error.ok()) ranks_[rank].first_error = status;
  errors_.push_back(SimError{rank, now_, std::move(status)});
}

void Engine::ForgetAllocation(uint64_t allocation) {
  if (hazards_) hazards_->Forget(allocation);
}

int64_t Engine::MajorityOwner(const std::vector<Segment>& segments) const {
  if (segments.empty()) return -1;
  const int64_t first = segments.front().allocation->owner_gpu;
  bool single = true;
  for (const Segment& segment : segments) single &= segment.allocation->owner_gpu == first;
  if (single) return first;
  // A range spanning several GPUs' memory is modelled as one flow from the GPU holding most of
  // its bytes (lowest GPU on a tie, for determinism).
  std::vector<uint64_t> per_gpu(drivers_.size(), 0);
  for (const Segment& segment : segments) per_gpu[segment.allocation->owner_gpu] += segment.bytes;
  return std::max_element(per_gpu.begin(), per_gpu.end()) - per_gpu.begin();
}

absl::Status Engine::Record(int64_t rank, EventId event, StreamId stream, const OpTag& tag) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "Record");
  if (!found.ok()) return found.status();
  auto event_it = ranks_[rank].events.find(event);
  if (event_it == ranks_[rank].events.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Record on rank %d: event %d does not exist: %s", rank, event, kInvalidHandle));
  }
  auto op = std::make_unique<Op>();
  op->type = OpType::kRecord;
  op->tag = tag;
  op->record = std::make_shared<RecordState>();
  if (hazards_) event_it->second.clock = TickClock(*found);
  event_it->second.last = op->record;
  Enqueue(*found, std::move(op));
  return absl::OkStatus();
}

absl::Status Engine::Wait(int64_t rank, StreamId stream, EventId event, const OpTag& tag) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "Wait");
  if (!found.ok()) return found.status();
  auto event_it = ranks_[rank].events.find(event);
  if (event_it == ranks_[rank].events.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Wait on rank %d: event %d does not exist: %s", rank, event, kInvalidHandle));
  }
  auto op = std::make_unique<Op>();
  op->type = OpType::kWait;
  op->tag = tag;
  // The record enqueued last before this wait; a later record of the event does not matter.
  op->record = event_it->second.last;
  if (hazards_) {
    (*found)->clock.Join(event_it->second.clock);
    TickClock(*found);
  }
  Enqueue(*found, std::move(op));
  return absl::OkStatus();
}

absl::StatusOr<Engine::FlagKey> Engine::ResolveFlag(int64_t rank, DevPtr flag, uint32_t value,
                                                    absl::string_view call) const {
  std::vector<Segment> segments;
  if (absl::Status s = drivers_[rank]->Resolve(flag, sizeof(uint32_t), &segments); !s.ok()) {
    return absl::Status(s.code(), absl::StrFormat("%s on rank %d: the flag word at 0x%x: %s", call,
                                                  rank, flag, s.message()));
  }
  if (segments.size() != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s on rank %d: the flag word at 0x%x straddles two allocations", call, rank, flag));
  }
  return FlagKey{segments[0].allocation_id, segments[0].offset, value};
}

absl::Status Engine::WaitFlag(int64_t rank, StreamId stream, DevPtr flag, uint32_t value,
                              const OpTag& tag) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "WaitFlag");
  if (!found.ok()) return found.status();
  absl::StatusOr<FlagKey> key = ResolveFlag(rank, flag, value, "WaitFlag");
  if (!key.ok()) return key.status();
  std::shared_ptr<RecordState>& state = flags_[*key];
  if (state == nullptr) state = std::make_shared<RecordState>();
  auto op = std::make_unique<Op>();
  op->type = OpType::kWait;
  op->tag = tag;
  op->record = state;
  if (hazards_) TickClock(*found);
  Enqueue(*found, std::move(op));
  return absl::OkStatus();
}

absl::Status Engine::WriteFlags(int64_t rank, absl::Span<const DevPtr> flags, uint32_t value,
                                StreamId stream, const OpTag& tag) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "WriteFlags");
  if (!found.ok()) return found.status();
  if (flags.empty()) return absl::OkStatus();
  // One operation writes every word at once (one kernel on a GPU).
  auto op = std::make_unique<Op>();
  op->type = OpType::kRecord;
  op->tag = tag;
  for (DevPtr flag : flags) {
    absl::StatusOr<FlagKey> key = ResolveFlag(rank, flag, value, "WriteFlags");
    if (!key.ok()) return key.status();
    // The word holds one value: a completed write of another value is no longer true.
    absl::erase_if(flags_, [&](const auto& entry) {
      return entry.first.allocation == key->allocation && entry.first.offset == key->offset &&
             entry.first.value != value && entry.second->done;
    });
    std::shared_ptr<RecordState>& state = flags_[*key];
    if (state == nullptr || state->done) state = std::make_shared<RecordState>();
    if (op->record == nullptr) {
      op->record = state;
    } else {
      op->also_records.push_back(state);
    }
  }
  if (hazards_) TickClock(*found);
  Enqueue(*found, std::move(op));
  return absl::OkStatus();
}

absl::Status Engine::Copy(int64_t rank, DevPtr dst, DevPtr src, uint64_t bytes, StreamId stream,
                          const OpTag& tag) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "Copy");
  if (!found.ok()) return found.status();
  auto op = std::make_unique<Op>();
  op->type = OpType::kCopy;
  op->tag = tag;
  op->bytes = bytes;
  scratch_src_.clear();
  scratch_dst_.clear();
  absl::Status resolved = drivers_[rank]->Resolve(src, bytes, &scratch_src_);
  if (resolved.ok()) resolved = drivers_[rank]->Resolve(dst, bytes, &scratch_dst_);
  if (!resolved.ok()) {
    op->faulted = true;
    op->src_gpu = op->dst_gpu = rank;
  } else {
    op->src_gpu = bytes == 0 ? rank : MajorityOwner(scratch_src_);
    op->dst_gpu = bytes == 0 ? rank : MajorityOwner(scratch_dst_);
  }
  if (hazards_) {
    const VectorClock& clock = TickClock(*found);
    if (!op->faulted) {
      op->seq = next_seq_;  // Enqueue assigns this same number
      op->stream = *found;
      const AccessRef access = MakeAccessOp(*op, AccessOpType::kCopy, dst, src);
      RecordAccesses(scratch_src_, AccessKind::kRead, access, clock);
      RecordAccesses(scratch_dst_, AccessKind::kWrite, access, clock);
    }
  }
  if (params_.functional && !op->faulted) {
    op->src = scratch_src_;
    op->dst = scratch_dst_;
  }
  op->va_ranges = {{dst, bytes}, {src, bytes}};
  const Op* queued = Enqueue(*found, std::move(op));
  if (!resolved.ok()) {
    AddError(rank,
             absl::Status(resolved.code(),
                          absl::StrFormat("copy %s <- %s (%d bytes) on rank %d stream '%s'%s: %s",
                                          FormatVa(dst), FormatVa(src), bytes, rank, (*found)->name,
                                          TagSuffix(queued->tag), resolved.message())));
  }
  return absl::OkStatus();
}

absl::Status Engine::Fill(int64_t rank, DevPtr dst, uint64_t bytes, const PatternRef& pattern,
                          uint64_t tensor_offset, StreamId stream, const OpTag& tag) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "Fill");
  if (!found.ok()) return found.status();
  auto op = std::make_unique<Op>();
  op->type = OpType::kFill;
  op->tag = tag;
  op->bytes = bytes;
  op->pattern = pattern;
  op->tensor_offset = tensor_offset;
  op->src_gpu = op->dst_gpu = rank;
  scratch_dst_.clear();
  const absl::Status resolved = drivers_[rank]->Resolve(dst, bytes, &scratch_dst_);
  if (!resolved.ok()) {
    op->faulted = true;
  } else if (bytes > 0) {
    op->src_gpu = op->dst_gpu = MajorityOwner(scratch_dst_);
  }
  if (hazards_) {
    const VectorClock& clock = TickClock(*found);
    if (!op->faulted) {
      op->seq = next_seq_;
      op->stream = *found;
      const AccessRef access = MakeAccessOp(*op, AccessOpType::kFill, dst, 0);
      RecordAccesses(scratch_dst_, AccessKind::kWrite, access, clock);
    }
  }
  if (params_.functional && !op->faulted) op->dst = scratch_dst_;
  op->va_ranges = {{dst, bytes}};
  const Op* queued = Enqueue(*found, std::move(op));
  if (!resolved.ok()) {
    AddError(rank, absl::Status(resolved.code(),
                                absl::StrFormat("fill %s (%d bytes) on rank %d stream '%s'%s: %s",
                                                FormatVa(dst), bytes, rank, (*found)->name,
                                                TagSuffix(queued->tag), resolved.message())));
  }
  return absl::OkStatus();
}

absl::Status Engine::Launch(int64_t rank, const KernelLaunch& kernel, StreamId stream,
                            const OpTag& tag) {
  absl::StatusOr<Stream*> found = FindStream(rank, stream, "Launch");
  if (!found.ok()) return found.status();
  auto op = std::make_unique<Op>();
  op->type = OpType::kKernel;
  op->tag = tag;
  op->kernel_name = kernel.name;
  double read_bytes = 0;
  for (const KernelRead& read : kernel.reads) read_bytes += static_cast<double>(read.bytes);
  const double read_floor_ns =
      params_.compute_read_bw > 0 ? read_bytes / params_.compute_read_bw * 1e9 : 0.0;
  op->remaining = std::max({0.0, kernel.duration_ns, read_floor_ns});
  op->src_gpu = op->dst_gpu = rank;
  scratch_src_.clear();
  absl::Status resolved;
  for (const KernelRead& read : kernel.reads) {
    op->va_ranges.emplace_back(read.va, read.bytes);
    const size_t first_segment = scratch_src_.size();
    resolved = drivers_[rank]->Resolve(read.va, read.bytes, &scratch_src_);
    if (!resolved.ok()) {
      op->faulted = true;
      op->verify.clear();
      break;
    }
    if (params_.functional && read.verify) {
      VerifyRead verify;
      verify.pattern = read.pattern;
      verify.va = read.va;
      verify.segments.assign(scratch_src_.begin() + first_segment, scratch_src_.end());
      op->verify.push_back(std::move(verify));
    }
  }
  if (hazards_) {
    const VectorClock& clock = TickClock(*found);
    if (!op->faulted) {
      op->seq = next_seq_;
      op->stream = *found;
      const AccessRef access = MakeAccessOp(*op, AccessOpType::kKernel, 0, 0);
      RecordAccesses(scratch_src_, AccessKind::kRead, access, clock);
    }
  }
  const Op* queued = Enqueue(*found, std::move(op));
  if (!resolved.ok()) {
    AddError(rank, absl::Status(resolved.code(),
                                absl::StrFormat("kernel '%s' on rank %d stream '%s'%s: %s",
                                                kernel.name, rank, (*found)->name,
                                                TagSuffix(queued->tag), resolved.message())));
  }
  return absl::OkStatus();
}

absl::Status Engine::Synchronize(int64_t rank) {
  if (absl::Status status = CheckRank(rank, "Synchronize"); !status.ok()) return status;
  RankState& state = ranks_[rank];
  if (absl::Status status = Run([&state] { return state.pending == 0; }); !status.ok()) {
    return status;
  }
  // Every operation completed, so every host gate of the rank resolved.
  state.host_ns = std::max(state.host_ns, state.last_end_ns);
  if (hazards_) {
    for (const Stream* stream : state.stream_list) state.host_clock.Join(stream->clock);
    ++state.host_version;
  }
  return state.first_error;
}

absl::Status Engine::RunUntilIdle() {
  if (absl::Status status = Run([this] { return total_pending_ == 0; }); !status.ok()) {
    return status;
  }
  return errors_.empty() ? absl::OkStatus() : errors_.front().status;
}

std::vector<TimedOp> Engine::TakeTimeline(int64_t rank) {
  if (rank < 0 || rank >= num_ranks()) return {};
  return std::exchange(ranks_[rank].timeline, {});
}

void Engine::JoinHosts(const std::vector<int64_t>& ranks) {
  // A host blocked on a full stream reaches the collective when its gates open.
  for (int64_t rank : ranks) {
    RankState& state = ranks_[rank];
    if (!state.gates.empty()) (void)Run([&state] { return state.gates.empty(); });
  }
  double latest = 0;
  VectorClock joined;
  for (int64_t rank : ranks) {
    latest = std::max(latest, ranks_[rank].host_ns);
    if (hazards_) joined.Join(ranks_[rank].host_clock);
  }
  for (int64_t rank : ranks) {
    ranks_[rank].host_ns = latest;
    if (hazards_) {
      ranks_[rank].host_clock = joined;
      ++ranks_[rank].host_version;
    }
  }
}

double Engine::SettledHostNs(int64_t rank) {
  RankState& state = ranks_[rank];
  if (!state.gates.empty()) (void)Run([&state] { return state.gates.empty(); });
  return state.host_ns;
}

void Engine::set_in_collective(int64_t rank, bool in_collective) {
  ranks_[rank].in_collective = in_collective;
}

// ---------------------------------------------------------------------------------------------
// Simulation.

void Engine::Schedule(double t, TimerKind kind, Stream* stream, Op* op) {
  timers_.push(Timer{t, next_timer_seq_++, kind, stream, op});
}

void Engine::Kick(Stream* stream) {
  if (stream->busy || stream->queue.empty()) return;
  Op* head = stream->queue.front().get();
  const double issue_ns = IssueTime(head);
  if (issue_ns == kInfinity) {
    // Not issued yet: its host is blocked; the gate kicks the stream when it opens.
    std::vector<Stream*>& waiting = head->gate->waiting;
    if (std::find(waiting.begin(), waiting.end(), stream) == waiting.end()) {
      waiting.push_back(stream);
    }
    return;
  }
  const double t = std::max(now_, issue_ns);
  if (stream->kick_at == t) return;
  stream->kick_at = t;
  Schedule(t, TimerKind::kKick, stream, nullptr);
}

void Engine::StartHead(Stream* stream) {
  Op* op = stream->queue.front().get();
  stream->busy = true;
  op->start_ns = now_;
  switch (op->type) {
    case OpType::kRecord:
      Schedule(now_ + params_.event_ns, TimerKind::kComplete, stream, op);
      break;
    case OpType::kWait:
      if (op->record == nullptr || op->record->done) {
        const double satisfied = op->record == nullptr ? 0 : op->record->end_ns;
        Schedule(std::max(now_ + params_.event_ns, satisfied), TimerKind::kComplete, stream, op);
      } else {
        op->record->waiters.push_back(op);
      }
      break;
    case OpType::kCopy: {
      const double stream_delay_ns = CopyLatencyNs(op) * (1.0 - params_.copy_latency_on_link);
      if (stream_delay_ns > 0) {
        Schedule(now_ + stream_delay_ns, TimerKind::kBeginFlow, stream, op);
      } else {
        BeginFlow(op);
      }
      break;
    }
    case OpType::kFill:
      BeginFlow(op);
      break;
    case OpType::kKernel:
      if (params_.functional && !op->faulted) Verify(op);
      if (op->faulted || op->remaining <= 0) {
        Schedule(now_, TimerKind::kComplete, stream, op);
      } else {
        op->finish_ns = kInfinity;
        kernels_.push_back(op);
        rates_dirty_ = true;
      }
      break;
  }
}

double Engine::CopyLatencyNs(const Op* op) const {
  if (op->src_gpu == op->dst_gpu || params_.copy_latency_loaded_ns <= 0) {
    return params_.copy_latency_ns;
  }
  for (const Op* flow : flows_) {
    if (flow == op || flow->src_gpu == flow->dst_gpu) continue;
    if (flow->src_gpu == op->src_gpu || flow->src_gpu == op->dst_gpu ||
        flow->dst_gpu == op->src_gpu || flow->dst_gpu == op->dst_gpu) {
      return params_.copy_latency_loaded_ns;
    }
  }
  return params_.copy_latency_ns;
}

void Engine::BeginFlow(Op* op) {
  // The part of a copy's fixed cost that occupies its path, as bytes at the port's full rate:
  // uncontended it costs exactly that time, shared k ways it stretches k times like the bytes.
  const double overhead_bytes =
      op->type != OpType::kCopy
          ? 0.0
          : CopyLatencyNs(op) * params_.copy_latency_on_link *
                (op->src_gpu != op->dst_gpu ? params_.peer_copy_bw : params_.local_copy_bw) / 1e9;
  if (op->faulted || op->bytes + overhead_bytes <= 0) {
    Schedule(now_, TimerKind::kComplete, op->stream, op);
    return;
  }
  op->remaining = static_cast<double>(op->bytes) + overhead_bytes;
  if (op->src_gpu != op->dst_gpu && overhead_bytes > 0) {
    // A pull's fixed cost is the puller's: its copy engine sets up and waits for the first
    // reads to come back, which takes its ingress and the fabric but not the source's egress.
    // Three GPUs pulling small pieces from one peer are no slower than from three (measured on
    // 4x H200: round robin in rank order and in rotate order both 3.1x the ideal); counted on
    // the egress too, the rank order came out 16% slow.
    op->remaining = overhead_bytes;
    op->in_overhead = true;
  }
  if (params_.fabric_share_spread > 0 && op->src_gpu != op->dst_gpu) {
    op->weight = DrawShareWeight();
  }
  op->finish_ns = kInfinity;
  flows_.push_back(op);
  rates_dirty_ = true;
}

double Engine::DrawShareWeight() {
  // xorshift64 and Box-Muller, written out so the draws are the same with every standard
  // library.
  const auto uniform = [this] {
    rng_state_ ^= rng_state_ << 13;
    rng_state_ ^= rng_state_ >> 7;
    rng_state_ ^= rng_state_ << 17;
    return (static_cast<double>(rng_state_ >> 11) + 0.5) / 9007199254740992.0;  // (0, 1)
  };
  const double u1 = uniform();
  const double u2 = uniform();
  const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2);
  // Log-normal with mean 1 and coefficient of variation cv: sigma^2 = ln(1 + cv^2).
  const double cv = params_.fabric_share_spread;
  const double sigma = std::sqrt(std::log1p(cv * cv));
  return std::exp(sigma * z - sigma * sigma / 2);
}

void Engine::CompleteOp(Op* op) {
  op->end_ns = now_;
  Stream* stream = op->stream;
  RankState& rank = ranks_[stream->rank];
  switch (op->type) {
    case OpType::kRecord:
      op->also_records.push_back(op->record);
      for (const std::shared_ptr<RecordState>& record : op->also_records) {
        record->done = true;
        record->end_ns = now_;
        for (Op* waiter : record->waiters) {
          Schedule(std::max(now_, waiter->start_ns + params_.event_ns), TimerKind::kComplete,
                   waiter->stream, waiter);
        }
        record->waiters.clear();
      }
      break;
    case OpType::kCopy:
    case OpType::kFill:
      if (params_.functional && !op->faulted) MoveBytes(op);
      break;
    case OpType::kWait:
    case OpType::kKernel:
      break;
  }
  if (params_.record_timeline) {
    rank.timeline.push_back(
        TimedOp{stream->rank, stream->id, op->tag,
                op->type == OpType::kCopy || op->type == OpType::kFill ? op->bytes : 0,
                op->issue_ns, op->start_ns, op->end_ns});
  }
  rank.last_end_ns = std::max(rank.last_end_ns, now_);
  stream->queued_entries -= op->entries;
  if (!op->unblocks.empty()) {
    for (const std::shared_ptr<HostGate>& gate : op->unblocks) {
      gate->trigger_done = true;
      gate->trigger_end_ns = now_;
    }
    op->unblocks.clear();
    ResolveGates(rank);
  }
  --rank.pending;
  --total_pending_;
  ++ops_completed_;
  std::unique_ptr<Op> done = std::move(stream->queue.front());
  stream->queue.pop_front();
  stream->busy = false;
  if (!stream->queue.empty()) {
    if (IssueTime(stream->queue.front().get()) <= now_) {
      StartHead(stream);
    } else {
      Kick(stream);
    }
  }
}

void Engine::RecomputeRates() {
  const size_t gpus = drivers_.size();
  const auto egress = [](int64_t gpu) { return static_cast<size_t>(gpu); };
  const auto ingress = [gpus](int64_t gpu) { return gpus + static_cast<size_t>(gpu); };
  const auto local = [gpus](int64_t gpu) { return 2 * gpus + static_cast<size_t>(gpu); };
  const size_t fabric = 3 * gpus;  // one port for the whole world
  const bool fabric_limited = params_.fabric_bw > 0;
  // The ports a flow goes through: a remote flow leaves its source's egress and enters its
  // destination's ingress (and, with a fabric limit, shares the world's fabric port); a local
  // one uses its GPU's HBM copy port.
  const auto ports_of = [&](const Op* flow, std::array<size_t, 3>& ports) -> size_t {
    if (flow->src_gpu == flow->dst_gpu) {
      ports[0] = local(flow->dst_gpu);
      return 1;
    }
    if (flow->in_overhead) {
      ports[0] = ingress(flow->dst_gpu);
      if (!fabric_limited) return 1;
      ports[1] = fabric;
      return 2;
    }
    ports[0] = egress(flow->src_gpu);
    ports[1] = ingress(flow->dst_gpu);
    if (!fabric_limited) return 2;
    ports[2] = fabric;
    return 3;
  };

  std::fill(remote_in_.begin(), remote_in_.end(), 0);
  std::fill(gpu_has_flow_.begin(), gpu_has_flow_.end(), 0);
  std::fill(gpu_has_kernel_.begin(), gpu_has_kernel_.end(), 0);
  std::fill(port_users_.begin(), port_users_.end(), 0);
  std::fill(port_weight_.begin(), port_weight_.end(), 0.0);
  std::array<size_t, 3> ports{};
  for (const Op* flow : flows_) {
    gpu_has_flow_[flow->src_gpu] = 1;
    gpu_has_flow_[flow->dst_gpu] = 1;
    if (flow->src_gpu != flow->dst_gpu) ++remote_in_[flow->dst_gpu];
    const size_t n = ports_of(flow, ports);
    for (size_t i = 0; i < n; ++i) {
      ++port_users_[ports[i]];
      port_weight_[ports[i]] += flow->weight;
    }
  }
  for (size_t gpu = 0; gpu < gpus; ++gpu) {
    // Simulated time is in ns: capacities in bytes per ns.
    port_capacity_[egress(gpu)] =
        params_.egress_bw / 1e9 *
        (port_users_[egress(gpu)] >= 2 ? params_.egress_fanout_efficiency : 1.0);
    port_capacity_[ingress(gpu)] =
        params_.peer_copy_bw / 1e9 *
        (remote_in_[gpu] >= 2 ? params_.concurrent_pull_efficiency : 1.0);
    port_capacity_[local(gpu)] = params_.local_copy_bw / 1e9;
  }
  // Pooled: a GPU that is busier than the others may use what they leave of the fabric.
  port_capacity_[fabric] = params_.fabric_bw / 1e9 * static_cast<double>(gpus);
  port_active_ = port_users_;

  // Progressive filling: raise every unfrozen flow's rate together, in proportion to its
  // weight (all 1 without a share spread), until a port saturates; freeze the flows through
  // it, repeat.
  for (Op* flow : flows_) flow->rate = -1;
  size_t unfrozen = flows_.size();
  while (unfrozen > 0) {
    double best_share = kInfinity;
    size_t best_port = 0;
    for (size_t port = 0; port < port_users_.size(); ++port) {
      if (port_users_[port] <= 0) continue;
      const double share = std::max(0.0, port_capacity_[port]) / port_weight_[port];
      if (share < best_share) {
        best_share = share;
        best_port = port;
      }
    }
    for (Op* flow : flows_) {
      if (flow->rate >= 0) continue;
      const size_t n = ports_of(flow, ports);
      if (std::find(ports.begin(), ports.begin() + n, best_port) == ports.begin() + n) continue;
      flow->rate = best_share * flow->weight;
      --unfrozen;
      for (size_t i = 0; i < n; ++i) {
        port_capacity_[ports[i]] -= flow->rate;
        port_weight_[ports[i]] -= flow->weight;
        --port_users_[ports[i]];
      }
    }
  }
  for (Op* flow : flows_) flow->finish_ns = now_ + flow->remaining / flow->rate;

  const double slowed = 1.0 / (1.0 + params_.compute_slowdown);
  for (Op* kernel : kernels_) {
    gpu_has_kernel_[kernel->dst_gpu] = 1;
    kernel->rate = gpu_has_flow_[kernel->dst_gpu] ? slowed : 1.0;
    kernel->finish_ns = now_ + kernel->remaining / kernel->rate;
  }
  rates_dirty_ = false;
}

void Engine::AdvanceTo(double t) {
  const double dt = t - now_;
  for (Op* flow : flows_) flow->remaining = std::max(0.0, flow->remaining - flow->rate * dt);
  for (Op* kernel : kernels_) {
    kernel->remaining = std::max(0.0, kernel->remaining - kernel->rate * dt);
  }
  const size_t gpus = drivers_.size();
  for (size_t gpu = 0; gpu < gpus; ++gpu) {
    LinkStats& link = links_[gpu];
    if (port_active_[gpu] > 0) link.egress_busy_ns += dt;
    if (port_active_[gpus + gpu] > 0) link.ingress_busy_ns += dt;
    if (port_active_[2 * gpus + gpu] > 0) link.local_busy_ns += dt;
    if (gpu_has_kernel_[gpu]) link.compute_busy_ns += dt;
  }
  now_ = t;
}

template <typename Done>
absl::Status Engine::Run(Done done) {
  while (!done()) {
    if (rates_dirty_) RecomputeRates();
    double t = timers_.empty() ? kInfinity : timers_.top().t;
    for (const Op* flow : flows_) t = std::min(t, flow->finish_ns);
    for (const Op* kernel : kernels_) t = std::min(t, kernel->finish_ns);
    if (t == kInfinity) {
      return absl::InternalError(
          absl::StrCat("the simulation cannot make progress: ", DescribeStuck()));
    }
    if (t > now_) AdvanceTo(t);

    finished_.clear();
    size_t kept = 0;
    for (Op* flow : flows_) {
      if (flow->finish_ns <= now_ && flow->in_overhead && flow->bytes > 0) {
        flow->in_overhead = false;
        flow->remaining = static_cast<double>(flow->bytes);
        flow->finish_ns = kInfinity;
        rates_dirty_ = true;
        flows_[kept++] = flow;
      } else if (flow->finish_ns <= now_) {
        finished_.push_back(flow);
      } else {
        flows_[kept++] = flow;
      }
    }
    flows_.resize(kept);
    const size_t finished_flows = finished_.size();
    kept = 0;
    for (Op* kernel : kernels_) {
      if (kernel->finish_ns <= now_) {
        finished_.push_back(kernel);
      } else {
        kernels_[kept++] = kernel;
      }
    }
    kernels_.resize(kept);
    if (!finished_.empty()) rates_dirty_ = true;
    for (size_t i = 0; i < finished_.size(); ++i) {
      Op* op = finished_[i];
      if (i < finished_flows) {
        LinkStats& src = links_[op->src_gpu];
        if (op->src_gpu != op->dst_gpu) {
          src.egress_bytes += op->bytes;
          src.bytes_to[op->dst_gpu] += op->bytes;
          links_[op->dst_gpu].ingress_bytes += op->bytes;
        } else {
          src.local_bytes += op->bytes;
        }
      }
      CompleteOp(op);
    }

    while (!timers_.empty() && timers_.top().t <= now_) {
      const Timer timer = timers_.top();
      timers_.pop();
      switch (timer.kind) {
        case TimerKind::kKick:
          timer.stream->kick_at = -1;
          if (!timer.stream->busy && !timer.stream->queue.empty() &&
              IssueTime(timer.stream->queue.front().get()) <= now_) {
            StartHead(timer.stream);
          } else {
            Kick(timer.stream);
          }
          break;
        case TimerKind::kBeginFlow:
          BeginFlow(timer.op);
          break;
        case TimerKind::kComplete:
          CompleteOp(timer.op);
          break;
      }
    }
  }
  return absl::OkStatus();
}

std::string Engine::DescribeStuck() const {
  std::string out;
  for (const auto& stream : streams_) {
    if (stream->queue.empty()) continue;
    const Op& head = *stream->queue.front();
    absl::StrAppendFormat(&out, "%srank %d stream '%s': %d operation(s) pending, head %s%s",
                          out.empty() ? "" : "; ", stream->rank, stream->name, stream->queue.size(),
                          stream->busy ? "started" : "not started", TagSuffix(head.tag));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Functional mode.

void Engine::MoveBytes(Op* op) {
  const int64_t rank = op->stream->rank;
  const auto lost = [&](const Segment& segment, absl::string_view what) {
    AddError(rank, absl::DataLossError(absl::StrFormat(
                       "%s %s on rank %d stream '%s'%s: allocation %d behind VA %s was destroyed "
                       "while the operation was in flight",
                       op->type == OpType::kCopy ? "copy" : "fill", what, rank, op->stream->name,
                       TagSuffix(op->tag), segment.allocation_id, FormatVa(segment.va))));
  };
  if (op->type == OpType::kFill) {
    uint64_t tensor_offset = op->tensor_offset;
    for (const Segment& segment : op->dst) {
      PhysicalAllocation* allocation = memory_->Find(segment.allocation_id);
      if (allocation == nullptr || !allocation->data) return lost(segment, "destination");
      FillPattern(op->pattern, tensor_offset, allocation->data.get() + segment.offset,
                  segment.bytes);
      tensor_offset += segment.bytes;
    }
    return;
  }
  // Read everything first: the source and destination may overlap.
  scratch_bytes_.resize(op->bytes);
  uint64_t cursor = 0;
  for (const Segment& segment : op->src) {
    const PhysicalAllocation* allocation = memory_->Find(segment.allocation_id);
    if (allocation == nullptr || !allocation->data) return lost(segment, "source");
    std::memcpy(scratch_bytes_.data() + cursor, allocation->data.get() + segment.offset,
                segment.bytes);
    cursor += segment.bytes;
  }
  cursor = 0;
  for (const Segment& segment : op->dst) {
    PhysicalAllocation* allocation = memory_->Find(segment.allocation_id);
    if (allocation == nullptr || !allocation->data) return lost(segment, "destination");
    std::memcpy(allocation->data.get() + segment.offset, scratch_bytes_.data() + cursor,
                segment.bytes);
    cursor += segment.bytes;
  }
}

void Engine::Verify(Op* op) {
  const int64_t rank = op->stream->rank;
  for (const VerifyRead& read : op->verify) {
    uint64_t tensor_offset = 0;
    for (const Segment& segment : read.segments) {
      const PhysicalAllocation* allocation = memory_->Find(segment.allocation_id);
      if (allocation == nullptr || !allocation->data) {
        AddError(rank, absl::DataLossError(absl::StrFormat(
                           "kernel '%s' on rank %d%s reads VA %s whose allocation %d was destroyed",
                           op->kernel_name, rank, TagSuffix(op->tag), FormatVa(segment.va),
                           segment.allocation_id)));
        return;
      }
      const uint8_t* data = allocation->data.get() + segment.offset;
      // Compare against the expected bytes a chunk at a time; only a mismatching chunk is
      // searched byte by byte.
      constexpr uint64_t kChunk = 256 * 1024;
      for (uint64_t base = 0; base < segment.bytes; base += kChunk) {
        const uint64_t n = std::min(kChunk, segment.bytes - base);
        scratch_bytes_.resize(n);
        FillPattern(read.pattern, tensor_offset + base, scratch_bytes_.data(), n);
        if (std::memcmp(scratch_bytes_.data(), data + base, n) == 0) continue;
        uint64_t i = base;
        while (data[i] == scratch_bytes_[i - base]) ++i;
        const uint8_t expected = scratch_bytes_[i - base];
        const uint64_t offset = tensor_offset + i;
        const uint64_t expert_bytes = std::max<uint64_t>(1, read.pattern.expert_bytes);
        AddError(rank,
                 absl::DataLossError(absl::StrFormat(
                     "kernel '%s' on rank %d%s read a wrong byte: layer %d weight %d expert %d "
                     "byte %d (tensor offset %d, VA %s): expected 0x%02x, got 0x%02x",
                     op->kernel_name, rank, TagSuffix(op->tag), read.pattern.layer,
                     read.pattern.weight, offset / expert_bytes, offset % expert_bytes, offset,
                     FormatVa(read.va + offset), expected, data[i])));
        return;
      }
      tensor_offset += segment.bytes;
    }
  }
}

}  // namespace dwdp::sim
