#include "backends/cuda/moe/moe_layer.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "backends/cuda/cuda_error.h"
#include "backends/cuda/moe/moe_kernels.h"
#include "core/moe/routing.h"

namespace dwdp::cuda::moe {
namespace {

constexpr uint64_t kBf16 = 2;
constexpr uint64_t kWeightAlignment = 256;
constexpr uint64_t kMinWorkspaceBytes = 64 << 10;
constexpr int kMaxExpertStreams = 64;
constexpr int kTuneWarmups = 2;
constexpr int kTuneRuns = 5;
// kAuto without a tuned choice: padded once experts average this many entries.
constexpr int64_t kPaddedDefaultMinAverage = 128;

cudaStream_t AsStream(void* stream) { return static_cast<cudaStream_t>(stream); }

absl::Status CublasStatus(cublasStatus_t status, absl::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      code = absl::StatusCode::kResourceExhausted;
      break;
    case CUBLAS_STATUS_INVALID_VALUE:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
      code = absl::StatusCode::kUnimplemented;
      break;
    default:
      break;
  }
  const char* name = cublasGetStatusName(status);
  return absl::Status(
      code,
      absl::StrCat(what, ": ", name != nullptr ? name : absl::StrCat("cublasStatus ", status)));
}

// ---------------------------------------------------------------------------------------------
// RAII for device memory, streams, events and cuBLAS handles.

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;

  static absl::StatusOr<DeviceBuffer> Allocate(uint64_t bytes, absl::string_view what) {
    void* p = nullptr;
    // Never zero bytes: cudaMalloc may hand out null for that, and every buffer has an address.
    const uint64_t size = std::max<uint64_t>(bytes, 256);
    if (absl::Status s = RuntimeStatus(
            cudaMalloc(&p, size),
            [&] { return absl::StrFormat("MoeLayer: allocating %s (%d bytes)", what, size); });
        !s.ok()) {
      return s;
    }
    DeviceBuffer buffer;
    buffer.memory_.reset(p);
    buffer.bytes_ = size;
    return buffer;
  }

  uint64_t address() const { return reinterpret_cast<uint64_t>(memory_.get()); }
  uint64_t bytes() const { return memory_ ? bytes_ : 0; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(memory_.get());
  }
  void Reset() {
    memory_.reset();
    bytes_ = 0;
  }

 private:
  std::unique_ptr<void, DeviceFree> memory_;
  uint64_t bytes_ = 0;
};

struct StreamDestroy {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
using StreamPtr = std::unique_ptr<CUstream_st, StreamDestroy>;

struct EventDestroy {
  void operator()(cudaEvent_t e) const { cudaEventDestroy(e); }
};
using EventPtr = std::unique_ptr<CUevent_st, EventDestroy>;

struct HandleDestroy {
  void operator()(cublasHandle_t h) const { cublasDestroy(h); }
};
using HandlePtr = std::unique_ptr<cublasContext, HandleDestroy>;

absl::StatusOr<EventPtr> CreateEvent(bool timing, absl::string_view what) {
  cudaEvent_t event = nullptr;
  if (absl::Status s = RuntimeStatus(
          cudaEventCreateWithFlags(&event, timing ? cudaEventDefault : cudaEventDisableTiming),
          [&] { return absl::StrCat("MoeLayer: creating ", what); });
      !s.ok()) {
    return s;
  }
  return EventPtr(event);
}

absl::StatusOr<HandlePtr> CreateHandle(cudaStream_t stream, const DeviceBuffer& workspace) {
  cublasHandle_t handle = nullptr;
  if (absl::Status s = CublasStatus(cublasCreate(&handle), "MoeLayer: cublasCreate"); !s.ok()) {
    return s;
  }
  HandlePtr owned(handle);
  // cublasSetStream resets the workspace to cuBLAS's pool, so the workspace comes second.
  if (absl::Status s = CublasStatus(cublasSetStream(handle, stream), "MoeLayer: cublasSetStream");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CublasStatus(cublasSetWorkspace(handle, workspace.as<void>(), workspace.bytes()),
                       "MoeLayer: cublasSetWorkspace");
      !s.ok()) {
    return s;
  }
  return owned;
}

absl::Status Launched(int error, absl::string_view kernel) {
  return RuntimeStatus(error, [&] { return absl::StrCat("MoeLayer: launching ", kernel); });
}

bool IsPadded(GemmStrategy strategy) { return strategy == GemmStrategy::kPaddedStridedBatched; }

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::Status ValidateShape(const MoeShape& shape) {
  if (shape.num_experts < 1 || shape.num_experts > dwdp::moe::kMaxExperts) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MoE shape: num_experts %d is outside [1, %d]", shape.num_experts, dwdp::moe::kMaxExperts));
  }
  if (shape.top_k < 1 || shape.top_k > dwdp::moe::kMaxTopK || shape.top_k > shape.num_experts) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoE shape: top_k %d is outside [1, min(%d, num_experts %d)]", shape.top_k,
                        dwdp::moe::kMaxTopK, shape.num_experts));
  }
  if (shape.hidden < 8 || shape.hidden % 8 != 0 || shape.intermediate < 8 ||
      shape.intermediate % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MoE shape: hidden %d and intermediate %d must be positive multiples of 8 (16-byte rows)",
        shape.hidden, shape.intermediate));
  }
  if (shape.hidden > (1 << 20) || shape.intermediate > (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoE shape: hidden %d or intermediate %d is beyond 2^20", shape.hidden,
                        shape.intermediate));
  }
  return absl::OkStatus();
}

uint64_t W13ExpertBytes(const MoeShape& shape) {
  return 2 * static_cast<uint64_t>(shape.intermediate) * static_cast<uint64_t>(shape.hidden) *
         kBf16;
}

uint64_t W2ExpertBytes(const MoeShape& shape) {
  return static_cast<uint64_t>(shape.hidden) * static_cast<uint64_t>(shape.intermediate) * kBf16;
}

