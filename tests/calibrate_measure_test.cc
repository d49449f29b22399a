// The measurements of `dwdp calibrate` (core/calibrate/measure.h) run on the simulator: every
// rank on its own thread (backends/sim/sim_threads.h), the whole calibration on a simulated
// machine whose profile is known. The derived profile must give back that profile's numbers:
// the golden values are the numbers the simulator was given, or what the simulator's model
// (SIMULATOR.md §2) makes of them, worked out by hand in the comments.

#define BOOST_TEST_MODULE calibrate_measure
#include "core/calibrate/measure.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "backends/sim/copy_schedules.h"
#include "backends/sim/sim_calibrate.h"
#include "backends/sim/sim_threads.h"
#include "core/calibrate/derive.h"
#include "core/calibrate/raw.h"
#include "core/config/loader.h"
#include "core/util/bytes.h"
#include "tests/support/run_process.h"
#include "tests/support/sim_fixtures.h"
#include "tests/support/test_paths.h"

namespace dwdp {
namespace {

namespace tt = boost::test_tools;
using testing::Q;

// ---------------------------------------------------------------------------------------------
// The raw record's JSON writer is the parser's inverse.

BOOST_AUTO_TEST_CASE(committed_raw_files_round_trip_through_the_writer) {
  for (const char* file :
       {"calibrate-h100x4-2026-11-28.json", "calibrate-h200x2-2026-11-28.json",
        "calibrate-h200x2-2026-11-28b.json", "calibrate-h200x4-2026-11-28.json"}) {
    BOOST_TEST_CONTEXT(file) {
      std::ifstream in(testing::SourcePath(std::string("tests/data/") + file));
      BOOST_TEST_REQUIRE(static_cast<bool>(in));
      const absl::StatusOr<CalibrationRaw> first = ParseCalibrationRaw(nlohmann::json::parse(in));
      BOOST_TEST_REQUIRE(first.ok(), first.status().ToString());
      // Through text, as the --raw file and the gathered ranks travel.
      const std::string text = CalibrationRawToJson(*first).dump(1);
      const absl::StatusOr<CalibrationRaw> second =
          ParseCalibrationRaw(nlohmann::json::parse(text));
      BOOST_TEST_REQUIRE(second.ok(), second.status().ToString());
      BOOST_TEST((*second == *first));
      BOOST_TEST(second->ranks.size() == first->ranks.size());
    }
  }
}

BOOST_AUTO_TEST_CASE(every_optional_field_round_trips) {
  CalibrationRaw raw;
  raw.measured_on = "Test GPU ×2, 2026-12-01";
  raw.machine = RawMachine{"h100-sxm", "Test GPU", 2, 80e9, 2097152, "fabric", 3, 1073741824};
  RawRank r0;
  r0.hostname = "node-a";
  r0.warnings = {"one", "two"};
  r0.single_pair = {{1048576, 6621.5}, {2097152, 9000.25}};
  r0.local_copy = {1073741824, {700e3, 701e3}};
  r0.ingress = RawIngress{536870912, 3, {1e6, 1.1e6}};
  r0.schedules = {536870912, 2097152, {{"rotate", {1.5e9, {2e6, 2.1e6}}}}};
  r0.kernel_accuracy = {{20e3, 20.1e3}};
  r0.compute_under_copies["paced"] = {894784.85, 536870912, {9e5}, {9.1e5}, {1.8e6}};
  r0.host_ns_per_call = {{"copy", {2000, 2100}}, {"record", {300}}};
  r0.stream_queue_calls = {{"copy", {1021}}, {"record", {}}};
  r0.map_ns = {2097152, {1000}, {23000}, {15000}};
  r0.device_memory_before = 1e9;
  r0.device_memory_after = 1.002e9;
  r0.device_memory_after_second_setup = 1.002e9;
  r0.driver_retained_bytes = 2097152;
  r0.moe_compute = {{2048,
                     768,
                     128,
                     8,
                     "fed",
                     {256, 512},
                     {{1, 2}, {3, 4}},
                     {{5, 6}, {7, 8}},
                     {{9, 10}, {11, 12}},
                     {1024}}};
  RawRank r1 = r0;
  r1.moe_compute.clear();
  r1.single_pair.clear();
  r1.ingress.reset();
  r1.compute_under_copies.clear();
  r1.egress = RawEgressPull{536870912, {1e6}, {5e9}, {5.001e9}};
  raw.ranks = {r0, r1};
  const absl::StatusOr<CalibrationRaw> back =
      ParseCalibrationRaw(nlohmann::json::parse(CalibrationRawToJson(raw).dump()));
  BOOST_TEST_REQUIRE(back.ok(), back.status().ToString());
  BOOST_TEST((*back == raw));
  // A run of the MoE phase alone: one rank, none of the copy phases' entries.
  CalibrationRaw compute;
  compute.measured_on = "x";
  compute.only = kOnlyCompute;
  RawRank only;
  only.moe_compute = r0.moe_compute;
  compute.ranks = {only};
  const absl::StatusOr<CalibrationRaw> compute_back =
      ParseCalibrationRaw(nlohmann::json::parse(CalibrationRawToJson(compute).dump()));
  BOOST_TEST_REQUIRE(compute_back.ok(), compute_back.status().ToString());
  BOOST_TEST((*compute_back == compute));
  // Without `only` one rank is not a calibration.
  nlohmann::json j = CalibrationRawToJson(compute);
  j.erase("only");
  BOOST_TEST(absl::StrContains(ParseCalibrationRaw(j).status().message(), "at least 2 ranks"));
  j["only"] = "copies";
  BOOST_TEST(!ParseCalibrationRaw(j).ok());
}

// ---------------------------------------------------------------------------------------------
// The whole calibration on a simulated machine.

// A machine with a number for every term the phases measure, chosen so that each phase sees
// its own term: the fabric (300 GB/s per GPU) limits when all GPUs pull at once but not one
// pair (400 GB/s), a GPU serves its pullers at 500 GB/s in all, and pulling from two peers at
// once reaches 0.8 of one pair. Half of every copy's 4 us fixed cost is a delay on its stream,
// half travels on its path. The rest (FLOP rates, ...) is the h100-sxm preset's.
HardwareProfile KnownProfile() {
  HardwareProfile p = HardwarePreset("h100-sxm").value();
  p.name = "known";
  p.gpu_name = "Simulated GPU";
  p.measured_on = "";
  p.granularity = Q(2 * kMiB);
  p.nvlink_bw = Q(450e9);
  p.peer_copy_bw = Q(400e9);
  p.copy_latency_ns = Q(4000);
  p.copy_latency_on_link = Q(0.5);
  p.copy_latency_loaded_ns = Q(0);
  p.local_copy_bw = Q(1500e9);
  p.hbm_bw = Q(3.35e12);
  p.hbm_bytes = Q(80e9);
  p.compute_slowdown = Q(0.1);
  p.concurrent_pull_efficiency = Q(0.8);
  p.egress_bw = Q(500e9);
  p.fabric_bw = Q(300e9);
  p.fabric_share_spread = Q(0);
  p.compute_read_bw = Q(1.6e12);
  p.host_issue_ns = Q(2000);
  p.event_ns = Q(500);
  p.stream_queue_entries = Q(1021);
  p.map_ns = Q(17000);
  p.fabric_supported = false;
  p.imex_permitted = false;
  return p;
}

sim::SimCalibrationOptions Options(int64_t ranks) {
  sim::SimCalibrationOptions o;
  o.ranks = ranks;
  o.measure.max_bytes = 256 * kMiB;
  o.measure.repetitions = 2;
  o.base = "known";
  o.check_hazards = true;
  return o;
}

CalibrationRaw MeasureOrDie(const HardwareProfile& profile, const sim::SimCalibrationOptions& o) {
  absl::StatusOr<CalibrationRaw> raw = sim::MeasureOnSimulator(profile, o);
  BOOST_TEST_REQUIRE(raw.ok(), raw.status().ToString());
  return *std::move(raw);
}

CalibrationDerivation DeriveOrDie(const CalibrationRaw& raw, const HardwareProfile& base) {
  absl::StatusOr<CalibrationDerivation> d = DeriveCalibration(raw, base, sim::SimulateCopySchedule);
  BOOST_TEST_REQUIRE(d.ok(), d.status().ToString());
  return *std::move(d);
}

bool HasNote(const CalibrationDerivation& d, const std::string& text) {
  for (const std::string& note : d.notes) {
    if (absl::StrContains(note, text)) return true;
  }
  return false;
}

// What every calibration of KnownProfile recovers, whatever the number of ranks.
void CheckTermsOfOnePair(const CalibrationDerivation& d, const HardwareProfile& p) {
  const CalibrationMeasurements& m = d.m;
  // One copy alone takes copy_latency_ns + bytes / peer_copy_bw (on_link < 1 moves part of the
  // fixed cost off the path, which alone changes nothing): the fit is exact.
  BOOST_TEST(*m.peer_copy_bw == p.peer_copy_bw.value, tt::tolerance(1e-9));
  BOOST_TEST(*m.copy_latency_ns == p.copy_latency_ns.value, tt::tolerance(1e-6));
  // A local copy of the whole 256 MiB buffer pays the fixed cost too:
  // 268435456 B / (268435456 / 1500 + 4000) ns = 268435456 / 182956.97 = 1467.20 GB/s.
  BOOST_TEST(*m.local_copy_bw == 268435456 / (268435456 / 1500.0 + 4000) * 1e9,
             tt::tolerance(1e-9));
  // The read-bound stand-in reads 128 MiB at compute_read_bw.
  BOOST_TEST(*m.compute_read_bw == p.compute_read_bw.value, tt::tolerance(1e-9));
  // The paced kernel (a third of 256 MiB at 400 B/ns: 223696.21 ns) runs 1 + compute_slowdown
  // times slower while the pull's bytes move, which starts with the pull's stream delay (the
  // half of the fixed cost not on the path: 2000 ns) after the kernel: both streams start when
  // the gate's record completes. Slowdown = 0.1 x (1 - 2000 / 223696.21) = 0.0991059.
  BOOST_TEST(*m.compute_slowdown == 0.1 * (1 - 2000 / (268435456 / 400.0 / 3)),
             tt::tolerance(1e-6));
  // The simulator charges the host host_issue_ns for every call, timed or not; calibrate takes
  // a record or wait call's host time as event_ns, so that is host_issue_ns too (the
  // simulator's event_ns is a cost on the stream, which no host-side phase sees).
  BOOST_TEST(*m.host_issue_ns == p.host_issue_ns.value, tt::tolerance(1e-9));
  BOOST_TEST(*m.event_ns == p.host_issue_ns.value, tt::tolerance(1e-9));
  // The stream-queue phase queues its gate kernel first, which takes one of the stream's
  // entries: 1020 untimed copies fit behind it. Timed, the gate and every copy take 3:
  // (1021 - 3) / 3 = 339.3, so 339 copies.
  BOOST_TEST(*m.stream_queue_entries == p.stream_queue_entries.value - 1);
  // The simulator's driver calls take no host time.
  BOOST_TEST(*m.map_ns == 0.0);
  BOOST_TEST(*m.granularity == p.granularity.value);
  BOOST_TEST(*m.hbm_bytes == p.hbm_bytes.value);
  BOOST_TEST(*m.imex_permitted == false);  // POSIX fd handles: the profile has no fabric
  BOOST_TEST(d.gpu_name == "Simulated GPU");
}

BOOST_AUTO_TEST_CASE(two_ranks_recover_the_pair_the_fabric_and_the_host_costs) {
  const HardwareProfile p = KnownProfile();
  const CalibrationRaw raw = MeasureOrDie(p, Options(2));
  BOOST_TEST(raw.ranks.size() == 2u);
  BOOST_TEST(raw.measured_on == "the simulator of 'known' ×2");
  // Every rank's stream-queue counts (see CheckTermsOfOnePair).
  for (const RawRank& r : raw.ranks) {
    BOOST_TEST(r.stream_queue_calls.at("copy") == std::vector<double>({1020, 1020}),
               tt::per_element());
    BOOST_TEST(r.stream_queue_calls.at("timed_copy") == std::vector<double>({339, 339}),
               tt::per_element());
    BOOST_TEST(r.hostname == "simulator");
  }
  const CalibrationDerivation d = DeriveOrDie(raw, p);
  CheckTermsOfOnePair(d, p);
  // Both GPUs pull 256 MiB from each other and share the pooled fabric (2 x 300 GB/s): each
  // copy's bytes move at 300 B/ns. The span also holds the fixed cost: 2000 ns on the stream
  // and 2000 ns x 400 B/ns = 800000 bytes on the path, at 300 B/ns as well:
  // 268435456 / (2000 + 2666.67 + 894784.85) = 298.45 GB/s.
  BOOST_REQUIRE(d.m.fabric_bw.has_value());
  BOOST_TEST(*d.m.fabric_bw == 268435456 / (2000 + 800000 / 300.0 + 268435456 / 300.0) * 1e9,
             tt::tolerance(1e-9));
  // Two ranks cannot see egress sharing or pulls from two peers.
  BOOST_TEST(!d.m.egress_bw.has_value());
  BOOST_TEST(!d.m.concurrent_pull_efficiency.has_value());
  BOOST_TEST(HasNote(d, "egress_bw needs at least 3 ranks"));
}

BOOST_AUTO_TEST_CASE(three_ranks_recover_egress_ingress_fabric_and_the_copy_cost_on_the_path) {
  const HardwareProfile p = KnownProfile();
  const CalibrationDerivation d = DeriveOrDie(MeasureOrDie(p, Options(3)), p);
  CheckTermsOfOnePair(d, p);
  // Ranks 1 and 2 pull 128 MiB each from rank 0 at once. The fixed cost first: 2000 ns on the
  // stream, then 800000 bytes through each puller's ingress (400 B/ns; the source's egress
  // carries only the payload). Then the payloads share rank 0's egress, 250 B/ns each (the
  // ingress allows 400, the pooled fabric 450 per flow): all bytes over the union
  // = 2 x 134217728 / (2000 + 2000 + 536870.91) = 496.33 GB/s.
  BOOST_REQUIRE(d.m.egress_bw.has_value());
  BOOST_TEST(*d.m.egress_bw == 2 * 134217728 / (4000 + 134217728 / 250.0) * 1e9,
             tt::tolerance(1e-9));
  BOOST_TEST((d.egress_from_union == std::optional<bool>(true)));
  // Rank 0 pulls 128 MiB from both peers at once, one stream each: its ingress shrinks to
  // 0.8 x 400 = 320 B/ns, 838.9 us for both. The span also holds about one fixed cost (4 us) and
  // the second stream's wait for the gate (0.5 us): within 1% of 0.8.
  BOOST_REQUIRE(d.m.concurrent_pull_efficiency.has_value());
  BOOST_TEST(*d.m.concurrent_pull_efficiency == p.concurrent_pull_efficiency.value,
             tt::tolerance(0.01));
  // Every GPU pulling 128 MiB from both peers, one stream each: the pooled fabric gives each
  // GPU 300 B/ns (its ingress would allow 320), 894.8 us, again within 1% with the fixed costs.
  BOOST_REQUIRE(d.m.fabric_bw.has_value());
  BOOST_TEST(*d.m.fabric_bw == p.fabric_bw.value, tt::tolerance(0.01));
  // The fabric shares evenly (spread 0): every rank's rotate rate is the same.
  BOOST_TEST(*d.m.fabric_share_spread < 1e-9);
  // Round robin pieces tell where the fixed cost goes. The fit replays them with the derived
  // numbers, whose fabric and egress include the fixed cost (about 1% low), so on_link comes
  // out a little below the 0.5 the simulator was given.
  BOOST_REQUIRE(d.m.copy_latency_on_link.has_value());
  BOOST_TEST(std::abs(*d.m.copy_latency_on_link - p.copy_latency_on_link.value) < 0.1);
}

BOOST_AUTO_TEST_CASE(the_simulator_measures_the_same_every_time) {
  const CalibrationRaw first = MeasureOrDie(KnownProfile(), Options(3));
  BOOST_TEST((MeasureOrDie(KnownProfile(), Options(3)) == first));
}

BOOST_AUTO_TEST_CASE(options_change_what_is_measured) {
  const HardwareProfile p = KnownProfile();
  const CalibrationRaw base = MeasureOrDie(p, Options(2));
  // --repetitions: the timed repetitions of every phase.
  sim::SimCalibrationOptions more = Options(2);
  more.measure.repetitions = 4;
  const CalibrationRaw four = MeasureOrDie(p, more);
  BOOST_TEST(base.ranks[0].local_copy.ns.size() == 2u);
  BOOST_TEST(four.ranks[0].local_copy.ns.size() == 4u);
  BOOST_TEST(four.machine->repetitions == 4);
  // --max-bytes: the buffers and the largest copy (256 MiB -> 64 MiB: the 256 MiB size goes,
  // two timed copies of it).
  sim::SimCalibrationOptions smaller = Options(2);
  smaller.measure.max_bytes = 64 * kMiB;
  const CalibrationRaw quarter = MeasureOrDie(p, smaller);
  BOOST_TEST(base.machine->buffer_bytes == 256.0 * kMiB);
  BOOST_TEST(quarter.machine->buffer_bytes == 64.0 * kMiB);
  BOOST_TEST(quarter.ranks[0].local_copy.bytes == 64.0 * kMiB);
  BOOST_TEST(quarter.ranks[0].single_pair.size() + 2 == base.ranks[0].single_pair.size());
  // --base is recorded for --from-raw.
  BOOST_TEST(base.machine->base == "known");
  // The profile: a faster pair is measured faster.
  HardwareProfile faster = p;
  faster.peer_copy_bw = Q(800e9);
  faster.egress_bw = Q(0);  // the pair's rate: 500 GB/s would limit the pair
  faster.fabric_bw = Q(0);  // no limit: 2 x 300 GB/s would too
  BOOST_TEST(*DeriveOrDie(MeasureOrDie(faster, Options(2)), faster).m.peer_copy_bw == 800e9,
             tt::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(the_phase_runner_queues_the_jobs_behind_the_gate) {
  // Rank 0 pulls 8 MiB from rank 1 twice on one stream behind the gate kernel; rank 1 watches.
  // The gate of 2 jobs runs max(300 us, 200 us + 2 x 25 us) = 300 us; with 2 us of host time
  // per call (gate, its record, two copies) the host is done long before the gate ends, and each
  // copy takes 4 us + 8 MiB / 400 GB/s = 24971.52 ns.
  const HardwareProfile p = KnownProfile();
  auto world = testing::MakeWorld(p, 2);
  sim::SimThreads threads(*world);
  absl::StatusOr<PhaseOutcome> outcome0 = absl::UnknownError("not run");
  const sim::SimThreads::Outcome outcome = threads.Run([&](int64_t rank) -> absl::Status {
    MeasureContext c{world->driver(rank), threads.comm(rank), threads.exchange(rank),
                     [&threads, rank](bool timing) -> absl::StatusOr<std::unique_ptr<Streams>> {
                       return threads.NewStreams(rank, timing);
                     },
                     [&threads, rank] { return threads.host_now_ns(rank); }};
    auto buffers = CalibrationBuffers::Setup(c, 8 * kMiB, 8 * kMiB);
    if (!buffers.ok()) return buffers.status();
    std::vector<Job> jobs;
    if (rank == 0) {
      for (int i = 0; i < 2; ++i) {
        jobs.push_back({Job::Kind::kCopy, 0, (*buffers)->dst(), (*buffers)->peer(1), 8 * kMiB, 1});
      }
    }
    absl::StatusOr<PhaseOutcome> o = RunPhase(c, "pull", jobs);
    if (rank == 0) outcome0 = o;
    absl::Status s = (*buffers)->Teardown();
    s.Update(c.group.Barrier());
    return o.ok() ? s : o.status();
  });
  BOOST_TEST_REQUIRE(outcome.first_error().ok(), outcome.first_error().ToString());
  BOOST_TEST_REQUIRE(outcome0.ok());
  BOOST_TEST(GateNs(2) == 300e3);
  BOOST_TEST_REQUIRE(outcome0->jobs.size() == 2u);
  BOOST_TEST(!outcome0->host_fell_behind);
  for (const JobTiming& j : outcome0->jobs) {
    BOOST_TEST(j.duration() == 4000 + 8388608 / 400.0, tt::tolerance(1e-9));
  }
  // Back to back: the second starts where the first ends, the first where the gate ends.
  BOOST_TEST(outcome0->jobs[1].start_ns == outcome0->jobs[0].end_ns, tt::tolerance(1e-12));
  BOOST_TEST(outcome0->jobs[0].start_ns - outcome0->jobs[0].issue_ns > 250e3);
  BOOST_TEST(outcome0->span_ns() == 2 * (4000 + 8388608 / 400.0), tt::tolerance(1e-9));
}

// ---------------------------------------------------------------------------------------------
// The routed-MoE layer.

BOOST_AUTO_TEST_CASE(moe_shapes_and_token_grids_parse) {
  const absl::StatusOr<MoeShape> shape = ParseMoeShape("7168,2048,256,8");
  BOOST_TEST_REQUIRE(shape.ok(), shape.status().ToString());
  BOOST_TEST((*shape == MoeShape{7168, 2048, 256, 8}));
  // 256 experts x (2 x 2048 x 7168 + 7168 x 2048) BF16 values = 256 x 44040192 x 2 bytes.
  BOOST_TEST(shape->w13_bytes() == 256ull * 2 * 2048 * 7168 * 2);
  BOOST_TEST(shape->weight_bytes() == 256ull * 3 * 2048 * 7168 * 2);
  for (const char* bad : {"7168,2048,256", "7168,2048,256,x", "7168,0,256,8", "64,64,4,8"}) {
    BOOST_TEST_CONTEXT(bad) {
      const absl::StatusOr<MoeShape> refused = ParseMoeShape(bad);
      BOOST_TEST(absl::IsInvalidArgument(refused.status()));
      BOOST_TEST(absl::StrContains(refused.status().message(), "HIDDEN,INTERMEDIATE"));
    }
  }
  BOOST_TEST(DefaultMoeTokens() ==
                 std::vector<int64_t>({256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536}),
             tt::per_element());
  const absl::StatusOr<std::vector<int64_t>> tokens = ParseTokenCounts("100,1K,64k");
  BOOST_TEST_REQUIRE(tokens.ok(), tokens.status().ToString());
  BOOST_TEST(*tokens == std::vector<int64_t>({100, 1024, 65536}), tt::per_element());
  BOOST_TEST(!ParseTokenCounts("1K,512").ok());  // not ascending
  BOOST_TEST(!ParseTokenCounts("0").ok());
  BOOST_TEST(!ParseTokenCounts("2M").ok());
}

BOOST_AUTO_TEST_CASE(the_token_grid_is_capped_by_the_memory_left) {
  // hidden 1024, intermediate 512, top_k 4: per token 2 x (2 x 1024 x 2 + 4 x ((1024 + 1024
  // + 512 + 1024) x 2 + 16)) = 2 x (4096 + 4 x 7184) = 65664 bytes.
  const MoeShape shape{1024, 512, 64, 4};
  BOOST_TEST(MoeWorkingBytesPerToken(shape) == 65664u);
  std::vector<int64_t> skipped;
  // 100 MB hold 1522 tokens: 256, 512 and 1024 fit, 2048 and 4096 do not.
  const std::vector<int64_t> fit =
      MoeTokensThatFit(shape, {256, 512, 1024, 2048, 4096}, 100000000, &skipped);
  BOOST_TEST(fit == std::vector<int64_t>({256, 512, 1024}), tt::per_element());
  BOOST_TEST(skipped == std::vector<int64_t>({2048, 4096}), tt::per_element());
  // No budget known: everything.
  BOOST_TEST(MoeTokensThatFit(shape, {256, 4096}, 0, nullptr).size() == 2u);
}

// A MoE launch that asks for 1 us + 10 ns per token: the simulator runs it for exactly that.
double FedDuration(const MoeKernel& k) { return 1000.0 + 10.0 * static_cast<double>(k.tokens); }

sim::SimCalibrationOptions MoeOptions(int64_t ranks) {
  sim::SimCalibrationOptions o = Options(ranks);
  o.measure.only_compute = true;
  o.measure.moe_shapes = {{2048, 768, 128, 8}};
  o.measure.moe_tokens = {256, 4096, 65536};
  o.measure.moe_duration_ns = FedDuration;
  o.measure.moe_kernel = "fed";
  return o;
}

BOOST_AUTO_TEST_CASE(one_rank_times_the_moe_layer_alone) {
  const CalibrationRaw raw = MeasureOrDie(KnownProfile(), MoeOptions(1));
  BOOST_TEST(raw.only == kOnlyCompute);
  BOOST_REQUIRE(raw.ranks.size() == 1u);
  BOOST_REQUIRE(raw.ranks[0].moe_compute.size() == 1u);
  const RawMoeCompute& t = raw.ranks[0].moe_compute[0];
  BOOST_TEST(t.tokens == std::vector<int64_t>({256, 4096, 65536}), tt::per_element());
  BOOST_TEST(t.kernel == "fed");
  BOOST_REQUIRE(t.alone_ns.size() == 3u);
  for (size_t i = 0; i < 3; ++i) {
    // Two repetitions (the first launch is dropped), each exactly the duration fed.
    BOOST_TEST(
        t.alone_ns[i] == std::vector<double>(2, 1000.0 + 10.0 * static_cast<double>(t.tokens[i])),
        tt::per_element());
  }
  BOOST_TEST(t.under_copy_ns.empty());  // no peer to copy from
  // No copy phase ran.
  BOOST_TEST(raw.ranks[0].single_pair.empty());
  BOOST_TEST(raw.ranks[0].host_ns_per_call.empty());
  // The profile gets the table, measured.
  const CalibrationDerivation d = DeriveOrDie(raw, KnownProfile());
  BOOST_REQUIRE(d.m.moe_compute.size() == 1u);
  const MoeComputeTable& table = d.m.moe_compute[0];
  BOOST_TEST(table.alone_ns == std::vector<double>({3560, 41960, 656360}), tt::per_element());
  BOOST_TEST((table.source == Provenance::kMeasured));
  BOOST_TEST((table.dtype == DType::kBf16));
  BOOST_TEST(!d.m.peer_copy_bw.has_value());
  BOOST_TEST(absl::StrContains(d.report, "1 rank, posix_fd handles, 2 repetitions, only the MoE"));
}

BOOST_AUTO_TEST_CASE(two_ranks_time_the_moe_layer_under_inbound_copies) {
  // The three launches of each count run back to back while the inbound copies run (the
  // first, a warm-up, is dropped). The simulated layer runs 1 + compute_slowdown (0.1) times
  // slower while pulled bytes move, which is the whole time for the kept launches: the pull
  // starts 2000 ns into the first launch (its stream delay, as in CheckTermsOfOnePair), and the
  // launches of these counts (at most 3 x 1.1 x 164840 ns) end within the first copy (256 MiB
  // at 400 B/ns: 671 us), before the next copy's delay leaves a gap.
  sim::SimCalibrationOptions o = MoeOptions(2);
  o.measure.moe_tokens = {256, 4096, 16384};
  const CalibrationRaw raw = MeasureOrDie(KnownProfile(), o);
  const RawMoeCompute& t = raw.ranks[0].moe_compute.at(0);
  BOOST_REQUIRE(t.under_copy_ns.size() == 3u);
  for (size_t i = 0; i < 3; ++i) {
    const double fed = 1000.0 + 10.0 * static_cast<double>(t.tokens[i]);
    BOOST_REQUIRE(t.under_copy_ns[i].size() == 2u);
    for (double ns : t.under_copy_ns[i]) BOOST_TEST(ns == 1.1 * fed, tt::tolerance(1e-9));
    // The copies outlast the layer.
    for (double ns : t.copy_outlasts_kernel_by_ns[i]) BOOST_TEST(ns > 0);
  }
  // Rank 1 only copied from.
  BOOST_TEST(raw.ranks[1].moe_compute.empty());
}

BOOST_AUTO_TEST_CASE(the_roofline_fitted_to_simulated_moe_times_is_the_profiles) {
  // Without fed durations the simulator runs a MoE launch for the perf model's roofline time of
  // its profile (compute_efficiency 0.6, memory_efficiency 0.8 in h100-sxm): fitting the
  // roofline to those times gives the efficiencies back.
  sim::SimCalibrationOptions o = MoeOptions(1);
  o.measure.moe_duration_ns = nullptr;
  o.measure.moe_tokens = DefaultMoeTokens();
  const HardwareProfile p = KnownProfile();
  const CalibrationDerivation d = DeriveOrDie(MeasureOrDie(p, o), p);
  BOOST_REQUIRE(d.m.compute_efficiency.has_value());
  BOOST_REQUIRE(d.m.memory_efficiency.has_value());
  BOOST_TEST(*d.m.compute_efficiency == p.compute_efficiency.value, tt::tolerance(1e-9));
  BOOST_TEST(*d.m.memory_efficiency == p.memory_efficiency.value, tt::tolerance(1e-9));
  const HardwareProfile written = ApplyCalibration(p, d.m, {"moe", "", ""});
  BOOST_TEST((written.compute_efficiency.source == Provenance::kMeasured));
  BOOST_REQUIRE(written.moe_compute.size() == 1u);
  BOOST_TEST(written.moe_compute[0].tokens.size() == 9u);
}

BOOST_AUTO_TEST_CASE(token_counts_that_do_not_fit_next_to_the_weights_are_left_out) {
  // A 4 GB GPU: 0.9 x 4e9 - 1207959552 bytes of weights (128 x 3 x 2048 x 768 x 2) leaves
  // 2392040448 bytes, 10802 tokens of 221440 bytes (MoeWorkingBytesPerToken): 64K is left out.
  HardwareProfile small = KnownProfile();
  small.hbm_bytes = Q(4e9);
  const MoeShape shape{2048, 768, 128, 8};
  BOOST_TEST(MoeWorkingBytesPerToken(shape) == 221440u);
  const CalibrationRaw raw = MeasureOrDie(small, MoeOptions(1));
  const RawMoeCompute& t = raw.ranks[0].moe_compute.at(0);
  BOOST_TEST(t.tokens == std::vector<int64_t>({256, 4096}), tt::per_element());
  BOOST_TEST(t.skipped_tokens == std::vector<int64_t>({65536}), tt::per_element());
  BOOST_TEST(HasNote(DeriveOrDie(raw, small), "65536 tokens per rank left out"));
}

BOOST_AUTO_TEST_CASE(a_layer_larger_than_the_gpu_is_refused_on_every_rank) {
  // 256 experts x 3 x 7168 x 16384 x 2 bytes = 180 GB: more than the 80 GB of the GPU.
  sim::SimCalibrationOptions o = MoeOptions(2);
  o.measure.moe_shapes = {{7168, 16384, 256, 8}};
  const absl::StatusOr<CalibrationRaw> raw = sim::MeasureOnSimulator(KnownProfile(), o);
  BOOST_TEST_REQUIRE(!raw.ok());
  BOOST_TEST(absl::StrContains(raw.status().message(), "do not fit on the GPU"));
}

BOOST_AUTO_TEST_CASE(a_profile_keeps_its_tables_of_other_shapes) {
  HardwareProfile base = KnownProfile();
  MoeComputeTable other{4096, 1024,  64,    4, DType::kBf16, Provenance::kMeasured,
                        "x",  {256}, {1e5}, {}};
  MoeComputeTable same{2048,  768,   128, 8, DType::kBf16, Provenance::kAssumed,
                       "old", {256}, {1}, {}};
  base.moe_compute = {other, same};
  CalibrationMeasurements m;
  MoeComputeTable measured = same;
  measured.kernel = "new";
  measured.alone_ns = {2};
  m.moe_compute = {measured};
  const HardwareProfile written = ApplyCalibration(base, m, {"p", "", ""});
  BOOST_REQUIRE(written.moe_compute.size() == 2u);
  BOOST_TEST(written.moe_compute[0].kernel == "x");
  BOOST_TEST(written.moe_compute[1].kernel == "new");
  BOOST_TEST(written.moe_compute[1].alone_ns[0] == 2.0);
}

// ---------------------------------------------------------------------------------------------
// dwdp calibrate --backend sim.

struct TempDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("dwdp-calibrate-measure-" + std::to_string(getpid()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

BOOST_AUTO_TEST_CASE(calibrate_on_the_simulator_writes_the_profile_it_was_given) {
  TempDir dir;
  const std::string known = dir / "known.yaml";
  {
    std::ofstream out(known);
    out << HardwareProfileToYaml(KnownProfile());
  }
  const std::string out = dir / "sim-x3.yaml";
  const std::string raw = dir / "sim-x3.json";
  const testing::ProcessResult run =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", known, "--ranks", "3",
                        "--max-bytes", "256MiB", "--repetitions", "2", "--out", out, "--raw", raw});
  BOOST_TEST_REQUIRE(run.exit_code == 0, run.err);
  BOOST_TEST(absl::StrContains(run.out, "calibrated on the simulator of 'known' ×3"));
  const absl::StatusOr<HardwareProfile> written = LoadHardwareProfileFile(out);
  BOOST_TEST_REQUIRE(written.ok(), written.status().ToString());
  BOOST_TEST(written->peer_copy_bw.value == 400e9, tt::tolerance(1e-9));
  BOOST_TEST((written->peer_copy_bw.source == Provenance::kMeasured));
  // As in three_ranks_recover_egress_ingress_fabric_and_the_copy_cost_on_the_path.
  BOOST_TEST(written->egress_bw.value == 2 * 134217728 / (4000 + 134217728 / 250.0) * 1e9,
             tt::tolerance(1e-9));
  BOOST_TEST((written->egress_bw.source == Provenance::kMeasured));
  // The base defaults to the simulated profile: what is not measured is its number.
  BOOST_TEST(written->map_ns.value == 0.0);
  BOOST_TEST(written->hbm_bw.value == 3.35e12);
  // The raw file derives the same profile again without the simulator's measurements.
  const std::string again = dir / "again.yaml";
  const testing::ProcessResult from_raw = testing::RunDwdp(
      {"calibrate", "--from-raw", raw, "--base", known, "--out", again, "--name", "sim-x3"});
  BOOST_TEST_REQUIRE(from_raw.exit_code == 0, from_raw.err);
  BOOST_TEST(testing::ReadWholeFile(again) == testing::ReadWholeFile(out));

  // --ranks 2: no egress sharing to measure, so egress_bw stays the base's (assumed).
  const std::string two = dir / "sim-x2.yaml";
  const testing::ProcessResult pair =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", known, "--ranks", "2",
                        "--max-bytes", "64MiB", "--repetitions", "1", "--out", two});
  BOOST_TEST_REQUIRE(pair.exit_code == 0, pair.err);
  const absl::StatusOr<HardwareProfile> written2 = LoadHardwareProfileFile(two);
  BOOST_TEST_REQUIRE(written2.ok(), written2.status().ToString());
  BOOST_TEST((written2->egress_bw.source == Provenance::kAssumed));
  // --hardware: another machine measures other numbers.
  const std::string h200 = dir / "sim-h200.yaml";
  const testing::ProcessResult other =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h200-sxm", "--max-bytes",
                        "64MiB", "--repetitions", "1", "--out", h200});
  BOOST_TEST_REQUIRE(other.exit_code == 0, other.err);
  const absl::StatusOr<HardwareProfile> written3 = LoadHardwareProfileFile(h200);
  BOOST_TEST_REQUIRE(written3.ok(), written3.status().ToString());
  // One pair runs at the lesser of the preset's copy rate and its GPUs' egress.
  const HardwareProfile h200_preset = HardwarePreset("h200-sxm").value();
  BOOST_TEST(written3->peer_copy_bw.value ==
                 std::min(h200_preset.peer_copy_bw.value, h200_preset.egress_bw.value),
             tt::tolerance(1e-9));
  BOOST_TEST(written3->peer_copy_bw.value != written->peer_copy_bw.value);
}

