#include "core/plan/sizing_report.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/plan/plan_report.h"
#include "core/report/table.h"

namespace dwdp {
namespace {

std::string Ms(double ms) {
  if (!std::isfinite(ms)) return "-";
  return ms >= 100 ? absl::StrFormat("%.0f", ms) : absl::StrFormat("%.1f", ms);
}

std::string Recipe(const SizingCandidate& c) {
  if (c.kind == Parallelism::kDep) return "-";
  return absl::StrCat(c.dwdp.num_experts_per_worker, "/", c.dwdp.num_prefetch_experts);
}

std::string Owner(const SizingCandidate& c) {
  if (c.kind == Parallelism::kDep) return "-";
  return c.dwdp.overlap > 0 ? OwnerPolicyName(c.dwdp.owner) : "any";
}

std::string Quote(const std::string& text) {
  std::string out = "\"";
  for (char ch : text) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

nlohmann::json SizingFields(const SizingCandidate& c) {
  nlohmann::json j = {{"kind", ParallelismName(c.kind)},
                      {"group_size", c.group_size},
                      {"max_num_tokens", c.max_num_tokens},
                      {"fits", c.fits},
                      {"weights_bytes_per_gpu", c.weights_bytes_per_gpu},
                      {"kv_tokens", c.kv_tokens},
                      {"saturated_tokens_per_s_per_gpu", c.saturated_tokens_per_s_per_gpu},
                      {"saturated_forward_p50_ms", c.saturated_forward_p50_ms},
                      {"saturated_forward_p99_ms", c.saturated_forward_p99_ms},
                      {"closed_form_tokens_per_s_per_gpu", c.closed_form_tokens_per_s_per_gpu},
                      {"evaluated", c.evaluated},
                      {"max_rate_per_gpu", c.max_rate_per_gpu},
                      {"groups", c.groups},
                      {"gpus", c.gpus},
                      {"fail_kind", c.fail_kind},
                      {"fail", c.fail}};
  if (c.evaluated) {
    j["min_ttft_p99_ms"] = c.min_ttft_p99_ms;
    if (c.gpus > 0) {
      j["ttft_p50_ms"] = c.at_rate.p50_ms;
      j["ttft_p99_ms"] = c.at_rate.p99_ms;
      j["tokens_per_s_per_gpu_at_rate"] = c.at_rate.tokens_per_s_per_gpu;
    }
  }
  if (c.kind == Parallelism::kDwdp) j["copy_ns_per_layer"] = c.copy_ns_per_layer;
  return j;
}

nlohmann::json CandidateJson(const SizingCandidate& c) {
  nlohmann::json j = c.kind == Parallelism::kDwdp ? CandidateToJson(c.dwdp) : nlohmann::json{};
  if (c.kind == Parallelism::kDep) j["ep_size"] = c.group_size;
  j.update(SizingFields(c));
  return j;
}

}  // namespace

std::string SizingToText(const SizingResult& r) {
  std::string out = absl::StrFormat(
      "sizing: %s on %s, %.3g requests/s (%.0f input tokens on average), TTFT p99 <= %s ms%s\n",
      r.model, r.hardware, r.rate, r.mean_input_tokens, Ms(r.ttft_p99_ms),
      r.ttft_p50_ms ? absl::StrCat(", p50 <= ", Ms(*r.ttft_p50_ms), " ms") : "");
  for (Parallelism kind : {Parallelism::kDwdp, Parallelism::kDep}) {
    std::vector<const SizingCandidate*> ranked;
    std::map<std::string, std::pair<int64_t, const SizingCandidate*>> failures;
    for (const SizingCandidate& c : r.candidates) {
      if (c.kind != kind) continue;
      if (c.gpus > 0) ranked.push_back(&c);
      if (!c.fail_kind.empty() && c.gpus == 0) {
        auto& f = failures[c.fail_kind];
        if (f.first++ == 0) f.second = &c;
      }
    }
    std::sort(ranked.begin(), ranked.end(), [](const SizingCandidate* a, const SizingCandidate* b) {
      return a->gpus != b->gpus ? a->gpus < b->gpus : a->max_rate_per_gpu > b->max_rate_per_gpu;
    });
    absl::StrAppend(&out, "\n", ParallelismName(kind),
                    ": the smallest deployments whose TTFT was simulated\n");
    TextTable table({"GPUs", "groups", "size", "recipe", "k", "owner", "MNT", "req/s/GPU",
                     "sat tok/s/GPU", "fwd p50", "fwd p99", "TTFT p50", "TTFT p99", ""});
    for (size_t i = 0; i < ranked.size() && i < 10; ++i) {
      const SizingCandidate& c = *ranked[i];
      const bool pick =
          (kind == Parallelism::kDwdp ? r.best_dwdp : r.best_dep) &&
          &r.candidates[*(kind == Parallelism::kDwdp ? r.best_dwdp : r.best_dep)] == &c;
      table.AddRow({absl::StrCat(c.gpus), absl::StrCat(c.groups), absl::StrCat(c.group_size),
                    Recipe(c),
                    c.kind == Parallelism::kDwdp ? absl::StrCat(c.dwdp.num_buffers) : "-", Owner(c),
                    absl::StrCat(c.max_num_tokens), absl::StrFormat("%.3g", c.max_rate_per_gpu),
                    absl::StrFormat("%.0f", c.saturated_tokens_per_s_per_gpu),
                    Ms(c.saturated_forward_p50_ms), Ms(c.saturated_forward_p99_ms),
                    Ms(c.at_rate.p50_ms), Ms(c.at_rate.p99_ms), pick ? "<- pick" : ""});
    }
    absl::StrAppend(&out, ranked.empty() ? "  none\n" : table.Render({0, 1, 2}));
    for (const auto& [kind_name, f] : failures) {
      absl::StrAppend(&out, absl::StrFormat("  %d fail on %s, e.g. %s: %s\n", f.first, kind_name,
                                            f.second->Label(), f.second->fail));
    }
  }
  absl::StrAppend(
      &out,
      absl::StrFormat("\nTTFT from %d request-level DES runs of one group each.\n", r.des_runs));
  if (!r.recommendation.empty()) absl::StrAppend(&out, "\nrecommended: ", r.recommendation, "\n");
  return out;
}

std::string SizingToCsv(const SizingResult& r) {
  std::string out =
      "kind,group_size,num_experts_per_worker,num_prefetch_experts,num_buffers,owner,"
      "max_num_tokens,fits,copy_pricing,weights_bytes_per_gpu,kv_tokens,"
      "closed_form_tokens_per_s_per_gpu,saturated_tokens_per_s_per_gpu,"
      "saturated_forward_p50_ms,saturated_forward_p99_ms,copy_ns_per_layer,evaluated,"
      "max_rate_per_gpu,groups,gpus,ttft_p50_ms,ttft_p99_ms,fail_kind,fail\n";
  for (const SizingCandidate& c : r.candidates) {
    const bool dwdp = c.kind == Parallelism::kDwdp;
    absl::StrAppend(
        &out, absl::StrFormat(
                  "%s,%d,%s,%s,%s,%s,%d,%d,%s,%d,%d,%.1f,%.1f,%.3f,%.3f,%.0f,%d,%.6g,%d,%d,%s,"
                  "%s,%s,%s\n",
                  ParallelismName(c.kind), c.group_size,
                  dwdp ? absl::StrCat(c.dwdp.num_experts_per_worker) : "",
                  dwdp ? absl::StrCat(c.dwdp.num_prefetch_experts) : "",
                  dwdp ? absl::StrCat(c.dwdp.num_buffers) : "",
                  dwdp ? OwnerPolicyName(c.dwdp.owner) : "", c.max_num_tokens, c.fits ? 1 : 0,
                  dwdp ? CopyPricingName(c.dwdp.copy_pricing) : "", c.weights_bytes_per_gpu,
                  c.kv_tokens, c.closed_form_tokens_per_s_per_gpu, c.saturated_tokens_per_s_per_gpu,
                  c.saturated_forward_p50_ms, c.saturated_forward_p99_ms, c.copy_ns_per_layer,
                  c.evaluated ? 1 : 0, c.max_rate_per_gpu, c.groups, c.gpus,
                  c.gpus > 0 ? absl::StrFormat("%.3f", c.at_rate.p50_ms) : "",
                  c.gpus > 0 ? absl::StrFormat("%.3f", c.at_rate.p99_ms) : "", c.fail_kind,
                  Quote(c.fail)));
  }
  return out;
}

std::string ParetoToCsv(const SizingResult& r) {
  std::string out = "kind,label,tokens_per_s_per_gpu,ttft_p99_ms,ttft_p50_ms,on_front\n";
  for (size_t i = 0; i < r.pareto.size(); ++i) {
    const ParetoPoint& p = r.pareto[i];
    absl::StrAppend(&out, absl::StrFormat("%s,%s,%.1f,%.3f,%.3f,%d\n", ParallelismName(p.kind),
                                          Quote(p.label), p.tokens_per_s_per_gpu, p.ttft_p99_ms,
                                          p.ttft_p50_ms, r.on_front[i] ? 1 : 0));
  }
  return out;
}

nlohmann::json SizingToJson(const SizingResult& r) {
  nlohmann::json dwdp = nlohmann::json::array();
  nlohmann::json dep = nlohmann::json::array();
  for (const SizingCandidate& c : r.candidates) {
    (c.kind == Parallelism::kDwdp ? dwdp : dep).push_back(CandidateJson(c));
  }
  nlohmann::json pareto = nlohmann::json::array();
  for (size_t i = 0; i < r.pareto.size(); ++i) {
    const ParetoPoint& p = r.pareto[i];
    pareto.push_back({{"kind", ParallelismName(p.kind)},
                      {"label", p.label},
                      {"tokens_per_s_per_gpu", p.tokens_per_s_per_gpu},
                      {"ttft_p99_ms", p.ttft_p99_ms},
                      {"ttft_p50_ms", p.ttft_p50_ms},
                      {"on_front", static_cast<bool>(r.on_front[i])}});
  }
  nlohmann::json out = {
      {"model", r.model}, {"hardware", r.hardware}, {"candidates", dwdp}, {"dep_candidates", dep}};
  out["recommended"] =
      r.best_dwdp ? CandidateJson(r.candidates[*r.best_dwdp]) : nlohmann::json(nullptr);
  out["recommended_dep"] =
      r.best_dep ? CandidateJson(r.candidates[*r.best_dep]) : nlohmann::json(nullptr);
  out["sizing"] = {{"rate_requests_per_s", r.rate},
                   {"mean_input_tokens", r.mean_input_tokens},
                   {"input_lengths", LengthDistributionName(r.lengths.distribution)},
                   {"ttft_p99_ms", r.ttft_p99_ms},
                   {"des_runs", r.des_runs},
                   {"ttft_model", "request-level discrete-event simulation of one group"},
                   {"recommendation", r.recommendation},
                   {"pareto", pareto}};
  if (r.ttft_p50_ms) out["sizing"]["ttft_p50_ms"] = *r.ttft_p50_ms;
  return out;
}

}  // namespace dwdp