double ExpertGemmFlops(const MoeShape& shape, int64_t tokens) {
  // Per entry: GEMM1 2 * (2 * inter * hidden), GEMM2 2 * (hidden * inter).
  return 6.0 * static_cast<double>(tokens) * static_cast<double>(shape.top_k) *
         static_cast<double>(shape.hidden) * static_cast<double>(shape.intermediate);
}

absl::string_view GemmStrategyName(GemmStrategy strategy) {
  switch (strategy) {
    case GemmStrategy::kAuto:
      return "auto";
    case GemmStrategy::kGroupedBatched:
      return "grouped";
    case GemmStrategy::kPaddedStridedBatched:
      return "padded";
    case GemmStrategy::kPerExpertGemm:
      return "per-expert";
  }
  return "unknown";
}

absl::StatusOr<GemmStrategy> ParseGemmStrategy(absl::string_view name) {
  for (GemmStrategy s : {GemmStrategy::kAuto, GemmStrategy::kGroupedBatched,
                         GemmStrategy::kPaddedStridedBatched, GemmStrategy::kPerExpertGemm}) {
    if (name == GemmStrategyName(s)) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown GEMM strategy \"", name, "\" (auto, grouped, padded or per-expert)"));
}

int32_t RoutingPlan::max_count() const {
  int32_t largest = 0;
  for (int32_t c : expert_counts) largest = std::max(largest, c);
  return largest;
}

// ---------------------------------------------------------------------------------------------

struct MoeLayer::Impl {
  MoeShape shape;
  int64_t max_tokens = 0;
  MoeLayerOptions options;

  // [max_tokens, hidden] input and output; [max_tokens * top_k] routing state.
  DeviceBuffer x, out, experts, weights, positions, entry_rows;
  // [num_experts]: counts, layout offsets, experts with tokens in order.
  DeviceBuffer counts, offsets, problem_experts;
  DeviceBuffer status;      // uint32 [2]: sticky flags, this call's layout flags
  DeviceBuffer difference;  // uint64: Compare's first differing index
  DeviceBuffer pointers;    // 6 arrays of num_experts pointers (grouped GEMMs)

  // The permuted layout: [rows, hidden], [rows, 2 * inter], [rows, inter], [rows, hidden].
  int64_t rows = 0;
  DeviceBuffer xperm, h1, act, y;

  DeviceBuffer main_workspace;
  HandlePtr main_handle;
  std::vector<DeviceBuffer> side_workspaces;
  std::vector<StreamPtr> side_streams;
  std::vector<HandlePtr> side_handles;
  EventPtr fork;
  std::vector<EventPtr> joins;

  std::map<int64_t, GemmStrategy> tuned;

  // What the last EnqueueRouting laid out, so that the later stages can check they match it.
  struct Routed {
    bool valid = false;
    uint64_t seed = 0;
    int64_t tokens = 0;
    int32_t capacity = 0;  // 0: packed
  } routed;

  // Host arrays of the grouped GEMMs, reused across calls.
  std::vector<cublasOperation_t> trans_t, trans_n;
  std::vector<int> m1, m2, n, k1, k2, ld_hidden, ld_inter, ld_h1, group_sizes;
  std::vector<float> alphas, betas;

  ~Impl() {
    // Work still queued on a caller's stream may use these buffers; cudaFree would wait for it
    // anyway, this makes the order explicit before handles and streams go.
    cudaDeviceSynchronize();
  }

  int32_t E() const { return static_cast<int32_t>(shape.num_experts); }
  int32_t K() const { return static_cast<int32_t>(shape.top_k); }

  uint64_t DeviceBytes() const {
    uint64_t total = 0;
    for (const DeviceBuffer* b : {&x, &out, &experts, &weights, &positions, &entry_rows, &counts,
                                  &offsets, &problem_experts, &status, &difference, &pointers,
                                  &xperm, &h1, &act, &y, &main_workspace}) {
      total += b->bytes();
    }
    for (const DeviceBuffer& b : side_workspaces) total += b.bytes();
    return total;
  }

  absl::Status AllocateRows(int64_t new_rows) {
    const uint64_t r = static_cast<uint64_t>(new_rows);
    const uint64_t hidden = static_cast<uint64_t>(shape.hidden);
    const uint64_t inter = static_cast<uint64_t>(shape.intermediate);
    auto xperm_or = DeviceBuffer::Allocate(r * hidden * kBf16, "the permuted input");
    if (!xperm_or.ok()) return xperm_or.status();
    auto h1_or = DeviceBuffer::Allocate(r * 2 * inter * kBf16, "the GEMM1 output");
    if (!h1_or.ok()) return h1_or.status();
    auto act_or = DeviceBuffer::Allocate(r * inter * kBf16, "the activations");
    if (!act_or.ok()) return act_or.status();
    auto y_or = DeviceBuffer::Allocate(r * hidden * kBf16, "the GEMM2 output");
    if (!y_or.ok()) return y_or.status();
    xperm = std::move(*xperm_or);
    h1 = std::move(*h1_or);
    act = std::move(*act_or);
    y = std::move(*y_or);
    rows = new_rows;
    return absl::OkStatus();
  }

