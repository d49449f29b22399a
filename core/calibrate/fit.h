#pragma once

// The arithmetic of `dwdp calibrate`: a least-squares fit of copy time against copy size, and
// robust summaries of repeated measurements. Pure functions, so they are tested without a GPU.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace dwdp {

// One timed copy.
struct CopySample {
  double bytes = 0;
  double ns = 0;
  friend bool operator==(const CopySample&, const CopySample&) = default;
};

// How much each sample counts in the fit.
enum class FitWeighting {
  // Ordinary least squares: minimises absolute residuals, so the largest copies (whose noise is
  // the largest in nanoseconds) decide the intercept as much as the small ones do.
  kUniform,
  // Weights 1/ns^2: minimises relative residuals, so a 256 KiB copy and a 1 GiB copy count
  // alike. This is what recovers a few-microsecond latency next to millisecond-long copies.
  kRelative,
};

// time_ns = latency_ns + bytes / bytes_per_s * 1e9.
struct LatencyBandwidthFit {
  double latency_ns = 0;
  double bytes_per_s = 0;
  int64_t samples = 0;
  // Goodness of fit, in the units people read: the root mean square and the largest of
  // |predicted - measured| / measured over the samples.
  double rms_relative_residual = 0;
  double max_relative_residual = 0;
  // Coefficient of determination of the (weighted) fit; 1 for a perfect line.
  double r_squared = 0;

  double PredictNs(double bytes) const { return latency_ns + bytes / bytes_per_s * 1e9; }
};

// Fails (InvalidArgument, with the reason) with fewer than two distinct sizes, a non-finite or
// non-positive sample, or when the data give a non-positive slope (time does not grow with
// size: nothing to call a bandwidth). A negative intercept is returned as is; the caller decides
// whether to trust it.
absl::StatusOr<LatencyBandwidthFit> FitLatencyBandwidth(absl::Span<const CopySample> samples,
                                                        FitWeighting weighting);

// Order statistics of repeated measurements; empty input gives all zeros.
struct Summary {
  int64_t count = 0;
  double min = 0;
  double median = 0;
  double mean = 0;
  double max = 0;
  // (max - min) / median: how far apart the repetitions were.
  double spread = 0;
};
Summary Summarize(std::vector<double> values);

// One timed kernel for the roofline fit: its work, the fixed cost the model adds on top of the
// roofline (kernel launch overheads) and the time it took.
struct RooflinePoint {
  double flops = 0;
  double bytes = 0;  // HBM traffic
  double fixed_ns = 0;
  double measured_ns = 0;
};

// time = max(flops / (peak_flops · compute_efficiency), bytes / (hbm_bw · memory_efficiency))
//        + fixed_ns, the perf model's roofline (core/perf/perf_model.h).
struct RooflineFit {
  // Unset when no point lies on that side of the fitted roofline: the points say nothing
  // about it.
  std::optional<double> compute_efficiency;
  std::optional<double> memory_efficiency;
  int64_t compute_bound = 0;  // points the fitted roofline puts on the math side
  int64_t memory_bound = 0;
  int64_t below_fixed_cost = 0;  // points no slower than their fixed cost, left out
  double rms_relative_residual = 0;
  double max_relative_residual = 0;
};

// Least squares on relative error (as the copy fit): the two efficiencies for which the
// roofline comes closest to every point's time. The points sorted by arithmetic intensity split
// into a memory-bound and a compute-bound part; every split is solved in closed form and the
// best one, by the error of the roofline itself, kept. Fails (InvalidArgument) on a non-finite
// or non-positive number or peak, or with fewer than two usable points.
absl::StatusOr<RooflineFit> FitRoofline(absl::Span<const RooflinePoint> points, double peak_flops,
                                        double hbm_bw);

}  // namespace dwdp
