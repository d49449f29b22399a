#include "core/config/scenario.h"

#include "core/util/bytes.h"

namespace dwdp {

const char* ProvenanceName(Provenance p) {
  switch (p) {
    case Provenance::kSpec:
      return "spec";
    case Provenance::kMeasured:
      return "measured";
    case Provenance::kAssumed:
      return "assumed";
  }
  return "?";
}

const char* ComputeKindName(ComputeKind kind) {
  return kind == ComputeKind::kMoe ? "moe" : "stand-in";
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kFp4:
      return "fp4";
    case DType::kFp8:
      return "fp8";
    case DType::kBf16:
      return "bf16";
  }
  return "?";
}

const char* ContentionModeName(ContentionMode m) {
  switch (m) {
    case ContentionMode::kRotate:
      return "rotate";
    case ContentionMode::kAscending:
      return "ascending";
    case ContentionMode::kRoundRobin:
      return "round_robin";
    case ContentionMode::kStaggered:
      return "staggered";
  }
  return "?";
}

const char* LengthDistributionName(LengthDistribution d) {
  switch (d) {
    case LengthDistribution::kFixed:
      return "fixed";
    case LengthDistribution::kUniform:
      return "uniform";
    case LengthDistribution::kLognormal:
      return "lognormal";
    case LengthDistribution::kFile:
      return "file";
  }
  return "?";
}

const char* OwnerPolicyName(OwnerPolicy p) {
  switch (p) {
    case OwnerPolicy::kLowest:
      return "lowest";
    case OwnerPolicy::kBalanced:
      return "balanced";
  }
  return "?";
}

uint64_t ModelSpec::expert_bytes() const {
  // The loader rejects weight lists whose sum overflows, so plain addition is exact here;
  // saturating keeps a hand-built spec from wrapping silently.
  uint64_t total = 0;
  for (const WeightSpec& weight : weights) {
    const std::optional<uint64_t> sum = CheckedAdd(total, weight.expert_bytes);
    if (!sum) return UINT64_MAX;
    total = *sum;
  }
  return total;
}

}  // namespace dwdp
