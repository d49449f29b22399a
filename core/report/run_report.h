#pragma once

// The report of `dwdp run`, built from the timeline of operations a backend returns. The same
// code serves the simulator and the GPU, so both print the same shape (INTERFACE.md).

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/backend.h"

namespace dwdp {

struct LayerReport {
  int64_t layer = 0;
  int64_t slot = 0;
  uint64_t copy_bytes = 0;  // per forward
  double copy_ns = 0;       // first copy start to last copy end of the layer's prefetch
  double compute_ns = 0;    // attention + MoE kernel
  double stall_ns = 0;      // compute stream waiting on ready[slot]
};

struct RankReport {
  int64_t rank = 0;
  std::vector<LayerReport> layers;  // mean over forwards
  uint64_t peak_device_bytes = 0;
  uint64_t copy_bytes = 0;  // per forward
  double stall_ns = 0;      // per forward
  double forward_ns = 0;    // mean over forwards
  double copy_busy_ns = 0;  // per forward: time the copy stream had a copy running
  std::map<int64_t, uint64_t> bytes_from_peer;  // per forward
};

struct RunReport {
  std::string backend;
  std::string mode;
  std::string scenario;
  bool ok = true;
  int64_t forwards = 0;
  std::vector<RankReport> ranks;
  double forward_ns = 0;    // mean over forwards of the slowest rank
  double stall_ns = 0;      // mean over forwards of the largest per-rank stall
  uint64_t copy_bytes = 0;  // per forward, all ranks
  std::vector<double> forward_ns_each;
  std::vector<std::string> hazards;
  std::vector<std::string> errors;
  nlohmann::json extra = nlohmann::json::object();  // backend-specific additions

  nlohmann::json ToJson() const;
  // `all_ranks`: per-layer tables for every rank (otherwise rank 0 and a per-rank summary).
  std::string ToText(bool all_ranks = false) const;
};

// Aggregates the timeline (all forwards, all ranks) into per-layer and per-rank figures.
// `peak_bytes(rank)` gives each rank's peak device memory.
RunReport BuildRunReport(const std::vector<TimedOp>& timeline, int64_t num_ranks, int64_t forwards,
                         const std::function<uint64_t(int64_t)>& peak_bytes);

// Folds reports of single forwards (each built with forwards = 1) into the report of a whole
// run: means over forwards and the forward times. Memory stays flat however many forwards run,
// which is what long soak runs need.
class RunReportAccumulator {
 public:
  void Add(const RunReport& one_forward);
  int64_t count() const { return count_; }
  // The run's report; the per-forward list keeps the first kKeptForwards forward times, and
  // totals carry the minimum and maximum over all of them.
  RunReport Result() const;
  static constexpr size_t kKeptForwards = 1000;

 private:
  RunReport sum_;
  int64_t count_ = 0;
  double min_forward_ns_ = 0;
  double max_forward_ns_ = 0;
};

// Chrome trace-event JSON (Perfetto / chrome://tracing): a process per rank, a track per
// stream, one slice per copy, kernel and wait, with bytes and peers in the arguments.
// `barriers_ns`: instants at which every rank met (--align-forwards), drawn across all tracks.
nlohmann::json ChromeTrace(const std::vector<TimedOp>& timeline,
                           const std::function<std::string(int64_t rank, StreamId)>& stream_name,
                           const std::vector<double>& barriers_ns = {});

// Per forward (by the ops' forward tag, ascending), the earliest start of any of its operations:
// with --align-forwards every rank passed the barrier before it.
std::vector<double> ForwardStarts(const std::vector<TimedOp>& timeline);

}  // namespace dwdp
