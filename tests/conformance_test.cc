// The same test bodies against both backends: driver rules, whole DWDP groups in functional
// mode through the GroupRuntime, and planted faults. On the cuda backend every rank of the group
// runs in this process on GPU 0 (handles exported as POSIX fds and imported by the other ranks,
// as between processes); without a GPU the cuda cases are skipped with a message.
#define BOOST_TEST_MODULE conformance
#include <unistd.h>

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "backends/sim/simulate.h"
#include "core/config/loader.h"
#include "core/fault/faulty_driver.h"
#include "core/layout/layout.h"
#include "core/pipeline/runtime.h"
#include "tests/support/test_paths.h"

#if defined(DWDP_HAVE_CUDA)
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_driver.h"
#include "backends/cuda/cuda_streams.h"
#endif

namespace dwdp {
namespace {

// Every rank of one group, hosted here, on one backend.
class TestGroup : public Coordinator {
 public:
  virtual const char* backend() const = 0;
  // What is still allocated (empty: nothing).
  virtual std::string Leaks() = 0;
  virtual std::vector<std::string> Hazards() = 0;
  // Errors the devices hold for later (a fault of work still in flight): empty when none.
  virtual std::string AsyncErrors() = 0;
  // Operations since the last call, every rank.
  virtual std::vector<TimedOp> Timeline() = 0;
};

class SimGroup : public TestGroup {
 public:
  SimGroup(std::unique_ptr<sim::SimWorld> world)
      : world_(std::move(world)), coordinator_(*world_) {}
  const char* backend() const override { return "sim"; }
  std::vector<int64_t> hosted_ranks() const override { return coordinator_.hosted_ranks(); }
  Driver& driver(int64_t rank) override { return coordinator_.driver(rank); }
  Streams& streams(int64_t rank) override { return coordinator_.streams(rank); }
  HandleExchange& exchange() override { return coordinator_; }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      std::vector<std::vector<uint8_t>> per_hosted) override {
    return coordinator_.Allgather(std::move(per_hosted));
  }
  std::string Leaks() override {
    const sim::LeakReport report = world_->leak_report();
    return report.empty() ? std::string() : report.ToString();
  }
  std::vector<std::string> Hazards() override {
    std::vector<std::string> out;
    for (const auto& h : world_->hazards()) out.push_back(h.ToString());
    return out;
  }
  std::string AsyncErrors() override {
    const absl::Status st = world_->SynchronizeAll();
    return st.ok() ? std::string() : std::string(st.message());
  }
  std::vector<TimedOp> Timeline() override {
    std::vector<TimedOp> out;
    for (int64_t r = 0; r < world_->size(); ++r) {
      for (TimedOp& op : world_->streams(r).TakeTimeline()) out.push_back(std::move(op));
    }
    return out;
  }

