#include "core/dep/dep_report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/util/bytes.h"

namespace dwdp::dep {
namespace {

nlohmann::json LayerJson(const DepLayerTimes& l) {
  return {{"layer", l.layer},
          {"attention_ns", l.attention_ns},
          {"wait_ns", l.wait_ns},
          {"dispatch_ns", l.dispatch_ns},
          {"compute_ns", l.compute_ns},
          {"combine_ns", l.combine_ns},
          {"dispatch_bytes", l.dispatch_bytes},
          {"combine_bytes", l.combine_bytes},
          {"rows_received", l.rows_received}};
}

}  // namespace

nlohmann::json RankTimesToJson(const DepRankTimes& times) {
  nlohmann::json layers = nlohmann::json::array();
  for (const DepLayerTimes& l : times.layers) layers.push_back(LayerJson(l));
  return {{"rank", times.rank},
          {"tokens", times.tokens},
          {"forward_ns", times.forward_ns},
          {"layers", std::move(layers)}};
}

absl::StatusOr<DepRankTimes> RankTimesFromJson(const nlohmann::json& json) {
  try {
    DepRankTimes t;
    t.rank = json.at("rank");
    t.tokens = json.at("tokens");
    t.forward_ns = json.at("forward_ns");
    for (const nlohmann::json& l : json.at("layers")) {
      DepLayerTimes layer;
      layer.layer = l.at("layer");
      layer.attention_ns = l.at("attention_ns");
      layer.wait_ns = l.at("wait_ns");
      layer.dispatch_ns = l.at("dispatch_ns");
      layer.compute_ns = l.at("compute_ns");
      layer.combine_ns = l.at("combine_ns");
      layer.dispatch_bytes = l.at("dispatch_bytes");
      layer.combine_bytes = l.at("combine_bytes");
      layer.rows_received = l.at("rows_received");
      t.layers.push_back(layer);
    }
    return t;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        absl::StrCat("a rank's DEP times arrived incomplete or garbled: ", e.what()));
  }
}

void FoldForwards(const std::vector<std::vector<DepRankTimes>>& forwards, DepReport& report) {
  report.forwards = static_cast<int64_t>(forwards.size());
  report.ranks.clear();
  report.forward_ns_each.clear();
  if (forwards.empty()) return;
  const double n = static_cast<double>(forwards.size());
  report.ranks = forwards.front();
  for (DepRankTimes& r : report.ranks) {
    r.forward_ns = 0;
    for (DepLayerTimes& l : r.layers) {
      const int64_t layer = l.layer;
      const int64_t rows = l.rows_received;
      const uint64_t sent = l.dispatch_bytes;
      const uint64_t back = l.combine_bytes;
      l = {};
      l.layer = layer;
      l.rows_received = rows;
      l.dispatch_bytes = sent;
      l.combine_bytes = back;
    }
  }
  double sum = 0;
  for (const std::vector<DepRankTimes>& forward : forwards) {
    double slowest = 0;
    for (size_t r = 0; r < forward.size() && r < report.ranks.size(); ++r) {
      slowest = std::max(slowest, forward[r].forward_ns);
      DepRankTimes& into = report.ranks[r];
      into.forward_ns += forward[r].forward_ns / n;
      for (size_t p = 0; p < forward[r].layers.size() && p < into.layers.size(); ++p) {
        const DepLayerTimes& l = forward[r].layers[p];
        DepLayerTimes& m = into.layers[p];
        m.attention_ns += l.attention_ns / n;
        m.wait_ns += l.wait_ns / n;
        m.dispatch_ns += l.dispatch_ns / n;
        m.compute_ns += l.compute_ns / n;
        m.combine_ns += l.combine_ns / n;
      }
    }
    report.forward_ns_each.push_back(slowest);
    sum += slowest;
  }
  report.forward_ns = sum / n;
}

