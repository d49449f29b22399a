#include "core/calibrate/derive.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/backend.h"
#include "core/calibrate/fit.h"
#include "core/perf/perf_model.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

// A GPU pulling from all its peers at once at this fraction of one pair's rate or more is
// taken as not limited by the fabric (the difference is copy latency and noise).
constexpr double kFabricUnlimitedShare = 0.97;
// Round robin's critical path must move by more than this fraction of the measurement between
// on_link 0 and 1 for the measurement to say anything about on_link.
constexpr double kOnLinkMinEffect = 1e-3;

std::string Pct(double fraction) { return absl::StrFormat("%.1f%%", 100 * fraction); }

double Median(std::vector<double> values) { return Summarize(std::move(values)).median; }

// Everything the derivation builds on its way; the result is assembled from it at the end.
struct Work {
  const CalibrationRaw& raw;
  const HardwareProfile& base;
  CalibrationDerivation d;
  TextTable table{{"quantity", "measured", "base", "from", "fit / spread"}};
  std::string details;
  LatencyBandwidthFit fit;
  int64_t n = 0;
  double per_peer = 0;
  double piece = 0;

  const RawRank& rank0() const { return raw.ranks[0]; }
};

absl::Status SinglePair(Work& w) {
  std::vector<CopySample> samples = w.rank0().single_pair;
  std::map<uint64_t, std::vector<double>> by_size;
  for (const CopySample& s : samples) by_size[static_cast<uint64_t>(s.bytes)].push_back(s.ns);
  absl::StatusOr<LatencyBandwidthFit> fit = FitLatencyBandwidth(samples, FitWeighting::kRelative);
  if (!fit.ok()) {
    return absl::Status(fit.status().code(),
                        absl::StrCat("single-pair pull fit: ", fit.status().message()));
  }
  w.fit = *fit;
  CalibrationDerivation& d = w.d;
  d.m.peer_copy_bw = fit->bytes_per_s;
  d.m.copy_latency_ns = fit->latency_ns;
  if (fit->latency_ns < 0) {
    d.warnings.push_back(absl::StrFormat(
        "the fitted copy latency is negative (%.0f ns): written as 0; the small copies were "
        "faster than the line through the large ones",
        fit->latency_ns));
  }
  if (w.base.nvlink_bw.value > 0 && fit->bytes_per_s > 1.05 * w.base.nvlink_bw.value) {
    d.warnings.push_back(absl::StrFormat(
        "the peer copy rate %s is above the base profile's link capacity %s: are ranks 0 and 1 "
        "on different GPUs?",
        FormatBandwidth(fit->bytes_per_s), FormatBandwidth(w.base.nvlink_bw.value)));
  }
  const std::string fit_text =
      absl::StrFormat("rms %s, max %s (%d samples)", Pct(fit->rms_relative_residual),
                      Pct(fit->max_relative_residual), fit->samples);
  w.table.AddRow({"peer_copy_bw", FormatBandwidth(fit->bytes_per_s),
                  FormatBandwidth(w.base.peer_copy_bw.value),
                  absl::StrFormat("rank 0 <- rank 1, %d sizes", by_size.size()), fit_text});
  w.table.AddRow({"copy_latency_ns", FormatNanos(std::max(0.0, fit->latency_ns)),
                  FormatNanos(w.base.copy_latency_ns.value), "intercept of the same fit",
                  fit_text});
  d.summary["single_pair_fit"] = {{"latency_ns", fit->latency_ns},
                                  {"bytes_per_s", fit->bytes_per_s},
                                  {"rms_relative_residual", fit->rms_relative_residual},
                                  {"max_relative_residual", fit->max_relative_residual},
                                  {"r_squared", fit->r_squared}};

  TextTable sizes({"copy size", "median", "fit", "residual", "rate", "spread"});
  for (const auto& [bytes, ns] : by_size) {
    const Summary s = Summarize(ns);
    const double predicted = fit->PredictNs(static_cast<double>(bytes));
    sizes.AddRow({FormatBytes(bytes), FormatNanos(s.median), FormatNanos(predicted),
                  absl::StrFormat("%+.1f%%", 100 * (predicted - s.median) / s.median),
                  FormatBandwidth(static_cast<double>(bytes) / s.median * 1e9), Pct(s.spread)});
  }
  absl::StrAppend(&w.details,
                  "\nsingle-pair pull (rank 0 from rank 1, back to back on one stream; fit: time "
                  "= latency + bytes / bandwidth, least squares on relative error):\n",
                  sizes.Render());
  return absl::OkStatus();
}

// The median over ranks of each rank's median.
void LocalCopy(Work& w) {
  std::vector<double> rates;
  for (const RawRank& r : w.raw.ranks) {
    const Summary s = Summarize(r.local_copy.ns);
    if (s.median > 0) rates.push_back(r.local_copy.bytes / s.median * 1e9);
  }
  const Summary local = Summarize(rates);
  if (local.count == 0) return;
  w.d.m.local_copy_bw = local.median;
  w.table.AddRow(
      {"local_copy_bw", FormatBandwidth(local.median), FormatBandwidth(w.base.local_copy_bw.value),
       absl::StrFormat("%s on each of %d GPUs",
                       FormatBytes(static_cast<uint64_t>(w.rank0().local_copy.bytes)), w.n),
       absl::StrFormat("ranks %s..%s", FormatBandwidth(local.min), FormatBandwidth(local.max))});
}