BOOST_AUTO_TEST_CASE(calibrate_the_moe_layer_alone_on_one_simulated_gpu) {
  TempDir dir;
  const std::string out = dir / "moe.yaml";
  const testing::ProcessResult run = testing::RunDwdp(
      {"calibrate", "--backend", "sim", "--hardware", "h100-sxm", "--ranks", "1", "--only",
       "compute", "--moe-shape", "2048,768,128,8", "--moe-tokens", "256,8K,64K", "--out", out});
  BOOST_TEST_REQUIRE(run.exit_code == 0, run.err);
  const absl::StatusOr<HardwareProfile> written = LoadHardwareProfileFile(out);
  BOOST_TEST_REQUIRE(written.ok(), written.status().ToString());
  BOOST_REQUIRE(written->moe_compute.size() == 1u);
  BOOST_TEST(written->moe_compute[0].tokens == std::vector<int64_t>({256, 8192, 65536}),
             tt::per_element());
  BOOST_TEST(written->moe_compute[0].under_copy_ns.empty());
  // The simulated layer takes the preset's roofline time, so the fit gives its efficiencies.
  const HardwareProfile preset = HardwarePreset("h100-sxm").value();
  BOOST_TEST(written->compute_efficiency.value == preset.compute_efficiency.value,
             tt::tolerance(1e-9));
  BOOST_TEST(written->memory_efficiency.value == preset.memory_efficiency.value,
             tt::tolerance(1e-9));
  BOOST_TEST((written->memory_efficiency.source == Provenance::kMeasured));
  // Not measured: the copy terms stay the preset's.
  BOOST_TEST((written->peer_copy_bw.source == preset.peer_copy_bw.source));
  // A second shape is a second table.
  const std::string two = dir / "moe2.yaml";
  const testing::ProcessResult shapes =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h100-sxm", "--ranks", "1",
                        "--only", "compute", "--moe-shape", "2048,768,128,8", "--moe-shape",
                        "4096,1024,64,4", "--moe-tokens", "256,64K", "--out", two});
  BOOST_TEST_REQUIRE(shapes.exit_code == 0, shapes.err);
  BOOST_TEST(LoadHardwareProfileFile(two)->moe_compute.size() == 2u);
}