 private:
  std::unique_ptr<sim::SimWorld> world_;
  sim::SimCoordinator coordinator_;
};

#if defined(DWDP_HAVE_CUDA)
class CudaGroup : public TestGroup, public HandleExchange {
 public:
  static absl::StatusOr<std::unique_ptr<CudaGroup>> Create(int64_t ranks) {
    if (auto count = cuda::CudaDeviceCount(); !count.ok()) return count.status();
    if (auto st = cuda::UseDevice(0); !st.ok()) return st;
    auto group = std::unique_ptr<CudaGroup>(new CudaGroup());
    for (int64_t r = 0; r < ranks; ++r) {
      cuda::CudaDriverOptions driver_options;
      driver_options.rank = r;
      driver_options.handle_kind = cuda::HandleKindRequest::kPosixFd;
      driver_options.log_handle_choice = false;
      auto driver = cuda::CudaDriver::Create(driver_options);
      if (!driver.ok()) return driver.status();
      cuda::CudaStreamsOptions streams_options;
      streams_options.rank = r;
      auto streams = cuda::CudaStreams::Create(streams_options);
      if (!streams.ok()) return streams.status();
      group->drivers_.push_back(std::move(*driver));
      group->streams_.push_back(std::move(*streams));
    }
    return group;
  }
  const char* backend() const override { return "cuda"; }
  std::vector<int64_t> hosted_ranks() const override {
    std::vector<int64_t> ranks;
    for (size_t r = 0; r < drivers_.size(); ++r) ranks.push_back(static_cast<int64_t>(r));
    return ranks;
  }
  Driver& driver(int64_t rank) override { return *drivers_[rank]; }
  Streams& streams(int64_t rank) override { return *streams_[rank]; }
  HandleExchange& exchange() override { return *this; }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      std::vector<std::vector<uint8_t>> per_hosted) override {
    return per_hosted;
  }
  // Each receiving rank gets its own duplicate of every fd, as SCM_RIGHTS would give it.
  absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> Exchange(
      std::vector<std::vector<SharedHandle>> exported) override {
    std::vector<std::vector<std::vector<SharedHandle>>> result(exported.size());
    for (size_t receiver = 0; receiver < exported.size(); ++receiver) {
      result[receiver].resize(exported.size());
      for (size_t sender = 0; sender < exported.size(); ++sender) {
        for (const SharedHandle& h : exported[sender]) {
          SharedHandle copy(h.kind(), h.owner_rank(), h.bytes());
          if (h.fd() >= 0) copy.set_fd(::dup(h.fd()));
          copy.set_fabric(h.fabric());
          result[receiver][sender].push_back(std::move(copy));
        }
      }
    }
    return result;
  }
  absl::Status Barrier() override {
    for (auto& s : streams_) {
      if (auto st = s->Synchronize(); !st.ok()) return st;
    }
    return absl::OkStatus();
  }
  std::string Leaks() override {
    std::string out;
    for (size_t r = 0; r < drivers_.size(); ++r) {
      if (drivers_[r]->live_device_bytes() != 0) {
        absl::StrAppend(&out, "rank ", r, ": ", drivers_[r]->live_device_bytes(), " bytes live; ");
      }
    }
    return out;
  }
  std::vector<std::string> Hazards() override { return {}; }
  std::string AsyncErrors() override {
    for (auto& s : streams_) {
      if (auto st = s->Synchronize(); !st.ok()) return std::string(st.message());
    }
    return {};
  }
  std::vector<TimedOp> Timeline() override {
    std::vector<TimedOp> out;
    for (auto& s : streams_) {
      for (TimedOp& op : s->TakeTimeline()) out.push_back(std::move(op));
    }
    return out;
  }

 private:
  CudaGroup() = default;
  std::vector<std::unique_ptr<cuda::CudaDriver>> drivers_;
  std::vector<std::unique_ptr<cuda::CudaStreams>> streams_;
};
#endif

// The group for `backend`, or null with the reason in `skip` (no GPU, no cuda build).
std::unique_ptr<TestGroup> MakeGroup(const std::string& backend, const Scenario& scenario,
                                     int64_t ranks, bool functional, std::string& skip) {
  if (backend == "sim") {
    sim::SimOptions options;
    options.functional = functional;
    auto world = sim::SimWorld::Create(scenario.hardware, ranks, options);
    BOOST_REQUIRE_MESSAGE(world.ok(), world.status().message());
    return std::make_unique<SimGroup>(*std::move(world));
  }
#if defined(DWDP_HAVE_CUDA)
  auto group = CudaGroup::Create(ranks);
  if (!group.ok()) {
    skip = std::string(group.status().message());
    return nullptr;
  }
  return *std::move(group);
#else
  skip = "this build has no cuda backend";
  return nullptr;
#endif
}

