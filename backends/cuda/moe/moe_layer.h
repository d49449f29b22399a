#pragma once

// MoeLayer: one routed-MoE layer on the current CUDA device, BF16, as an engine runs it:
//
//   router (seeded logits, top-k, softmax; core/moe/routing.h)
//   -> permutation (per expert, entries in ascending (token, j) order) + gather
//   -> GEMM1  H_e = X_e . W13_e^T      (W13 [E, 2 * inter, hidden]: gate rows, then up rows)
//   -> A_e = silu(H_e[:, :inter]) * H_e[:, inter:]   (fp32 math, bf16 result)
//   -> GEMM2  Y_e = A_e . W2_e^T       (W2 [E, hidden, inter])
//   -> un-permute + combine  out[t] = sum_j weight[t, j] * Y[row(t, j)]  (fp32, j ascending)
//
// The weights are two device addresses of [num_experts, ...] tensors per call (composite VMM
// ranges or plain allocations: the layer does not care), so one MoeLayer serves every layer of
// a shape. GEMMs are cuBLAS (BF16 in and out, fp32 compute) with one of several strategies.
//
// Determinism: for a given plan, strategy and weight contents the output is the same bit for bit
// whatever the weights' addresses (when they are 256-byte aligned, which Enqueue requires), and
// from run to run: every cuBLAS handle has its own stream and fixed workspace, expert-to-stream
// assignment is fixed, and the kernels around the GEMMs use no order-dependent atomics.
// Different strategies may differ in the last bits (different GEMM kernels).
//
// Streams: everything is enqueued on the caller's stream (plus the layer's own side streams for
// kPerExpertGemm, forked from and joined back into it with events). Calls that enqueue work on
// one layer must be ordered (one stream, or the caller's own events): they share its buffers.
// Setup calls (Create, PlanRouting, Reserve, Tune, Compare, CheckRouting, ReadRouting)
// synchronise; the Enqueue family never does.
//
// No CUDA headers here: streams are void* (cudaStream_t), device addresses uint64_t.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dwdp::cuda::moe {

struct MoeShape {
  int64_t num_experts = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t top_k = 0;
};

// OK when the layer can run the shape: 1 <= top_k <= num_experts <= 1024, top_k <= 16, hidden
// and intermediate positive multiples of 8 (16-byte rows).
absl::Status ValidateShape(const MoeShape& shape);

// BF16 bytes of one expert's slice of w13 ([2 * inter, hidden]) and of w2 ([hidden, inter]).
uint64_t W13ExpertBytes(const MoeShape& shape);
uint64_t W2ExpertBytes(const MoeShape& shape);
// Useful floating-point operations of the two GEMMs for `tokens` tokens (2 per multiply-add).
double ExpertGemmFlops(const MoeShape& shape, int64_t tokens);

enum class GemmStrategy {
  kAuto,                  // the strategy Tune chose for the plan's token count, else a default
  kGroupedBatched,        // cublasGemmGroupedBatchedEx, one problem per expert with tokens
  kPaddedStridedBatched,  // cublasGemmStridedBatchedEx over all experts, padded to the capacity
  kPerExpertGemm,         // cublasGemmEx per expert on the layer's side streams
};
inline constexpr GemmStrategy kConcreteStrategies[] = {GemmStrategy::kGroupedBatched,
                                                       GemmStrategy::kPaddedStridedBatched,
                                                       GemmStrategy::kPerExpertGemm};
// "auto", "grouped", "padded", "per-expert".
absl::string_view GemmStrategyName(GemmStrategy strategy);
absl::StatusOr<GemmStrategy> ParseGemmStrategy(absl::string_view name);

// The per-expert token counts of (seed, tokens), known on the host before anything is enqueued:
// cuBLAS takes GEMM problem sizes on the host.
struct RoutingPlan {
  uint64_t seed = 0;
  int64_t tokens = 0;
  std::vector<int32_t> expert_counts;  // [num_experts], summing to tokens * top_k

  int32_t max_count() const;
};

struct MoeLayerOptions {
  // Side streams (each with its own cuBLAS handle and workspace) of kPerExpertGemm.
  int expert_streams = 4;
  // cuBLAS workspace per handle (the main one and one per side stream); 32 MiB is what cuBLAS
  // recommends for Hopper.
  uint64_t workspace_bytes = 32ull << 20;
};

// Where a call reads its input and writes its output; 0 means the layer's own buffers
// (input(), output()). Caller buffers hold [tokens, hidden] bf16, 16-byte aligned.
struct MoeIo {
  uint64_t input = 0;
  uint64_t output = 0;
};

struct Mismatch {
  uint64_t index = 0;  // the first element at which the buffers differ
  uint16_t a = 0;      // its bf16 bits in each
  uint16_t b = 0;
};

// The routing state of the last EnqueueRouting, read back (tests, diagnostics).
struct RoutingSnapshot {
  std::vector<int32_t> experts;    // [tokens * top_k], best first per token
  std::vector<float> weights;      // [tokens * top_k]
  std::vector<int32_t> positions;  // [tokens * top_k], index within the expert's entries
  std::vector<int32_t> rows;       // [tokens * top_k], row of the permuted layout (-1: none)
  std::vector<int32_t> counts;     // [num_experts]
};