BOOST_AUTO_TEST_CASE(calibrate_on_the_simulator_refuses_what_does_not_apply) {
  TempDir dir;
  const std::string out = dir / "p.yaml";
  const auto no_hardware = testing::RunDwdp({"calibrate", "--backend", "sim", "--out", out});
  BOOST_TEST(no_hardware.exit_code == 2);
  BOOST_TEST(absl::StrContains(no_hardware.err, "--hardware"));
  const auto one_rank = testing::RunDwdp(
      {"calibrate", "--backend", "sim", "--hardware", "h100-sxm", "--ranks", "1", "--out", out});
  BOOST_TEST(one_rank.exit_code == 2);
  BOOST_TEST(absl::StrContains(one_rank.err, "--ranks"));
  const auto timeout = testing::RunDwdp(
      {"calibrate", "--backend", "sim", "--hardware", "h100-sxm", "--timeout", "10", "--out", out});
  BOOST_TEST(timeout.exit_code == 2);
  BOOST_TEST(absl::StrContains(timeout.err, "--timeout"));
  const auto gpu_ranks = testing::RunDwdp({"calibrate", "--ranks", "4", "--out", out});
  BOOST_TEST(gpu_ranks.exit_code == 2);
  BOOST_TEST(absl::StrContains(gpu_ranks.err, "--backend sim"));
  const auto bad_backend = testing::RunDwdp({"calibrate", "--backend", "tpu", "--out", out});
  BOOST_TEST(bad_backend.exit_code == 2);
  const auto no_shape = testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h100-sxm",
                                          "--only", "compute", "--out", out});
  BOOST_TEST(no_shape.exit_code == 2);
  BOOST_TEST(absl::StrContains(no_shape.err, "--moe-shape"));
  const auto bad_shape = testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware",
                                           "h100-sxm", "--moe-shape", "1,2,3", "--out", out});
  BOOST_TEST(bad_shape.exit_code == 2);
  BOOST_TEST(absl::StrContains(bad_shape.err, "--moe-shape"));
  const auto bad_tokens =
      testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h100-sxm", "--moe-shape",
                        "64,64,8,2", "--moe-tokens", "4K,1K", "--out", out});
  BOOST_TEST(bad_tokens.exit_code == 2);
  BOOST_TEST(absl::StrContains(bad_tokens.err, "--moe-tokens"));
  const auto bad_only = testing::RunDwdp({"calibrate", "--backend", "sim", "--hardware", "h100-sxm",
                                          "--only", "copies", "--out", out});
  BOOST_TEST(bad_only.exit_code == 2);
  BOOST_TEST(!std::filesystem::exists(out));
}

}  // namespace
}  // namespace dwdp
