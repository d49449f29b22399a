#include "core/report/run_report.h"

#include <map>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

struct Span {
  double start = 1e300;
  double end = -1e300;
  void Add(double s, double e) {
    start = std::min(start, s);
    end = std::max(end, e);
  }
  double length() const { return end > start ? end - start : 0; }
};

// Length of the union of intervals (copy-stream busy time).
double UnionLength(std::vector<std::pair<double, double>> intervals) {
  std::sort(intervals.begin(), intervals.end());
  double total = 0;
  double cur_start = 0;
  double cur_end = -1;
  bool open = false;
  for (auto [s, e] : intervals) {
    if (!open || s > cur_end) {
      if (open) total += cur_end - cur_start;
      cur_start = s;
      cur_end = e;
      open = true;
    } else {
      cur_end = std::max(cur_end, e);
    }
  }
  if (open) total += cur_end - cur_start;
  return total;
}

const char* KindName(OpKind kind) {
  switch (kind) {
    case OpKind::kCopy:
      return "copy";
    case OpKind::kEdgeCopy:
      return "edge copy";
    case OpKind::kFill:
      return "fill";
    case OpKind::kCompute:
      return "kernel";
    case OpKind::kWait:
      return "wait";
    case OpKind::kRecord:
      return "record";
  }
  return "?";
}

}  // namespace

RunReport BuildRunReport(const std::vector<TimedOp>& timeline, int64_t num_ranks, int64_t forwards,
                         const std::function<uint64_t(int64_t)>& peak_bytes) {
  RunReport report;
  report.forwards = forwards;
  const double per_forward = forwards > 0 ? 1.0 / static_cast<double>(forwards) : 0.0;
  // (rank, forward) spans, (rank, forward, layer) accumulators.
  std::map<std::pair<int64_t, int64_t>, Span> forward_span;
  std::map<std::pair<int64_t, int64_t>, double> forward_stall;
  struct LayerAcc {
    int64_t slot = 0;
    uint64_t bytes = 0;
    double compute = 0;
    double stall = 0;
    std::map<int64_t, Span> copy_span;  // per forward
  };
  std::vector<std::map<int64_t, LayerAcc>> layers(static_cast<size_t>(num_ranks));
  std::vector<std::vector<std::pair<double, double>>> copy_busy(static_cast<size_t>(num_ranks));
  report.ranks.resize(static_cast<size_t>(num_ranks));
  for (int64_t r = 0; r < num_ranks; ++r) report.ranks[r].rank = r;

  for (const TimedOp& op : timeline) {
    if (op.rank < 0 || op.rank >= num_ranks || op.tag.forward < 0) continue;
    RankReport& rank = report.ranks[op.rank];
    forward_span[{op.rank, op.tag.forward}].Add(op.start_ns, op.end_ns);
    if (op.tag.layer < 0) continue;
    LayerAcc& acc = layers[op.rank][op.tag.layer];
    if (op.tag.slot >= 0) acc.slot = op.tag.slot;
    switch (op.tag.kind) {
      case OpKind::kCopy:
        acc.bytes += op.bytes;
        acc.copy_span[op.tag.forward].Add(op.start_ns, op.end_ns);
        rank.bytes_from_peer[op.tag.peer] += op.bytes;
        copy_busy[op.rank].emplace_back(op.start_ns, op.end_ns);
        break;
      case OpKind::kCompute:
        acc.compute += op.end_ns - op.start_ns;
        break;
      case OpKind::kWait:
        // The compute stream's wait on ready[slot] is the exposed stall; the copy stream's
        // wait on free[slot] is back-pressure, reported in the trace only.
        if (op.tag.label == "wait ready") {
          acc.stall += op.end_ns - op.start_ns;
          forward_stall[{op.rank, op.tag.forward}] += op.end_ns - op.start_ns;
        }
        break;
      default:
        break;
    }
  }

  for (int64_t r = 0; r < num_ranks; ++r) {
    RankReport& rank = report.ranks[r];
    rank.peak_device_bytes = peak_bytes ? peak_bytes(r) : 0;
    for (auto& [layer, acc] : layers[r]) {
      LayerReport lr;
      lr.layer = layer;
      lr.slot = acc.slot;
      lr.copy_bytes = static_cast<uint64_t>(static_cast<double>(acc.bytes) * per_forward);
      double copy_total = 0;
      for (const auto& [f, span] : acc.copy_span) copy_total += span.length();
      lr.copy_ns = copy_total * per_forward;
      lr.compute_ns = acc.compute * per_forward;
      lr.stall_ns = acc.stall * per_forward;
      rank.copy_bytes += lr.copy_bytes;
      rank.stall_ns += lr.stall_ns;
      rank.layers.push_back(lr);
    }
    for (auto& [peer, bytes] : rank.bytes_from_peer) {
      bytes = static_cast<uint64_t>(static_cast<double>(bytes) * per_forward);
    }
    rank.copy_busy_ns = UnionLength(copy_busy[r]) * per_forward;
    double total = 0;
    for (int64_t f = 0; f < forwards; ++f) total += forward_span[{r, f}].length();
    rank.forward_ns = total * per_forward;
    report.copy_bytes += rank.copy_bytes;
  }
  for (int64_t f = 0; f < forwards; ++f) {
    double slowest = 0;
    double stall = 0;
    for (int64_t r = 0; r < num_ranks; ++r) {
      slowest = std::max(slowest, forward_span[{r, f}].length());
      stall = std::max(stall, forward_stall[{r, f}]);
    }
    report.forward_ns_each.push_back(slowest);
    report.forward_ns += slowest * per_forward;
    report.stall_ns += stall * per_forward;
  }
  return report;
}

