#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "backends/cuda/moe/moe_kernels.h"
#include "core/moe/bf16.h"
#include "core/moe/routing.h"

namespace dwdp::cuda::moe {
namespace {

using dwdp::moe::Bf16ToFloat;
using dwdp::moe::FloatToBf16;
using dwdp::moe::kMaxExperts;
using dwdp::moe::kMaxTopK;

constexpr int kThreads = 256;
constexpr int kRowThreads = 128;  // one token (or row) per block in gather and combine
constexpr int kVector = 8;        // bf16 values per 16-byte access
constexpr int64_t kMaxGrid = 1 << 20;

int64_t BlocksFor(int64_t items, int threads, int64_t max_blocks) {
  const int64_t blocks = (items + threads - 1) / threads;
  return blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks);
}

__device__ __forceinline__ void Unpack(uint4 v, float out[kVector]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = Bf16ToFloat(static_cast<uint16_t>(w[i] & 0xFFFFu));
    out[2 * i + 1] = Bf16ToFloat(static_cast<uint16_t>(w[i] >> 16));
  }
}

__device__ __forceinline__ uint4 Pack(const uint16_t in[kVector]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[i] = static_cast<uint32_t>(in[2 * i]) | (static_cast<uint32_t>(in[2 * i + 1]) << 16);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ uint4 PackFloats(const float in[kVector]) {
  uint16_t bits[kVector];
#pragma unroll
  for (int i = 0; i < kVector; ++i) bits[i] = FloatToBf16(in[i]);
  return Pack(bits);
}

// ---------------------------------------------------------------------------------------------

__global__ void GenerateInputKernel(uint4* x, uint64_t seed, int64_t vectors,
                                    int64_t hidden_vectors) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < vectors;
       v += stride) {
    const int64_t token = v / hidden_vectors;
    const int64_t h0 = (v % hidden_vectors) * kVector;
    uint16_t values[kVector];
#pragma unroll
    for (int i = 0; i < kVector; ++i) values[i] = dwdp::moe::InputValue(seed, token, h0 + i);
    x[v] = Pack(values);
  }
}

// (value, expert) beats (best_value, best) in the routing order; expert -1 is "none".
__device__ __forceinline__ bool Beats(float value, int32_t expert, float best_value, int32_t best) {
  return expert >= 0 && (best < 0 || dwdp::moe::RanksBefore(value, expert, best_value, best));
}

constexpr int kRouterWarps = kThreads / 32;

// One warp per token. Pick j is the best expert ranking after pick j - 1 (as SelectTopK on the
// host): each lane scans its experts (lane, lane + 32, ...), then a butterfly of shuffles leaves
// the warp's best in every lane. The order is total (distinct experts), so the result does not
// depend on the reduction's shape.
__global__ void __launch_bounds__(kThreads)
    RouterKernel(uint64_t seed, int64_t tokens, int32_t num_experts, int32_t top_k,
                 int32_t* experts, float* weights) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t token = static_cast<int64_t>(blockIdx.x) * kRouterWarps + threadIdx.x / 32;
  if (token >= tokens) return;  // the same for the whole warp
  const uint64_t key = dwdp::moe::RouterTokenKey(seed, token);
  int32_t picked[kMaxTopK];
  float picked_logits[kMaxTopK];
  float previous_value = 0.0f;
  int32_t previous = -1;
  for (int32_t j = 0; j < top_k; ++j) {
    float best_value = 0.0f;
    int32_t best = -1;
    for (int32_t e = lane; e < num_experts; e += 32) {
      const float value = dwdp::moe::RouterLogitOfKey(key, e);
      if (previous >= 0 && !dwdp::moe::RanksBefore(previous_value, previous, value, e)) continue;
      if (Beats(value, e, best_value, best)) {
        best_value = value;
        best = e;
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other_value = __shfl_xor_sync(0xFFFFFFFFu, best_value, offset);
      const int32_t other = __shfl_xor_sync(0xFFFFFFFFu, best, offset);
      if (Beats(other_value, other, best_value, best)) {
        best_value = other_value;
        best = other;
      }
    }
    picked[j] = best;
    picked_logits[j] = best_value;
    previous = best;
    previous_value = best_value;
  }
  if (lane == 0) {
    float w[kMaxTopK];
    dwdp::moe::RouterWeights(picked_logits, top_k, w);
    for (int32_t j = 0; j < top_k; ++j) {
      experts[token * top_k + j] = picked[j];
      weights[token * top_k + j] = w[j];
    }
  }
}

