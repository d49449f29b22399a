// The prefetch-efficiency phase (core/calibrate/prefetch.h): readers per source over hand-made
// copy intervals, the run summary and the fan-out fit, with every golden value worked out by
// hand in the comments.

#define BOOST_TEST_MODULE prefetch
#include "core/calibrate/prefetch.h"

#include <vector>

#include <boost/test/unit_test.hpp>

namespace dwdp {
namespace {

namespace tt = boost::test_tools;

BOOST_AUTO_TEST_CASE(start_names_parse_back_and_a_wrong_one_is_named) {
  for (PrefetchStart s : {PrefetchStart::kSync, PrefetchStart::kBarrier, PrefetchStart::kFree}) {
    BOOST_TEST((*ParsePrefetchStart(PrefetchStartName(s)) == s));
  }
  const auto bad = ParsePrefetchStart("together");
  BOOST_TEST(!bad.ok());
  BOOST_TEST(std::string(bad.status().message()).find("'together'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(free_start_delays_grow_by_the_drift_per_rank) {
  // 300 ns: ranks 0..3 start 0, 300, 600, 900 ns late.
  BOOST_TEST(PrefetchStartDelayNs(0, 300) == 0.0);
  BOOST_TEST(PrefetchStartDelayNs(1, 300) == 300.0, tt::tolerance(1e-12));
  BOOST_TEST(PrefetchStartDelayNs(3, 300) == 900.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(drift_lists_parse_and_a_bad_entry_is_named) {
  const auto drifts = ParsePrefetchDrifts("0,0.5,2");
  BOOST_TEST_REQUIRE(drifts.ok());
  BOOST_TEST((*drifts == std::vector<double>{0, 0.5, 2}));
  for (const char* bad : {"0,-1", "0,x", "1e9", "0,,1"}) {
    const auto parsed = ParsePrefetchDrifts(bad);
    BOOST_TEST(!parsed.ok(), bad);
  }
  BOOST_TEST(std::string(ParsePrefetchDrifts("0,x").status().message()).find("'x'") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(readers_per_source_count_overlaps_of_the_same_source_only) {
  // A: 1 <- 0 [0, 10]; B: 2 <- 0 [5, 15]; C: 3 <- 1 [0, 10] (another source);
  // D: 3 <- 0 [10, 20] (touches A at 10, overlaps B on [10, 15]).
  const std::vector<CopyInterval> v = {
      {1, 0, 1, 10, 0, 10}, {2, 0, 1, 10, 5, 15}, {3, 1, 1, 10, 0, 10}, {3, 0, 2, 10, 10, 20}};
  const std::vector<SourceReaders> r = ReadersPerSource(v);
  BOOST_TEST_REQUIRE(r.size() == 4u);
  // A: alone for 5 ns, with B for 5 ns: (1*5 + 2*5) / 10 = 1.5, shared half the time.
  BOOST_TEST(r[0].mean == 1.5, tt::tolerance(1e-12));
  BOOST_TEST(r[0].max == 2);
  BOOST_TEST(r[0].shared_fraction == 0.5, tt::tolerance(1e-12));
  // B: with A on [5, 10] and with D on [10, 15]: two readers throughout (A's end and D's start
  // at 10 never make three).
  BOOST_TEST(r[1].mean == 2.0, tt::tolerance(1e-12));
  BOOST_TEST(r[1].max == 2);
  BOOST_TEST(r[1].shared_fraction == 1.0, tt::tolerance(1e-12));
  // C: its source has no other reader.
  BOOST_TEST(r[2].mean == 1.0, tt::tolerance(1e-12));
  BOOST_TEST(r[2].max == 1);
  BOOST_TEST(r[2].shared_fraction == 0.0);
  // D: with B on [10, 15]: (2*5 + 1*5) / 10 = 1.5.
  BOOST_TEST(r[3].mean == 1.5, tt::tolerance(1e-12));
  BOOST_TEST(r[3].max == 2);
}

BOOST_AUTO_TEST_CASE(readers_per_source_ignores_overlaps_within_the_tolerance) {
  // Two readers of source 0 overlapping by 5 ns: shared with no tolerance, alone with 5 ns.
  const std::vector<CopyInterval> v = {{1, 0, 1, 1, 0, 100}, {2, 0, 1, 1, 95, 200}};
  BOOST_TEST(ReadersPerSource(v)[0].max == 2);
  BOOST_TEST(ReadersPerSource(v, 5)[0].max == 1);
  BOOST_TEST(ReadersPerSource(v, 5)[0].mean == 1.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(readers_per_source_sees_three_readers_of_one_source) {
  // Three readers of source 0: [0, 30], [10, 30], [20, 30]. The first: 1 for 10, 2 for 10,
  // 3 for 10 -> 2.0 mean, max 3, shared 2/3.
  const std::vector<CopyInterval> v = {
      {1, 0, 1, 1, 0, 30}, {2, 0, 2, 1, 10, 30}, {3, 0, 3, 1, 20, 30}};
  const std::vector<SourceReaders> r = ReadersPerSource(v);
  BOOST_TEST(r[0].mean == 2.0, tt::tolerance(1e-12));
  BOOST_TEST(r[0].max == 3);
  BOOST_TEST(r[0].shared_fraction == 2.0 / 3.0, tt::tolerance(1e-12));
  // The last: three readers throughout.
  BOOST_TEST(r[2].mean == 3.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(run_summary_compares_each_rank_with_its_pair_rates) {
  // Two ranks, pair rate 1 byte/ns (1e9 B/s) both ways. Rank 0 pulls 100 B from rank 1 in
  // [0, 100] (efficiency 1), rank 1 pulls 100 B from rank 0 in [20, 145] (100 / 125 = 0.8).
  const PairRates pairs = {{{0, 1}, 1e9}, {{1, 0}, 1e9}};
  const std::vector<std::vector<CopyInterval>> reps = {
      {{0, 1, 1, 100, 0, 100}, {1, 0, 1, 100, 20, 145}}};
  const auto run = SummarizePrefetchRun("barrier", reps, pairs);
  BOOST_TEST_REQUIRE(run.ok());
  BOOST_TEST(run->name == "barrier");
  BOOST_TEST(run->efficiency == 0.9, tt::tolerance(1e-12));  // median of 1.0 and 0.8
  BOOST_TEST(run->worst_efficiency == 0.8, tt::tolerance(1e-12));
  BOOST_TEST(run->start_skew_ns == 20.0, tt::tolerance(1e-12));
  BOOST_TEST(run->mean_readers == 1.0, tt::tolerance(1e-12));  // different sources
  BOOST_TEST_REQUIRE(run->steps.size() == 1u);
  BOOST_TEST(run->steps[0].step == 1);
  BOOST_TEST(run->steps[0].copies == 2);
  BOOST_TEST(run->steps[0].efficiency == 0.9, tt::tolerance(1e-12));
  BOOST_TEST(run->steps[0].max_readers == 1);
}

BOOST_AUTO_TEST_CASE(run_summary_rejects_a_copy_that_ends_before_it_starts) {
  const auto run = SummarizePrefetchRun("sync", {{{0, 1, 1, 100, 50, 10}}}, {});
  BOOST_TEST(!run.ok());
  BOOST_TEST(std::string(run.status().message()).find("rank 0 from rank 1") != std::string::npos);
  BOOST_TEST(!SummarizePrefetchRun("sync", {{}}, {}).ok());
}

// Ranks 1 and 2 both pull 170 KB from rank 0 over [0, 200 us] (0.85 B/ns each, two readers all
// the time); rank 0 pulls 100 KB from rank 1 alone in [0, 100 us] and does not enter the fit.
// Pair rate 1e9 B/s everywhere.
std::vector<std::vector<CopyInterval>> TwoReadersOfOneSource() {
  return {{{1, 0, 2, 170e3, 0, 200e3}, {2, 0, 1, 170e3, 0, 200e3}, {0, 1, 1, 100e3, 0, 100e3}}};
}
PairRates EvenPairs() {
  PairRates pairs;
  for (int64_t a = 0; a < 3; ++a) {
    for (int64_t b = 0; b < 3; ++b) {
      if (a != b) pairs[{a, b}] = 1e9;
    }
  }
  return pairs;
}

BOOST_AUTO_TEST_CASE(fanout_fit_gives_the_port_share_two_readers_got) {
  // Egress port 2e9 B/s: the two readers got 2 x 0.85e9 = 1.7e9 of it -> 0.85.
  const auto fit = FitEgressFanout(TwoReadersOfOneSource(), EvenPairs(), 2e9);
  BOOST_TEST_REQUIRE(fit.has_value());
  BOOST_TEST(fit->copies == 2);
  BOOST_TEST(fit->per_reader == 0.85, tt::tolerance(1e-12));
  BOOST_TEST(fit->mean_readers == 2.0, tt::tolerance(1e-12));
  BOOST_TEST(fit->egress_fanout_efficiency == 0.85, tt::tolerance(1e-12));
  BOOST_TEST(!fit->capped);
}

BOOST_AUTO_TEST_CASE(fanout_fit_is_capped_at_one_when_the_port_is_the_pair_rate) {
  // Without an egress port of its own the port is the pair rate: 1.7e9 / 1e9 = 1.7 -> 1, capped.
  const auto fit = FitEgressFanout(TwoReadersOfOneSource(), EvenPairs(), 0);
  BOOST_TEST_REQUIRE(fit.has_value());
  BOOST_TEST(fit->egress_fanout_efficiency == 1.0);
  BOOST_TEST(fit->capped);
}

BOOST_AUTO_TEST_CASE(fanout_fit_needs_a_source_shared_for_most_of_a_copy) {
  // The two readers overlap for half of each copy only: nothing to fit.
  const std::vector<std::vector<CopyInterval>> half = {
      {{1, 0, 2, 100e3, 0, 100e3}, {2, 0, 1, 100e3, 50e3, 150e3}}};
  BOOST_TEST(!FitEgressFanout(half, EvenPairs(), 2e9).has_value());
}

}  // namespace
}  // namespace dwdp
