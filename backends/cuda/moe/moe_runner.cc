#include "backends/cuda/moe/moe_runner.h"

#include <cuda_runtime_api.h>

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/moe/moe_kernels.h"
#include "backends/cuda/moe/moe_layer.h"
#include "core/pattern.h"

namespace dwdp::cuda::moe {
namespace {

// Comparisons between two synchronisations (a forward's layers).
constexpr int kCheckSlots = 4096;

absl::Status CudaError(cudaError_t error, const std::string& what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(error)));
}

// A device allocation that frees itself.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  absl::Status Allocate(uint64_t bytes, const std::string& what) {
    if (bytes <= bytes_) return absl::OkStatus();
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    if (absl::Status s = CudaError(cudaMalloc(&ptr_, bytes),
                                   absl::StrFormat("allocate %d bytes for %s", bytes, what));
        !s.ok()) {
      return s;
    }
    bytes_ = bytes;
    return absl::OkStatus();
  }
  uint64_t address() const { return reinterpret_cast<uint64_t>(ptr_); }

 private:
  void* ptr_ = nullptr;
  uint64_t bytes_ = 0;
};

class MoeRunner : public MoeExtension {
 public:
  explicit MoeRunner(int64_t rank) : rank_(rank) {}
  ~MoeRunner() override {
    if (setup_stream_ != nullptr) {
      cudaStreamSynchronize(setup_stream_);
      cudaStreamDestroy(setup_stream_);
    }
  }

  absl::Status Prepare(const MoeKernel& kernel) override {
    absl::StatusOr<Shape*> shape = ShapeOf(kernel);
    if (!shape.ok()) return shape.status();
    if (absl::Status s = EnsureSetupStream(); !s.ok()) return s;
    return PlanOf(**shape, kernel, setup_stream_).status();
  }

  absl::Status Enqueue(const MoeKernel& kernel, CUstream_st* stream, const OpTag& tag) override {
    absl::StatusOr<Shape*> found = ShapeOf(kernel);
    if (!found.ok()) return found.status();
    Shape& shape = **found;
    // A launch nobody prepared plans on its own stream (synchronously), after the work before it.
    absl::StatusOr<const RoutingPlan*> plan = PlanOf(shape, kernel, stream);
    if (!plan.ok()) return plan.status();
    MoeLayer& layer = *shape.layer;
    if (absl::Status s = layer.GenerateInput(kernel.input_seed, kernel.tokens, stream); !s.ok()) {
      return s;
    }
    if (absl::Status s = layer.Enqueue(**plan, kernel.w13, kernel.w2, stream, shape.strategy);
        !s.ok()) {
      return s;
    }
    if (!kernel.check_against_resident) return absl::OkStatus();
    return EnqueueCheck(shape, kernel, **plan, stream, tag);
  }

  absl::Status Collect() override {
    if (checks_.empty()) return absl::OkStatus();
    std::vector<uint64_t> found(checks_.size(), kNoDifference);
    absl::Status read =
        CudaError(cudaMemcpy(found.data(), reinterpret_cast<void*>(check_slots_.address()),
                             found.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost),
                  absl::StrFormat("read the MoE reference checks on rank %d", rank_));
    std::vector<Check> checks = std::move(checks_);
    checks_.clear();
    if (!read.ok()) return read;
    for (size_t i = 0; i < checks.size(); ++i) {
      if (found[i] == kNoDifference) continue;
      const Check& c = checks[i];
      return absl::DataLossError(absl::StrFormat(
          "the MoE output of layer %d%s on rank %d, computed on the composite tensors, differs "
          "from the same kernel on a fully resident copy of the layer's weights at element %d "
          "(token %d, column %d of %d tokens x %d)",
          c.layer, c.forward >= 0 ? absl::StrFormat(" in forward %d", c.forward) : "", rank_,
          found[i], found[i] / c.hidden, found[i] % c.hidden, c.tokens, c.hidden));
    }
    return absl::OkStatus();
  }

 private:
  using ShapeKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;
  struct Shape {
    std::unique_ptr<MoeLayer> layer;
    GemmStrategy strategy = GemmStrategy::kAuto;
    bool tuned = false;
    std::map<uint64_t, RoutingPlan> plans;  // by routing seed
    DeviceBuffer resident_w13;              // the functional check's reference weights
    DeviceBuffer resident_w2;
    DeviceBuffer saved_output;
  };
  struct Check {
    int64_t layer = 0;
    int64_t forward = -1;
    int64_t tokens = 0;
    int64_t hidden = 0;
  };

  absl::Status EnsureSetupStream() {
    if (setup_stream_ != nullptr) return absl::OkStatus();
    return CudaError(cudaStreamCreateWithFlags(&setup_stream_, cudaStreamNonBlocking),
                     "create the MoE set-up stream");
  }

  absl::StatusOr<Shape*> ShapeOf(const MoeKernel& kernel) {
    const ShapeKey key{kernel.hidden, kernel.intermediate, kernel.num_experts, kernel.top_k,
                       kernel.tokens};
    auto it = shapes_.find(key);
    if (it != shapes_.end()) return &it->second;
    const MoeShape shape{kernel.num_experts, kernel.hidden, kernel.intermediate, kernel.top_k};
    absl::StatusOr<std::unique_ptr<MoeLayer>> layer = MoeLayer::Create(shape, kernel.tokens);
    if (!layer.ok()) {
      return absl::Status(
          layer.status().code(),
          absl::StrFormat("the MoE kernel for %d experts, hidden %d, intermediate "
                          "%d, top-%d, %d tokens on rank %d: %s",
                          kernel.num_experts, kernel.hidden, kernel.intermediate, kernel.top_k,
                          kernel.tokens, rank_, layer.status().message()));
    }
    Shape& added = shapes_[key];
    added.layer = *std::move(layer);
    return &added;
  }

