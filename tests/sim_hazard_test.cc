// The hazard checker (SIMULATOR.md §4): races between unordered accesses to overlapping bytes,
// happens-before from stream order, events, host synchronisation and barriers.

#define BOOST_TEST_MODULE sim_hazard
#include <boost/test/unit_test.hpp>

#include "backends/sim/sim_world.h"
#include "tests/support/sim_fixtures.h"

namespace dwdp::testing {
namespace {

using sim::Hazard;
using sim::HazardKind;
using sim::SimOptions;
using sim::SimWorld;

constexpr uint64_t kG = 2 * kTestMiB;

// One rank with a source and a destination buffer, a compute and a copy stream.
struct OneRank {
  std::unique_ptr<SimWorld> world;
  Buffer source;
  Buffer target;
  StreamId compute = 0;
  StreamId copy = 0;
  Streams* streams = nullptr;
};

OneRank MakeOneRank(const SimOptions& options = {}) {
  OneRank setup;
  setup.world = MakeWorld(RoundProfile(), 1, options);
  setup.source = MakeBuffer(setup.world->driver(0), kG);
  setup.target = MakeBuffer(setup.world->driver(0), kG);
  setup.streams = &setup.world->streams(0);
  setup.compute = ValueOrDie(setup.streams->CreateStream("compute"));
  setup.copy = ValueOrDie(setup.streams->CreateStream("copy"));
  return setup;
}

KernelLaunch ReadKernel(DevPtr va, uint64_t bytes, double ns = 1000) {
  return KernelLaunch{"moe", {KernelRead{va, bytes}}, ns};
}

OpTag CopyTag(int64_t layer, int64_t slot) {
  OpTag tag = Tag(OpKind::kCopy, layer);
  tag.slot = slot;
  tag.weight = 0;
  tag.peer = 1;
  return tag;
}

BOOST_AUTO_TEST_CASE(copy_over_a_buffer_a_kernel_reads_without_an_edge_is_write_after_read) {
  OneRank s = MakeOneRank();
  DWDP_REQUIRE_OK(
      s.streams->Launch(ReadKernel(s.target.va, kG), s.compute, Tag(OpKind::kCompute, 1)));
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va, s.source.va, kTestMiB, s.copy, CopyTag(3, 1)));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  const auto& hazards = s.world->hazards();
  BOOST_TEST_REQUIRE(hazards.size() == 1u);
  const Hazard& h = hazards[0];
  BOOST_TEST_MESSAGE(h.ToString());
  BOOST_TEST((h.kind == HazardKind::kWriteAfterRead));
  BOOST_TEST(h.first.stream_name == "compute");
  BOOST_TEST((h.first.access == sim::AccessKind::kRead));
  BOOST_TEST(h.first.tag.layer == 1);
  BOOST_TEST(h.second.stream_name == "copy");
  BOOST_TEST((h.second.access == sim::AccessKind::kWrite));
  BOOST_TEST(h.second.tag.layer == 3);
  BOOST_TEST(h.second.tag.slot == 1);
  BOOST_TEST(h.begin == 0u);
  BOOST_TEST(h.end == kTestMiB);
  BOOST_TEST(h.overlap_bytes == kTestMiB);
  BOOST_TEST(h.first.va == s.target.va);
  BOOST_TEST(h.ToString().find("write-after-read") != std::string::npos);
  BOOST_TEST(h.ToString().find("layer 3 weight 0 slot 1 peer 1") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_event_edge_from_the_kernel_to_the_copy_removes_the_race) {
  OneRank s = MakeOneRank();
  const EventId free_slot = ValueOrDie(s.streams->CreateEvent());
  DWDP_REQUIRE_OK(
      s.streams->Launch(ReadKernel(s.target.va, kG), s.compute, Tag(OpKind::kCompute, 1)));
  DWDP_REQUIRE_OK(s.streams->Record(free_slot, s.compute, Tag(OpKind::kRecord, 1)));
  DWDP_REQUIRE_OK(s.streams->Wait(s.copy, free_slot, Tag(OpKind::kWait, 3)));
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va, s.source.va, kTestMiB, s.copy, CopyTag(3, 1)));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  BOOST_TEST(s.world->hazards().empty());
}

