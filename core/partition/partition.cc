#include "core/partition/partition.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dwdp {
namespace {

// (d-1)*stride + size, or nullopt when it does not fit in int64 (then it certainly exceeds N).
std::optional<int64_t> Coverage(int64_t d, int64_t size, int64_t stride) {
  int64_t product = 0;
  int64_t total = 0;
  if (__builtin_mul_overflow(d - 1, stride, &product)) return std::nullopt;
  if (__builtin_add_overflow(product, size, &total)) return std::nullopt;
  return total;
}

std::string FormatRecipes(const std::vector<Recipe>& recipes, size_t max_shown) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < recipes.size() && i < max_shown; ++i) {
    parts.push_back(absl::StrFormat("%d/%d (overlap %d)", recipes[i].num_experts_per_worker,
                                    recipes[i].num_prefetch_experts, recipes[i].overlap()));
  }
  return absl::StrJoin(parts, ", ");
}

PartitionError Fail(const char* check, std::string message, const PartitionInput& in) {
  return PartitionError{check, std::move(message), Recipes(in.dwdp_size, in.num_experts)};
}

}  // namespace

std::vector<Recipe> Recipes(int64_t dwdp_size, int64_t num_experts) {
  std::vector<Recipe> out;
  if (dwdp_size < 2 || num_experts < 1) return out;
  // size = N - (d-1)*stride and stride <= size  <=>  d*stride <= N; overlap = N - d*stride,
  // so the largest stride has the least overlap.
  for (int64_t stride = num_experts / dwdp_size; stride >= 1; --stride) {
    out.push_back(Recipe{num_experts - (dwdp_size - 1) * stride, stride});
  }
  return out;
}

PartitionInput PartitionInput::FromScenario(const Scenario& scenario) {
  PartitionInput in;
  in.dwdp_size = scenario.dwdp.dwdp_size;
  in.num_experts_per_worker = scenario.dwdp.num_experts_per_worker;
  in.num_prefetch_experts = scenario.dwdp.num_prefetch_experts;
  in.num_experts = scenario.model.num_experts;
  in.loaded_chunk = scenario.dwdp.loaded_chunk.value_or(scenario.dwdp.num_experts_per_worker);
  in.num_groups = scenario.dwdp.num_groups;
  return in;
}