// Egress sharing: every rank but 0 pulls from rank 0 at once. The port's rate is all the bytes
// over the time any of them was pulling (first start to last end), per repetition. Adding up
// each puller's own rate instead overstates the port whenever the pulls do not overlap fully
// (one that starts late runs faster while the others are done); that sum is the fallback for
// files without start and end times.
void EgressSharing(Work& w) {
  CalibrationDerivation& d = w.d;
  std::vector<const RawEgressPull*> pulls;
  std::vector<std::string> hosts;
  for (const RawRank& r : w.raw.ranks) {
    if (r.egress) {
      pulls.push_back(&*r.egress);
      hosts.push_back(r.hostname);
    }
  }
  std::vector<double> rates;  // each puller's median rate
  for (const RawEgressPull* p : pulls) {
    const Summary s = Summarize(p->ns);
    if (s.median > 0) rates.push_back(p->bytes / s.median * 1e9);
  }
  const Summary each = Summarize(rates);
  double sum = 0;
  for (double x : rates) sum += x;

  // The union needs every puller's start and end of the same repetitions on one clock: the
  // steady clock of one host.
  std::string no_union;
  size_t reps = pulls.empty() ? 0 : pulls[0]->start_ns.size();
  for (size_t i = 0; i < pulls.size() && no_union.empty(); ++i) {
    if (pulls[i]->start_ns.empty()) {
      no_union = "the raw file has only the pulls' durations, not their start and end times";
    } else if (pulls[i]->start_ns.size() != reps) {
      no_union = "the pullers timed different numbers of repetitions";
    } else if (hosts[i].empty() || hosts[i] != hosts[0]) {
      no_union = "the pullers are not known to share one host, so their clocks do not compare";
    }
  }
  std::vector<double> union_rates;
  if (no_union.empty()) {
    double bytes = 0;
    for (const RawEgressPull* p : pulls) bytes += p->bytes;
    for (size_t rep = 0; rep < reps && no_union.empty(); ++rep) {
      double first_start = std::numeric_limits<double>::infinity();
      double last_end = -std::numeric_limits<double>::infinity();
      double durations = 0;
      for (const RawEgressPull* p : pulls) {
        first_start = std::min(first_start, p->start_ns[rep]);
        last_end = std::max(last_end, p->end_ns[rep]);
        durations += p->end_ns[rep] - p->start_ns[rep];
      }
      // Pulls released by one barrier overlap. A union longer than all of them end to end means
      // they did not overlap at all: the clocks do not compare (or the ranks did not start
      // together) and the repetition says nothing about sharing the port.
      if (!(last_end > first_start) || last_end - first_start > durations) {
        no_union = absl::StrFormat(
            "in repetition %d the pulls' start and end times do not overlap (union %s, %s end "
            "to end), so their clocks do not compare",
            rep + 1, FormatNanos(last_end - first_start), FormatNanos(durations));
        break;
      }
      union_rates.push_back(bytes / (last_end - first_start) * 1e9);
    }
  }
  const double total = no_union.empty() ? Median(union_rates) : sum;
  absl::StrAppendFormat(
      &w.details,
      "\negress sharing: %d rank(s) pulling from rank 0 at once: %s each (median; %s..%s); rank "
      "0 served %s in all (%s) = %.2f x the single-pair rate\n",
      rates.size(), FormatBandwidth(each.median), FormatBandwidth(each.min),
      FormatBandwidth(each.max), FormatBandwidth(total),
      no_union.empty() ? "all bytes over the union of the pulls, median of the repetitions"
                       : "the sum of the pullers' rates",
      total / w.fit.bytes_per_s);
  d.summary["egress_sharing"] = {{"pullers", rates.size()},
                                 {"per_puller_bytes_per_s", rates},
                                 {"total_bytes_per_s", total},
                                 {"from_union", no_union.empty()},
                                 {"total_over_pair", total / w.fit.bytes_per_s}};
  if (pulls.size() < 2) {
    d.notes.push_back(
        "egress_bw needs at least 3 ranks (two GPUs pulling from one); kept from the base "
        "profile");
    return;
  }
  if (!no_union.empty()) {
    d.notes.push_back(absl::StrCat(
        "egress_bw is the sum of the pullers' own rates, which overstates the port when the "
        "pulls do not overlap fully: ",
        no_union));
  }
  d.m.egress_bw = total;
  d.egress_from_union = no_union.empty();
  w.table.AddRow(
      {"egress_bw", FormatBandwidth(total), FormatBandwidth(w.base.egress_bw.value),
       absl::StrFormat("%d ranks <- rank 0 at once, %s", pulls.size(),
                       no_union.empty() ? "union of the pulls" : "sum of the pullers' rates"),
       absl::StrFormat("%.2f x pair, pullers %s..%s", total / w.fit.bytes_per_s,
                       FormatBandwidth(each.min), FormatBandwidth(each.max))});
}

void IngressConcurrency(Work& w) {
  CalibrationDerivation& d = w.d;
  if (!w.rank0().ingress) {
    d.notes.push_back(
        "concurrent_pull_efficiency needs at least 3 ranks (one GPU pulling from two peers); "
        "kept from the base profile");
    return;
  }
  const RawIngress& in = *w.rank0().ingress;
  const Summary span = Summarize(in.span_ns);
  const double ingress = in.bytes_per_peer * static_cast<double>(in.peers) / span.median * 1e9;
  d.m.concurrent_pull_efficiency = ingress / w.fit.bytes_per_s;
  if (*d.m.concurrent_pull_efficiency > 1) {
    d.warnings.push_back(absl::StrFormat(
        "pulling from %d peers at once reached %.2f x the single-pair rate; written as 1 (the "
        "simulator only shrinks ingress)",
        in.peers, *d.m.concurrent_pull_efficiency));
  }
  w.table.AddRow(
      {"concurrent_pull_efficiency", absl::StrFormat("%.3f", *d.m.concurrent_pull_efficiency),
       absl::StrFormat("%.3f", w.base.concurrent_pull_efficiency.value),
       absl::StrFormat("rank 0 <- %d peers, 1 stream each: %s", in.peers, FormatBandwidth(ingress)),
       absl::StrFormat("spread %s", Pct(span.spread))});
}

// What a GPU pulls when every GPU pulls from every peer at once: each rank's bytes over its own
// span in the "concurrent streams" schedule, the median over ranks and repetitions. With 2
// ranks every one-copy schedule is that (both GPUs pulling from each other), so rotate and
// ascending count too; round robin does not (its pieces pay the per-copy cost many times).
void Fabric(Work& w) {
  CalibrationDerivation& d = w.d;
  std::vector<CopySchedule> schedules = {CopySchedule::kConcurrentStreams};
  if (w.n == 2)
    schedules = {CopySchedule::kRotate, CopySchedule::kAscending, CopySchedule::kConcurrentStreams};
  std::vector<double> rates;
  for (const RawRank& r : w.raw.ranks) {
    for (CopySchedule s : schedules) {
      auto it = r.schedules.runs.find(CopyScheduleName(s));
      if (it == r.schedules.runs.end()) continue;
      for (double span : it->second.span_ns) {
        if (span > 0) rates.push_back(it->second.bytes / span * 1e9);
      }
    }
  }
  if (rates.empty()) {
    d.notes.push_back(
        "fabric_bw needs the 'concurrent streams' schedule runs, which the raw file lacks; kept "
        "from the base profile");
    return;
  }
  const Summary rate = Summarize(rates);
  d.fabric_rate = rate.median;
  const double share = rate.median / w.fit.bytes_per_s;
  const bool unlimited = share >= kFabricUnlimitedShare;
  d.m.fabric_bw = unlimited ? 0.0 : rate.median;
  const std::string what = w.n == 2 ? "both GPUs pulling from each other"
                                    : absl::StrFormat(
                                          "every GPU <- its %d peers at once, 1 "
                                          "stream each",
                                          w.n - 1);
  absl::StrAppendFormat(
      &w.details,
      "\nfabric: %s: %s per GPU (median of %d rank-repetitions, %s..%s) = %.2f x the "
      "single-pair rate; %s\n",
      what, FormatBandwidth(rate.median), rate.count, FormatBandwidth(rate.min),
      FormatBandwidth(rate.max), share,
      unlimited ? absl::StrFormat("at least %.0f%% of it, so the fabric does not limit: "
                                  "fabric_bw written as 0 (no limit)",
                                  100 * kFabricUnlimitedShare)
                : "written as fabric_bw");
  d.summary["fabric"] = {{"per_gpu_bytes_per_s", rate.median},
                         {"over_pair", share},
                         {"samples", rate.count},
                         {"unlimited", unlimited}};
  w.table.AddRow(
      {"fabric_bw", unlimited ? "0 (no limit)" : FormatBandwidth(rate.median),
       w.base.fabric_bw.value > 0 ? FormatBandwidth(w.base.fabric_bw.value) : "0 (no limit)", what,
       absl::StrFormat("%.2f x pair, spread %s", share, Pct(rate.spread))});
}

