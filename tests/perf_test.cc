// Roofline perf model: hand-computed costs on the toy model and platform of
// tests/support/plan_fixtures.h, copy estimates per schedule, DEP, and the slot pipeline
// recurrence. Units: ns, bytes, FLOP. Toy rates: FP8 5e5 FLOP/ns, BF16 2.5e5 FLOP/ns,
// HBM 500 B/ns, 1000 ns per kernel, peer copy 100 B/ns + 1000 ns per copy, NVLink 200 B/ns.
#define BOOST_TEST_MODULE perf
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "core/perf/perf_model.h"
#include "tests/support/plan_fixtures.h"

namespace dwdp {
namespace {

using testing::ToyHardware;
using testing::ToyModel;

bool Near(double actual, double expected, double tolerance = 1e-6) {
  return std::fabs(actual - expected) <= tolerance * std::max(1.0, std::fabs(expected));
}

BOOST_AUTO_TEST_CASE(roofline_takes_the_slower_of_math_and_memory_plus_overheads) {
  const HardwareProfile hw = ToyHardware();
  // Math-bound: 4e9 FLOP / 5e5 = 8000 ns; 1e6 B / 500 = 2000 ns; + 1000 ns.
  BOOST_TEST(Near(Roofline(hw, DType::kFp8, 4e9, 1e6).time_ns, 9000));
  // Memory-bound: 1e8 / 5e5 = 200 ns; 1e7 / 500 = 20000 ns; + 2 kernels.
  BOOST_TEST(Near(Roofline(hw, DType::kFp8, 1e8, 1e7, 2).time_ns, 22000));
  // BF16 at half the FP8 rate: 4e9 / 2.5e5 = 16000 ns + 1000.
  BOOST_TEST(Near(Roofline(hw, DType::kBf16, 4e9, 0).time_ns, 17000));
}

BOOST_AUTO_TEST_CASE(fp4_falls_back_to_fp8_tensor_cores_without_an_fp4_rate) {
  HardwareProfile hw = ToyHardware();
  BOOST_TEST(std::string(PeakFlopsName(hw, DType::kFp4)) == "flops_fp4");
  hw.flops_fp4.value = 0;  // Hopper
  BOOST_TEST(std::string(PeakFlopsName(hw, DType::kFp4)) == "flops_fp8");
  BOOST_TEST(PeakFlops(hw, DType::kFp4).value == 1e15);
}

BOOST_AUTO_TEST_CASE(expected_active_experts) {
  // N (1 − (1 − k/N)^T): one token picks exactly k experts; two tokens 8 (1 − 0.75²) = 3.5.
  BOOST_TEST(Near(ExpectedActiveExperts(8, 2, 1), 2.0));
  BOOST_TEST(Near(ExpectedActiveExperts(8, 2, 2), 3.5));
  BOOST_TEST(Near(ExpectedActiveExperts(8, 2, 1e6), 8.0));
  BOOST_TEST(ExpectedActiveExperts(8, 2, 0) == 0.0);
  // DeepSeek-V3: 16K tokens of top-8 over 256 experts touch every expert.
  BOOST_TEST(Near(ExpectedActiveExperts(256, 8, 16384), 256.0));
}

BOOST_AUTO_TEST_CASE(routed_moe_of_64_tokens_is_bound_by_reading_every_expert) {
  // 64 tokens × top-2 = 128 products. FLOP = 6 · 128 · 1024 · 512 = 402,653,184 → 805.3 ns.
  // Active experts 8 (1 − 0.75^64) = 7.99999992; bytes = 7.99999992 · 3 MiB + 128 · 1024 · 3
  // = 25,559,039.75 → 51,118.08 ns, memory-bound; + 2 kernels = 53,118.08 ns.
  const LayerCost cost = MoeLayerCost(ToyModel(), ToyHardware(), {64, 64});
  BOOST_TEST(Near(cost.active_experts, 7.99999992, 1e-8));
  BOOST_TEST(Near(cost.routed_moe.flops, 402653184.0));
  BOOST_TEST(Near(cost.routed_moe.time_ns, 53118.08, 1e-6));
  BOOST_TEST(cost.routed_moe.kernels == 2);
}

BOOST_AUTO_TEST_CASE(gqa_attention_of_1024_tokens_at_1024) {
  // Mean attended context (1024 + 1) / 2 = 512.5.
  // Projections: q 1024·8·128 = 1,048,576; k and v 2·1024·2·128 = 524,288; o 1,048,576;
  // 2,621,440 params. FLOP 2 · 1024 · 2,621,440 = 5,368,709,120 → 10,737.4 ns; bytes
  // 2,621,440 (FP8) + 1024 · 1024 · 2 B · 2 = 6,815,744 → 13,631.488 ns, memory-bound;
  // + 2 kernels → 15,631.488 ns.
  // Core: 4 · 8 · 512.5 · 128 = 2,099,200 FLOP per token · 1024 = 2,149,580,800 → 8,598.3 ns
  // at BF16; bytes 1024 · (2·8·128 + 2·2·128) · 2 = 5,242,880 → 10,485.76 ns; + 1 kernel
  // → 11,485.76 ns. Attention = 27,117.248 ns.
  const LayerCost cost = MoeLayerCost(ToyModel(), ToyHardware(), {1024, 1024});
  BOOST_TEST(Near(cost.attention.time_ns, 27117.248));
  BOOST_TEST(Near(cost.attention.flops, 5368709120.0 + 2149580800.0));
  BOOST_TEST(cost.attention.kernels == 3);
}

BOOST_AUTO_TEST_CASE(shared_expert_and_dense_ffn) {
  // Shared expert, 1024 tokens: FLOP 6 · 1024 · 1024 · 512 = 3,221,225,472 → 6,442.45 ns;
  // bytes 3 · 1024 · 512 + 1024 · 1024 · 3 = 4,718,592 → 9,437.184 ns; + 2 → 11,437.184 ns.
  const LayerCost moe = MoeLayerCost(ToyModel(), ToyHardware(), {1024, 1024});
  BOOST_TEST(Near(moe.shared_experts.time_ns, 11437.184));
  BOOST_TEST(moe.dense_ffn.time_ns == 0.0);
  // Dense FFN 2048: FLOP 6 · 1024 · 1024 · 2048 = 12,884,901,888 → 25,769.8 ns; bytes
  // 3 · 1024 · 2048 + 3,145,728 = 9,437,184 → 18,874.4 ns; math-bound + 2 → 27,769.80 ns.
  const LayerCost dense = DenseLayerCost(ToyModel(), ToyHardware(), {1024, 1024});
  BOOST_TEST(Near(dense.dense_ffn.time_ns, 27769.803776));
  BOOST_TEST(dense.routed_moe.time_ns == 0.0);
}

BOOST_AUTO_TEST_CASE(dependencies_name_the_profile_constants_with_their_provenance) {
  std::vector<ProfileDependency> deps;
  MoeLayerCost(ToyModel(), ToyHardware(), {64, 64}, &deps);
  auto find = [&](const std::string& name) {
    for (const auto& d : deps) {
      if (d.name == name) return d.source;
    }
    BOOST_FAIL("missing dependency " << name);
    return Provenance::kSpec;
  };
  BOOST_TEST((find("flops_fp8") == Provenance::kSpec));
  BOOST_TEST((find("flops_bf16") == Provenance::kSpec));
  BOOST_TEST((find("compute_efficiency") == Provenance::kAssumed));
  BOOST_TEST((find("kernel_overhead_ns") == Provenance::kAssumed));
  BOOST_TEST((find("hbm_bw") == Provenance::kSpec));
  size_t flops_fp8 = 0;
  for (const auto& d : deps) flops_fp8 += d.name == "flops_fp8";
  BOOST_TEST(flops_fp8 == 1u);  // listed once
}

BOOST_AUTO_TEST_CASE(copy_estimates_per_schedule) {
  const ModelSpec model = ToyModel();
  const HardwareProfile hw = ToyHardware();
  // d = 4, 2/2: a rank pulls 6 experts × 3 MiB = 18,874,368 B → 188,743.68 ns at 100 B/ns.
  BOOST_TEST(PulledBytesPerLayer(model, 2) == 18874368u);
  ContentionConfig rotate;
  const CopyEstimate r = EstimateLayerCopy(model, hw, 4, 2, rotate);
  // rotate: 2 weights × 3 owners = 6 copies → + 6000 ns.
  BOOST_TEST(r.copies == 6);
  BOOST_TEST(Near(r.time_ns, 194743.68));
  // ascending: the shared first-owner egress costs d/2 = 2× the transfer.
  ContentionConfig ascending{ContentionMode::kAscending};
  BOOST_TEST(Near(EstimateLayerCopy(model, hw, 4, 2, ascending).time_ns, 377487.36 + 6000));
  // round_robin in 2 MiB pieces: 9 pieces, transfer at 50% concurrent-pull efficiency.
  ContentionConfig round_robin{ContentionMode::kRoundRobin, 2 * kMiB};
  const CopyEstimate rr = EstimateLayerCopy(model, hw, 4, 2, round_robin);
  BOOST_TEST(rr.copies == 9);
  BOOST_TEST(Near(rr.time_ns, 377487.36 + 9000));
  // The measured order on 4 GPUs: rotate < ascending < round_robin.
  BOOST_TEST(r.time_ns < EstimateLayerCopy(model, hw, 4, 2, ascending).time_ns);
  // Nothing to pull when a rank stores every expert.
  BOOST_TEST(EstimateLayerCopy(model, hw, 2, 8, rotate).time_ns == 0.0);
}

BOOST_AUTO_TEST_CASE(ascending_is_two_times_rotate_on_four_gpus_as_measured) {
  // HARDWARE.md: 4 H100s, 512 MiB from each of 3 peers: ascending 2.0× rotate. With the
  // per-copy latency negligible next to 1.5 GiB, the estimate gives the same ratio.
  ModelSpec model = ToyModel();
  model.num_experts = 4;
  model.weights = {{"w", 512 * kMiB}};
  HardwareProfile hw = ToyHardware();
  hw.peer_copy_bw.value = 398e9;
  hw.copy_latency_ns.value = 4000;
  const double rotate = EstimateLayerCopy(model, hw, 4, 1, {}).time_ns;
  const double ascending = EstimateLayerCopy(model, hw, 4, 1, {ContentionMode::kAscending}).time_ns;
  // rotate: 3 · 512 MiB / 398 B/ns = 4,046,892 ns + 3 · 4000 = 4.06 ms (measured 4.37 ms).
  BOOST_TEST(Near(rotate, 1610612736.0 / 398.0 + 12000, 1e-9));
  BOOST_TEST(ascending / rotate > 1.98);
  BOOST_TEST(ascending / rotate < 2.0);
}

BOOST_AUTO_TEST_CASE(dep_layer_all_to_all_and_sync) {
  // 64 tokens × top-2 = 128 products over d = 4.
  // dispatch 128 · 1024 · 1 B · 3/4 = 98,304 B / 200 B/ns = 491.52 ns + 1000.
  // combine 128 · 1024 · 2 B · 3/4 = 196,608 B → 983.04 ns + 1000.
  // MoE: the group's 256 tokens touch all 8 experts, 2 per rank: bytes 2 · 3 MiB + 393,216 =
  // 6,684,672 → 13,369.344 ns (memory-bound) + 2000 = 15,369.344 ns.
  // sync: the collectives wait for the slowest rank's attention + shared expert (the work before
  // dispatch) and move the largest rank's tokens. At 64 tokens, context 32.5: attention
  // projections 2 · 64 · 2,621,440 FLOP = 671.09 ns vs 2,621,440 + 64 · 1024 · 2 · 2 =
  // 2,883,584 B = 5,767.168 ns, + 2 kernels = 7,767.168 ns; core 64 · 4 · 8 · 32.5 · 128 FLOP
  // = 34.08 ns vs 64 · 2560 · 2 = 327,680 B = 655.36 ns, + 1 = 1,655.36 ns; shared expert
  // 3 · 1024 · 512 + 64 · 1024 · 3 = 1,769,472 B = 3,538.944 ns + 2 = 5,538.944 ns. Sum
  // 14,961.472 ns; (14,961.472 + 1,491.52 + 1,983.04) · 0.2 · sqrt(2 ln 4) (1.66510922)
  // = 6,139.601 ns.
  const DepLayerCost dep = DepMoeLayerCost(ToyModel(), ToyHardware(), {64, 64}, 4, 0.2);
  BOOST_TEST(Near(dep.dispatch_ns, 1491.52));
  BOOST_TEST(Near(dep.combine_ns, 1983.04));
  BOOST_TEST(Near(dep.routed_moe.time_ns, 15369.344));
  BOOST_TEST(Near(dep.sync_ns, 6139.601381, 1e-8));
  BOOST_TEST(Near(dep.total_moe_ns(), 1491.52 + 1983.04 + 15369.344 + 6139.601381));
  // One rank: no all-to-all, no imbalance.
  const DepLayerCost one = DepMoeLayerCost(ToyModel(), ToyHardware(), {64, 64}, 1, 0.2);
  BOOST_TEST(one.dispatch_ns == 0.0);
  BOOST_TEST(one.sync_ns == 0.0);
}

// Three MoE layers with nothing but the routed MoE (no attention, no shared expert, no dense
// layers): c = 53,118.08 ns per layer at 64 tokens (see above).
ModelSpec MoeOnly() {
  ModelSpec m = ToyModel();
  m.moe_layers = {0, 1, 2};
  m.num_layers = 3;
  m.attention.num_heads = 0;
  m.num_shared_experts = 0;
  return m;
}
constexpr double kMoeOnlyLayerNs = 53118.0795;

BOOST_AUTO_TEST_CASE(pipeline_copy_bound_waits_copy_minus_compute_every_layer_whatever_k) {
  // x = 100,000 ns > c. k = 2: copy 0 [0, x]; MoE 0 [x, x + c]; copy 1 [x, 2x] (primed);
  // MoE 1 [2x, 2x + c]; copy 2 waits free = x + c and the stream (2x): [2x, 3x]; MoE 2
  // [3x, 3x + c]. Forward 3x + c; stall x + 2 (x − c). k = 3 primes copy 2 too, but the copy
  // stream is serial, so nothing changes: k cannot beat the copy stream's pace.
  const double x = 100000;
  const double c = kMoeOnlyLayerNs;
  for (int64_t k : {2, 3, 4}) {
    const DwdpForwardEstimate est = DwdpForward(MoeOnly(), ToyHardware(), {64, 64}, k, x);
    BOOST_TEST(Near(est.forward_ns, 3 * x + c, 1e-7), "k=" << k);
    BOOST_TEST(Near(est.stall_ns, x + 2 * (x - c), 1e-7), "k=" << k);
  }
}

BOOST_AUTO_TEST_CASE(pipeline_compute_bound_exposes_only_the_first_copy) {
  // x = 20,000 ns < c. MoE 0 waits the primed copy: [x, x + c]; copy 1 [x, 2x] is ready;
  // copy 2 (k = 2) starts at free = x + c and ends x + c + x < x + 2c. Forward x + 3c, stall x.
  const double x = 20000;
  const double c = kMoeOnlyLayerNs;
  const DwdpForwardEstimate est = DwdpForward(MoeOnly(), ToyHardware(), {64, 64}, 2, x);
  BOOST_TEST(Near(est.forward_ns, x + 3 * c, 1e-7));
  BOOST_TEST(Near(est.stall_ns, x, 1e-7));
}

BOOST_AUTO_TEST_CASE(pipeline_dense_layers_hide_the_primed_copy) {
  // The toy's dense layer 0 (attention + FFN 2048 at 64 tokens) runs before MoE layer 1 while
  // the primed copy is in flight: a copy shorter than that dense layer plus layer 1's
  // attention and shared expert never stalls.
  const ModelSpec model = ToyModel();
  const HardwareProfile hw = ToyHardware();
  const LayerCost dense = DenseLayerCost(model, hw, {64, 64});
  const LayerCost moe = MoeLayerCost(model, hw, {64, 64});
  const double x = std::min(dense.total_ns() + moe.pre_moe_ns(), moe.total_ns()) * 0.9;
  const DwdpForwardEstimate est = DwdpForward(model, hw, {64, 64}, 2, x);
  BOOST_TEST(est.stall_ns == 0.0);
  BOOST_TEST(Near(est.forward_ns, dense.total_ns() + 3 * moe.total_ns()));
}

BOOST_AUTO_TEST_CASE(copy_slowdown_stretches_compute_by_the_overlapped_fraction) {
  // compute_slowdown 0.1 and a copy half as long as the layer: compute × (1 + 0.1 · 0.5).
  HardwareProfile hw = ToyHardware();
  hw.compute_slowdown.value = 0.1;
  const double c = kMoeOnlyLayerNs;
  const DwdpForwardEstimate est = DwdpForward(MoeOnly(), hw, {64, 64}, 2, c / 2);
  BOOST_TEST(Near(est.moe_compute_ns, c * 1.05, 1e-7));
  // x + 3 · 1.05 c: the first copy is exposed, the rest hide.
  BOOST_TEST(Near(est.forward_ns, c / 2 + 3 * 1.05 * c, 1e-7));
}

BOOST_AUTO_TEST_CASE(dep_forward_sums_layers) {
  // MoE-only model: DEP forward = 3 · (dispatch + MoE + sync + combine), sync from the
  // all-to-alls alone (no attention): (1,491.52 + 1,983.04) · 0.2 · 1.66510922 = 1,157.104 ns.
  const DepForwardEstimate dep = DepForward(MoeOnly(), ToyHardware(), {64, 64}, 4, 0.2);
  BOOST_TEST(Near(dep.forward_ns, 3 * (1491.52 + 1983.04 + 15369.344 + 1157.104380), 1e-8));
}

BOOST_AUTO_TEST_CASE(dep_sampled_equals_the_closed_form_without_imbalance) {
  // Every rank the same: the sampled forward is the closed form at tokens_cv = 0, exactly.
  const ModelSpec model = ToyModel();
  const HardwareProfile hw = ToyHardware();
  for (int64_t tokens : {64, 1024}) {
    const std::vector<ForwardShape> even(4, ForwardShape{tokens, 1024});
    BOOST_TEST(Near(DepForwardSampled(model, hw, even),
                    DepForward(model, hw, {tokens, 1024}, 4, 0.0).forward_ns, 1e-12));
  }
  // One rank with twice the tokens: everyone waits for its attention and its all-to-all, while
  // the experts do the mean rank's work; slower than the even split of the same tokens.
  std::vector<ForwardShape> uneven(4, ForwardShape{512, 1024});
  uneven[0].tokens_per_rank = 1024;
  uneven[1].tokens_per_rank = 256;
  uneven[2].tokens_per_rank = 256;
  BOOST_TEST(DepForwardSampled(model, hw, uneven) >
             DepForward(model, hw, {512, 1024}, 4, 0.0).forward_ns);
}

BOOST_AUTO_TEST_CASE(activation_bytes_per_token) {
  // 2 · 1024 · 2 = 4096 B of residual stream + max(attention (2·8 + 2·2) · 128 · 2 = 5120,
  // MoE 2 · (1024 + 2·512·2 + 512 + 1024·2) = 11,264) = 15,360 B per token.
  BOOST_TEST(Near(ActivationBytes(ToyModel(), {1024, 1024}), 15360.0 * 1024));
}

BOOST_AUTO_TEST_CASE(deepseek_v3_on_gb200_hides_the_copy_at_8k) {
  // Order-of-magnitude check against the public DWDP claim (it wins at long context): at 16K
  // tokens per rank and ISL 8K, d = 4 pulls 192 experts × 24,772,608 B = 4.756 GB per layer,
  // 6.2 ms at 765 GB/s, and the layer computes for longer than that.
  const ModelSpec model = testing::DeepSeekV3Nvfp4();
  const HardwareProfile hw = testing::Gb200();
  const CopyEstimate copy = EstimateLayerCopy(model, hw, 4, 64, {});
  BOOST_TEST(copy.bytes == 192ull * 24772608ull);
  BOOST_TEST(Near(copy.time_ns, 192.0 * 24772608 / 765.0 + 12 * 4000, 1e-9));
  const LayerCost layer = MoeLayerCost(model, hw, {16384, 8192});
  BOOST_TEST(layer.total_ns() > copy.time_ns);
  const DwdpForwardEstimate dwdp = DwdpForward(model, hw, {16384, 8192}, 2, copy.time_ns);
  BOOST_TEST(dwdp.stall_ns == 0.0);
  // …and loses at short context, where the copy cannot hide.
  const DwdpForwardEstimate short_ctx = DwdpForward(model, hw, {2048, 2048}, 2, copy.time_ns);
  const DepForwardEstimate dep = DepForward(model, hw, {2048, 2048}, 4, 0.2);
  BOOST_TEST(short_ctx.stall_ns > 0.0);
  BOOST_TEST(dep.forward_ns < short_ctx.forward_ns);
}

}  // namespace
}  // namespace dwdp