Scenario LoadScenario(const std::string& relative) {
  auto scenario = LoadScenarioFile(testing::SourcePath(relative));
  BOOST_REQUIRE_MESSAGE(scenario.ok(), scenario.status().message());
  return *scenario;
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

const std::vector<std::string> kBackends = {"sim", "cuda"};

// A group seen through a FaultyDriver on one rank: what the runtime calls goes through the
// wrapper there, everything else to the group itself.
class FaultyRankCoordinator : public Coordinator {
 public:
  FaultyRankCoordinator(TestGroup& group, int64_t faulty_rank, FaultyDriver& faulty)
      : group_(group), faulty_rank_(faulty_rank), faulty_(faulty) {}
  std::vector<int64_t> hosted_ranks() const override { return group_.hosted_ranks(); }
  Driver& driver(int64_t rank) override {
    return rank == faulty_rank_ ? faulty_ : group_.driver(rank);
  }
  Streams& streams(int64_t rank) override { return group_.streams(rank); }
  HandleExchange& exchange() override { return group_.exchange(); }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      std::vector<std::vector<uint8_t>> per_hosted) override {
    return group_.Allgather(std::move(per_hosted));
  }

 private:
  TestGroup& group_;
  int64_t faulty_rank_;
  FaultyDriver& faulty_;
};

// A group whose rank `failing` reports, at the n-th allgather of setup (a phase's vote), that the
// phase failed there: what a peer process sees of a rank that ran out of memory alone.
class RemoteFailureCoordinator : public Coordinator {
 public:
  RemoteFailureCoordinator(TestGroup& group, int64_t failing, int64_t at_allgather)
      : group_(group), failing_(failing), at_allgather_(at_allgather) {}
  std::vector<int64_t> hosted_ranks() const override { return group_.hosted_ranks(); }
  Driver& driver(int64_t rank) override { return group_.driver(rank); }
  Streams& streams(int64_t rank) override { return group_.streams(rank); }
  HandleExchange& exchange() override { return group_.exchange(); }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      std::vector<std::vector<uint8_t>> per_hosted) override {
    auto all = group_.Allgather(std::move(per_hosted));
    if (all.ok() && ++allgathers_ == at_allgather_) {
      const std::string message = "CUDA_ERROR_OUT_OF_MEMORY on its GPU";
      std::vector<uint8_t> vote = {static_cast<uint8_t>(absl::StatusCode::kResourceExhausted)};
      vote.insert(vote.end(), message.begin(), message.end());
      (*all)[static_cast<size_t>(failing_)] = vote;
    }
    return all;
  }

 private:
  TestGroup& group_;
  int64_t failing_;
  int64_t at_allgather_;
  int64_t allgathers_ = 0;
};

// Open file descriptors of this process (exported POSIX handles are fds).
int64_t OpenFds() {
  int64_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++count;
  }
  return count;
}

// Device memory in use on the GPU (cuda) or 0 (sim, whose leak report covers its memory).
uint64_t DeviceMemoryInUse(const std::string& backend, const std::string& when) {
#if defined(DWDP_HAVE_CUDA)
  if (backend == "cuda") {
    auto in_use = cuda::DeviceMemoryInUse();
    BOOST_REQUIRE_MESSAGE(in_use.ok(), when << ": " << in_use.status().message());
    return *in_use;
  }
#endif
  (void)backend;
  (void)when;
  return 0;
}

#define SKIP_IF_NO_GROUP(group, skip)                          \
  if (!(group)) {                                              \
    BOOST_TEST_MESSAGE("skipped on this machine: " << (skip)); \
    return;                                                    \
  }

}  // namespace