// How unevenly the fabric shares itself out: the coefficient of variation (standard deviation
// over mean) of the rates of every rank in every repetition of rotate, where each GPU pulls
// from one peer at a time and every pair is busy at once. The simulator draws each remote
// copy's share with it.
void FabricShareSpread(Work& w) {
  std::vector<double> rates;
  for (const RawRank& r : w.raw.ranks) {
    auto it = r.schedules.runs.find(CopyScheduleName(CopySchedule::kRotate));
    if (it == r.schedules.runs.end()) continue;
    for (double span : it->second.span_ns) {
      if (span > 0) rates.push_back(it->second.bytes / span * 1e9);
    }
  }
  if (rates.size() < 2) {
    w.d.notes.push_back(
        "fabric_share_spread needs the 'rotate' schedule runs, which the raw file lacks; kept "
        "from the base profile");
    return;
  }
  double mean = 0;
  for (double r : rates) mean += r;
  mean /= static_cast<double>(rates.size());
  double variance = 0;
  for (double r : rates) variance += (r - mean) * (r - mean);
  variance /= static_cast<double>(rates.size());
  w.d.m.fabric_share_spread = std::sqrt(variance) / mean;
  const Summary s = Summarize(rates);
  w.table.AddRow({"fabric_share_spread", absl::StrFormat("%.3f", *w.d.m.fabric_share_spread),
                  absl::StrFormat("%.3f", w.base.fabric_share_spread.value),
                  "std dev / mean of every rank's rotate rate, every repetition",
                  absl::StrFormat("%d samples, %s..%s", s.count, FormatBandwidth(s.min),
                                  FormatBandwidth(s.max))});
}

// Critical path (slowest rank) of every schedule, per repetition; the median of those.
std::map<CopySchedule, std::vector<double>> MeasuredCriticalPaths(const Work& w) {
  std::map<CopySchedule, std::vector<double>> out;
  for (const auto& [name, run0] : w.rank0().schedules.runs) {
    const std::optional<CopySchedule> schedule = CopyScheduleFromName(name);
    if (!schedule) continue;
    std::vector<double> critical(run0.span_ns.size(), 0);
    for (const RawRank& r : w.raw.ranks) {
      auto it = r.schedules.runs.find(name);
      if (it == r.schedules.runs.end()) continue;
      for (size_t i = 0; i < critical.size() && i < it->second.span_ns.size(); ++i) {
        critical[i] = std::max(critical[i], it->second.span_ns[i]);
      }
    }
    out[*schedule] = critical;
  }
  return out;
}

void SchedulesTable(Work& w, const std::map<CopySchedule, std::vector<double>>& critical) {
  const double ideal = static_cast<double>(w.n - 1) * w.fit.PredictNs(w.per_peer);
  TextTable t({"schedule", "critical path", "x ideal", "x rotate", "spread"});
  const double rotate =
      critical.count(CopySchedule::kRotate) ? Median(critical.at(CopySchedule::kRotate)) : 0;
  for (const auto& [schedule, paths] : critical) {
    const Summary s = Summarize(paths);
    w.d.schedules[schedule].measured_ns = s.median;
    w.d.schedules[schedule].ideal_ns = ideal;
    w.d.summary["schedules"][CopyScheduleName(schedule)] = {{"critical_path_ns", paths},
                                                            {"over_ideal", s.median / ideal}};
    t.AddRow({CopyScheduleName(schedule), FormatNanos(s.median),
              absl::StrFormat("%.2f", s.median / ideal),
              rotate > 0 ? absl::StrFormat("%.2f", s.median / rotate) : "-", Pct(s.spread)});
  }
  absl::StrAppendFormat(&w.details,
                        "\ncopy schedules (DWDP_SPEC §4): every rank pulls %s from each of its "
                        "%d peers at the same time; critical path = slowest rank; ideal = %d x "
                        "the single-pair time of %s = %s%s:\n",
                        FormatBytes(static_cast<uint64_t>(w.per_peer)), w.n - 1, w.n - 1,
                        FormatBytes(static_cast<uint64_t>(w.per_peer)), FormatNanos(ideal),
                        w.n < 3 ? " (with 2 ranks every schedule pulls from the one peer)" : "");
  w.details += t.Render();
}

// The round robin pieces schedule of this run, replayed on `profile`.
absl::StatusOr<double> ReplayRoundRobin(const Work& w, const CopyScheduleSimulator& simulate,
                                        const HardwareProfile& profile) {
  return simulate(profile, w.n, CopySchedule::kRoundRobinPieces, static_cast<uint64_t>(w.per_peer),
                  static_cast<uint64_t>(w.piece));
}

// Bisects for the x whose simulated time is the measured one: `simulated` is below `measured`
// at `below` and above it at `above` (either may be the larger x). Stops when the interval is
// at most `resolution` wide, after `max_steps`, or when a midpoint comes within `close_enough`
// (relative) of the measurement.
absl::StatusOr<double> Bisect(const std::function<absl::StatusOr<double>(double)>& simulated,
                              double below, double above, double measured, double resolution,
                              int max_steps, double close_enough) {
  for (int i = 0; i < max_steps && std::abs(above - below) > resolution; ++i) {
    const double mid = (below + above) / 2;
    absl::StatusOr<double> t = simulated(mid);
    if (!t.ok()) return t.status();
    if (std::abs(*t - measured) <= close_enough * measured) return mid;
    (*t < measured ? below : above) = mid;
  }
  return (below + above) / 2;
}

// copy_latency_loaded_ns: the fixed cost of a copy that starts while other remote copies run on
// its GPUs, bisected (with the whole cost on the path) so that round robin pieces simulate to
// the measured time. The simulated time grows with it.
absl::Status LoadedCopyLatency(Work& w, const CopyScheduleSimulator& simulate, double measured) {
  CalibrationDerivation& d = w.d;
  HardwareProfile profile = ApplyCalibration(w.base, d.m, {w.base.name, "", ""});
  const double idle = profile.copy_latency_ns.value;
  if (!(idle > 0)) return absl::OkStatus();
  const auto at = [&](double loaded) -> absl::StatusOr<double> {
    profile.copy_latency_loaded_ns = {loaded, Provenance::kMeasured};
    return ReplayRoundRobin(w, simulate, profile);
  };
  double lo = idle, hi = 20 * idle;
  absl::StatusOr<double> at_hi = at(hi);
  if (!at_hi.ok()) return at_hi.status();
  if (*at_hi < measured) {
    d.notes.push_back(absl::StrFormat(
        "copy_latency_loaded_ns: even %s per copy simulates round robin pieces to %s, short of "
        "the measured %s; written as that bound",
        FormatNanos(hi), FormatNanos(*at_hi), FormatNanos(measured)));
    lo = hi;
  }
  absl::StatusOr<double> bisected = Bisect(at, lo, hi, measured, /*resolution=*/1,
                                           /*max_steps=*/50, /*close_enough=*/0);
  if (!bisected.ok()) return bisected.status();
  const double loaded = *bisected;
  absl::StatusOr<double> fitted = at(loaded);
  if (!fitted.ok()) return fitted.status();
  d.m.copy_latency_loaded_ns = loaded;
  d.summary["copy_latency_loaded_ns"] = {{"value", loaded}, {"simulated_ns", *fitted}};
  w.table.AddRow(
      {"copy_latency_loaded_ns", FormatNanos(loaded),
       FormatNanos(w.base.copy_latency_loaded_ns.value),
       absl::StrFormat("round robin %s pieces simulated to the measured %s",
                       FormatBytes(static_cast<uint64_t>(w.piece)), FormatNanos(measured)),
       absl::StrFormat("%s idle; simulated %s", FormatNanos(idle), FormatNanos(*fitted))});
  return absl::OkStatus();
}

