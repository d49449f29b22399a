#pragma once

// Host references of one MoE layer, in fp32 with bf16 rounding where the GPU stores bf16 (GEMM
// outputs, the activation, the combined output):
//
//   ResidentLayer: DWDP's view (every expert's weights at hand): each token through its top-k
//                  experts, then combined with the router weights.
//   DepLayer:      the DEP baseline's path through a DispatchPlan: each source's rows gathered in
//                  send order, "received" by the experts' owners, permuted into per-expert groups,
//                  the owners' experts run on them, the rows returned in receive order, combined
//                  on the source through entry_row.
//
// The two sum the GEMMs' products in different orders (ascending, and in blocks of 32 added
// last block first, as a tiled GEMM would), so they may differ in the last bits: a GEMM output
// near a bf16 rounding boundary may round to the neighbouring bf16 in one order and not in the
// other, and that one-ulp step (2^-8 relative) moves SiLU * up, the second GEMM and the combine.
// OutputsAgree therefore allows |dep - resident| <= |resident| / 64 + max |resident| / 128:
// two bf16 ulps of the value plus one of the output's scale, the tolerance the MoE kernel is
// held to against an fp32 reference (tests/moe_layer_test.cc), and the one the GPU baseline's
// check uses.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/dep/dep_plan.h"

namespace dwdp::dep {

// The bf16 weights of a layer's experts as functional mode fills them (core/pattern.h,
// kPatternBf16), made on first use: w13 [2 * inter, hidden] and w2 [hidden, inter] per expert.
class PatternExperts {
 public:
  PatternExperts(const DepShape& shape, int64_t layer, int64_t w13_weight, int64_t w2_weight);
  const std::vector<uint16_t>& w13(int64_t expert);
  const std::vector<uint16_t>& w2(int64_t expert);

 private:
  const std::vector<uint16_t>& Make(std::map<int64_t, std::vector<uint16_t>>& cache, int64_t weight,
                                    int64_t expert, uint64_t elements);
  DepShape shape_;
  int64_t layer_;
  int64_t w13_weight_;
  int64_t w2_weight_;
  std::map<int64_t, std::vector<uint16_t>> w13_;
  std::map<int64_t, std::vector<uint16_t>> w2_;
};

// Any experts' weights: (expert) -> its w13 / w2 as above.
struct ExpertWeights {
  std::function<const std::vector<uint16_t>&(int64_t expert)> w13;
  std::function<const std::vector<uint16_t>&(int64_t expert)> w2;
};
ExpertWeights WeightsOf(PatternExperts& experts);

// The input row of (rank, token): hidden bf16 values.
using InputRow = std::function<void(int64_t rank, int64_t token, uint16_t* row)>;
// The synthetic workload's input (core/moe/routing.h InputValue) of a layer and forward.
InputRow SyntheticInput(int64_t hidden, int64_t layer, int64_t forward, uint64_t workload_seed);

enum class SumOrder {
  kAscending,  // k = 0, 1, ... in fp32
  kBlocked,    // blocks of 32 summed in fp32, the block sums added last block first
};

// One expert on one row: y = W2 . (silu(W13_gate . x) * (W13_up . x)), rounded as the GPU does.
std::vector<float> ExpertRow(const DepShape& shape, const uint16_t* x, const uint16_t* w13,
                             const uint16_t* w2, SumOrder order);

// Outputs of the `tokens` listed, [tokens.size(), hidden] floats (each a bf16 value).
std::vector<float> ResidentLayer(const DepShape& shape, uint64_t routing_seed, int64_t rank,
                                 const std::vector<int64_t>& tokens, const InputRow& input,
                                 const ExpertWeights& weights);

// DEP outputs of the listed tokens of every rank (sample[r]); only the rows those tokens send
// are computed. [rank][sample[r].size() * hidden].
std::vector<std::vector<float>> DepLayer(const DispatchPlan& plan,
                                         const std::vector<std::vector<int64_t>>& sample,
                                         const InputRow& input, const ExpertWeights& weights);

struct Agreement {
  bool ok = true;
  int64_t compared = 0;
  int64_t exact = 0;          // elements equal bit for bit
  double max_error = 0;       // largest |a - b|
  double scale = 0;           // max |reference|
  std::string first_outside;  // the first element beyond the tolerance, in words
};
// `got` against `reference` with the tolerance above.
Agreement OutputsAgree(const std::vector<float>& got, const std::vector<float>& reference,
                       int64_t hidden);
// The allowed error of one element.
inline double AllowedError(double reference, double scale) {
  return (reference < 0 ? -reference : reference) / 64.0 + scale / 128.0;
}

}  // namespace dwdp::dep
