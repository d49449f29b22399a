#pragma once

// Compute time of every MoE layer of a forward, as the pipeline runs it: the work before the
// MoE kernel binds its weights (attention, shared experts) and the routed-MoE kernel itself,
// plus the dense layers before the first MoE layer. The simulator and the GPU run use the same
// numbers, from the perf model or from the scenario's `workload.layer_compute_ns`.

#include <string>
#include <vector>

#include "core/config/scenario.h"
#include "core/perf/perf_model.h"

namespace dwdp {

struct LayerTimes {
  std::vector<double> attention_ns;  // per MoE layer position
  std::vector<double> moe_ns;        // per MoE layer position
  double prelude_ns = 0;             // dense layers before the first MoE layer
  std::string source;                // "perf model" or "scenario (workload.layer_compute_ns)"
  std::vector<ProfileDependency> depends_on;
};

LayerTimes ComputeLayerTimes(const Scenario& scenario);

}  // namespace dwdp
