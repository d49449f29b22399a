#include <cuda_runtime.h>

#include "backends/cuda/kernels.h"
#include "core/pattern.h"

namespace dwdp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr uint64_t kChunk = 16;  // bytes per vector access

__device__ __forceinline__ uint64_t GlobalTimerNs() {
  uint64_t now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  return now;
}

// Bytes are walked in 16-byte chunks aligned in the address space, so that whole chunks use one
// vector access; the (at most two) partial chunks at the ends go byte by byte. Chunk c covers
// [first + 16 c, first + 16 c + 16) with first = va rounded down to 16.
struct ChunkRange {
  uint64_t va;
  uint64_t end;
  uint64_t first;
  uint64_t count;
};

__device__ __forceinline__ ChunkRange Chunks(uint64_t va, uint64_t bytes) {
  ChunkRange range;
  range.va = va;
  range.end = va + bytes;
  range.first = va & ~(kChunk - 1);
  range.count = bytes == 0 ? 0 : (range.end - range.first + kChunk - 1) / kChunk;
  return range;
}

// The pattern of 16 consecutive tensor bytes starting at tensor offset x.
__device__ __forceinline__ void PatternChunk(int64_t layer, int64_t weight, uint64_t eb, uint64_t x,
                                             uint32_t kind, uint8_t out[kChunk]) {
  uint64_t expert = x / eb;
  uint64_t offset = x % eb;
#pragma unroll
  for (int i = 0; i < static_cast<int>(kChunk); ++i) {
    out[i] = PatternValue(layer, weight, expert, offset, kind);
    if (++offset == eb) {
      offset = 0;
      ++expert;
    }
  }
}

__device__ __forceinline__ uint4 Pack(const uint8_t b[kChunk]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[i] = static_cast<uint32_t>(b[4 * i]) | (static_cast<uint32_t>(b[4 * i + 1]) << 8) |
           (static_cast<uint32_t>(b[4 * i + 2]) << 16) |
           (static_cast<uint32_t>(b[4 * i + 3]) << 24);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void Unpack(uint4 v, uint8_t b[kChunk]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 16; ++i) b[i] = static_cast<uint8_t>(w[i / 4] >> (8 * (i % 4)));
}

__global__ void FillKernel(uint64_t dst, uint64_t bytes, int64_t layer, int64_t weight, uint64_t eb,
                           uint64_t tensor_offset, uint32_t kind) {
  const ChunkRange range = Chunks(dst, bytes);
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t c = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < range.count;
       c += stride) {
    const uint64_t chunk = range.first + c * kChunk;
    if (chunk >= range.va && chunk + kChunk <= range.end) {
      uint8_t values[kChunk];
      PatternChunk(layer, weight, eb, tensor_offset + (chunk - range.va), kind, values);
      *reinterpret_cast<uint4*>(chunk) = Pack(values);
    } else {
      const uint64_t begin = chunk < range.va ? range.va : chunk;
      const uint64_t end = chunk + kChunk < range.end ? chunk + kChunk : range.end;
      for (uint64_t a = begin; a < end; ++a) {
        const uint64_t x = tensor_offset + (a - range.va);
        *reinterpret_cast<uint8_t*>(a) = PatternValue(layer, weight, x / eb, x % eb, kind);
      }
    }
  }
}

__device__ __forceinline__ void ReportMismatch(uint64_t* mismatch, uint32_t seq, uint64_t index,
                                               uint8_t got) {
  const uint64_t key =
      (static_cast<uint64_t>(seq) << kMismatchSeqShift) | (index << kMismatchIndexShift) | got;
  // A cheap look first: when a whole tensor is wrong, most threads lose to an earlier key.
  if (key < *reinterpret_cast<volatile uint64_t*>(mismatch)) {
    atomicMin(reinterpret_cast<unsigned long long*>(mismatch),
              static_cast<unsigned long long>(key));
  }
}