void RunReportAccumulator::Add(const RunReport& one) {
  const double forward = one.forward_ns;
  if (count_ == 0) {
    sum_ = one;
    sum_.forward_ns_each.clear();
    min_forward_ns_ = max_forward_ns_ = forward;
  } else {
    min_forward_ns_ = std::min(min_forward_ns_, forward);
    max_forward_ns_ = std::max(max_forward_ns_, forward);
    sum_.forward_ns += one.forward_ns;
    sum_.stall_ns += one.stall_ns;
    sum_.copy_bytes += one.copy_bytes;
    for (size_t r = 0; r < sum_.ranks.size() && r < one.ranks.size(); ++r) {
      RankReport& into = sum_.ranks[r];
      const RankReport& from = one.ranks[r];
      into.peak_device_bytes = std::max(into.peak_device_bytes, from.peak_device_bytes);
      into.copy_bytes += from.copy_bytes;
      into.stall_ns += from.stall_ns;
      into.forward_ns += from.forward_ns;
      into.copy_busy_ns += from.copy_busy_ns;
      for (const auto& [peer, bytes] : from.bytes_from_peer) into.bytes_from_peer[peer] += bytes;
      for (size_t l = 0; l < into.layers.size() && l < from.layers.size(); ++l) {
        into.layers[l].copy_bytes += from.layers[l].copy_bytes;
        into.layers[l].copy_ns += from.layers[l].copy_ns;
        into.layers[l].compute_ns += from.layers[l].compute_ns;
        into.layers[l].stall_ns += from.layers[l].stall_ns;
      }
    }
  }
  if (sum_.forward_ns_each.size() < kKeptForwards) sum_.forward_ns_each.push_back(forward);
  ++count_;
}

RunReport RunReportAccumulator::Result() const {
  RunReport out = sum_;
  out.forwards = count_;
  if (count_ <= 1) return out;
  const double n = static_cast<double>(count_);
  const auto mean_bytes = [n](uint64_t total) {
    return static_cast<uint64_t>(static_cast<double>(total) / n + 0.5);
  };
  out.forward_ns /= n;
  out.stall_ns /= n;
  out.copy_bytes = mean_bytes(out.copy_bytes);
  for (RankReport& r : out.ranks) {
    r.copy_bytes = mean_bytes(r.copy_bytes);
    r.stall_ns /= n;
    r.forward_ns /= n;
    r.copy_busy_ns /= n;
    for (auto& [peer, bytes] : r.bytes_from_peer) bytes = mean_bytes(bytes);
    for (LayerReport& l : r.layers) {
      l.copy_bytes = mean_bytes(l.copy_bytes);
      l.copy_ns /= n;
      l.compute_ns /= n;
      l.stall_ns /= n;
    }
  }
  out.extra["forward_ns_min"] = min_forward_ns_;
  out.extra["forward_ns_max"] = max_forward_ns_;
  return out;
}

