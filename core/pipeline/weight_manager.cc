#include "core/pipeline/weight_manager.h"

#include "absl/strings/str_format.h"

namespace dwdp {

absl::StatusOr<std::unique_ptr<WeightManager>> WeightManager::Create(Streams& streams,
                                                                     StreamId compute_stream,
                                                                     StreamId copy_stream,
                                                                     Options options,
                                                                     IssueCopies issue_copies) {
  if (options.num_buffers < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "weight manager: num_buffers is %d, at least 2 slots are needed", options.num_buffers));
  }
  std::unique_ptr<WeightManager> manager(new WeightManager(
      streams, compute_stream, copy_stream, std::move(options), std::move(issue_copies)));
  for (int64_t s = 0; s < manager->options_.num_buffers; ++s) {
    for (auto* events : {&manager->ready_, &manager->free_}) {
      auto event = streams.CreateEvent();
      if (!event.ok()) {
        (void)manager->Destroy();
        return absl::Status(event.status().code(), absl::StrFormat("create event for slot %d: %s",
                                                                   s, event.status().message()));
      }
      events->push_back(*event);
    }
    OpTag tag;
    tag.kind = OpKind::kRecord;
    tag.slot = s;
    tag.label = "free (initial)";
    if (auto st = streams.Record(manager->free_[s], compute_stream, tag); !st.ok()) {
      (void)manager->Destroy();
      return st;
    }
  }
  return manager;
}

WeightManager::~WeightManager() { (void)Destroy(); }

absl::Status WeightManager::Destroy() {
  absl::Status first;
  for (auto* events : {&ready_, &free_}) {
    for (EventId e : *events) {
      absl::Status st = streams_.DestroyEvent(e);
      if (first.ok() && !st.ok()) first = st;
    }
    events->clear();
  }
  return first;
}

OpTag WeightManager::Tag(OpKind kind, int64_t position) const {
  OpTag tag;
  tag.kind = kind;
  tag.layer = position < static_cast<int64_t>(options_.layer_ids.size())
                  ? options_.layer_ids[position]
                  : position;
  tag.slot = slot_of(position);
  tag.forward = forward_;
  return tag;
}

absl::Status WeightManager::CheckPosition(int64_t position, const char* call) const {
  if (position >= 0 && position < options_.num_layers) return absl::OkStatus();
  return absl::OutOfRangeError(
      absl::StrFormat("%s of MoE layer position %d of %d", call, position, options_.num_layers));
}

absl::Status WeightManager::Prefetch(int64_t position, StreamId copy) {
  if (auto st = CheckPosition(position, "prefetch"); !st.ok()) return st;
  const int64_t s = slot_of(position);
  OpTag wait = Tag(OpKind::kWait, position);
  wait.label = "wait free";
  if (auto st = streams_.Wait(copy, free_[s], wait); !st.ok()) return st;
  if (auto st = issue_copies_(position, copy, Tag(OpKind::kCopy, position)); !st.ok()) return st;
  OpTag record = Tag(OpKind::kRecord, position);
  record.label = "ready";
  return streams_.Record(ready_[s], copy, record);
}

absl::Status WeightManager::Prime(StreamId copy) {
  for (int64_t p = 0; p < options_.num_layers && p < options_.num_buffers; ++p) {
    if (auto st = Prefetch(p, copy); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status WeightManager::WaitAndBind(int64_t position, StreamId compute) {
  if (auto st = CheckPosition(position, "wait_and_bind"); !st.ok()) return st;
  const int64_t s = slot_of(position);
  if (options_.fault != PipelineFault::kSkipReadyWait) {
    OpTag wait = Tag(OpKind::kWait, position);
    wait.label = "wait ready";
    if (auto st = streams_.Wait(compute, ready_[s], wait); !st.ok()) return st;
  }
  if (options_.fault == PipelineFault::kFreeAtBind) {
    OpTag record = Tag(OpKind::kRecord, position);
    record.label = "free (at bind: planted fault)";
    return streams_.Record(free_[s], compute, record);
  }
  // Binding is a pointer swap in the engine (the composite VA of the layer is fixed at setup),
  // so there is nothing to enqueue here.
  return absl::OkStatus();
}

absl::Status WeightManager::RecordCompute(int64_t position, StreamId compute) {
  if (auto st = CheckPosition(position, "record_compute"); !st.ok()) return st;
  if (options_.fault == PipelineFault::kFreeAtBind) return absl::OkStatus();
  OpTag record = Tag(OpKind::kRecord, position);
  record.label = "free";
  return streams_.Record(free_[slot_of(position)], compute, record);
}

absl::Status WeightManager::PrefetchNext(int64_t position, StreamId copy) {
  if (auto st = CheckPosition(position, "prefetch_next"); !st.ok()) return st;
  const int64_t next = position + options_.num_buffers;
  if (next >= options_.num_layers) return absl::OkStatus();  // the last k layers prefetch nothing
  return Prefetch(next, copy);
}

}  // namespace dwdp
