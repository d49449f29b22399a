#include "core/calibrate/prefetch.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/calibrate/fit.h"

namespace dwdp {

const char* PrefetchStartName(PrefetchStart start) {
  switch (start) {
    case PrefetchStart::kSync:
      return "sync";
    case PrefetchStart::kBarrier:
      return "barrier";
    case PrefetchStart::kFree:
      return "free";
  }
  return "?";
}

absl::StatusOr<PrefetchStart> ParsePrefetchStart(absl::string_view name) {
  for (PrefetchStart s : {PrefetchStart::kSync, PrefetchStart::kBarrier, PrefetchStart::kFree}) {
    if (name == PrefetchStartName(s)) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("prefetch start '", name, "' is not one of sync, barrier, free"));
}

double PrefetchStartDelayNs(int64_t rank, double drift_ns) {
  return drift_ns * static_cast<double>(std::max<int64_t>(rank, 0));
}

absl::StatusOr<std::vector<double>> ParsePrefetchDrifts(absl::string_view text) {
  std::vector<double> drifts;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double v = 0;
    if (!absl::SimpleAtod(part, &v) || !std::isfinite(v) || v < 0 || v > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat("drift '", part, "' is not a number of steps from 0 to 100"));
    }
    drifts.push_back(v);
  }
  if (drifts.size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("at most 16 drifts, got ", drifts.size()));
  }
  return drifts;
}

std::vector<SourceReaders> ReadersPerSource(const std::vector<CopyInterval>& intervals,
                                            double min_overlap_ns) {
  std::vector<SourceReaders> out(intervals.size());
  for (size_t i = 0; i < intervals.size(); ++i) {
    const CopyInterval& me = intervals[i];
    const double length = me.end_ns - me.start_ns;
    if (!(length > 0)) {
      out[i] = {1, 1, 0};
      continue;
    }
    // The other copies of the same source, clipped to this one: +1 where one begins, -1 where it
    // ends; between two consecutive edges the count is constant.
    std::vector<std::pair<double, int>> edges;
    for (size_t j = 0; j < intervals.size(); ++j) {
      const CopyInterval& other = intervals[j];
      if (j == i || other.source != me.source) continue;
      const double begin = std::max(other.start_ns, me.start_ns);
      const double end = std::min(other.end_ns, me.end_ns);
      if (!(end - begin > min_overlap_ns)) continue;
      edges.push_back({begin, +1});
      edges.push_back({end, -1});
    }
    // Ends before begins at the same instant: touching copies never count together.
    std::sort(edges.begin(), edges.end());
    double weighted = 0, shared = 0, at = me.start_ns;
    int64_t readers = 1, max = 1;
    for (const auto& [t, delta] : edges) {
      weighted += static_cast<double>(readers) * (t - at);
      if (readers >= 2) shared += t - at;
      at = t;
      readers += delta;
      max = std::max(max, readers);
    }
    weighted += static_cast<double>(readers) * (me.end_ns - at);
    if (readers >= 2) shared += me.end_ns - at;
    out[i] = {weighted / length, max, shared / length};
  }
  return out;
}

namespace {

std::optional<double> PairRate(const PairRates& pairs, const CopyInterval& c) {
  auto it = pairs.find({c.reader, c.source});
  if (it == pairs.end() || !(it->second > 0)) return std::nullopt;
  return it->second;
}

double Median(std::vector<double> v) { return v.empty() ? 0 : Summarize(std::move(v)).median; }

}  // namespace