// One block per expert scans all entries in order, kItems contiguous entries per thread: a
// thread's matches get consecutive positions after those of the threads (and rounds) before it.
constexpr int kCountItems = 16;

__global__ void __launch_bounds__(kThreads)
    CountPositionsKernel(const int32_t* experts, int64_t entries, int32_t* positions,
                         int32_t* counts) {
  using Scan = cub::BlockScan<int32_t, kThreads>;
  __shared__ typename Scan::TempStorage scan;
  const int32_t expert = static_cast<int32_t>(blockIdx.x);
  int32_t running = 0;
  for (int64_t base = 0; base < entries; base += static_cast<int64_t>(kThreads) * kCountItems) {
    const int64_t first = base + static_cast<int64_t>(threadIdx.x) * kCountItems;
    uint32_t matches = 0;  // bit i: entry first + i is routed to this expert
    if (first + kCountItems <= entries) {
      // experts is 16-byte aligned (cudaMalloc) and first a multiple of 16 entries.
      const int4* quads = reinterpret_cast<const int4*>(experts + first);
#pragma unroll
      for (int q = 0; q < kCountItems / 4; ++q) {
        const int4 v = quads[q];
        matches |= (v.x == expert ? 1u : 0u) << (4 * q);
        matches |= (v.y == expert ? 1u : 0u) << (4 * q + 1);
        matches |= (v.z == expert ? 1u : 0u) << (4 * q + 2);
        matches |= (v.w == expert ? 1u : 0u) << (4 * q + 3);
      }
    } else {
      for (int i = 0; i < kCountItems; ++i) {
        if (first + i < entries && experts[first + i] == expert) matches |= 1u << i;
      }
    }
    int32_t before = 0;
    int32_t total = 0;
    Scan(scan).ExclusiveSum(static_cast<int32_t>(__popc(matches)), before, total);
    int32_t position = running + before;
    for (int i = 0; i < kCountItems; ++i) {
      if ((matches >> i) & 1u) positions[first + i] = position++;
    }
    running += total;
    __syncthreads();  // the scan's storage is reused next round
  }
  if (threadIdx.x == 0) counts[expert] = running;
}

// One block of kMaxExperts threads, thread e for expert e. status[0] collects flags (sticky),
// status[1] holds this call's layout flags for the kernels after it.
__global__ void __launch_bounds__(kMaxExperts)
    LayoutKernel(const int32_t* counts, int32_t num_experts, int32_t capacity,
                 uint64_t expected_fingerprint, int32_t* offsets, int32_t* problem_experts,
                 uint32_t* status) {
  using Scan = cub::BlockScan<int32_t, kMaxExperts>;
  using Reduce = cub::BlockReduce<unsigned long long, kMaxExperts>;
  __shared__ typename Scan::TempStorage offset_scan;
  __shared__ typename Scan::TempStorage problem_scan;
  __shared__ typename Reduce::TempStorage reduce;
  const int32_t e = static_cast<int32_t>(threadIdx.x);
  const bool valid = e < num_experts;
  const int32_t count = valid ? counts[e] : 0;
  int32_t packed_offset = 0;
  int32_t total = 0;
  Scan(offset_scan).ExclusiveSum(count, packed_offset, total);
  const int32_t has_tokens = valid && count > 0 ? 1 : 0;
  int32_t problem = 0;
  int32_t problems = 0;
  Scan(problem_scan).ExclusiveSum(has_tokens, problem, problems);
  const unsigned long long term =
      valid ? static_cast<unsigned long long>(dwdp::moe::CountsFingerprintTerm(e, count)) : 0ull;
  const unsigned long long fingerprint = Reduce(reduce).Sum(term);  // valid in thread 0
  const int overflow = __syncthreads_or(valid && capacity > 0 && count > capacity);
  if (valid) {
    offsets[e] =
        capacity > 0 ? static_cast<int32_t>(static_cast<int64_t>(e) * capacity) : packed_offset;
    if (has_tokens) problem_experts[problem] = e;
  }
  if (e == 0) {
    const uint32_t flags = (fingerprint != expected_fingerprint ? kStatusCountsDiffer : 0u) |
                           (overflow ? kStatusRowOverflow : 0u);
    status[1] = flags;
    if (flags != 0) atomicOr(&status[0], flags);
  }
}

