// Writes the seed corpus of fuzz_layout: the acceptance cases of DWDP_SPEC §1/§2/§7 and a few
// edge shapes, encoded as the bytes the target decodes.
//   make_layout_seeds DIR            writes the seeds into DIR
//   make_layout_seeds --print FILE   prints the case FILE decodes to (to read a crash input)
//
// The encoding mirrors FuzzedDataProvider (layout_case.h); every seed is decoded again here and
// must re-encode to the same bytes, so a seed file always means the case named by its file.

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "layout_case.h"
#include "seed_writer.h"

namespace dwdp::fuzz {
namespace {

// DeepSeek-V3 NVFP4 bytes per expert (DWDP_SPEC §2).
const std::vector<uint64_t> kDeepSeekBytes = {14680064, 7340032, 1835008, 917504};

WeightCase Bytes(uint64_t bytes) {
  // Exact byte counts up to 2^40 travel as kLarge.
  return WeightCase{static_cast<int>(ExpertBytesKind::kLarge), bytes, 0};
}

LayoutCase Valid(int64_t d, int64_t size, int64_t stride, std::vector<WeightCase> weights) {
  LayoutCase c;
  c.shape = static_cast<int>(PartitionShape::kValid);
  c.dwdp_size = d;
  c.stride = stride;
  c.overlap = size - stride;
  c.weights = std::move(weights);
  c.num_layers = 8;
  return c;
}

LayoutCase DeepSeek(int64_t d, int64_t size, int64_t stride) {
  std::vector<WeightCase> weights;
  for (uint64_t bytes : kDeepSeekBytes) weights.push_back(Bytes(bytes));
  return Valid(d, size, stride, weights);
}

LayoutCase Raw(int64_t d, int64_t size, int64_t stride, int64_t n) {
  LayoutCase c;
  c.shape = static_cast<int>(PartitionShape::kRaw);
  c.dwdp_size = d;
  c.size = size;
  c.stride = stride;
  c.num_experts = n;
  c.weights = {Bytes(917504)};
  return c;
}

std::vector<std::pair<std::string, LayoutCase>> Seeds() {
  std::vector<std::pair<std::string, LayoutCase>> seeds;
  // §2 golden table and §7 valid partitions, DeepSeek-V3 NVFP4 bytes, G = 2 MiB, PG = 16 MiB.
  seeds.emplace_back("dsv3-d4-64x64", DeepSeek(4, 64, 64));
  seeds.emplace_back("dsv3-d3-86x85", DeepSeek(3, 86, 85));
  seeds.emplace_back("dsv3-d5-52x51", DeepSeek(5, 52, 51));
  seeds.emplace_back("dsv3-d7-40x36", DeepSeek(7, 40, 36));
  seeds.emplace_back("dsv3-d8-32x32", DeepSeek(8, 32, 32));
  seeds.emplace_back("dsv3-d4-70x62-redundant", DeepSeek(4, 70, 62));
  seeds.emplace_back("moe72-d2-36x36", Valid(2, 36, 36, {Bytes(3 * kMiB)}));
  {
    // §7: d=2, 4/4, N=8 with tiny experts: all of N·eb inside one 64 KiB granule.
    LayoutCase c = Valid(2, 4, 4, {Bytes(1000)});
    c.large_granularity = false;
    c.eight_granules_per_page = false;
    seeds.emplace_back("d2-4x4-tiny-experts-64k", c);
  }
  {
    // Experts of half and a sixteenth of a granule: edges at granule halves.
    LayoutCase c = Valid(3, 6, 5, {WeightCase{1, 1, 1}, WeightCase{1, 3, 4}});
    seeds.emplace_back("d3-6x5-granule-fractions", c);
  }
  {
    // Many small experts per page and a round-robin slice of one 4 KiB page.
    LayoutCase c = Valid(4, 9, 7, {Bytes(4097), Bytes(123457)});
    c.slice_bytes = 4096;
    c.num_buffers = 3;
    seeds.emplace_back("d4-9x7-odd-bytes-rr4k-3buf", c);
  }
  {
    LayoutCase c = DeepSeek(4, 64, 64);
    c.num_layers = 1;
    c.num_buffers = 8;
    seeds.emplace_back("dsv3-d4-one-layer-8buf", c);
  }
  {
    // N·eb does not fit 64 bits: a clean overflow error.
    LayoutCase c = Valid(
        4, 64, 64, {WeightCase{static_cast<int>(ExpertBytesKind::kAny), uint64_t{1} << 62, 0}});
    seeds.emplace_back("overflow-eb-2p62", c);
  }
  {
    // Just under the overflow boundary with a large group.
    LayoutCase c =
        Valid(64, 9, 8,
              {WeightCase{static_cast<int>(ExpertBytesKind::kAny), (uint64_t{1} << 54) + 1, 0}});
    seeds.emplace_back("d64-near-overflow", c);
  }
  // §7 validation failures (d=4, N=256 unless said).
  seeds.emplace_back("invalid-size-0", Raw(4, 0, 64, 256));
  seeds.emplace_back("invalid-size-neg", Raw(4, -2, 64, 256));
  seeds.emplace_back("invalid-stride-0", Raw(4, 64, 0, 256));
  seeds.emplace_back("invalid-stride-neg", Raw(4, 64, -1, 256));
  seeds.emplace_back("invalid-gap", Raw(4, 64, 128, 256));
  seeds.emplace_back("invalid-coverage-32x32", Raw(4, 32, 32, 256));
  seeds.emplace_back("invalid-tail-d3-86x86", Raw(3, 86, 86, 256));
  seeds.emplace_back("invalid-size-first", Raw(4, 0, 128, 256));
  seeds.emplace_back("invalid-d1", Raw(1, 256, 256, 256));
  seeds.emplace_back("invalid-d-exceeds-n", Raw(9, 1, 1, 8));
  {
    LayoutCase c = Raw(4, int64_t{1} << 62, int64_t{1} << 62, 256);
    c.shape = static_cast<int>(PartitionShape::kRawExtreme);
    seeds.emplace_back("invalid-huge-size-stride", c);
  }
  {
    LayoutCase c = Raw(2, 36, 36, 72);
    seeds.emplace_back("raw-valid-d2-36x36", c);
  }
  return seeds;
}

void Print(const LayoutCase& c) {
  static const char* const kShapes[] = {"valid", "raw", "raw-extreme"};
  std::printf("shape %s: d=%lld", kShapes[c.shape], static_cast<long long>(c.dwdp_size));
  if (c.shape == static_cast<int>(PartitionShape::kValid)) {
    std::printf(" stride=%lld overlap=%lld", static_cast<long long>(c.stride),
                static_cast<long long>(c.overlap));
  }
  std::printf(" -> size=%lld stride=%lld N=%lld\n", static_cast<long long>(c.partition_size()),
              static_cast<long long>(c.stride), static_cast<long long>(c.partition_num_experts()));
  std::printf("G=%llu PG=%llu buffers=%lld layers=%lld slice=%llu\n",
              static_cast<unsigned long long>(c.granularity()),
              static_cast<unsigned long long>(c.pool_page_bytes()),
              static_cast<long long>(c.num_buffers), static_cast<long long>(c.num_layers),
              static_cast<unsigned long long>(c.slice_bytes));
  for (const WeightCase& w : c.weights) {
    std::printf("weight kind %d: %llu bytes per expert\n", w.kind,
                static_cast<unsigned long long>(c.expert_bytes(w)));
  }
}

}  // namespace
}  // namespace dwdp::fuzz

int main(int argc, char** argv) {
  using namespace dwdp::fuzz;
  return SeedWriterMain(
      argc, argv, Seeds(), [](const LayoutCase& c) { return EncodeLayoutCase(c); },
      [](FuzzedDataProvider& provider) { return DecodeLayoutCase(provider); },
      [](const LayoutCase& c) { Print(c); });
}
