// moe_bench: the routed-MoE layer of backends/cuda/moe on one GPU, against torch 2.11
// torch._grouped_mm on one H200 (routed experts only: gate_up GEMM, SiLU * up, down GEMM on
// already-permuted tokens, uniform top-k; CUDA events, mean of 10 after 3 warm-ups).
//
//   moe_bench [--shapes qwen3,gpt-oss,dsv3] [--tokens 1024,4096,16384]
//             [--strategy auto|grouped|padded|per-expert|all] [--format text|json]
//
// Per (shape, tokens, strategy): the GEMM part (GEMM1 + SiLU * up + GEMM2 on the permuted
// tokens, comparable to torch's number), the whole layer (router, permutation + gather, GEMMs,
// combine), the torch reference, ours / torch and the GEMM part's TFLOP/s (useful FLOPs: no
// padding). "auto" tunes first (Tune) and reports the strategy it chose. Weights are seeded
// bf16 values in [-1, 1] in plain device memory.
//
// Exit codes: 0 done, 2 bad options, 1 a failure on the GPU.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_error.h"
#include "backends/cuda/moe/moe_kernels.h"
#include "backends/cuda/moe/moe_layer.h"
#include "nlohmann/json.hpp"

namespace dwdp::cuda::moe {
namespace {

constexpr int kWarmups = 3;
constexpr int kIterations = 10;
constexpr uint64_t kRoutingSeed = 1;
constexpr uint64_t kInputSeed = 2;

struct BenchShape {
  std::string name;
  std::string model;
  MoeShape shape;
  // Reference milliseconds per token count, one H200: torch._grouped_mm and
  // cublasGemmGroupedBatchedEx on the same GEMMs.
  std::map<int64_t, double> torch_ms;
  std::map<int64_t, double> cublas_grouped_ms;
};

const std::vector<BenchShape>& KnownShapes() {
  static const auto* shapes = new std::vector<BenchShape>{
      {"qwen3",
       "Qwen3-30B-A3B",
       {128, 2048, 768, 8},
       {{1024, 0.456}, {4096, 0.807}, {16384, 2.53}},
       {{1024, 0.333}, {4096, 0.986}, {16384, 3.83}}},
      {"gpt-oss",
       "gpt-oss-120b",
       {128, 2880, 2880, 4},
       {{1024, 2.24}, {4096, 3.06}, {16384, 6.86}},
       {{1024, 1.54}, {4096, 2.77}, {16384, 9.54}}},
      {"dsv3",
       "DeepSeek-V3",
       {256, 7168, 2048, 8},
       {{1024, 7.09}, {4096, 10.1}, {16384, 23.8}},
       {{1024, 5.41}, {4096, 10.5}, {16384, 39.6}}},
  };
  return *shapes;
}

struct Row {
  std::string shape;
  int64_t tokens = 0;
  std::string strategy;  // "grouped", or "auto -> padded"
  double gemm_ms = 0;
  double layer_ms = 0;
  std::optional<double> torch_ms;
  std::optional<double> cublas_grouped_ms;
  double tflops = 0;
};

struct Device {
  explicit Device(uint64_t bytes) {
    error = cudaMalloc(&p, bytes);
    if (error != cudaSuccess) p = nullptr;
  }
  ~Device() {
    if (p != nullptr) cudaFree(p);
  }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  uint64_t address() const { return reinterpret_cast<uint64_t>(p); }
  void* p = nullptr;
  cudaError_t error = cudaSuccess;
};

struct EventPair {
  EventPair() {
    cudaEventCreate(&start);
    cudaEventCreate(&end);
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(end);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  cudaEvent_t start = nullptr;
  cudaEvent_t end = nullptr;
};

// Mean milliseconds of `iterations` runs of `run` after `warmups`, each run between its own pair
// of events on `stream`.
template <typename Run>
absl::StatusOr<double> MeanMs(cudaStream_t stream, const Run& run) {
  for (int i = 0; i < kWarmups; ++i) {
    if (absl::Status s = run(); !s.ok()) return s;
  }
  std::vector<EventPair> events(kIterations);
  for (EventPair& e : events) {
    if (e.start == nullptr || e.end == nullptr) {
      return absl::InternalError("moe_bench: creating timing events failed");
    }
    if (absl::Status s = RuntimeStatus(cudaEventRecord(e.start, stream), "recording an event");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = run(); !s.ok()) return s;
    if (absl::Status s = RuntimeStatus(cudaEventRecord(e.end, stream), "recording an event");
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = RuntimeStatus(cudaStreamSynchronize(stream), "timing"); !s.ok()) return s;
  double total = 0;
  for (EventPair& e : events) {
    float ms = 0;
    if (absl::Status s =
            RuntimeStatus(cudaEventElapsedTime(&ms, e.start, e.end), "reading an event");
        !s.ok()) {
      return s;
    }
    total += ms;
  }
  return total / kIterations;
}

absl::Status RunShape(const BenchShape& bench, const std::vector<int64_t>& token_counts,
                      const std::string& strategy_option, cudaStream_t stream,
                      std::vector<Row>& rows) {
  const MoeShape& shape = bench.shape;
  const uint64_t w13_bytes = static_cast<uint64_t>(shape.num_experts) * W13ExpertBytes(shape);
  const uint64_t w2_bytes = static_cast<uint64_t>(shape.num_experts) * W2ExpertBytes(shape);
  Device w13(w13_bytes);
  Device w2(w2_bytes);
  if (w13.p == nullptr || w2.p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: allocating %.2f GiB of weights failed", bench.name,
                        static_cast<double>(w13_bytes + w2_bytes) / (1ull << 30)));
  }
  // Weight rows are written like input rows: seeded bf16 values in [-1, 1].
  if (absl::Status s = RuntimeStatus(
          LaunchGenerateInput(stream, static_cast<uint16_t*>(w13.p), 101,
                              shape.num_experts * 2 * shape.intermediate, shape.hidden),
          "filling w13");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          RuntimeStatus(LaunchGenerateInput(stream, static_cast<uint16_t*>(w2.p), 102,
                                            shape.num_experts * shape.hidden, shape.intermediate),
                        "filling w2");
      !s.ok()) {
    return s;
  }
  int64_t max_tokens = 0;
  for (int64_t t : token_counts) max_tokens = std::max(max_tokens, t);
  auto layer = MoeLayer::Create(shape, max_tokens);
  if (!layer.ok()) return layer.status();