  absl::Status ValidatePlan(const RoutingPlan& plan) const {
    if (plan.tokens < 0 || plan.tokens > max_tokens) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "MoeLayer: the plan has %d tokens, outside [0, max_tokens %d]", plan.tokens, max_tokens));
    }
    if (static_cast<int64_t>(plan.expert_counts.size()) != shape.num_experts) {
      return absl::InvalidArgumentError(
          absl::StrFormat("MoeLayer: the plan has %d expert counts for %d experts",
                          plan.expert_counts.size(), shape.num_experts));
    }
    int64_t sum = 0;
    for (int32_t c : plan.expert_counts) {
      if (c < 0) return absl::InvalidArgumentError("MoeLayer: the plan has a negative count");
      sum += c;
    }
    if (sum != plan.tokens * shape.top_k) {
      return absl::InvalidArgumentError(
          absl::StrFormat("MoeLayer: the plan's counts sum to %d, not tokens * top_k = %d", sum,
                          plan.tokens * shape.top_k));
    }
    return absl::OkStatus();
  }

  static int64_t RowsFor(const RoutingPlan& plan, const MoeShape& shape, bool padded) {
    return padded ? shape.num_experts * static_cast<int64_t>(plan.max_count())
                  : plan.tokens * shape.top_k;
  }

  absl::Status CheckRows(const RoutingPlan& plan, bool padded) const {
    const int64_t needed = RowsFor(plan, shape, padded);
    if (needed > rows) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "MoeLayer: the plan needs %d rows in the %s layout, the layer has %d: call "
          "Reserve(plan) at setup",
          needed, padded ? "padded" : "packed", rows));
    }
    return absl::OkStatus();
  }

  absl::Status CheckRouted(const RoutingPlan& plan, std::optional<bool> padded,
                           absl::string_view stage) const {
    const int32_t capacity = padded.has_value() && *padded ? plan.max_count() : 0;
    if (!routed.valid || routed.seed != plan.seed || routed.tokens != plan.tokens ||
        (padded.has_value() && routed.capacity != capacity)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "MoeLayer: ", stage,
          " needs an EnqueueRouting of the same plan (and, for the experts, the same layout) "
          "before it"));
    }
    return absl::OkStatus();
  }

  // The main handle follows the caller's stream; its workspace goes back on after every
  // cublasSetStream.
  absl::Status BindMainHandle(cudaStream_t stream) {
    if (absl::Status s =
            CublasStatus(cublasSetStream(main_handle.get(), stream), "MoeLayer: cublasSetStream");
        !s.ok()) {
      return s;
    }
    return CublasStatus(
        cublasSetWorkspace(main_handle.get(), main_workspace.as<void>(), main_workspace.bytes()),
        "MoeLayer: cublasSetWorkspace");
  }

  absl::Status SiluMul(cudaStream_t stream, int64_t used_rows) {
    return Launched(
        LaunchSiluMul(stream, h1.as<uint16_t>(), used_rows, shape.intermediate, act.as<uint16_t>()),
        "silu * up");
  }

  absl::Status GroupedGemms(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                            cudaStream_t stream) {
    const int hidden = static_cast<int>(shape.hidden);
    const int inter = static_cast<int>(shape.intermediate);
    n.clear();
    for (int32_t c : plan.expert_counts) {
      if (c > 0) n.push_back(c);
    }
    const int problems = static_cast<int>(n.size());
    auto fill = [problems](auto& v, auto value) { v.assign(static_cast<size_t>(problems), value); };
    fill(trans_t, CUBLAS_OP_T);
    fill(trans_n, CUBLAS_OP_N);
    fill(m1, 2 * inter);
    fill(k1, hidden);
    fill(m2, hidden);
    fill(k2, inter);
    fill(ld_hidden, hidden);
    fill(ld_inter, inter);
    fill(ld_h1, 2 * inter);
    fill(group_sizes, 1);
    fill(alphas, 1.0f);
    fill(betas, 0.0f);

    const uint64_t e = static_cast<uint64_t>(shape.num_experts);
    void** p = pointers.as<void*>();
    GroupedPointers arrays;
    arrays.a1 = const_cast<const void**>(p);
    arrays.b1 = const_cast<const void**>(p + e);
    arrays.c1 = p + 2 * e;
    arrays.a2 = const_cast<const void**>(p + 3 * e);
    arrays.b2 = const_cast<const void**>(p + 4 * e);
    arrays.c2 = p + 5 * e;
    GroupedBases bases;
    bases.w13 = w13;
    bases.w2 = w2;
    bases.w13_expert_bytes = W13ExpertBytes(shape);
    bases.w2_expert_bytes = W2ExpertBytes(shape);
    bases.xperm = xperm.address();
    bases.h1 = h1.address();
    bases.act = act.address();
    bases.y = y.address();
    bases.hidden = shape.hidden;
    bases.inter = shape.intermediate;
    if (absl::Status s = Launched(
            LaunchGroupedPointers(stream, bases, problem_experts.as<int32_t>(),
                                  offsets.as<int32_t>(), problems, status.as<uint32_t>(), arrays),
            "the grouped GEMM pointers");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = BindMainHandle(stream); !s.ok()) return s;
    // Row-major [rows, k] activations times row-major [n, k] weights, transposed: cuBLAS's
    // column-major C^T = W . X^T, "TN" with M = n, N = rows, K = k.
    if (absl::Status s = CublasStatus(
            cublasGemmGroupedBatchedEx(main_handle.get(), trans_t.data(), trans_n.data(), m1.data(),
                                       n.data(), k1.data(), alphas.data(), arrays.a1, CUDA_R_16BF,
                                       ld_hidden.data(), arrays.b1, CUDA_R_16BF, ld_hidden.data(),
                                       betas.data(), arrays.c1, CUDA_R_16BF, ld_h1.data(), problems,
                                       group_sizes.data(), CUBLAS_COMPUTE_32F),
            absl::StrFormat("MoeLayer: GEMM1 (cublasGemmGroupedBatchedEx, %d problems)", problems));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = SiluMul(stream, plan.tokens * shape.top_k); !s.ok()) return s;
    return CublasStatus(
        cublasGemmGroupedBatchedEx(main_handle.get(), trans_t.data(), trans_n.data(), m2.data(),
                                   n.data(), k2.data(), alphas.data(), arrays.a2, CUDA_R_16BF,
                                   ld_inter.data(), arrays.b2, CUDA_R_16BF, ld_inter.data(),
                                   betas.data(), arrays.c2, CUDA_R_16BF, ld_hidden.data(), problems,
                                   group_sizes.data(), CUBLAS_COMPUTE_32F),
        absl::StrFormat("MoeLayer: GEMM2 (cublasGemmGroupedBatchedEx, %d problems)", problems));
  }

  absl::Status PaddedGemms(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                           cudaStream_t stream) {
    const int hidden = static_cast<int>(shape.hidden);
    const int inter = static_cast<int>(shape.intermediate);
    const int capacity = plan.max_count();
    const int batch = E();
    const long long cap = capacity;
    const float alpha = 1.0f;
    const float beta = 0.0f;
    if (absl::Status s = BindMainHandle(stream); !s.ok()) return s;
    if (absl::Status s = CublasStatus(
            cublasGemmStridedBatchedEx(main_handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, 2 * inter,
                                       capacity, hidden, &alpha, reinterpret_cast<const void*>(w13),
                                       CUDA_R_16BF, hidden, 2LL * inter * hidden, xperm.as<void>(),
                                       CUDA_R_16BF, hidden, cap * hidden, &beta, h1.as<void>(),
                                       CUDA_R_16BF, 2 * inter, cap * 2 * inter, batch,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            absl::StrFormat("MoeLayer: GEMM1 (cublasGemmStridedBatchedEx, %d x capacity %d)", batch,
                            capacity));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = SiluMul(stream, static_cast<int64_t>(batch) * capacity); !s.ok()) {
      return s;
    }
    return CublasStatus(
        cublasGemmStridedBatchedEx(main_handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, hidden, capacity,
                                   inter, &alpha, reinterpret_cast<const void*>(w2), CUDA_R_16BF,
                                   inter, 1LL * hidden * inter, act.as<void>(), CUDA_R_16BF, inter,
                                   cap * inter, &beta, y.as<void>(), CUDA_R_16BF, hidden,
                                   cap * hidden, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        absl::StrFormat("MoeLayer: GEMM2 (cublasGemmStridedBatchedEx, %d x capacity %d)", batch,
                        capacity));
  }

  absl::Status Fork(cudaStream_t stream) {
    if (absl::Status s = RuntimeStatus(cudaEventRecord(fork.get(), stream),
                                       "MoeLayer: recording the fork event");
        !s.ok()) {
      return s;
    }
    for (const StreamPtr& side : side_streams) {
      if (absl::Status s = RuntimeStatus(cudaStreamWaitEvent(side.get(), fork.get(), 0),
                                         "MoeLayer: side stream waiting for the fork");
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Join(cudaStream_t stream) {
    for (size_t i = 0; i < side_streams.size(); ++i) {
      if (absl::Status s = RuntimeStatus(cudaEventRecord(joins[i].get(), side_streams[i].get()),
                                         "MoeLayer: recording a join event");
          !s.ok()) {
        return s;
      }
      if (absl::Status s = RuntimeStatus(cudaStreamWaitEvent(stream, joins[i].get(), 0),
                                         "MoeLayer: waiting for a side stream");
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  // One GEMM per expert with tokens, in the packed layout, on side stream (p mod streams) for
  // the p-th such expert: a fixed assignment, each stream with its own handle and workspace.
  absl::Status PerExpertPass(const RoutingPlan& plan, uint64_t weights_base, int gemm) {
    const int hidden = static_cast<int>(shape.hidden);
    const int inter = static_cast<int>(shape.intermediate);
    const float alpha = 1.0f;
    const float beta = 0.0f;
    const uint64_t expert_bytes = gemm == 1 ? W13ExpertBytes(shape) : W2ExpertBytes(shape);
    int64_t row = 0;
    size_t p = 0;
    for (int32_t e = 0; e < E(); ++e) {
      const int count = plan.expert_counts[static_cast<size_t>(e)];
      if (count == 0) continue;
      cublasHandle_t handle = side_handles[p % side_handles.size()].get();
      ++p;
      const void* weights_e =
          reinterpret_cast<const void*>(weights_base + static_cast<uint64_t>(e) * expert_bytes);
      const uint64_t r = static_cast<uint64_t>(row);
      cublasStatus_t status;
      if (gemm == 1) {
        status = cublasGemmEx(
            handle, CUBLAS_OP_T, CUBLAS_OP_N, 2 * inter, count, hidden, &alpha, weights_e,
            CUDA_R_16BF, hidden, xperm.as<uint16_t>() + r * static_cast<uint64_t>(hidden),
            CUDA_R_16BF, hidden, &beta, h1.as<uint16_t>() + r * 2 * static_cast<uint64_t>(inter),
            CUDA_R_16BF, 2 * inter, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      } else {
        status = cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, hidden, count, inter, &alpha,
                              weights_e, CUDA_R_16BF, inter,
                              act.as<uint16_t>() + r * static_cast<uint64_t>(inter), CUDA_R_16BF,
                              inter, &beta, y.as<uint16_t>() + r * static_cast<uint64_t>(hidden),
                              CUDA_R_16BF, hidden, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      }
      if (absl::Status s = CublasStatus(
              status, absl::StrFormat("MoeLayer: GEMM%d of expert %d (cublasGemmEx, %d rows)", gemm,
                                      e, count));
          !s.ok()) {
        return s;
      }
      row += count;
    }
    return absl::OkStatus();
  }

  absl::Status PerExpertGemms(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                              cudaStream_t stream) {
    if (absl::Status s = Fork(stream); !s.ok()) return s;
    if (absl::Status s = PerExpertPass(plan, w13, 1); !s.ok()) return s;
    if (absl::Status s = Join(stream); !s.ok()) return s;
    if (absl::Status s = SiluMul(stream, plan.tokens * shape.top_k); !s.ok()) return s;
    if (absl::Status s = Fork(stream); !s.ok()) return s;
    if (absl::Status s = PerExpertPass(plan, w2, 2); !s.ok()) return s;
    return Join(stream);
  }
};

// ---------------------------------------------------------------------------------------------

MoeLayer::MoeLayer(const MoeShape& shape, int64_t max_tokens, std::unique_ptr<Impl> impl)
    : shape_(shape), max_tokens_(max_tokens), impl_(std::move(impl)) {}

MoeLayer::~MoeLayer() = default;

absl::StatusOr<std::unique_ptr<MoeLayer>> MoeLayer::Create(const MoeShape& shape,
                                                           int64_t max_tokens,
                                                           const MoeLayerOptions& options) {
  if (absl::Status s = ValidateShape(shape); !s.ok()) return s;
  if (max_tokens < 1 || max_tokens * shape.top_k > std::numeric_limits<int32_t>::max() ||
      max_tokens * std::max(shape.hidden, 2 * shape.intermediate) >
          std::numeric_limits<int64_t>::max() / 16) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoeLayer: max_tokens %d is outside [1, 2^31 / top_k]", max_tokens));
  }
  if (options.expert_streams < 1 || options.expert_streams > kMaxExpertStreams) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoeLayer: expert_streams %d is outside [1, %d]", options.expert_streams,
                        kMaxExpertStreams));
  }
  if (options.workspace_bytes < kMinWorkspaceBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoeLayer: workspace_bytes %d is below the %d cuBLAS needs",
                        options.workspace_bytes, kMinWorkspaceBytes));
  }

  auto impl = std::make_unique<Impl>();
  impl->shape = shape;
  impl->max_tokens = max_tokens;
  impl->options = options;
  const uint64_t tokens = static_cast<uint64_t>(max_tokens);
  const uint64_t entries = tokens * static_cast<uint64_t>(shape.top_k);
  const uint64_t experts = static_cast<uint64_t>(shape.num_experts);
  const uint64_t hidden = static_cast<uint64_t>(shape.hidden);
  struct Allocation {
    DeviceBuffer* buffer;
    uint64_t bytes;
    const char* what;
  };
  const Allocation allocations[] = {
      {&impl->x, tokens * hidden * kBf16, "the input"},
      {&impl->out, tokens * hidden * kBf16, "the output"},
      {&impl->experts, entries * 4, "the routed experts"},
      {&impl->weights, entries * 4, "the router weights"},
      {&impl->positions, entries * 4, "the routed positions"},
      {&impl->entry_rows, entries * 4, "the routed rows"},
      {&impl->counts, experts * 4, "the expert counts"},
      {&impl->offsets, experts * 4, "the expert offsets"},
      {&impl->problem_experts, experts * 4, "the grouped problems"},
      {&impl->status, 2 * sizeof(uint32_t), "the routing status"},
      {&impl->difference, sizeof(uint64_t), "the comparison result"},
      {&impl->pointers, 6 * experts * sizeof(void*), "the grouped GEMM pointers"},
      {&impl->main_workspace, options.workspace_bytes, "the cuBLAS workspace"},
  };
  for (const Allocation& a : allocations) {
    auto buffer = DeviceBuffer::Allocate(a.bytes, a.what);
    if (!buffer.ok()) return buffer.status();
    *a.buffer = std::move(*buffer);
  }
  if (absl::Status s = RuntimeStatus(cudaMemset(impl->status.as<void>(), 0, 2 * sizeof(uint32_t)),
                                     "MoeLayer: clearing the routing status");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = impl->AllocateRows(static_cast<int64_t>(entries)); !s.ok()) return s;

  auto main_handle = CreateHandle(nullptr, impl->main_workspace);
  if (!main_handle.ok()) return main_handle.status();
  impl->main_handle = std::move(*main_handle);
  for (int i = 0; i < options.expert_streams; ++i) {
    cudaStream_t stream = nullptr;
    if (absl::Status s =
            RuntimeStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                          [&] { return absl::StrFormat("MoeLayer: creating side stream %d", i); });
        !s.ok()) {
      return s;
    }
    impl->side_streams.emplace_back(stream);
    auto workspace = DeviceBuffer::Allocate(options.workspace_bytes, "a side cuBLAS workspace");
    if (!workspace.ok()) return workspace.status();
    impl->side_workspaces.push_back(std::move(*workspace));
    auto handle = CreateHandle(stream, impl->side_workspaces.back());
    if (!handle.ok()) return handle.status();
    impl->side_handles.push_back(std::move(*handle));
    auto join = CreateEvent(false, "a join event");
    if (!join.ok()) return join.status();
    impl->joins.push_back(std::move(*join));
  }
  auto fork = CreateEvent(false, "the fork event");
  if (!fork.ok()) return fork.status();
  impl->fork = std::move(*fork);

  std::unique_ptr<MoeLayer> layer(new MoeLayer(shape, max_tokens, std::move(impl)));
  if (absl::Status s = layer->GenerateInput(0, max_tokens, nullptr); !s.ok()) return s;
  if (absl::Status s = RuntimeStatus(cudaDeviceSynchronize(), "MoeLayer: set-up"); !s.ok()) {
    return s;
  }
  return layer;
}

uint64_t MoeLayer::input() const { return impl_->x.address(); }
uint64_t MoeLayer::output() const { return impl_->out.address(); }
uint64_t MoeLayer::device_bytes() const { return impl_->DeviceBytes(); }

GemmStrategy MoeLayer::Resolve(GemmStrategy strategy, int64_t tokens) const {
  if (strategy != GemmStrategy::kAuto) return strategy;
  if (auto it = impl_->tuned.find(tokens); it != impl_->tuned.end()) return it->second;
  return tokens * shape_.top_k >= kPaddedDefaultMinAverage * shape_.num_experts
             ? GemmStrategy::kPaddedStridedBatched
             : GemmStrategy::kGroupedBatched;
}

absl::Status MoeLayer::GenerateInput(uint64_t input_seed, int64_t tokens, void* stream) {
  if (tokens < 0 || tokens > max_tokens_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MoeLayer: %d input tokens, outside [0, max_tokens %d]", tokens, max_tokens_));
  }
  return Launched(
      LaunchGenerateInput(stream, impl_->x.as<uint16_t>(), input_seed, tokens, shape_.hidden),
      "the input generator");
}

absl::StatusOr<RoutingPlan> MoeLayer::PlanRouting(uint64_t seed, int64_t tokens, void* stream) {
  if (tokens < 0 || tokens > max_tokens_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MoeLayer: a plan of %d tokens, outside [0, max_tokens %d]", tokens, max_tokens_));
  }
  Impl& m = *impl_;
  m.routed.valid = false;  // the routing buffers are overwritten
  if (absl::Status s = Launched(LaunchRouter(stream, seed, tokens, m.E(), m.K(),
                                             m.experts.as<int32_t>(), m.weights.as<float>()),
                                "the router");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          Launched(LaunchCountPositions(stream, m.experts.as<int32_t>(), tokens * shape_.top_k,
                                        m.E(), m.positions.as<int32_t>(), m.counts.as<int32_t>()),
                   "the expert count");
      !s.ok()) {
    return s;
  }
  RoutingPlan plan;
  plan.seed = seed;
  plan.tokens = tokens;
  plan.expert_counts.assign(static_cast<size_t>(m.E()), 0);
  if (absl::Status s = RuntimeStatus(cudaMemcpyAsync(plan.expert_counts.data(), m.counts.as<void>(),
                                                     plan.expert_counts.size() * sizeof(int32_t),
                                                     cudaMemcpyDeviceToHost, AsStream(stream)),
                                     "MoeLayer: reading the expert counts");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          RuntimeStatus(cudaStreamSynchronize(AsStream(stream)), "MoeLayer: routing the plan");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = m.ValidatePlan(plan); !s.ok()) {
    return absl::InternalError(
        absl::StrCat("MoeLayer: the GPU router's counts are inconsistent (", s.message(), ")"));
  }
  if (absl::Status s = Reserve(plan); !s.ok()) return s;
  return plan;
}

absl::Status MoeLayer::Reserve(const RoutingPlan& plan) {
  Impl& m = *impl_;
  if (absl::Status s = m.ValidatePlan(plan); !s.ok()) return s;
  const int64_t needed =
      std::max(Impl::RowsFor(plan, shape_, true), Impl::RowsFor(plan, shape_, false));
  if (needed <= m.rows) return absl::OkStatus();
  if (needed > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoeLayer: the plan's padded layout needs %d rows, beyond 2^31", needed));
  }
  // Enqueued work may still use the old buffers.
  if (absl::Status s = RuntimeStatus(cudaDeviceSynchronize(), "MoeLayer: before growing");
      !s.ok()) {
    return s;
  }
  m.routed.valid = false;
  m.xperm.Reset();
  m.h1.Reset();
  m.act.Reset();
  m.y.Reset();
  m.rows = 0;
  absl::Status grown = m.AllocateRows(needed);
  if (grown.ok()) return grown;
  // Keep what max_tokens needs in the packed layout, so the layer still runs what it did.
  if (absl::Status s = m.AllocateRows(max_tokens_ * shape_.top_k); !s.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat(grown.message(), "; and re-allocating the packed rows: ", s.message()));
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "MoeLayer: the padded layout of the plan (%d rows of %d experts x capacity %d): %s", needed,
      shape_.num_experts, plan.max_count(), grown.message()));
}