std::optional<PartitionError> ValidatePartition(const PartitionInput& in) {
  const int64_t d = in.dwdp_size;
  const int64_t size = in.num_experts_per_worker;
  const int64_t stride = in.num_prefetch_experts;
  const int64_t n = in.num_experts;
  // DWDP_SPEC §1 lists the dwdp_size check last; it runs first here because every later
  // message (coverage, recipes) is computed from d and means nothing for d <= 1.
  if (d <= 1) {
    return Fail(kCheckDwdpSize,
                absl::StrFormat("dwdp_size is %d; DWDP needs at least two ranks per group "
                                "(set dwdp_size >= 2, or run without DWDP)",
                                d),
                in);
  }
  if (size <= 0) {
    return Fail(kCheckSizePositive,
                absl::StrFormat("num_experts_per_worker is %d; every rank must store at least "
                                "one expert",
                                size),
                in);
  }
  if (stride <= 0) {
    return Fail(kCheckStridePositive,
                absl::StrFormat("num_prefetch_experts is %d; the offset between consecutive "
                                "ranks' first experts must be positive",
                                stride),
                in);
  }
  if (stride > size) {
    return Fail(kCheckGap,
                absl::StrFormat("num_prefetch_experts %d is larger than num_experts_per_worker "
                                "%d, so experts between consecutive ranks' ranges are stored by "
                                "no rank; use a stride <= the range size",
                                stride, size),
                in);
  }
  const std::optional<int64_t> coverage = Coverage(d, size, stride);
  if (coverage && *coverage < n) {
    auto recipes = Recipes(d, n);
    std::string hint = recipes.empty() ? std::string()
                                       : absl::StrCat("; valid recipes for dwdp_size ", d, " and ",
                                                      n, " experts: ", FormatRecipes(recipes, 3));
    return PartitionError{
        kCheckCoverage,
        absl::StrFormat("the partition covers experts [0, %d) but the model has %d: "
                        "(dwdp_size - 1) * num_prefetch_experts + num_experts_per_worker = "
                        "(%d - 1) * %d + %d = %d < %d%s",
                        *coverage, n, d, stride, size, *coverage, n, hint),
        std::move(recipes)};
  }
  if (!coverage || *coverage > n) {
    auto recipes = Recipes(d, n);
    const std::string coverage_text =
        coverage ? absl::StrCat(*coverage) : std::string("more than 2^63");
    std::string hint = recipes.empty()
                           ? absl::StrCat("; no recipe exists for dwdp_size ", d, " and ", n,
                                          " experts (dwdp_size must be <= num_experts)")
                           : absl::StrCat("; use num_experts_per_worker/num_prefetch_experts ",
                                          FormatRecipes(recipes, 3));
    return PartitionError{
        kCheckTailPadding,
        absl::StrFormat("the last rank's storage extends past the final expert (coverage %s > "
                        "%d experts): its handle must be mapped whole and would not fit a "
                        "composite tensor of %d experts (tail padding)%s",
                        coverage_text, n, n, hint),
        std::move(recipes)};
  }
  if (in.loaded_chunk != size) {
    return Fail(kCheckChunkMismatch,
                absl::StrFormat("the checkpoint loader holds %d experts per rank but "
                                "num_experts_per_worker is %d; they must be equal",
                                in.loaded_chunk, size),
                in);
  }
  if (in.num_groups <= 0) {
    return Fail(kCheckNumGroups,
                absl::StrFormat("num_groups is %d; it must be at least 1", in.num_groups), in);
  }
  int64_t needed = 0;
  const bool needed_overflows = __builtin_mul_overflow(in.num_groups, d, &needed);
  if (in.world_size) {
    if (needed_overflows || *in.world_size < needed) {
      return Fail(
          kCheckWorldSize,
          absl::StrFormat("world size %d is smaller than num_groups * dwdp_size = %d * "
                          "%d; start %s ranks or use fewer groups",
                          *in.world_size, in.num_groups, d,
                          needed_overflows ? std::string("that many") : absl::StrCat(needed)),
          in);
    }
    const int64_t highest_rank = in.rank.value_or(*in.world_size - 1);
    if (highest_rank / d >= in.num_groups) {
      return Fail(kCheckGroupId,
                  absl::StrFormat("rank %d falls in group %d but there are only %d group(s) of "
                                  "%d ranks; the world has %d ranks, %d more than the groups use",
                                  highest_rank, highest_rank / d, in.num_groups, d, *in.world_size,
                                  *in.world_size - needed),
                  in);
    }
  } else if (in.rank && *in.rank / d >= in.num_groups) {
    return Fail(kCheckGroupId,
                absl::StrFormat("rank %d falls in group %d but there are only %d group(s)",
                                *in.rank, *in.rank / d, in.num_groups),
                in);
  }
  return std::nullopt;
}

std::vector<PeerRange> PeerRanges(int64_t dwdp_size, int64_t size, int64_t stride, int64_t n) {
  std::vector<PeerRange> ranges;
  ranges.reserve(static_cast<size_t>(std::max<int64_t>(dwdp_size, 0)));
  for (int64_t r = 0; r < dwdp_size; ++r) {
    const int64_t start = r * stride;
    ranges.push_back(PeerRange{start, std::min(start + size, n)});
  }
  return ranges;
}

absl::StatusOr<Partition> Partition::Create(const PartitionInput& input) {
  if (auto error = ValidatePartition(input)) {
    return absl::InvalidArgumentError(absl::StrCat(error->check, ": ", error->message));
  }
  return Partition(input.num_experts, input.num_experts_per_worker, input.num_prefetch_experts,
                   PeerRanges(input.dwdp_size, input.num_experts_per_worker,
                              input.num_prefetch_experts, input.num_experts));
}

absl::StatusOr<Partition> Partition::Create(int64_t dwdp_size, int64_t num_experts_per_worker,
                                            int64_t num_prefetch_experts, int64_t num_experts) {
  PartitionInput in;
  in.dwdp_size = dwdp_size;
  in.num_experts_per_worker = num_experts_per_worker;
  in.num_prefetch_experts = num_prefetch_experts;
  in.num_experts = num_experts;
  in.loaded_chunk = num_experts_per_worker;
  return Create(in);
}

absl::StatusOr<int64_t> Partition::owner(int64_t expert) const {
  if (expert < 0 || expert >= num_experts_) {
    return absl::OutOfRangeError(
        absl::StrFormat("expert %d is outside [0, %d)", expert, num_experts_));
  }
  // The lowest rank r with r*stride + size > expert; ranges touch or overlap (stride <= size),
  // so that rank's range starts at or before the expert.
  const int64_t rank = expert < size_ ? 0 : (expert - size_) / stride_ + 1;
  return rank;
}

