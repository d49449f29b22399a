// Acceptance cases of DWDP_SPEC §1 and §7 (peer ranges, owner lookup, validation order, recipes,
// shard scatter). Expected values are the spec's.
#define BOOST_TEST_MODULE partition
#include <boost/test/unit_test.hpp>

#include <numeric>
#include <random>

#include "core/partition/partition.h"

namespace dwdp {
namespace {

std::vector<PeerRange> Ranges(std::initializer_list<std::pair<int64_t, int64_t>> pairs) {
  std::vector<PeerRange> out;
  for (auto [s, e] : pairs) out.push_back(PeerRange{s, e});
  return out;
}

PartitionInput Defaults() {
  PartitionInput in;
  in.dwdp_size = 4;
  in.num_experts_per_worker = 64;
  in.num_prefetch_experts = 64;
  in.num_experts = 256;
  in.loaded_chunk = 64;
  return in;
}

std::string CheckOf(const PartitionInput& in) {
  auto error = ValidatePartition(in);
  return error ? error->check : std::string("valid");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(peer_ranges)

BOOST_AUTO_TEST_CASE(uniform_d4_256) {
  auto p = Partition::Create(4, 64, 64, 256);
  BOOST_REQUIRE(p.ok());
  BOOST_TEST((p->peer_ranges() == Ranges({{0, 64}, {64, 128}, {128, 192}, {192, 256}})));
  for (int64_t e = 0; e < 256; ++e) BOOST_TEST(*p->owner(e) == e / 64);
}

BOOST_AUTO_TEST_CASE(mode_b_d3_86_85) {
  auto p = Partition::Create(3, 86, 85, 256);
  BOOST_REQUIRE(p.ok());
  BOOST_TEST((p->peer_ranges() == Ranges({{0, 86}, {85, 171}, {170, 256}})));
  const std::pair<int64_t, int64_t> owners[] = {{84, 0},  {85, 0},  {86, 1},
                                                {170, 1}, {171, 2}, {255, 2}};
  for (auto [e, r] : owners) BOOST_TEST(*p->owner(e) == r, "owner(" << e << ")");
}

BOOST_AUTO_TEST_CASE(mode_b_d7_40_36) {
  auto p = Partition::Create(7, 40, 36, 256);
  BOOST_REQUIRE(p.ok());
  for (int64_t r = 0; r < 7; ++r) {
    BOOST_TEST(p->range_of(r).start == 36 * r);
    BOOST_TEST(p->range_of(r).end == std::min<int64_t>(36 * r + 40, 256));
  }
  BOOST_TEST((p->range_of(6) == PeerRange{216, 256}));
}

BOOST_AUTO_TEST_CASE(owner_out_of_range_is_an_error) {
  auto p = Partition::Create(2, 4, 4, 8);
  BOOST_REQUIRE(p.ok());
  BOOST_TEST(!p->owner(8).ok());
  BOOST_TEST(!p->owner(99).ok());
  BOOST_TEST(!p->owner(-1).ok());
  BOOST_TEST(*p->owner(7) == 1);
}

BOOST_AUTO_TEST_CASE(owner_is_lowest_rank_holding_the_expert_on_random_partitions) {
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 500; ++iter) {
    const int64_t d = 2 + static_cast<int64_t>(rng() % 12);
    const int64_t n = d + static_cast<int64_t>(rng() % 400);
    auto recipes = Recipes(d, n);
    BOOST_REQUIRE(!recipes.empty());
    const Recipe recipe = recipes[rng() % recipes.size()];
    auto p = Partition::Create(d, recipe.num_experts_per_worker, recipe.num_prefetch_experts, n);
    BOOST_REQUIRE(p.ok());
    for (int64_t e = 0; e < n; ++e) {
      int64_t lowest = -1;
      for (int64_t r = 0; r < d && lowest < 0; ++r) {
        if (p->range_of(r).contains(e)) lowest = r;
      }
      BOOST_REQUIRE(lowest >= 0);
      BOOST_REQUIRE_EQUAL(*p->owner(e), lowest);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(validation)

BOOST_AUTO_TEST_CASE(valid_partitions_pass) {
  BOOST_TEST(CheckOf(Defaults()) == "valid");
  struct Case {
    int64_t d, size, stride, n;
  };
  for (Case c : {Case{8, 32, 32, 256}, Case{2, 36, 36, 72}, Case{3, 86, 85, 256},
                 Case{5, 52, 51, 256}, Case{7, 40, 36, 256}}) {
    PartitionInput in = Defaults();
    in.dwdp_size = c.d;
    in.num_experts_per_worker = in.loaded_chunk = c.size;
    in.num_prefetch_experts = c.stride;
    in.num_experts = c.n;
    BOOST_TEST(CheckOf(in) == "valid", c.d << " " << c.size << "/" << c.stride);
  }
}

BOOST_AUTO_TEST_CASE(size_not_positive_names_num_experts_per_worker) {
  for (int64_t size : {0, -5}) {
    PartitionInput in = Defaults();
    in.num_experts_per_worker = size;
    auto error = ValidatePartition(in);
    BOOST_REQUIRE(error);
    BOOST_TEST(error->check == "size_positive");
    BOOST_TEST(error->message.find("num_experts_per_worker") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(stride_not_positive_names_num_prefetch_experts) {
  for (int64_t stride : {0, -1}) {
    PartitionInput in = Defaults();
    in.num_prefetch_experts = stride;
    auto error = ValidatePartition(in);
    BOOST_REQUIRE(error);
    BOOST_TEST(error->check == "stride_positive");
    BOOST_TEST(error->message.find("num_prefetch_experts") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(stride_larger_than_size_is_a_gap) {
  PartitionInput in = Defaults();
  in.num_prefetch_experts = 128;
  BOOST_TEST(CheckOf(in) == "gap");
}

BOOST_AUTO_TEST_CASE(short_coverage_is_reported_with_numbers) {
  PartitionInput in = Defaults();
  in.num_experts_per_worker = in.loaded_chunk = 32;
  in.num_prefetch_experts = 32;
  auto error = ValidatePartition(in);
  BOOST_REQUIRE(error);
  BOOST_TEST(error->check == "coverage");
  BOOST_TEST(error->message.find("128") != std::string::npos);  // (4-1)*32+32
  BOOST_TEST(error->message.find("256") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(tail_padding_suggests_recipes) {
  PartitionInput in = Defaults();
  in.dwdp_size = 3;
  in.num_experts_per_worker = in.loaded_chunk = 86;
  in.num_prefetch_experts = 86;
  auto error = ValidatePartition(in);
  BOOST_REQUIRE(error);
  BOOST_TEST(error->check == "tail_padding");
  BOOST_REQUIRE(!error->recipes.empty());
  BOOST_TEST((error->recipes.front() == Recipe{86, 85}));
  BOOST_TEST(error->message.find("86/85") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(loaded_chunk_mismatch) {
  for (int64_t loaded : {32, 96}) {
    PartitionInput in = Defaults();
    in.loaded_chunk = loaded;
    auto error = ValidatePartition(in);
    BOOST_REQUIRE(error);
    BOOST_TEST(error->check == "chunk_mismatch");
    BOOST_TEST(error->message.find(std::to_string(loaded)) != std::string::npos);
    BOOST_TEST(error->message.find("64") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(first_failure_wins_size_before_stride_and_chunk) {
  PartitionInput in = Defaults();
  in.num_experts_per_worker = 0;
  in.num_prefetch_experts = 128;
  in.loaded_chunk = 0;
  BOOST_TEST(CheckOf(in) == "size_positive");
}

BOOST_AUTO_TEST_CASE(group_and_world_checks) {
  PartitionInput in = Defaults();
  in.num_groups = 0;
  BOOST_TEST(CheckOf(in) == "num_groups");
  in.num_groups = 2;
  in.world_size = 7;
  BOOST_TEST(CheckOf(in) == "world_size");
  in.world_size = 8;
  BOOST_TEST(CheckOf(in) == "valid");
  in.world_size = 12;  // ranks 8..11 would form a third group that is not configured
  BOOST_TEST(CheckOf(in) == "group_id");
  in.world_size = 8;
  in.rank = 9;
  BOOST_TEST(CheckOf(in) == "group_id");
}

BOOST_AUTO_TEST_CASE(single_rank_group_is_rejected) {
  PartitionInput in = Defaults();
  in.dwdp_size = 1;
  in.num_experts_per_worker = in.num_prefetch_experts = in.loaded_chunk = 256;
  BOOST_TEST(CheckOf(in) == "dwdp_size");
}

BOOST_AUTO_TEST_CASE(huge_values_do_not_overflow) {
  PartitionInput in = Defaults();
  in.num_prefetch_experts = int64_t{1} << 62;
  in.num_experts_per_worker = in.loaded_chunk = int64_t{1} << 62;
  BOOST_TEST(CheckOf(in) == "tail_padding");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(recipes)

BOOST_AUTO_TEST_CASE(spec_examples_come_first) {
  BOOST_TEST((Recipes(3, 256).front() == Recipe{86, 85}));
  BOOST_TEST((Recipes(5, 256).front() == Recipe{52, 51}));
  BOOST_TEST((Recipes(7, 256).front() == Recipe{40, 36}));
  BOOST_TEST((Recipes(4, 256).front() == Recipe{64, 64}));
  const auto d4 = Recipes(4, 256);
  BOOST_TEST((std::find(d4.begin(), d4.end(), Recipe{70, 62}) != d4.end()));
}

BOOST_AUTO_TEST_CASE(every_recipe_is_valid_and_ordered_by_overlap) {
  for (int64_t d = 2; d <= 16; ++d) {
    for (int64_t n : {8, 64, 72, 128, 256, 384}) {
      const auto recipes = Recipes(d, n);
      // Every (size, stride) with 0 < stride <= size and (d-1)*stride + size == n.
      int64_t expected = 0;
      for (int64_t stride = 1; stride <= n; ++stride) {
        const int64_t size = n - (d - 1) * stride;
        if (size >= stride) ++expected;
      }
      BOOST_TEST(static_cast<int64_t>(recipes.size()) == expected);
      for (size_t i = 0; i < recipes.size(); ++i) {
        PartitionInput in;
        in.dwdp_size = d;
        in.num_experts = n;
        in.num_experts_per_worker = in.loaded_chunk = recipes[i].num_experts_per_worker;
        in.num_prefetch_experts = recipes[i].num_prefetch_experts;
        BOOST_TEST(CheckOf(in) == "valid");
        if (i > 0) BOOST_TEST(recipes[i - 1].overlap() <= recipes[i].overlap());
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(no_recipe_when_group_exceeds_experts) {
  BOOST_TEST(Recipes(9, 8).empty());
  BOOST_TEST(Recipes(1, 8).empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(shard_scatter)

BOOST_AUTO_TEST_CASE(overlapping_ranges_rebuild_the_full_vector) {
  const auto ranges = Ranges({{0, 4}, {2, 6}, {4, 8}});
  std::vector<std::vector<double>> shards = {{0, 1, 2, 3}, {2, 3, 4, 5}, {4, 5, 6, 7}};
  auto full = ScatterShards(ranges, shards, 8);
  BOOST_REQUIRE(full.ok());
  std::vector<double> expected(8);
  std::iota(expected.begin(), expected.end(), 0.0);
  BOOST_TEST(*full == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(mode_b_d3_capped_shards) {
  const auto ranges = Ranges({{0, 86}, {85, 171}, {170, 256}});
  std::vector<std::vector<double>> shards;
  for (const PeerRange& r : ranges) {
    std::vector<double> shard(86);
    // arange(start, start + 86), capped at 256 (the last shard's tail is never read)
    for (int64_t i = 0; i < 86; ++i)
      shard[i] = static_cast<double>(std::min<int64_t>(r.start + i, 255));
    shards.push_back(shard);
  }
  auto full = ScatterShards(ranges, shards, 256);
  BOOST_REQUIRE(full.ok());
  for (int64_t e = 0; e < 256; ++e) BOOST_REQUIRE_EQUAL((*full)[e], static_cast<double>(e));
}

BOOST_AUTO_TEST_CASE(two_dimensional_rows_are_scattered_whole) {
  const auto ranges = Ranges({{0, 2}, {2, 4}});
  std::vector<std::vector<double>> shards = {{0, 10, 1, 11}, {2, 12, 3, 13}};
  auto full = ScatterShards(ranges, shards, 4, 2);
  BOOST_REQUIRE(full.ok());
  const std::vector<double> expected = {0, 10, 1, 11, 2, 12, 3, 13};
  BOOST_TEST(*full == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(no_shards_is_an_error) {
  const auto ranges = Ranges({{0, 4}, {4, 8}});
  auto full = ScatterShards(ranges, {}, 8);
  BOOST_TEST(!full.ok());
  BOOST_TEST(std::string(full.status().message()).find("no shards") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(disagreeing_overlap_is_an_error) {
  const auto ranges = Ranges({{0, 4}, {2, 6}});
  std::vector<std::vector<double>> shards = {{0, 1, 2, 3}, {9, 3, 4, 5}};
  BOOST_TEST(!ScatterShards(ranges, shards, 6).ok());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace dwdp