absl::Status MoeLayer::Enqueue(const RoutingPlan& plan, uint64_t w13, uint64_t w2, void* stream,
                               GemmStrategy strategy, const MoeIo& io) {
  const GemmStrategy resolved = Resolve(strategy, plan.tokens);
  if (absl::Status s = EnqueueRouting(plan, stream, resolved, io.input); !s.ok()) return s;
  if (absl::Status s = EnqueueExperts(plan, w13, w2, stream, resolved); !s.ok()) return s;
  return EnqueueCombine(plan, stream, io.output);
}

absl::Status MoeLayer::EnqueueRouting(const RoutingPlan& plan, void* stream, GemmStrategy strategy,
                                      uint64_t input) {
  Impl& m = *impl_;
  if (absl::Status s = m.ValidatePlan(plan); !s.ok()) return s;
  const bool padded = IsPadded(Resolve(strategy, plan.tokens));
  if (absl::Status s = m.CheckRows(plan, padded); !s.ok()) return s;
  const uint64_t x = input != 0 ? input : m.x.address();
  if (x % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoeLayer: the input 0x%x is not 16-byte aligned", x));
  }
  const int32_t capacity = padded ? plan.max_count() : 0;
  m.routed = {};
  if (plan.tokens == 0) {
    m.routed = {true, plan.seed, 0, capacity};
    return absl::OkStatus();
  }
  const int64_t entries = plan.tokens * shape_.top_k;
  if (absl::Status s = Launched(LaunchRouter(stream, plan.seed, plan.tokens, m.E(), m.K(),
                                             m.experts.as<int32_t>(), m.weights.as<float>()),
                                "the router");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          Launched(LaunchCountPositions(stream, m.experts.as<int32_t>(), entries, m.E(),
                                        m.positions.as<int32_t>(), m.counts.as<int32_t>()),
                   "the expert count");
      !s.ok()) {
    return s;
  }
  const uint64_t fingerprint = dwdp::moe::CountsFingerprint(plan.expert_counts.data(), m.E());
  if (absl::Status s =
          Launched(LaunchLayout(stream, m.counts.as<int32_t>(), m.E(), capacity, fingerprint,
                                m.offsets.as<int32_t>(), m.problem_experts.as<int32_t>(),
                                m.status.as<uint32_t>()),
                   "the layout");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Launched(
          LaunchGather(stream, reinterpret_cast<const uint16_t*>(x), plan.tokens, shape_.hidden,
                       m.K(), m.E(), m.experts.as<int32_t>(), m.positions.as<int32_t>(),
                       m.offsets.as<int32_t>(), capacity, m.rows, m.xperm.as<uint16_t>(),
                       m.entry_rows.as<int32_t>(), m.status.as<uint32_t>()),
          "the gather");
      !s.ok()) {
    return s;
  }
  if (padded) {
    if (absl::Status s = Launched(LaunchZeroPadding(stream, m.xperm.as<uint16_t>(), shape_.hidden,
                                                    m.counts.as<int32_t>(), m.E(), capacity),
                                  "the padding");
        !s.ok()) {
      return s;
    }
  }
  m.routed = {true, plan.seed, plan.tokens, capacity};
  return absl::OkStatus();
}