OwnerRun OwnerRunOf(const std::vector<PeerRange>& ranges, int64_t size, int64_t stride,
                    int64_t expert, int64_t puller, OwnerPolicy policy) {
  // The lowest rank holding the expert: the first r with r·stride + size > expert.
  const auto lowest = [&]() -> OwnerRun {
    const int64_t owner = expert < size ? 0 : (expert - size) / stride + 1;
    return {owner, ranges[static_cast<size_t>(owner)].end};
  };
  if (policy == OwnerPolicy::kLowest) return lowest();
  const PeerRange& own = ranges[static_cast<size_t>(puller)];
  if (expert >= own.end) return lowest();
  if (expert >= own.start) return {puller, own.end};
  // Below the puller: the highest rank holding it, from the first `stride` experts of its range.
  const int64_t owner = expert / stride;
  return {owner, std::min((owner + 1) * stride, own.start)};
}

absl::StatusOr<int64_t> OwnerOf(const Partition& partition, int64_t expert, int64_t puller,
                                OwnerPolicy policy) {
  if (expert < 0 || expert >= partition.num_experts()) {
    return absl::OutOfRangeError(
        absl::StrFormat("expert %d is outside [0, %d)", expert, partition.num_experts()));
  }
  if (puller < 0 || puller >= partition.dwdp_size()) {
    return absl::OutOfRangeError(absl::StrFormat("puller rank %d is outside the group of %d ranks",
                                                 puller, partition.dwdp_size()));
  }
  return OwnerRunOf(partition.peer_ranges(), partition.size(), partition.stride(), expert, puller,
                    policy)
      .owner;
}

std::vector<int64_t> ServedExperts(const Partition& partition, OwnerPolicy policy) {
  const std::vector<PeerRange>& ranges = partition.peer_ranges();
  std::vector<int64_t> served(ranges.size(), 0);
  for (int64_t p = 0; p < partition.dwdp_size(); ++p) {
    const PeerRange& own = ranges[static_cast<size_t>(p)];
    for (int64_t e = 0; e < partition.num_experts();) {
      if (own.contains(e)) {
        e = own.end;
        continue;
      }
      const OwnerRun run = OwnerRunOf(ranges, partition.size(), partition.stride(), e, p, policy);
      const int64_t end = e < own.start ? std::min(run.end, own.start) : run.end;
      served[static_cast<size_t>(run.owner)] += end - e;
      e = end;
    }
  }
  return served;
}

absl::StatusOr<std::vector<double>> ScatterShards(absl::Span<const PeerRange> ranges,
                                                  absl::Span<const std::vector<double>> shards,
                                                  int64_t num_experts, int64_t row_width) {
  if (shards.empty()) return absl::InvalidArgumentError("scatter: no shards were given");
  if (shards.size() != ranges.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("scatter: %d shards for %d ranks; every rank contributes one",
                        shards.size(), ranges.size()));
  }
  if (row_width <= 0 || num_experts <= 0) {
    return absl::InvalidArgumentError("scatter: row width and expert count must be positive");
  }
  const size_t width = static_cast<size_t>(row_width);
  std::vector<double> full(static_cast<size_t>(num_experts) * width);
  std::vector<bool> written(static_cast<size_t>(num_experts), false);
  for (size_t r = 0; r < ranges.size(); ++r) {
    const PeerRange& range = ranges[r];
    if (range.start < 0 || range.end > num_experts || range.start > range.end) {
      return absl::InvalidArgumentError(
          absl::StrFormat("scatter: rank %d's range [%d, %d) is outside [0, %d)", r, range.start,
                          range.end, num_experts));
    }
    const size_t rows = static_cast<size_t>(range.count());
    if (shards[r].size() < rows * width) {
      return absl::InvalidArgumentError(
          absl::StrFormat("scatter: rank %d's shard has %d values, its range [%d, %d) needs %d", r,
                          shards[r].size(), range.start, range.end, rows * width));
    }
    for (size_t row = 0; row < rows; ++row) {
      const size_t expert = static_cast<size_t>(range.start) + row;
      for (size_t c = 0; c < width; ++c) {
        const double value = shards[r][row * width + c];
        double& slot = full[expert * width + c];
        // Overlapping rows come from more than one rank and must agree.
        if (written[expert] && slot != value) {
          return absl::InvalidArgumentError(
              absl::StrFormat("scatter: expert %d differs between ranks (%g vs %g from rank %d)",
                              expert, slot, value, r));
        }
        slot = value;
      }
      written[expert] = true;
    }
  }
  for (size_t e = 0; e < written.size(); ++e) {
    if (!written[e]) {
      return absl::InvalidArgumentError(
          absl::StrFormat("scatter: expert %d is in no rank's range", e));
    }
  }
  return full;
}

}  // namespace dwdp
