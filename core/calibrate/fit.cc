#include "core/calibrate/fit.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
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

namespace {

// The roofline's time above the fixed cost: max(a · flops, b · bytes), a and b in ns per FLOP
// and per byte (0: that side never binds).
double RooflineNs(const RooflinePoint& p, double a, double b) {
  return std::max(a * p.flops, b * p.bytes);
}

// Σ of squared relative residuals of the roofline (a, b).
double RelativeError(absl::Span<const RooflinePoint> points, double a, double b) {
  double sum = 0;
  for (const RooflinePoint& p : points) {
    const double r = (RooflineNs(p, a, b) + p.fixed_ns - p.measured_ns) / p.measured_ns;
    sum += r * r;
  }
  return sum;
}

// The slope through the origin that fits y = slope · x best in relative error: minimises
// Σ ((slope · x_i - y_i) / t_i)^2 over the chosen points.
double ZeroInterceptSlope(absl::Span<const RooflinePoint> points, const std::vector<size_t>& which,
                          bool flops) {
  double xy = 0, xx = 0;
  for (size_t i : which) {
    const RooflinePoint& p = points[i];
    const double x = flops ? p.flops : p.bytes;
    const double w = 1 / (p.measured_ns * p.measured_ns);
    xy += w * x * (p.measured_ns - p.fixed_ns);
    xx += w * x * x;
  }
  return xx > 0 ? xy / xx : 0;
}

}  // namespace

absl::StatusOr<RooflineFit> FitRoofline(absl::Span<const RooflinePoint> points, double peak_flops,
                                        double hbm_bw) {
  if (!(peak_flops > 0) || !(hbm_bw > 0) || !std::isfinite(peak_flops) || !std::isfinite(hbm_bw)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a roofline fit needs a positive peak FLOP rate and HBM bandwidth, got %g and %g",
        peak_flops, hbm_bw));
  }
  RooflineFit fit;
  std::vector<RooflinePoint> usable;
  for (size_t i = 0; i < points.size(); ++i) {
    const RooflinePoint& p = points[i];
    if (!std::isfinite(p.flops) || !std::isfinite(p.bytes) || !std::isfinite(p.fixed_ns) ||
        !std::isfinite(p.measured_ns) || p.flops <= 0 || p.bytes <= 0 || p.fixed_ns < 0 ||
        p.measured_ns <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "roofline point %d (%g FLOP, %g bytes, %g ns fixed, %g ns measured) is not a "
          "positive finite measurement",
          i, p.flops, p.bytes, p.fixed_ns, p.measured_ns));
    }
    if (p.measured_ns <= p.fixed_ns) {
      ++fit.below_fixed_cost;
      continue;
    }
    usable.push_back(p);
  }
  if (usable.size() < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a roofline fit needs at least two points slower than their fixed cost, got %d",
        usable.size()));
  }
  // Memory-bound points have the lowest FLOP per byte: every consistent split is a prefix of
  // the points in that order.
  std::vector<size_t> order(usable.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return usable[x].flops / usable[x].bytes < usable[y].flops / usable[y].bytes;
  });
  double best_error = std::numeric_limits<double>::infinity();
  double best_a = 0, best_b = 0;
  for (size_t split = 0; split <= order.size(); ++split) {
    const std::vector<size_t> memory(order.begin(), order.begin() + split);
    const std::vector<size_t> compute(order.begin() + split, order.end());
    const double a = ZeroInterceptSlope(usable, compute, /*flops=*/true);
    const double b = ZeroInterceptSlope(usable, memory, /*flops=*/false);
    const double error = RelativeError(usable, a, b);
    if (error < best_error) {
      best_error = error;
      best_a = a;
      best_b = b;
    }
  }
  // Each side refitted on the points the best roofline puts there, until nothing moves.
  for (int round = 0; round < 20; ++round) {
    std::vector<size_t> memory, compute;
    for (size_t i = 0; i < usable.size(); ++i) {
      (best_a * usable[i].flops >= best_b * usable[i].bytes ? compute : memory).push_back(i);
    }
    const double a = ZeroInterceptSlope(usable, compute, true);
    const double b = ZeroInterceptSlope(usable, memory, false);
    const double error = RelativeError(usable, a, b);
    if (!(error < best_error)) break;
    best_error = error;
    best_a = a;
    best_b = b;
  }
  for (const RooflinePoint& p : usable) {
    (best_a * p.flops >= best_b * p.bytes ? fit.compute_bound : fit.memory_bound) += 1;
    const double r =
        std::abs((RooflineNs(p, best_a, best_b) + p.fixed_ns - p.measured_ns) / p.measured_ns);
    fit.max_relative_residual = std::max(fit.max_relative_residual, r);
  }
  fit.rms_relative_residual = std::sqrt(best_error / static_cast<double>(usable.size()));
  // a = 1e9 / (peak · efficiency) ns per FLOP, likewise b per byte.
  if (fit.compute_bound > 0 && best_a > 0) fit.compute_efficiency = 1e9 / (best_a * peak_flops);
  if (fit.memory_bound > 0 && best_b > 0) fit.memory_efficiency = 1e9 / (best_b * hbm_bw);
  return fit;
}

}  // namespace dwdp