absl::Status MoeLayer::EnqueueExperts(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                                      void* stream, GemmStrategy strategy) {
  Impl& m = *impl_;
  if (absl::Status s = m.ValidatePlan(plan); !s.ok()) return s;
  const GemmStrategy resolved = Resolve(strategy, plan.tokens);
  if (absl::Status s = m.CheckRouted(plan, IsPadded(resolved), "EnqueueExperts"); !s.ok()) {
    return s;
  }
  if (w13 == 0 || w2 == 0 || w13 % kWeightAlignment != 0 || w2 % kWeightAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MoeLayer: the weights (w13 0x%x, w2 0x%x) must be %d-byte aligned device addresses", w13,
        w2, kWeightAlignment));
  }
  if (plan.tokens == 0) return absl::OkStatus();
  cudaStream_t s = AsStream(stream);
  switch (resolved) {
    case GemmStrategy::kGroupedBatched:
      return m.GroupedGemms(plan, w13, w2, s);
    case GemmStrategy::kPaddedStridedBatched:
      return m.PaddedGemms(plan, w13, w2, s);
    case GemmStrategy::kPerExpertGemm:
      return m.PerExpertGemms(plan, w13, w2, s);
    case GemmStrategy::kAuto:
      break;
  }
  return absl::InternalError("MoeLayer: the strategy did not resolve");
}

