#pragma once

// Page-aligned layout (DWDP_SPEC §2), composite-VA map plans, pool slots (§3) and copy plans
// (§4). Pure functions over value types; byte arithmetic checked for overflow.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/scenario.h"
#include "core/partition/partition.h"

namespace dwdp {

// Layout of one weight on one rank (identical for every MoE layer).
struct WeightLayout {
  std::string name;
  uint64_t expert_bytes = 0;  // eb
  uint64_t tensor_bytes = 0;  // tot = N * eb
  uint64_t local_begin = 0;   // lsb = ls * eb
  uint64_t local_end = 0;     // leb = le * eb
  uint64_t page_start = 0;
  uint64_t page_end = 0;
  uint64_t leading_edge = 0;  // = data offset of the rank's first expert in its handle
  uint64_t trailing_edge = 0;
  uint64_t mnnvl_size = 0;  // the local handle's physical size
  uint64_t pre_size = 0;
  uint64_t pre_padding = 0;
  uint64_t post_size = 0;
  uint64_t post_padding = 0;
  uint64_t total_size = 0;  // the composite VA reservation

  uint64_t pool_bytes() const { return pre_size + post_size; }
  // VA offset of tensor byte x.
  uint64_t va_offset_of(uint64_t tensor_offset) const { return pre_padding + tensor_offset; }
};

// `local` is the rank's uncapped range [ls, ls + size) (after validation end <= N).
// `granularity` > 0; `pool_page_bytes` a power of two and a multiple of `granularity`.
absl::StatusOr<WeightLayout> ComputeWeightLayout(const WeightSpec& weight, int64_t num_experts,
                                                 PeerRange local, uint64_t granularity,
                                                 uint64_t pool_page_bytes);

struct RankLayout {
  int64_t rank = 0;
  PeerRange range;
  std::vector<WeightLayout> weights;
  uint64_t local_bytes_per_layer = 0;  // Σ mnnvl_size
  uint64_t pool_pages_per_layer = 0;   // Σ (pre_size + post_size) / PG
  std::vector<uint64_t> slot_pages;    // pool pages of each of the k slots
};

// Everything about one DWDP group that the backends need, computed once from a scenario.
struct GroupLayout {
  int64_t num_experts = 0;
  uint64_t granularity = 0;
  uint64_t pool_page_bytes = 0;
  int64_t num_buffers = 0;
  std::vector<int64_t> moe_layers;  // sorted layer indices
  std::vector<PeerRange> peer_ranges;
  std::vector<RankLayout> ranks;
  // Which of the ranks that store an expert each rank pulls it from (dwdp.owner).
  OwnerPolicy owner_policy = OwnerPolicy::kLowest;

  int64_t num_layers() const { return static_cast<int64_t>(moe_layers.size()); }
  // The slot of the MoE layer at `position` in the sorted list (not its layer index).
  int64_t slot_of(int64_t position) const { return position % num_buffers; }
};

// Validates the partition (first failing check as InvalidArgument with the check id in the
// message), the granularity and page size, then lays out every rank of the group.
absl::StatusOr<GroupLayout> ComputeGroupLayout(const Scenario& scenario);
absl::StatusOr<GroupLayout> ComputeGroupLayout(const Partition& partition,
                                               const std::vector<WeightSpec>& weights,
                                               const std::vector<int64_t>& moe_layers,
                                               uint64_t granularity, uint64_t pool_page_bytes,
                                               int64_t num_buffers,
                                               OwnerPolicy owner = OwnerPolicy::kLowest);

// One piece of a composite VA: a pool page of the layer's slot or the whole local handle.
struct MapPiece {
  enum class Kind { kPoolPage, kLocalHandle };
  Kind kind = Kind::kPoolPage;
  uint64_t va_offset = 0;
  uint64_t bytes = 0;
  int64_t pool_page = -1;  // index into the slot's pages (kPoolPage)
};

// Reserve total_size; map each piece; one set_access over the whole range.
struct MapPlan {
  int64_t rank = 0;
  int64_t position = 0;  // position of the layer in the sorted MoE-layer list
  int64_t weight = 0;
  int64_t slot = 0;
  uint64_t total_size = 0;
  uint64_t pre_padding = 0;
  std::vector<MapPiece> pieces;  // ascending va_offset, contiguous, covering [0, total_size)
};

MapPlan MakeMapPlan(const GroupLayout& layout, int64_t rank, int64_t position, int64_t weight);

// One copy into a composite tensor: tensor bytes [dst_offset, dst_offset + bytes) come from
// `src_rank`'s local handle of the same (layer, weight) at byte `src_offset`.
struct CopyOp {
  int64_t weight = 0;
  uint64_t dst_offset = 0;  // tensor offset (VA = base + pre_padding + dst_offset)
  int64_t src_rank = 0;
  uint64_t src_offset = 0;  // offset in the source's local handle
  uint64_t bytes = 0;
  friend bool operator==(const CopyOp&, const CopyOp&) = default;
};

struct CopyPlan {
  int64_t rank = 0;
  std::vector<CopyOp> ops;
  uint64_t total_bytes() const;
};

// The remote slices of every weight of one layer ([0, ls) then [le, N) per weight, one copy per
// (weight, slice, owner run)), ordered by the contention schedule. Identical for every layer.
// The owners follow `owner` (the layout's owner_policy when not given; OwnerOf).
CopyPlan MakeCopyPlan(const GroupLayout& layout, int64_t rank, const ContentionConfig& contention);
CopyPlan MakeCopyPlan(const GroupLayout& layout, int64_t rank, const ContentionConfig& contention,
                      OwnerPolicy owner);

// The order in which the copies of the MoE layer at `position` (in the sorted MoE-layer list)
// are issued, as indices into plan.ops: the plan's own order, except under staggered, where the
// plan's owner visits (maximal runs of consecutive copies from one owner) are rotated to start at
// visit (position mod visits). Every rank's order stays a rotation of a Latin square, so the
// ranks still read different peers while they keep in step; consecutive layers start at
// different peers.
std::vector<size_t> LayerCopyOrder(const CopyPlan& plan, int64_t position, ContentionMode mode);

// Copies per layer are bounded so that a tiny round_robin slice over huge experts is an error
// with advice, not a plan that exhausts memory. Checks every rank of the group.
inline constexpr uint64_t kMaxCopiesPerLayer = 1'000'000;
absl::Status CheckCopyPlanSize(const GroupLayout& layout, const ContentionConfig& contention);

// The edge bytes of the rank's local handles ([page_start, lsb) and [leb, page_end) per
// weight), copied from their owners once at setup.
CopyPlan MakeEdgeFillPlan(const GroupLayout& layout, int64_t rank);

}  // namespace dwdp
