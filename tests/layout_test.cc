// Page-aligned layout (DWDP_SPEC §2 golden table and invariants), map plans, pool slots (§3)
// and copy plans (§4).
#define BOOST_TEST_MODULE layout
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "core/layout/copy_order.h"
#include "core/layout/layout.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

constexpr uint64_t G = 2 * kMiB;
constexpr uint64_t PG = 16 * kMiB;

// DeepSeek-V3 NVFP4 tensors per expert (DWDP_SPEC §2).
const std::vector<WeightSpec> kDeepSeekWeights = {{"w3_w1_weight", 14680064},
                                                  {"w2_weight", 7340032},
                                                  {"w3_w1_weight_scale", 1835008},
                                                  {"w2_weight_scale", 917504}};

std::vector<int64_t> Layers(int64_t count) {
  std::vector<int64_t> layers(count);
  for (int64_t i = 0; i < count; ++i) layers[i] = 3 + i;
  return layers;
}

GroupLayout DeepSeek(int64_t d, int64_t size, int64_t stride, int64_t num_buffers = 2) {
  auto partition = Partition::Create(d, size, stride, 256);
  BOOST_REQUIRE(partition.ok());
  auto layout = ComputeGroupLayout(*partition, kDeepSeekWeights, Layers(58), G, PG, num_buffers);
  BOOST_REQUIRE(layout.ok());
  return *layout;
}

uint64_t SumLeading(const RankLayout& r) {
  uint64_t s = 0;
  for (const auto& w : r.weights) s += w.leading_edge;
  return s;
}
uint64_t SumTrailing(const RankLayout& r) {
  uint64_t s = 0;
  for (const auto& w : r.weights) s += w.trailing_edge;
  return s;
}

