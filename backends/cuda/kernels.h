#pragma once

// The device kernels of the cuda backend (kernels.cu) and their host launchers. Plain C++ on
// both sides of nvcc: no absl, no CUDA types (streams travel as void*, errors as cudaError_t
// values in an int).

#include <cstdint>

namespace dwdp::cuda {

// Reads per compute launch; a KernelLaunch with more is split into several launches.
inline constexpr int kMaxReadsPerLaunch = 16;

// A verification mismatch is one 64-bit key, so that atomicMin keeps the first one:
//   [63:48] the read's sequence number (order of verified reads since the last Synchronize)
//   [47:8]  the byte index within the read (tensor offset)
//   [7:0]   the byte found there
inline constexpr int kMismatchSeqShift = 48;
inline constexpr int kMismatchIndexShift = 8;
inline constexpr uint64_t kMaxVerifiedReadBytes = 1ull << 40;
// 0xFFFF is never used, so that no real key equals kNoMismatch.
inline constexpr uint32_t kMaxVerifySeq = 0xFFFE;
inline constexpr uint64_t kNoMismatch = ~0ull;

struct DeviceRead {
  uint64_t va = 0;
  uint64_t bytes = 0;
  int64_t layer = 0;
  int64_t weight = 0;
  uint64_t expert_bytes = 1;
  uint32_t verify = 0;
  uint32_t seq = 0;
  uint32_t pattern_kind = 0;  // core/pattern.h
};

struct ComputeArgs {
  DeviceRead reads[kMaxReadsPerLaunch];
  int32_t num_reads = 0;
  uint64_t duration_ns = 0;      // the kernel runs at least this long (globaltimer)
  uint64_t* mismatch = nullptr;  // one key, kNoMismatch when clean
  uint64_t* sink = nullptr;      // written only when the XOR of everything read equals guard
  uint64_t sink_guard = 0;
};

// Writes the pattern of tensor bytes [tensor_offset, tensor_offset + bytes) of (layer, weight,
// expert_bytes) at dst. Returns the launch's cudaError_t value.
int LaunchFill(void* stream, uint64_t dst, uint64_t bytes, int64_t layer, int64_t weight,
               uint64_t expert_bytes, uint64_t tensor_offset, int max_blocks,
               uint32_t pattern_kind = 0);

// Reads (and, where asked, verifies) every byte of every read, then keeps running until
// duration_ns has passed since it started. Returns the launch's cudaError_t value.
int LaunchCompute(void* stream, const ComputeArgs& args, int blocks);

// The start line of the calibration's synchronised phases (Streams::WaitFlag / WriteFlags).
// One thread polls the 32-bit word at `flag` (local or a peer's, over NVLink) until it equals
// `value`; it gives up after `timeout_ns` so that a rank that never writes cannot hang the GPU
// (the phase's times then show the late start). Returns the launch's cudaError_t value.
int LaunchSpinUntil(void* stream, uint64_t flag, uint32_t value, uint64_t timeout_ns);
// Writes `value` into the 32-bit word at each of `flags[0 .. count)`, one thread each, then
// fences so that every reader sees it. At most kMaxFlagTargets words.
inline constexpr int kMaxFlagTargets = 128;
int LaunchWriteFlags(void* stream, const uint64_t* flags, int count, uint32_t value);

// How many blocks of the compute kernel fit on one SM at once (at most kComputeBlocksPerSm).
// Launching no more than that per SM keeps every block resident from the start, so that the
// duration is measured from a common start. Returns a cudaError_t value.
inline constexpr int kComputeBlocksPerSm = 4;
int ComputeBlocksPerSm(int* blocks_per_sm);

}  // namespace dwdp::cuda
