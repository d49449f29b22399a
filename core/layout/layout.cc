#include "core/layout/layout.h"

#include <algorithm>
#include <deque>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/layout/copy_order.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

absl::Status Overflow(const WeightSpec& weight, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrFormat("layout of weight '%s' (%d bytes per expert): %s overflows 64 bits",
                      weight.name, weight.expert_bytes, what));
}

// Copies of tensor bytes [begin, end) of one weight, pulled by `puller`, from the owners the
// policy names (OwnerOf), one copy per run of experts with one owner.
void AppendOwnerRuns(const GroupLayout& layout, OwnerPolicy policy, int64_t puller, int64_t weight,
                     uint64_t begin, uint64_t end, std::vector<CopyOp>& out) {
  const uint64_t eb = layout.ranks.front().weights[weight].expert_bytes;
  const int64_t size = layout.ranks.front().range.count();
  const int64_t stride = layout.peer_ranges.size() > 1
                             ? layout.peer_ranges[1].start - layout.peer_ranges[0].start
                             : size;
  uint64_t cursor = begin;
  while (cursor < end) {
    const int64_t expert = static_cast<int64_t>(cursor / eb);
    const OwnerRun run = OwnerRunOf(layout.peer_ranges, size, stride, expert, puller, policy);
    const WeightLayout& owner_layout = layout.ranks[run.owner].weights[weight];
    const uint64_t run_end = std::min(end, static_cast<uint64_t>(run.end) * eb);
    out.push_back(CopyOp{weight, cursor, run.owner,
                         cursor - owner_layout.local_begin + owner_layout.leading_edge,
                         run_end - cursor});
    cursor = run_end;
  }
}

}  // namespace

absl::StatusOr<WeightLayout> ComputeWeightLayout(const WeightSpec& weight, int64_t num_experts,
                                                 PeerRange local, uint64_t granularity,
                                                 uint64_t pool_page_bytes) {
  if (weight.expert_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weight '%s' has 0 bytes per expert", weight.name));
  }
  if (granularity == 0 || pool_page_bytes == 0 || pool_page_bytes % granularity != 0 ||
      !IsPowerOfTwo(pool_page_bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pool page size %d must be a power of two and a multiple of the granularity %d",
        pool_page_bytes, granularity));
  }
  if (num_experts <= 0 || local.start < 0 || local.end > num_experts || local.start >= local.end) {
    return absl::InvalidArgumentError(absl::StrFormat("local range [%d, %d) is not inside [0, %d)",
                                                      local.start, local.end, num_experts));
  }
  WeightLayout w;
  w.name = weight.name;
  w.expert_bytes = weight.expert_bytes;
  const auto lsb = CheckedMul(static_cast<uint64_t>(local.start), weight.expert_bytes);
  const auto leb = CheckedMul(static_cast<uint64_t>(local.end), weight.expert_bytes);
  const auto tot = CheckedMul(static_cast<uint64_t>(num_experts), weight.expert_bytes);
  if (!lsb || !leb || !tot) return Overflow(weight, "num_experts * expert_bytes");
  w.local_begin = *lsb;
  w.local_end = *leb;
  w.tensor_bytes = *tot;
  w.page_start = AlignDown(*lsb, granularity);
  const auto page_end = AlignUp(*leb, granularity);
  const auto tot_aligned = AlignUp(*tot, granularity);
  if (!page_end || !tot_aligned) return Overflow(weight, "aligning the tensor to the granularity");
  w.page_end = *page_end;
  w.leading_edge = *lsb - w.page_start;
  w.trailing_edge = w.page_end - *leb;
  w.mnnvl_size = w.page_end - w.page_start;
  const auto pre_size = AlignUp(w.page_start, pool_page_bytes);
  if (!pre_size) return Overflow(weight, "the pool region before the local handle");
  w.pre_size = *pre_size;
  w.pre_padding = w.pre_size - w.page_start;
  const uint64_t post_raw = *tot_aligned - w.page_end;
  const auto post_size = AlignUp(post_raw, pool_page_bytes);
  if (!post_size) return Overflow(weight, "the pool region after the local handle");
  w.post_size = *post_size;
  w.post_padding = w.post_size - post_raw;
  auto total = CheckedAdd(w.pre_size, w.mnnvl_size);
  if (total) total = CheckedAdd(*total, w.post_size);
  if (!total) return Overflow(weight, "the composite VA size");
  w.total_size = *total;
  return w;
}

