// The k-slot event contract of DWDP_SPEC §4, checked on the exact operation order each stream
// receives (a recording Streams, no backend).
#define BOOST_TEST_MODULE pipeline
#include <boost/test/unit_test.hpp>

#include <map>

#include "absl/strings/str_cat.h"
#include "core/pipeline/weight_manager.h"

namespace dwdp {
namespace {

// Records every operation as text, per stream: "wait e3", "copy L5", "record e2", "kernel L5".
class RecordingStreams : public Streams {
 public:
  absl::StatusOr<StreamId> CreateStream(absl::string_view) override { return next_stream_++; }
  absl::StatusOr<EventId> CreateEvent() override { return next_event_++; }
  absl::Status DestroyEvent(EventId) override { return absl::OkStatus(); }
  absl::Status DestroyStream(StreamId) override { return absl::OkStatus(); }
  absl::Status Record(EventId e, StreamId s, const OpTag&) override {
    ops[s].push_back(absl::StrCat("record e", e));
    return absl::OkStatus();
  }
  absl::Status Wait(StreamId s, EventId e, const OpTag&) override {
    ops[s].push_back(absl::StrCat("wait e", e));
    return absl::OkStatus();
  }
  absl::Status Copy(DevPtr, DevPtr, uint64_t, StreamId s, const OpTag& tag) override {
    ops[s].push_back(absl::StrCat("copy L", tag.layer));
    return absl::OkStatus();
  }
  absl::Status Fill(DevPtr, uint64_t, const PatternRef&, uint64_t, StreamId,
                    const OpTag&) override {
    return absl::OkStatus();
  }
  absl::Status Launch(const KernelLaunch&, StreamId s, const OpTag& tag) override {
    ops[s].push_back(absl::StrCat("kernel L", tag.layer));
    return absl::OkStatus();
  }
  absl::Status WaitFlag(StreamId s, DevPtr, uint32_t value, const OpTag&) override {
    ops[s].push_back(absl::StrCat("wait flag ", value));
    return absl::OkStatus();
  }
  absl::Status WriteFlags(absl::Span<const DevPtr>, uint32_t value, StreamId s,
                          const OpTag&) override {
    ops[s].push_back(absl::StrCat("write flags ", value));
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }
  std::vector<TimedOp> TakeTimeline() override { return {}; }

  std::map<StreamId, std::vector<std::string>> ops;

 private:
  StreamId next_stream_ = 0;
  EventId next_event_ = 0;
};

struct Harness {
  RecordingStreams streams;
  StreamId compute = 0;
  StreamId copy = 1;
  std::unique_ptr<WeightManager> manager;
  std::map<int64_t, int> copies_of_layer;

  Harness(int64_t layers, int64_t k, PipelineFault fault = PipelineFault::kNone) {
    compute = *streams.CreateStream("compute");
    copy = *streams.CreateStream("copy");
    WeightManager::Options options;
    options.num_layers = layers;
    options.num_buffers = k;
    options.fault = fault;
    auto created =
        WeightManager::Create(streams, compute, copy, options,
                              [this](int64_t position, StreamId stream, const OpTag& tag) {
                                ++copies_of_layer[position];
                                return streams.Copy(0, 0, 1, stream, tag);
                              });
    BOOST_REQUIRE(created.ok());
    manager = *std::move(created);
  }