absl::StatusOr<PrefetchRunSummary> SummarizePrefetchRun(
    const std::string& name, const std::vector<std::vector<CopyInterval>>& repetitions,
    const PairRates& pairs) {
  PrefetchRunSummary run;
  run.name = name;
  struct StepAccumulator {
    int64_t copies = 0;
    double readers = 0, shared = 0;
    int64_t max = 0;
    std::vector<double> efficiency;
  };
  std::map<int64_t, StepAccumulator> steps;
  std::vector<double> rank_efficiency, skews;
  double readers_sum = 0;
  int64_t copies = 0;
  for (const std::vector<CopyInterval>& rep : repetitions) {
    for (const CopyInterval& c : rep) {
      if (!(c.end_ns >= c.start_ns) || !std::isfinite(c.start_ns) || !std::isfinite(c.end_ns)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: the copy of rank %d from rank %d (step %d) ends before it starts",
                            name, c.reader, c.source, c.step));
      }
    }
    const std::vector<SourceReaders> readers = ReadersPerSource(rep, kPrefetchMinOverlapNs);
    // Per rank: its first start, last end and ideal time.
    struct RankSpan {
      double first = std::numeric_limits<double>::infinity();
      double last = -std::numeric_limits<double>::infinity();
      double ideal_ns = 0;
      bool all_rated = true;
    };
    std::map<int64_t, RankSpan> ranks;
    for (size_t i = 0; i < rep.size(); ++i) {
      const CopyInterval& c = rep[i];
      StepAccumulator& s = steps[c.step];
      ++s.copies;
      s.readers += readers[i].mean;
      s.shared += readers[i].shared_fraction;
      s.max = std::max(s.max, readers[i].max);
      readers_sum += readers[i].mean;
      ++copies;
      RankSpan& span = ranks[c.reader];
      span.first = std::min(span.first, c.start_ns);
      span.last = std::max(span.last, c.end_ns);
      const std::optional<double> pair = PairRate(pairs, c);
      if (!pair) {
        span.all_rated = false;
        continue;
      }
      span.ideal_ns += c.bytes / *pair * 1e9;
      const double took = c.end_ns - c.start_ns;
      if (took > 0) s.efficiency.push_back(c.bytes / took * 1e9 / *pair);
    }
    double earliest = std::numeric_limits<double>::infinity();
    double latest = -std::numeric_limits<double>::infinity();
    for (const auto& [rank, span] : ranks) {
      earliest = std::min(earliest, span.first);
      latest = std::max(latest, span.first);
      if (span.all_rated && span.last > span.first) {
        rank_efficiency.push_back(span.ideal_ns / (span.last - span.first));
      }
    }
    if (!ranks.empty()) skews.push_back(latest - earliest);
  }
  if (copies == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": no copies were timed"));
  }
  for (auto& [step, s] : steps) {
    run.steps.push_back({step, s.copies, s.readers / static_cast<double>(s.copies), s.max,
                         s.shared / static_cast<double>(s.copies), Median(s.efficiency)});
  }
  run.mean_readers = readers_sum / static_cast<double>(copies);
  run.efficiency = Median(rank_efficiency);
  run.worst_efficiency = rank_efficiency.empty()
                             ? 0
                             : *std::min_element(rank_efficiency.begin(), rank_efficiency.end());
  run.start_skew_ns = Median(skews);
  return run;
}

std::optional<FanoutFit> FitEgressFanout(const std::vector<std::vector<CopyInterval>>& copies,
                                         const PairRates& pairs, double egress_bw) {
  std::vector<double> per_reader, port_share;
  double readers_sum = 0;
  for (const std::vector<CopyInterval>& rep : copies) {
    const std::vector<SourceReaders> readers = ReadersPerSource(rep, kPrefetchMinOverlapNs);
    for (size_t i = 0; i < rep.size(); ++i) {
      const CopyInterval& c = rep[i];
      const std::optional<double> pair = PairRate(pairs, c);
      const double took_s = (c.end_ns - c.start_ns) * 1e-9;
      if (!pair || !(took_s > 0) || readers[i].shared_fraction < kFanoutSharedFraction) continue;
      // The part of the copy with its source to itself ran at the pair rate; the rest of its
      // bytes moved while shared, among (mean - alone part) / shared part readers on average.
      const double f = readers[i].shared_fraction;
      const double shared_s = f * took_s;
      const double shared_bytes = c.bytes - *pair * (1 - f) * took_s;
      if (!(shared_bytes > 0)) continue;
      const double rate = shared_bytes / shared_s;
      const double readers_while_shared = (readers[i].mean - (1 - f)) / f;
      const double port = egress_bw > 0 ? egress_bw : *pair;
      per_reader.push_back(rate / *pair);
      port_share.push_back(readers_while_shared * rate / port);
      readers_sum += readers_while_shared;
    }
  }
  if (per_reader.empty()) return std::nullopt;
  FanoutFit fit;
  fit.copies = static_cast<int64_t>(per_reader.size());
  fit.per_reader = Median(per_reader);
  fit.mean_readers = readers_sum / static_cast<double>(fit.copies);
  const double e = Median(port_share);
  fit.capped = e > 1;
  fit.egress_fanout_efficiency = std::min(1.0, e);
  return fit;
}

}  // namespace dwdp