BOOST_DATA_TEST_CASE(driver_rules_agree, boost::unit_test::data::make(kBackends), backend) {
  const Scenario scenario = LoadScenario("scenarios/sim-small-d3-6x5-modeb.yaml");
  std::string skip;
  auto group = MakeGroup(backend, scenario, 1, false, skip);
  SKIP_IF_NO_GROUP(group, skip);
  Driver& driver = group->driver(0);
  const uint64_t g = driver.granularity();
  BOOST_TEST(g == 2u * 1024 * 1024);
  // Sizes must be multiples of the granularity.
  auto odd = driver.Create(g + 1, HandleKind::kNone);
  BOOST_TEST(!odd.ok());
  BOOST_TEST(
      std::string(odd.status().message()).find("CUDA_ERROR_INVALID_VALUE") != std::string::npos,
      odd.status().message());
  auto handle = driver.Create(2 * g, driver.shareable_kind());
  BOOST_REQUIRE_MESSAGE(handle.ok(), handle.status().message());
  auto va = driver.Reserve(2 * g, g);
  BOOST_REQUIRE_MESSAGE(va.ok(), va.status().message());
  // Part of a handle cannot be mapped (H100, GB200).
  const absl::Status partial = driver.Map(*va, g, *handle, 0);
  BOOST_TEST(!partial.ok());
  BOOST_TEST(std::string(partial.message()).find("CUDA_ERROR_NOT_SUPPORTED") != std::string::npos,
             partial.message());
  BOOST_TEST(driver.Map(*va, 2 * g, *handle, 0).ok());
  BOOST_TEST(driver.SetAccess(*va, 2 * g).ok());
  // The exported handle imports back to the same memory.
  auto shared = driver.Export(*handle);
  BOOST_REQUIRE_MESSAGE(shared.ok(), shared.status().message());
  auto imported = driver.Import(*shared);
  BOOST_REQUIRE_MESSAGE(imported.ok(), imported.status().message());
  shared->close_fd();
  BOOST_TEST(driver.Release(*imported).ok());
  BOOST_TEST(driver.Unmap(*va, 2 * g).ok());
  BOOST_TEST(driver.Free(*va, 2 * g).ok());
  BOOST_TEST(driver.Release(*handle).ok());
  BOOST_TEST(group->Leaks().empty(), group->Leaks());
}

BOOST_DATA_TEST_CASE(functional_groups_verify_every_byte,
                     boost::unit_test::data::make(kBackends) *
                         boost::unit_test::data::make(std::vector<int64_t>{2, 3}),
                     backend, num_buffers) {
  for (const char* file :
       {"scenarios/sim-small-d3-6x5-modeb.yaml", "scenarios/sim-small-d4-7x3-redundant.yaml"}) {
    Scenario scenario = LoadScenario(file);
    scenario.dwdp.num_buffers = num_buffers;
    auto layout = ComputeGroupLayout(scenario);
    BOOST_REQUIRE(layout.ok());
    std::string skip;
    auto group = MakeGroup(backend, scenario, scenario.dwdp.dwdp_size, true, skip);
    SKIP_IF_NO_GROUP(group, skip);
    RuntimeOptions options;
    options.functional = true;
    options.moe_ns.assign(layout->moe_layers.size(), 50000);
    options.contention = scenario.dwdp.contention;
    auto runtime = GroupRuntime::Setup(*layout, *group, options);
    BOOST_REQUIRE_MESSAGE(runtime.ok(), runtime.status().message());
    (void)group->Timeline();
    constexpr int64_t kForwards = 3;
    for (int64_t f = 0; f < kForwards; ++f) {
      const absl::Status st = (*runtime)->RunForward(f);
      BOOST_TEST(st.ok(), file << " forward " << f << ": " << st.message());
    }
    // Every layer is copied exactly once per forward: its copy plan, once.
    std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t> copies;  // (rank, forward, layer)
    for (const TimedOp& op : group->Timeline()) {
      if (op.tag.kind == OpKind::kCopy) ++copies[{op.rank, op.tag.forward, op.tag.layer}];
    }
    for (int64_t r = 0; r < scenario.dwdp.dwdp_size; ++r) {
      const int64_t per_layer = static_cast<int64_t>((*runtime)->copy_plan(r).ops.size());
      for (int64_t f = 0; f < kForwards; ++f) {
        for (int64_t layer : layout->moe_layers) {
          BOOST_TEST((copies[{r, f, layer}] == per_layer),
                     file << " rank " << r << " forward " << f << " layer " << layer);
        }
      }
    }
    BOOST_TEST((*runtime)->Teardown().ok());
    BOOST_TEST((*runtime)->Teardown().ok());  // twice is harmless
    BOOST_TEST(group->Leaks().empty(), group->Leaks());
    BOOST_TEST(group->Hazards().empty(), Joined(group->Hazards()));
  }
}