  void Forward(int64_t layers) {
    BOOST_REQUIRE(manager->Prime().ok());
    for (int64_t p = 0; p < layers; ++p) {
      BOOST_REQUIRE(manager->WaitAndBind(p).ok());
      OpTag tag;
      tag.layer = p;
      BOOST_REQUIRE(streams.Launch({}, compute, tag).ok());
      BOOST_REQUIRE(manager->RecordCompute(p).ok());
      BOOST_REQUIRE(manager->PrefetchNext(p).ok());
    }
  }
};

// Events are created per slot as (ready[s], free[s]) pairs: ready[s] = 2s, free[s] = 2s + 1.
std::string Ready(int s) { return absl::StrCat("e", 2 * s); }
std::string Free(int s) { return absl::StrCat("e", 2 * s + 1); }

}  // namespace

BOOST_AUTO_TEST_CASE(exact_order_per_stream_for_k2) {
  Harness h(5, 2);
  h.Forward(5);
  const std::vector<std::string> compute = {
      // construction: every free[s] recorded once
      "record " + Free(0), "record " + Free(1), "wait " + Ready(0),  "kernel L0",
      "record " + Free(0), "wait " + Ready(1),  "kernel L1",         "record " + Free(1),
      "wait " + Ready(0),  "kernel L2",         "record " + Free(0), "wait " + Ready(1),
      "kernel L3",         "record " + Free(1), "wait " + Ready(0),  "kernel L4",
      "record " + Free(0)};
  const std::vector<std::string> copy = {
      "wait " + Free(0), "copy L0", "record " + Ready(0),  // prime
      "wait " + Free(1), "copy L1", "record " + Ready(1),  // prime
      "wait " + Free(0), "copy L2", "record " + Ready(0),  // after L0's kernel
      "wait " + Free(1), "copy L3", "record " + Ready(1),
      "wait " + Free(0), "copy L4", "record " + Ready(0)};
  BOOST_TEST(h.streams.ops[h.compute] == compute, boost::test_tools::per_element());
  BOOST_TEST(h.streams.ops[h.copy] == copy, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(exact_order_per_stream_for_k3) {
  Harness h(5, 3);
  h.Forward(5);
  const std::vector<std::string> compute = {
      "record " + Free(0), "record " + Free(1), "record " + Free(2), "wait " + Ready(0),
      "kernel L0",         "record " + Free(0), "wait " + Ready(1),  "kernel L1",
      "record " + Free(1), "wait " + Ready(2),  "kernel L2",         "record " + Free(2),
      "wait " + Ready(0),  "kernel L3",         "record " + Free(0), "wait " + Ready(1),
      "kernel L4",         "record " + Free(1)};
  const std::vector<std::string> copy = {
      "wait " + Free(0), "copy L0", "record " + Ready(0),
      "wait " + Free(1), "copy L1", "record " + Ready(1),
      "wait " + Free(2), "copy L2", "record " + Ready(2),
      "wait " + Free(0), "copy L3", "record " + Ready(0),  // issued after L0's kernel
      "wait " + Free(1), "copy L4", "record " + Ready(1)};
  BOOST_TEST(h.streams.ops[h.compute] == compute, boost::test_tools::per_element());
  BOOST_TEST(h.streams.ops[h.copy] == copy, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(every_layer_copied_exactly_once_per_forward) {
  for (int64_t k : {2, 3, 4}) {
    for (int64_t layers : {1, 2, 3, 7, 58}) {
      Harness h(layers, k);
      h.Forward(layers);
      h.Forward(layers);
      BOOST_TEST(static_cast<int64_t>(h.copies_of_layer.size()) == layers);
      for (auto [p, n] : h.copies_of_layer) BOOST_TEST(n == 2, "layer " << p << " k " << k);
    }
  }
}

BOOST_AUTO_TEST_CASE(last_k_layers_prefetch_nothing) {
  Harness h(6, 3);
  h.Forward(6);
  const size_t before = h.streams.ops[h.copy].size();
  for (int64_t p = 3; p < 6; ++p) BOOST_TEST(h.manager->PrefetchNext(p).ok());
  BOOST_TEST(h.streams.ops[h.copy].size() == before);
}

BOOST_AUTO_TEST_CASE(first_forward_waits_only_on_initially_recorded_free_events) {
  // Every free[s] the copy stream waits on during prime was recorded at construction, before
  // any kernel: the first forward cannot stall on free.
  Harness h(4, 2);
  const auto& compute_at_construction = h.streams.ops[h.compute];
  BOOST_REQUIRE(compute_at_construction.size() == 2u);
  BOOST_TEST(compute_at_construction[0] == "record " + Free(0));
  BOOST_TEST(compute_at_construction[1] == "record " + Free(1));
  BOOST_REQUIRE(h.manager->Prime().ok());
  const std::vector<std::string> copy = {"wait " + Free(0), "copy L0", "record " + Ready(0),
                                         "wait " + Free(1), "copy L1", "record " + Ready(1)};
  BOOST_TEST(h.streams.ops[h.copy] == copy, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bookkeeping_is_o_of_k_events) {
  RecordingStreams streams;
  WeightManager::Options options;
  options.num_layers = 58;
  options.num_buffers = 3;
  auto manager = WeightManager::Create(
      streams, 0, 1, options, [](int64_t, StreamId, const OpTag&) { return absl::OkStatus(); });
  BOOST_REQUIRE(manager.ok());
  BOOST_TEST(*streams.CreateEvent() == 6);  // 2k events were created, whatever the layer count
}

BOOST_AUTO_TEST_CASE(planted_faults_change_the_order_as_described) {
  {
    Harness h(3, 2, PipelineFault::kFreeAtBind);
    h.Forward(3);
    const auto& c = h.streams.ops[h.compute];
    // free recorded before the kernel that reads the slot
    BOOST_TEST(c[2] == "wait " + Ready(0));
    BOOST_TEST(c[3] == "record " + Free(0));
    BOOST_TEST(c[4] == "kernel L0");
  }
  {
    Harness h(3, 2, PipelineFault::kSkipReadyWait);
    h.Forward(3);
    for (const std::string& op : h.streams.ops[h.compute]) {
      BOOST_TEST(op.rfind("wait", 0) != 0u, "compute stream waited: " << op);
    }
  }
}

// An engine issues the calls on its own streams: every wait, copy and record goes to the
// stream given with the call, in the same order as on the manager's own streams, and the
// manager's streams keep only the initial free records of construction.
BOOST_AUTO_TEST_CASE(calls_on_other_streams_go_to_those_streams) {
  Harness h(5, 2);
  const StreamId engine_compute = *h.streams.CreateStream("engine compute");
  const StreamId engine_copy = *h.streams.CreateStream("engine copy");
  BOOST_REQUIRE(h.manager->Prime(engine_copy).ok());
  for (int64_t p = 0; p < 5; ++p) {
    BOOST_REQUIRE(h.manager->WaitAndBind(p, engine_compute).ok());
    OpTag tag;
    tag.layer = p;
    BOOST_REQUIRE(h.streams.Launch({}, engine_compute, tag).ok());
    BOOST_REQUIRE(h.manager->RecordCompute(p, engine_compute).ok());
    BOOST_REQUIRE(h.manager->PrefetchNext(p, engine_copy).ok());
  }
  const std::vector<std::string> own_compute = {"record " + Free(0), "record " + Free(1)};
  BOOST_TEST(h.streams.ops[h.compute] == own_compute, boost::test_tools::per_element());
  BOOST_TEST(h.streams.ops[h.copy].empty());

  Harness reference(5, 2);
  reference.Forward(5);
  std::vector<std::string> expected_compute = reference.streams.ops[reference.compute];
  expected_compute.erase(expected_compute.begin(), expected_compute.begin() + 2);
  BOOST_TEST(h.streams.ops[engine_compute] == expected_compute, boost::test_tools::per_element());
  BOOST_TEST(h.streams.ops[engine_copy] == reference.streams.ops[reference.copy],
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(positions_outside_the_layers_are_errors_not_slots) {
  Harness h(3, 2);
  for (int64_t p : {-1, 3}) {
    BOOST_TEST(h.manager->WaitAndBind(p).code() == absl::StatusCode::kOutOfRange);
    BOOST_TEST(h.manager->RecordCompute(p).code() == absl::StatusCode::kOutOfRange);
    BOOST_TEST(h.manager->PrefetchNext(p).code() == absl::StatusCode::kOutOfRange);
  }
}

BOOST_AUTO_TEST_CASE(fewer_than_two_buffers_is_rejected) {
  RecordingStreams streams;
  WeightManager::Options options;
  options.num_layers = 4;
  options.num_buffers = 1;
  auto manager = WeightManager::Create(
      streams, 0, 1, options, [](int64_t, StreamId, const OpTag&) { return absl::OkStatus(); });
  BOOST_TEST(!manager.ok());
}

}  // namespace dwdp