__global__ void __launch_bounds__(kRowThreads)
    GatherKernel(const uint4* x, int64_t tokens, int64_t hidden_vectors, int32_t top_k,
                 int32_t num_experts, const int32_t* experts, const int32_t* positions,
                 const int32_t* offsets, int32_t capacity, int64_t rows, uint4* xperm,
                 int32_t* entry_rows, uint32_t* status) {
  __shared__ int64_t destination[kMaxTopK];
  for (int64_t token = blockIdx.x; token < tokens; token += gridDim.x) {
    if (threadIdx.x < static_cast<unsigned>(top_k)) {
      const int64_t entry = token * top_k + threadIdx.x;
      const int32_t expert = experts[entry];
      const int32_t position = positions[entry];
      int64_t row = -1;
      if (expert >= 0 && expert < num_experts && position >= 0 &&
          (capacity == 0 || position < capacity)) {
        row = static_cast<int64_t>(offsets[expert]) + position;
        if (row >= rows) row = -1;
      }
      if (row < 0) atomicOr(&status[0], kStatusRowOverflow);
      destination[threadIdx.x] = row;
      entry_rows[entry] = static_cast<int32_t>(row);
    }
    __syncthreads();
    for (int64_t v = threadIdx.x; v < hidden_vectors; v += blockDim.x) {
      const uint4 value = x[token * hidden_vectors + v];
      for (int32_t j = 0; j < top_k; ++j) {
        const int64_t row = destination[j];
        if (row >= 0) xperm[row * hidden_vectors + v] = value;
      }
    }
    __syncthreads();  // destination is rewritten for the next token
  }
}

__global__ void __launch_bounds__(kThreads)
    ZeroPaddingKernel(uint4* xperm, int64_t hidden_vectors, const int32_t* counts,
                      int32_t capacity) {
  const int64_t expert = blockIdx.x;
  const int32_t count = counts[expert];
  if (count >= capacity) return;
  const int64_t first_row = expert * capacity + count;
  const int64_t vectors = static_cast<int64_t>(capacity - count) * hidden_vectors;
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    xperm[first_row * hidden_vectors + v] = make_uint4(0, 0, 0, 0);
  }
}

__global__ void __launch_bounds__(kThreads)
    SiluMulKernel(const uint4* h1, int64_t rows, int64_t inter_vectors, uint4* act) {
  const int64_t total = rows * inter_vectors;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t row = i / inter_vectors;
    const int64_t column = i % inter_vectors;
    float gate[kVector];
    float up[kVector];
    Unpack(h1[row * 2 * inter_vectors + column], gate);
    Unpack(h1[row * 2 * inter_vectors + inter_vectors + column], up);
    float out[kVector];
#pragma unroll
    for (int k = 0; k < kVector; ++k) {
      const float silu = gate[k] / (1.0f + expf(-gate[k]));
      out[k] = silu * up[k];
    }
    act[i] = PackFloats(out);
  }
}