  for (int64_t tokens : token_counts) {
    auto plan = (*layer)->PlanRouting(kRoutingSeed, tokens, stream);
    if (!plan.ok()) return plan.status();
    if (absl::Status s = (*layer)->GenerateInput(kInputSeed, tokens, stream); !s.ok()) return s;

    std::vector<std::pair<GemmStrategy, std::string>> strategies;
    if (strategy_option == "all") {
      for (GemmStrategy s : kConcreteStrategies) {
        strategies.emplace_back(s, std::string(GemmStrategyName(s)));
      }
    } else if (strategy_option == "auto") {
      auto chosen = (*layer)->Tune(*plan, w13.address(), w2.address(), stream);
      if (!chosen.ok()) return chosen.status();
      strategies.emplace_back(*chosen, absl::StrCat("auto -> ", GemmStrategyName(*chosen)));
    } else {
      auto parsed = ParseGemmStrategy(strategy_option);
      if (!parsed.ok()) return parsed.status();
      strategies.emplace_back(*parsed, std::string(GemmStrategyName(*parsed)));
    }

    for (const auto& [strategy, label] : strategies) {
      auto layer_ms = MeanMs(stream, [&] {
        return (*layer)->Enqueue(*plan, w13.address(), w2.address(), stream, strategy);
      });
      if (!layer_ms.ok()) return layer_ms.status();
      if (absl::Status s = (*layer)->EnqueueRouting(*plan, stream, strategy); !s.ok()) return s;
      auto gemm_ms = MeanMs(stream, [&] {
        return (*layer)->EnqueueExperts(*plan, w13.address(), w2.address(), stream, strategy);
      });
      if (!gemm_ms.ok()) return gemm_ms.status();
      if (absl::Status s = (*layer)->CheckRouting(stream); !s.ok()) return s;

      Row row;
      row.shape = bench.name;
      row.tokens = tokens;
      row.strategy = label;
      row.gemm_ms = *gemm_ms;
      row.layer_ms = *layer_ms;
      if (auto it = bench.torch_ms.find(tokens); it != bench.torch_ms.end()) {
        row.torch_ms = it->second;
      }
      if (auto it = bench.cublas_grouped_ms.find(tokens); it != bench.cublas_grouped_ms.end()) {
        row.cublas_grouped_ms = it->second;
      }
      row.tflops = ExpertGemmFlops(shape, tokens) / (row.gemm_ms * 1e-3) / 1e12;
      rows.push_back(row);
      std::fprintf(stderr, "%s %d tokens %s: GEMMs %.3f ms, layer %.3f ms\n", bench.name.c_str(),
                   static_cast<int>(tokens), label.c_str(), row.gemm_ms, row.layer_ms);
    }
  }
  return absl::OkStatus();
}

std::string Ms(const std::optional<double>& ms) {
  return ms.has_value() ? absl::StrFormat("%.3f", *ms) : std::string("-");
}

void PrintText(const std::vector<Row>& rows, const std::string& device) {
  std::printf("MoE layer on %s (BF16; mean of %d after %d warm-ups)\n", device.c_str(), kIterations,
              kWarmups);
  std::printf("%-8s %7s %-18s %10s %10s %10s %8s %9s %12s\n", "shape", "tokens", "strategy",
              "gemm ms", "layer ms", "torch ms", "ours/t", "TFLOP/s", "cublas-grp");
  for (const Row& r : rows) {
    const std::string ratio =
        r.torch_ms.has_value() ? absl::StrFormat("%.2fx", r.gemm_ms / *r.torch_ms) : "-";
    std::printf("%-8s %7d %-18s %10.3f %10.3f %10s %8s %9.1f %12s\n", r.shape.c_str(),
                static_cast<int>(r.tokens), r.strategy.c_str(), r.gemm_ms, r.layer_ms,
                Ms(r.torch_ms).c_str(), ratio.c_str(), r.tflops, Ms(r.cublas_grouped_ms).c_str());
  }
}

void PrintJson(const std::vector<Row>& rows, const std::string& device) {
  nlohmann::json out;
  out["device"] = device;
  out["iterations"] = kIterations;
  out["warmups"] = kWarmups;
  out["rows"] = nlohmann::json::array();
  for (const Row& r : rows) {
    nlohmann::json j;
    j["shape"] = r.shape;
    j["tokens"] = r.tokens;
    j["strategy"] = r.strategy;
    j["gemm_ms"] = r.gemm_ms;
    j["layer_ms"] = r.layer_ms;
    j["torch_ms"] = r.torch_ms.has_value() ? nlohmann::json(*r.torch_ms) : nlohmann::json();
    j["ratio_to_torch"] =
        r.torch_ms.has_value() ? nlohmann::json(r.gemm_ms / *r.torch_ms) : nlohmann::json();
    j["cublas_grouped_ms"] =
        r.cublas_grouped_ms.has_value() ? nlohmann::json(*r.cublas_grouped_ms) : nlohmann::json();
    j["gemm_tflops"] = r.tflops;
    out["rows"].push_back(j);
  }
  std::cout << out.dump(2) << "\n";
}

int Main(int argc, char** argv) {
  CLI::App app{"The routed-MoE layer's GEMMs and whole layer against torch._grouped_mm"};
  std::string shapes_option = "qwen3,gpt-oss,dsv3";
  std::string tokens_option = "1024,4096,16384";
  std::string strategy_option = "auto";
  std::string format = "text";
  app.add_option("--shapes", shapes_option, "comma-separated: qwen3, gpt-oss, dsv3")
      ->capture_default_str();
  app.add_option("--tokens", tokens_option, "comma-separated token counts")->capture_default_str();
  app.add_option("--strategy", strategy_option, "auto, grouped, padded, per-expert or all")
      ->check(CLI::IsMember({"auto", "grouped", "padded", "per-expert", "all"}))
      ->capture_default_str();
  app.add_option("--format", format, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  std::vector<const BenchShape*> shapes;
  for (absl::string_view name : absl::StrSplit(shapes_option, ',', absl::SkipEmpty())) {
    const BenchShape* found = nullptr;
    for (const BenchShape& s : KnownShapes()) {
      if (s.name == name) found = &s;
    }
    if (found == nullptr) {
      std::cerr << "error: unknown shape \"" << name << "\" (qwen3, gpt-oss, dsv3)\n";
      return 2;
    }
    shapes.push_back(found);
  }
  std::vector<int64_t> token_counts;
  for (absl::string_view text : absl::StrSplit(tokens_option, ',', absl::SkipEmpty())) {
    int64_t tokens = 0;
    if (!absl::SimpleAtoi(text, &tokens) || tokens < 1 || tokens > (1 << 20)) {
      std::cerr << "error: --tokens wants integers in [1, 1048576], got \"" << text << "\"\n";
      return 2;
    }
    token_counts.push_back(tokens);
  }
  if (shapes.empty() || token_counts.empty()) {
    std::cerr << "error: --shapes and --tokens need at least one value each\n";
    return 2;
  }

  if (absl::StatusOr<int> count = CudaDeviceCount(); !count.ok()) {
    std::cerr << "error: " << count.status().message() << "\n";
    return 1;
  }
  if (absl::Status s = UseDevice(0); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return 1;
  }
  const std::string device = DescribeDevice(0);
  cudaStream_t stream = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    std::cerr << "error: creating a stream failed\n";
    return 1;
  }
  std::vector<Row> rows;
  int exit_code = 0;
  for (const BenchShape* shape : shapes) {
    if (absl::Status s = RunShape(*shape, token_counts, strategy_option, stream, rows); !s.ok()) {
      std::cerr << "error: " << shape->name << ": " << s.message() << "\n";
      exit_code = 1;
      break;
    }
  }
  cudaStreamDestroy(stream);
  if (format == "json") {
    PrintJson(rows, device);
  } else {
    PrintText(rows, device);
  }
  return exit_code;
}

}  // namespace
}  // namespace dwdp::cuda::moe

int main(int argc, char** argv) { return dwdp::cuda::moe::Main(argc, argv); }