// Checks that the copy plan (plus the rank's own bytes) delivers every tensor byte exactly once
// and that each copy reads the same tensor bytes from inside its owner's range.
void CheckCopyPlanDeliversExactlyTheRemoteBytes(const GroupLayout& layout, int64_t rank,
                                                const CopyPlan& plan) {
  const RankLayout& rl = layout.ranks[rank];
  for (int64_t w = 0; w < static_cast<int64_t>(rl.weights.size()); ++w) {
    const WeightLayout& wl = rl.weights[w];
    std::vector<std::pair<uint64_t, uint64_t>> covered = {{wl.local_begin, wl.local_end}};
    for (const CopyOp& op : plan.ops) {
      if (op.weight != w) continue;
      BOOST_REQUIRE(op.bytes > 0);
      BOOST_REQUIRE(op.src_rank != rank);
      const WeightLayout& src = layout.ranks[op.src_rank].weights[w];
      const PeerRange& src_range = layout.peer_ranges[op.src_rank];
      // Source offset maps back to the same tensor bytes, inside the owner's (capped) range.
      BOOST_REQUIRE_EQUAL(op.src_offset - src.leading_edge + src.local_begin, op.dst_offset);
      BOOST_REQUIRE(op.dst_offset >= static_cast<uint64_t>(src_range.start) * wl.expert_bytes);
      BOOST_REQUIRE(op.dst_offset + op.bytes <=
                    static_cast<uint64_t>(src_range.end) * wl.expert_bytes);
      BOOST_REQUIRE(op.src_offset + op.bytes <= src.mnnvl_size);
      covered.emplace_back(op.dst_offset, op.dst_offset + op.bytes);
    }
    std::sort(covered.begin(), covered.end());
    uint64_t cursor = 0;
    for (auto [b, e] : covered) {
      BOOST_REQUIRE_EQUAL(b, cursor);  // no gap, no overlap
      cursor = e;
    }
    BOOST_REQUIRE_EQUAL(cursor, wl.tensor_bytes);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(golden)

BOOST_AUTO_TEST_CASE(deepseek_d4_uniform_has_no_edges_and_284_pool_pages) {
  const GroupLayout layout = DeepSeek(4, 64, 64);
  for (const RankLayout& r : layout.ranks) {
    BOOST_TEST(SumLeading(r) == 0u);
    BOOST_TEST(SumTrailing(r) == 0u);
    BOOST_TEST(r.pool_pages_per_layer == 284u, "rank " << r.rank);
  }
}

BOOST_AUTO_TEST_CASE(deepseek_d4_rank1_w2_weight_scale) {
  const GroupLayout layout = DeepSeek(4, 64, 64);
  const WeightLayout& w = layout.ranks[1].weights[3];
  BOOST_TEST(w.name == "w2_weight_scale");
  BOOST_TEST(w.page_start == 58720256u);
  BOOST_TEST(w.pre_size == 67108864u);
  BOOST_TEST(w.pre_padding == 8388608u);
}

BOOST_AUTO_TEST_CASE(deepseek_d3_mode_b_edges_and_pages) {
  const GroupLayout layout = DeepSeek(3, 86, 85);
  const uint64_t mib = kMiB;
  BOOST_TEST((layout.ranks[0].range == PeerRange{0, 86}));
  BOOST_TEST(SumLeading(layout.ranks[0]) == 0u);
  BOOST_TEST(SumTrailing(layout.ranks[0]) == 9 * mib / 4);  // 2.25 MiB
  BOOST_TEST(layout.ranks[0].pool_pages_per_layer == 253u);
  BOOST_TEST((layout.ranks[1].range == PeerRange{85, 171}));
  BOOST_TEST(SumLeading(layout.ranks[1]) == 17 * mib / 8);  // 2.125 MiB
  BOOST_TEST(SumTrailing(layout.ranks[1]) == 17 * mib / 8);
  BOOST_TEST(layout.ranks[1].pool_pages_per_layer == 256u);
  BOOST_TEST((layout.ranks[2].range == PeerRange{170, 256}));
  BOOST_TEST(SumLeading(layout.ranks[2]) == 9 * mib / 4);
  BOOST_TEST(SumTrailing(layout.ranks[2]) == 0u);
  BOOST_TEST(layout.ranks[2].pool_pages_per_layer == 253u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(properties)

BOOST_AUTO_TEST_CASE(invariants_hold_on_random_inputs) {
  std::mt19937_64 rng(2026);
  int checked = 0;
  for (uint64_t granularity : {64 * kKiB, 2 * kMiB}) {
    const std::vector<uint64_t> special_sizes = {
        3 * granularity + 17, granularity - 1, 6145 * 512,          1, 7,
        granularity / 3,      granularity,     40 * granularity + 1};
    for (uint64_t page : {granularity, 8 * granularity}) {
      for (int iter = 0; iter < 150; ++iter) {
        const int64_t d = 2 + static_cast<int64_t>(rng() % 9);
        const int64_t n = d + static_cast<int64_t>(rng() % 300);
        const auto recipes = Recipes(d, n);
        const Recipe recipe = recipes[rng() % recipes.size()];
        std::vector<WeightSpec> weights;
        const int num_weights = 1 + static_cast<int>(rng() % 4);
        for (int i = 0; i < num_weights; ++i) {
          const uint64_t eb = (rng() % 2) ? special_sizes[rng() % special_sizes.size()]
                                          : 1 + rng() % (50 * granularity);
          weights.push_back({"w" + std::to_string(i), eb});
        }
        auto partition =
            Partition::Create(d, recipe.num_experts_per_worker, recipe.num_prefetch_experts, n);
        BOOST_REQUIRE(partition.ok());
        const int64_t k = 2 + static_cast<int64_t>(rng() % 3);
        auto layout =
            ComputeGroupLayout(*partition, weights, {1, 2, 3, 4, 5}, granularity, page, k);
        BOOST_REQUIRE(layout.ok());
        for (const RankLayout& r : layout->ranks) {
          for (const WeightLayout& w : r.weights) {
            // Every local expert lies inside [page_start, page_end).
            BOOST_REQUIRE(w.page_start <= static_cast<uint64_t>(r.range.start) * w.expert_bytes);
            BOOST_REQUIRE(static_cast<uint64_t>(r.range.end) * w.expert_bytes <= w.page_end);
            BOOST_REQUIRE(w.pre_padding + w.tensor_bytes <= w.total_size);
            BOOST_REQUIRE_EQUAL(w.pre_size % page, 0u);
            BOOST_REQUIRE_EQUAL(w.post_size % page, 0u);
            BOOST_REQUIRE_EQUAL(w.mnnvl_size % granularity, 0u);
            BOOST_REQUIRE_EQUAL(w.page_start % granularity, 0u);
            BOOST_REQUIRE(w.leading_edge < granularity);
            BOOST_REQUIRE(w.trailing_edge < granularity);
            // The local handle sits right after the pre region: tensor byte page_start.
            BOOST_REQUIRE_EQUAL(w.va_offset_of(w.page_start), w.pre_size);
          }
          CheckCopyPlanDeliversExactlyTheRemoteBytes(
              *layout, r.rank, MakeCopyPlan(*layout, r.rank, {ContentionMode::kRotate, 2 * kMiB}));
          ++checked;
        }
      }
    }
  }
  BOOST_TEST(checked > 1000);
}

BOOST_AUTO_TEST_CASE(overflowing_sizes_are_rejected_not_wrapped) {
  auto partition = Partition::Create(2, 4, 4, 8);
  BOOST_REQUIRE(partition.ok());
  auto layout = ComputeGroupLayout(*partition, {{"huge", uint64_t{1} << 62}}, {0}, G, PG, 2);
  BOOST_REQUIRE(!layout.ok());
  BOOST_TEST(std::string(layout.status().message()).find("overflow") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(page_size_must_be_a_power_of_two_multiple_of_granularity) {
  auto partition = Partition::Create(2, 4, 4, 8);
  BOOST_REQUIRE(partition.ok());
  BOOST_TEST(!ComputeGroupLayout(*partition, {{"w", 100}}, {0}, G, 3 * G, 2).ok());
  BOOST_TEST(!ComputeGroupLayout(*partition, {{"w", 100}}, {0}, G, G / 2, 2).ok());
  BOOST_TEST(ComputeGroupLayout(*partition, {{"w", 100}}, {0}, G, G, 2).ok());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(map_plan)

BOOST_AUTO_TEST_CASE(pieces_are_contiguous_and_weights_take_pages_in_order) {
  const GroupLayout layout = DeepSeek(3, 86, 85, 3);
  for (int64_t rank = 0; rank < 3; ++rank) {
    int64_t next_page = 0;
    for (int64_t w = 0; w < 4; ++w) {
      const MapPlan plan = MakeMapPlan(layout, rank, /*position=*/4, w);
      BOOST_TEST(plan.slot == 1);  // position 4 mod 3 slots
      const WeightLayout& wl = layout.ranks[rank].weights[w];
      uint64_t va = 0;
      int local_pieces = 0;
      for (const MapPiece& piece : plan.pieces) {
        BOOST_REQUIRE_EQUAL(piece.va_offset, va);
        va += piece.bytes;
        if (piece.kind == MapPiece::Kind::kLocalHandle) {
          ++local_pieces;
          BOOST_TEST(piece.va_offset == wl.pre_size);
          BOOST_TEST(piece.bytes == wl.mnnvl_size);
        } else {
          BOOST_TEST(piece.bytes == PG);
          BOOST_TEST(piece.pool_page == next_page++);
        }
      }
      BOOST_TEST(local_pieces == 1);
      BOOST_TEST(va == wl.total_size);
    }
    BOOST_TEST(static_cast<uint64_t>(next_page) == layout.ranks[rank].pool_pages_per_layer);
  }
}

BOOST_AUTO_TEST_CASE(slot_is_position_modulo_k_not_layer_index) {
  const GroupLayout layout = DeepSeek(4, 64, 64, 3);
  BOOST_TEST(layout.moe_layers.front() == 3);
  BOOST_TEST(layout.slot_of(0) == 0);  // layer 3
  BOOST_TEST(layout.slot_of(1) == 1);
  BOOST_TEST(layout.slot_of(3) == 0);
  BOOST_TEST(layout.ranks[0].slot_pages.size() == 3u);
  for (uint64_t pages : layout.ranks[0].slot_pages) BOOST_TEST(pages == 284u);
}

BOOST_AUTO_TEST_CASE(fewer_layers_than_slots_leaves_slots_empty) {
  auto partition = Partition::Create(2, 4, 4, 8);
  BOOST_REQUIRE(partition.ok());
  auto layout = ComputeGroupLayout(*partition, {{"w", 3 * G}}, {7}, G, PG, 3);
  BOOST_REQUIRE(layout.ok());
  BOOST_TEST(layout->ranks[0].slot_pages[0] > 0u);
  BOOST_TEST(layout->ranks[0].slot_pages[1] == 0u);
  BOOST_TEST(layout->ranks[0].slot_pages[2] == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(copy_plan)

BOOST_AUTO_TEST_CASE(d4_copies_192_experts_per_layer) {
  const GroupLayout layout = DeepSeek(4, 64, 64);
  for (ContentionMode mode :
       {ContentionMode::kRotate, ContentionMode::kAscending, ContentionMode::kRoundRobin}) {
    for (int64_t rank = 0; rank < 4; ++rank) {
      const CopyPlan plan = MakeCopyPlan(layout, rank, {mode, 2 * kMiB});
      BOOST_TEST(plan.total_bytes() == uint64_t{192} * 24772608u);
      CheckCopyPlanDeliversExactlyTheRemoteBytes(layout, rank, plan);
    }
  }
}

BOOST_AUTO_TEST_CASE(rotate_visits_owners_from_r_plus_one_whole_runs) {
  const GroupLayout layout = DeepSeek(4, 64, 64);
  const CopyPlan plan = MakeCopyPlan(layout, 1, {ContentionMode::kRotate, 2 * kMiB});
  // One copy per (weight, owner), all weights of owner 2, then 3, then 0.
  BOOST_REQUIRE_EQUAL(plan.ops.size(), 12u);
  const int64_t owners[] = {2, 2, 2, 2, 3, 3, 3, 3, 0, 0, 0, 0};
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    BOOST_TEST(plan.ops[i].src_rank == owners[i]);
    BOOST_TEST(plan.ops[i].weight == static_cast<int64_t>(i % 4));
    BOOST_TEST(plan.ops[i].bytes == 64u * kDeepSeekWeights[i % 4].expert_bytes);
  }
}

BOOST_AUTO_TEST_CASE(ascending_goes_weight_by_weight_owners_ascending) {
  const GroupLayout layout = DeepSeek(4, 64, 64);
  const CopyPlan plan = MakeCopyPlan(layout, 2, {ContentionMode::kAscending, 2 * kMiB});
  BOOST_REQUIRE_EQUAL(plan.ops.size(), 12u);
  const int64_t owners[] = {0, 1, 3};
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    BOOST_TEST(plan.ops[i].weight == static_cast<int64_t>(i / 3));
    BOOST_TEST(plan.ops[i].src_rank == owners[i % 3]);
  }
}

BOOST_AUTO_TEST_CASE(round_robin_cuts_pieces_and_interleaves_owners) {
  const GroupLayout layout = DeepSeek(4, 64, 64);
  const CopyPlan plan = MakeCopyPlan(layout, 0, {ContentionMode::kRoundRobin, 2 * kMiB});
  for (const CopyOp& op : plan.ops) BOOST_REQUIRE(op.bytes <= 2 * kMiB);
  // Consecutive pieces come from different owners while more than one owner has pieces left.
  BOOST_TEST(plan.ops[0].src_rank == 1);
  BOOST_TEST(plan.ops[1].src_rank == 2);
  BOOST_TEST(plan.ops[2].src_rank == 3);
  BOOST_TEST(plan.ops[3].src_rank == 1);
  // 192 experts x 24,772,608 bytes in 2 MiB pieces (per weight, per run).
  uint64_t expected_pieces = 0;
  for (const auto& w : kDeepSeekWeights)
    expected_pieces += 3 * ((64 * w.expert_bytes + 2 * kMiB - 1) / (2 * kMiB));
  BOOST_TEST(plan.ops.size() == expected_pieces);
}

BOOST_AUTO_TEST_CASE(mode_b_copies_come_from_the_lowest_owner) {
  const GroupLayout layout = DeepSeek(3, 86, 85);
  const CopyPlan plan = MakeCopyPlan(layout, 0, {ContentionMode::kAscending, 2 * kMiB});
  // Rank 0 holds [0, 86): experts [86, 171) from rank 1, [171, 256) from rank 2.
  const uint64_t eb = kDeepSeekWeights[0].expert_bytes;
  BOOST_REQUIRE(plan.ops.size() >= 2u);
  BOOST_TEST(plan.ops[0].src_rank == 1);
  BOOST_TEST(plan.ops[0].dst_offset == 86 * eb);
  BOOST_TEST(plan.ops[0].bytes == 85 * eb);
  BOOST_TEST(plan.ops[1].src_rank == 2);
  BOOST_TEST(plan.ops[1].dst_offset == 171 * eb);
  BOOST_TEST(plan.ops[1].bytes == 85 * eb);
  // Rank 1's leading edge (w3_w1: 85*14 MiB is 2 MiB-aligned? no: 1190 MiB is) is zero here, so
  // rank 1's data starts at handle offset (86-85)*eb for expert 86.
  BOOST_TEST(plan.ops[0].src_offset == layout.ranks[1].weights[0].leading_edge + 1 * eb);
}

BOOST_AUTO_TEST_CASE(edge_fill_covers_exactly_the_edge_bytes) {
  const GroupLayout layout = DeepSeek(3, 86, 85);
  for (int64_t rank = 0; rank < 3; ++rank) {
    const CopyPlan plan = MakeEdgeFillPlan(layout, rank);
    uint64_t expected = 0;
    for (const WeightLayout& w : layout.ranks[rank].weights) {
      expected += w.leading_edge + std::min(w.page_end, w.tensor_bytes) - w.local_end;
    }
    BOOST_TEST(plan.total_bytes() == expected, "rank " << rank);
    for (const CopyOp& op : plan.ops) {
      const WeightLayout& w = layout.ranks[rank].weights[op.weight];
      const bool leading =
          op.dst_offset >= w.page_start && op.dst_offset + op.bytes <= w.local_begin;
      const bool trailing = op.dst_offset >= w.local_end && op.dst_offset + op.bytes <= w.page_end;
      BOOST_TEST((leading || trailing));
      BOOST_TEST(op.src_rank != rank);
    }
  }
  BOOST_TEST(MakeEdgeFillPlan(DeepSeek(4, 64, 64), 1).ops.empty());
}

BOOST_AUTO_TEST_CASE(tiny_round_robin_slices_over_huge_experts_are_refused) {
  const GroupLayout layout = DeepSeek(4, 64, 64);
  // 192 remote experts x 24.8 MB in 64-byte pieces: about 74 million copies per layer.
  const absl::Status tiny = CheckCopyPlanSize(layout, {ContentionMode::kRoundRobin, 64});
  BOOST_TEST(!tiny.ok());
  BOOST_TEST(std::string(tiny.message()).find("slice_bytes") != std::string::npos);
  BOOST_TEST(CheckCopyPlanSize(layout, {ContentionMode::kRoundRobin, 2 * kMiB}).ok());
  BOOST_TEST(CheckCopyPlanSize(layout, {ContentionMode::kRotate, 64}).ok());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(peer_order)

namespace tt = boost::test_tools;

BOOST_AUTO_TEST_CASE(rotate_starts_after_the_rank_and_wraps) {
  using V = std::vector<int64_t>;
  BOOST_TEST(PeerOrder(0, 4, PeerOrderKind::kRotate) == V({1, 2, 3}), tt::per_element());
  BOOST_TEST(PeerOrder(1, 4, PeerOrderKind::kRotate) == V({2, 3, 0}), tt::per_element());
  BOOST_TEST(PeerOrder(3, 4, PeerOrderKind::kRotate) == V({0, 1, 2}), tt::per_element());
  BOOST_TEST(PeerOrder(1, 2, PeerOrderKind::kRotate) == V({0}), tt::per_element());
}

BOOST_AUTO_TEST_CASE(ascending_is_rank_order_without_the_rank) {
  using V = std::vector<int64_t>;
  BOOST_TEST(PeerOrder(0, 4, PeerOrderKind::kAscending) == V({1, 2, 3}), tt::per_element());
  BOOST_TEST(PeerOrder(2, 4, PeerOrderKind::kAscending) == V({0, 1, 3}), tt::per_element());
  BOOST_TEST(PeerOrder(3, 4, PeerOrderKind::kAscending) == V({0, 1, 2}), tt::per_element());
}

BOOST_AUTO_TEST_CASE(one_rank_has_no_peers) {
  BOOST_TEST(PeerOrder(0, 1, PeerOrderKind::kRotate).empty());
  BOOST_TEST(PeerOrder(0, 1, PeerOrderKind::kAscending).empty());
}

BOOST_AUTO_TEST_CASE(rotate_is_a_latin_square) {
  // At every step every rank reads a different peer, so no GPU serves two pullers at once.
  for (int64_t d = 2; d <= 9; ++d) {
    for (int64_t step = 0; step < d - 1; ++step) {
      std::vector<bool> read(d, false);
      for (int64_t r = 0; r < d; ++r) {
        const int64_t peer = PeerOrder(r, d, PeerOrderKind::kRotate)[step];
        BOOST_TEST(peer != r);
        BOOST_TEST(!read[peer], "d " << d << " step " << step << " peer " << peer);
        read[peer] = true;
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(peer_slot_is_the_place_in_rank_order) {
  BOOST_TEST(PeerSlot(2, 0) == 0);
  BOOST_TEST(PeerSlot(2, 1) == 1);
  BOOST_TEST(PeerSlot(2, 3) == 2);
  BOOST_TEST(PeerSlot(0, 1) == 0);
}

BOOST_AUTO_TEST_CASE(staggered_starts_each_layer_at_the_next_owner_visit) {
  // Visits: owner 1 (ops 0, 1), owner 2 (op 2), owner 3 (ops 3, 4).
  CopyPlan plan;
  for (int64_t owner : {1, 1, 2, 3, 3}) plan.ops.push_back({0, 0, owner, 0, 1});
  using V = std::vector<size_t>;
  BOOST_TEST((LayerCopyOrder(plan, 0, ContentionMode::kStaggered) == V{0, 1, 2, 3, 4}));
  BOOST_TEST((LayerCopyOrder(plan, 1, ContentionMode::kStaggered) == V{2, 3, 4, 0, 1}));
  BOOST_TEST((LayerCopyOrder(plan, 2, ContentionMode::kStaggered) == V{3, 4, 0, 1, 2}));
  BOOST_TEST((LayerCopyOrder(plan, 3, ContentionMode::kStaggered) == V{0, 1, 2, 3, 4}));
  // Every other schedule issues the plan as it is, whatever the layer.
  BOOST_TEST((LayerCopyOrder(plan, 2, ContentionMode::kRotate) == V{0, 1, 2, 3, 4}));
  BOOST_TEST(LayerCopyOrder(CopyPlan{}, 5, ContentionMode::kStaggered).empty());
}

BOOST_AUTO_TEST_CASE(staggered_keeps_a_latin_square_in_every_layer) {
  // d = 4, uniform: at every visit index of every layer the four ranks read four different
  // owners, and a layer's first owner moves on by one from layer to layer.
  const GroupLayout layout = DeepSeek(4, 64, 64);
  const ContentionConfig staggered{ContentionMode::kStaggered, 2 * kMiB};
  for (int64_t position = 0; position < 4; ++position) {
    std::vector<std::vector<int64_t>> owners;
    for (int64_t r = 0; r < 4; ++r) {
      const CopyPlan plan = MakeCopyPlan(layout, r, staggered);
      std::vector<int64_t> visits;
      for (size_t i : LayerCopyOrder(plan, position, staggered.mode)) {
        if (visits.empty() || visits.back() != plan.ops[i].src_rank) {
          visits.push_back(plan.ops[i].src_rank);
        }
      }
      owners.push_back(visits);
    }
    for (size_t k = 0; k < owners[0].size(); ++k) {
      std::set<int64_t> at_k;
      for (const auto& v : owners) at_k.insert(v.at(k));
      BOOST_TEST(at_k.size() == 4u);
    }
    BOOST_TEST(owners[0].front() == 1 + position % 3);
  }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace dwdp