BOOST_AUTO_TEST_CASE(a_kernel_reading_before_the_copy_completes_is_read_after_write) {
  OneRank s = MakeOneRank();
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va, s.source.va, kG, s.copy, CopyTag(3, 1)));
  DWDP_REQUIRE_OK(
      s.streams->Launch(ReadKernel(s.target.va + 4096, 4096), s.compute, Tag(OpKind::kCompute, 3)));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  const auto& hazards = s.world->hazards();
  BOOST_TEST_REQUIRE(hazards.size() == 1u);
  BOOST_TEST_MESSAGE(hazards[0].ToString());
  BOOST_TEST((hazards[0].kind == HazardKind::kReadAfterWrite));
  BOOST_TEST(hazards[0].first.stream_name == "copy");
  BOOST_TEST(hazards[0].second.stream_name == "compute");
  BOOST_TEST(hazards[0].begin == 4096u);
  BOOST_TEST(hazards[0].end == 8192u);
  BOOST_TEST(hazards[0].second.va == s.target.va + 4096);

  // The same with the wait on `ready`: no race.
  OneRank ok = MakeOneRank();
  const EventId ready = ValueOrDie(ok.streams->CreateEvent());
  DWDP_REQUIRE_OK(ok.streams->Copy(ok.target.va, ok.source.va, kG, ok.copy, CopyTag(3, 1)));
  DWDP_REQUIRE_OK(ok.streams->Record(ready, ok.copy, Tag(OpKind::kRecord, 3)));
  DWDP_REQUIRE_OK(ok.streams->Wait(ok.compute, ready, Tag(OpKind::kWait, 3)));
  DWDP_REQUIRE_OK(
      ok.streams->Launch(ReadKernel(ok.target.va, kG), ok.compute, Tag(OpKind::kCompute, 3)));
  DWDP_REQUIRE_OK(ok.streams->Synchronize());
  BOOST_TEST(ok.world->hazards().empty());
}

BOOST_AUTO_TEST_CASE(accesses_are_compared_by_byte_not_by_page) {
  OneRank s = MakeOneRank();
  const StreamId third = ValueOrDie(s.streams->CreateStream("third"));
  // Adjacent byte ranges of one 2 MiB page, written from two unordered streams: fine.
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va, s.source.va, 1000, s.copy, CopyTag(1, 0)));
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va + 1000, s.source.va, 1000, s.compute, CopyTag(2, 0)));
  BOOST_TEST(s.world->hazards().empty());
  // Two bytes that straddle the boundary collide with the second copy's last byte only.
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va + 1999, s.source.va, 2, third, CopyTag(3, 0)));
  const auto& hazards = s.world->hazards();
  BOOST_TEST_REQUIRE(hazards.size() == 1u);
  BOOST_TEST((hazards[0].kind == HazardKind::kWriteAfterWrite));
  BOOST_TEST(hazards[0].begin == 1999u);
  BOOST_TEST(hazards[0].end == 2000u);
  BOOST_TEST(hazards[0].first.tag.layer == 2);
  DWDP_REQUIRE_OK(s.streams->Synchronize());
}

BOOST_AUTO_TEST_CASE(a_peer_reading_its_range_while_the_owner_rewrites_edge_bytes_is_no_race) {
  auto world = MakeWorld(RoundProfile(), 2);
  const Buffer local = MakeBuffer(world->driver(0), kG);  // rank 0's handle
  const Buffer scratch0 = MakeBuffer(world->driver(0), kG);
  const Buffer view = MapPeerView(*world, 0, local, 1);
  const Buffer pool1 = MakeBuffer(world->driver(1), kG);
  const StreamId x0 = ValueOrDie(world->streams(0).CreateStream("copy"));
  const StreamId x1 = ValueOrDie(world->streams(1).CreateStream("copy"));
  // Rank 0 rewrites the leading edge [0, 3000) of its handle; rank 1 pulls rank 0's experts,
  // which start at byte 3000 of the same page.
  DWDP_REQUIRE_OK(world->streams(0).Copy(local.va, scratch0.va, 3000, x0, CopyTag(5, 0)));
  DWDP_REQUIRE_OK(world->streams(1).Copy(pool1.va, view.va + 3000, 50000, x1, CopyTag(5, 0)));
  BOOST_TEST(world->hazards().empty());
  // One byte more and it is a race, across ranks.
  DWDP_REQUIRE_OK(world->streams(1).Copy(pool1.va, view.va + 2999, 1, x1, CopyTag(6, 0)));
  BOOST_TEST_REQUIRE(world->hazards().size() == 1u);
  BOOST_TEST((world->hazards()[0].kind == HazardKind::kReadAfterWrite));
  BOOST_TEST(world->hazards()[0].first.rank == 0);
  BOOST_TEST(world->hazards()[0].second.rank == 1);
  BOOST_TEST(world->hazards()[0].owner_gpu == 0);
  DWDP_REQUIRE_OK(world->SynchronizeAll());
}