// copy_latency_on_link: the share of the per-copy fixed cost that travels on the copy's path.
// Round robin pieces pay that cost hundreds of times while every port is shared, so it is the
// schedule that tells the shares apart. The simulated critical path grows with on_link (more of
// the cost is stretched by the sharing); bisect for the measured one.
absl::Status CopyLatencyOnLink(Work& w, const CopyScheduleSimulator& simulate) {
  CalibrationDerivation& d = w.d;
  auto it = d.schedules.find(CopySchedule::kRoundRobinPieces);
  if (it == d.schedules.end() || !(w.piece > 0)) {
    d.notes.push_back(
        "copy_latency_on_link needs the 'round_robin pieces' schedule, which the raw file "
        "lacks; kept from the base profile");
    return absl::OkStatus();
  }
  const double measured = it->second.measured_ns;
  HardwareProfile profile = ApplyCalibration(w.base, d.m, {w.base.name, "", ""});
  const auto at = [&](double on_link) -> absl::StatusOr<double> {
    profile.copy_latency_on_link = {on_link, Provenance::kMeasured};
    return ReplayRoundRobin(w, simulate, profile);
  };
  absl::StatusOr<double> at0 = at(0), at1 = at(1);
  if (!at0.ok()) return at0.status();
  if (!at1.ok()) return at1.status();
  d.round_robin_at_on_link_0_ns = *at0;
  d.round_robin_at_on_link_1_ns = *at1;
  std::string how;
  if (std::abs(*at1 - *at0) <= kOnLinkMinEffect * measured) {
    d.notes.push_back(absl::StrFormat(
        "copy_latency_on_link kept from the base profile: round robin pieces simulate to %s "
        "whatever its value here (no port is shared by two flows), so the measurement says "
        "nothing about it",
        FormatNanos(*at0)));
    return absl::OkStatus();
  }
  const bool grows = *at1 > *at0;
  const double low = std::min(*at0, *at1), high = std::max(*at0, *at1);
  double on_link = 0;
  if (measured <= low || measured >= high) {
    // Outside what the model can reach: the end that comes closest.
    on_link = (measured >= high) == grows ? 1.0 : 0.0;
    const double closest = on_link == 1.0 ? *at1 : *at0;
    d.notes.push_back(absl::StrFormat(
        "copy_latency_on_link written as %.0f, the end closest to the measurement: round robin "
        "pieces measured %s, the simulator gives %s at 0 and %s at 1 (%+.1f%% at %.0f)",
        on_link, FormatNanos(measured), FormatNanos(*at0), FormatNanos(*at1),
        100 * (closest / measured - 1), on_link));
    how = absl::StrFormat("clamped: %s at 0, %s at 1", FormatNanos(*at0), FormatNanos(*at1));
  } else {
    absl::StatusOr<double> bisected =
        Bisect(at, grows ? 0.0 : 1.0, grows ? 1.0 : 0.0, measured, /*resolution=*/1e-6,
               /*max_steps=*/40, /*close_enough=*/1e-5);
    if (!bisected.ok()) return bisected.status();
    on_link = *bisected;
    how =
        absl::StrFormat("bisected between %s (0) and %s (1)", FormatNanos(*at0), FormatNanos(*at1));
  }
  d.m.copy_latency_on_link = on_link;
  if (on_link == 1.0 && grows && measured > high) {
    // Even the whole fixed cost on the path is too short: small copies pay more while other
    // copies run on their GPUs (both directions at once). Fit that loaded cost instead.
    if (absl::Status s = LoadedCopyLatency(w, simulate, measured); !s.ok()) return s;
  }
  d.summary["copy_latency_on_link"] = {{"value", on_link},
                                       {"round_robin_measured_ns", measured},
                                       {"simulated_at_0_ns", *at0},
                                       {"simulated_at_1_ns", *at1}};
  w.table.AddRow(
      {"copy_latency_on_link", absl::StrFormat("%.3f", on_link),
       absl::StrFormat("%.3f", w.base.copy_latency_on_link.value),
       absl::StrFormat("round robin %s pieces simulated to the measured %s",
                       FormatBytes(static_cast<uint64_t>(w.piece)), FormatNanos(measured)),
       how});
  return absl::OkStatus();
}

// How well the written profile predicts every schedule.
absl::Status CompareSchedules(Work& w, const CopyScheduleSimulator& simulate) {
  const HardwareProfile profile = ApplyCalibration(w.base, w.d.m, {w.base.name, "", ""});
  TextTable t({"schedule", "measured", "x ideal", "simulated", "x ideal", "error"});
  for (auto& [schedule, fit] : w.d.schedules) {
    absl::StatusOr<double> simulated = simulate(
        profile, w.n, schedule, static_cast<uint64_t>(w.per_peer), static_cast<uint64_t>(w.piece));
    if (!simulated.ok()) return simulated.status();
    fit.simulated_ns = *simulated;
    w.d.summary["schedules"][CopyScheduleName(schedule)]["simulated_ns"] = *simulated;
    t.AddRow({CopyScheduleName(schedule), FormatNanos(fit.measured_ns),
              absl::StrFormat("%.2f", fit.measured_ns / fit.ideal_ns), FormatNanos(*simulated),
              absl::StrFormat("%.2f", *simulated / fit.ideal_ns),
              absl::StrFormat("%+.1f%%", 100 * (*simulated / fit.measured_ns - 1))});
  }
  absl::StrAppend(&w.details,
                  "\nschedules: measured vs simulated with the written profile (critical path; "
                  "error = simulated / measured - 1):\n",
                  t.Render());
  return absl::OkStatus();
}

