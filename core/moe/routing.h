#pragma once

// The routing of the synthetic MoE layer, as pure functions shared by the host (plans, tests) and
// the GPU router (backends/cuda/moe): compiled by nvcc too, hence host/device and no library
// calls. The GPU must reproduce these bit for bit, so every floating-point step that could round
// goes through Add/Sub/Mul/Div, which are IEEE round-to-nearest on both sides and never fused
// into an FMA by either compiler.
//
//   * Router logits are seeded pseudo-random values on a 1/256 grid in [-4, 4), the resolution of
//     a low-precision router: ties between experts are common, so the tie rule matters.
//   * A token's top-k are the k distinct experts with the largest logits, ties broken by the
//     lower expert id, listed best first (that order is the token's slot index j).
//   * The router weights are the softmax over the k selected logits, in fp32.

#include <cstdint>

#include "core/moe/bf16.h"
#include "core/pattern.h"  // DWDP_HOST_DEVICE

namespace dwdp::moe {

// Limits of the GPU router: a warp covers the experts in 32 lanes of at most 32 experts each,
// and the selected experts of a token live in registers.
inline constexpr int32_t kMaxExperts = 1024;
inline constexpr int32_t kMaxTopK = 16;

inline constexpr float kLogitStep = 1.0f / 256.0f;

DWDP_HOST_DEVICE inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// One 64-bit value per (domain, seed, a, b), in two steps so that a GPU thread can hash its
// token once and then each expert (or element) with one more mix. The domains keep logits,
// inputs and fingerprints of the same seed unrelated.
DWDP_HOST_DEVICE inline uint64_t HashKey(uint64_t domain, uint64_t seed, uint64_t a) {
  const uint64_t h = Mix64(seed + domain * 0x9E3779B97F4A7C15ull);
  return Mix64(h ^ (a * 0xC2B2AE3D27D4EB4Full + 0x165667B19E3779F9ull));
}
DWDP_HOST_DEVICE inline uint64_t HashFinish(uint64_t key, uint64_t b) {
  return Mix64(key ^ (b * 0xD6E8FEB86659FD93ull + 0x27D4EB2F165667C5ull));
}

inline constexpr uint64_t kRouterDomain = 1;
inline constexpr uint64_t kInputDomain = 2;
inline constexpr uint64_t kFingerprintDomain = 3;

DWDP_HOST_DEVICE inline uint64_t RouterTokenKey(uint64_t seed, int64_t token) {
  return HashKey(kRouterDomain, seed, static_cast<uint64_t>(token));
}

// Exactly representable: an integer in [-1024, 1023] times 2^-8.
DWDP_HOST_DEVICE inline float RouterLogitOfKey(uint64_t token_key, int32_t expert) {
  const uint64_t h = HashFinish(token_key, static_cast<uint64_t>(static_cast<uint32_t>(expert)));
  const int32_t grid = static_cast<int32_t>(h >> 53) - 1024;
  return static_cast<float>(grid) * kLogitStep;
}

DWDP_HOST_DEVICE inline float RouterLogit(uint64_t seed, int64_t token, int32_t expert) {
  return RouterLogitOfKey(RouterTokenKey(seed, token), expert);
}

// The seeds of one MoE layer of the synthetic workload (workload.seed): the routing is a function
// of the layer (every forward and every rank route with it); the inputs differ per layer,
// forward and rank, as a real batch's would. DWDP's runtime and the DEP baseline both use these.
DWDP_HOST_DEVICE inline uint64_t LayerRoutingSeed(int64_t layer, uint64_t workload_seed) {
  return PatternSeed(layer, -1, workload_seed);
}
DWDP_HOST_DEVICE inline uint64_t LayerInputSeed(int64_t layer, int64_t forward, int64_t rank,
                                                uint64_t workload_seed) {
  return PatternSeed(layer, forward + 1, workload_seed ^ (static_cast<uint64_t>(rank + 1) << 32));
}

// Input activation (token, h) as bf16 bits: a 24-bit uniform value in [-1, 1) rounded to bf16
// (so within [-1, 1]).
DWDP_HOST_DEVICE inline uint16_t InputValue(uint64_t seed, int64_t token, int64_t h) {
  const uint64_t bits = HashFinish(HashKey(kInputDomain, seed, static_cast<uint64_t>(token)),
                                   static_cast<uint64_t>(h));
  const int32_t u = static_cast<int32_t>(bits >> 40) - (1 << 23);  // [-2^23, 2^23)
  return FloatToBf16(static_cast<float>(u) * (1.0f / 8388608.0f));
}

// IEEE single-precision operations, rounded to nearest, never contracted.
DWDP_HOST_DEVICE inline float Add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DWDP_HOST_DEVICE inline float Sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DWDP_HOST_DEVICE inline float Mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DWDP_HOST_DEVICE inline float Div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// e^x for x <= 0 (clamped at -87, where e^x is still a normal float), within a few ulp:
// x = n ln2 + r with |r| <= ln2 / 2 + small, e^r by its degree-7 Taylor polynomial (error below
// 1e-8 there), 2^n by multiplying exact powers of two.
DWDP_HOST_DEVICE inline float ExpNonPositive(float x) {
  if (!(x <= 0.0f)) x = 0.0f;
  if (x < -87.0f) x = -87.0f;
  const float t = Mul(x, 1.44269502f);                   // x log2(e), in [-125.6, 0]
  const int32_t n = static_cast<int32_t>(Sub(t, 0.5f));  // truncation: |t - n| <= 0.5 (ish)
  const float nf = static_cast<float>(n);
  // Cody-Waite: ln2_hi has few enough bits that n * ln2_hi is exact.
  const float r = Sub(Sub(x, Mul(nf, 0.693145751953125f)), Mul(nf, 1.428606765330187e-06f));
  float p = 1.0f / 5040.0f;
  p = Add(Mul(p, r), 1.0f / 720.0f);
  p = Add(Mul(p, r), 1.0f / 120.0f);
  p = Add(Mul(p, r), 1.0f / 24.0f);
  p = Add(Mul(p, r), 1.0f / 6.0f);
  p = Add(Mul(p, r), 0.5f);
  p = Add(Mul(p, r), 1.0f);
  p = Add(Mul(p, r), 1.0f);
  // 2^n for n in [-126, 0]: the binary digits of -n pick exact factors 2^-1, 2^-2, 2^-4, ...
  uint32_t m = static_cast<uint32_t>(-n);
  float factor = 0.5f;
  while (m != 0) {
    if ((m & 1u) != 0) p = Mul(p, factor);
    factor = Mul(factor, factor);
    m >>= 1;
  }
  return p;
}

// The routing order: (value a, expert a) comes before (value b, expert b).
DWDP_HOST_DEVICE inline bool RanksBefore(float value_a, int32_t expert_a, float value_b,
                                         int32_t expert_b) {
  return value_a > value_b || (value_a == value_b && expert_a < expert_b);
}

// The top k of num_experts by RanksBefore, best first, for any logit(expert) -> float. The j-th
// pick is the best of the experts ranking after pick j - 1, so no set of taken experts is needed.
// O(k * num_experts); the GPU router does the same search spread over a warp.
template <typename LogitOf>
DWDP_HOST_DEVICE inline void SelectTopK(const LogitOf& logit, int32_t num_experts, int32_t k,
                                        int32_t* experts, float* logits) {
  for (int32_t j = 0; j < k; ++j) {
    int32_t best = -1;
    float best_value = 0.0f;
    for (int32_t e = 0; e < num_experts; ++e) {
      const float value = logit(e);
      if (j > 0 && !RanksBefore(logits[j - 1], experts[j - 1], value, e)) continue;
      if (best < 0 || RanksBefore(value, e, best_value, best)) {
        best = e;
        best_value = value;
      }
    }
    experts[j] = best;
    logits[j] = best_value;
  }
}

// Softmax over k logits (k >= 1): e^(l_j - max) / sum, the sum taken over j ascending.
DWDP_HOST_DEVICE inline void RouterWeights(const float* logits, int32_t k, float* weights) {
  float top = logits[0];
  for (int32_t j = 1; j < k; ++j) {
    if (logits[j] > top) top = logits[j];
  }
  float sum = 0.0f;
  for (int32_t j = 0; j < k; ++j) {
    weights[j] = ExpNonPositive(Sub(logits[j], top));
    sum = Add(sum, weights[j]);
  }
  for (int32_t j = 0; j < k; ++j) weights[j] = Div(weights[j], sum);
}

// One token's routing on the host: its k experts (best first) and their weights.
DWDP_HOST_DEVICE inline void RouteToken(uint64_t seed, int64_t token, int32_t num_experts,
                                        int32_t k, int32_t* experts, float* weights) {
  float logits[kMaxTopK];
  SelectTopK([&](int32_t e) { return RouterLogit(seed, token, e); }, num_experts, k, experts,
             logits);
  RouterWeights(logits, k, weights);
}

// A fingerprint of per-expert token counts: the wrapping sum of one hash per (expert, count), so
// that a GPU can add the terms in any order and still get the host's value.
DWDP_HOST_DEVICE inline uint64_t CountsFingerprintTerm(int32_t expert, int32_t count) {
  return HashFinish(
      HashKey(kFingerprintDomain, 0, static_cast<uint64_t>(static_cast<uint32_t>(expert))),
      static_cast<uint64_t>(static_cast<uint32_t>(count)));
}

DWDP_HOST_DEVICE inline uint64_t CountsFingerprint(const int32_t* counts, int32_t num_experts) {
  uint64_t sum = 0;
  for (int32_t e = 0; e < num_experts; ++e) sum += CountsFingerprintTerm(e, counts[e]);
  return sum;
}

}  // namespace dwdp::moe