BOOST_AUTO_TEST_CASE(host_synchronize_orders_earlier_work_before_later_work) {
  OneRank s = MakeOneRank();
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va, s.source.va, kG, s.copy, CopyTag(3, 1)));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  DWDP_REQUIRE_OK(
      s.streams->Launch(ReadKernel(s.target.va, kG), s.compute, Tag(OpKind::kCompute, 3)));
  // And a stream created after the synchronisation inherits it too.
  const StreamId late = ValueOrDie(s.streams->CreateStream("late"));
  DWDP_REQUIRE_OK(s.streams->Launch(ReadKernel(s.target.va, kG), late, Tag(OpKind::kCompute, 3)));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  BOOST_TEST(s.world->hazards().empty());
}

// Rank 0 fills its buffer; rank 1 then pulls it through a peer view.
struct FillThenPull {
  bool synchronize_owner = true;
  enum { kWorldBarrier, kCommBarrier, kNoBarrier } barrier = kWorldBarrier;
};

size_t RacesIn(const FillThenPull& plan) {
  auto world = MakeWorld(RoundProfile(), 2);
  const Buffer local = MakeBuffer(world->driver(0), kG);
  const Buffer view = MapPeerView(*world, 0, local, 1);
  const Buffer dst = MakeBuffer(world->driver(1), kG);
  const StreamId fill = ValueOrDie(world->streams(0).CreateStream("fill"));
  const StreamId copy = ValueOrDie(world->streams(1).CreateStream("copy"));
  DWDP_REQUIRE_OK(
      world->streams(0).Fill(local.va, kG, PatternRef{0, 0, 4096}, 0, fill, Tag(OpKind::kFill)));
  if (plan.synchronize_owner) DWDP_REQUIRE_OK(world->streams(0).Synchronize());
  switch (plan.barrier) {
    case FillThenPull::kWorldBarrier:
      DWDP_REQUIRE_OK(world->Barrier());
      break;
    case FillThenPull::kCommBarrier:
      BOOST_TEST(world->comm(0).Barrier().code() == absl::StatusCode::kUnavailable);
      DWDP_REQUIRE_OK(world->comm(1).Barrier());
      DWDP_REQUIRE_OK(world->comm(0).Barrier());
      break;
    case FillThenPull::kNoBarrier:
      break;
  }
  DWDP_REQUIRE_OK(world->streams(1).Copy(dst.va, view.va, kG, copy, Tag(OpKind::kCopy)));
  DWDP_REQUIRE_OK(world->SynchronizeAll());
  for (const Hazard& h : world->hazards()) BOOST_TEST_MESSAGE(h.ToString());
  return world->hazards().size();
}

BOOST_AUTO_TEST_CASE(a_barrier_after_synchronize_orders_ranks) {
  BOOST_TEST(RacesIn({true, FillThenPull::kWorldBarrier}) == 0u);
  BOOST_TEST(RacesIn({true, FillThenPull::kCommBarrier}) == 0u);
  // A barrier without synchronizing first: the fill may still be running.
  BOOST_TEST(RacesIn({false, FillThenPull::kWorldBarrier}) == 1u);
  // Synchronized, but rank 1 never learnt about it.
  BOOST_TEST(RacesIn({true, FillThenPull::kNoBarrier}) == 1u);
}

