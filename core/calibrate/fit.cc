#include "core/calibrate/fit.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_format.h"

namespace dwdp {

absl::StatusOr<LatencyBandwidthFit> FitLatencyBandwidth(absl::Span<const CopySample> samples,
                                                        FitWeighting weighting) {
  std::set<double> sizes;
  for (size_t i = 0; i < samples.size(); ++i) {
    const CopySample& s = samples[i];
    if (!std::isfinite(s.bytes) || !std::isfinite(s.ns) || s.bytes < 0 || s.ns <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "sample %d (%g bytes in %g ns) is not a positive finite measurement", i, s.bytes, s.ns));
    }
    sizes.insert(s.bytes);
  }
  if (sizes.size() < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a latency + bandwidth fit needs at least two distinct copy sizes, got %d sample(s) of "
        "%d size(s)",
        samples.size(), sizes.size()));
  }
  // Weighted least squares for t = a + b * x: the normal equations in weighted means.
  double sw = 0, sx = 0, st = 0;
  for (const CopySample& s : samples) {
    const double w = weighting == FitWeighting::kRelative ? 1.0 / (s.ns * s.ns) : 1.0;
    sw += w;
    sx += w * s.bytes;
    st += w * s.ns;
  }
  const double mx = sx / sw;
  const double mt = st / sw;
  double sxx = 0, sxt = 0, stt = 0;
  for (const CopySample& s : samples) {
    const double w = weighting == FitWeighting::kRelative ? 1.0 / (s.ns * s.ns) : 1.0;
    sxx += w * (s.bytes - mx) * (s.bytes - mx);
    sxt += w * (s.bytes - mx) * (s.ns - mt);
    stt += w * (s.ns - mt) * (s.ns - mt);
  }
  const double slope = sxt / sxx;  // ns per byte
  if (!(slope > 0) || !std::isfinite(slope)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "copy time does not grow with copy size (fitted slope %g ns per byte over %d samples): "
        "the timings are noise or the copies did not run",
        slope, samples.size()));
  }
  LatencyBandwidthFit fit;
  fit.latency_ns = mt - slope * mx;
  fit.bytes_per_s = 1e9 / slope;
  fit.samples = static_cast<int64_t>(samples.size());
  double sum_sq = 0, ss_res = 0;
  for (const CopySample& s : samples) {
    const double predicted = fit.latency_ns + slope * s.bytes;
    const double relative = std::abs(predicted - s.ns) / s.ns;
    sum_sq += relative * relative;
    fit.max_relative_residual = std::max(fit.max_relative_residual, relative);
    const double w = weighting == FitWeighting::kRelative ? 1.0 / (s.ns * s.ns) : 1.0;
    ss_res += w * (s.ns - predicted) * (s.ns - predicted);
  }
  fit.rms_relative_residual = std::sqrt(sum_sq / static_cast<double>(samples.size()));
  fit.r_squared = stt > 0 ? 1.0 - ss_res / stt : 1.0;
  return fit;
}

Summary Summarize(std::vector<double> values) {
  Summary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.count = static_cast<int64_t>(values.size());
  s.min = values.front();
  s.max = values.back();
  const size_t n = values.size();
  s.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(n);
  s.spread = s.median != 0 ? (s.max - s.min) / std::abs(s.median) : 0;
  return s;
}

}  // namespace dwdp
