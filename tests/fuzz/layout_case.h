#pragma once

// The input of fuzz_layout: a small partition-and-layout problem decoded from fuzzer bytes with
// FuzzedDataProvider, and the encoder that turns readable cases into seed files
// (make_layout_seeds). One function, CodeLayoutCase, lists the fields in order for both
// directions, so the seeds cannot drift from what the target decodes.
//
// Every range is bounded so that one input runs in a few milliseconds under ASan: at most 72
// ranks, 4 weights, 8 layers; big byte counts are allowed (they exercise the overflow paths),
// and the target only builds the plans whose size it can afford.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "case_coder.h"
#include "core/util/bytes.h"

namespace dwdp::fuzz {

// How the partition numbers are chosen.
enum class PartitionShape : int {
  // Valid by construction: d, stride and overlap give size = stride + overlap and
  // N = (d-1)·stride + size. Most inputs land here, so the layout checks run often.
  kValid = 0,
  // d, size, stride and N as given, small: validation's error paths.
  kRaw = 1,
  // size and stride anywhere in int64 (N within the loader's limit): overflow in validation.
  kRawExtreme = 2,
};

// How one weight's bytes per expert are chosen.
enum class ExpertBytesKind : int {
  kSmall = 0,            // [1, 4 MiB]: edges inside one granule, many experts per page
  kGranuleFraction = 1,  // multiple · (G >> shift): aligned and half-aligned edges
  kLarge = 2,            // [1, 2^40]: the loader's limit
  kAny = 3,              // [1, 2^64): overflow paths
};

struct WeightCase {
  int kind = 0;        // ExpertBytesKind
  uint64_t value = 1;  // kSmall, kLarge, kAny: the bytes; kGranuleFraction: the multiple
  int shift = 0;       // kGranuleFraction only
};

struct LayoutCase {
  int shape = 0;  // PartitionShape
  int64_t dwdp_size = 2;
  int64_t size = 1;  // kValid: unused (stride + overlap)
  int64_t stride = 1;
  int64_t overlap = 0;                  // kValid only
  int64_t num_experts = 2;              // kValid: unused ((d-1)·stride + size)
  bool large_granularity = true;        // 2 MiB, else 64 KiB
  bool eight_granules_per_page = true;  // PG = 8·G, else PG = G
  std::vector<WeightCase> weights = {WeightCase{}};
  int64_t num_buffers = 2;
  int64_t num_layers = 1;
  // Round-robin slice size (the target checks every contention mode on every input).
  uint64_t slice_bytes = 2 * kMiB;

  uint64_t granularity() const { return large_granularity ? 2 * kMiB : 64 * kKiB; }
  uint64_t pool_page_bytes() const { return granularity() * (eight_granules_per_page ? 8 : 1); }
  int64_t partition_size() const {
    return shape == static_cast<int>(PartitionShape::kValid) ? stride + overlap : size;
  }
  int64_t partition_num_experts() const {
    return shape == static_cast<int>(PartitionShape::kValid)
               ? (dwdp_size - 1) * stride + partition_size()
               : num_experts;
  }
  uint64_t expert_bytes(const WeightCase& weight) const {
    if (weight.kind == static_cast<int>(ExpertBytesKind::kGranuleFraction)) {
      return weight.value * (granularity() >> weight.shift);
    }
    return weight.value;
  }
};

// The field order of a case, for both directions.
template <typename Coder>
void CodeLayoutCase(Coder& coder, LayoutCase& c) {
  coder.Field(c.shape, 0, 2);
  switch (static_cast<PartitionShape>(c.shape)) {
    case PartitionShape::kValid:
      coder.Field(c.dwdp_size, int64_t{2}, int64_t{64});
      coder.Field(c.stride, int64_t{1}, int64_t{512});
      coder.Field(c.overlap, int64_t{0}, int64_t{512});
      break;
    case PartitionShape::kRaw:
      coder.Field(c.dwdp_size, int64_t{-1}, int64_t{72});
      coder.Field(c.size, int64_t{-2}, int64_t{4096});
      coder.Field(c.stride, int64_t{-2}, int64_t{4096});
      coder.Field(c.num_experts, int64_t{-1}, int64_t{1} << 17);
      break;
    case PartitionShape::kRawExtreme:
      coder.Field(c.dwdp_size, int64_t{-1}, int64_t{72});
      coder.Field(c.size, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      coder.Field(c.stride, std::numeric_limits<int64_t>::min(),
                  std::numeric_limits<int64_t>::max());
      coder.Field(c.num_experts, int64_t{-1}, int64_t{1000000});
      break;
  }
  coder.Flag(c.large_granularity);
  coder.Flag(c.eight_granules_per_page);
  coder.Count(c.weights, 1, 4);
  for (WeightCase& weight : c.weights) {
    coder.Field(weight.kind, 0, 3);
    switch (static_cast<ExpertBytesKind>(weight.kind)) {
      case ExpertBytesKind::kSmall:
        coder.Field(weight.value, uint64_t{1}, 4 * kMiB);
        break;
      case ExpertBytesKind::kGranuleFraction:
        coder.Field(weight.shift, 0, 12);
        coder.Field(weight.value, uint64_t{1}, uint64_t{64});
        break;
      case ExpertBytesKind::kLarge:
        coder.Field(weight.value, uint64_t{1}, uint64_t{1} << 40);
        break;
      case ExpertBytesKind::kAny:
        coder.Field(weight.value, uint64_t{1}, std::numeric_limits<uint64_t>::max());
        break;
    }
  }
  coder.Field(c.num_buffers, int64_t{2}, int64_t{8});
  coder.Field(c.num_layers, int64_t{1}, int64_t{8});
  coder.Field(c.slice_bytes, uint64_t{1}, uint64_t{1} << 36);
}

inline LayoutCase DecodeLayoutCase(FuzzedDataProvider& provider) {
  LayoutCase c;
  CaseReader reader(provider);
  CodeLayoutCase(reader, c);
  return c;
}

inline std::string EncodeLayoutCase(LayoutCase c) {
  CaseWriter writer;
  CodeLayoutCase(writer, c);
  return writer.Bytes();
}

}  // namespace dwdp::fuzz
