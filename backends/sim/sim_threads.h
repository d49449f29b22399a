#pragma once

// SimThreads: per-rank code written against dwdp::Comm, Streams and HandleExchange, as one
// process per GPU runs it (`dwdp calibrate`'s phases), on a SimWorld. Every rank gets its own
// thread, but only one runs at a time, so the world is still simulated on one thread at a time
// and every run gives the same result.
//
// The rules:
//   * Rank 0 starts. A rank runs until it reaches a blocking point: a Barrier or Allgather of
//     its Comm (or of its HandleExchange, which uses it) or a Synchronize of one of its Streams.
//     Then the lowest-numbered rank that can run continues.
//   * When no rank can run, the waits are resolved: first every rank waiting in Synchronize is
//     synchronized, in rank order (simulated time moves there); if none was, the collective
//     that every rank waits in completes (host clocks join, SimWorld::Barrier). Then the lowest
//     runnable rank continues.
//   * It never hangs: ranks waiting in a collective that cannot complete (a rank has returned,
//     or ranks wait in different collectives) get an error naming the ranks, and so does every
//     later collective call.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "backends/sim/sim_world.h"
#include "core/backend.h"

namespace dwdp::sim {

class SimThreads {
 public:
  explicit SimThreads(SimWorld& world);
  ~SimThreads();
  SimThreads(const SimThreads&) = delete;
  SimThreads& operator=(const SimThreads&) = delete;

  int64_t size() const { return world_.size(); }

  // The rank's group communicator (every rank of the world) and a handle exchange over it:
  // each rank's handles travel as bytes through Allgather (sim tokens are plain numbers).
  Comm& comm(int64_t rank) { return *comms_[rank]; }
  HandleExchange& exchange(int64_t rank) { return *exchanges_[rank]; }
  // A fresh Streams object of `rank` over the world's engine. Destroying it destroys the
  // streams and events it created (work already enqueued still runs). With `timing` off its
  // streams take one queue entry per operation and TakeTimeline returns nothing, as on the
  // cuda backend. The rank's timeline is shared by its Streams objects: a new one drops what
  // was not taken yet.
  std::unique_ptr<Streams> NewStreams(int64_t rank, bool timing);
  // The rank's host clock as its host would read it now (Engine::SettledHostNs).
  double host_now_ns(int64_t rank);

  struct Outcome {
    std::vector<absl::Status> ranks;  // what each rank's body returned
    // The first collective that could not complete (the ranks that waited in it got it too).
    absl::Status scheduler;
    // `scheduler` when set, else the first failed rank's status, prefixed "rank N: ".
    absl::Status first_error() const;
  };
  // Runs body(rank) for every rank, each on its own thread, by the rules above; returns when
  // every body has returned. Not reentrant.
  Outcome Run(const std::function<absl::Status(int64_t rank)>& body);

 private:
  friend class ThreadComm;
  friend class ThreadStreams;
  enum class Waiting { kNothing, kBarrier, kAllgather, kSynchronize, kReturned };
  struct RankState {
    Waiting waiting = Waiting::kNothing;
    std::vector<uint8_t> mine;  // Allgather
    absl::Status result;
    std::vector<std::vector<uint8_t>> gathered;
  };

  // Gives up the rank's turn until its wait is resolved; returns the wait's result.
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Block(int64_t rank, Waiting what,
                                                          absl::Span<const uint8_t> mine);
  // Picks the rank that runs next (running_), resolving waits while none can run; -1 once
  // every rank has returned.
  void HandOnLocked();
  void ResolveLocked();

  SimWorld& world_;
  std::vector<std::unique_ptr<Comm>> comms_;
  std::vector<std::unique_ptr<HandleExchange>> exchanges_;
  std::mutex mu_;
  std::condition_variable turn_;
  std::vector<RankState> ranks_;
  int64_t running_ = -1;
  bool in_run_ = false;
  absl::Status scheduler_error_;
};

}  // namespace dwdp::sim