__global__ void __launch_bounds__(kThreads, kComputeBlocksPerSm) ComputeKernel(ComputeArgs args) {
  const uint64_t started = GlobalTimerNs();
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t thread = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  uint64_t folded = 0;
  // A real MoE kernel reads its experts' weights over its whole run, not in one burst at the
  // start: pace the reads across 90% of the duration so that HBM traffic (and its interference
  // with concurrent copies) is spread the same way.
  uint64_t total_steps = 0;
  for (int r = 0; r < args.num_reads; ++r) {
    total_steps += (Chunks(args.reads[r].va, args.reads[r].bytes).count + stride - 1) / stride;
  }
  const double ns_per_step =
      total_steps > 0 ? 0.9 * static_cast<double>(args.duration_ns) / total_steps : 0.0;
  uint64_t step = 0;
  for (int r = 0; r < args.num_reads; ++r) {
    const DeviceRead& read = args.reads[r];
    const ChunkRange range = Chunks(read.va, read.bytes);
    for (uint64_t c = thread; c < range.count; c += stride, ++step) {
      if (ns_per_step > 0) {
        const uint64_t due = started + static_cast<uint64_t>(ns_per_step * step);
        while (GlobalTimerNs() < due) __nanosleep(100);
      }
      const uint64_t chunk = range.first + c * kChunk;
      uint8_t got[kChunk];
      uint64_t begin = chunk;
      uint64_t end = chunk + kChunk;
      if (chunk >= range.va && chunk + kChunk <= range.end) {
        const uint4 v = *reinterpret_cast<const uint4*>(chunk);
        folded ^= (static_cast<uint64_t>(v.x) | (static_cast<uint64_t>(v.y) << 32)) ^
                  (static_cast<uint64_t>(v.z) | (static_cast<uint64_t>(v.w) << 32));
        Unpack(v, got);
      } else {
        begin = chunk < range.va ? range.va : chunk;
        end = end < range.end ? end : range.end;
        for (uint64_t a = begin; a < end; ++a) {
          got[a - chunk] = *reinterpret_cast<const uint8_t*>(a);
          folded ^= got[a - chunk];
        }
      }
      if (read.verify) {
        uint8_t expected[kChunk];
        PatternChunk(read.layer, read.weight, read.expert_bytes, begin - range.va,
                     read.pattern_kind, expected);
        for (uint64_t a = begin; a < end; ++a) {
          if (got[a - chunk] != expected[a - begin]) {
            ReportMismatch(args.mismatch, read.seq, a - range.va, got[a - chunk]);
            break;
          }
        }
      }
    }
  }
  if (args.duration_ns > 0) {
    while (GlobalTimerNs() - started < args.duration_ns) __nanosleep(200);
  }
  if (folded == args.sink_guard) *args.sink = folded;
}

}  // namespace

int LaunchFill(void* stream, uint64_t dst, uint64_t bytes, int64_t layer, int64_t weight,
               uint64_t expert_bytes, uint64_t tensor_offset, int max_blocks,
               uint32_t pattern_kind) {
  if (bytes == 0) return cudaSuccess;
  const uint64_t chunks = (bytes + 2 * kChunk) / kChunk;
  uint64_t blocks = (chunks + kThreads - 1) / kThreads;
  if (blocks > static_cast<uint64_t>(max_blocks)) blocks = static_cast<uint64_t>(max_blocks);
  if (blocks == 0) blocks = 1;
  FillKernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      dst, bytes, layer, weight, expert_bytes == 0 ? 1 : expert_bytes, tensor_offset, pattern_kind);
  return static_cast<int>(cudaGetLastError());
}

namespace {

__global__ void SpinUntilKernel(const volatile uint32_t* flag, uint32_t value,
                                uint64_t timeout_ns) {
  const uint64_t start = GlobalTimerNs();
  while (*flag != value) {
    if (GlobalTimerNs() - start > timeout_ns) return;
  }
}

struct FlagTargets {
  uint64_t va[kMaxFlagTargets];
  int32_t count;
};

__global__ void WriteFlagsKernel(FlagTargets targets, uint32_t value) {
  const int i = static_cast<int>(threadIdx.x);
  if (i < targets.count) *reinterpret_cast<volatile uint32_t*>(targets.va[i]) = value;
  __threadfence_system();
}

}  // namespace

int LaunchSpinUntil(void* stream, uint64_t flag, uint32_t value, uint64_t timeout_ns) {
  SpinUntilKernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const volatile uint32_t*>(flag), value, timeout_ns);
  return static_cast<int>(cudaGetLastError());
}

int LaunchWriteFlags(void* stream, const uint64_t* flags, int count, uint32_t value) {
  if (count < 1 || count > kMaxFlagTargets) return static_cast<int>(cudaErrorInvalidValue);
  FlagTargets targets{};
  for (int i = 0; i < count; ++i) targets.va[i] = flags[i];
  targets.count = count;
  WriteFlagsKernel<<<1, kMaxFlagTargets, 0, static_cast<cudaStream_t>(stream)>>>(targets, value);
  return static_cast<int>(cudaGetLastError());
}

int ComputeBlocksPerSm(int* blocks_per_sm) {
  int blocks = 0;
  const cudaError_t error =
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, ComputeKernel, kThreads, 0);
  if (error != cudaSuccess) return static_cast<int>(error);
  *blocks_per_sm = blocks < 1 ? 1 : (blocks > kComputeBlocksPerSm ? kComputeBlocksPerSm : blocks);
  return cudaSuccess;
}

int LaunchCompute(void* stream, const ComputeArgs& args, int blocks) {
  ComputeKernel<<<static_cast<unsigned>(blocks > 0 ? blocks : 1), kThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(args);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace dwdp::cuda