void ComputeStandIn(Work& w) {
  std::map<double, std::vector<double>> by_duration;
  for (const RawRank& r : w.raw.ranks) {
    for (const auto& [requested, measured] : r.kernel_accuracy) {
      by_duration[requested].push_back(measured);
    }
  }
  TextTable t({"requested", "measured (median)", "error", "min", "max"});
  for (const auto& [requested, measured] : by_duration) {
    const Summary s = Summarize(measured);
    t.AddRow({FormatNanos(requested), FormatNanos(s.median),
              absl::StrFormat("%+.2f%%", 100 * (s.median - requested) / requested),
              FormatNanos(s.min), FormatNanos(s.max)});
  }
  absl::StrAppend(&w.details, "\ncompute stand-in kernel, duration accuracy (all ranks):\n",
                  t.Render());
  for (const char* label : {"paced", "read-bound"}) {
    auto it = w.rank0().compute_under_copies.find(label);
    if (it == w.rank0().compute_under_copies.end()) continue;
    const RawComputeUnderCopies& cc = it->second;
    const Summary alone = Summarize(cc.alone_ns);
    const Summary with = Summarize(cc.with_copy_ns);
    const double slowdown = alone.median > 0 ? with.median / alone.median - 1 : 0;
    const Summary outlast = Summarize(cc.copy_outlasts_kernel_by_ns);
    if (outlast.min < 0) {
      w.d.warnings.push_back(absl::StrFormat(
          "compute under copies (%s): the copy ended before the kernel in some repetitions, so "
          "part of the kernel ran without it (slowdown underestimated)",
          label));
    }
    absl::StrAppendFormat(&w.details,
                          "compute %s (reads %s): %s alone, %s while rank 1's buffer is pulled "
                          "in: slowdown %+.1f%%\n",
                          label, FormatBytes(static_cast<uint64_t>(cc.read_bytes)),
                          FormatNanos(alone.median), FormatNanos(with.median), 100 * slowdown);
    if (std::string(label) == "read-bound" && alone.median > 0) {
      // The stand-in reads its whole tensor: this rate is the floor of every layer's kernel.
      w.d.m.compute_read_bw = cc.read_bytes / alone.median * 1e9;
      w.table.AddRow({"compute_read_bw", FormatBandwidth(*w.d.m.compute_read_bw),
                      FormatBandwidth(w.base.compute_read_bw.value),
                      absl::StrFormat("stand-in kernel reading %s alone",
                                      FormatBytes(static_cast<uint64_t>(cc.read_bytes))),
                      absl::StrFormat("spread %s", Pct(alone.spread))});
    }
    if (std::string(label) == "paced") {
      w.d.m.compute_slowdown = slowdown;
      w.table.AddRow({"compute_slowdown", absl::StrFormat("%.3f", std::max(0.0, slowdown)),
                      absl::StrFormat("%.3f", w.base.compute_slowdown.value),
                      "stand-in kernel under an inbound pull",
                      absl::StrFormat("spread %s / %s", Pct(alone.spread), Pct(with.spread))});
    }
  }
}

// Host costs: the median over ranks of each rank's median.
void HostCosts(Work& w) {
  const auto host = [&](const char* key) {
    std::vector<double> medians;
    for (const RawRank& r : w.raw.ranks) {
      auto it = r.host_ns_per_call.find(key);
      if (it != r.host_ns_per_call.end()) medians.push_back(Median(it->second));
    }
    return Summarize(medians);
  };
  const Summary copy_call = host("copy");
  const Summary record_call = host("record");
  const Summary wait_call = host("wait");
  const Summary timed_copy_call = host("copy_with_timing_events");
  if (copy_call.count > 0) {
    w.d.m.host_issue_ns = copy_call.median;
    w.table.AddRow(
        {"host_issue_ns", FormatNanos(copy_call.median), FormatNanos(w.base.host_issue_ns.value),
         "host time per copy call",
         absl::StrFormat("ranks %s..%s", FormatNanos(copy_call.min), FormatNanos(copy_call.max))});
  }
  if (record_call.count > 0 && wait_call.count > 0) {
    w.d.m.event_ns = (record_call.median + wait_call.median) / 2;
    w.table.AddRow({"event_ns", FormatNanos(*w.d.m.event_ns), FormatNanos(w.base.event_ns.value),
                    "host time per record / wait call",
                    absl::StrFormat("record %s, wait %s", FormatNanos(record_call.median),
                                    FormatNanos(wait_call.median))});
  }
  if (timed_copy_call.count > 0) {
    absl::StrAppendFormat(&w.details,
                          "host time per copy call with timing events on (as `dwdp run --backend "
                          "cuda` runs by default): %s\n",
                          FormatNanos(timed_copy_call.median));
  }
}

// Stream queue depth, in untimed copies: the median over ranks of the copies a stream took
// behind a long kernel before the next one blocked the host. Derived before the schedules are
// replayed, which enqueue hundreds of pieces per stream. The other kinds are in the details.
void StreamQueue(Work& w) {
  const auto per_rank = [&](const std::string& key, bool* never_blocked) {
    std::vector<double> medians;
    for (const RawRank& r : w.raw.ranks) {
      auto it = r.stream_queue_calls.find(key);
      if (it == r.stream_queue_calls.end()) continue;
      if (it->second.empty()) {
        *never_blocked = true;
      } else {
        medians.push_back(Median(it->second));
      }
    }
    return Summarize(medians);
  };
  bool copies_never_blocked = false;
  const Summary copy = per_rank("copy", &copies_never_blocked);
  if (copy.count == 0) {
    w.d.notes.push_back(
        copies_never_blocked
            ? "stream_queue_entries: copies behind a long kernel never blocked the host; kept "
              "from the base profile"
            : "stream_queue_entries is not in the raw file (written before calibrate measured "
              "it); kept from the base profile");
    return;
  }
  w.d.m.stream_queue_entries = std::round(copy.median);
  std::string others;
  for (const char* kind : {"timed_copy", "kernel", "wait", "record"}) {
    bool never = false;
    const Summary calls = per_rank(kind, &never);
    // The simulator counts a timed copy as 3 entries (the copy and its two timing events).
    if (std::string(kind) == "timed_copy" && calls.count > 0 &&
        std::abs(3 * calls.median - copy.median) > 3) {
      w.d.warnings.push_back(absl::StrFormat(
          "a stream took %.0f timed copies and %.0f untimed ones: the simulator counts a timed "
          "copy as 3 entries, which this machine does not bear out",
          calls.median, copy.median));
    }
    if (calls.count > 0) {
      absl::StrAppendFormat(&others, ", %s %.0f", kind, calls.median);
    } else if (never) {
      absl::StrAppendFormat(&others, ", %s never blocked", kind);
    }
  }
  w.table.AddRow({"stream_queue_entries", absl::StrFormat("%.0f", *w.d.m.stream_queue_entries),
                  absl::StrFormat("%.0f", w.base.stream_queue_entries.value),
                  "copies behind a long kernel before one blocked the host",
                  absl::StrFormat("ranks %.0f..%.0f%s", copy.min, copy.max, others)});
}

// Map cost, as the presets count it: the mean of the three calls.
void MapCost(Work& w) {
  std::vector<double> m, a, u;
  for (const RawRank& r : w.raw.ranks) {
    m.push_back(Median(r.map_ns.map));
    a.push_back(Median(r.map_ns.set_access));
    u.push_back(Median(r.map_ns.unmap));
  }
  const double map = Median(m), access = Median(a), unmap = Median(u);
  w.d.m.map_ns = (map + access + unmap) / 3;
  w.table.AddRow({"map_ns", FormatNanos(*w.d.m.map_ns), FormatNanos(w.base.map_ns.value),
                  absl::StrFormat("(map + set_access + unmap of %s) / 3",
                                  FormatBytes(static_cast<uint64_t>(w.rank0().map_ns.bytes))),
                  absl::StrFormat("map %s, access %s, unmap %s", FormatNanos(map),
                                  FormatNanos(access), FormatNanos(unmap))});
}

