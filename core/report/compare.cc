#include "core/report/compare.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

struct LayerFigures {
  double copy_ns = 0;
  double compute_ns = 0;
  double stall_ns = 0;
};

// The parts of a run report that a comparison reads.
struct ParsedReport {
  std::string scenario;
  std::string backend;
  bool ok = true;
  double forward_ns = 0;
  double stall_ns = 0;
  std::vector<double> forward_ns_each;                       // optional: each forward's time
  std::map<int64_t, std::map<int64_t, LayerFigures>> ranks;  // rank -> layer -> figures
};

absl::StatusOr<double> Number(const nlohmann::json& object, const char* key,
                              const std::string& where) {
  if (!object.is_object() || !object.contains(key)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing key '", key, "'"));
  }
  const nlohmann::json& v = object.at(key);
  if (!v.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, ": expected a number, found ", v.type_name()));
  }
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, ": expected a finite non-negative number, found ", v.dump()));
  }
  return d;
}

absl::StatusOr<ParsedReport> Parse(const nlohmann::json& j, const std::string& name) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a `dwdp run --format json` report (a JSON object), found ",
                     j.type_name()));
  }
  ParsedReport r;
  if (j.contains("scenario") && j["scenario"].is_string()) r.scenario = j["scenario"];
  if (j.contains("backend") && j["backend"].is_string()) r.backend = j["backend"];
  if (j.contains("ok") && j["ok"].is_boolean()) r.ok = j["ok"];
  if (!j.contains("totals")) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": missing key 'totals'"));
  }
  const std::string totals = absl::StrCat(name, ": totals");
  absl::StatusOr<double> forward = Number(j["totals"], "forward_ns", totals);
  if (!forward.ok()) return forward.status();
  absl::StatusOr<double> stall = Number(j["totals"], "stall_ns", totals);
  if (!stall.ok()) return stall.status();
  r.forward_ns = *forward;
  r.stall_ns = *stall;
  // Optional (INTERFACE.md): reports of one forward, or from before it existed, lack it.
  if (j["totals"].contains("forward_ns_each") && j["totals"]["forward_ns_each"].is_array()) {
    for (const nlohmann::json& each : j["totals"]["forward_ns_each"]) {
      if (each.is_number()) r.forward_ns_each.push_back(each.get<double>());
    }
  }
  if (!j.contains("ranks") || !j["ranks"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": missing array 'ranks'"));
  }
  const nlohmann::json& ranks = j["ranks"];
  for (size_t i = 0; i < ranks.size(); ++i) {
    const std::string where = absl::StrCat(name, ": ranks[", i, "]");
    absl::StatusOr<double> rank = Number(ranks[i], "rank", where);
    if (!rank.ok()) return rank.status();
    const int64_t rank_id = static_cast<int64_t>(*rank);
    if (r.ranks.count(rank_id)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": rank ", rank_id, " appears twice"));
    }
    auto& layers_out = r.ranks[rank_id];
    if (!ranks[i].contains("layers") || !ranks[i]["layers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": missing array 'layers'"));
    }
    const nlohmann::json& layers = ranks[i]["layers"];
    for (size_t k = 0; k < layers.size(); ++k) {
      const std::string lw = absl::StrCat(where, ".layers[", k, "]");
      absl::StatusOr<double> layer = Number(layers[k], "layer", lw);
      if (!layer.ok()) return layer.status();
      LayerFigures f;
      for (auto [key, out] :
           {std::pair{"copy_ns", &f.copy_ns}, std::pair{"compute_ns", &f.compute_ns},
            std::pair{"stall_ns", &f.stall_ns}}) {
        absl::StatusOr<double> v = Number(layers[k], key, lw);
        if (!v.ok()) return v.status();
        *out = *v;
      }
      const int64_t layer_id = static_cast<int64_t>(*layer);
      if (layers_out.count(layer_id)) {
        return absl::InvalidArgumentError(absl::StrCat(lw, ": layer ", layer_id, " appears twice"));
      }
      layers_out[layer_id] = f;
    }
  }
  return r;
}

