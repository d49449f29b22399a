// The prefetch-efficiency phase (core/calibrate/prefetch.h): readers per source over hand-made
// copy intervals, the run summary and the fan-out fit, with every golden value worked out by
// hand in the comments.

#define BOOST_TEST_MODULE prefetch
#include "core/calibrate/prefetch.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "absl/strings/match.h"
#include "backends/sim/copy_schedules.h"
#include "backends/sim/sim_calibrate.h"
#include "core/calibrate/derive.h"
#include "core/calibrate/raw.h"
#include "core/config/loader.h"
#include "core/util/bytes.h"
#include "tests/support/run_process.h"

namespace dwdp {
namespace {

namespace tt = boost::test_tools;

Quantity Q(double value) { return Quantity{value, Provenance::kAssumed}; }

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

BOOST_AUTO_TEST_CASE(fanout_fit_takes_the_part_alone_at_the_pair_rate) {
  // A: rank 1 <- 0 over [0, 100 us], alone for its first 5 us (5,000 B at 1 B/ns), then with B
  // for 95 us at 0.4 B/ns (38,000 B): 43,000 B. B (rank 2 <- 0, [5, 200 us]) is shared for
  // under 90% of its time and stays out. A while shared: 38,000 B / 95 us = 0.4 of the pair
  // rate, two readers -> 2 x 0.4 = 0.8 of a 1e9 B/s port.
  const std::vector<std::vector<CopyInterval>> v = {
      {{1, 0, 1, 43e3, 0, 100e3}, {2, 0, 1, 100e3, 5e3, 200e3}}};
  const auto fit = FitEgressFanout(v, EvenPairs(), 1e9);
  BOOST_TEST_REQUIRE(fit.has_value());
  BOOST_TEST(fit->copies == 1);
  BOOST_TEST(fit->per_reader == 0.4, tt::tolerance(1e-9));
  BOOST_TEST(fit->mean_readers == 2.0, tt::tolerance(1e-9));
  BOOST_TEST(fit->egress_fanout_efficiency == 0.8, tt::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(fanout_fit_needs_a_source_shared_for_most_of_a_copy) {
  // The two readers overlap for half of each copy only: nothing to fit.
  const std::vector<std::vector<CopyInterval>> half = {
      {{1, 0, 2, 100e3, 0, 100e3}, {2, 0, 1, 100e3, 50e3, 150e3}}};
  BOOST_TEST(!FitEgressFanout(half, EvenPairs(), 2e9).has_value());
}

// ---------------------------------------------------------------------------------------------
// The phase on the simulator (backends/sim/sim_calibrate.h), 4 ranks.

// The h100-sxm preset without the pooled fabric port and random shares, its egress port the pair
// rate, and a source read by two GPUs or more serving `fanout` of that in all: the only thing
// that slows a copy is a shared source.
HardwareProfile FanoutProfile(double fanout) {
  HardwareProfile p = HardwarePreset("h100-sxm").value();
  p.name = "fanout";
  p.fabric_bw = Q(0);
  p.fabric_share_spread = Q(0);
  p.egress_bw = Q(0);
  p.egress_fanout_efficiency = Q(fanout);
  return p;
}

sim::SimCalibrationOptions PrefetchOptions(std::vector<double> drifts) {
  sim::SimCalibrationOptions o;
  o.ranks = 4;
  // 256 MiB pieces: a copy's 4 us fixed cost is under 1% of its time (the fit takes whole
  // copies, fixed cost included).
  o.measure.max_bytes = 512 * kMiB;
  o.measure.repetitions = 2;
  o.measure.only_prefetch = true;
  o.measure.prefetch_drift_steps = std::move(drifts);
  o.base = "fanout";
  o.check_hazards = true;
  return o;
}

CalibrationRaw Measure(const HardwareProfile& profile, const sim::SimCalibrationOptions& o) {
  absl::StatusOr<CalibrationRaw> raw = sim::MeasureOnSimulator(profile, o);
  BOOST_TEST_REQUIRE(raw.ok(), raw.status().ToString());
  return *std::move(raw);
}

CalibrationDerivation Derive(const CalibrationRaw& raw, const HardwareProfile& base) {
  absl::StatusOr<CalibrationDerivation> d = DeriveCalibration(raw, base, sim::SimulateCopySchedule);
  BOOST_TEST_REQUIRE(d.ok(), d.status().ToString());
  return *std::move(d);
}

BOOST_AUTO_TEST_CASE(simulated_rotation_keeps_one_reader_per_source_when_started_together) {
  const HardwareProfile profile = FanoutProfile(0.8);
  const CalibrationDerivation d = Derive(Measure(profile, PrefetchOptions({0})), profile);
  // sync, barrier, free (no drift): every rank in step, each source read by one GPU, every
  // piece at its pair rate.
  BOOST_TEST_REQUIRE(d.prefetch.size() == 3u);
  for (const PrefetchRunSummary& run : d.prefetch) {
    BOOST_TEST(run.mean_readers == 1.0, tt::tolerance(1e-9));
    BOOST_TEST(run.efficiency == 1.0, tt::tolerance(0.01));
    BOOST_TEST(run.steps.size() == 3u);  // d - 1 steps
  }
  BOOST_TEST(d.prefetch[0].name == "sync");
  BOOST_TEST(d.prefetch[1].name == "barrier");
  BOOST_TEST(absl::StrContains(d.report, "prefetch rotation"));
  // Nothing shared: the term is not fitted.
  BOOST_TEST(!d.m.egress_fanout_efficiency.has_value());
}

BOOST_AUTO_TEST_CASE(simulated_drift_recovers_the_fanout_term_the_simulator_was_given) {
  // Rank r starts r steps late: each rank reads, one step late, the source the rank before it
  // reads, so sources have two readers nearly all the time; the fit gives back the 0.8 the
  // simulator was given (the copies' fixed cost and the edges of the overlaps: within 2%).
  for (double given : {0.8, 0.6}) {
    const HardwareProfile profile = FanoutProfile(given);
    const CalibrationDerivation d = Derive(Measure(profile, PrefetchOptions({1})), profile);
    BOOST_TEST_REQUIRE(d.m.egress_fanout_efficiency.has_value());
    BOOST_TEST(*d.m.egress_fanout_efficiency == given, tt::tolerance(0.02));
    BOOST_TEST_REQUIRE(d.prefetch.size() == 3u);  // sync, barrier, free with the drift
    const PrefetchRunSummary& drifted = d.prefetch.back();
    BOOST_TEST(drifted.mean_readers > 1.3);
    BOOST_TEST(drifted.efficiency < 0.8);
    const HardwareProfile written = ApplyCalibration(profile, d.m, {"x", "", ""});
    BOOST_TEST((written.egress_fanout_efficiency.source == Provenance::kMeasured));
  }
}

BOOST_AUTO_TEST_CASE(the_drift_option_sets_the_free_runs) {
  const HardwareProfile profile = FanoutProfile(0.8);
  const CalibrationRaw few = Measure(profile, PrefetchOptions({0}));
  const CalibrationRaw more = Measure(profile, PrefetchOptions({0, 0.5, 1}));
  BOOST_TEST_REQUIRE(few.ranks[1].prefetch.has_value());
  BOOST_TEST(few.ranks[1].prefetch->runs.size() == 3u);
  BOOST_TEST(more.ranks[1].prefetch->runs.size() == 5u);
  BOOST_TEST(more.ranks[1].prefetch->runs[4].start == "free");
  BOOST_TEST(more.ranks[1].prefetch->runs[4].drift_ns > more.ranks[1].prefetch->runs[3].drift_ns);
  BOOST_TEST(few.only == kOnlyPrefetch);
  // The raw record reads back as written.
  const absl::StatusOr<CalibrationRaw> again = ParseCalibrationRaw(CalibrationRawToJson(more));
  BOOST_TEST_REQUIRE(again.ok(), again.status().ToString());
  BOOST_TEST((*again == more));
}

BOOST_AUTO_TEST_CASE(calibrate_only_prefetch_on_the_command_line) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dwdp-prefetch-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string out = dir / "p.yaml";
  const std::string raw = dir / "p.json";
  const testing::ProcessResult run =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h100-sxm", "--ranks", "4",
                        "--only", "prefetch", "--prefetch-drift", "0,1", "--max-bytes", "64MiB",
                        "--repetitions", "1", "--out", out, "--raw", raw});
  BOOST_TEST_REQUIRE(run.exit_code == 0, run.err);
  BOOST_TEST(absl::StrContains(run.out, "only the prefetch rotation"));
  BOOST_TEST(absl::StrContains(run.out, "sync"));
  BOOST_TEST(absl::StrContains(run.out, "(1 step)"));
  // The raw file derives the same again.
  const std::string again = dir / "again.yaml";
  const testing::ProcessResult from_raw =
      testing::RunDwdp({"calibrate", "--from-raw", raw, "--out", again, "--name", "p"});
  BOOST_TEST_REQUIRE(from_raw.exit_code == 0, from_raw.err);
  BOOST_TEST(testing::ReadWholeFile(again) == testing::ReadWholeFile(out));
  // A drift without the phase, and a bad drift, are usage errors.
  const testing::ProcessResult stray =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h100-sxm",
                        "--prefetch-drift", "1", "--out", out});
  BOOST_TEST(stray.exit_code == 2);
  BOOST_TEST(absl::StrContains(stray.err, "--only prefetch"));
  const testing::ProcessResult bad =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h100-sxm", "--only",
                        "prefetch", "--prefetch-drift", "0,fast", "--out", out});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(absl::StrContains(bad.err, "'fast'"));
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(plan_prices_the_staggered_schedule_when_asked) {
  const std::string scenario =
      std::string(DWDP_SOURCE_DIR) + "/scenarios/qwen3-30b-h100x4-32x32-full.yaml";
  const testing::ProcessResult staggered =
      testing::RunDwdp({"plan", scenario, "--contention", "staggered", "--max-dwdp-size", "4"});
  BOOST_TEST_REQUIRE(staggered.exit_code == 0, staggered.err);
  BOOST_TEST(absl::StrContains(staggered.out, "staggered copy schedule"));
  const testing::ProcessResult rotate =
      testing::RunDwdp({"plan", scenario, "--max-dwdp-size", "4"});
  BOOST_TEST_REQUIRE(rotate.exit_code == 0, rotate.err);
  BOOST_TEST(absl::StrContains(rotate.out, "rotate copy schedule"));
}

}  // namespace
}  // namespace dwdp
