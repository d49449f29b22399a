#pragma once

// The k-slot event contract of DWDP_SPEC §4, on one rank.
//
//   prefetch(L):      s = slot(L); X.wait(free[s]); copies of L on X; X.record(ready[s])
//   prime():          prefetch the first k MoE layers
//   wait_and_bind(L): C.wait(ready[slot(L)]); bind L's composite tensors (pointer swap)
//   record_compute(L):C.record(free[slot(L)])   -- after L's kernel, never at bind time
//   prefetch_next(L): prefetch the layer k positions after L, if any (same slot as L)
//
// Bookkeeping is O(k) events whatever the number of layers; nothing here synchronises with
// the host or with other ranks.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/backend.h"

namespace dwdp {

// Planted faults (INTERFACE.md `--inject`) that must be caught by the checker or the kernel.
enum class PipelineFault {
  kNone,
  kFreeAtBind,     // record free[s] at bind time, before the kernel (write-after-read race)
  kSkipReadyWait,  // compute does not wait for the copy (read-after-write race)
};

class WeightManager {
 public:
  // Issues the copies of the layer at `position` on `stream` (the copy stream) with `tag`
  // filled in by the manager (layer, slot, forward).
  using IssueCopies =
      std::function<absl::Status(int64_t position, StreamId stream, const OpTag& tag)>;

  struct Options {
    int64_t num_layers = 0;  // MoE layers in the sorted list
    int64_t num_buffers = 2;
    std::vector<int64_t> layer_ids;  // layer index of each position (for tags)
    PipelineFault fault = PipelineFault::kNone;
  };

  // Creates the 2k events and records every free[s] once on the compute stream so the first
  // prefetches do not stall.
  static absl::StatusOr<std::unique_ptr<WeightManager>> Create(Streams& streams,
                                                               StreamId compute_stream,
                                                               StreamId copy_stream,
                                                               Options options,
                                                               IssueCopies issue_copies);
  ~WeightManager();
  WeightManager(const WeightManager&) = delete;
  WeightManager& operator=(const WeightManager&) = delete;

  int64_t slot_of(int64_t position) const { return position % options_.num_buffers; }

  void set_forward(int64_t forward) { forward_ = forward; }
  absl::Status Prime() { return Prime(copy_); }
  absl::Status Prefetch(int64_t position) { return Prefetch(position, copy_); }
  absl::Status WaitAndBind(int64_t position) { return WaitAndBind(position, compute_); }
  absl::Status RecordCompute(int64_t position) { return RecordCompute(position, compute_); }
  absl::Status PrefetchNext(int64_t position) { return PrefetchNext(position, copy_); }

  // The same calls on other streams than the ones given at construction: an engine issues them
  // on its own streams, which may differ from call to call. The events belong to the slots, not
  // to the streams, so the contract holds whichever streams carry the waits and records.
  absl::Status Prime(StreamId copy);
  absl::Status Prefetch(int64_t position, StreamId copy);
  absl::Status WaitAndBind(int64_t position, StreamId compute);
  absl::Status RecordCompute(int64_t position, StreamId compute);
  absl::Status PrefetchNext(int64_t position, StreamId copy);

  // Releases the events (idempotent).
  absl::Status Destroy();

 private:
  WeightManager(Streams& streams, StreamId compute, StreamId copy, Options options,
                IssueCopies issue_copies)
      : streams_(streams),
        compute_(compute),
        copy_(copy),
        options_(std::move(options)),
        issue_copies_(std::move(issue_copies)) {}
  OpTag Tag(OpKind kind, int64_t position) const;
  absl::Status CheckPosition(int64_t position, const char* call) const;

  Streams& streams_;
  StreamId compute_;
  StreamId copy_;
  Options options_;
  IssueCopies issue_copies_;
  std::vector<EventId> ready_;
  std::vector<EventId> free_;
  int64_t forward_ = 0;
};

}  // namespace dwdp