absl::Status MoeLayer::EnqueuePermutedExperts(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                                              void* stream) {
  Impl& m = *impl_;
  if (absl::Status s = m.ValidatePlan(plan); !s.ok()) return s;
  if (absl::Status s = m.CheckRows(plan, /*padded=*/false); !s.ok()) return s;
  if (w13 == 0 || w2 == 0 || w13 % kWeightAlignment != 0 || w2 % kWeightAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MoeLayer: the weights (w13 0x%x, w2 0x%x) must be %d-byte aligned device addresses", w13,
        w2, kWeightAlignment));
  }
  m.routed = {};  // the permuted rows are the caller's now
  if (plan.tokens == 0) return absl::OkStatus();
  cudaStream_t s = AsStream(stream);
  // Pageable source: the copy returns once the counts are staged, so the vector may go.
  if (absl::Status st = RuntimeStatus(
          cudaMemcpyAsync(m.counts.as<void>(), plan.expert_counts.data(),
                          plan.expert_counts.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s),
          "MoeLayer: uploading the per-expert counts");
      !st.ok()) {
    return st;
  }
  const uint64_t fingerprint = dwdp::moe::CountsFingerprint(plan.expert_counts.data(), m.E());
  if (absl::Status st = Launched(
          LaunchLayout(s, m.counts.as<int32_t>(), m.E(), 0, fingerprint, m.offsets.as<int32_t>(),
                       m.problem_experts.as<int32_t>(), m.status.as<uint32_t>()),
          "the layout");
      !st.ok()) {
    return st;
  }
  return m.GroupedGemms(plan, w13, w2, s);
}

