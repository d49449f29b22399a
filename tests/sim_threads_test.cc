// SimThreads (backends/sim/sim_threads.h): per-rank code with blocking collectives and
// synchronizes on a simulated world, one rank at a time in a fixed order.

#define BOOST_TEST_MODULE sim_threads
#include "backends/sim/sim_threads.h"

#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/sim_fixtures.h"

namespace dwdp::sim {
namespace {

using testing::MakeWorld;
using testing::RoundProfile;

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string Text(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

// Every rank logs a step, waits in a barrier, logs, gathers its name, logs.
std::vector<std::string> TurnLog() {
  auto world = MakeWorld(RoundProfile(), 3);
  SimThreads threads(*world);
  std::vector<std::string> log;
  const SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    log.push_back(absl::StrCat(rank, " before the barrier"));
    if (absl::Status s = threads.comm(rank).Barrier(); !s.ok()) return s;
    log.push_back(absl::StrCat(rank, " after the barrier"));
    auto all = threads.comm(rank).Allgather(Bytes(absl::StrCat("rank ", rank)));
    if (!all.ok()) return all.status();
    std::string seen;
    for (const auto& theirs : *all) absl::StrAppend(&seen, Text(theirs), ";");
    log.push_back(absl::StrCat(rank, " gathered ", seen));
    return absl::OkStatus();
  });
  BOOST_TEST_REQUIRE(outcome.first_error().ok(), outcome.first_error().ToString());
  return log;
}

BOOST_AUTO_TEST_CASE(ranks_take_turns_in_rank_order_between_blocking_points) {
  // Rank 0 runs to its barrier, then rank 1, then rank 2; the barrier completes and rank 0 goes
  // on to the allgather, and so on.
  const std::vector<std::string> expected = {"0 before the barrier",
                                             "1 before the barrier",
                                             "2 before the barrier",
                                             "0 after the barrier",
                                             "1 after the barrier",
                                             "2 after the barrier",
                                             "0 gathered rank 0;rank 1;rank 2;",
                                             "1 gathered rank 0;rank 1;rank 2;",
                                             "2 gathered rank 0;rank 1;rank 2;"};
  const std::vector<std::string> first = TurnLog();
  BOOST_TEST(first == expected, boost::test_tools::per_element());
  // The same every time.
  for (int run = 0; run < 5; ++run)
    BOOST_TEST(TurnLog() == first, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(synchronize_runs_every_waiting_ranks_work_and_a_barrier_joins_the_clocks) {
  // RoundProfile has no host issue cost. Rank r runs a kernel of (r + 1) us and synchronizes:
  // its host clock reads (r + 1) us. After a barrier every host is at the latest, 3 us.
  auto world = MakeWorld(RoundProfile(), 3);
  SimThreads threads(*world);
  std::vector<double> after_sync(3), after_barrier(3);
  const SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    std::unique_ptr<Streams> streams = threads.NewStreams(rank, /*timing=*/true);
    auto stream = streams->CreateStream("work");
    if (!stream.ok()) return stream.status();
    OpTag tag;
    tag.kind = OpKind::kCompute;
    if (absl::Status s = streams->Launch({"k", {}, 1000.0 * (rank + 1)}, *stream, tag); !s.ok()) {
      return s;
    }
    if (absl::Status s = streams->Synchronize(); !s.ok()) return s;
    after_sync[rank] = threads.host_now_ns(rank);
    if (streams->TakeTimeline().size() != 1) return absl::InternalError("one timed kernel");
    if (absl::Status s = threads.comm(rank).Barrier(); !s.ok()) return s;
    after_barrier[rank] = threads.host_now_ns(rank);
    return absl::OkStatus();
  });
  BOOST_TEST_REQUIRE(outcome.first_error().ok(), outcome.first_error().ToString());
  BOOST_TEST(after_sync == std::vector<double>({1000, 2000, 3000}),
             boost::test_tools::per_element());
  BOOST_TEST(after_barrier == std::vector<double>({3000, 3000, 3000}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(streams_without_timing_give_no_timeline) {
  auto world = MakeWorld(RoundProfile(), 1);
  SimThreads threads(*world);
  size_t ops = 99;
  const SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    std::unique_ptr<Streams> streams = threads.NewStreams(rank, /*timing=*/false);
    auto stream = streams->CreateStream("work");
    if (!stream.ok()) return stream.status();
    if (absl::Status s = streams->Launch({"k", {}, 1000}, *stream, {}); !s.ok()) return s;
    if (absl::Status s = streams->Synchronize(); !s.ok()) return s;
    ops = streams->TakeTimeline().size();
    return absl::OkStatus();
  });
  BOOST_TEST_REQUIRE(outcome.first_error().ok(), outcome.first_error().ToString());
  BOOST_TEST(ops == 0u);
}

BOOST_AUTO_TEST_CASE(a_rank_that_returns_early_fails_the_others_collective_naming_it) {
  auto world = MakeWorld(RoundProfile(), 3);
  SimThreads threads(*world);
  std::vector<absl::Status> later(3);
  const SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    if (rank == 1) return absl::OkStatus();
    absl::Status s = threads.comm(rank).Barrier();
    // Every later collective fails at once as well: no rank waits for one that is gone.
    later[rank] = threads.comm(rank).Allgather(Bytes("x")).status();
    return s;
  });
  for (int64_t rank : {0, 2}) {
    BOOST_TEST_CONTEXT("rank " << rank) {
      BOOST_TEST(absl::IsFailedPrecondition(outcome.ranks[rank]));
      BOOST_TEST(absl::StrContains(outcome.ranks[rank].message(),
                                   "rank(s) 1 returned while rank(s) 0, 2 wait in a Barrier"));
      BOOST_TEST(absl::StrContains(later[rank].message(), "rank(s) 1 returned"));
    }
  }
  BOOST_TEST(outcome.ranks[1].ok());
  BOOST_TEST(absl::StrContains(outcome.scheduler.message(), "rank(s) 1 returned"));
  BOOST_TEST(absl::StrContains(outcome.first_error().message(), "rank(s) 1 returned"));
}