nlohmann::json RunReport::ToJson() const {
  nlohmann::json ranks_json = nlohmann::json::array();
  for (const RankReport& r : ranks) {
    nlohmann::json layers_json = nlohmann::json::array();
    for (const LayerReport& l : r.layers) {
      layers_json.push_back({{"layer", l.layer},
                             {"slot", l.slot},
                             {"copy_bytes", l.copy_bytes},
                             {"copy_ns", l.copy_ns},
                             {"compute_ns", l.compute_ns},
                             {"stall_ns", l.stall_ns}});
    }
    nlohmann::json peers = nlohmann::json::object();
    for (const auto& [peer, bytes] : r.bytes_from_peer) peers[std::to_string(peer)] = bytes;
    ranks_json.push_back({{"rank", r.rank},
                          {"layers", layers_json},
                          {"peak_device_bytes", r.peak_device_bytes},
                          {"copy_bytes", r.copy_bytes},
                          {"stall_ns", r.stall_ns},
                          {"forward_ns", r.forward_ns},
                          {"copy_busy_ns", r.copy_busy_ns},
                          {"bytes_from_peer", peers}});
  }
  nlohmann::json out = {{"backend", backend},
                        {"mode", mode},
                        {"scenario", scenario},
                        {"ok", ok},
                        {"forwards", forwards},
                        {"ranks", ranks_json},
                        {"totals",
                         {{"forward_ns", forward_ns},
                          {"stall_ns", stall_ns},
                          {"copy_bytes", copy_bytes},
                          {"forward_ns_each", forward_ns_each}}},
                        {"hazards", hazards},
                        {"errors", errors}};
  for (auto it = extra.begin(); it != extra.end(); ++it) out[it.key()] = it.value();
  return out;
}

std::string RunReport::ToText(bool all_ranks) const {
  std::string out = absl::StrFormat("%s on %s backend, %s mode: %d forward(s), %d rank(s)\n",
                                    scenario, backend, mode, forwards, ranks.size());
  absl::StrAppendFormat(&out,
                        "forward %s (slowest rank, mean over forwards); exposed stall %s per "
                        "forward; %s copied per forward by all ranks\n",
                        FormatNanos(forward_ns), FormatNanos(stall_ns), FormatBytes(copy_bytes));
  for (const RankReport& r : ranks) {
    if (!all_ranks && r.rank != 0) continue;
    absl::StrAppendFormat(&out, "\nrank %d, per MoE layer (mean over forwards):\n", r.rank);
    TextTable table({"layer", "slot", "copied", "copy", "copy rate", "compute", "stall"});
    for (const LayerReport& l : r.layers) {
      const double rate =
          l.copy_ns > 0 ? static_cast<double>(l.copy_bytes) / (l.copy_ns * 1e-9) : 0;
      table.AddRow({std::to_string(l.layer), std::to_string(l.slot), FormatBytes(l.copy_bytes),
                    FormatNanos(l.copy_ns), rate > 0 ? FormatBandwidth(rate) : "-",
                    FormatNanos(l.compute_ns), FormatNanos(l.stall_ns)});
    }
    out += table.Render();
  }
  out += "\nper rank (per forward):\n";
  TextTable ranks_table(
      {"rank", "forward", "copied", "copy busy", "stall", "peak memory", "bytes by peer"});
  for (const RankReport& r : ranks) {
    std::string peers;
    for (const auto& [peer, bytes] : r.bytes_from_peer) {
      absl::StrAppend(&peers, peers.empty() ? "" : ", ", peer, ": ", FormatBytes(bytes));
    }
    ranks_table.AddRow({std::to_string(r.rank), FormatNanos(r.forward_ns),
                        FormatBytes(r.copy_bytes), FormatNanos(r.copy_busy_ns),
                        FormatNanos(r.stall_ns), FormatBytes(r.peak_device_bytes), peers});
  }
  out += ranks_table.Render({0, 6});
  if (extra.contains("host_blocks") && extra["host_blocks"].is_number_unsigned() &&
      extra["host_blocks"].get<uint64_t>() > 0) {
    absl::StrAppendFormat(&out,
                          "\nthe host blocked %d times in an enqueue on a full stream (the "
                          "profile's stream_queue_entries): whatever it issued next, compute "
                          "launches included, started late\n",
                          extra["host_blocks"].get<uint64_t>());
  }
  if (hazards.empty() && errors.empty()) {
    out += ok ? "\nno hazard, no error\n" : "\nfailed\n";
  }
  for (const std::string& h : hazards) absl::StrAppend(&out, "\nhazard: ", h, "\n");
  for (const std::string& e : errors) absl::StrAppend(&out, "\nerror: ", e, "\n");
  return out;
}