std::string Percent(double relative) {
  if (std::isinf(relative)) return relative > 0 ? "+inf" : "-inf";
  return absl::StrFormat("%+.1f%%", 100 * relative);
}

nlohmann::json ValueJson(const ComparedValue& v) {
  nlohmann::json j = {{"predicted", v.predicted},
                      {"measured", v.measured},
                      {"checked", v.checked},
                      {"exceeded", v.exceeded}};
  // JSON has no infinity: a prediction against a measured 0 has no finite relative error.
  j["relative_error"] =
      std::isfinite(v.relative_error) ? nlohmann::json(v.relative_error) : nlohmann::json(nullptr);
  return j;
}

std::string Mark(const ComparedValue& v) {
  if (!v.exceeded) return "";
  return v.checked ? " FAIL" : " !";
}

}  // namespace

ComparedValue CompareValue(double predicted, double measured, double tolerance, bool checked) {
  ComparedValue v;
  v.predicted = predicted;
  v.measured = measured;
  v.checked = checked;
  if (measured != 0) {
    v.relative_error = (predicted - measured) / measured;
  } else {
    v.relative_error = predicted == 0 ? 0 : std::numeric_limits<double>::infinity();
  }
  v.exceeded = std::abs(v.relative_error) > tolerance;
  return v;
}