// A model of one MoE table's shape, as the perf model costs it: BF16 experts of 3 x hidden x
// intermediate values (no weights listed), as the MoE phase times them.
ModelSpec MoeShapeModel(const RawMoeCompute& raw) {
  ModelSpec model;
  model.hidden_size = raw.hidden;
  model.moe_intermediate_size = raw.intermediate;
  model.num_experts = raw.num_experts;
  model.top_k = raw.top_k;
  model.expert_dtype = DType::kBf16;
  return model;
}

// The routed-MoE layer's times (median of the repetitions) as profile tables, and the roofline
// (compute_efficiency, memory_efficiency) fitted to every shape's times alone, with the work and
// the fixed cost the perf model gives each point (RoutedMoeCost).
void MoeCompute(Work& w) {
  const std::vector<RawMoeCompute>& tables = w.rank0().moe_compute;
  if (tables.empty()) return;
  CalibrationDerivation& d = w.d;
  std::vector<RooflinePoint> points;
  struct Row {
    std::string shape;
    int64_t tokens;
    double alone, under;
    size_t point;
  };
  std::vector<Row> rows;
  for (const RawMoeCompute& raw : tables) {
    const std::string shape =
        absl::StrFormat("%d,%d,%d,%d", raw.hidden, raw.intermediate, raw.num_experts, raw.top_k);
    if (!raw.skipped_tokens.empty()) {
      d.notes.push_back(absl::StrFormat(
          "MoE layer %s: %s tokens per rank left out, the working set would not fit on the GPU",
          shape, absl::StrJoin(raw.skipped_tokens, ", ")));
    }
    if (raw.tokens.empty()) continue;
    MoeComputeTable table;
    table.hidden = raw.hidden;
    table.intermediate = raw.intermediate;
    table.num_experts = raw.num_experts;
    table.top_k = raw.top_k;
    table.dtype = DType::kBf16;
    table.source = Provenance::kMeasured;
    table.kernel = raw.kernel;
    table.tokens = raw.tokens;
    const bool under = raw.under_copy_ns.size() == raw.tokens.size();
    const ModelSpec model = MoeShapeModel(raw);
    for (size_t i = 0; i < raw.tokens.size(); ++i) {
      const double tokens = static_cast<double>(raw.tokens[i]);
      table.alone_ns.push_back(Median(raw.alone_ns[i]));
      if (under) table.under_copy_ns.push_back(Median(raw.under_copy_ns[i]));
      if (i < raw.copy_outlasts_kernel_by_ns.size() &&
          Summarize(raw.copy_outlasts_kernel_by_ns[i]).min < 0) {
        d.warnings.push_back(absl::StrFormat(
            "MoE layer %s at %d tokens: the inbound copies ended before the layer in some "
            "repetitions, so part of it ran without them (under_copy_ns underestimated)",
            shape, raw.tokens[i]));
      }
      const OpCost cost = RoutedMoeCost(model, w.base, tokens * static_cast<double>(raw.top_k),
                                        ExpectedActiveExperts(raw.num_experts, raw.top_k, tokens));
      points.push_back({cost.flops, cost.bytes,
                        static_cast<double>(cost.kernels) * w.base.kernel_overhead_ns.value,
                        table.alone_ns.back()});
      rows.push_back({shape, raw.tokens[i], table.alone_ns.back(),
                      under ? table.under_copy_ns.back() : 0.0, points.size() - 1});
    }
    d.m.moe_compute.push_back(std::move(table));
  }
  if (points.empty()) return;
  const double peak = PeakFlops(w.base, DType::kBf16).value;
  absl::StatusOr<RooflineFit> fit = FitRoofline(points, peak, w.base.hbm_bw.value);
  if (!fit.ok()) {
    d.notes.push_back(
        absl::StrCat("compute_efficiency and memory_efficiency kept from the base "
                     "profile: the roofline fit to the MoE times failed: ",
                     fit.status().message()));
  } else {
    const std::string fit_text = absl::StrFormat(
        "rms %s, max %s (%d compute-, %d memory-bound points)", Pct(fit->rms_relative_residual),
        Pct(fit->max_relative_residual), fit->compute_bound, fit->memory_bound);
    for (const auto& [name, value, base_value, bound, what] :
         {std::tuple{"compute_efficiency", fit->compute_efficiency, w.base.compute_efficiency.value,
                     "compute-bound", "BF16 peak"},
          std::tuple{"memory_efficiency", fit->memory_efficiency, w.base.memory_efficiency.value,
                     "memory-bound", "hbm_bw"}}) {
      if (!value) {
        d.notes.push_back(absl::StrFormat(
            "%s kept from the base profile: no MoE time was %s on the fitted roofline", name,
            bound));
        continue;
      }
      if (*value > 1) {
        d.warnings.push_back(absl::StrFormat(
            "the MoE layer ran at %.2f x the base profile's %s: written as 1 (is the base's %s "
            "right?)",
            *value, what, what));
      }
      (std::string(name) == "compute_efficiency" ? d.m.compute_efficiency : d.m.memory_efficiency) =
          *value;
      w.table.AddRow({name, absl::StrFormat("%.3f", *value), absl::StrFormat("%.3f", base_value),
                      absl::StrFormat("roofline fitted to the MoE layer's times alone (%s)", what),
                      fit_text});
    }
    d.summary["moe_roofline"] = {{"rms_relative_residual", fit->rms_relative_residual},
                                 {"max_relative_residual", fit->max_relative_residual},
                                 {"compute_bound", fit->compute_bound},
                                 {"memory_bound", fit->memory_bound}};
    if (fit->compute_efficiency) {
      d.summary["moe_roofline"]["compute_efficiency"] = *fit->compute_efficiency;
    }
    if (fit->memory_efficiency) {
      d.summary["moe_roofline"]["memory_efficiency"] = *fit->memory_efficiency;
    }
  }
  // The fitted roofline (the base's where a side was not fitted) against every time.
  HardwareProfile fitted = w.base;
  if (d.m.compute_efficiency) fitted.compute_efficiency.value = *d.m.compute_efficiency;
  if (d.m.memory_efficiency) fitted.memory_efficiency.value = *d.m.memory_efficiency;
  TextTable t({"shape", "tokens", "alone", "under copies", "slowdown", "roofline", "error"});
  for (const Row& r : rows) {
    const RooflinePoint& p = points[r.point];
    const double roofline =
        Roofline(fitted, DType::kBf16, p.flops, p.bytes, 0).time_ns + p.fixed_ns;
    t.AddRow({r.shape, absl::StrCat(r.tokens), FormatNanos(r.alone),
              r.under > 0 ? FormatNanos(r.under) : "-",
              r.under > 0 ? absl::StrFormat("%+.1f%%", 100 * (r.under / r.alone - 1)) : "-",
              FormatNanos(roofline), absl::StrFormat("%+.1f%%", 100 * (roofline / r.alone - 1))});
  }
  absl::StrAppend(&w.details,
                  "\nrouted-MoE layer on rank 0 (hidden,intermediate,experts,top_k; BF16; median "
                  "of the repetitions; under copies: the peers' buffers pulled in meanwhile; "
                  "roofline: the perf model with the written efficiencies):\n",
                  t.Render());
}