nlohmann::json DepReport::ToJson() const {
  nlohmann::json ranks_json = nlohmann::json::array();
  for (const DepRankTimes& r : ranks) {
    nlohmann::json layers = nlohmann::json::array();
    DepLayerTimes total;
    for (const DepLayerTimes& l : r.layers) {
      layers.push_back(LayerJson(l));
      total.attention_ns += l.attention_ns;
      total.wait_ns += l.wait_ns;
      total.dispatch_ns += l.dispatch_ns;
      total.compute_ns += l.compute_ns;
      total.combine_ns += l.combine_ns;
    }
    ranks_json.push_back({{"rank", r.rank},
                          {"tokens", r.tokens},
                          {"forward_ns", r.forward_ns},
                          {"attention_ns", total.attention_ns},
                          {"wait_ns", total.wait_ns},
                          {"dispatch_ns", total.dispatch_ns},
                          {"compute_ns", total.compute_ns},
                          {"combine_ns", total.combine_ns},
                          {"layers", std::move(layers)}});
  }
  return {
      {"baseline", "dep"},
      {"backend", backend},
      {"mode", mode},
      {"scenario", scenario},
      {"ok", ok},
      {"errors", errors},
      {"ep_size", ep_size},
      {"tokens_cv", tokens_cv},
      {"tokens_per_rank", tokens_per_rank},
      {"summary",
       {{"forwards", forwards}, {"forward_ns", forward_ns}, {"forward_ns_each", forward_ns_each}}},
      {"ranks", std::move(ranks_json)},
      {"check", check},
      {"planner", planner},
      {"options", options},
      {"extra", extra}};
}

std::string DepReport::ToText(bool all_ranks) const {
  std::string out = absl::StrFormat(
      "DEP baseline of %s on %s (%s): ep_size %d, tokens per rank %s (cv %.3g), %d forward(s)\n",
      scenario, backend, mode, ep_size, absl::StrJoin(tokens_per_rank, " "), tokens_cv, forwards);
  absl::StrAppendFormat(&out, "forward %s (slowest rank, mean over forwards)\n",
                        FormatNanos(forward_ns));
  if (planner.is_object() && planner.contains("dep_forward_ns")) {
    absl::StrAppendFormat(&out, "planner: DEP forward %s, DWDP forward %s, DEP/DWDP %.3f\n",
                          FormatNanos(planner["dep_forward_ns"].get<double>()),
                          FormatNanos(planner["dwdp_forward_ns"].get<double>()),
                          planner["dep_over_dwdp"].get<double>());
  }
  absl::StrAppend(&out,
                  "rank  tokens  attention    wait         dispatch     compute      combine\n");
  for (const DepRankTimes& r : ranks) {
    DepLayerTimes t;
    for (const DepLayerTimes& l : r.layers) {
      t.attention_ns += l.attention_ns;
      t.wait_ns += l.wait_ns;
      t.dispatch_ns += l.dispatch_ns;
      t.compute_ns += l.compute_ns;
      t.combine_ns += l.combine_ns;
    }
    absl::StrAppendFormat(&out, "%4d  %6d  %-11s  %-11s  %-11s  %-11s  %-11s\n", r.rank, r.tokens,
                          FormatNanos(t.attention_ns), FormatNanos(t.wait_ns),
                          FormatNanos(t.dispatch_ns), FormatNanos(t.compute_ns),
                          FormatNanos(t.combine_ns));
    if (!all_ranks) continue;
    for (const DepLayerTimes& l : r.layers) {
      absl::StrAppendFormat(&out, "      layer %3d  %-11s  %-11s  %-11s  %-11s  %-11s\n", l.layer,
                            FormatNanos(l.attention_ns), FormatNanos(l.wait_ns),
                            FormatNanos(l.dispatch_ns), FormatNanos(l.compute_ns),
                            FormatNanos(l.combine_ns));
    }
  }
  if (check.is_object()) {
    absl::StrAppendFormat(&out, "output check: %s\n", check.value("summary", std::string()));
  }
  for (const std::string& e : errors) absl::StrAppend(&out, "error: ", e, "\n");
  return out;
}

}  // namespace dwdp::dep