uint64_t MoeLayer::permuted_input() const { return impl_->xperm.address(); }
uint64_t MoeLayer::permuted_output() const { return impl_->y.address(); }

absl::Status MoeLayer::EnqueueCombine(const RoutingPlan& plan, void* stream, uint64_t output) {
  Impl& m = *impl_;
  if (absl::Status s = m.ValidatePlan(plan); !s.ok()) return s;
  if (absl::Status s = m.CheckRouted(plan, std::nullopt, "EnqueueCombine"); !s.ok()) return s;
  const uint64_t out = output != 0 ? output : m.out.address();
  if (out % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("MoeLayer: the output 0x%x is not 16-byte aligned", out));
  }
  if (plan.tokens == 0) return absl::OkStatus();
  return Launched(
      LaunchCombine(stream, m.y.as<uint16_t>(), m.entry_rows.as<int32_t>(), m.weights.as<float>(),
                    plan.tokens, shape_.hidden, m.K(), reinterpret_cast<uint16_t*>(out)),
      "the combine");
}

absl::StatusOr<GemmStrategy> MoeLayer::Tune(const RoutingPlan& plan, uint64_t w13, uint64_t w2,
                                            void* stream, std::vector<StrategyTiming>* timings) {
  if (absl::Status s = Reserve(plan); !s.ok()) return s;
  auto start = CreateEvent(true, "a timing event");
  if (!start.ok()) return start.status();
  auto end = CreateEvent(true, "a timing event");
  if (!end.ok()) return end.status();
  std::vector<StrategyTiming> results;
  for (GemmStrategy strategy : kConcreteStrategies) {
    StrategyTiming timing;
    timing.strategy = strategy;
    for (int i = 0; i < kTuneWarmups && timing.status.ok(); ++i) {
      timing.status = Enqueue(plan, w13, w2, stream, strategy);
    }
    if (timing.status.ok()) {
      timing.status = RuntimeStatus(cudaEventRecord(start->get(), AsStream(stream)),
                                    "MoeLayer: recording a timing event");
    }
    for (int i = 0; i < kTuneRuns && timing.status.ok(); ++i) {
      timing.status = Enqueue(plan, w13, w2, stream, strategy);
    }
    if (timing.status.ok()) {
      timing.status = RuntimeStatus(cudaEventRecord(end->get(), AsStream(stream)),
                                    "MoeLayer: recording a timing event");
    }
    if (timing.status.ok()) {
      timing.status = RuntimeStatus(cudaEventSynchronize(end->get()), "MoeLayer: timing");
    }
    if (timing.status.ok()) {
      float ms = 0;
      timing.status = RuntimeStatus(cudaEventElapsedTime(&ms, start->get(), end->get()),
                                    "MoeLayer: reading a timing event");
      timing.ms = static_cast<double>(ms) / kTuneRuns;
    }
    // A strategy cuBLAS refused leaves the device usable; a failed CUDA call may not.
    if (!timing.status.ok() && timing.status.code() != absl::StatusCode::kUnimplemented &&
        timing.status.code() != absl::StatusCode::kInvalidArgument) {
      return absl::Status(timing.status.code(),
                          absl::StrCat("MoeLayer: tuning ", GemmStrategyName(strategy), ": ",
                                       timing.status.message()));
    }
    results.push_back(timing);
  }
  if (absl::Status s = CheckRouting(stream); !s.ok()) return s;
  if (timings != nullptr) *timings = results;
  const StrategyTiming* best = nullptr;
  std::vector<std::string> failures;
  for (const StrategyTiming& t : results) {
    if (!t.status.ok()) {
      failures.push_back(absl::StrCat(GemmStrategyName(t.strategy), ": ", t.status.message()));
      continue;
    }
    if (best == nullptr || t.ms < best->ms) best = &t;
  }
  if (best == nullptr) {
    return absl::InternalError(
        absl::StrCat("MoeLayer: no GEMM strategy ran (", absl::StrJoin(failures, "; "), ")"));
  }
  impl_->tuned[plan.tokens] = best->strategy;
  return best->strategy;
}