// The driver's numbers: from the machine record, or what an older file still tells. Set first:
// the simulated schedules need the granularity.
void Machine(Work& w) {
  CalibrationDerivation& d = w.d;
  const std::optional<RawMachine>& machine = w.raw.machine;
  if (machine) {
    d.gpu_name = machine->gpu_name;
    d.m.granularity = machine->granularity;
    d.m.hbm_bytes = machine->device_memory_bytes;
    // The backend exports FABRIC handles only where creating one works (IMEX channel present).
    d.m.imex_permitted = machine->handle_kind == HandleKindName(HandleKind::kFabric);
    return;
  }
  // MeasuredOnLine starts with "<gpu name> ×<gpus>"; round robin's pieces are one granule.
  const size_t cut = w.raw.measured_on.find(" ×");
  if (cut != std::string::npos) d.gpu_name = w.raw.measured_on.substr(0, cut);
  if (w.piece > 0) d.m.granularity = w.piece;
  d.notes.push_back(absl::StrFormat(
      "the raw file has no machine record (written before dwdp kept one): the base is --base "
      "or calibrate's default '%s', granularity is round robin's piece (%s), and hbm_bytes and "
      "imex_permitted are kept from the base profile",
      kDefaultCalibrationBase, FormatBytes(static_cast<uint64_t>(w.piece))));
}

void MachineRows(Work& w) {
  const CalibrationMeasurements& m = w.d.m;
  if (m.granularity) {
    w.table.AddRow({"granularity", FormatBytes(static_cast<uint64_t>(*m.granularity)),
                    FormatBytes(static_cast<uint64_t>(w.base.granularity.value)),
                    w.raw.machine ? "driver" : "round robin's piece", "-"});
  }
  if (m.hbm_bytes) {
    w.table.AddRow({"hbm_bytes", FormatBytes(static_cast<uint64_t>(*m.hbm_bytes)),
                    FormatBytes(static_cast<uint64_t>(w.base.hbm_bytes.value)),
                    "device total memory", "-"});
  }
}

std::string Header(const Work& w) {
  const std::optional<RawMachine>& machine = w.raw.machine;
  const RawScheduleRun* any_run =
      w.rank0().schedules.runs.empty() ? nullptr : &w.rank0().schedules.runs.begin()->second;
  const int64_t reps =
      machine ? machine->repetitions : static_cast<int64_t>(any_run ? any_run->span_ns.size() : 0);
  // Without the record: the local copy is of the whole buffer.
  const double buffer = machine ? machine->buffer_bytes : w.rank0().local_copy.bytes;
  // One rank measures no copy: it has no buffers.
  const std::string buffers =
      w.n > 1 ? absl::StrCat(", buffers of ", FormatBytes(static_cast<uint64_t>(buffer))) : "";
  return absl::StrFormat("calibrated on %s (%d rank%s, %s%d repetitions%s%s)\n", w.raw.measured_on,
                         w.n, w.n == 1 ? "" : "s",
                         machine ? absl::StrCat(machine->handle_kind, " handles, ") : "", reps,
                         buffers,
                         w.raw.only == kOnlyCompute    ? ", only the MoE compute phase"
                         : w.raw.only == kOnlyPrefetch ? ", only the prefetch rotation"
                                                       : "");
}

// Everything the copy phases give (not run with `only: compute`).
absl::Status DeriveCopyTerms(Work& w, const CopyScheduleSimulator& simulate) {
  CalibrationDerivation& d = w.d;
  if (absl::Status s = SinglePair(w); !s.ok()) return s;
  StreamQueue(w);
  LocalCopy(w);
  IngressConcurrency(w);
  EgressSharing(w);
  Fabric(w);
  FabricShareSpread(w);
  SchedulesTable(w, MeasuredCriticalPaths(w));
  if (simulate) {
    if (absl::Status s = CopyLatencyOnLink(w, simulate); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("copy_latency_on_link fit: ", s.message()));
    }
    if (absl::Status s = CompareSchedules(w, simulate); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("schedules with the written profile: ", s.message()));
    }
  } else {
    d.notes.push_back(
        "no simulator: copy_latency_on_link kept from the base profile and the schedules not "
        "compared with the model");
  }
  ComputeStandIn(w);
  HostCosts(w);
  MapCost(w);
  return absl::OkStatus();
}

