// How fast the simulator runs a DeepSeek-V3-sized DWDP forward in timing mode.
//
// The world is built once per benchmark through the driver, as the pipeline would: 8 ranks,
// 58 MoE layers, 4 NVFP4 weights, 32 experts per rank; per (layer, weight) a local handle
// exported to every peer and mapped there whole, and a composite VA of pool pages (2 slots of
// 16 MiB pages) around the local handle. A forward is the event contract of DWDP_SPEC §4: per
// layer 28 copies (7 owners x 4 weights, rotate order) on the copy stream, one kernel reading
// the 4 composite tensors on the compute stream, and the ready/free events.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "backends/sim/sim_world.h"
#include "core/config/scenario.h"
#include "core/util/bytes.h"

namespace dwdp::sim {
namespace {

constexpr int64_t kRanks = 8;
constexpr int64_t kLayers = 58;
constexpr int64_t kExperts = 256;
constexpr int64_t kExpertsPerRank = kExperts / kRanks;
constexpr int64_t kSlots = 2;
constexpr uint64_t kPoolPage = 16 * kMiB;
constexpr uint64_t kExpertBytes[] = {14680064, 7340032, 1835008, 917504};
constexpr int64_t kWeights = 4;

void Check(const absl::Status& status) {
  if (!status.ok()) {
    fprintf(stderr, "sim_bench setup failed: %s\n", status.ToString().c_str());
    std::abort();
  }
}
template <typename T>
T Check(absl::StatusOr<T> value) {
  Check(value.status());
  return *std::move(value);
}

HardwareProfile Gb200LikeProfile() {
  const auto q = [](double value) { return Quantity{value, Provenance::kAssumed}; };
  HardwareProfile p;
  p.name = "gb200-like";
  p.granularity = q(2 * kMiB);
  p.nvlink_bw = q(900e9);
  p.peer_copy_bw = q(765e9);
  p.copy_latency_ns = q(4000);
  p.local_copy_bw = q(3e12);
  p.hbm_bw = q(8e12);
  p.hbm_bytes = q(186e9);
  p.compute_slowdown = q(0.1);
  p.concurrent_pull_efficiency = q(0.5);
  p.host_issue_ns = q(2000);
  p.event_ns = q(500);
  return p;
}

struct Copy {
  uint64_t dst_offset;  // tensor offset
  int64_t owner;
  uint64_t bytes;
};

struct RankSetup {
  std::vector<std::vector<DevPtr>> composite;  // [layer][weight]: VA of tensor byte 0
  std::vector<Copy> copies[kWeights];
  std::vector<std::vector<std::vector<DevPtr>>> views;  // [layer][weight][owner]
  StreamId compute = 0;
  StreamId copy = 0;
  EventId ready[kSlots] = {};
  EventId free_slot[kSlots] = {};
};

struct DeepSeekWorld {
  std::unique_ptr<SimWorld> world;
  std::vector<RankSetup> ranks;
  int64_t ops_per_forward = 0;
};

std::unique_ptr<DeepSeekWorld> BuildWorld(bool check_hazards) {
  SimOptions options;
  options.check_hazards = check_hazards;
  auto out = std::make_unique<DeepSeekWorld>();
  out->world = Check(SimWorld::Create(Gb200LikeProfile(), kRanks, options));
  SimWorld& world = *out->world;
  out->ranks.resize(kRanks);

  // Local handles, exported.
  std::vector<std::vector<std::vector<Handle>>> local(kRanks);
  std::vector<std::vector<std::vector<SharedHandle>>> shared(kRanks);
  for (int64_t r = 0; r < kRanks; ++r) {
    local[r].resize(kLayers);
    shared[r].resize(kLayers);
    for (int64_t l = 0; l < kLayers; ++l) {
      for (int64_t w = 0; w < kWeights; ++w) {
        const Handle h =
            Check(world.driver(r).Create(kExpertsPerRank * kExpertBytes[w], HandleKind::kPosixFd));
        local[r][l].push_back(h);
        shared[r][l].push_back(Check(world.driver(r).Export(h)));
      }
    }
  }
  for (int64_t r = 0; r < kRanks; ++r) {
    SimDriver& driver = world.driver(r);
    RankSetup& rank = out->ranks[r];
    // Peer views.
    rank.views.assign(kLayers,
                      std::vector<std::vector<DevPtr>>(kWeights, std::vector<DevPtr>(kRanks, 0)));
    for (int64_t l = 0; l < kLayers; ++l) {
      for (int64_t w = 0; w < kWeights; ++w) {
        for (int64_t p = 0; p < kRanks; ++p) {
          if (p == r) continue;
          const uint64_t bytes = kExpertsPerRank * kExpertBytes[w];
          const Handle imported = Check(driver.Import(shared[p][l][w]));
          const DevPtr va = Check(driver.Reserve(bytes, 0));
          Check(driver.Map(va, bytes, imported, 0));
          Check(driver.SetAccess(va, bytes));
          rank.views[l][w][p] = va;
        }
      }
    }
    // Pool: per weight pre pages then post pages, the same physical pages for every layer of a
    // slot.
    uint64_t pre_size[kWeights];
    uint64_t post_size[kWeights];
    uint64_t slot_pages = 0;
    for (int64_t w = 0; w < kWeights; ++w) {
      const uint64_t local_bytes = kExpertsPerRank * kExpertBytes[w];
      pre_size[w] = *AlignUp(r * local_bytes, kPoolPage);
      post_size[w] = *AlignUp((kRanks - 1 - r) * local_bytes, kPoolPage);
      slot_pages += (pre_size[w] + post_size[w]) / kPoolPage;
    }
    std::vector<std::vector<Handle>> pages(kSlots);
    for (int64_t s = 0; s < kSlots; ++s) {
      for (uint64_t i = 0; i < slot_pages; ++i) {
        pages[s].push_back(Check(driver.Create(kPoolPage, HandleKind::kNone)));
      }
    }
    rank.composite.assign(kLayers, std::vector<DevPtr>(kWeights, 0));
    for (int64_t l = 0; l < kLayers; ++l) {
      uint64_t page = 0;
      for (int64_t w = 0; w < kWeights; ++w) {
        const uint64_t local_bytes = kExpertsPerRank * kExpertBytes[w];
        const uint64_t total = pre_size[w] + local_bytes + post_size[w];
        const DevPtr base = Check(driver.Reserve(total, 0));
        for (uint64_t off = 0; off < pre_size[w]; off += kPoolPage) {
          Check(driver.Map(base + off, kPoolPage, pages[l % kSlots][page++], 0));
        }
        Check(driver.Map(base + pre_size[w], local_bytes, local[r][l][w], 0));
        for (uint64_t off = 0; off < post_size[w]; off += kPoolPage) {
          Check(driver.Map(base + pre_size[w] + local_bytes + off, kPoolPage,
                           pages[l % kSlots][page++], 0));
        }
        Check(driver.SetAccess(base, total));
        const uint64_t pre_padding = pre_size[w] - r * local_bytes;
        rank.composite[l][w] = base + pre_padding;
      }
    }
    // Copy plan (rotate): owners r+1, r+2, ... each with all weights.
    for (int64_t w = 0; w < kWeights; ++w) {
      for (int64_t j = 1; j < kRanks; ++j) {
        const int64_t owner = (r + j) % kRanks;
        rank.copies[w].push_back(Copy{owner * kExpertsPerRank * kExpertBytes[w], owner,
                                      kExpertsPerRank * kExpertBytes[w]});
      }
    }
    Streams& streams = world.streams(r);
    rank.compute = Check(streams.CreateStream("compute"));
    rank.copy = Check(streams.CreateStream("copy"));
    for (int64_t s = 0; s < kSlots; ++s) {
      rank.ready[s] = Check(streams.CreateEvent());
      rank.free_slot[s] = Check(streams.CreateEvent());
      Check(streams.Record(rank.free_slot[s], rank.compute, OpTag{OpKind::kRecord}));
    }
  }
  Check(world.SynchronizeAll());
  Check(world.Barrier());
  return out;
}

void EnqueueForward(DeepSeekWorld& ds, int64_t forward) {
  SimWorld& world = *ds.world;
  int64_t ops = 0;
  for (int64_t r = 0; r < kRanks; ++r) {
    RankSetup& rank = ds.ranks[r];
    Streams& streams = world.streams(r);
    const auto prefetch = [&](int64_t layer) {
      const int64_t s = layer % kSlots;
      OpTag tag{OpKind::kWait, layer, -1, -1, s, forward};
      Check(streams.Wait(rank.copy, rank.free_slot[s], tag));
      tag.kind = OpKind::kCopy;
      for (int64_t j = 0; j < kRanks - 1; ++j) {
        for (int64_t w = 0; w < kWeights; ++w) {
          const Copy& c = rank.copies[w][j];
          tag.weight = w;
          tag.peer = c.owner;
          Check(streams.Copy(rank.composite[layer][w] + c.dst_offset, rank.views[layer][w][c.owner],
                             c.bytes, rank.copy, tag));
          ++ops;
        }
      }
      tag.kind = OpKind::kRecord;
      tag.weight = tag.peer = -1;
      Check(streams.Record(rank.ready[s], rank.copy, tag));
      ops += 2;
    };
    for (int64_t layer = 0; layer < kSlots; ++layer) prefetch(layer);
    for (int64_t layer = 0; layer < kLayers; ++layer) {
      const int64_t s = layer % kSlots;
      OpTag tag{OpKind::kWait, layer, -1, -1, s, forward};
      Check(streams.Wait(rank.compute, rank.ready[s], tag));
      KernelLaunch kernel;
      kernel.name = "moe";
      kernel.duration_ns = 9e6;
      for (int64_t w = 0; w < kWeights; ++w) {
        kernel.reads.push_back(KernelRead{rank.composite[layer][w], kExperts * kExpertBytes[w]});
      }
      tag.kind = OpKind::kCompute;
      Check(streams.Launch(kernel, rank.compute, tag));
      tag.kind = OpKind::kRecord;
      Check(streams.Record(rank.free_slot[s], rank.compute, tag));
      ops += 3;
      if (layer + kSlots < kLayers) prefetch(layer + kSlots);
    }
  }
  ds.ops_per_forward = ops;
}

void BM_DeepSeekV3Forward(benchmark::State& state) {
  const bool hazards = state.range(0) != 0;
  std::unique_ptr<DeepSeekWorld> ds = BuildWorld(hazards);
  int64_t forward = 0;
  double simulated_ns = 0;
  for (auto _ : state) {
    const double start = ds->world->now_ns();
    EnqueueForward(*ds, forward++);
    Check(ds->world->SynchronizeAll());
    for (int64_t r = 0; r < kRanks; ++r)
      benchmark::DoNotOptimize(ds->world->streams(r).TakeTimeline());
    simulated_ns = ds->world->now_ns() - start;
  }
  if (!ds->world->hazards().empty()) {
    state.SkipWithError(ds->world->hazards()[0].ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * ds->ops_per_forward);
  state.counters["ops_per_forward"] = static_cast<double>(ds->ops_per_forward);
  state.counters["simulated_forward_ms"] = simulated_ns / 1e6;
  state.counters["copy_GB_per_rank"] =
      static_cast<double>(ds->world->link_stats(0).ingress_bytes) / forward / 1e9;
}
BENCHMARK(BM_DeepSeekV3Forward)->ArgName("hazards")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_DeepSeekV3Setup(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(BuildWorld(state.range(0) != 0));
}
BENCHMARK(BM_DeepSeekV3Setup)
    ->ArgName("hazards")
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2);

}  // namespace
}  // namespace dwdp::sim

BENCHMARK_MAIN();
