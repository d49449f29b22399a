#include "core/dep/dep_reference.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "core/moe/bf16.h"
#include "core/moe/routing.h"
#include "core/pattern.h"

namespace dwdp::dep {
namespace {

float RoundBf16(float v) { return moe::Bf16ToFloat(moe::FloatToBf16(v)); }

constexpr int64_t kBlock = 32;

// sum over i < n of a[i] * b(i), in the given order.
template <typename A, typename B>
float Dot(int64_t n, const A& a, const B& b, SumOrder order) {
  if (order == SumOrder::kAscending) {
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += a(i) * b(i);
    return sum;
  }
  float total = 0;
  for (int64_t start = ((n - 1) / kBlock) * kBlock; start >= 0; start -= kBlock) {
    float block = 0;
    for (int64_t i = start; i < std::min(n, start + kBlock); ++i) block += a(i) * b(i);
    total += block;
  }
  return total;
}

}  // namespace

PatternExperts::PatternExperts(const DepShape& shape, int64_t layer, int64_t w13_weight,
                               int64_t w2_weight)
    : shape_(shape), layer_(layer), w13_weight_(w13_weight), w2_weight_(w2_weight) {}

const std::vector<uint16_t>& PatternExperts::Make(std::map<int64_t, std::vector<uint16_t>>& cache,
                                                  int64_t weight, int64_t expert,
                                                  uint64_t elements) {
  auto it = cache.find(expert);
  if (it != cache.end()) return it->second;
  std::vector<uint16_t> values(elements);
  const uint64_t seed = PatternSeed(layer_, weight, static_cast<uint64_t>(expert));
  for (uint64_t word = 0; word * 4 < elements; ++word) {
    const uint64_t bits = PatternWordOf(kPatternBf16, seed, word);
    for (uint64_t lane = 0; lane < 4 && word * 4 + lane < elements; ++lane) {
      values[word * 4 + lane] = static_cast<uint16_t>(bits >> (16 * lane));
    }
  }
  return cache.emplace(expert, std::move(values)).first->second;
}

const std::vector<uint16_t>& PatternExperts::w13(int64_t expert) {
  return Make(w13_, w13_weight_, expert,
              static_cast<uint64_t>(2 * shape_.intermediate * shape_.hidden));
}

const std::vector<uint16_t>& PatternExperts::w2(int64_t expert) {
  return Make(w2_, w2_weight_, expert, static_cast<uint64_t>(shape_.hidden * shape_.intermediate));
}

ExpertWeights WeightsOf(PatternExperts& experts) {
  return {[&experts](int64_t e) -> const std::vector<uint16_t>& { return experts.w13(e); },
          [&experts](int64_t e) -> const std::vector<uint16_t>& { return experts.w2(e); }};
}

InputRow SyntheticInput(int64_t hidden, int64_t layer, int64_t forward, uint64_t workload_seed) {
  return [=](int64_t rank, int64_t token, uint16_t* row) {
    const uint64_t seed = moe::LayerInputSeed(layer, forward, rank, workload_seed);
    for (int64_t h = 0; h < hidden; ++h) row[h] = moe::InputValue(seed, token, h);
  };
}

std::vector<float> ExpertRow(const DepShape& shape, const uint16_t* x, const uint16_t* w13,
                             const uint16_t* w2, SumOrder order) {
  const int64_t hidden = shape.hidden;
  const int64_t inter = shape.intermediate;
  std::vector<float> h1(static_cast<size_t>(2 * inter));
  for (int64_t c = 0; c < 2 * inter; ++c) {
    const uint16_t* w = w13 + c * hidden;
    h1[static_cast<size_t>(c)] = RoundBf16(Dot(
        hidden, [x](int64_t i) { return moe::Bf16ToFloat(x[i]); },
        [w](int64_t i) { return moe::Bf16ToFloat(w[i]); }, order));
  }
  std::vector<float> act(static_cast<size_t>(inter));
  for (int64_t i = 0; i < inter; ++i) {
    const float gate = h1[static_cast<size_t>(i)];
    const float up = h1[static_cast<size_t>(inter + i)];
    act[static_cast<size_t>(i)] = RoundBf16(gate / (1.0f + std::exp(-gate)) * up);
  }
  std::vector<float> y(static_cast<size_t>(hidden));
  for (int64_t c = 0; c < hidden; ++c) {
    const uint16_t* w = w2 + c * inter;
    y[static_cast<size_t>(c)] = RoundBf16(Dot(
        inter, [&act](int64_t i) { return act[static_cast<size_t>(i)]; },
        [w](int64_t i) { return moe::Bf16ToFloat(w[i]); }, order));
  }
  return y;
}

std::vector<float> ResidentLayer(const DepShape& shape, uint64_t routing_seed, int64_t rank,
                                 const std::vector<int64_t>& tokens, const InputRow& input,
                                 const ExpertWeights& weights) {
  const int64_t hidden = shape.hidden;
  const int32_t k = static_cast<int32_t>(shape.top_k);
  std::vector<float> out(tokens.size() * static_cast<size_t>(hidden));
  std::vector<uint16_t> x(static_cast<size_t>(hidden));
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t experts[moe::kMaxTopK];
    float w[moe::kMaxTopK];
    moe::RouteToken(routing_seed, tokens[i], static_cast<int32_t>(shape.num_experts), k, experts,
                    w);
    input(rank, tokens[i], x.data());
    std::vector<float> sum(static_cast<size_t>(hidden), 0.0f);
    for (int32_t j = 0; j < k; ++j) {
      const std::vector<float> y = ExpertRow(shape, x.data(), weights.w13(experts[j]).data(),
                                             weights.w2(experts[j]).data(), SumOrder::kAscending);
      for (int64_t c = 0; c < hidden; ++c) {
        sum[static_cast<size_t>(c)] =
            std::fma(w[j], y[static_cast<size_t>(c)], sum[static_cast<size_t>(c)]);
      }
    }
    for (int64_t c = 0; c < hidden; ++c) {
      out[i * static_cast<size_t>(hidden) + static_cast<size_t>(c)] =
          RoundBf16(sum[static_cast<size_t>(c)]);
    }
  }
  return out;
}