// The prefetch rotation: readers per source and prefetch efficiency per way of starting, and the
// simulator's fan-out term fitted to the free runs.
absl::Status Prefetch(Work& w) {
  CalibrationDerivation& d = w.d;
  PairRates pairs;
  std::vector<double> all_rates;
  double piece = 0;
  for (int64_t reader = 0; reader < w.n; ++reader) {
    const std::optional<RawPrefetch>& p = w.raw.ranks[reader].prefetch;
    if (!p) {
      return absl::InvalidArgumentError(
          absl::StrFormat("rank %d has no prefetch measurements", reader));
    }
    piece = p->piece_bytes;
    for (const auto& [source, ns] : p->pair_ns) {
      const double median = Median(ns);
      if (median > 0) {
        pairs[{reader, source}] = p->piece_bytes / median * 1e9;
        all_rates.push_back(pairs[{reader, source}]);
      }
    }
  }
  const std::vector<RawPrefetchRun>& runs0 = w.rank0().prefetch->runs;
  std::vector<std::vector<CopyInterval>> free_runs;
  nlohmann::json summary = nlohmann::json::array();
  TextTable table({"start", "drift per rank", "efficiency", "worst", "readers", "start skew",
                   "per step: readers max / efficiency"});
  for (size_t i = 0; i < runs0.size(); ++i) {
    std::vector<std::vector<CopyInterval>> reps;
    for (int64_t reader = 0; reader < w.n; ++reader) {
      const std::vector<RawPrefetchRun>& runs = w.raw.ranks[reader].prefetch->runs;
      if (runs.size() != runs0.size() || runs[i].start != runs0[i].start) {
        return absl::InvalidArgumentError(
            absl::StrFormat("rank %d's prefetch runs differ from rank 0's (run %d)", reader, i));
      }
      for (size_t rep = 0; rep < runs[i].repetitions.size(); ++rep) {
        if (reps.size() <= rep) reps.resize(rep + 1);
        for (const RawPrefetchCopy& c : runs[i].repetitions[rep]) {
          reps[rep].push_back({reader, c.source, c.step, piece, c.start_ns, c.end_ns});
        }
      }
    }
    const RawPrefetchRun& run = runs0[i];
    const double step_ns = all_rates.empty() ? 0 : piece / Median(all_rates) * 1e9;
    const std::string name =
        run.start == PrefetchStartName(PrefetchStart::kFree) && run.drift_ns > 0
            ? absl::StrFormat("free, drift %.2g step", step_ns > 0 ? run.drift_ns / step_ns : 0)
            : run.start;
    absl::StatusOr<PrefetchRunSummary> s = SummarizePrefetchRun(name, reps, pairs);
    if (!s.ok()) return s.status();
    std::vector<std::string> steps;
    nlohmann::json step_json = nlohmann::json::array();
    for (const PrefetchStepSummary& st : s->steps) {
      steps.push_back(
          absl::StrFormat("%.2f %d / %.2f", st.mean_readers, st.max_readers, st.efficiency));
      step_json.push_back({{"step", st.step},
                           {"mean_readers", st.mean_readers},
                           {"max_readers", st.max_readers},
                           {"shared_fraction", st.shared_fraction},
                           {"efficiency", st.efficiency}});
    }
    table.AddRow(
        {run.start,
         run.drift_ns > 0 && step_ns > 0
             ? absl::StrFormat("%.0f us (%.2g step)", run.drift_ns * 1e-3, run.drift_ns / step_ns)
             : "-",
         absl::StrFormat("%.3f", s->efficiency), absl::StrFormat("%.3f", s->worst_efficiency),
         absl::StrFormat("%.2f", s->mean_readers),
         absl::StrFormat("%.1f us", s->start_skew_ns * 1e-3), absl::StrJoin(steps, "  ")});
    summary.push_back({{"start", run.start},
                       {"drift_ns", run.drift_ns},
                       {"efficiency", s->efficiency},
                       {"worst_efficiency", s->worst_efficiency},
                       {"mean_readers", s->mean_readers},
                       {"start_skew_ns", s->start_skew_ns},
                       {"steps", std::move(step_json)}});
    if (run.start == PrefetchStartName(PrefetchStart::kFree)) {
      free_runs.insert(free_runs.end(), reps.begin(), reps.end());
    }
    d.prefetch.push_back(*std::move(s));
  }
  absl::StrAppendFormat(
      &w.details,
      "\nprefetch rotation: every rank pulls %s from every peer, step s from rank + s; pair rate "
      "%s (median of %d pairs alone); efficiency = the pieces' time at the pair rates / the "
      "rotation's span, median and worst rank; readers = readers of a copy's source while it ran "
      "(1 = a Latin square)\n%s",
      FormatBytes(static_cast<uint64_t>(piece)),
      FormatBandwidth(all_rates.empty() ? 0 : Median(all_rates)), all_rates.size(),
      table.Render({0, 6}));
  d.summary["prefetch"] = std::move(summary);
  const double egress_bw = w.base.egress_bw.value;
  d.fanout = FitEgressFanout(free_runs, pairs, egress_bw);
  if (!d.fanout && w.n == 2) {
    d.notes.push_back(
        "egress_fanout_efficiency kept from the base profile: with two ranks each reads the "
        "other, so no source ever has two readers");
    return absl::OkStatus();
  }
  if (!d.fanout) {
    d.notes.push_back(absl::StrFormat(
        "egress_fanout_efficiency kept from the base profile: no copy of the free runs had a "
        "source shared for %.0f%% of its time (try larger --prefetch-drift)",
        100 * kFanoutSharedFraction));
    return absl::OkStatus();
  }
  d.m.egress_fanout_efficiency = d.fanout->egress_fanout_efficiency;
  w.table.AddRow({"egress_fanout_efficiency",
                  absl::StrFormat("%.3f", d.fanout->egress_fanout_efficiency),
                  absl::StrFormat("%.3f", w.base.egress_fanout_efficiency.value),
                  absl::StrFormat("prefetch free runs, %d copies with %.2f readers",
                                  d.fanout->copies, d.fanout->mean_readers),
                  absl::StrFormat("%.3f of the pair rate each", d.fanout->per_reader)});
  d.summary["egress_fanout"] = {{"copies", d.fanout->copies},
                                {"per_reader", d.fanout->per_reader},
                                {"mean_readers", d.fanout->mean_readers},
                                {"egress_bw", egress_bw},
                                {"egress_fanout_efficiency", d.fanout->egress_fanout_efficiency},
                                {"capped", d.fanout->capped}};
  if (d.fanout->capped) {
    d.notes.push_back(absl::StrFormat(
        "egress_fanout_efficiency: the readers of a shared source got %.3f of the pair rate each, "
        "more than the profile's egress port (%s) shared by them gives; written as 1 (a larger "
        "egress_bw would fit better)",
        d.fanout->per_reader, FormatBandwidth(egress_bw > 0 ? egress_bw : Median(all_rates))));
  }
  return absl::OkStatus();
}

// The report and the derivation as DeriveCalibration returns them.
CalibrationDerivation Finish(Work& w) {
  CalibrationDerivation& d = w.d;
  const HardwareProfile& base = w.base;
  d.report = Header(w);
  absl::StrAppend(&d.report, "\nprofile numbers (written as `measured`; base = the '", base.name,
                  "' preset):\n", w.table.Render({0, 3, 4}), w.details);
  const RawRank& r0 = w.rank0();
  if (r0.device_memory_before && r0.device_memory_after) {
    absl::StrAppendFormat(&d.report,
                          "\ndevice memory in use on rank 0: %s before setup, %s after teardown\n",
                          FormatBytes(static_cast<uint64_t>(*r0.device_memory_before)),
                          FormatBytes(static_cast<uint64_t>(*r0.device_memory_after)));
  }
  for (const std::string& note : d.notes) absl::StrAppend(&d.report, "note: ", note, "\n");
  // Every repetition of a phase may warn alike: each text once, with its count.
  std::vector<std::pair<std::string, int>> distinct;
  for (const std::string& warning : d.warnings) {
    auto it = std::find_if(distinct.begin(), distinct.end(),
                           [&](const auto& seen) { return seen.first == warning; });
    if (it == distinct.end()) {
      distinct.push_back({warning, 1});
    } else {
      ++it->second;
    }
  }
  for (const auto& [warning, count] : distinct) {
    absl::StrAppend(&d.report, "warning: ", warning,
                    count > 1 ? absl::StrFormat(" (%d times)", count) : "", "\n");
  }
  return std::move(d);
}

}  // namespace

absl::StatusOr<CalibrationDerivation> DeriveCalibration(const CalibrationRaw& raw,
                                                        const HardwareProfile& base,
                                                        const CopyScheduleSimulator& simulate) {
  const bool all = raw.only.empty();
  const size_t min_ranks = raw.only == kOnlyCompute ? 1u : 2u;
  if (raw.ranks.size() < min_ranks) {
    return absl::InvalidArgumentError(
        absl::StrCat("a calibration needs the measurements of at least ", min_ranks, " ranks, got ",
                     raw.ranks.size()));
  }
  Work w{raw, base, {}};
  w.n = static_cast<int64_t>(raw.ranks.size());
  w.per_peer = w.rank0().schedules.bytes_per_peer;
  w.piece = w.rank0().schedules.piece_bytes;
  CalibrationDerivation& d = w.d;
  d.measured_on = raw.measured_on;
  for (const RawRank& r : raw.ranks) {
    d.warnings.insert(d.warnings.end(), r.warnings.begin(), r.warnings.end());
  }
  Machine(w);
  if (all) {
    if (absl::Status s = DeriveCopyTerms(w, simulate); !s.ok()) return s;
  }
  if (raw.ranks[0].prefetch) {
    if (absl::Status s = Prefetch(w); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("prefetch rotation: ", s.message()));
    }
  }
  MoeCompute(w);
  MachineRows(w);
  return Finish(w);
}

}  // namespace dwdp
