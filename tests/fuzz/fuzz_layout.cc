// Partition validation, owner lookup, the page-aligned layout and its plans (core/partition,
// core/layout) on small problems decoded from fuzzer bytes (layout_case.h).
//
// Oracles, all computed here from DWDP_SPEC rather than from the code under test:
// * validation: the first failing check of §1 (the code runs the dwdp_size check first, as its
//   comment explains); recipes satisfy the net rule, least overlap first, and are all of them;
// * owner(e) is the lowest rank whose range contains e; e < 0 and e >= N are errors;
// * the layout formulas of §2 in 128-bit arithmetic: ComputeGroupLayout fails with an overflow
//   error exactly when some value does not fit 64 bits, and otherwise matches every field;
// * the invariants of §2, the pool slots of §3 and the map plans (contiguous pieces covering
//   [0, total_size), exactly one local-handle piece, weights taking pages in order);
// * copy plans in every contention mode: together with the rank's own [ls, le) they deliver
//   the tensor bytes [0, N·eb) exactly once, each copy reading the same tensor bytes from
//   inside the range and the handle of the expert's owner, in the order the mode promises;
// * the edge-fill plan covers exactly [page_start, lsb) ∪ [leb, min(page_end, tot)).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "fuzz_check.h"
#include "layout_case.h"