absl::StatusOr<ReportComparison> CompareRunReports(const nlohmann::json& predicted,
                                                   const nlohmann::json& measured,
                                                   const CompareOptions& options) {
  if (!(options.tolerance > 0) || !std::isfinite(options.tolerance)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the tolerance must be a positive fraction, got %g", options.tolerance));
  }
  absl::StatusOr<ParsedReport> p = Parse(predicted, "predicted report");
  if (!p.ok()) return p.status();
  absl::StatusOr<ParsedReport> m = Parse(measured, "measured report");
  if (!m.ok()) return m.status();
  if (p->scenario != m->scenario) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the reports are of different scenarios ('%s' predicted, '%s' measured)",
                        p->scenario, m->scenario));
  }
  if (p->ranks.size() != m->ranks.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the reports have different numbers of ranks (%d predicted, %d measured)",
                        p->ranks.size(), m->ranks.size()));
  }
  const double tol = options.tolerance;
  ReportComparison c;
  c.scenario = p->scenario;
  c.predicted_backend = p->backend;
  c.measured_backend = m->backend;
  c.tolerance = tol;
  if (!p->ok) c.warnings.push_back("the predicted report says its run failed (\"ok\": false)");
  if (!m->ok) c.warnings.push_back("the measured report says its run failed (\"ok\": false)");
  if (p->backend == "cuda" && m->backend == "sim") {
    c.warnings.push_back(
        "the first report is from the cuda backend and the second from the simulator: the "
        "arguments are SIM.json GPU.json, so 'predicted' and 'measured' are swapped below");
  }
  for (const auto& [rank, p_layers] : p->ranks) {
    auto it = m->ranks.find(rank);
    if (it == m->ranks.end()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("rank %d is in the predicted report but not in the measured one", rank));
    }
    const auto& m_layers = it->second;
    if (p_layers.size() != m_layers.size()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("rank %d has %d layers predicted and %d measured", rank, p_layers.size(),
                          m_layers.size()));
    }
    RankComparison rc;
    rc.rank = rank;
    LayerFigures p_sum, m_sum;
    for (const auto& [layer, pf] : p_layers) {
      auto lt = m_layers.find(layer);
      if (lt == m_layers.end()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "rank %d: layer %d is in the predicted report but not in the measured one", rank,
            layer));
      }
      const LayerFigures& mf = lt->second;
      rc.layers.push_back({layer, CompareValue(pf.copy_ns, mf.copy_ns, tol, false),
                           CompareValue(pf.compute_ns, mf.compute_ns, tol, false),
                           CompareValue(pf.stall_ns, mf.stall_ns, tol, false)});
      p_sum.copy_ns += pf.copy_ns;
      p_sum.compute_ns += pf.compute_ns;
      p_sum.stall_ns += pf.stall_ns;
      m_sum.copy_ns += mf.copy_ns;
      m_sum.compute_ns += mf.compute_ns;
      m_sum.stall_ns += mf.stall_ns;
    }
    const double n = p_layers.empty() ? 1.0 : static_cast<double>(p_layers.size());
    rc.copy_ns = CompareValue(p_sum.copy_ns / n, m_sum.copy_ns / n, tol, true);
    rc.compute_ns = CompareValue(p_sum.compute_ns / n, m_sum.compute_ns / n, tol, false);
    rc.stall_ns = CompareValue(p_sum.stall_ns / n, m_sum.stall_ns / n, tol, false);
    if (rc.copy_ns.exceeded) {
      c.failures.push_back(absl::StrFormat(
          "rank %d: mean per-layer copy time predicted %s, measured %s (%s, tolerance ±%.0f%%)",
          rank, FormatNanos(rc.copy_ns.predicted), FormatNanos(rc.copy_ns.measured),
          Percent(rc.copy_ns.relative_error), 100 * tol));
    }
    c.ranks.push_back(std::move(rc));
  }
  c.forward_ns = CompareValue(p->forward_ns, m->forward_ns, tol, true);
  // How well the measurement repeats: a GPU whose own forwards differ by more than the tolerance
  // cannot be predicted to within it, whatever the model.
  const std::vector<double>& each = m->forward_ns_each;
  if (each.size() >= 2) {
    const auto [lo, hi] = std::minmax_element(each.begin(), each.end());
    double sum = 0;
    for (double v : each) sum += v;
    const double mean = sum / static_cast<double>(each.size());
    if (mean > 0) {
      c.measured_forward_spread = (*hi - *lo) / mean;
      if (*c.measured_forward_spread > tol) {
        c.warnings.push_back(absl::StrFormat(
            "the measured forwards differ by %.0f%% among themselves (%s to %s), more than the "
            "tolerance: the measurement itself does not repeat to within ±%.0f%%",
            100 * *c.measured_forward_spread, FormatNanos(*lo), FormatNanos(*hi), 100 * tol));
      }
    }
  }
  c.stall_ns = CompareValue(p->stall_ns, m->stall_ns, tol, false);
  if (c.forward_ns.exceeded) {
    c.failures.push_back(
        absl::StrFormat("forward time predicted %s, measured %s (%s, tolerance ±%.0f%%)",
                        FormatNanos(c.forward_ns.predicted), FormatNanos(c.forward_ns.measured),
                        Percent(c.forward_ns.relative_error), 100 * tol));
  }
  return c;
}

nlohmann::json ReportComparison::ToJson() const {
  nlohmann::json ranks_json = nlohmann::json::array();
  for (const RankComparison& r : ranks) {
    nlohmann::json layers_json = nlohmann::json::array();
    for (const LayerComparison& l : r.layers) {
      layers_json.push_back({{"layer", l.layer},
                             {"copy_ns", ValueJson(l.copy_ns)},
                             {"compute_ns", ValueJson(l.compute_ns)},
                             {"stall_ns", ValueJson(l.stall_ns)}});
    }
    ranks_json.push_back({{"rank", r.rank},
                          {"mean_over_layers",
                           {{"copy_ns", ValueJson(r.copy_ns)},
                            {"compute_ns", ValueJson(r.compute_ns)},
                            {"stall_ns", ValueJson(r.stall_ns)}}},
                          {"layers", layers_json}});
  }
  return {
      {"scenario", scenario},
      {"predicted_backend", predicted_backend},
      {"measured_backend", measured_backend},
      {"tolerance", tolerance},
      {"within_tolerance", within_tolerance()},
      {"ranks", ranks_json},
      {"totals", {{"forward_ns", ValueJson(forward_ns)}, {"stall_ns", ValueJson(stall_ns)}}},
      {"measured_forward_spread", measured_forward_spread ? nlohmann::json(*measured_forward_spread)
                                                          : nlohmann::json(nullptr)},
      {"failures", failures},
      {"warnings", warnings}};
}