  // The layer's routing plan, made (and the shape's strategy tuned) at first use.
  absl::StatusOr<const RoutingPlan*> PlanOf(Shape& shape, const MoeKernel& kernel,
                                            cudaStream_t stream) {
    auto it = shape.plans.find(kernel.routing_seed);
    if (it != shape.plans.end()) return &it->second;
    absl::StatusOr<RoutingPlan> plan =
        shape.layer->PlanRouting(kernel.routing_seed, kernel.tokens, stream);
    if (!plan.ok()) return plan.status();
    if (!shape.tuned) {
      // Timed on the weights the kernel will read (their values do not change GEMM speed);
      // the choice then holds for every layer, so composite and reference runs use the same
      // GEMMs and compare bit for bit.
      absl::StatusOr<GemmStrategy> best = shape.layer->Tune(*plan, kernel.w13, kernel.w2, stream);
      if (!best.ok()) return best.status();
      shape.strategy = *best;
      shape.tuned = true;
    }
    return &(shape.plans[kernel.routing_seed] = *std::move(plan));
  }

  absl::Status EnqueueCheck(Shape& shape, const MoeKernel& kernel, const RoutingPlan& plan,
                            CUstream_st* stream, const OpTag& tag) {
    const MoeShape s{kernel.num_experts, kernel.hidden, kernel.intermediate, kernel.top_k};
    const uint64_t eb13 = W13ExpertBytes(s);
    const uint64_t eb2 = W2ExpertBytes(s);
    const uint64_t experts = static_cast<uint64_t>(kernel.num_experts);
    const uint64_t output_bytes =
        static_cast<uint64_t>(kernel.tokens) * static_cast<uint64_t>(kernel.hidden) * 2;
    if (checks_.size() >= static_cast<size_t>(kCheckSlots)) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "more than %d MoE reference checks between two synchronisations", kCheckSlots));
    }
    for (auto [buffer, bytes, what] :
         {std::tuple<DeviceBuffer*, uint64_t, const char*>{&shape.resident_w13, experts * eb13,
                                                           "the resident gate_up weights"},
          {&shape.resident_w2, experts * eb2, "the resident down weights"},
          {&shape.saved_output, output_bytes, "the MoE output under check"},
          {&check_slots_, kCheckSlots * sizeof(uint64_t), "the MoE check results"}}) {
      if (absl::Status st = buffer->Allocate(bytes, what); !st.ok()) return st;
    }
    const std::string where =
        absl::StrFormat("MoE reference check of layer %d on rank %d", kernel.layer, rank_);
    if (absl::Status st =
            CudaError(cudaMemcpyAsync(reinterpret_cast<void*>(shape.saved_output.address()),
                                      reinterpret_cast<const void*>(shape.layer->output()),
                                      output_bytes, cudaMemcpyDeviceToDevice, stream),
                      where);
        !st.ok()) {
      return st;
    }
    // The reference: the layer's weights as one ordinary [num_experts, ...] allocation, with
    // the same pattern the local handles were filled with (expert by expert, as the owners have
    // them), the same input, plan and strategy.
    for (auto [dst, bytes, weight, eb] :
         {std::tuple<uint64_t, uint64_t, int64_t, uint64_t>{
              shape.resident_w13.address(), experts * eb13, kernel.w13_weight, eb13},
          {shape.resident_w2.address(), experts * eb2, kernel.w2_weight, eb2}}) {
      const int error =
          LaunchFill(stream, dst, bytes, kernel.layer, weight, eb, 0, 1024, kPatternBf16);
      if (absl::Status st = CudaError(static_cast<cudaError_t>(error), where); !st.ok()) return st;
    }
    if (absl::Status st = shape.layer->Enqueue(plan, shape.resident_w13.address(),
                                               shape.resident_w2.address(), stream, shape.strategy);
        !st.ok()) {
      return st;
    }
    uint64_t* slot = reinterpret_cast<uint64_t*>(check_slots_.address()) + checks_.size();
    if (absl::Status st = CudaError(cudaMemsetAsync(slot, 0xFF, sizeof(uint64_t), stream), where);
        !st.ok()) {
      return st;
    }
    const int error = LaunchCompareBf16(
        stream, reinterpret_cast<const uint16_t*>(shape.saved_output.address()),
        reinterpret_cast<const uint16_t*>(shape.layer->output()),
        static_cast<uint64_t>(kernel.tokens) * static_cast<uint64_t>(kernel.hidden), slot);
    if (absl::Status st = CudaError(static_cast<cudaError_t>(error), where); !st.ok()) return st;
    checks_.push_back({kernel.layer, tag.forward, kernel.tokens, kernel.hidden});
    return absl::OkStatus();
  }

  int64_t rank_;
  cudaStream_t setup_stream_ = nullptr;
  std::map<ShapeKey, Shape> shapes_;
  DeviceBuffer check_slots_;
  std::vector<Check> checks_;  // by slot, since the last Collect
};

}  // namespace

std::unique_ptr<MoeExtension> MakeMoeRunner(int64_t rank) {
  return std::make_unique<MoeRunner>(rank);
}

}  // namespace dwdp::cuda::moe