namespace dwdp::fuzz {
namespace {

using u128 = unsigned __int128;
using i128 = __int128;

constexpr u128 kMaxU64 = UINT64_MAX;

// Plans are built only while they stay this small, so one input runs in milliseconds.
constexpr uint64_t kMapPieceBudget = 4096;
constexpr uint64_t kRoundRobinPieceBudget = 4096;
// Up to this many ranks every rank's plans are checked; above it, a sample of ranks.
constexpr int64_t kAllRanksUpTo = 16;
// Up to this many experts owner() is checked for every expert; above it, at boundaries.
constexpr int64_t kAllExpertsUpTo = 1024;

std::string Text(u128 value) {
  if (value <= kMaxU64) return absl::StrCat(static_cast<uint64_t>(value));
  return absl::StrCat(static_cast<uint64_t>(value >> 64), "·2^64+",
                      static_cast<uint64_t>(value & kMaxU64));
}

u128 AlignDown128(u128 value, u128 alignment) { return value / alignment * alignment; }
u128 AlignUp128(u128 value, u128 alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// ---------------------------------------------------------------------------------------
// §1: validation, ranges, owners.

// The check id the spec expects for the case (loaded chunk = size, one group, no world size).
std::optional<std::string> ExpectedCheck(const PartitionInput& in) {
  if (in.dwdp_size <= 1) return std::string(kCheckDwdpSize);
  if (in.num_experts_per_worker <= 0) return std::string(kCheckSizePositive);
  if (in.num_prefetch_experts <= 0) return std::string(kCheckStridePositive);
  if (in.num_prefetch_experts > in.num_experts_per_worker) return std::string(kCheckGap);
  const i128 coverage =
      static_cast<i128>(in.dwdp_size - 1) * in.num_prefetch_experts + in.num_experts_per_worker;
  if (coverage < in.num_experts) return std::string(kCheckCoverage);
  if (coverage > in.num_experts) return std::string(kCheckTailPadding);
  return std::nullopt;
}

void CheckRecipes(const std::vector<Recipe>& recipes, int64_t d, int64_t n) {
  // Every stride with d·stride <= N gives one recipe (size = N - (d-1)·stride >= stride).
  const int64_t expected = d >= 2 && n >= 1 ? n / d : 0;
  DWDP_FUZZ_CHECK(
      static_cast<int64_t>(recipes.size()) == expected,
      absl::StrCat(recipes.size(), " recipes for d=", d, " N=", n, ", expected ", expected));
  for (size_t i = 0; i < recipes.size(); ++i) {
    const Recipe& r = recipes[i];
    const i128 coverage =
        static_cast<i128>(d - 1) * r.num_prefetch_experts + r.num_experts_per_worker;
    DWDP_FUZZ_CHECK(r.num_prefetch_experts > 0 &&
                        r.num_prefetch_experts <= r.num_experts_per_worker && coverage == n,
                    absl::StrCat("recipe ", r.num_experts_per_worker, "/", r.num_prefetch_experts,
                                 " is not valid for d=", d, " N=", n));
    if (i > 0) {
      DWDP_FUZZ_CHECK(recipes[i - 1].overlap() <= r.overlap(),
                      absl::StrCat("recipes are not ordered by overlap at ", i));
    }
  }
}

// Capped peer ranges from the spec formula.
std::vector<PeerRange> SpecRanges(int64_t d, int64_t size, int64_t stride, int64_t n) {
  std::vector<PeerRange> ranges;
  for (int64_t r = 0; r < d; ++r) ranges.push_back({r * stride, std::min(r * stride + size, n)});
  return ranges;
}

int64_t LowestOwnerBruteForce(const std::vector<PeerRange>& ranges, int64_t e) {
  for (size_t r = 0; r < ranges.size(); ++r) {
    if (ranges[r].contains(e)) return static_cast<int64_t>(r);
  }
  return -1;
}

// The same answer in O(log d): capped range ends never decrease with the rank, so the lowest
// rank holding e is the first whose end passes e, if that range starts at or before e.
class OwnerIndex {
 public:
  explicit OwnerIndex(const std::vector<PeerRange>& ranges) : ranges_(ranges) {
    for (const PeerRange& range : ranges) ends_.push_back(range.end);
  }
  int64_t LowestOwner(int64_t e) const {
    const auto it = std::upper_bound(ends_.begin(), ends_.end(), e);
    if (it == ends_.end()) return -1;
    const auto r = static_cast<int64_t>(it - ends_.begin());
    return ranges_[r].contains(e) ? r : -1;
  }

 private:
  const std::vector<PeerRange>& ranges_;
  std::vector<int64_t> ends_;
};

void CheckOwners(const Partition& partition, const std::vector<PeerRange>& ranges) {
  const int64_t n = partition.num_experts();
  std::vector<int64_t> experts;
  if (n <= kAllExpertsUpTo) {
    for (int64_t e = 0; e < n; ++e) experts.push_back(e);
  } else {
    for (const PeerRange& range : ranges) {
      for (int64_t e : {range.start - 1, range.start, range.start + 1, range.end - 1, range.end}) {
        if (e >= 0 && e < n) experts.push_back(e);
      }
    }
    for (int64_t i = 0; i < 256; ++i) experts.push_back((i * 2654435761LL) % n);
  }
  for (int64_t e : experts) {
    const absl::StatusOr<int64_t> owner = partition.owner(e);
    const int64_t expected = LowestOwnerBruteForce(ranges, e);
    DWDP_FUZZ_CHECK(owner.ok() && *owner == expected,
                    absl::StrCat("owner(", e, ") = ",
                                 owner.ok() ? absl::StrCat(*owner) : owner.status().ToString(),
                                 ", lowest rank holding it is ", expected));
  }
  for (int64_t e : {int64_t{-1}, n, n + 1, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    DWDP_FUZZ_CHECK(!partition.owner(e).ok(),
                    absl::StrCat("owner(", e, ") of N=", n, " is not an error"));
  }
}

// ---------------------------------------------------------------------------------------
// §2: the layout formulas in 128 bits.

struct SpecWeight {
  u128 lsb, leb, tot, page_start, page_end, leading_edge, trailing_edge, mnnvl_size, pre_size,
      pre_padding, tot_aligned, post_raw, post_size, post_padding, total_size;

  bool Fits() const {
    for (u128 v : {lsb, leb, tot, page_end, tot_aligned, pre_size, post_size, total_size}) {
      if (v > kMaxU64) return false;
    }
    return true;
  }
};

SpecWeight SpecLayout(u128 eb, int64_t n, int64_t ls, int64_t le, u128 g, u128 pg) {
  SpecWeight w{};
  w.lsb = static_cast<u128>(ls) * eb;
  w.leb = static_cast<u128>(le) * eb;
  w.tot = static_cast<u128>(n) * eb;
  w.page_start = AlignDown128(w.lsb, g);
  w.page_end = AlignUp128(w.leb, g);
  w.leading_edge = w.lsb - w.page_start;
  w.trailing_edge = w.page_end - w.leb;
  w.mnnvl_size = w.page_end - w.page_start;
  w.pre_size = AlignUp128(w.page_start, pg);
  w.pre_padding = w.pre_size - w.page_start;
  w.tot_aligned = AlignUp128(w.tot, g);
  w.post_raw = w.tot_aligned - w.page_end;
  w.post_size = AlignUp128(w.post_raw, pg);
  w.post_padding = w.post_size - w.post_raw;
  w.total_size = w.pre_size + w.mnnvl_size + w.post_size;
  return w;
}

void CheckWeightLayout(const WeightLayout& got, const SpecWeight& spec, uint64_t eb, uint64_t g,
                       uint64_t pg, const std::string& where) {
  const std::pair<const char*, std::pair<uint64_t, u128>> fields[] = {
      {"expert_bytes", {got.expert_bytes, eb}},
      {"tensor_bytes", {got.tensor_bytes, spec.tot}},
      {"local_begin", {got.local_begin, spec.lsb}},
      {"local_end", {got.local_end, spec.leb}},
      {"page_start", {got.page_start, spec.page_start}},
      {"page_end", {got.page_end, spec.page_end}},
      {"leading_edge", {got.leading_edge, spec.leading_edge}},
      {"trailing_edge", {got.trailing_edge, spec.trailing_edge}},
      {"mnnvl_size", {got.mnnvl_size, spec.mnnvl_size}},
      {"pre_size", {got.pre_size, spec.pre_size}},
      {"pre_padding", {got.pre_padding, spec.pre_padding}},
      {"post_size", {got.post_size, spec.post_size}},
      {"post_padding", {got.post_padding, spec.post_padding}},
      {"total_size", {got.total_size, spec.total_size}},
  };
  for (const auto& [name, values] : fields) {
    DWDP_FUZZ_CHECK(values.first == values.second,
                    absl::StrCat(where, ": ", name, " is ", values.first, ", DWDP_SPEC §2 gives ",
                                 Text(values.second)));
  }
  // The invariants of §2, stated on their own.
  DWDP_FUZZ_CHECK(got.page_start <= got.local_begin && got.local_end <= got.page_end,
                  absl::StrCat(where, ": local experts [", got.local_begin, ", ", got.local_end,
                               ") are not inside [", got.page_start, ", ", got.page_end, ")"));
  DWDP_FUZZ_CHECK(static_cast<u128>(got.pre_padding) + got.tensor_bytes <= got.total_size,
                  absl::StrCat(where, ": pre_padding + tot > total_size"));
  DWDP_FUZZ_CHECK(got.pre_size % pg == 0 && got.post_size % pg == 0,
                  absl::StrCat(where, ": pre ", got.pre_size, " or post ", got.post_size,
                               " is not whole pool pages of ", pg));
  DWDP_FUZZ_CHECK(got.mnnvl_size % g == 0 && got.page_start % g == 0,
                  absl::StrCat(where, ": mnnvl_size ", got.mnnvl_size, " or page_start ",
                               got.page_start, " is not a multiple of G ", g));
  DWDP_FUZZ_CHECK(
      got.va_offset_of(got.page_start) == got.pre_size,
      absl::StrCat(where, ": tensor byte page_start does not land on the local handle"));
}

// ---------------------------------------------------------------------------------------
// §3: map plans.

void CheckMapPlan(const GroupLayout& layout, int64_t rank, int64_t position, int64_t weight) {
  const RankLayout& rl = layout.ranks[rank];
  const WeightLayout& wl = rl.weights[weight];
  const uint64_t pg = layout.pool_page_bytes;
  const std::string where =
      absl::StrCat("map plan rank ", rank, " position ", position, " weight ", weight);
  const MapPlan plan = MakeMapPlan(layout, rank, position, weight);
  DWDP_FUZZ_CHECK(
      plan.rank == rank && plan.position == position && plan.weight == weight,
      absl::StrCat(where, ": labels ", plan.rank, "/", plan.position, "/", plan.weight));
  DWDP_FUZZ_CHECK(
      plan.slot == position % layout.num_buffers,
      absl::StrCat(where, ": slot ", plan.slot, " is not position mod ", layout.num_buffers));
  DWDP_FUZZ_CHECK(plan.total_size == wl.total_size && plan.pre_padding == wl.pre_padding,
                  absl::StrCat(where, ": total_size/pre_padding differ from the layout"));
  int64_t first_page = 0;
  for (int64_t w = 0; w < weight; ++w)
    first_page += static_cast<int64_t>(rl.weights[w].pool_bytes() / pg);
  int64_t next_page = first_page;
  uint64_t va = 0;
  int local_pieces = 0;
  for (const MapPiece& piece : plan.pieces) {
    DWDP_FUZZ_CHECK(piece.va_offset == va,
                    absl::StrCat(where, ": piece at ", piece.va_offset, ", expected ", va));
    if (piece.kind == MapPiece::Kind::kLocalHandle) {
      ++local_pieces;
      DWDP_FUZZ_CHECK(piece.va_offset == wl.pre_size && piece.bytes == wl.mnnvl_size,
                      absl::StrCat(where, ": local handle at ", piece.va_offset, " of ",
                                   piece.bytes, " bytes"));
    } else {
      DWDP_FUZZ_CHECK(piece.bytes == pg, absl::StrCat(where, ": pool piece of ", piece.bytes));
      DWDP_FUZZ_CHECK(
          piece.pool_page == next_page,
          absl::StrCat(where, ": pool page ", piece.pool_page, ", expected ", next_page));
      DWDP_FUZZ_CHECK(static_cast<uint64_t>(piece.pool_page) < rl.slot_pages[plan.slot],
                      absl::StrCat(where, ": pool page ", piece.pool_page, " outside the slot's ",
                                   rl.slot_pages[plan.slot]));
      ++next_page;
    }
    va += piece.bytes;
  }
  DWDP_FUZZ_CHECK(va == wl.total_size,
                  absl::StrCat(where, ": pieces end at ", va, ", total_size ", wl.total_size));
  DWDP_FUZZ_CHECK(local_pieces == 1, absl::StrCat(where, ": ", local_pieces, " local pieces"));
  DWDP_FUZZ_CHECK(static_cast<uint64_t>(next_page - first_page) * pg == wl.pool_bytes(),
                  absl::StrCat(where, ": ", next_page - first_page, " pool pages for ",
                               wl.pool_bytes(), " pool bytes"));
}

// ---------------------------------------------------------------------------------------
// §4: copy and edge-fill plans.

struct PlanContext {
  const GroupLayout& layout;
  const OwnerIndex& owners;
  int64_t rank;
};

// One copy reads the same tensor bytes from inside the range and the handle of their owner.
// `plan` and `index` name the op in messages (built only on failure: this runs per op).
void CheckCopyOp(const PlanContext& ctx, const CopyOp& op, const std::string& plan, size_t index) {
  const auto where = [&] { return absl::StrCat(plan, " op ", index); };
  const int64_t d = static_cast<int64_t>(ctx.layout.peer_ranges.size());
  const int64_t num_weights = static_cast<int64_t>(ctx.layout.ranks[ctx.rank].weights.size());
  DWDP_FUZZ_CHECK(op.weight >= 0 && op.weight < num_weights,
                  absl::StrCat(where(), ": weight ", op.weight));
  DWDP_FUZZ_CHECK(op.src_rank >= 0 && op.src_rank < d && op.src_rank != ctx.rank,
                  absl::StrCat(where(), ": source rank ", op.src_rank, " for rank ", ctx.rank));
  DWDP_FUZZ_CHECK(op.bytes > 0, absl::StrCat(where(), ": empty copy"));
  const WeightLayout& src = ctx.layout.ranks[op.src_rank].weights[op.weight];
  const uint64_t eb = src.expert_bytes;
  const PeerRange& owner_range = ctx.layout.peer_ranges[op.src_rank];
  const u128 dst_end = static_cast<u128>(op.dst_offset) + op.bytes;
  DWDP_FUZZ_CHECK(static_cast<u128>(owner_range.start) * eb <= op.dst_offset &&
                      dst_end <= static_cast<u128>(owner_range.end) * eb,
                  absl::StrCat(where(), ": tensor bytes [", op.dst_offset, ", ", Text(dst_end),
                               ") are not inside rank ", op.src_rank, "'s experts [",
                               owner_range.start, ", ", owner_range.end, ")"));
  const int64_t first_expert = static_cast<int64_t>(op.dst_offset / eb);
  const int64_t last_expert = static_cast<int64_t>((dst_end - 1) / eb);
  DWDP_FUZZ_CHECK(
      ctx.owners.LowestOwner(first_expert) == op.src_rank &&
          ctx.owners.LowestOwner(last_expert) == op.src_rank,
      absl::StrCat(where(), ": experts ", first_expert, "..", last_expert, " read from rank ",
                   op.src_rank, "; their lowest owners are ", ctx.owners.LowestOwner(first_expert),
                   " and ", ctx.owners.LowestOwner(last_expert)));
  const u128 expected_src = static_cast<u128>(op.dst_offset) - src.local_begin + src.leading_edge;
  DWDP_FUZZ_CHECK(
      op.src_offset == expected_src,
      absl::StrCat(where(), ": source offset ", op.src_offset, ", the tensor byte ", op.dst_offset,
                   " sits at ", Text(expected_src), " in rank ", op.src_rank, "'s handle"));
  DWDP_FUZZ_CHECK(static_cast<u128>(op.src_offset) + op.bytes <= src.mnnvl_size,
                  absl::StrCat(where(), ": reads past rank ", op.src_rank, "'s handle of ",
                               src.mnnvl_size, " bytes"));
}

// The copies of one weight, plus `extra` intervals, tile exactly `targets` (sorted, disjoint).
void CheckTiling(const std::vector<CopyOp>& ops, int64_t weight,
                 std::vector<std::pair<uint64_t, uint64_t>> pieces,
                 const std::vector<std::pair<uint64_t, uint64_t>>& targets,
                 const std::string& where) {
  for (const CopyOp& op : ops) {
    if (op.weight == weight) pieces.emplace_back(op.dst_offset, op.dst_offset + op.bytes);
  }
  std::sort(pieces.begin(), pieces.end());
  size_t target = 0;
  uint64_t cursor = targets.empty() ? 0 : targets[0].first;
  for (const auto& [begin, end] : pieces) {
    if (begin == end) continue;
    while (target < targets.size() && cursor == targets[target].second) {
      ++target;
      if (target < targets.size()) cursor = targets[target].first;
    }
    DWDP_FUZZ_CHECK(target < targets.size(),
                    absl::StrCat(where, ": weight ", weight, " bytes [", begin, ", ", end,
                                 ") are delivered past the end of what is needed"));
    DWDP_FUZZ_CHECK(begin == cursor, absl::StrCat(where, ": weight ", weight, " bytes [", begin,
                                                  ", ", end, ") follow byte ", cursor,
                                                  begin < cursor ? " (overlap)" : " (gap)"));
    DWDP_FUZZ_CHECK(end <= targets[target].second,
                    absl::StrCat(where, ": weight ", weight, " bytes [", begin, ", ", end,
                                 ") run past ", targets[target].second));
    cursor = end;
  }
  while (target < targets.size() && cursor == targets[target].second) {
    ++target;
    if (target < targets.size()) cursor = targets[target].first;
  }
  DWDP_FUZZ_CHECK(target == targets.size(), absl::StrCat(where, ": weight ", weight, " bytes from ",
                                                         cursor, " are never delivered"));
}

uint64_t RemoteBytes(const RankLayout& rl) {
  uint64_t bytes = 0;
  for (const WeightLayout& w : rl.weights) bytes += w.tensor_bytes - (w.local_end - w.local_begin);
  return bytes;
}

void CheckCopyPlan(const PlanContext& ctx, ContentionConfig contention) {
  const RankLayout& rl = ctx.layout.ranks[ctx.rank];
  const int64_t d = static_cast<int64_t>(ctx.layout.peer_ranges.size());
  const std::string where =
      absl::StrCat("copy plan (", ContentionModeName(contention.mode), ") of rank ", ctx.rank);
  const CopyPlan plan = MakeCopyPlan(ctx.layout, ctx.rank, contention);
  DWDP_FUZZ_CHECK(plan.rank == ctx.rank, absl::StrCat(where, ": labelled rank ", plan.rank));
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    CheckCopyOp(ctx, plan.ops[i], where, i);
  }
  for (int64_t w = 0; w < static_cast<int64_t>(rl.weights.size()); ++w) {
    const WeightLayout& wl = rl.weights[w];
    CheckTiling(plan.ops, w, {{wl.local_begin, wl.local_end}}, {{0, wl.tensor_bytes}}, where);
  }
  DWDP_FUZZ_CHECK(plan.total_bytes() == RemoteBytes(rl),
                  absl::StrCat(where, ": ", plan.total_bytes(), " bytes, remote slices hold ",
                               RemoteBytes(rl)));

  // The order each mode promises.
  const auto weight_then_offset = [](const CopyOp& a, const CopyOp& b) {
    return std::make_pair(a.weight, a.dst_offset) < std::make_pair(b.weight, b.dst_offset);
  };
  switch (contention.mode) {
    case ContentionMode::kAscending:
      for (size_t i = 1; i < plan.ops.size(); ++i) {
        DWDP_FUZZ_CHECK(weight_then_offset(plan.ops[i - 1], plan.ops[i]),
                        absl::StrCat(where, ": op ", i, " is not weight by weight, ascending"));
      }
      break;
    case ContentionMode::kRotate:
    case ContentionMode::kStaggered:  // the rotate plan; LayerCopyOrder shifts it per layer
      for (size_t i = 1; i < plan.ops.size(); ++i) {
        const auto step = [&](const CopyOp& op) { return (op.src_rank - ctx.rank + d) % d; };
        const int64_t previous = step(plan.ops[i - 1]);
        const int64_t current = step(plan.ops[i]);
        DWDP_FUZZ_CHECK(previous < current || (previous == current &&
                                               weight_then_offset(plan.ops[i - 1], plan.ops[i])),
                        absl::StrCat(where, ": op ", i, " from rank ", plan.ops[i].src_rank,
                                     " breaks the order r+1, r+2, ... (whole runs, weight by "
                                     "weight)"));
      }
      break;
    case ContentionMode::kRoundRobin: {
      const uint64_t slice = std::max<uint64_t>(contention.slice_bytes, 1);
      std::map<int64_t, std::vector<const CopyOp*>> by_owner;
      for (const CopyOp& op : plan.ops) {
        DWDP_FUZZ_CHECK(op.bytes <= slice,
                        absl::StrCat(where, ": a piece of ", op.bytes, " bytes, slice ", slice));
        by_owner[op.src_rank].push_back(&op);
      }
      // Round j holds the j-th piece of every owner with more than j pieces, owners ascending.
      size_t i = 0;
      for (size_t round = 0; i < plan.ops.size(); ++round) {
        for (const auto& [owner, pieces] : by_owner) {
          if (round >= pieces.size()) continue;
          DWDP_FUZZ_CHECK(plan.ops[i].src_rank == owner,
                          absl::StrCat(where, ": op ", i, " is from rank ", plan.ops[i].src_rank,
                                       ", round ", round, " expects rank ", owner));
          ++i;
        }
      }
      // Each owner's pieces come in ascending order and only full slices are followed by more
      // of the same copy.
      for (const auto& [owner, pieces] : by_owner) {
        for (size_t k = 1; k < pieces.size(); ++k) {
          DWDP_FUZZ_CHECK(weight_then_offset(*pieces[k - 1], *pieces[k]),
                          absl::StrCat(where, ": rank ", owner, "'s pieces are out of order"));
          const bool continues =
              pieces[k]->weight == pieces[k - 1]->weight &&
              pieces[k]->dst_offset == pieces[k - 1]->dst_offset + pieces[k - 1]->bytes;
          if (continues) {
            DWDP_FUZZ_CHECK(pieces[k - 1]->bytes == slice,
                            absl::StrCat(where,
                                         ": a copy was cut into a short piece before "
                                         "its end"));
          }
        }
      }
      break;
    }
  }
}

void CheckEdgeFillPlan(const PlanContext& ctx) {
  const RankLayout& rl = ctx.layout.ranks[ctx.rank];
  const std::string where = absl::StrCat("edge-fill plan of rank ", ctx.rank);
  const CopyPlan plan = MakeEdgeFillPlan(ctx.layout, ctx.rank);
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    CheckCopyOp(ctx, plan.ops[i], where, i);
  }
  for (int64_t w = 0; w < static_cast<int64_t>(rl.weights.size()); ++w) {
    const WeightLayout& wl = rl.weights[w];
    std::vector<std::pair<uint64_t, uint64_t>> targets;
    if (wl.page_start < wl.local_begin) targets.emplace_back(wl.page_start, wl.local_begin);
    const uint64_t trailing_end = std::min(wl.page_end, wl.tensor_bytes);
    if (wl.local_end < trailing_end) targets.emplace_back(wl.local_end, trailing_end);
    CheckTiling(plan.ops, w, {}, targets, where);
  }
}

// ---------------------------------------------------------------------------------------

std::vector<int64_t> RanksToCheck(int64_t d) {
  std::vector<int64_t> ranks;
  if (d <= kAllRanksUpTo) {
    for (int64_t r = 0; r < d; ++r) ranks.push_back(r);
  } else {
    ranks = {0, 1, d / 2, d - 2, d - 1};
  }
  return ranks;
}

void CheckLayoutCase(const LayoutCase& c) {
  PartitionInput input;
  input.dwdp_size = c.dwdp_size;
  input.num_experts_per_worker = c.partition_size();
  input.num_prefetch_experts = c.stride;
  input.num_experts = c.partition_num_experts();
  input.loaded_chunk = input.num_experts_per_worker;
  const int64_t d = input.dwdp_size;
  const int64_t size = input.num_experts_per_worker;
  const int64_t stride = input.num_prefetch_experts;
  const int64_t n = input.num_experts;
  const std::string partition_text =
      absl::StrCat("d=", d, " size=", size, " stride=", stride, " N=", n);

  const std::optional<PartitionError> error = ValidatePartition(input);
  const std::optional<std::string> expected_check = ExpectedCheck(input);
  DWDP_FUZZ_CHECK(error.has_value() == expected_check.has_value(),
                  absl::StrCat(partition_text, ": validation says ",
                               error ? error->check : std::string("valid"), ", the spec says ",
                               expected_check.value_or("valid")));
  const absl::StatusOr<Partition> partition = Partition::Create(input);
  if (error) {
    DWDP_FUZZ_CHECK(error->check == *expected_check,
                    absl::StrCat(partition_text, ": check ", error->check, ", the spec says ",
                                 *expected_check));
    DWDP_FUZZ_CHECK(!error->message.empty() && !absl::StrContains(error->message, "\n"),
                    absl::StrCat(partition_text, ": message '", error->message, "'"));
    CheckRecipes(error->recipes, d, n);
    DWDP_FUZZ_CHECK(
        !partition.ok() && absl::StrContains(partition.status().message(), error->check),
        absl::StrCat(partition_text, ": Partition::Create does not report ", error->check));
    return;
  }
  DWDP_FUZZ_CHECK(partition.ok(),
                  absl::StrCat(partition_text, ": ", partition.status().ToString()));
  const std::vector<PeerRange> ranges = SpecRanges(d, size, stride, n);
  DWDP_FUZZ_CHECK(partition->peer_ranges() == ranges,
                  absl::StrCat(partition_text, ": peer ranges differ from DWDP_SPEC §1"));
  CheckOwners(*partition, ranges);
  const std::vector<Recipe> recipes = Recipes(d, n);
  CheckRecipes(recipes, d, n);
  DWDP_FUZZ_CHECK(std::find(recipes.begin(), recipes.end(), Recipe{size, stride}) != recipes.end(),
                  absl::StrCat(partition_text, ": a valid partition is not among the recipes"));

  // The layout, against the spec formulas.
  const uint64_t g = c.granularity();
  const uint64_t pg = c.pool_page_bytes();
  std::vector<WeightSpec> weights;
  for (size_t w = 0; w < c.weights.size(); ++w) {
    weights.push_back(WeightSpec{absl::StrCat("w", w), c.expert_bytes(c.weights[w])});
  }
  std::vector<int64_t> moe_layers;
  for (int64_t l = c.num_layers - 1; l >= 0; --l) moe_layers.push_back(3 + 2 * l);
  std::vector<std::vector<SpecWeight>> spec(static_cast<size_t>(d));
  bool fits = true;
  for (int64_t r = 0; r < d; ++r) {
    u128 local = 0;
    u128 pool = 0;
    for (const WeightSpec& weight : weights) {
      const SpecWeight sw =
          SpecLayout(weight.expert_bytes, n, r * stride, r * stride + size, g, pg);
      fits = fits && sw.Fits();
      local += sw.mnnvl_size;
      pool += sw.pre_size + sw.post_size;
      spec[r].push_back(sw);
    }
    fits = fits && local <= kMaxU64 && pool <= kMaxU64;
  }
  const absl::StatusOr<GroupLayout> layout =
      ComputeGroupLayout(*partition, weights, moe_layers, g, pg, c.num_buffers);
  if (!fits) {
    DWDP_FUZZ_CHECK(!layout.ok(), absl::StrCat(partition_text,
                                               ": bytes that overflow 64 bits "
                                               "gave a layout"));
    DWDP_FUZZ_CHECK(
        absl::IsInvalidArgument(layout.status()) &&
            absl::StrContains(layout.status().message(), "overflow"),
        absl::StrCat(partition_text, ": not a clean overflow error: ", layout.status().ToString()));
    return;
  }
  DWDP_FUZZ_CHECK(layout.ok(), absl::StrCat(partition_text, ": ", layout.status().ToString()));
  DWDP_FUZZ_CHECK(layout->num_experts == n && layout->granularity == g &&
                      layout->pool_page_bytes == pg && layout->num_buffers == c.num_buffers &&
                      layout->peer_ranges == ranges &&
                      static_cast<int64_t>(layout->ranks.size()) == d,
                  absl::StrCat(partition_text, ": group fields differ from the inputs"));
  DWDP_FUZZ_CHECK(std::is_sorted(layout->moe_layers.begin(), layout->moe_layers.end()) &&
                      layout->num_layers() == c.num_layers,
                  "MoE layers are not the given layers, sorted");
  for (int64_t r = 0; r < d; ++r) {
    const RankLayout& rl = layout->ranks[r];
    DWDP_FUZZ_CHECK(rl.rank == r && rl.range == ranges[r],
                    absl::StrCat("rank ", r, " is labelled ", rl.rank));
    DWDP_FUZZ_CHECK(rl.weights.size() == weights.size(), absl::StrCat("rank ", r, " weights"));
    uint64_t local = 0;
    uint64_t pool = 0;
    for (size_t w = 0; w < weights.size(); ++w) {
      CheckWeightLayout(rl.weights[w], spec[r][w], weights[w].expert_bytes, g, pg,
                        absl::StrCat(partition_text, " rank ", r, " weight ", w, " (eb ",
                                     weights[w].expert_bytes, ", G ", g, ", PG ", pg, ")"));
      DWDP_FUZZ_CHECK(rl.weights[w].name == weights[w].name, "weight names are kept");
      local += rl.weights[w].mnnvl_size;
      pool += rl.weights[w].pool_bytes();
    }
    DWDP_FUZZ_CHECK(rl.local_bytes_per_layer == local && rl.pool_pages_per_layer == pool / pg,
                    absl::StrCat("rank ", r, ": per-layer sums differ"));
    // §3: slot s holds the layers at positions ≡ s (mod k); every layer needs the same pages.
    DWDP_FUZZ_CHECK(static_cast<int64_t>(rl.slot_pages.size()) == c.num_buffers,
                    absl::StrCat("rank ", r, ": ", rl.slot_pages.size(), " slots"));
    for (int64_t s = 0; s < c.num_buffers; ++s) {
      const uint64_t expected = s < c.num_layers ? pool / pg : 0;
      DWDP_FUZZ_CHECK(rl.slot_pages[s] == expected,
                      absl::StrCat("rank ", r, " slot ", s, ": ", rl.slot_pages[s],
                                   " pages, expected ", expected));
    }
  }

  // Plans, as far as their size allows.
  const OwnerIndex owners(ranges);
  uint64_t map_budget = kMapPieceBudget;
  const std::vector<int64_t> ranks = RanksToCheck(d);
  for (int64_t r : ranks) {
    for (int64_t w = 0; w < static_cast<int64_t>(weights.size()); ++w) {
      const WeightLayout& wl = layout->ranks[r].weights[w];
      // Two plans (first and last layer position), each of this many pieces.
      const uint64_t pieces = 2 * (wl.pool_bytes() / pg + 1);
      if (pieces > map_budget) continue;
      map_budget -= pieces;
      CheckMapPlan(*layout, r, 0, w);
      CheckMapPlan(*layout, r, c.num_layers - 1, w);
    }
  }
  for (int64_t r : ranks) {
    const PlanContext ctx{*layout, owners, r};
    ContentionConfig contention;
    contention.slice_bytes = c.slice_bytes;
    contention.mode = ContentionMode::kAscending;
    CheckCopyPlan(ctx, contention);
    contention.mode = ContentionMode::kRotate;
    CheckCopyPlan(ctx, contention);
    contention.mode = ContentionMode::kStaggered;
    CheckCopyPlan(ctx, contention);
    // Staggered issues every copy of the plan exactly once per layer, whatever the position.
    const CopyPlan staggered = MakeCopyPlan(*layout, r, contention);
    for (int64_t position = 0; position < 4; ++position) {
      std::vector<size_t> order = LayerCopyOrder(staggered, position, contention.mode);
      std::sort(order.begin(), order.end());
      bool permutation = order.size() == staggered.ops.size();
      for (size_t i = 0; permutation && i < order.size(); ++i) permutation = order[i] == i;
      DWDP_FUZZ_CHECK(permutation, absl::StrCat("staggered order of rank ", r, " at position ",
                                                position, " is not a permutation of its copies"));
    }
    // Round robin cuts copies into slices; keep the number of pieces affordable.
    const uint64_t per_rank = std::max<uint64_t>(64, kRoundRobinPieceBudget / ranks.size());
    const uint64_t remote = RemoteBytes(layout->ranks[r]);
    contention.slice_bytes = std::max<uint64_t>(c.slice_bytes, remote / per_rank + 1);
    contention.mode = ContentionMode::kRoundRobin;
    CheckCopyPlan(ctx, contention);
    CheckEdgeFillPlan(ctx);
  }
}

}  // namespace
}  // namespace dwdp::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  dwdp::fuzz::CheckLayoutCase(dwdp::fuzz::DecodeLayoutCase(provider));
  return 0;
}