std::vector<double> ForwardStarts(const std::vector<TimedOp>& timeline) {
  std::map<int64_t, double> first;
  for (const TimedOp& op : timeline) {
    if (op.tag.forward < 0) continue;
    auto [it, added] = first.try_emplace(op.tag.forward, op.start_ns);
    if (!added) it->second = std::min(it->second, op.start_ns);
  }
  std::vector<double> out;
  for (const auto& [forward, start] : first) out.push_back(start);
  return out;
}

nlohmann::json ChromeTrace(const std::vector<TimedOp>& timeline,
                           const std::function<std::string(int64_t, StreamId)>& stream_name,
                           const std::vector<double>& barriers_ns) {
  nlohmann::json events = nlohmann::json::array();
  for (size_t f = 0; f < barriers_ns.size(); ++f) {
    events.push_back({{"name", absl::StrCat("all ranks aligned before forward ", f)},
                      {"cat", "barrier"},
                      {"ph", "i"},
                      {"s", "g"},
                      {"pid", 0},
                      {"tid", 0},
                      {"ts", barriers_ns[f] / 1000.0}});
  }
  std::set<int64_t> ranks;
  std::set<std::pair<int64_t, StreamId>> streams;
  for (const TimedOp& op : timeline) {
    ranks.insert(op.rank);
    streams.insert({op.rank, op.stream});
    if (op.tag.kind == OpKind::kRecord) continue;  // zero-length bookkeeping
    if (op.tag.kind == OpKind::kWait && op.end_ns <= op.start_ns) continue;
    std::string name = op.tag.label.empty() ? KindName(op.tag.kind) : op.tag.label;
    if (op.tag.kind == OpKind::kCopy)
      name = absl::StrCat("copy L", op.tag.layer, " <- r", op.tag.peer);
    if (op.tag.kind == OpKind::kCompute && op.tag.layer >= 0) {
      name = absl::StrCat(op.tag.label, " L", op.tag.layer);
    }
    nlohmann::json args = {{"layer", op.tag.layer}, {"forward", op.tag.forward}};
    if (op.bytes) args["bytes"] = op.bytes;
    if (op.tag.peer >= 0) args["peer"] = op.tag.peer;
    if (op.tag.weight >= 0) args["weight"] = op.tag.weight;
    if (op.tag.slot >= 0) args["slot"] = op.tag.slot;
    events.push_back({{"name", name},
                      {"cat", KindName(op.tag.kind)},
                      {"ph", "X"},
                      {"pid", op.rank},
                      {"tid", op.stream},
                      {"ts", op.start_ns / 1000.0},
                      {"dur", (op.end_ns - op.start_ns) / 1000.0},
                      {"args", args}});
  }
  for (int64_t r : ranks) {
    events.push_back({{"name", "process_name"},
                      {"ph", "M"},
                      {"pid", r},
                      {"args", {{"name", absl::StrCat("rank ", r)}}}});
  }
  for (auto [r, s] : streams) {
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", r},
                      {"tid", s},
                      {"args", {{"name", stream_name ? stream_name(r, s) : absl::StrCat(s)}}}});
  }
  return {{"traceEvents", events}, {"displayTimeUnit", "ns"}};
}

}  // namespace dwdp