__global__ void __launch_bounds__(kRowThreads)
    CombineKernel(const uint4* y, const int32_t* entry_rows, const float* weights, int64_t tokens,
                  int64_t hidden_vectors, int32_t top_k, uint4* out) {
  __shared__ int64_t rows[kMaxTopK];
  __shared__ float row_weights[kMaxTopK];
  for (int64_t token = blockIdx.x; token < tokens; token += gridDim.x) {
    if (threadIdx.x < static_cast<unsigned>(top_k)) {
      rows[threadIdx.x] = entry_rows[token * top_k + threadIdx.x];
      row_weights[threadIdx.x] = weights[token * top_k + threadIdx.x];
    }
    __syncthreads();
    for (int64_t v = threadIdx.x; v < hidden_vectors; v += blockDim.x) {
      float sum[kVector] = {};
      for (int32_t j = 0; j < top_k; ++j) {
        const int64_t row = rows[j];
        if (row < 0) continue;
        float values[kVector];
        Unpack(y[row * hidden_vectors + v], values);
#pragma unroll
        for (int k = 0; k < kVector; ++k) sum[k] = fmaf(row_weights[j], values[k], sum[k]);
      }
      out[token * hidden_vectors + v] = PackFloats(sum);
    }
    __syncthreads();  // rows are rewritten for the next token
  }
}

__global__ void GroupedPointersKernel(GroupedBases bases, const int32_t* problem_experts,
                                      const int32_t* offsets, int32_t problems,
                                      const uint32_t* status, GroupedPointers out) {
  const int32_t p = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (p >= problems) return;
  const bool fallback = (status[1] & kStatusCountsDiffer) != 0;
  const uint64_t expert = fallback ? 0 : static_cast<uint64_t>(problem_experts[p]);
  const uint64_t row = fallback ? 0 : static_cast<uint64_t>(offsets[expert]);
  const uint64_t hidden = static_cast<uint64_t>(bases.hidden);
  const uint64_t inter = static_cast<uint64_t>(bases.inter);
  out.a1[p] = reinterpret_cast<const void*>(bases.w13 + expert * bases.w13_expert_bytes);
  out.b1[p] = reinterpret_cast<const void*>(bases.xperm + row * hidden * 2);
  out.c1[p] = reinterpret_cast<void*>(bases.h1 + row * 2 * inter * 2);
  out.a2[p] = reinterpret_cast<const void*>(bases.w2 + expert * bases.w2_expert_bytes);
  out.b2[p] = reinterpret_cast<const void*>(bases.act + row * inter * 2);
  out.c2[p] = reinterpret_cast<void*>(bases.y + row * hidden * 2);
}

__device__ __forceinline__ void ReportDifference(uint64_t* first, uint64_t index) {
  // A cheap look first: when the buffers differ everywhere, most threads lose to a lower index.
  if (index < *reinterpret_cast<volatile uint64_t*>(first)) {
    atomicMin(reinterpret_cast<unsigned long long*>(first), static_cast<unsigned long long>(index));
  }
}

__global__ void __launch_bounds__(kThreads)
    CompareKernel(const uint16_t* a, const uint16_t* b, uint64_t elements, bool vectorized,
                  uint64_t* first) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t thread = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t vectors = vectorized ? elements / kVector : 0;
  const uint4* a4 = reinterpret_cast<const uint4*>(a);
  const uint4* b4 = reinterpret_cast<const uint4*>(b);
  for (uint64_t v = thread; v < vectors; v += stride) {
    const uint4 x = a4[v];
    const uint4 y = b4[v];
    if (x.x == y.x && x.y == y.y && x.z == y.z && x.w == y.w) continue;
    const uint32_t xs[4] = {x.x, x.y, x.z, x.w};
    const uint32_t ys[4] = {y.x, y.y, y.z, y.w};
    for (int i = 0; i < kVector; ++i) {
      const uint32_t shift = 16u * static_cast<uint32_t>(i % 2);
      if (((xs[i / 2] >> shift) & 0xFFFFu) != ((ys[i / 2] >> shift) & 0xFFFFu)) {
        ReportDifference(first, v * kVector + static_cast<uint64_t>(i));
        break;
      }
    }
  }
  for (uint64_t i = vectors * kVector + thread; i < elements; i += stride) {
    if (a[i] != b[i]) ReportDifference(first, i);
  }
}

}  // namespace

