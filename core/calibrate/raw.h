#pragma once

// The raw measurements of `dwdp calibrate` (the `--raw` file): what every rank timed, and the
// facts about the machine the derivation of the profile needs. The GPU run derives its profile
// from exactly this record, so `dwdp calibrate --from-raw` on the saved file derives the same
// profile without GPUs.
//
// Every time is in nanoseconds, every size in bytes. Files written before the record grew keep
// working: a missing `machine` record or missing egress start/end times only leave the numbers
// that need them to the fallbacks the derivation names.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "core/calibrate/fit.h"

namespace dwdp {

// Repeated timings of copies of one size.
struct RawTimedCopies {
  double bytes = 0;
  std::vector<double> ns;
  friend bool operator==(const RawTimedCopies&, const RawTimedCopies&) = default;
};

// One puller of the egress sharing phase (every rank but 0 pulls from rank 0 at once), one
// entry per repetition. start_ns / end_ns are on the host's steady clock, comparable between
// ranks of one host; empty in files written before they were recorded.
struct RawEgressPull {
  double bytes = 0;
  std::vector<double> ns;
  std::vector<double> start_ns;
  std::vector<double> end_ns;
  friend bool operator==(const RawEgressPull&, const RawEgressPull&) = default;
};

// Rank 0 pulling from every peer at once, one stream per peer.
struct RawIngress {
  double bytes_per_peer = 0;
  int64_t peers = 0;
  std::vector<double> span_ns;  // first start to last end, per repetition
  friend bool operator==(const RawIngress&, const RawIngress&) = default;
};

// One schedule of the copy-schedules phase, as one rank saw it.
struct RawScheduleRun {
  double bytes = 0;             // this rank pulled in all
  std::vector<double> span_ns;  // its first copy's start to its last copy's end, per repetition
  friend bool operator==(const RawScheduleRun&, const RawScheduleRun&) = default;
};

struct RawSchedules {
  double bytes_per_peer = 0;
  double piece_bytes = 0;                      // round robin's piece (the driver granularity)
  std::map<std::string, RawScheduleRun> runs;  // by CopyScheduleName
  friend bool operator==(const RawSchedules&, const RawSchedules&) = default;
};

// The compute stand-in kernel alone and under an inbound copy (rank 0).
struct RawComputeUnderCopies {
  double requested_ns = 0;  // 0: read-bound (as fast as it reads)
  double read_bytes = 0;
  std::vector<double> alone_ns;
  std::vector<double> with_copy_ns;
  std::vector<double> copy_outlasts_kernel_by_ns;
  friend bool operator==(const RawComputeUnderCopies&, const RawComputeUnderCopies&) = default;
};

struct RawMapCosts {
  double bytes = 0;
  std::vector<double> map;
  std::vector<double> set_access;
  std::vector<double> unmap;
  friend bool operator==(const RawMapCosts&, const RawMapCosts&) = default;
};

// The routed-MoE layer of one model shape timed on rank 0's GPU over a grid of tokens per rank:
// alone, and (with 2 ranks or more) while peer copies run into the GPU. Per token count, every
// repetition.
struct RawMoeCompute {
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  std::string kernel;           // what ran, e.g. the cuda backend's MoE layer
  std::vector<int64_t> tokens;  // ascending
  std::vector<std::vector<double>> alone_ns;
  std::vector<std::vector<double>> under_copy_ns;  // empty: not measured (one rank)
  // How long the inbound copies ran on after the layer ended (negative: part of the layer ran
  // without them).
  std::vector<std::vector<double>> copy_outlasts_kernel_by_ns;
  std::vector<int64_t> skipped_tokens;  // token counts whose working set would not fit
  friend bool operator==(const RawMoeCompute&, const RawMoeCompute&) = default;
};

// One copy of the prefetch rotation (`--only prefetch`): this rank pulling its piece of
// `source` at rotation step `step`, on the host's steady clock (comparable between the ranks of
// one host).
struct RawPrefetchCopy {
  int64_t source = 0;
  int64_t step = 0;
  double start_ns = 0;
  double end_ns = 0;
  friend bool operator==(const RawPrefetchCopy&, const RawPrefetchCopy&) = default;
};

// One way of starting the rotation (PrefetchStartName) as this rank ran it, every repetition.
struct RawPrefetchRun {
  std::string start;
  double drift_ns = 0;  // free: rank r started r x drift_ns late
  std::vector<std::vector<RawPrefetchCopy>> repetitions;
  friend bool operator==(const RawPrefetchRun&, const RawPrefetchRun&) = default;
};

struct RawPrefetch {
  double piece_bytes = 0;  // pulled from each peer
  // This rank pulling the piece from each peer alone (no other copy anywhere), every repetition.
  std::map<int64_t, std::vector<double>> pair_ns;
  std::vector<RawPrefetchRun> runs;
  friend bool operator==(const RawPrefetch&, const RawPrefetch&) = default;
};

struct RawRank {
  std::string hostname;  // empty in older files
  std::vector<std::string> warnings;
  std::vector<CopySample> single_pair;  // rank 0 pulling from rank 1
  RawTimedCopies local_copy;
  std::optional<RawEgressPull> egress;  // every rank but 0
  std::optional<RawIngress> ingress;    // rank 0, with 3 ranks or more
  RawSchedules schedules;
  std::vector<std::pair<double, double>> kernel_accuracy;             // (requested, measured)
  std::map<std::string, RawComputeUnderCopies> compute_under_copies;  // rank 0: "paced", ...
  std::map<std::string, std::vector<double>> host_ns_per_call;  // "copy", "record", "wait", ...
  // Behind a long kernel, the calls of one kind a stream took before the next one blocked the
  // host ("copy", "timed_copy", "kernel", "wait", "record"), per repetition; an empty list: the
  // kind never blocked. Empty in older files.
  std::map<std::string, std::vector<double>> stream_queue_calls;
  RawMapCosts map_ns;
  std::vector<RawMoeCompute> moe_compute;      // rank 0, when MoE shapes were given
  std::optional<RawPrefetch> prefetch;         // `--only prefetch`
  std::optional<double> device_memory_before;  // bytes in use, where the backend could tell
  std::optional<double> device_memory_after;
  // When more was in use after than before: after one more setup/teardown of the same buffers,
  // and what the driver kept once (not a leak) when it did not grow again.
  std::optional<double> device_memory_after_second_setup;
  std::optional<double> driver_retained_bytes;
  friend bool operator==(const RawRank&, const RawRank&) = default;
};

// What the run knew about the machine and itself.
struct RawMachine {
  std::string base;  // --base: the preset or profile file the unmeasured numbers come from
  std::string gpu_name;
  int64_t gpus = 0;
  double device_memory_bytes = 0;
  double granularity = 0;
  std::string handle_kind;  // HandleKindName: "fabric" means FABRIC handles were usable
  int64_t repetitions = 0;
  double buffer_bytes = 0;  // each rank's shareable buffer (the largest copy)
  friend bool operator==(const RawMachine&, const RawMachine&) = default;
};

// `only` of a run that measured just some phases.
inline constexpr char kOnlyCompute[] = "compute";    // only the MoE compute phase (1 rank is fine)
inline constexpr char kOnlyPrefetch[] = "prefetch";  // only the prefetch rotation (2 ranks+)

struct CalibrationRaw {
  std::string measured_on;
  std::string only;                   // empty: every phase ran; kOnlyCompute, kOnlyPrefetch
  std::optional<RawMachine> machine;  // absent in files of 2026-11-28 and before
  std::vector<RawRank> ranks;
  friend bool operator==(const CalibrationRaw&, const CalibrationRaw&) = default;
};

// Reads a parsed `--raw` file. Fails (InvalidArgument) naming the first missing or mistyped
// entry, e.g. "ranks[2].egress.ns: expected an array of numbers, found string".
absl::StatusOr<CalibrationRaw> ParseCalibrationRaw(const nlohmann::json& raw);

// The inverse of ParseCalibrationRaw: what it reads back is the record written. The `--raw`
// file is this with the derivation's summary added; ranks send their measurements to rank 0
// as RawRankToJson.
nlohmann::json CalibrationRawToJson(const CalibrationRaw& raw);
nlohmann::json RawRankToJson(const RawRank& rank);

}  // namespace dwdp
