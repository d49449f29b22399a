#include "core/dep/dep_compare.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/util/bytes.h"

namespace dwdp::dep {

bool IsDepReport(const nlohmann::json& report) {
  return report.is_object() && report.value("baseline", std::string()) == "dep";
}

absl::StatusOr<DepVsDwdp> CompareDepWithDwdp(const nlohmann::json& dwdp,
                                             const nlohmann::json& dep) {
  if (!IsDepReport(dep)) {
    return absl::InvalidArgumentError(
        "the second report is not a DEP baseline's (write it with `dwdp run --baseline dep "
        "--format json`)");
  }
  if (IsDepReport(dwdp) || !dwdp.is_object() || !dwdp.contains("totals")) {
    return absl::InvalidArgumentError(
        "the first report is not a DWDP run's (write it with `dwdp run --format json`)");
  }
  DepVsDwdp c;
  try {
    c.scenario = dep.at("scenario").get<std::string>();
    if (dwdp.at("scenario").get<std::string>() != c.scenario) {
      return absl::InvalidArgumentError(absl::StrCat("the reports are of different scenarios: '",
                                                     dwdp.at("scenario").get<std::string>(),
                                                     "' (DWDP) and '", c.scenario, "' (DEP)"));
    }
    c.dwdp_backend = dwdp.at("backend").get<std::string>();
    c.dep_backend = dep.at("backend").get<std::string>();
    c.ep_size = dep.at("ep_size").get<int64_t>();
    c.tokens_cv = dep.at("tokens_cv").get<double>();
    c.dwdp_forward_ns = dwdp.at("totals").at("forward_ns").get<double>();
    c.dep_forward_ns = dep.at("summary").at("forward_ns").get<double>();
    const nlohmann::json& planner = dep.at("planner");
    if (planner.is_object()) c.predicted_dep_over_dwdp = planner.at("dep_over_dwdp").get<double>();
    const nlohmann::json& ranks = dep.at("ranks");
    const double n = ranks.empty() ? 1.0 : static_cast<double>(ranks.size());
    for (const nlohmann::json& r : ranks) {
      c.attention_ns += r.at("attention_ns").get<double>() / n;
      c.wait_ns += r.at("wait_ns").get<double>() / n;
      c.dispatch_ns += r.at("dispatch_ns").get<double>() / n;
      c.compute_ns += r.at("compute_ns").get<double>() / n;
      c.combine_ns += r.at("combine_ns").get<double>() / n;
    }
    if (!dwdp.value("ok", true)) c.warnings.push_back("the DWDP report says its run failed");
    if (!dep.value("ok", true)) c.warnings.push_back("the DEP report says its run failed");
    if (c.dwdp_backend != c.dep_backend) {
      c.warnings.push_back(absl::StrCat("the runs are on different backends (", c.dwdp_backend,
                                        " and ", c.dep_backend, ")"));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("a report lacks a field: ", e.what()));
  }
  c.measured_dep_over_dwdp = c.dwdp_forward_ns > 0 ? c.dep_forward_ns / c.dwdp_forward_ns : 0;
  return c;
}

nlohmann::json DepVsDwdp::ToJson() const {
  return {{"scenario", scenario},
          {"dwdp_backend", dwdp_backend},
          {"dep_backend", dep_backend},
          {"ep_size", ep_size},
          {"tokens_cv", tokens_cv},
          {"dwdp_forward_ns", dwdp_forward_ns},
          {"dep_forward_ns", dep_forward_ns},
          {"measured_dep_over_dwdp", measured_dep_over_dwdp},
          {"predicted_dep_over_dwdp", predicted_dep_over_dwdp},
          {"dep_per_forward",
           {{"attention_ns", attention_ns},
            {"wait_ns", wait_ns},
            {"dispatch_ns", dispatch_ns},
            {"compute_ns", compute_ns},
            {"combine_ns", combine_ns}}},
          {"warnings", warnings}};
}

std::string DepVsDwdp::ToText() const {
  std::string out = absl::StrFormat(
      "%s: DWDP (%s) forward %s, DEP%d (%s, tokens cv %.3g) forward %s\n", scenario, dwdp_backend,
      FormatNanos(dwdp_forward_ns), ep_size, dep_backend, tokens_cv, FormatNanos(dep_forward_ns));
  absl::StrAppendFormat(&out, "DEP/DWDP measured %.3f, planner %s\n", measured_dep_over_dwdp,
                        predicted_dep_over_dwdp > 0
                            ? absl::StrFormat("%.3f", predicted_dep_over_dwdp)
                            : std::string("n/a"));
  absl::StrAppendFormat(&out,
                        "DEP per forward (mean rank): attention %s, wait %s, dispatch %s, "
                        "compute %s, combine %s\n",
                        FormatNanos(attention_ns), FormatNanos(wait_ns), FormatNanos(dispatch_ns),
                        FormatNanos(compute_ns), FormatNanos(combine_ns));
  for (const std::string& w : warnings) absl::StrAppend(&out, "warning: ", w, "\n");
  return out;
}

}  // namespace dwdp::dep
