#include "core/config/moe_weights.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace dwdp {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string Describe(const WeightSpec& w) {
  if (w.shape.empty() || !w.dtype) return absl::StrCat(w.name, " (no dtype and shape)");
  return absl::StrCat(w.name, " ", DTypeName(*w.dtype), " ", ShapeText(w.shape));
}

}  // namespace

std::optional<uint64_t> BytesOfElements(DType dtype, uint64_t elements) {
  switch (dtype) {
    case DType::kBf16:
      return elements * 2;
    case DType::kFp8:
      return elements;
    case DType::kFp4:
      if (elements % 2 != 0) return std::nullopt;
      return elements / 2;
  }
  return std::nullopt;
}

absl::StatusOr<MoeWeightIndex> FindMoeWeights(const ModelSpec& model) {
  const std::vector<int64_t> gate_up = {2 * model.moe_intermediate_size, model.hidden_size};
  const std::vector<int64_t> down = {model.hidden_size, model.moe_intermediate_size};
  MoeWeightIndex index;
  std::vector<std::string> listed;
  for (size_t i = 0; i < model.weights.size(); ++i) {
    const WeightSpec& w = model.weights[i];
    listed.push_back(Describe(w));
    if (w.dtype != DType::kBf16) continue;
    // With hidden == 2 · intermediate both shapes are the same; the first is gate_up.
    if (w.shape == gate_up && index.w13 < 0) {
      index.w13 = static_cast<int64_t>(i);
    } else if (w.shape == down && index.w2 < 0) {
      index.w2 = static_cast<int64_t>(i);
    }
  }
  if (index.w13 >= 0 && index.w2 >= 0) return index;
  return absl::InvalidArgumentError(absl::StrCat(
      "the real MoE kernel reads BF16 weights: one of shape [2·moe_intermediate_size, "
      "hidden_size] = ",
      ShapeText(gate_up), " (gate_up) and one of shape [hidden_size, moe_intermediate_size] = ",
      ShapeText(down), " (down) per expert, each with dtype bf16; the model's weights are ",
      absl::StrJoin(listed, ", ")));
}

}  // namespace dwdp
