// The DEP baseline's GPU runner at ep_size 1 (NCCL's communicator of one, the MoE kernel's
// grouped GEMMs on every expert, the combine), checked by the runner against the MoE kernel with
// every expert's weights. Skipped without a GPU; the multi-GPU runs are scripts/gpu_check.sh 8.

#define BOOST_TEST_MODULE dep_gpu_test
#include <boost/test/unit_test.hpp>

#if defined(DWDP_HAVE_CUDA)

#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/dep/dep_runner.h"
#include "core/config/loader.h"
#include "core/run/run_dep.h"
#include "tests/support/test_paths.h"

namespace dwdp::cuda {
namespace {

// The group of one rank.
class SoloComm : public Comm {
 public:
  int64_t rank() const override { return 0; }
  int64_t size() const override { return 1; }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      absl::Span<const uint8_t> mine) override {
    return std::vector<std::vector<uint8_t>>{std::vector<uint8_t>(mine.begin(), mine.end())};
  }
  absl::Status Barrier() override { return absl::OkStatus(); }
};

struct GpuAvailable {
  // A member keeps GCC from calling the empty functor's bytes uninitialised inside boost::function.
  int ordinal = 0;
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    const absl::StatusOr<int> count = CudaDeviceCount();
    boost::test_tools::assertion_result result(count.ok());
    if (!count.ok())
      result.message() << "no GPU here, skipped (" << count.status().message() << ")";
    return result;
  }
};

DepRankRun RunOne(bool functional, bool host_staged) {
  BOOST_REQUIRE(UseDevice(0).ok());
  auto scenario = LoadScenarioFile(testing::SourcePath("scenarios/moe-small-d3-6x5-modeb.yaml"));
  BOOST_REQUIRE_MESSAGE(scenario.ok(), scenario.status().message());
  RunRequest request;
  request.backend = "cuda";
  request.baseline = RunBaseline::kDep;
  request.ep_size = 1;
  request.mode = functional ? RunMode::kFunctional : RunMode::kTiming;
  absl::StatusOr<DepRunSpec> spec = MakeDepRunSpec(*scenario, request);
  BOOST_REQUIRE_MESSAGE(spec.ok(), spec.status().message());
  SoloComm comm;
  auto runner = MakeDepRunner(comm, {.rank = 0, .ep_size = 1, .host_staged = host_staged});
  BOOST_REQUIRE_MESSAGE(runner.ok(), runner.status().message());
  absl::StatusOr<DepRankRun> run = (*runner)->Run(*spec);
  BOOST_REQUIRE_MESSAGE(run.ok(), run.status().message());
  BOOST_TEST(static_cast<int64_t>(run->forwards.size()) == spec->forwards);
  for (const dep::DepRankTimes& f : run->forwards) {
    BOOST_TEST(f.layers.size() == spec->moe_layers.size());
    for (const dep::DepLayerTimes& l : f.layers) {
      BOOST_TEST(l.compute_ns > 0);
      BOOST_TEST(l.rows_received == 512 * 2);  // every entry stays on the only rank
      BOOST_TEST(l.dispatch_bytes == 0u);
    }
  }
  return *std::move(run);
}

BOOST_AUTO_TEST_SUITE(with_gpu, *boost::unit_test::precondition(GpuAvailable()))

BOOST_AUTO_TEST_CASE(ep_size_one_agrees_with_the_resident_weights_kernel) {
  const DepRankRun run = RunOne(/*functional=*/true, /*host_staged=*/false);
  BOOST_REQUIRE(run.check.is_object());
  BOOST_TEST(run.check["ok"].get<bool>(), run.check.dump());
  BOOST_TEST(run.check["compared"].get<int64_t>() > 0);
  BOOST_TEST(run.errors.empty());
}

BOOST_AUTO_TEST_CASE(the_host_staged_exchange_gives_the_same_check) {
  const DepRankRun run = RunOne(/*functional=*/true, /*host_staged=*/true);
  BOOST_TEST(run.check["ok"].get<bool>(), run.check.dump());
}

BOOST_AUTO_TEST_CASE(timing_mode_runs_without_the_check) {
  const DepRankRun run = RunOne(/*functional=*/false, /*host_staged=*/false);
  BOOST_TEST(run.check.is_null());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace dwdp::cuda

#else

BOOST_AUTO_TEST_CASE(built_without_the_cuda_backend) {
  BOOST_TEST_MESSAGE("the cuda backend is not built; nothing to run");
}

#endif  // DWDP_HAVE_CUDA