BOOST_AUTO_TEST_CASE(ranks_in_different_collectives_are_an_error_not_a_hang) {
  auto world = MakeWorld(RoundProfile(), 2);
  SimThreads threads(*world);
  const SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    if (rank == 0) return threads.comm(rank).Barrier();
    return threads.comm(rank).Allgather(Bytes("x")).status();
  });
  for (int64_t rank : {0, 1}) {
    BOOST_TEST(
        absl::StrContains(outcome.ranks[rank].message(),
                          "rank(s) 0 wait in a Barrier while rank(s) 1 wait in an Allgather"));
  }
}

BOOST_AUTO_TEST_CASE(handles_travel_through_the_exchange_and_peers_copy_from_them) {
  // Each rank exports a 2 MiB buffer; every rank imports its right neighbour's, maps it and
  // pulls it: 1 us of fixed cost + 2 MiB at 100 bytes/ns = 21971.52 ns (RoundProfile).
  auto world = MakeWorld(RoundProfile(), 3);
  SimThreads threads(*world);
  const uint64_t g = 2 * testing::kTestMiB;
  std::vector<double> copy_ns(3, 0);
  const SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    Driver& d = world->driver(rank);
    auto mine = d.Create(g, d.shareable_kind());
    if (!mine.ok()) return mine.status();
    auto local = d.Create(g, HandleKind::kNone);
    if (!local.ok()) return local.status();
    auto shared = d.Export(*mine);
    if (!shared.ok()) return shared.status();
    std::vector<std::vector<SharedHandle>> exported(1);
    exported[0].push_back(*std::move(shared));
    auto received = threads.exchange(rank).Exchange(std::move(exported));
    if (!received.ok()) return received.status();
    if ((*received)[0].size() != 3) return absl::InternalError("three ranks' handles");
    const int64_t peer = (rank + 1) % 3;
    auto imported = d.Import((*received)[0][peer][0]);
    if (!imported.ok()) return imported.status();
    DevPtr va[2] = {0, 0};
    const Handle handles[2] = {*imported, *local};
    for (int i = 0; i < 2; ++i) {
      auto reserved = d.Reserve(g, g);
      if (!reserved.ok()) return reserved.status();
      va[i] = *reserved;
      if (absl::Status s = d.Map(va[i], g, handles[i], 0); !s.ok()) return s;
      if (absl::Status s = d.SetAccess(va[i], g); !s.ok()) return s;
    }
    std::unique_ptr<Streams> streams = threads.NewStreams(rank, true);
    auto stream = streams->CreateStream("pull");
    if (!stream.ok()) return stream.status();
    if (absl::Status s = streams->Copy(va[1], va[0], g, *stream, {}); !s.ok()) return s;
    if (absl::Status s = streams->Synchronize(); !s.ok()) return s;
    for (const TimedOp& op : streams->TakeTimeline()) copy_ns[rank] = op.end_ns - op.start_ns;
    streams.reset();
    for (int i = 0; i < 2; ++i) {
      if (absl::Status s = d.Unmap(va[i], g); !s.ok()) return s;
      if (absl::Status s = d.Free(va[i], g); !s.ok()) return s;
    }
    for (Handle h : {*imported, *local, *mine}) {
      if (absl::Status s = d.Release(h); !s.ok()) return s;
    }
    return threads.exchange(rank).Barrier();
  });
  BOOST_TEST_REQUIRE(outcome.first_error().ok(), outcome.first_error().ToString());
  for (double ns : copy_ns)
    BOOST_TEST(ns == 1000 + 2097152 / 100.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(world->leak_report().empty(), world->leak_report().ToString());
}

BOOST_AUTO_TEST_CASE(collectives_outside_run_are_refused) {
  auto world = MakeWorld(RoundProfile(), 2);
  SimThreads threads(*world);
  BOOST_TEST(absl::IsFailedPrecondition(threads.comm(0).Barrier()));
}

}  // namespace
}  // namespace dwdp::sim