std::vector<std::vector<float>> DepLayer(const DispatchPlan& plan,
                                         const std::vector<std::vector<int64_t>>& sample,
                                         const InputRow& input, const ExpertWeights& weights) {
  const DepShape& shape = plan.shape;
  const int64_t hidden = shape.hidden;
  const int64_t k = shape.top_k;
  const int64_t ep = plan.ep_size;
  const int64_t epr = plan.experts_per_rank;
  // Which send rows carry a sampled token (the others are not computed).
  std::vector<std::vector<bool>> wanted(static_cast<size_t>(ep));
  for (int64_t s = 0; s < ep; ++s) {
    const SourcePlan& src = plan.sources[static_cast<size_t>(s)];
    wanted[static_cast<size_t>(s)].assign(static_cast<size_t>(src.rows()), false);
    for (int64_t t : sample[static_cast<size_t>(s)]) {
      for (int64_t j = 0; j < k; ++j) {
        wanted[static_cast<size_t>(s)]
              [static_cast<size_t>(src.entry_row[static_cast<size_t>(t * k + j)])] = true;
      }
    }
  }
  // returned[s][send row] = the expert output the owner sends back.
  std::vector<std::vector<std::vector<float>>> returned(static_cast<size_t>(ep));
  for (int64_t s = 0; s < ep; ++s) {
    returned[static_cast<size_t>(s)].resize(
        static_cast<size_t>(plan.sources[static_cast<size_t>(s)].rows()));
  }
  std::vector<uint16_t> x(static_cast<size_t>(hidden));
  for (int64_t d = 0; d < ep; ++d) {
    const DestinationPlan& dest = plan.destinations[static_cast<size_t>(d)];
    // The source and send row of every received row.
    std::vector<std::pair<int64_t, int64_t>> origin(static_cast<size_t>(dest.rows()));
    for (int64_t s = 0; s < ep; ++s) {
      const SourcePlan& src = plan.sources[static_cast<size_t>(s)];
      for (int64_t i = 0; i < dest.recv_counts[static_cast<size_t>(s)]; ++i) {
        origin[static_cast<size_t>(dest.recv_offsets[static_cast<size_t>(s)] + i)] = {
            s, src.send_offsets[static_cast<size_t>(d)] + i};
      }
    }
    // The permuted rows, expert by expert, and each back to the row it was received in.
    int64_t p = 0;
    for (int64_t e = 0; e < epr; ++e) {
      const int64_t expert = d * epr + e;
      for (int32_t n = 0; n < dest.expert_counts[static_cast<size_t>(e)]; ++n, ++p) {
        const int32_t received = dest.permuted_from[static_cast<size_t>(p)];
        const auto [s, send_row] = origin[static_cast<size_t>(received)];
        if (!wanted[static_cast<size_t>(s)][static_cast<size_t>(send_row)]) continue;
        const int32_t token =
            plan.sources[static_cast<size_t>(s)].send_token[static_cast<size_t>(send_row)];
        input(s, token, x.data());
        // The combine returns rows in receive order, so the source finds it at its send row.
        returned[static_cast<size_t>(s)][static_cast<size_t>(send_row)] =
            ExpertRow(shape, x.data(), weights.w13(expert).data(), weights.w2(expert).data(),
                      SumOrder::kBlocked);
      }
    }
  }
  std::vector<std::vector<float>> out(static_cast<size_t>(ep));
  for (int64_t s = 0; s < ep; ++s) {
    const SourcePlan& src = plan.sources[static_cast<size_t>(s)];
    const std::vector<int64_t>& tokens = sample[static_cast<size_t>(s)];
    std::vector<float>& o = out[static_cast<size_t>(s)];
    o.assign(tokens.size() * static_cast<size_t>(hidden), 0.0f);
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::vector<float> sum(static_cast<size_t>(hidden), 0.0f);
      for (int64_t j = 0; j < k; ++j) {
        const size_t entry = static_cast<size_t>(tokens[i] * k + j);
        const std::vector<float>& y =
            returned[static_cast<size_t>(s)][static_cast<size_t>(src.entry_row[entry])];
        for (int64_t c = 0; c < hidden; ++c) {
          sum[static_cast<size_t>(c)] =
              std::fma(src.weights[entry], y[static_cast<size_t>(c)], sum[static_cast<size_t>(c)]);
        }
      }
      for (int64_t c = 0; c < hidden; ++c) {
        o[i * static_cast<size_t>(hidden) + static_cast<size_t>(c)] =
            RoundBf16(sum[static_cast<size_t>(c)]);
      }
    }
  }
  return out;
}

Agreement OutputsAgree(const std::vector<float>& got, const std::vector<float>& reference,
                       int64_t hidden) {
  Agreement a;
  for (float r : reference) a.scale = std::max(a.scale, static_cast<double>(std::abs(r)));
  if (got.size() != reference.size()) {
    a.ok = false;
    a.first_outside =
        absl::StrFormat("%d values against %d of the reference", got.size(), reference.size());
    return a;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double error = std::abs(static_cast<double>(got[i]) - reference[i]);
    ++a.compared;
    if (got[i] == reference[i]) ++a.exact;
    if (!(error <= a.max_error)) a.max_error = error;  // NaN sticks
    if (!(error <= AllowedError(reference[i], a.scale)) && a.ok) {
      a.ok = false;
      a.first_outside =
          absl::StrFormat("row %d, element %d: %g against the reference's %g (allowed +-%g)",
                          i / static_cast<size_t>(hidden), i % static_cast<size_t>(hidden), got[i],
                          reference[i], AllowedError(reference[i], a.scale));
    }
  }
  return a;
}

}  // namespace dwdp::dep
