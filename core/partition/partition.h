#pragma once

// DWDP partition math (DWDP_SPEC §1): peer ranges, owner lookup, validation with recipes,
// shard scatter. Pure functions over value types.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/config/scenario.h"

namespace dwdp {

// Experts [start, end) of one rank, as used at run time (end capped at N).
struct PeerRange {
  int64_t start = 0;
  int64_t end = 0;
  int64_t count() const { return end - start; }
  bool contains(int64_t e) const { return e >= start && e < end; }
  friend bool operator==(const PeerRange&, const PeerRange&) = default;
};

struct Recipe {
  int64_t num_experts_per_worker = 0;  // size
  int64_t num_prefetch_experts = 0;    // stride
  int64_t overlap() const { return num_experts_per_worker - num_prefetch_experts; }
  friend bool operator==(const Recipe&, const Recipe&) = default;
};

// Every (size, stride) with 0 < stride <= size and (d-1)*stride + size == N, least overlap
// first. Uniform (size = stride = N/d) first when d divides N. Empty for d < 2 or N < 1.
std::vector<Recipe> Recipes(int64_t dwdp_size, int64_t num_experts);

// The check ids of INTERFACE.md, in the order DWDP_SPEC §1 evaluates them.
inline constexpr const char* kCheckSizePositive = "size_positive";
inline constexpr const char* kCheckStridePositive = "stride_positive";
inline constexpr const char* kCheckGap = "gap";
inline constexpr const char* kCheckCoverage = "coverage";
inline constexpr const char* kCheckTailPadding = "tail_padding";
inline constexpr const char* kCheckChunkMismatch = "chunk_mismatch";
inline constexpr const char* kCheckNumGroups = "num_groups";
inline constexpr const char* kCheckWorldSize = "world_size";
inline constexpr const char* kCheckGroupId = "group_id";
inline constexpr const char* kCheckDwdpSize = "dwdp_size";

struct PartitionInput {
  int64_t dwdp_size = 0;
  int64_t num_experts_per_worker = 0;
  int64_t num_prefetch_experts = 0;
  int64_t num_experts = 0;
  int64_t loaded_chunk = 0;  // experts per rank in the checkpoint loader
  int64_t num_groups = 1;
  // World checks run only when a world size is given (cuda backend, `--world-size`).
  std::optional<int64_t> world_size;
  // The group-id check runs for this rank only when given; otherwise for every rank of the world.
  std::optional<int64_t> rank;

  static PartitionInput FromScenario(const Scenario& scenario);
};

struct PartitionError {
  std::string check;            // one of the kCheck* ids
  std::string message;          // one sentence: what is wrong and what to change
  std::vector<Recipe> recipes;  // valid recipes for this d and N, least overlap first
};

// The first failing check in the order of DWDP_SPEC §1, or nullopt when the partition is valid.
std::optional<PartitionError> ValidatePartition(const PartitionInput& input);

class Partition {
 public:
  // Validates first; the error status carries the PartitionError message.
  static absl::StatusOr<Partition> Create(const PartitionInput& input);
  static absl::StatusOr<Partition> Create(int64_t dwdp_size, int64_t num_experts_per_worker,
                                          int64_t num_prefetch_experts, int64_t num_experts);

  int64_t dwdp_size() const { return static_cast<int64_t>(peer_ranges_.size()); }
  int64_t num_experts() const { return num_experts_; }
  int64_t size() const { return size_; }
  int64_t stride() const { return stride_; }
  const std::vector<PeerRange>& peer_ranges() const { return peer_ranges_; }
  const PeerRange& range_of(int64_t rank) const { return peer_ranges_.at(rank); }

  // Lowest rank whose range holds expert e; OutOfRange for e < 0 or e >= N.
  absl::StatusOr<int64_t> owner(int64_t expert) const;

 private:
  Partition(int64_t num_experts, int64_t size, int64_t stride, std::vector<PeerRange> ranges)
      : num_experts_(num_experts), size_(size), stride_(stride), peer_ranges_(std::move(ranges)) {}
  int64_t num_experts_;
  int64_t size_;
  int64_t stride_;
  std::vector<PeerRange> peer_ranges_;
};

// The rank `puller` copies `expert` from (the owner lookup of DWDP_SPEC §1, per puller). Every
// rank derives it from the config alone, so no rank needs to ask another where to read.
//   lowest:   the lowest rank whose range holds the expert, whatever the puller (TensorRT-LLM's
//             rule; DWDP_SPEC §1). Under overlap the low ranks serve far more than the others:
//             DeepSeek-V3 at d = 72 with 43/3, rank 0 serves 2,766 expert copies per layer and
//             the median rank 173.
//   balanced: the storer nearest the puller: for an expert below the puller's range the highest
//             rank that stores it (e / stride), above it the lowest ((e - size) / stride + 1).
//             Every puller then takes exactly `stride` experts from every other rank (the first
//             `stride` of a lower rank's range, the last `stride` of a higher one's), because
//             (d - 1) · stride + size = N. So every rank serves (d - 1) · stride experts per layer
//             (213 in the d = 72 case), and every puller reads the same amount from each peer, as
//             in a uniform partition: the rotate schedule's Latin square holds, no source ever
//             has two readers at once while the ranks keep step.
//   A puller that stores the expert is its own owner under balanced.
// OutOfRange for an expert outside [0, N) or a puller outside [0, d).
absl::StatusOr<int64_t> OwnerOf(const Partition& partition, int64_t expert, int64_t puller,
                                OwnerPolicy policy);

// The same without checks (0 <= expert < N, 0 <= puller < d), and the end (exclusive) of the
// run of experts from `expert` on that `puller` takes from the same owner.
struct OwnerRun {
  int64_t owner = 0;
  int64_t end = 0;
};
OwnerRun OwnerRunOf(const std::vector<PeerRange>& ranges, int64_t size, int64_t stride,
                    int64_t expert, int64_t puller, OwnerPolicy policy);

// Expert copies each rank serves per MoE layer to the ranks that do not store them.
std::vector<int64_t> ServedExperts(const Partition& partition, OwnerPolicy policy);

// Peer ranges without validation: rank r -> [r*stride, min(r*stride + size, N)).
std::vector<PeerRange> PeerRanges(int64_t dwdp_size, int64_t size, int64_t stride, int64_t N);

// Rebuilds an N-row vector from one shard of `size` rows per rank:
// full[start_r : end_r] = shard_r[0 : end_r - start_r]. Each row has `row_width` elements.
// Errors: no shards, shard count != ranges, a shard too short, rows not covered.
absl::StatusOr<std::vector<double>> ScatterShards(absl::Span<const PeerRange> ranges,
                                                  absl::Span<const std::vector<double>> shards,
                                                  int64_t num_experts, int64_t row_width = 1);

}  // namespace dwdp
