// The routed-MoE layer: the routing functions of core/moe/routing.h against independent
// computations (everywhere), and, on a GPU, MoeLayer (backends/cuda/moe) against the host routing,
// an fp32 CPU reference of the whole layer, and itself with the weights at two addresses. The GPU
// cases are skipped with a message when no GPU is visible.

#define BOOST_TEST_MODULE moe_layer
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/moe/bf16.h"
#include "core/moe/routing.h"

#if DWDP_HAVE_CUDA
#include <cuda_runtime_api.h>

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_driver.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/moe/moe_layer.h"
#endif

namespace dwdp::moe {
namespace {

// The top k by an independent route: sort every (logit, expert) pair.
std::vector<int32_t> SortedTopK(const std::vector<float>& logits, int32_t k) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  order.resize(static_cast<size_t>(k));
  return order;
}

std::vector<int32_t> SelectFrom(const std::vector<float>& logits, int32_t k) {
  std::vector<int32_t> ids(static_cast<size_t>(k));
  std::vector<float> values(static_cast<size_t>(k));
  SelectTopK([&](int32_t e) { return logits[static_cast<size_t>(e)]; },
             static_cast<int32_t>(logits.size()), k, ids.data(), values.data());
  return ids;
}

BOOST_AUTO_TEST_SUITE(routing_functions)

BOOST_AUTO_TEST_CASE(router_logits_lie_on_the_grid_are_seeded_and_repeat) {
  std::set<float> distinct;
  int differs_by_seed = 0;
  for (int64_t token = 0; token < 64; ++token) {
    for (int32_t e = 0; e < 64; ++e) {
      const float v = RouterLogit(5, token, e);
      BOOST_TEST_CONTEXT("token " << token << " expert " << e << " logit " << v) {
        BOOST_TEST(v >= -4.0f);
        BOOST_TEST(v < 4.0f);
        BOOST_TEST(v * 256.0f == std::round(v * 256.0f));
        BOOST_TEST(RouterLogit(5, token, e) == v);
      }
      distinct.insert(v);
      differs_by_seed += RouterLogit(6, token, e) != v ? 1 : 0;
    }
  }
  BOOST_TEST(distinct.size() > 1500u);  // of 2048 grid values, 4096 draws
  BOOST_TEST(differs_by_seed > 4000);
}

BOOST_AUTO_TEST_CASE(top_k_is_the_k_largest_logits_distinct_and_best_first) {
  for (int32_t experts : {8, 64, 257}) {
    for (int32_t k : {1, 2, 8}) {
      for (int64_t token = 0; token < 50; ++token) {
        std::vector<float> logits(static_cast<size_t>(experts));
        for (int32_t e = 0; e < experts; ++e) logits[e] = RouterLogit(9, token, e);
        std::vector<int32_t> ids(static_cast<size_t>(k));
        std::vector<float> weights(static_cast<size_t>(k));
        RouteToken(9, token, experts, k, ids.data(), weights.data());
        BOOST_TEST_CONTEXT("E " << experts << " k " << k << " token " << token) {
          BOOST_TEST(ids == SortedTopK(logits, k), boost::test_tools::per_element());
          BOOST_TEST(std::set<int32_t>(ids.begin(), ids.end()).size() == static_cast<size_t>(k));
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(ties_go_to_the_lower_expert_id) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f, 3.0f, 2.0f};
  BOOST_TEST(SelectFrom(logits, 2) == (std::vector<int32_t>{1, 2}),
             boost::test_tools::per_element());
  BOOST_TEST(SelectFrom(logits, 3) == (std::vector<int32_t>{1, 2, 4}),
             boost::test_tools::per_element());
  BOOST_TEST(SelectFrom(logits, 4) == (std::vector<int32_t>{1, 2, 4, 3}),
             boost::test_tools::per_element());
  const std::vector<float> flat(10, 0.5f);
  BOOST_TEST(SelectFrom(flat, 3) == (std::vector<int32_t>{0, 1, 2}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(seeded_logits_do_tie_at_the_top_k_boundary) {
  // The GPU routing case below uses these parameters: they must exercise the tie rule.
  int boundary_ties = 0;
  for (int64_t token = 0; token < 2048; ++token) {
    int32_t ids[8];
    float weights[8];
    RouteToken(7, token, 64, 8, ids, weights);
    const float kth = RouterLogit(7, token, ids[7]);
    for (int32_t e = 0; e < 64; ++e) {
      if (std::find(ids, ids + 8, e) == ids + 8 && RouterLogit(7, token, e) == kth) {
        ++boundary_ties;
        break;
      }
    }
  }
  BOOST_TEST(boundary_ties > 10);
}

BOOST_AUTO_TEST_CASE(router_weights_are_the_softmax_of_the_selected_logits) {
  for (int64_t token = 0; token < 200; ++token) {
    int32_t ids[8];
    float weights[8];
    RouteToken(3, token, 128, 8, ids, weights);
    double top = -1e9;
    for (int j = 0; j < 8; ++j) top = std::max(top, double{RouterLogit(3, token, ids[j])});
    double sum = 0;
    for (int j = 0; j < 8; ++j) sum += std::exp(double{RouterLogit(3, token, ids[j])} - top);
    double total = 0;
    for (int j = 0; j < 8; ++j) {
      const double expected = std::exp(double{RouterLogit(3, token, ids[j])} - top) / sum;
      BOOST_TEST_CONTEXT("token " << token << " j " << j) {
        BOOST_TEST(std::abs(weights[j] - expected) <= 1e-6 * expected + 1e-9);
        if (j > 0) BOOST_TEST(weights[j] <= weights[j - 1]);  // best first
      }
      total += weights[j];
    }
    BOOST_TEST(std::abs(total - 1.0) <= 1e-6);
  }
  const float equal[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  float w[4];
  RouterWeights(equal, 4, w);
  for (float v : w) BOOST_TEST(v == 0.25f);
  const float single = -3.0f;
  RouterWeights(&single, 1, w);
  BOOST_TEST(w[0] == 1.0f);
}

BOOST_AUTO_TEST_CASE(exp_is_within_2e7_of_the_library_exp) {
  double worst = 0;
  for (int i = 0; i < 87000; ++i) {  // x > -87, where the clamp starts
    const float x = -0.001f * static_cast<float>(i);
    const double expected = std::exp(double{x});
    worst = std::max(worst, std::abs(ExpNonPositive(x) - expected) / expected);
  }
  BOOST_TEST_MESSAGE("worst relative error of ExpNonPositive: " << worst);
  BOOST_TEST(worst < 2e-7);
  BOOST_TEST(ExpNonPositive(0.0f) == 1.0f);
  BOOST_TEST(ExpNonPositive(3.0f) == 1.0f);  // clamped to x <= 0
}

BOOST_AUTO_TEST_CASE(input_values_are_finite_bf16_within_one) {
  std::set<uint16_t> distinct;
  for (int64_t token = 0; token < 32; ++token) {
    for (int64_t h = 0; h < 256; ++h) {
      const uint16_t bits = InputValue(4, token, h);
      BOOST_TEST(Bf16IsFinite(bits));
      BOOST_TEST(std::abs(Bf16ToFloat(bits)) <= 1.0f);
      BOOST_TEST(InputValue(4, token, h) == bits);
      distinct.insert(bits);
    }
  }
  BOOST_TEST(distinct.size() > 1000u);  // bf16 has 128 values per binade
}

BOOST_AUTO_TEST_CASE(bf16_rounds_to_nearest_even) {
  BOOST_TEST(FloatToBf16(1.0f) == 0x3F80u);
  BOOST_TEST(FloatToBf16(1.0f + 1.0f / 256) == 0x3F80u);  // halfway, even stays
  BOOST_TEST(FloatToBf16(1.0f + 3.0f / 256) == 0x3F82u);  // halfway, odd rounds up
  BOOST_TEST(FloatToBf16(1.0f + 1.0f / 128 + 1.0f / 65536) == 0x3F81u);
  BOOST_TEST(FloatToBf16(-2.0f) == 0xC000u);
  BOOST_TEST(Bf16ToFloat(0x3F81u) == 1.0f + 1.0f / 128);
  BOOST_TEST(!Bf16IsFinite(FloatToBf16(std::nanf(""))));
  BOOST_TEST(!Bf16IsFinite(FloatToBf16(INFINITY)));
}

BOOST_AUTO_TEST_CASE(counts_fingerprint_tells_counts_apart) {
  const int32_t a[4] = {3, 1, 0, 4};
  const int32_t b[4] = {1, 3, 0, 4};  // the same multiset on other experts
  BOOST_TEST(CountsFingerprint(a, 4) != CountsFingerprint(b, 4));
  uint64_t reversed = 0;
  for (int e = 3; e >= 0; --e) reversed += CountsFingerprintTerm(e, a[e]);
  BOOST_TEST(reversed == CountsFingerprint(a, 4));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace dwdp::moe

#if DWDP_HAVE_CUDA

namespace dwdp::cuda::moe {
namespace {

using dwdp::moe::Bf16ToFloat;
using dwdp::moe::FloatToBf16;

constexpr MoeShape kQwen3{128, 2048, 768, 8};
constexpr MoeShape kDeepSeekV3{256, 7168, 2048, 8};

BOOST_AUTO_TEST_SUITE(shapes_and_options)

BOOST_AUTO_TEST_CASE(expert_bytes_are_the_bf16_slices) {
  BOOST_TEST(W13ExpertBytes(kQwen3) == 2ull * 768 * 2048 * 2);  // 6 MiB
  BOOST_TEST(W13ExpertBytes(kQwen3) == 6291456u);
  BOOST_TEST(W2ExpertBytes(kQwen3) == 3145728u);
  BOOST_TEST(W13ExpertBytes(kDeepSeekV3) == 58720256u);
  BOOST_TEST(W2ExpertBytes(kDeepSeekV3) == 29360128u);
  BOOST_TEST(ExpertGemmFlops(kQwen3, 1) == 6.0 * 8 * 2048 * 768);
}

BOOST_AUTO_TEST_CASE(shapes_outside_the_limits_are_refused) {
  BOOST_TEST(ValidateShape(kQwen3).ok());
  BOOST_TEST(ValidateShape({8, 256, 128, 2}).ok());
  for (const MoeShape& bad :
       {MoeShape{0, 256, 128, 1}, MoeShape{1025, 256, 128, 8}, MoeShape{8, 256, 128, 9},
        MoeShape{32, 256, 128, 17}, MoeShape{8, 250, 128, 2}, MoeShape{8, 256, 100, 2},
        MoeShape{8, 256, 128, 0}}) {
    const absl::Status s = ValidateShape(bad);
    BOOST_TEST_CONTEXT(bad.num_experts << "/" << bad.hidden << "/" << bad.intermediate << "/"
                                       << bad.top_k << ": " << s) {
      BOOST_TEST(s.code() == absl::StatusCode::kInvalidArgument);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_options_are_refused_before_touching_a_gpu) {
  MoeLayerOptions options;
  options.workspace_bytes = 1024;
  BOOST_TEST(MoeLayer::Create({8, 256, 128, 2}, 100, options).status().code() ==
             absl::StatusCode::kInvalidArgument);
  options = {};
  options.expert_streams = 0;
  BOOST_TEST(MoeLayer::Create({8, 256, 128, 2}, 100, options).status().code() ==
             absl::StatusCode::kInvalidArgument);
  BOOST_TEST(MoeLayer::Create({8, 256, 128, 2}, 0, {}).status().code() ==
             absl::StatusCode::kInvalidArgument);
}

BOOST_AUTO_TEST_CASE(strategy_names_round_trip) {
  for (GemmStrategy s : {GemmStrategy::kAuto, GemmStrategy::kGroupedBatched,
                         GemmStrategy::kPaddedStridedBatched, GemmStrategy::kPerExpertGemm}) {
    auto parsed = ParseGemmStrategy(GemmStrategyName(s));
    BOOST_TEST_REQUIRE(parsed.ok());
    BOOST_TEST(static_cast<int>(*parsed) == static_cast<int>(s));
  }
  BOOST_TEST(!ParseGemmStrategy("fastest").ok());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
// GPU cases.

struct GpuAvailable {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    const absl::StatusOr<int> count = CudaDeviceCount();
    boost::test_tools::assertion_result result(count.ok());
    if (!count.ok()) {
      result.message() << "no GPU here, skipped (" << count.status().message() << ")";
    }
    return result;
  }
};

#define REQUIRE_OK(expr)                                           \
  do {                                                             \
    const absl::Status status_ = (expr);                           \
    BOOST_REQUIRE_MESSAGE(status_.ok(), #expr << ": " << status_); \
  } while (false)

#define REQUIRE_CUDA(expr)                                                                         \
  do {                                                                                             \
    const cudaError_t error_ = (expr);                                                             \
    BOOST_REQUIRE_MESSAGE(error_ == cudaSuccess, #expr << ": " << cudaGetErrorName(error_) << " (" \
                                                       << cudaGetErrorString(error_) << ")");      \
  } while (false)

struct DeviceMemory {
  explicit DeviceMemory(uint64_t bytes) {
    const cudaError_t error = cudaMalloc(&p, bytes);
    BOOST_REQUIRE_MESSAGE(error == cudaSuccess,
                          "cudaMalloc " << bytes << " bytes: " << cudaGetErrorName(error));
  }
  ~DeviceMemory() { cudaFree(p); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  uint64_t address() const { return reinterpret_cast<uint64_t>(p); }
  void* p = nullptr;
};

std::vector<uint16_t> ReadBf16(uint64_t address, uint64_t elements) {
  std::vector<uint16_t> host(elements);
  const cudaError_t error = cudaMemcpy(host.data(), reinterpret_cast<const void*>(address),
                                       elements * 2, cudaMemcpyDeviceToHost);
  BOOST_REQUIRE_MESSAGE(error == cudaSuccess, "reading back: " << cudaGetErrorName(error));
  return host;
}

std::string Describe(const std::optional<Mismatch>& m) {
  if (!m.has_value()) return "equal";
  return absl::StrFormat("first difference at element %d: 0x%04x (%g) vs 0x%04x (%g)", m->index,
                         m->a, Bf16ToFloat(m->a), m->b, Bf16ToFloat(m->b));
}

struct LayerFixture {
  LayerFixture() {
    REQUIRE_OK(UseDevice(0));
    BOOST_TEST_MESSAGE("GPU: " << DescribeDevice(0));
    // A blocking stream: the cases' plain cudaMemcpy / cudaMemset calls (legacy default
    // stream) are then ordered with the layer's work on it.
    REQUIRE_CUDA(cudaStreamCreateWithFlags(&cuda_stream, cudaStreamDefault));
    stream = cuda_stream;
  }
  ~LayerFixture() {
    cudaStreamSynchronize(cuda_stream);
    cudaStreamDestroy(cuda_stream);
  }

  std::unique_ptr<MoeLayer> MakeLayer(const MoeShape& shape, int64_t max_tokens,
                                      const MoeLayerOptions& options = {}) {
    auto layer = MoeLayer::Create(shape, max_tokens, options);
    BOOST_REQUIRE_MESSAGE(layer.ok(), "MoeLayer::Create: " << layer.status());
    return std::move(*layer);
  }

  RoutingPlan Plan(MoeLayer& layer, uint64_t seed, int64_t tokens) {
    auto plan = layer.PlanRouting(seed, tokens, stream);
    BOOST_REQUIRE_MESSAGE(plan.ok(), "PlanRouting: " << plan.status());
    return std::move(*plan);
  }

  void Sync() { REQUIRE_CUDA(cudaStreamSynchronize(cuda_stream)); }

  std::optional<Mismatch> CompareOrFail(MoeLayer& layer, uint64_t a, uint64_t b,
                                        uint64_t elements) {
    auto compared = layer.Compare(a, b, elements, stream);
    BOOST_REQUIRE_MESSAGE(compared.ok(), "Compare: " << compared.status());
    return *compared;
  }

  cudaStream_t cuda_stream = nullptr;
  void* stream = nullptr;
};

// Small deterministic bf16 weights in [-scale, scale), independent of the fill kernel.
std::vector<uint16_t> TestWeights(uint64_t domain, uint64_t elements, float scale) {
  std::vector<uint16_t> w(elements);
  const uint64_t key = dwdp::moe::HashKey(100 + domain, 1, 0);
  for (uint64_t i = 0; i < elements; ++i) {
    const int32_t u = static_cast<int32_t>(dwdp::moe::HashFinish(key, i) >> 40) - (1 << 23);
    w[i] = FloatToBf16(static_cast<float>(u) / 8388608.0f * scale);
  }
  return w;
}

float RoundBf16(float v) { return Bf16ToFloat(FloatToBf16(v)); }

// The layer in fp32/fp64 on the host, rounding to bf16 where the GPU stores bf16: GEMM outputs
// (exact sums rounded once), the activations, the combined output.
std::vector<float> ReferenceLayer(const MoeShape& shape, uint64_t seed, int64_t tokens,
                                  const std::vector<uint16_t>& x, const std::vector<uint16_t>& w13,
                                  const std::vector<uint16_t>& w2) {
  const int64_t hidden = shape.hidden;
  const int64_t inter = shape.intermediate;
  const int32_t k = static_cast<int32_t>(shape.top_k);
  std::vector<float> out(static_cast<size_t>(tokens * hidden));
  std::vector<float> h1(static_cast<size_t>(2 * inter));
  std::vector<float> act(static_cast<size_t>(inter));
  std::vector<std::vector<float>> y(static_cast<size_t>(k), std::vector<float>(hidden));
  for (int64_t t = 0; t < tokens; ++t) {
    int32_t ids[dwdp::moe::kMaxTopK];
    float weights[dwdp::moe::kMaxTopK];
    dwdp::moe::RouteToken(seed, t, static_cast<int32_t>(shape.num_experts), k, ids, weights);
    for (int32_t j = 0; j < k; ++j) {
      const int64_t e = ids[j];
      for (int64_t c = 0; c < 2 * inter; ++c) {
        double sum = 0;
        for (int64_t h = 0; h < hidden; ++h) {
          sum += double{Bf16ToFloat(x[t * hidden + h])} *
                 Bf16ToFloat(w13[(e * 2 * inter + c) * hidden + h]);
        }
        h1[c] = RoundBf16(static_cast<float>(sum));
      }
      for (int64_t i = 0; i < inter; ++i) {
        const float gate = h1[i];
        const float up = h1[inter + i];
        act[i] = RoundBf16(gate / (1.0f + std::exp(-gate)) * up);
      }
      for (int64_t c = 0; c < hidden; ++c) {
        double sum = 0;
        for (int64_t i = 0; i < inter; ++i) {
          sum += double{act[i]} * Bf16ToFloat(w2[(e * hidden + c) * inter + i]);
        }
        y[j][c] = RoundBf16(static_cast<float>(sum));
      }
    }
    for (int64_t c = 0; c < hidden; ++c) {
      float sum = 0;
      for (int32_t j = 0; j < k; ++j) sum = std::fma(weights[j], y[j][c], sum);
      out[t * hidden + c] = RoundBf16(sum);
    }
  }
  return out;
}

BOOST_AUTO_TEST_SUITE(with_gpu, *boost::unit_test::precondition(GpuAvailable()))

BOOST_FIXTURE_TEST_CASE(device_routing_equals_the_host_functions_for_every_strategy, LayerFixture) {
  const MoeShape shape{64, 64, 64, 8};
  const int64_t tokens = 2048;
  const uint64_t seed = 7;  // boundary ties occur (seeded_logits_do_tie_at_the_top_k_boundary)
  auto layer = MakeLayer(shape, tokens);
  const RoutingPlan plan = Plan(*layer, seed, tokens);

  // The host routing and an independent permutation: entries in (token, j) order per expert.
  const size_t entries = static_cast<size_t>(tokens * shape.top_k);
  std::vector<int32_t> experts(entries), positions(entries), counts(64, 0);
  std::vector<float> weights(entries);
  for (int64_t t = 0; t < tokens; ++t) {
    dwdp::moe::RouteToken(seed, t, 64, 8, &experts[t * 8], &weights[t * 8]);
    for (int j = 0; j < 8; ++j) positions[t * 8 + j] = counts[experts[t * 8 + j]]++;
  }
  BOOST_TEST(plan.expert_counts == counts, boost::test_tools::per_element());
  BOOST_TEST(plan.max_count() == *std::max_element(counts.begin(), counts.end()));

  std::vector<int32_t> packed_offsets(64, 0);
  for (int e = 1; e < 64; ++e) packed_offsets[e] = packed_offsets[e - 1] + counts[e - 1];
  for (GemmStrategy strategy : kConcreteStrategies) {
    BOOST_TEST_CONTEXT("strategy " << GemmStrategyName(strategy)) {
      REQUIRE_OK(layer->EnqueueRouting(plan, stream, strategy));
      auto snapshot = layer->ReadRouting(tokens, stream);
      BOOST_REQUIRE_MESSAGE(snapshot.ok(), snapshot.status());
      REQUIRE_OK(layer->CheckRouting(stream));
      BOOST_TEST(snapshot->experts == experts, boost::test_tools::per_element());
      BOOST_TEST(std::memcmp(snapshot->weights.data(), weights.data(),
                             entries * sizeof(float)) == 0);  // bit for bit
      BOOST_TEST(snapshot->positions == positions, boost::test_tools::per_element());
      BOOST_TEST(snapshot->counts == counts, boost::test_tools::per_element());
      const bool padded = strategy == GemmStrategy::kPaddedStridedBatched;
      std::vector<int32_t> rows(entries);
      for (size_t i = 0; i < entries; ++i) {
        rows[i] =
            (padded ? experts[i] * plan.max_count() : packed_offsets[experts[i]]) + positions[i];
      }
      BOOST_TEST(snapshot->rows == rows, boost::test_tools::per_element());
    }
  }
}

BOOST_FIXTURE_TEST_CASE(output_matches_an_fp32_cpu_reference_for_every_strategy, LayerFixture) {
  const MoeShape shape{8, 256, 128, 2};
  const int64_t tokens = 100;
  const uint64_t seed = 11;
  const uint64_t input_seed = 12;
  const uint64_t w13_elements = 8 * W13ExpertBytes(shape) / 2;
  const uint64_t w2_elements = 8 * W2ExpertBytes(shape) / 2;
  // Scales that keep every stage near 1: |h1| ~ 1, |act| ~ 0.5, |out| ~ 1.
  const std::vector<uint16_t> w13 = TestWeights(1, w13_elements, 0.1875f);
  const std::vector<uint16_t> w2 = TestWeights(2, w2_elements, 0.25f);
  DeviceMemory w13_device(w13_elements * 2);
  DeviceMemory w2_device(w2_elements * 2);
  REQUIRE_CUDA(cudaMemcpy(w13_device.p, w13.data(), w13_elements * 2, cudaMemcpyHostToDevice));
  REQUIRE_CUDA(cudaMemcpy(w2_device.p, w2.data(), w2_elements * 2, cudaMemcpyHostToDevice));

  auto layer = MakeLayer(shape, tokens);
  REQUIRE_OK(layer->GenerateInput(input_seed, tokens, stream));
  Sync();
  const uint64_t elements = static_cast<uint64_t>(tokens * shape.hidden);
  const std::vector<uint16_t> x = ReadBf16(layer->input(), elements);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < shape.hidden; ++h) {
      if (x[t * shape.hidden + h] != dwdp::moe::InputValue(input_seed, t, h)) {
        BOOST_FAIL("the GPU input differs from InputValue at token " << t << ", h " << h);
      }
    }
  }
  const std::vector<float> reference = ReferenceLayer(shape, seed, tokens, x, w13, w2);
  float largest = 0;
  for (float v : reference) largest = std::max(largest, std::abs(v));
  BOOST_TEST_MESSAGE("largest |reference output|: " << largest);
  BOOST_REQUIRE(largest > 0.5f);  // the case carries information

  const RoutingPlan plan = Plan(*layer, seed, tokens);
  DeviceMemory caller_input(elements * 2);
  DeviceMemory caller_output(elements * 2);
  DeviceMemory first_output(elements * 2);
  DeviceMemory zeros(elements * 2);
  REQUIRE_CUDA(cudaMemset(zeros.p, 0, elements * 2));
  REQUIRE_CUDA(cudaMemcpy(caller_input.p, reinterpret_cast<const void*>(layer->input()),
                          elements * 2, cudaMemcpyDeviceToDevice));
  // The tolerance: two bf16 ulps of the value, plus one of the output's scale (the GPU sums in
  // another order, so a GEMM output may round to the neighbouring bf16, and that moves the
  // stages after it).
  for (GemmStrategy strategy : kConcreteStrategies) {
    BOOST_TEST_CONTEXT("strategy " << GemmStrategyName(strategy)) {
      REQUIRE_OK(layer->Enqueue(plan, w13_device.address(), w2_device.address(), stream, strategy));
      REQUIRE_OK(layer->CheckRouting(stream));
      Sync();
      const std::vector<uint16_t> got = ReadBf16(layer->output(), elements);
      int bad = 0;
      int exact = 0;
      double worst = 0;
      for (uint64_t i = 0; i < elements; ++i) {
        const float g = Bf16ToFloat(got[i]);
        const float r = reference[i];
        const double error = std::abs(double{g} - r);
        const double allowed = std::abs(r) / 64.0 + largest / 128.0;
        worst = std::max(worst, error);
        exact += g == r ? 1 : 0;
        if (!(error <= allowed) && ++bad <= 5) {
          BOOST_ERROR("token " << i / shape.hidden << " h " << i % shape.hidden << ": GPU " << g
                               << ", reference " << r << " (allowed " << allowed << ")");
        }
      }
      BOOST_TEST_MESSAGE(GemmStrategyName(strategy)
                         << ": " << exact << " of " << elements
                         << " elements equal the reference exactly, largest error " << worst);
      BOOST_TEST(bad == 0);

      // A caller's input and output buffers: the same result, and the layer's output untouched.
      REQUIRE_CUDA(cudaMemcpy(first_output.p, reinterpret_cast<const void*>(layer->output()),
                              elements * 2, cudaMemcpyDeviceToDevice));
      REQUIRE_CUDA(cudaMemset(reinterpret_cast<void*>(layer->output()), 0, elements * 2));
      MoeIo io;
      io.input = caller_input.address();
      io.output = caller_output.address();
      REQUIRE_OK(
          layer->Enqueue(plan, w13_device.address(), w2_device.address(), stream, strategy, io));
      const auto same =
          CompareOrFail(*layer, caller_output.address(), first_output.address(), elements);
      BOOST_CHECK_MESSAGE(!same.has_value(), "caller buffers: " << Describe(same));
      const auto untouched = CompareOrFail(*layer, layer->output(), zeros.address(), elements);
      BOOST_CHECK_MESSAGE(!untouched.has_value(), "the layer's output: " << Describe(untouched));
    }
  }
}

BOOST_FIXTURE_TEST_CASE(outputs_are_bitwise_equal_with_the_weights_at_two_addresses, LayerFixture) {
  const MoeShape shape{16, 512, 256, 4};
  const int64_t tokens = 512;
  const uint64_t w13_bytes = 16 * W13ExpertBytes(shape);
  const uint64_t w2_bytes = 16 * W2ExpertBytes(shape);

  // One copy of the weights in VMM ranges (cuMemCreate + cuMemMap), one in cudaMalloc memory,
  // both written by the fill kernel.
  CudaDriverOptions driver_options;
  driver_options.log_handle_choice = false;
  auto driver = CudaDriver::Create(driver_options);
  BOOST_REQUIRE_MESSAGE(driver.ok(), driver.status());
  const uint64_t granularity = (*driver)->granularity();
  struct VmmRange {
    Handle handle;
    DevPtr va = 0;
    uint64_t bytes = 0;
  };
  auto map_range = [&](uint64_t bytes) {
    VmmRange range;
    range.bytes = (bytes + granularity - 1) / granularity * granularity;
    auto handle = (*driver)->Create(range.bytes, HandleKind::kNone);
    BOOST_REQUIRE_MESSAGE(handle.ok(), handle.status());
    range.handle = *handle;
    auto va = (*driver)->Reserve(range.bytes, granularity);
    BOOST_REQUIRE_MESSAGE(va.ok(), va.status());
    range.va = *va;
    REQUIRE_OK((*driver)->Map(range.va, range.bytes, range.handle, 0));
    REQUIRE_OK((*driver)->SetAccess(range.va, range.bytes));
    return range;
  };
  const VmmRange vmm_w13 = map_range(w13_bytes);
  const VmmRange vmm_w2 = map_range(w2_bytes);
  DeviceMemory plain_w13(w13_bytes);
  DeviceMemory plain_w2(w2_bytes);
  for (auto [dst, bytes, weight, expert_bytes] :
       {std::tuple{vmm_w13.va, w13_bytes, 0, W13ExpertBytes(shape)},
        std::tuple{plain_w13.address(), w13_bytes, 0, W13ExpertBytes(shape)},
        std::tuple{vmm_w2.va, w2_bytes, 1, W2ExpertBytes(shape)},
        std::tuple{plain_w2.address(), w2_bytes, 1, W2ExpertBytes(shape)}}) {
    REQUIRE_CUDA(
        static_cast<cudaError_t>(LaunchFill(stream, dst, bytes, 5, weight, expert_bytes, 0, 1024)));
  }
  Sync();

  auto layer = MakeLayer(shape, tokens);
  const auto weights_equal = CompareOrFail(*layer, vmm_w13.va, plain_w13.address(), w13_bytes / 2);
  BOOST_REQUIRE_MESSAGE(!weights_equal.has_value(), "the two w13 copies differ");
  // Whether the fill pattern is bf16-valued decides how much the output says on its own.
  const std::vector<uint16_t> sample = ReadBf16(plain_w13.address(), w13_bytes / 2);
  const bool finite_weights = std::all_of(sample.begin(), sample.end(), dwdp::moe::Bf16IsFinite);
  BOOST_TEST_MESSAGE("fill pattern " << (finite_weights ? "is" : "is not")
                                     << " finite bf16 throughout");

  const RoutingPlan plan = Plan(*layer, 21, tokens);
  REQUIRE_OK(layer->GenerateInput(22, tokens, stream));
  const uint64_t elements = static_cast<uint64_t>(tokens * shape.hidden);
  DeviceMemory from_vmm(elements * 2);
  for (GemmStrategy strategy : kConcreteStrategies) {
    BOOST_TEST_CONTEXT("strategy " << GemmStrategyName(strategy)) {
      REQUIRE_OK(layer->Enqueue(plan, vmm_w13.va, vmm_w2.va, stream, strategy));
      REQUIRE_CUDA(cudaMemcpyAsync(from_vmm.p, reinterpret_cast<const void*>(layer->output()),
                                   elements * 2, cudaMemcpyDeviceToDevice, cuda_stream));
      REQUIRE_OK(layer->Enqueue(plan, plain_w13.address(), plain_w2.address(), stream, strategy));
      REQUIRE_OK(layer->CheckRouting(stream));
      const auto across = CompareOrFail(*layer, from_vmm.address(), layer->output(), elements);
      BOOST_CHECK_MESSAGE(!across.has_value(), "VMM vs cudaMalloc weights: " << Describe(across));
      REQUIRE_OK(layer->Enqueue(plan, vmm_w13.va, vmm_w2.va, stream, strategy));
      const auto again = CompareOrFail(*layer, from_vmm.address(), layer->output(), elements);
      BOOST_CHECK_MESSAGE(!again.has_value(), "run to run: " << Describe(again));
      if (finite_weights) {
        const std::vector<uint16_t> out = ReadBf16(layer->output(), elements);
        BOOST_TEST(std::all_of(out.begin(), out.end(), dwdp::moe::Bf16IsFinite));
        BOOST_TEST(std::set<uint16_t>(out.begin(), out.end()).size() > 1000u);
      }
    }
  }
  for (const VmmRange* range : {&vmm_w13, &vmm_w2}) {
    BOOST_TEST((*driver)->Unmap(range->va, range->bytes).ok());
    BOOST_TEST((*driver)->Free(range->va, range->bytes).ok());
    BOOST_TEST((*driver)->Release(range->handle).ok());
  }
}

BOOST_FIXTURE_TEST_CASE(tune_picks_a_strategy_that_auto_then_runs, LayerFixture) {
  const MoeShape shape{8, 256, 128, 2};
  const int64_t tokens = 300;
  const uint64_t w13_elements = 8 * W13ExpertBytes(shape) / 2;
  const uint64_t w2_elements = 8 * W2ExpertBytes(shape) / 2;
  const std::vector<uint16_t> w13 = TestWeights(3, w13_elements, 0.1875f);
  const std::vector<uint16_t> w2 = TestWeights(4, w2_elements, 0.25f);
  DeviceMemory w13_device(w13_elements * 2);
  DeviceMemory w2_device(w2_elements * 2);
  REQUIRE_CUDA(cudaMemcpy(w13_device.p, w13.data(), w13_elements * 2, cudaMemcpyHostToDevice));
  REQUIRE_CUDA(cudaMemcpy(w2_device.p, w2.data(), w2_elements * 2, cudaMemcpyHostToDevice));
  auto layer = MakeLayer(shape, tokens);
  const RoutingPlan plan = Plan(*layer, 31, tokens);

  std::vector<StrategyTiming> timings;
  auto chosen = layer->Tune(plan, w13_device.address(), w2_device.address(), stream, &timings);
  BOOST_REQUIRE_MESSAGE(chosen.ok(), chosen.status());
  BOOST_TEST(static_cast<int>(*chosen) != static_cast<int>(GemmStrategy::kAuto));
  BOOST_TEST(timings.size() == std::size(kConcreteStrategies));
  for (const StrategyTiming& t : timings) {
    BOOST_TEST_MESSAGE(GemmStrategyName(t.strategy) << ": " << t.ms << " ms " << t.status);
    BOOST_TEST(t.status.ok());
    BOOST_TEST(t.ms > 0);
  }
  BOOST_TEST(static_cast<int>(layer->Resolve(GemmStrategy::kAuto, tokens)) ==
             static_cast<int>(*chosen));

  const uint64_t elements = static_cast<uint64_t>(tokens * shape.hidden);
  DeviceMemory chosen_output(elements * 2);
  REQUIRE_OK(layer->Enqueue(plan, w13_device.address(), w2_device.address(), stream, *chosen));
  REQUIRE_CUDA(cudaMemcpyAsync(chosen_output.p, reinterpret_cast<const void*>(layer->output()),
                               elements * 2, cudaMemcpyDeviceToDevice, cuda_stream));
  REQUIRE_OK(layer->Enqueue(plan, w13_device.address(), w2_device.address(), stream));
  const auto same = CompareOrFail(*layer, chosen_output.address(), layer->output(), elements);
  BOOST_CHECK_MESSAGE(!same.has_value(), "auto vs the tuned strategy: " << Describe(same));
}

BOOST_FIXTURE_TEST_CASE(a_plan_that_is_not_the_gpus_routing_is_reported_and_contained,
                        LayerFixture) {
  const MoeShape shape{8, 256, 128, 2};
  const int64_t tokens = 100;
  DeviceMemory w13(8 * W13ExpertBytes(shape));
  DeviceMemory w2(8 * W2ExpertBytes(shape));
  REQUIRE_CUDA(cudaMemset(w13.p, 0, 8 * W13ExpertBytes(shape)));
  REQUIRE_CUDA(cudaMemset(w2.p, 0, 8 * W2ExpertBytes(shape)));
  auto layer = MakeLayer(shape, tokens);
  const RoutingPlan plan = Plan(*layer, 41, tokens);
  const RoutingPlan other = Plan(*layer, 42, tokens);
  BOOST_REQUIRE(plan.expert_counts != other.expert_counts);
  RoutingPlan wrong = other;
  wrong.seed = plan.seed;  // seed 41 routes differently from these counts
  REQUIRE_OK(layer->Reserve(wrong));
  for (GemmStrategy strategy : kConcreteStrategies) {
    BOOST_TEST_CONTEXT("strategy " << GemmStrategyName(strategy)) {
      REQUIRE_OK(layer->Enqueue(wrong, w13.address(), w2.address(), stream, strategy));
      const absl::Status checked = layer->CheckRouting(stream);
      BOOST_TEST(checked.code() == absl::StatusCode::kFailedPrecondition);
      BOOST_CHECK_MESSAGE(absl::StrContains(checked.message(), "differed from the plan"), checked);
      // The flags are cleared, and a right plan runs clean again.
      REQUIRE_OK(layer->Enqueue(plan, w13.address(), w2.address(), stream, strategy));
      BOOST_TEST(layer->CheckRouting(stream).ok());
    }
  }
}

BOOST_FIXTURE_TEST_CASE(misuse_is_refused_with_a_reason, LayerFixture) {
  const MoeShape shape{8, 256, 128, 2};
  const int64_t tokens = 100;
  DeviceMemory w13(8 * W13ExpertBytes(shape));
  DeviceMemory w2(8 * W2ExpertBytes(shape));
  auto layer = MakeLayer(shape, tokens);
  const RoutingPlan plan = Plan(*layer, 51, tokens);

  // Experts before any routing of the plan.
  const absl::Status early = layer->EnqueueExperts(plan, w13.address(), w2.address(), stream,
                                                   GemmStrategy::kGroupedBatched);
  BOOST_CHECK_MESSAGE(early.code() == absl::StatusCode::kFailedPrecondition, early);
  // Routing laid out for one strategy, experts for another layout.
  REQUIRE_OK(layer->EnqueueRouting(plan, stream, GemmStrategy::kGroupedBatched));
  const absl::Status layout = layer->EnqueueExperts(plan, w13.address(), w2.address(), stream,
                                                    GemmStrategy::kPaddedStridedBatched);
  BOOST_CHECK_MESSAGE(layout.code() == absl::StatusCode::kFailedPrecondition, layout);
  // Misaligned weights.
  const absl::Status misaligned = layer->EnqueueExperts(plan, w13.address() + 16, w2.address(),
                                                        stream, GemmStrategy::kGroupedBatched);
  BOOST_CHECK_MESSAGE(misaligned.code() == absl::StatusCode::kInvalidArgument, misaligned);
  // Plans that do not fit the layer.
  RoutingPlan too_many = plan;
  too_many.tokens = tokens + 1;
  BOOST_TEST(layer->Enqueue(too_many, w13.address(), w2.address(), stream).code() ==
             absl::StatusCode::kInvalidArgument);
  RoutingPlan short_counts = plan;
  short_counts.expert_counts.pop_back();
  BOOST_TEST(layer->Enqueue(short_counts, w13.address(), w2.address(), stream).code() ==
             absl::StatusCode::kInvalidArgument);
  // A skewed plan's padded layout needs more rows than reserved, until Reserve.
  RoutingPlan skewed = plan;
  std::fill(skewed.expert_counts.begin(), skewed.expert_counts.end(), 0);
  skewed.expert_counts[0] = static_cast<int32_t>(tokens * shape.top_k);
  const absl::Status unreserved =
      layer->EnqueueRouting(skewed, stream, GemmStrategy::kPaddedStridedBatched);
  BOOST_CHECK_MESSAGE(unreserved.code() == absl::StatusCode::kFailedPrecondition, unreserved);
  const uint64_t before = layer->device_bytes();
  REQUIRE_OK(layer->Reserve(skewed));
  BOOST_TEST(layer->device_bytes() > before);
  REQUIRE_OK(layer->EnqueueRouting(skewed, stream, GemmStrategy::kPaddedStridedBatched));
  BOOST_TEST(layer->CheckRouting(stream).code() == absl::StatusCode::kFailedPrecondition);
  BOOST_TEST(layer->ReadRouting(tokens + 1, stream).status().code() ==
             absl::StatusCode::kFailedPrecondition);
  // No tokens: nothing to do, and nothing refused.
  const RoutingPlan empty = Plan(*layer, 52, 0);
  BOOST_TEST(empty.max_count() == 0);
  REQUIRE_OK(layer->Enqueue(empty, w13.address(), w2.address(), stream));
  REQUIRE_OK(layer->CheckRouting(stream));
}

BOOST_FIXTURE_TEST_CASE(expert_streams_cost_workspaces_and_keep_the_result, LayerFixture) {
  const MoeShape shape{8, 256, 128, 2};
  const int64_t tokens = 200;
  const uint64_t w13_elements = 8 * W13ExpertBytes(shape) / 2;
  const uint64_t w2_elements = 8 * W2ExpertBytes(shape) / 2;
  const std::vector<uint16_t> w13 = TestWeights(5, w13_elements, 0.1875f);
  const std::vector<uint16_t> w2 = TestWeights(6, w2_elements, 0.25f);
  DeviceMemory w13_device(w13_elements * 2);
  DeviceMemory w2_device(w2_elements * 2);
  REQUIRE_CUDA(cudaMemcpy(w13_device.p, w13.data(), w13_elements * 2, cudaMemcpyHostToDevice));
  REQUIRE_CUDA(cudaMemcpy(w2_device.p, w2.data(), w2_elements * 2, cudaMemcpyHostToDevice));
  MoeLayerOptions one;
  one.expert_streams = 1;
  one.workspace_bytes = 4 << 20;
  MoeLayerOptions three = one;
  three.expert_streams = 3;
  auto a = MakeLayer(shape, tokens, one);
  auto b = MakeLayer(shape, tokens, three);
  BOOST_TEST(b->device_bytes() - a->device_bytes() == 2u * (4u << 20));
  const RoutingPlan plan = Plan(*a, 61, tokens);
  const RoutingPlan plan_b = Plan(*b, 61, tokens);
  BOOST_REQUIRE(plan.expert_counts == plan_b.expert_counts);
  REQUIRE_OK(a->Enqueue(plan, w13_device.address(), w2_device.address(), stream,
                        GemmStrategy::kPerExpertGemm));
  REQUIRE_OK(b->Enqueue(plan, w13_device.address(), w2_device.address(), stream,
                        GemmStrategy::kPerExpertGemm));
  const auto same =
      CompareOrFail(*a, a->output(), b->output(), static_cast<uint64_t>(tokens * shape.hidden));
  BOOST_CHECK_MESSAGE(!same.has_value(), "1 vs 3 expert streams: " << Describe(same));
}

BOOST_FIXTURE_TEST_CASE(compare_names_the_first_difference, LayerFixture) {
  auto layer = MakeLayer({8, 256, 128, 2}, 16);
  const uint64_t elements = 1000;
  std::vector<uint16_t> host(elements);
  for (uint64_t i = 0; i < elements; ++i) host[i] = static_cast<uint16_t>(i * 7);
  DeviceMemory a(elements * 2);
  DeviceMemory b(elements * 2);
  REQUIRE_CUDA(cudaMemcpy(a.p, host.data(), elements * 2, cudaMemcpyHostToDevice));
  REQUIRE_CUDA(cudaMemcpy(b.p, host.data(), elements * 2, cudaMemcpyHostToDevice));
  BOOST_TEST(!CompareOrFail(*layer, a.address(), b.address(), elements).has_value());
  host[900] ^= 1;
  host[517] = 0xBEEF;
  REQUIRE_CUDA(cudaMemcpy(b.p, host.data(), elements * 2, cudaMemcpyHostToDevice));
  const auto found = CompareOrFail(*layer, a.address(), b.address(), elements);
  BOOST_REQUIRE(found.has_value());
  BOOST_TEST(found->index == 517u);
  BOOST_TEST(found->a == static_cast<uint16_t>(517 * 7));
  BOOST_TEST(found->b == 0xBEEFu);
  // Unaligned starts take the element-wise path.
  const auto shifted = CompareOrFail(*layer, a.address() + 2, b.address() + 2, elements - 1);
  BOOST_REQUIRE(shifted.has_value());
  BOOST_TEST(shifted->index == 516u);
  BOOST_TEST(!CompareOrFail(*layer, a.address(), b.address(), 517).has_value());
}

// The DEP baseline hands the layer rows it laid out itself (EnqueuePermutedExperts): with the
// rows and counts of the layer's own routing, the GEMMs must produce its own expert outputs.
BOOST_FIXTURE_TEST_CASE(permuted_experts_equal_the_layers_own_expert_stage, LayerFixture) {
  const MoeShape shape{8, 256, 128, 2};
  const int64_t tokens = 300;
  const int64_t rows = tokens * shape.top_k;
  const std::vector<uint16_t> w13 = TestWeights(3, 8 * W13ExpertBytes(shape) / 2, 0.1875f);
  const std::vector<uint16_t> w2 = TestWeights(4, 8 * W2ExpertBytes(shape) / 2, 0.25f);
  DeviceMemory w13_device(w13.size() * 2);
  DeviceMemory w2_device(w2.size() * 2);
  REQUIRE_CUDA(cudaMemcpy(w13_device.p, w13.data(), w13.size() * 2, cudaMemcpyHostToDevice));
  REQUIRE_CUDA(cudaMemcpy(w2_device.p, w2.data(), w2.size() * 2, cudaMemcpyHostToDevice));
  auto routed = MakeLayer(shape, tokens);
  REQUIRE_OK(routed->GenerateInput(5, tokens, stream));
  const RoutingPlan plan = Plan(*routed, 9, tokens);
  REQUIRE_OK(routed->EnqueueRouting(plan, stream, GemmStrategy::kGroupedBatched));
  REQUIRE_OK(routed->EnqueueExperts(plan, w13_device.address(), w2_device.address(), stream,
                                    GemmStrategy::kGroupedBatched));
  REQUIRE_OK(routed->CheckRouting(stream));

  auto permuted = MakeLayer({8, 256, 128, 1}, rows);
  REQUIRE_CUDA(cudaMemcpy(reinterpret_cast<void*>(permuted->permuted_input()),
                          reinterpret_cast<const void*>(routed->permuted_input()),
                          static_cast<uint64_t>(rows * shape.hidden) * 2,
                          cudaMemcpyDeviceToDevice));
  RoutingPlan rows_plan;
  rows_plan.seed = plan.seed;
  rows_plan.tokens = rows;
  rows_plan.expert_counts = plan.expert_counts;
  REQUIRE_OK(permuted->EnqueuePermutedExperts(rows_plan, w13_device.address(), w2_device.address(),
                                              stream));
  Sync();
  const auto same = CompareOrFail(*permuted, permuted->permuted_output(), routed->permuted_output(),
                                  static_cast<uint64_t>(rows * shape.hidden));
  BOOST_TEST(!same.has_value(), Describe(same));
  // Counts that do not add up to the rows are refused before anything runs.
  rows_plan.expert_counts[0] += 1;
  BOOST_TEST(
      !permuted
           ->EnqueuePermutedExperts(rows_plan, w13_device.address(), w2_device.address(), stream)
           .ok());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace dwdp::cuda::moe

#endif  // DWDP_HAVE_CUDA
