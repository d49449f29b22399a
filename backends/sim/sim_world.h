#pragma once

// SimWorld: every rank of one DWDP group in one process, simulated deterministically on one
// thread. It owns the physical memory of all GPUs, one SimDriver, one Streams and one Comm per
// rank, the event engine and the hazard checker.
//
// How to drive it (single thread, so no call can block waiting for another rank):
//   * Driver calls take effect immediately, as on the GPU.
//   * Enqueue a phase's stream work on every rank, then Synchronize each rank (or
//     RunUntilIdle). Simulated time moves only there.
//   * Collectives: SimWorld::Barrier() / SimWorld::Allgather(per_rank) do the whole collective
//     for all ranks in one call. The per-rank Comm works in rounds for code written against
//     dwdp::Comm: a rank's call posts its part; until every rank has posted, the call returns
//     UnavailableError naming the missing ranks (and the rank may not enqueue work); once all
//     have posted, each rank's next call of the same collective (with the same bytes) returns
//     the result. So: call it on every rank in turn, then again on those that got Unavailable.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/sim/sim_driver.h"
#include "backends/sim/sim_engine.h"
#include "backends/sim/sim_hazard.h"
#include "backends/sim/sim_memory.h"
#include "core/backend.h"
#include "core/config/scenario.h"

namespace dwdp::sim {

struct SimOptions {
  // Store and move real bytes; kernels with KernelRead::verify check them.
  bool functional = false;
  // The hazard checker; always on in functional mode.
  bool check_hazards = true;
  // Override the profile's values (calibration experiments, tests).
  std::optional<double> compute_slowdown;
  std::optional<double> concurrent_pull_efficiency;
  std::optional<double> egress_bw;  // bytes/s; 0: peer_copy_bw
  std::optional<double> fabric_bw;  // bytes/s per GPU, pooled; 0: no limit
  // Part of the per-copy fixed cost that occupies the copy's path (see EngineParams); 0 makes
  // it a plain delay on the stream.
  std::optional<double> copy_latency_on_link;
  // Functional mode keeps every byte in host memory; more than this is refused.
  uint64_t functional_byte_limit = 8ull << 30;
  // Keep TimedOps for TakeTimeline (turn off for long runs that need no trace).
  bool record_timeline = true;
  // Seeds the random shares of the fabric (the profile's fabric_share_spread).
  uint64_t seed = 1;
};

// What is still alive (at teardown: what leaked).
struct LeakReport {
  std::vector<RankResources> ranks;      // every rank, in order
  std::vector<std::string> allocations;  // live physical allocations
  bool empty() const;
  std::string ToString() const;  // "nothing alive" when empty
};

class SimWorld {
 public:
  // Fails when the profile lacks what the model needs (granularity, a copy bandwidth).
  static absl::StatusOr<std::unique_ptr<SimWorld>> Create(const HardwareProfile& profile,
                                                          int64_t num_ranks,
                                                          const SimOptions& options = {});
  ~SimWorld();
  SimWorld(const SimWorld&) = delete;
  SimWorld& operator=(const SimWorld&) = delete;

  int64_t size() const { return static_cast<int64_t>(drivers_.size()); }
  SimDriver& driver(int64_t rank) { return *drivers_[rank]; }
  SimStreams& streams(int64_t rank) { return *streams_[rank]; }
  Comm& comm(int64_t rank) { return *comms_[rank]; }

  // Every rank at once: host clocks join at the latest, and what each host observed (its
  // synchronized streams) happens before anything any rank enqueues afterwards.
  absl::Status Barrier();
  // Every rank's bytes to every rank (a barrier too). `per_rank` has one entry per rank.
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      const std::vector<std::vector<uint8_t>>& per_rank);

  // Simulates everything enqueued; the first asynchronous error of any rank. Host clocks do
  // not move (no host synchronized); use SynchronizeAll for that.
  absl::Status RunUntilIdle();
  // Synchronize on every rank in order; the first error.
  absl::Status SynchronizeAll();

  // Simulated time: how far the engine has run.
  double now_ns() const { return engine_->now_ns(); }
  // Operations issued at a host time the simulation had already passed (phase-wise use was
  // broken somewhere; their timing is approximate).
  uint64_t late_issues() const { return engine_->late_issues(); }
  uint64_t host_blocks() const { return engine_->host_blocks(); }
  uint64_t ops_completed() const { return engine_->ops_completed(); }
  double host_ns(int64_t rank) const { return engine_->host_ns(rank); }
  const std::vector<Hazard>& hazards() const;
  uint64_t hazards_dropped() const;
  const std::vector<SimError>& errors() const { return engine_->errors(); }
  const LinkStats& link_stats(int64_t gpu) const { return engine_->link_stats(gpu); }
  uint64_t live_bytes(int64_t rank) const { return memory_->live_bytes(rank); }
  uint64_t peak_bytes(int64_t rank) const { return memory_->peak_bytes(rank); }
  LeakReport leak_report() const;
  const EngineParams& params() const { return engine_->params(); }
  const SimOptions& options() const { return options_; }
  Engine& engine() { return *engine_; }
  const HazardChecker* hazard_checker() const { return engine_->hazard_checker(); }

 private:
  friend class SimComm;
  enum class CollectiveKind { kBarrier, kAllgather };
  struct Collective {
    CollectiveKind kind = CollectiveKind::kBarrier;
    std::vector<bool> posted;
    std::vector<bool> collected;
    std::vector<std::vector<uint8_t>> data;
    int64_t posted_count = 0;
    int64_t collected_count = 0;
    bool complete = false;
  };

  SimWorld(const SimOptions& options, std::unique_ptr<PhysicalMemory> memory);
  absl::StatusOr<std::vector<std::vector<uint8_t>>> CommCollective(int64_t rank,
                                                                   CollectiveKind kind,
                                                                   absl::Span<const uint8_t> mine);

  SimOptions options_;
  std::unique_ptr<PhysicalMemory> memory_;
  std::vector<std::unique_ptr<SimDriver>> drivers_;
  std::unique_ptr<Engine> engine_;
  std::vector<std::unique_ptr<SimStreams>> streams_;
  std::vector<std::unique_ptr<Comm>> comms_;
  std::optional<Collective> collective_;
};

// The per-rank Comm of a SimWorld (see the round protocol above).
class SimComm : public Comm {
 public:
  SimComm(SimWorld* world, int64_t rank) : world_(world), rank_(rank) {}
  int64_t rank() const override { return rank_; }
  int64_t size() const override { return world_->size(); }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      absl::Span<const uint8_t> mine) override;
  absl::Status Barrier() override;

 private:
  SimWorld* world_;
  int64_t rank_;
};

}  // namespace dwdp::sim