BOOST_AUTO_TEST_CASE(races_are_found_even_when_the_timing_happens_to_order_them) {
  OneRank s = MakeOneRank();
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va, s.source.va, 4096, s.copy, CopyTag(3, 1)));
  // A long kernel first: the read below runs long after the copy ended, yet nothing orders it.
  DWDP_REQUIRE_OK(s.streams->Launch(KernelLaunch{"attention", {}, 1e6}, s.compute,
                                    Tag(OpKind::kCompute, 3, "attention")));
  DWDP_REQUIRE_OK(
      s.streams->Launch(ReadKernel(s.target.va, 4096), s.compute, Tag(OpKind::kCompute, 3, "moe")));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  const auto timeline = s.streams->TakeTimeline();
  double copy_end = 0;
  double read_start = 0;
  for (const TimedOp& op : timeline) {
    if (op.tag.kind == OpKind::kCopy) copy_end = op.end_ns;
    if (op.tag.label == "moe") read_start = op.start_ns;
  }
  BOOST_TEST(read_start > copy_end);
  BOOST_TEST_REQUIRE(s.world->hazards().size() == 1u);
  BOOST_TEST((s.world->hazards()[0].kind == HazardKind::kReadAfterWrite));
}

BOOST_AUTO_TEST_CASE(one_report_per_pair_of_operations) {
  OneRank s = MakeOneRank();
  const Handle a = ValueOrDie(s.world->driver(0).Create(kG, HandleKind::kNone));
  const Handle b = ValueOrDie(s.world->driver(0).Create(kG, HandleKind::kNone));
  const DevPtr composite = ValueOrDie(s.world->driver(0).Reserve(2 * kG, 0));
  DWDP_REQUIRE_OK(s.world->driver(0).Map(composite, kG, a, 0));
  DWDP_REQUIRE_OK(s.world->driver(0).Map(composite + kG, kG, b, 0));
  DWDP_REQUIRE_OK(s.world->driver(0).SetAccess(composite, 2 * kG));
  // One copy over two pages, one unordered read of both: one race over 4 MiB.
  DWDP_REQUIRE_OK(s.streams->Copy(composite, s.source.va, kG, s.copy, CopyTag(1, 0)));
  DWDP_REQUIRE_OK(s.streams->Copy(composite + kG, s.source.va, kG, s.copy, CopyTag(1, 0)));
  DWDP_REQUIRE_OK(
      s.streams->Launch(ReadKernel(composite, 2 * kG), s.compute, Tag(OpKind::kCompute, 1)));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  BOOST_TEST(s.world->hazards().size() == 2u);  // one per copy
  for (const Hazard& h : s.world->hazards()) BOOST_TEST(h.overlap_bytes == kG);
}

BOOST_AUTO_TEST_CASE(the_checker_is_optional_in_timing_mode) {
  SimOptions off;
  off.check_hazards = false;
  OneRank s = MakeOneRank(off);
  BOOST_TEST(s.world->hazard_checker() == nullptr);
  DWDP_REQUIRE_OK(s.streams->Copy(s.target.va, s.source.va, kG, s.copy, CopyTag(3, 1)));
  DWDP_REQUIRE_OK(
      s.streams->Launch(ReadKernel(s.target.va, kG), s.compute, Tag(OpKind::kCompute, 3)));
  DWDP_REQUIRE_OK(s.streams->Synchronize());
  BOOST_TEST(s.world->hazards().empty());
  // Functional mode always checks.
  SimOptions functional;
  functional.functional = true;
  functional.check_hazards = false;
  BOOST_TEST(MakeWorld(RoundProfile(), 1, functional)->hazard_checker() != nullptr);
}

// ---------------------------------------------------------------------------------------------
// The pipeline of DWDP_SPEC §4 with k = 2 slots: rank 1 prefetches each layer's remote experts
// from rank 0 into slot (position mod 2) on its copy stream X, the kernel on C reads the slot.

enum class Fault { kNone, kFreeAtBind, kSkipReadyWait };

struct PipelineRun {
  std::unique_ptr<SimWorld> world;
  size_t max_history = 0;
};

