#include "core/dep/dep_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/moe/routing.h"

namespace dwdp::dep {

absl::Status ValidateDep(const DepShape& shape, int64_t ep_size, double tokens_cv) {
  if (shape.num_experts < 1 || shape.num_experts > moe::kMaxExperts || shape.top_k < 1 ||
      shape.top_k > moe::kMaxTopK || shape.top_k > shape.num_experts) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DEP needs 1 <= top_k <= num_experts, top_k <= %d and num_experts <= %d; the model has "
        "%d experts and top_k %d",
        moe::kMaxTopK, moe::kMaxExperts, shape.num_experts, shape.top_k));
  }
  if (ep_size < 1 || shape.num_experts % ep_size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--ep-size %d does not divide the model's %d experts; DEP gives every rank the same "
        "number of experts, so choose a divisor of %d",
        ep_size, shape.num_experts, shape.num_experts));
  }
  if (!(tokens_cv >= 0) || !std::isfinite(tokens_cv)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--tokens-cv %g is not a coefficient of variation; give a finite value >= 0", tokens_cv));
  }
  return absl::OkStatus();
}

std::vector<int64_t> TokensPerRank(int64_t mean_tokens, int64_t ranks, double cv, uint64_t seed) {
  std::vector<int64_t> out(static_cast<size_t>(std::max<int64_t>(ranks, 0)), mean_tokens);
  if (ranks <= 1 || cv <= 0 || mean_tokens <= 0) return out;
  const double d = static_cast<double>(ranks);
  // Evenly spaced u in (-1, 1) has variance (d^2 - 1) / (3 d^2); z = u / sd has sd 1.
  const double sd = std::sqrt((d * d - 1.0) / (3.0 * d * d));
  std::vector<int64_t> order(static_cast<size_t>(ranks));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = ranks - 1; i > 0; --i) {  // Fisher-Yates, seeded
    const uint64_t pick = moe::Mix64(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i));
    std::swap(order[static_cast<size_t>(i)], order[pick % static_cast<uint64_t>(i + 1)]);
  }
  const double mean = static_cast<double>(mean_tokens);
  for (int64_t i = 0; i < ranks; ++i) {
    const double u = (2.0 * static_cast<double>(i) + 1.0 - d) / d;
    const double value = mean * (1.0 + cv * u / sd);
    out[static_cast<size_t>(order[static_cast<size_t>(i)])] =
        std::max<int64_t>(1, std::llround(value));
  }
  // Keep the total: take from (or give to) the largest ranks, one token at a time.
  int64_t diff = mean_tokens * ranks - std::accumulate(out.begin(), out.end(), int64_t{0});
  while (diff != 0) {
    size_t largest = 0;
    for (size_t r = 1; r < out.size(); ++r) {
      if (out[r] > out[largest]) largest = r;
    }
    const int64_t step = diff > 0 ? 1 : -1;
    if (out[largest] + step < 1) break;
    out[largest] += step;
    diff -= step;
  }
  return out;
}

std::vector<int32_t> DispatchPlan::CountsMessage(int64_t s, int64_t d) const {
  const DestinationPlan& dest = destinations[static_cast<size_t>(d)];
  const auto first = dest.counts_from.begin() + s * experts_per_rank;
  return std::vector<int32_t>(first, first + experts_per_rank);
}

