// The engine-facing API (include/dwdp/dwdp.h, libdwdp.so) on a machine the test cannot run a
// group on: config errors are reported before any GPU or MPI work, and without a GPU creating
// a Runtime fails with one sentence instead of crashing. Compiled as C++17, which also proves
// the header is. The GPU path is `mpirun -np 2 engine_example`; with a GPU this test reports
// skipped (exit code 77) after the config checks.

#include <cuda_runtime_api.h>
#include <dwdp/dwdp.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

int failures = 0;

void Expect(bool condition, const std::string& what) {
  std::printf("%s: %s\n", condition ? "ok" : "FAILED", what.c_str());
  if (!condition) ++failures;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// One sentence: non-empty, one line, says it comes from dwdp.
bool OneSentence(const std::string& message) {
  return !message.empty() && message.find('\n') == std::string::npos &&
         message.rfind("dwdp: ", 0) == 0;
}

dwdp::api::Config ValidConfig() {
  dwdp::api::Config config;
  config.dwdp_size = 2;
  config.num_experts_per_worker = 9;
  config.num_prefetch_experts = 7;
  config.num_experts = 16;
  config.moe_layers = {1, 2, 4, 5};
  config.weights = {{"w3_w1_weight", 1572869}, {"w2_weight", 786433}};
  return config;
}

// Chunks that are never read: every call below fails before touching device memory.
std::vector<dwdp::api::LocalChunk> FakeChunks(const dwdp::api::Config& config) {
  static char placeholder;
  std::vector<dwdp::api::LocalChunk> chunks;
  for (int64_t layer : config.moe_layers) {
    for (size_t w = 0; w < config.weights.size(); ++w) {
      chunks.push_back({layer, static_cast<int64_t>(w), &placeholder,
                        static_cast<uint64_t>(config.num_experts_per_worker) *
                            config.weights[w].bytes_per_expert});
    }
  }
  return chunks;
}

dwdp::api::Status CreateWith(const dwdp::api::Config& config) {
  std::unique_ptr<dwdp::api::Runtime> runtime;
  dwdp::api::Status status =
      dwdp::api::Runtime::Create(config, FakeChunks(config), dwdp::api::Options{}, &runtime);
  std::printf("  -> %s\n", status.ok ? "ok" : status.message.c_str());
  Expect(status.ok == (runtime != nullptr), "a runtime is returned exactly when Create succeeds");
  return status;
}

}  // namespace

int main() {
  // Config errors: no GPU, no MPI needed.
  {
    dwdp::api::Config config = ValidConfig();
    config.num_experts_per_worker = 9;
    config.num_prefetch_experts = 8;  // (2-1)*8 + 9 = 17 > 16 experts: tail padding
    const dwdp::api::Status st = CreateWith(config);
    Expect(!st.ok && OneSentence(st.message) && Contains(st.message, "tail_padding"),
           "a partition past the last expert is refused naming the check");
  }
  {
    dwdp::api::Config config = ValidConfig();
    config.moe_layers = {4, 2};
    const dwdp::api::Status st = CreateWith(config);
    Expect(!st.ok && OneSentence(st.message) && Contains(st.message, "ascending"),
           "MoE layers out of order are refused");
  }
  {
    dwdp::api::Config config = ValidConfig();
    config.pool_page_bytes = 3u << 20;
    const dwdp::api::Status st = CreateWith(config);
    Expect(!st.ok && OneSentence(st.message) && Contains(st.message, "power of two"),
           "a pool page that is not a power of two is refused");
  }
  {
    const dwdp::api::Status st = dwdp::api::Runtime::Create(ValidConfig(), {}, {}, nullptr);
    Expect(!st.ok && OneSentence(st.message), "Create without a place for the result fails");
  }

  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    std::printf(
        "skipped: a GPU is visible, so a valid config would start a group here; run "
        "`mpirun -np 2 engine_example` instead\n");
    return failures == 0 ? 77 : 1;
  }
  {
    const dwdp::api::Status st = CreateWith(ValidConfig());
    Expect(!st.ok && OneSentence(st.message) && Contains(st.message, "cannot run"),
           "without a GPU a valid config fails with one sentence saying why");
  }
  std::printf("%s\n", failures == 0 ? "all checks passed" : "some checks FAILED");
  return failures == 0 ? 0 : 1;
}
