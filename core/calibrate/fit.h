#pragma once

// The arithmetic of `dwdp calibrate`: a least-squares fit of copy time against copy size, and
// robust summaries of repeated measurements. Pure functions, so they are tested without a GPU.

#include <cstdint>
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

}  // namespace dwdp