int LaunchGenerateInput(void* stream, uint16_t* x, uint64_t seed, int64_t tokens, int64_t hidden) {
  if (tokens < 0 || hidden <= 0 || hidden % kVector != 0 || x == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  const int64_t vectors = tokens * (hidden / kVector);
  GenerateInputKernel<<<static_cast<unsigned>(BlocksFor(vectors, kThreads, kMaxGrid)), kThreads, 0,
                        static_cast<cudaStream_t>(stream)>>>(reinterpret_cast<uint4*>(x), seed,
                                                             vectors, hidden / kVector);
  return static_cast<int>(cudaGetLastError());
}

int LaunchRouter(void* stream, uint64_t seed, int64_t tokens, int32_t num_experts, int32_t top_k,
                 int32_t* experts, float* weights) {
  if (tokens < 0 || num_experts < 1 || num_experts > kMaxExperts || top_k < 1 || top_k > kMaxTopK ||
      top_k > num_experts || experts == nullptr || weights == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  const int64_t blocks = (tokens + kRouterWarps - 1) / kRouterWarps;
  if (blocks > 0x7FFFFFFF) return cudaErrorInvalidValue;
  RouterKernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      seed, tokens, num_experts, top_k, experts, weights);
  return static_cast<int>(cudaGetLastError());
}

int LaunchCountPositions(void* stream, const int32_t* experts, int64_t entries, int32_t num_experts,
                         int32_t* positions, int32_t* counts) {
  if (entries < 0 || entries > 0x7FFFFFFF || num_experts < 1 || num_experts > kMaxExperts ||
      experts == nullptr || positions == nullptr || counts == nullptr ||
      reinterpret_cast<uintptr_t>(experts) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  // With no entries every count is still written (zero).
  CountPositionsKernel<<<static_cast<unsigned>(num_experts), kThreads, 0,
                         static_cast<cudaStream_t>(stream)>>>(experts, entries, positions, counts);
  return static_cast<int>(cudaGetLastError());
}

int LaunchLayout(void* stream, const int32_t* counts, int32_t num_experts, int32_t capacity,
                 uint64_t expected_fingerprint, int32_t* offsets, int32_t* problem_experts,
                 uint32_t* status) {
  if (num_experts < 1 || num_experts > kMaxExperts || capacity < 0 || counts == nullptr ||
      offsets == nullptr || problem_experts == nullptr || status == nullptr ||
      static_cast<int64_t>(num_experts) * capacity > 0x7FFFFFFF) {
    return cudaErrorInvalidValue;
  }
  LayoutKernel<<<1, kMaxExperts, 0, static_cast<cudaStream_t>(stream)>>>(
      counts, num_experts, capacity, expected_fingerprint, offsets, problem_experts, status);
  return static_cast<int>(cudaGetLastError());
}

int LaunchGather(void* stream, const uint16_t* x, int64_t tokens, int64_t hidden, int32_t top_k,
                 int32_t num_experts, const int32_t* experts, const int32_t* positions,
                 const int32_t* offsets, int32_t capacity, int64_t rows, uint16_t* xperm,
                 int32_t* entry_rows, uint32_t* status) {
  if (tokens < 0 || hidden <= 0 || hidden % kVector != 0 || top_k < 1 || top_k > kMaxTopK ||
      num_experts < 1 || num_experts > kMaxExperts || capacity < 0 || rows < 0 ||
      rows > 0x7FFFFFFF || x == nullptr || experts == nullptr || positions == nullptr ||
      offsets == nullptr || xperm == nullptr || entry_rows == nullptr || status == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  GatherKernel<<<static_cast<unsigned>(tokens < kMaxGrid ? tokens : kMaxGrid), kRowThreads, 0,
                 static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const uint4*>(x), tokens, hidden / kVector, top_k, num_experts, experts,
      positions, offsets, capacity, rows, reinterpret_cast<uint4*>(xperm), entry_rows, status);
  return static_cast<int>(cudaGetLastError());
}

int LaunchZeroPadding(void* stream, uint16_t* xperm, int64_t hidden, const int32_t* counts,
                      int32_t num_experts, int32_t capacity) {
  if (hidden <= 0 || hidden % kVector != 0 || num_experts < 1 || num_experts > kMaxExperts ||
      capacity < 0 || xperm == nullptr || counts == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (capacity == 0) return cudaSuccess;
  ZeroPaddingKernel<<<static_cast<unsigned>(num_experts), kThreads, 0,
                      static_cast<cudaStream_t>(stream)>>>(reinterpret_cast<uint4*>(xperm),
                                                           hidden / kVector, counts, capacity);
  return static_cast<int>(cudaGetLastError());
}

int LaunchSiluMul(void* stream, const uint16_t* h1, int64_t rows, int64_t inter, uint16_t* act) {
  if (rows < 0 || inter <= 0 || inter % kVector != 0 || h1 == nullptr || act == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  const int64_t vectors = rows * (inter / kVector);
  SiluMulKernel<<<static_cast<unsigned>(BlocksFor(vectors, kThreads, kMaxGrid)), kThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const uint4*>(h1), rows, inter / kVector, reinterpret_cast<uint4*>(act));
  return static_cast<int>(cudaGetLastError());
}

int LaunchCombine(void* stream, const uint16_t* y, const int32_t* entry_rows, const float* weights,
                  int64_t tokens, int64_t hidden, int32_t top_k, uint16_t* out) {
  if (tokens < 0 || hidden <= 0 || hidden % kVector != 0 || top_k < 1 || top_k > kMaxTopK ||
      y == nullptr || entry_rows == nullptr || weights == nullptr || out == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  CombineKernel<<<static_cast<unsigned>(tokens < kMaxGrid ? tokens : kMaxGrid), kRowThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const uint4*>(y), entry_rows, weights, tokens, hidden / kVector, top_k,
      reinterpret_cast<uint4*>(out));
  return static_cast<int>(cudaGetLastError());
}

int LaunchGroupedPointers(void* stream, const GroupedBases& bases, const int32_t* problem_experts,
                          const int32_t* offsets, int32_t problems, const uint32_t* status,
                          const GroupedPointers& out) {
  if (problems < 0 || problems > kMaxExperts || problem_experts == nullptr || offsets == nullptr ||
      status == nullptr || out.a1 == nullptr || out.b1 == nullptr || out.c1 == nullptr ||
      out.a2 == nullptr || out.b2 == nullptr || out.c2 == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (problems == 0) return cudaSuccess;
  GroupedPointersKernel<<<static_cast<unsigned>((problems + kThreads - 1) / kThreads), kThreads, 0,
                          static_cast<cudaStream_t>(stream)>>>(bases, problem_experts, offsets,
                                                               problems, status, out);
  return static_cast<int>(cudaGetLastError());
}

int LaunchCompareBf16(void* stream, const uint16_t* a, const uint16_t* b, uint64_t elements,
                      uint64_t* first_difference) {
  if (a == nullptr || b == nullptr || first_difference == nullptr) return cudaErrorInvalidValue;
  if (elements == 0) return cudaSuccess;
  const bool vectorized =
      reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0;
  const int64_t items = static_cast<int64_t>(vectorized ? elements / kVector + kVector : elements);
  CompareKernel<<<static_cast<unsigned>(BlocksFor(items, kThreads, 4096)), kThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(a, b, elements, vectorized,
                                                       first_difference);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace dwdp::cuda::moe