absl::StatusOr<GroupLayout> ComputeGroupLayout(const Partition& partition,
                                               const std::vector<WeightSpec>& weights,
                                               const std::vector<int64_t>& moe_layers,
                                               uint64_t granularity, uint64_t pool_page_bytes,
                                               int64_t num_buffers, OwnerPolicy owner) {
  if (weights.empty()) return absl::InvalidArgumentError("the model has no DWDP-managed weights");
  if (moe_layers.empty()) return absl::InvalidArgumentError("the model has no MoE layers");
  if (num_buffers < 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("num_buffers is %d; the pool needs at least 2 slots", num_buffers));
  }
  GroupLayout layout;
  layout.num_experts = partition.num_experts();
  layout.granularity = granularity;
  layout.pool_page_bytes = pool_page_bytes;
  layout.num_buffers = num_buffers;
  layout.moe_layers = moe_layers;
  std::sort(layout.moe_layers.begin(), layout.moe_layers.end());
  layout.peer_ranges = partition.peer_ranges();
  layout.owner_policy = owner;
  const int64_t used_slots = std::min<int64_t>(num_buffers, layout.num_layers());
  for (int64_t r = 0; r < partition.dwdp_size(); ++r) {
    RankLayout rank;
    rank.rank = r;
    rank.range = partition.range_of(r);
    // After validation the uncapped range [r*stride, r*stride + size) ends at or before N.
    const PeerRange uncapped{rank.range.start, rank.range.start + partition.size()};
    uint64_t pool_bytes = 0;
    for (const WeightSpec& spec : weights) {
      auto weight = ComputeWeightLayout(spec, partition.num_experts(), uncapped, granularity,
                                        pool_page_bytes);
      if (!weight.ok()) return weight.status();
      const auto local = CheckedAdd(rank.local_bytes_per_layer, weight->mnnvl_size);
      const auto pool = CheckedAdd(pool_bytes, weight->pool_bytes());
      if (!local || !pool) {
        return absl::InvalidArgumentError("layout: bytes per layer overflow 64 bits");
      }
      rank.local_bytes_per_layer = *local;
      pool_bytes = *pool;
      rank.weights.push_back(*std::move(weight));
    }
    rank.pool_pages_per_layer = pool_bytes / pool_page_bytes;
    // Every layer has the same pages, so a slot's size (the max over its layers) is one
    // layer's; a slot with no layer (fewer layers than slots) needs none.
    rank.slot_pages.assign(static_cast<size_t>(num_buffers), 0);
    for (int64_t s = 0; s < used_slots; ++s) rank.slot_pages[s] = rank.pool_pages_per_layer;
    layout.ranks.push_back(std::move(rank));
  }
  return layout;
}

absl::StatusOr<GroupLayout> ComputeGroupLayout(const Scenario& scenario) {
  auto partition = Partition::Create(PartitionInput::FromScenario(scenario));
  if (!partition.ok()) return partition.status();
  const double granularity = scenario.hardware.granularity.value;
  if (!(granularity >= 1) || granularity > 1e15) {
    return absl::InvalidArgumentError(
        absl::StrFormat("hardware granularity %g is not a positive byte count", granularity));
  }
  return ComputeGroupLayout(*partition, scenario.model.weights, scenario.model.moe_layers,
                            static_cast<uint64_t>(granularity), scenario.dwdp.pool_page_bytes,
                            scenario.dwdp.num_buffers, scenario.dwdp.owner);
}

MapPlan MakeMapPlan(const GroupLayout& layout, int64_t rank, int64_t position, int64_t weight) {
  const RankLayout& rl = layout.ranks.at(rank);
  const WeightLayout& w = rl.weights.at(weight);
  const uint64_t pg = layout.pool_page_bytes;
  // Weights take pages in order from page 0 of the slot: weight 0's pre, weight 0's post, ...
  int64_t page = 0;
  for (int64_t i = 0; i < weight; ++i)
    page += static_cast<int64_t>(rl.weights[i].pool_bytes() / pg);
  MapPlan plan;
  plan.rank = rank;
  plan.position = position;
  plan.weight = weight;
  plan.slot = layout.slot_of(position);
  plan.total_size = w.total_size;
  plan.pre_padding = w.pre_padding;
  uint64_t va = 0;
  for (uint64_t i = 0; i < w.pre_size / pg; ++i, va += pg) {
    plan.pieces.push_back(MapPiece{MapPiece::Kind::kPoolPage, va, pg, page++});
  }
  plan.pieces.push_back(MapPiece{MapPiece::Kind::kLocalHandle, va, w.mnnvl_size, -1});
  va += w.mnnvl_size;
  for (uint64_t i = 0; i < w.post_size / pg; ++i, va += pg) {
    plan.pieces.push_back(MapPiece{MapPiece::Kind::kPoolPage, va, pg, page++});
  }
  return plan;
}

uint64_t CopyPlan::total_bytes() const {
  uint64_t total = 0;
  for (const CopyOp& op : ops) total += op.bytes;
  return total;
}

CopyPlan MakeCopyPlan(const GroupLayout& layout, int64_t rank, const ContentionConfig& contention) {
  return MakeCopyPlan(layout, rank, contention, layout.owner_policy);
}