PipelineRun RunPipeline(Fault fault, int64_t layers, int64_t forwards = 1) {
  PipelineRun run;
  run.world = MakeWorld(RoundProfile(), 2);
  SimWorld& world = *run.world;
  const Buffer remote = MakeBuffer(world.driver(0), kG);
  const Buffer view = MapPeerView(world, 0, remote, 1);
  const Buffer slots[2] = {MakeBuffer(world.driver(1), kG), MakeBuffer(world.driver(1), kG)};
  Streams& streams = world.streams(1);
  const StreamId c = ValueOrDie(streams.CreateStream("compute"));
  const StreamId x = ValueOrDie(streams.CreateStream("copy"));
  EventId ready[2];
  EventId free_slot[2];
  for (int s = 0; s < 2; ++s) {
    ready[s] = ValueOrDie(streams.CreateEvent());
    free_slot[s] = ValueOrDie(streams.CreateEvent());
    DWDP_REQUIRE_OK(streams.Record(free_slot[s], c, Tag(OpKind::kRecord)));
  }
  const auto prefetch = [&](int64_t layer) {
    const int64_t s = layer % 2;
    DWDP_REQUIRE_OK(streams.Wait(x, free_slot[s], Tag(OpKind::kWait, layer)));
    DWDP_REQUIRE_OK(streams.Copy(slots[s].va, view.va, kG, x, CopyTag(layer, s)));
    DWDP_REQUIRE_OK(streams.Record(ready[s], x, Tag(OpKind::kRecord, layer)));
  };
  for (int64_t f = 0; f < forwards; ++f) {
    prefetch(0);
    prefetch(1);
    for (int64_t layer = 0; layer < layers; ++layer) {
      const int64_t s = layer % 2;
      if (fault != Fault::kSkipReadyWait) {
        DWDP_REQUIRE_OK(streams.Wait(c, ready[s], Tag(OpKind::kWait, layer)));
      }
      if (fault == Fault::kFreeAtBind) {
        DWDP_REQUIRE_OK(streams.Record(free_slot[s], c, Tag(OpKind::kRecord, layer)));
      }
      DWDP_REQUIRE_OK(
          streams.Launch(ReadKernel(slots[s].va, kG, 30000), c, Tag(OpKind::kCompute, layer)));
      if (fault != Fault::kFreeAtBind) {
        DWDP_REQUIRE_OK(streams.Record(free_slot[s], c, Tag(OpKind::kRecord, layer)));
      }
      if (layer + 2 < layers) prefetch(layer + 2);
      run.max_history = std::max(run.max_history, world.hazard_checker()->history_size());
    }
  }
  DWDP_REQUIRE_OK(world.SynchronizeAll());
  return run;
}

BOOST_AUTO_TEST_CASE(the_event_contract_has_no_race) {
  const PipelineRun run = RunPipeline(Fault::kNone, 8);
  BOOST_TEST(run.world->hazards().empty());
}

BOOST_AUTO_TEST_CASE(recording_free_at_bind_is_a_write_after_read_race) {
  const PipelineRun run = RunPipeline(Fault::kFreeAtBind, 8);
  BOOST_TEST_REQUIRE(!run.world->hazards().empty());
  const Hazard& h = run.world->hazards()[0];
  BOOST_TEST_MESSAGE(h.ToString());
  BOOST_TEST((h.kind == HazardKind::kWriteAfterRead));
  // The kernel of layer 0 reads slot 0 while the prefetch of layer 2 overwrites it.
  BOOST_TEST(h.first.tag.layer == 0);
  BOOST_TEST(h.second.tag.layer == 2);
  BOOST_TEST(h.second.tag.slot == 0);
}

BOOST_AUTO_TEST_CASE(skipping_the_ready_wait_is_a_read_after_write_race) {
  const PipelineRun run = RunPipeline(Fault::kSkipReadyWait, 8);
  BOOST_TEST_REQUIRE(!run.world->hazards().empty());
  const Hazard& h = run.world->hazards()[0];
  BOOST_TEST_MESSAGE(h.ToString());
  BOOST_TEST((h.kind == HazardKind::kReadAfterWrite));
  BOOST_TEST(h.first.tag.layer == 0);   // the prefetch of layer 0 ...
  BOOST_TEST(h.second.tag.layer == 0);  // ... and the kernel of layer 0
}

BOOST_AUTO_TEST_CASE(history_stays_bounded_over_a_long_run) {
  const PipelineRun run = RunPipeline(Fault::kNone, 200, 20);
  BOOST_TEST(run.world->hazards().empty());
  // Per slot page: the last write and at most one read per stream; the remote page: reads.
  BOOST_TEST(run.max_history <= 8u);
}

}  // namespace
}  // namespace dwdp::testing