struct StrategyTiming {
  GemmStrategy strategy = GemmStrategy::kAuto;
  absl::Status status;  // why it could not run, when it could not
  double ms = 0;        // mean whole-layer time
};

class MoeLayer {
 public:
  // Uses the current device. Allocates what max_tokens needs in the packed layout (the padded
  // one grows in PlanRouting / Reserve) and fills input() with InputValue(seed 0).
  static absl::StatusOr<std::unique_ptr<MoeLayer>> Create(const MoeShape& shape, int64_t max_tokens,
                                                          const MoeLayerOptions& options = {});

  MoeLayer(const MoeLayer&) = delete;
  MoeLayer& operator=(const MoeLayer&) = delete;
  // Waits for the layer's work to finish, then frees everything it created.
  ~MoeLayer();

  const MoeShape& shape() const { return shape_; }
  int64_t max_tokens() const { return max_tokens_; }

  // Runs the router and the per-expert count on the GPU and brings the counts to the host;
  // reserves what the plan needs (synchronous, setup time).
  absl::StatusOr<RoutingPlan> PlanRouting(uint64_t seed, int64_t tokens, void* stream);
  // Grows the permuted buffers to the plan's padded capacity if they are smaller (synchronous:
  // it may free and allocate). Plans made by PlanRouting are reserved already.
  absl::Status Reserve(const RoutingPlan& plan);

  // Times every strategy on the plan (2 warm-ups, mean of 5 whole-layer runs), remembers the
  // fastest for the plan's token count (kAuto then uses it) and returns it. Synchronous.
  absl::StatusOr<GemmStrategy> Tune(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                                    void* stream, std::vector<StrategyTiming>* timings = nullptr);
  // What kAuto runs for `tokens`: the tuned choice, else padded when experts average at least
  // 128 entries, else grouped.
  GemmStrategy Resolve(GemmStrategy strategy, int64_t tokens) const;

  // input()[t, h] = InputValue(input_seed, t, h) for t < tokens (enqueued).
  absl::Status GenerateInput(uint64_t input_seed, int64_t tokens, void* stream);

  // The whole layer: EnqueueRouting + EnqueueExperts + EnqueueCombine. w13 and w2 are device
  // addresses of [num_experts, 2 * inter, hidden] and [num_experts, hidden, inter] BF16,
  // 256-byte aligned. No host synchronisation.
  absl::Status Enqueue(const RoutingPlan& plan, uint64_t w13, uint64_t w2, void* stream,
                       GemmStrategy strategy = GemmStrategy::kAuto, const MoeIo& io = {});

  // The stages, for callers that time or overlap them. Routing recomputes the plan's routing on
  // the GPU (its counts must be the plan's: CheckRouting says when they were not) and lays the
  // tokens out for the strategy; Experts runs GEMM1, SiLU * up, GEMM2 on that layout (the same
  // strategy, resolved the same way); Combine writes the output.
  absl::Status EnqueueRouting(const RoutingPlan& plan, void* stream,
                              GemmStrategy strategy = GemmStrategy::kAuto, uint64_t input = 0);
  absl::Status EnqueueExperts(const RoutingPlan& plan, uint64_t w13, uint64_t w2, void* stream,
                              GemmStrategy strategy = GemmStrategy::kAuto);
  absl::Status EnqueueCombine(const RoutingPlan& plan, void* stream, uint64_t output = 0);

  // The expert GEMMs (grouped strategy, packed layout) on rows a caller laid out by expert, as
  // the DEP baseline does with the tokens that arrived by all-to-all: rows [o_e, o_e + c_e) of
  // permuted_input() belong to expert e, o_e the sum of the counts before e; the outputs land in
  // the same rows of permuted_output(). plan.expert_counts are the c_e, plan.tokens * top_k their
  // sum (a layer of top_k 1 takes plan.tokens rows). Reserve(plan) first when it needs more rows
  // than max_tokens * top_k. Enqueued; invalidates the routing of the last EnqueueRouting.
  absl::Status EnqueuePermutedExperts(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                                      void* stream);
  uint64_t permuted_input() const;   // [rows, hidden] bf16
  uint64_t permuted_output() const;  // [rows, hidden] bf16

  uint64_t input() const;   // [max_tokens, hidden] bf16
  uint64_t output() const;  // [max_tokens, hidden] bf16

  // FailedPrecondition when a routing enqueued since the last check found counts other than its
  // plan's (a plan of another seed or token count) or an entry without a row; then clears the
  // flags. Synchronous.
  absl::Status CheckRouting(void* stream);
  // The routing state left by the last EnqueueRouting of `tokens` tokens. Synchronous.
  absl::StatusOr<RoutingSnapshot> ReadRouting(int64_t tokens, void* stream);

  // Synchronous bitwise comparison of two bf16 buffers: nullopt when equal, else the first index
  // that differs and both values there.
  absl::StatusOr<std::optional<Mismatch>> Compare(uint64_t a, uint64_t b, uint64_t elements,
                                                  void* stream);

  // Device memory the layer holds now (buffers and workspaces).
  uint64_t device_bytes() const;

 private:
  struct Impl;
  MoeLayer(const MoeShape& shape, int64_t max_tokens, std::unique_ptr<Impl> impl);

  MoeShape shape_;
  int64_t max_tokens_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dwdp::cuda::moe