CopyPlan MakeCopyPlan(const GroupLayout& layout, int64_t rank, const ContentionConfig& contention,
                      OwnerPolicy owner) {
  const RankLayout& rl = layout.ranks.at(rank);
  std::vector<CopyOp> by_weight;  // weight by weight, slices in order, runs in expert order
  for (int64_t w = 0; w < static_cast<int64_t>(rl.weights.size()); ++w) {
    const WeightLayout& wl = rl.weights[w];
    AppendOwnerRuns(layout, owner, rank, w, 0, wl.local_begin, by_weight);
    AppendOwnerRuns(layout, owner, rank, w, wl.local_end, wl.tensor_bytes, by_weight);
  }
  CopyPlan plan;
  plan.rank = rank;
  const int64_t d = static_cast<int64_t>(layout.peer_ranges.size());
  switch (contention.mode) {
    case ContentionMode::kAscending:
      plan.ops = std::move(by_weight);
      break;
    case ContentionMode::kRotate:
    case ContentionMode::kStaggered: {
      // Owners r+1, r+2, ... (mod d): at every moment each rank reads a different peer. Staggered
      // shifts this order per layer when the copies are issued (LayerCopyOrder).
      for (int64_t owner : PeerOrder(rank, d, PeerOrderKind::kRotate)) {
        for (const CopyOp& op : by_weight) {
          if (op.src_rank == owner) plan.ops.push_back(op);
        }
      }
      break;
    }
    case ContentionMode::kRoundRobin: {
      // Every copy cut into <= slice_bytes pieces, interleaved across owners (ascending).
      const uint64_t slice = std::max<uint64_t>(contention.slice_bytes, 1);
      std::map<int64_t, std::deque<CopyOp>> queues;
      for (const CopyOp& op : by_weight) {
        for (uint64_t done = 0; done < op.bytes; done += slice) {
          CopyOp piece = op;
          piece.dst_offset += done;
          piece.src_offset += done;
          piece.bytes = std::min(slice, op.bytes - done);
          queues[op.src_rank].push_back(piece);
        }
      }
      const std::vector<int64_t> owners = PeerOrder(rank, d, PeerOrderKind::kAscending);
      bool any = true;
      while (any) {
        any = false;
        for (int64_t owner : owners) {
          std::deque<CopyOp>& queue = queues[owner];
          if (queue.empty()) continue;
          plan.ops.push_back(queue.front());
          queue.pop_front();
          any = true;
        }
      }
      break;
    }
  }
  return plan;
}

std::vector<size_t> LayerCopyOrder(const CopyPlan& plan, int64_t position, ContentionMode mode) {
  std::vector<size_t> order(plan.ops.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (mode != ContentionMode::kStaggered || plan.ops.empty()) return order;
  // Visits: maximal runs of consecutive copies from one owner.
  std::vector<size_t> visit_begin = {0};
  for (size_t i = 1; i < plan.ops.size(); ++i) {
    if (plan.ops[i].src_rank != plan.ops[i - 1].src_rank) visit_begin.push_back(i);
  }
  const size_t visits = visit_begin.size();
  const size_t shift = static_cast<size_t>(std::max<int64_t>(position, 0)) % visits;
  order.clear();
  for (size_t v = 0; v < visits; ++v) {
    const size_t visit = (v + shift) % visits;
    const size_t end = visit + 1 < visits ? visit_begin[visit + 1] : plan.ops.size();
    for (size_t i = visit_begin[visit]; i < end; ++i) order.push_back(i);
  }
  return order;
}

absl::Status CheckCopyPlanSize(const GroupLayout& layout, const ContentionConfig& contention) {
  if (contention.mode != ContentionMode::kRoundRobin) return absl::OkStatus();
  const uint64_t slice = std::max<uint64_t>(contention.slice_bytes, 1);
  for (const RankLayout& rank : layout.ranks) {
    uint64_t pieces = 0;
    for (const WeightLayout& w : rank.weights) {
      // Remote bytes of the weight in at most a handful of runs; each run is cut separately.
      const uint64_t remote = w.tensor_bytes - (w.local_end - w.local_begin);
      pieces += remote / slice + static_cast<uint64_t>(layout.peer_ranges.size()) * 2;
    }
    if (pieces > kMaxCopiesPerLayer) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "round_robin with slice_bytes %d cuts one layer of rank %d into about %d copies (at "
          "most %d); use a larger contention.slice_bytes or the rotate schedule",
          slice, rank.rank, pieces, kMaxCopiesPerLayer));
    }
  }
  return absl::OkStatus();
}

CopyPlan MakeEdgeFillPlan(const GroupLayout& layout, int64_t rank) {
  const RankLayout& rl = layout.ranks.at(rank);
  CopyPlan plan;
  plan.rank = rank;
  for (int64_t w = 0; w < static_cast<int64_t>(rl.weights.size()); ++w) {
    const WeightLayout& wl = rl.weights[w];
    AppendOwnerRuns(layout, layout.owner_policy, rank, w, wl.page_start, wl.local_begin, plan.ops);
    AppendOwnerRuns(layout, layout.owner_policy, rank, w, wl.local_end,
                    std::min(wl.page_end, wl.tensor_bytes), plan.ops);
  }
  return plan;
}

}  // namespace dwdp