BOOST_DATA_TEST_CASE(planted_faults_are_caught, boost::unit_test::data::make(kBackends), backend) {
  const Scenario scenario = LoadScenario("scenarios/sim-small-d3-6x5-modeb.yaml");
  auto layout = ComputeGroupLayout(scenario);
  BOOST_REQUIRE(layout.ok());
  {
    std::string skip;
    auto group = MakeGroup(backend, scenario, 3, true, skip);
    SKIP_IF_NO_GROUP(group, skip);
    RuntimeOptions options;
    options.functional = true;
    options.fault = Fault::kBadCopyOffset;
    options.moe_ns.assign(layout->moe_layers.size(), 50000);
    auto runtime = GroupRuntime::Setup(*layout, *group, options);
    BOOST_REQUIRE_MESSAGE(runtime.ok(), runtime.status().message());
    const absl::Status st = (*runtime)->RunForward(0);
    BOOST_TEST(!st.ok());
    BOOST_TEST(std::string(st.message()).find("wrong byte") != std::string::npos, st.message());
    (void)(*runtime)->Teardown();
    BOOST_TEST(group->Leaks().empty(), group->Leaks());
  }
  {
    std::string skip;
    auto group = MakeGroup(backend, scenario, 3, true, skip);
    SKIP_IF_NO_GROUP(group, skip);
    RuntimeOptions options;
    options.functional = true;
    options.fault = Fault::kPartialMap;
    auto runtime = GroupRuntime::Setup(*layout, *group, options);
    BOOST_TEST(!runtime.ok());
    BOOST_TEST(std::string(runtime.status().message()).find("CUDA_ERROR_NOT_SUPPORTED") !=
                   std::string::npos,
               runtime.status().message());
    BOOST_TEST(group->Leaks().empty(), group->Leaks());
  }
}