std::string ReportComparison::ToText(bool all_layers) const {
  std::string out = absl::StrFormat(
      "%s: predicted (%s) vs measured (%s); relative error = (predicted - measured) / measured; "
      "checked: mean per-layer copy time of each rank and the forward time, tolerance ±%.0f%%\n",
      scenario, predicted_backend.empty() ? "?" : predicted_backend,
      measured_backend.empty() ? "?" : measured_backend, 100 * tolerance);
  for (const std::string& w : warnings) absl::StrAppend(&out, "warning: ", w, "\n");
  const auto cells = [](const ComparedValue& v) {
    return std::vector<std::string>{FormatNanos(v.predicted), FormatNanos(v.measured),
                                    Percent(v.relative_error) + Mark(v)};
  };
  const auto row = [&](std::string first, const ComparedValue& a, const ComparedValue& b,
                       const ComparedValue& s) {
    std::vector<std::string> r{std::move(first)};
    for (const ComparedValue* v : {&a, &b, &s}) {
      for (std::string& cell : cells(*v)) r.push_back(std::move(cell));
    }
    return r;
  };
  const std::vector<std::string> headers = {"",           "copy pred", "copy meas", "copy err",
                                            "comp pred",  "comp meas", "comp err",  "stall pred",
                                            "stall meas", "stall err"};
  absl::StrAppend(&out, "\nper rank, mean per MoE layer:\n");
  TextTable means{std::vector<std::string>(headers)};
  for (const RankComparison& r : ranks) {
    means.AddRow(row(absl::StrCat("rank ", r.rank), r.copy_ns, r.compute_ns, r.stall_ns));
  }
  out += means.Render();
  for (const RankComparison& r : ranks) {
    if (r.layers.empty()) continue;
    if (all_layers) {
      absl::StrAppendFormat(&out, "\nrank %d, per MoE layer:\n", r.rank);
      TextTable table{std::vector<std::string>(headers)};
      for (const LayerComparison& l : r.layers) {
        table.AddRow(row(absl::StrCat("layer ", l.layer), l.copy_ns, l.compute_ns, l.stall_ns));
      }
      out += table.Render();
    } else {
      const LayerComparison* worst = &r.layers.front();
      for (const LayerComparison& l : r.layers) {
        if (std::abs(l.copy_ns.relative_error) > std::abs(worst->copy_ns.relative_error)) {
          worst = &l;
        }
      }
      absl::StrAppendFormat(&out, "rank %d: largest per-layer copy error at layer %d: %s\n", r.rank,
                            worst->layer, Percent(worst->copy_ns.relative_error));
    }
  }
  absl::StrAppend(&out, "\nper forward:\n");
  TextTable totals({"", "predicted", "measured", "error"});
  totals.AddRow({"forward", FormatNanos(forward_ns.predicted), FormatNanos(forward_ns.measured),
                 Percent(forward_ns.relative_error) + Mark(forward_ns)});
  totals.AddRow({"exposed stall", FormatNanos(stall_ns.predicted), FormatNanos(stall_ns.measured),
                 Percent(stall_ns.relative_error) + Mark(stall_ns)});
  out += totals.Render();
  if (failures.empty()) {
    absl::StrAppendFormat(&out, "\nwithin tolerance (±%.0f%%)\n", 100 * tolerance);
  } else {
    absl::StrAppendFormat(&out, "\nbeyond tolerance (±%.0f%%):\n", 100 * tolerance);
    for (const std::string& f : failures) absl::StrAppend(&out, "  ", f, "\n");
  }
  absl::StrAppend(&out,
                  "(FAIL: a checked figure beyond the tolerance; !: an unchecked one, shown for "
                  "information)\n");
  return out;
}

}  // namespace dwdp
