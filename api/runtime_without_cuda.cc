// include/dwdp/dwdp.h in a build without the cuda backend (no CUDA toolkit or no MPI, or
// DWDP_CUDA=OFF). libdwdp.so still loads and its inspection functions work (validate, recipes,
// layout, plan, config checks); a Runtime cannot be created, and Create says so in one sentence
// after the same config checks as the cuda build, so a bad config is reported alike.

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "api/engine_config.h"
#include "dwdp/dwdp.h"

namespace dwdp::api {

// Never instantiated: Create always fails.
struct Runtime::Impl {};

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

Status Runtime::Create(const Config& config, const std::vector<LocalChunk>& /*chunks*/,
                       const Options& /*options*/, std::unique_ptr<Runtime>* runtime) {
  if (runtime == nullptr)
    return Status::Error("dwdp: Runtime::Create needs a place for the result");
  runtime->reset();
  if (absl::Status st = ValidateConfig(config); !st.ok()) {
    return Status::Error(absl::StrCat("dwdp: ", st.message()));
  }
  return Status::Error(
      "dwdp: this libdwdp.so was built without the cuda backend (no CUDA toolkit or MPI at build "
      "time), so it cannot create a Runtime; rebuild with DWDP_CUDA=ON on a machine with both");
}

int64_t Runtime::group_rank() const { return 0; }
int64_t Runtime::local_expert_begin() const { return 0; }
int64_t Runtime::local_expert_end() const { return 0; }
uint64_t Runtime::device_bytes() const { return 0; }
void* Runtime::tensor(int64_t, int64_t) const { return nullptr; }

namespace {
Status NoRuntime() { return Status::Error("dwdp: this libdwdp.so has no cuda backend"); }
}  // namespace

Status Runtime::prime(void*) { return NoRuntime(); }
Status Runtime::wait_and_bind(int64_t, void*) { return NoRuntime(); }
Status Runtime::record_compute(int64_t, void*) { return NoRuntime(); }
Status Runtime::prefetch_next(int64_t, void*) { return NoRuntime(); }
Status Runtime::close() { return Status::Ok(); }

void Shutdown() {}

}  // namespace dwdp::api