// Makes the n-th driver call of rank 1 fail, for every n of a whole setup + 2 forwards +
// teardown: the injected error is the one reported, with its context; nothing is left (leak
// report, device memory, fds back to where they were); and the process sets the group up again.
BOOST_DATA_TEST_CASE(a_failing_driver_call_anywhere_is_reported_and_rolled_back,
                     boost::unit_test::data::make(kBackends), backend) {
  // A tiny Mode B group (edge bytes inside granules) with two MoE layers keeps every kind of
  // driver call of the setup and few enough of them to try each.
  Scenario scenario = LoadScenario("scenarios/soak-tiny-d3-modeb.yaml");
  scenario.model.moe_layers.resize(2);
  auto layout = ComputeGroupLayout(scenario);
  BOOST_REQUIRE(layout.ok());
  constexpr int64_t kFaultyRank = 1;
  RuntimeOptions options;
  options.functional = true;
  options.moe_ns.assign(layout->moe_layers.size(), 20000);

  // Runs setup + 2 forwards + teardown with rank 1's n-th call failing (0: none). Returns the
  // first error and the number of rank-1 driver calls made.
  auto run = [&](int64_t fail_at, std::string& skip) -> std::pair<absl::Status, int64_t> {
    auto group = MakeGroup(backend, scenario, 3, true, skip);
    if (!group) return {absl::OkStatus(), -1};
    FaultyDriver faulty(group->driver(kFaultyRank), fail_at, "CUDA_ERROR_OUT_OF_MEMORY");
    FaultyRankCoordinator coordinator(*group, kFaultyRank, faulty);
    absl::Status first = absl::OkStatus();
    auto runtime = GroupRuntime::Setup(*layout, coordinator, options);
    if (!runtime.ok()) {
      first = runtime.status();
    } else {
      for (int64_t f = 0; f < 2 && first.ok(); ++f) first = (*runtime)->RunForward(f);
      const absl::Status teardown = (*runtime)->Teardown();
      if (first.ok()) first = teardown;
    }
    BOOST_TEST(group->AsyncErrors().empty(), "call " << fail_at << ": " << group->AsyncErrors());
    BOOST_TEST(group->Leaks().empty(), "call " << fail_at << ": " << group->Leaks());
    BOOST_TEST(group->Hazards().empty(), "call " << fail_at << ": " << Joined(group->Hazards()));
    BOOST_TEST(faulty.injected() == (fail_at > 0), "call " << fail_at);
    return {first, faulty.calls()};
  };

  // A clean run first: it counts the calls and loads what the GPU loads once (modules).
  std::string skip;
  if (backend == "cuda" && MakeGroup(backend, scenario, 1, true, skip)) {
    (void)DeviceMemoryInUse(backend, "before the first run");  // the GPU is healthy
  }
  const auto [clean, total_calls] = run(0, skip);
  SKIP_IF_NO_GROUP(total_calls >= 0, skip);
  BOOST_REQUIRE_MESSAGE(clean.ok(), clean.message());
  BOOST_REQUIRE(total_calls > 30);
  const uint64_t memory_at_start = DeviceMemoryInUse(backend, "after the clean run");
  const int64_t fds_at_start = OpenFds();
  for (int64_t n = 1; n <= total_calls; ++n) {
    const auto [failed, calls] = run(n, skip);
    BOOST_TEST(!failed.ok(), "call " << n);
    const std::string message(failed.message());
    BOOST_TEST(message.find("(injected at driver call " + std::to_string(n) +
                            "): CUDA_ERROR_OUT_OF_MEMORY") != std::string::npos,
               "call " << n << ": " << message);
    BOOST_TEST(message.find("rank 1") != std::string::npos, "call " << n << ": " << message);
    BOOST_TEST(DeviceMemoryInUse(backend, "call " + std::to_string(n)) == memory_at_start,
               "call " << n);
    BOOST_TEST(OpenFds() == fds_at_start, "call " << n);
    // The process can set the group up again.
    const auto [again, again_calls] = run(0, skip);
    BOOST_TEST(again.ok(), "after call " << n << ": " << again.message());
    BOOST_TEST(again_calls == total_calls);
  }
  BOOST_TEST_MESSAGE(backend << ": " << total_calls
                             << " failure points of rank 1, each rolled back");
}

// Every setup phase ends in a vote: a rank that failed it alone (out of device memory) fails it
// for every rank, with its rank and reason, instead of leaving its peers in the next collective
// (MPI pairs their messages with its teardown's: "message truncated", or a hang). Each rank rolls
// back what it had made.
BOOST_AUTO_TEST_CASE(a_setup_phase_that_failed_on_another_rank_fails_here_and_rolls_back) {
  const Scenario scenario = LoadScenario("scenarios/sim-small-d3-6x5-modeb.yaml");
  auto layout = ComputeGroupLayout(scenario);
  BOOST_REQUIRE(layout.ok());
  const std::vector<std::string> phases = {"create local handles", "import peer handles",
                                           "create the pool and the MoE kernels"};
  for (size_t phase = 0; phase < phases.size(); ++phase) {
    std::string skip;
    auto group = MakeGroup("sim", scenario, 3, true, skip);
    BOOST_REQUIRE(group);
    RemoteFailureCoordinator coordinator(*group, 1, static_cast<int64_t>(phase) + 1);
    RuntimeOptions options;
    options.functional = true;
    auto runtime = GroupRuntime::Setup(*layout, coordinator, options);
    BOOST_REQUIRE(!runtime.ok());
    BOOST_TEST(runtime.status().code() == absl::StatusCode::kResourceExhausted);
    BOOST_TEST(std::string(runtime.status().message()) ==
                   phases[phase] + " failed on rank 1: CUDA_ERROR_OUT_OF_MEMORY on its GPU",
               runtime.status().message());
    BOOST_TEST(group->Leaks().empty(), phases[phase] << ": " << group->Leaks());
  }
}

}  // namespace dwdp