absl::Status MoeLayer::CheckRouting(void* stream) {
  uint32_t flags[2] = {0, 0};
  if (absl::Status s = RuntimeStatus(cudaMemcpyAsync(flags, impl_->status.as<void>(), sizeof(flags),
                                                     cudaMemcpyDeviceToHost, AsStream(stream)),
                                     "MoeLayer: reading the routing status");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = RuntimeStatus(
          cudaMemsetAsync(impl_->status.as<void>(), 0, sizeof(uint32_t), AsStream(stream)),
          "MoeLayer: clearing the routing status");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          RuntimeStatus(cudaStreamSynchronize(AsStream(stream)), "MoeLayer: checking the routing");
      !s.ok()) {
    return s;
  }
  std::vector<std::string> problems;
  if ((flags[0] & kStatusCountsDiffer) != 0) {
    problems.push_back(
        "the GPU's per-expert counts differed from the plan's (a plan of another seed or token "
        "count?)");
  }
  if ((flags[0] & kStatusRowOverflow) != 0) {
    problems.push_back("a routed token had no row in the permuted layout");
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("MoeLayer: ", absl::StrJoin(problems, "; and ")));
}

absl::StatusOr<RoutingSnapshot> MoeLayer::ReadRouting(int64_t tokens, void* stream) {
  Impl& m = *impl_;
  if (!m.routed.valid || m.routed.tokens != tokens) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "MoeLayer: no EnqueueRouting of %d tokens is the last routing to read", tokens));
  }
  const size_t entries = static_cast<size_t>(tokens * shape_.top_k);
  RoutingSnapshot snapshot;
  snapshot.experts.resize(entries);
  snapshot.weights.resize(entries);
  snapshot.positions.resize(entries);
  snapshot.rows.resize(entries);
  snapshot.counts.resize(static_cast<size_t>(m.E()));
  const struct {
    void* host;
    const DeviceBuffer& device;
    size_t bytes;
  } copies[] = {
      {snapshot.experts.data(), m.experts, entries * sizeof(int32_t)},
      {snapshot.weights.data(), m.weights, entries * sizeof(float)},
      {snapshot.positions.data(), m.positions, entries * sizeof(int32_t)},
      {snapshot.rows.data(), m.entry_rows, entries * sizeof(int32_t)},
      {snapshot.counts.data(), m.counts, snapshot.counts.size() * sizeof(int32_t)},
  };
  for (const auto& c : copies) {
    if (c.bytes == 0) continue;
    if (absl::Status s = RuntimeStatus(cudaMemcpyAsync(c.host, c.device.as<void>(), c.bytes,
                                                       cudaMemcpyDeviceToHost, AsStream(stream)),
                                       "MoeLayer: reading the routing");
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s =
          RuntimeStatus(cudaStreamSynchronize(AsStream(stream)), "MoeLayer: reading the routing");
      !s.ok()) {
    return s;
  }
  return snapshot;
}

absl::StatusOr<std::optional<Mismatch>> MoeLayer::Compare(uint64_t a, uint64_t b, uint64_t elements,
                                                          void* stream) {
  if (a == 0 || b == 0 || a % 2 != 0 || b % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MoeLayer: Compare needs two 2-byte aligned device addresses (0x%x, 0x%x)", a, b));
  }
  cudaStream_t s = AsStream(stream);
  uint64_t* first = impl_->difference.as<uint64_t>();
  if (absl::Status st = RuntimeStatus(cudaMemsetAsync(first, 0xFF, sizeof(uint64_t), s),
                                      "MoeLayer: clearing the comparison");
      !st.ok()) {
    return st;
  }
  if (absl::Status st =
          Launched(LaunchCompareBf16(stream, reinterpret_cast<const uint16_t*>(a),
                                     reinterpret_cast<const uint16_t*>(b), elements, first),
                   "the comparison");
      !st.ok()) {
    return st;
  }
  uint64_t index = kNoDifference;
  if (absl::Status st =
          RuntimeStatus(cudaMemcpyAsync(&index, first, sizeof(index), cudaMemcpyDeviceToHost, s),
                        "MoeLayer: reading the comparison");
      !st.ok()) {
    return st;
  }
  if (absl::Status st = RuntimeStatus(cudaStreamSynchronize(s), "MoeLayer: comparing"); !st.ok()) {
    return st;
  }
  if (index == kNoDifference) return std::optional<Mismatch>();
  Mismatch mismatch;
  mismatch.index = index;
  if (absl::Status st =
          RuntimeStatus(cudaMemcpy(&mismatch.a, reinterpret_cast<const void*>(a + 2 * index), 2,
                                   cudaMemcpyDeviceToHost),
                        "MoeLayer: reading a differing value");
      !st.ok()) {
    return st;
  }
  if (absl::Status st =
          RuntimeStatus(cudaMemcpy(&mismatch.b, reinterpret_cast<const void*>(b + 2 * index), 2,
                                   cudaMemcpyDeviceToHost),
                        "MoeLayer: reading a differing value");
      !st.ok()) {
    return st;
  }
  return std::optional<Mismatch>(mismatch);
}

}  // namespace dwdp::cuda::moe