DispatchPlan PlanDispatch(const DepShape& shape, uint64_t routing_seed,
                          const std::vector<int64_t>& tokens, int64_t ep_size) {
  DispatchPlan plan;
  plan.shape = shape;
  plan.ep_size = ep_size;
  plan.experts_per_rank = shape.num_experts / ep_size;
  plan.routing_seed = routing_seed;
  const int64_t ep = ep_size;
  const int64_t epr = plan.experts_per_rank;
  const int32_t k = static_cast<int32_t>(shape.top_k);
  plan.sources.resize(static_cast<size_t>(ep));
  plan.destinations.resize(static_cast<size_t>(ep));
  for (DestinationPlan& d : plan.destinations) {
    d.recv_counts.assign(static_cast<size_t>(ep), 0);
    d.recv_offsets.assign(static_cast<size_t>(ep), 0);
    d.counts_from.assign(static_cast<size_t>(ep * epr), 0);
    d.expert_counts.assign(static_cast<size_t>(epr), 0);
  }

  for (int64_t s = 0; s < ep; ++s) {
    SourcePlan& src = plan.sources[static_cast<size_t>(s)];
    src.tokens = tokens[static_cast<size_t>(s)];
    const size_t entries = static_cast<size_t>(src.tokens * k);
    src.experts.resize(entries);
    src.weights.resize(entries);
    // Entries per global expert, in entry order (token ascending, then j).
    std::vector<std::vector<int32_t>> by_expert(static_cast<size_t>(shape.num_experts));
    for (int64_t t = 0; t < src.tokens; ++t) {
      moe::RouteToken(routing_seed, t, static_cast<int32_t>(shape.num_experts), k,
                      &src.experts[static_cast<size_t>(t * k)],
                      &src.weights[static_cast<size_t>(t * k)]);
      for (int32_t j = 0; j < k; ++j) {
        const int32_t e = src.experts[static_cast<size_t>(t * k + j)];
        by_expert[static_cast<size_t>(e)].push_back(static_cast<int32_t>(t * k + j));
      }
    }
    // Send order: destination, local expert, entry. Global experts ascending is exactly that.
    src.send_counts.assign(static_cast<size_t>(ep), 0);
    src.send_offsets.assign(static_cast<size_t>(ep), 0);
    src.entry_row.assign(entries, -1);
    src.send_token.reserve(entries);
    for (int64_t e = 0; e < shape.num_experts; ++e) {
      const int64_t d = OwnerOf(e, epr);
      const auto& list = by_expert[static_cast<size_t>(e)];
      src.send_counts[static_cast<size_t>(d)] += static_cast<int64_t>(list.size());
      plan.destinations[static_cast<size_t>(d)]
          .counts_from[static_cast<size_t>(s * epr + e % epr)] = static_cast<int32_t>(list.size());
      for (int32_t entry : list) {
        src.entry_row[static_cast<size_t>(entry)] = static_cast<int32_t>(src.send_token.size());
        src.send_token.push_back(entry / k);
      }
    }
    for (int64_t d = 1; d < ep; ++d) {
      src.send_offsets[static_cast<size_t>(d)] = src.send_offsets[static_cast<size_t>(d - 1)] +
                                                 src.send_counts[static_cast<size_t>(d - 1)];
    }
  }

  for (int64_t d = 0; d < ep; ++d) {
    DestinationPlan& dest = plan.destinations[static_cast<size_t>(d)];
    int64_t rows = 0;
    for (int64_t s = 0; s < ep; ++s) {
      dest.recv_offsets[static_cast<size_t>(s)] = rows;
      dest.recv_counts[static_cast<size_t>(s)] =
          plan.sources[static_cast<size_t>(s)].send_counts[static_cast<size_t>(d)];
      rows += dest.recv_counts[static_cast<size_t>(s)];
    }
    // First received row of (source s, local expert e): the source's rows are grouped by e.
    std::vector<int64_t> first(static_cast<size_t>(ep * epr), 0);
    for (int64_t s = 0; s < ep; ++s) {
      int64_t at = dest.recv_offsets[static_cast<size_t>(s)];
      for (int64_t e = 0; e < epr; ++e) {
        first[static_cast<size_t>(s * epr + e)] = at;
        at += dest.counts_from[static_cast<size_t>(s * epr + e)];
      }
    }
    dest.permuted_from.reserve(static_cast<size_t>(rows));
    dest.returned_from.assign(static_cast<size_t>(rows), -1);
    for (int64_t e = 0; e < epr; ++e) {
      for (int64_t s = 0; s < ep; ++s) {
        const int32_t count = dest.counts_from[static_cast<size_t>(s * epr + e)];
        dest.expert_counts[static_cast<size_t>(e)] += count;
        for (int32_t i = 0; i < count; ++i) {
          const int64_t received = first[static_cast<size_t>(s * epr + e)] + i;
          dest.returned_from[static_cast<size_t>(received)] =
              static_cast<int32_t>(dest.permuted_from.size());
          dest.permuted_from.push_back(static_cast<int32_t>(received));
        }
      }
    }
  }
  return plan;
}

absl::Status CheckDispatchPlan(const DispatchPlan& plan) {
  const int64_t ep = plan.ep_size;
  const int64_t epr = plan.experts_per_rank;
  const int64_t k = plan.shape.top_k;
  for (int64_t s = 0; s < ep; ++s) {
    const SourcePlan& src = plan.sources[static_cast<size_t>(s)];
    if (src.rows() != src.tokens * k) {
      return absl::InternalError(absl::StrFormat("DEP plan: rank %d sends %d rows for %d entries",
                                                 s, src.rows(), src.tokens * k));
    }
    for (int64_t entry = 0; entry < src.tokens * k; ++entry) {
      const int32_t row = src.entry_row[static_cast<size_t>(entry)];
      const int64_t e = src.experts[static_cast<size_t>(entry)];
      const int64_t d = OwnerOf(e, epr);
      const int64_t begin = src.send_offsets[static_cast<size_t>(d)];
      if (row < begin || row >= begin + src.send_counts[static_cast<size_t>(d)] ||
          src.send_token[static_cast<size_t>(row)] != entry / k) {
        return absl::InternalError(absl::StrFormat(
            "DEP plan: entry %d of rank %d (expert %d) is not in its owner %d's rows", entry, s, e,
            d));
      }
    }
  }
  for (int64_t d = 0; d < ep; ++d) {
    const DestinationPlan& dest = plan.destinations[static_cast<size_t>(d)];
    std::vector<bool> seen(static_cast<size_t>(dest.rows()), false);
    for (int64_t p = 0; p < dest.rows(); ++p) {
      const int32_t from = dest.permuted_from[static_cast<size_t>(p)];
      if (from < 0 || from >= dest.rows() || seen[static_cast<size_t>(from)] ||
          dest.returned_from[static_cast<size_t>(from)] != p) {
        return absl::InternalError(
            absl::StrFormat("DEP plan: rank %d's permutation is not a bijection at row %d", d, p));
      }
      seen[static_cast<size_t>(from)] = true;
    }
    int64_t total = 0;
    for (int32_t c : dest.expert_counts) total += c;
    int64_t received = 0;
    for (int64_t s = 0; s < ep; ++s) {
      int64_t sum = 0;
      for (int64_t e = 0; e < epr; ++e) sum += dest.counts_from[static_cast<size_t>(s * epr + e)];
      if (sum != dest.recv_counts[static_cast<size_t>(s)] ||
          dest.recv_offsets[static_cast<size_t>(s)] != received) {
        return absl::InternalError(absl::StrFormat(
            "DEP plan: rank %d's counts from rank %d do not add up to its rows", d, s));
      }
      received += sum;
    }
    if (total != dest.rows() || received != dest.rows()) {
      return absl::InternalError(
          absl::StrFormat("DEP plan: rank %d's expert counts do not add up to its rows", d));
    }
  }
  return absl::OkStatus();
}

}  // namespace dwdp::dep
