#include "core/plan/plan_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

std::string Ratio(double r) { return absl::StrFormat("%.2f", r); }

std::string Tokens(uint64_t t) {
  if (t >= 1000000) return absl::StrFormat("%.2fM", static_cast<double>(t) / 1e6);
  if (t >= 10000) return absl::StrFormat("%.0fK", static_cast<double>(t) / 1e3);
  return absl::StrCat(t);
}

std::string Dependencies(const Plan& plan) {
  std::vector<std::string> assumed;
  std::vector<std::string> other;
  for (const ProfileDependency& d : plan.depends_on) {
    (d.source == Provenance::kAssumed ? assumed : other)
        .push_back(absl::StrCat(d.name, " (", ProvenanceName(d.source), ")"));
  }
  std::string out;
  if (!assumed.empty()) absl::StrAppend(&out, "assumed: ", absl::StrJoin(assumed, ", "), "\n");
  if (!other.empty()) absl::StrAppend(&out, "also uses: ", absl::StrJoin(other, ", "), "\n");
  return out;
}

}  // namespace

bool MoeComputeMeasured(const Plan& plan) {
  for (const ProfileDependency& d : plan.depends_on) {
    if (d.name == "moe_compute") return true;
  }
  return false;
}

std::string MoeComputeSourceLine(const Plan& plan) {
  return MoeComputeMeasured(plan)
             ? "routed-MoE compute: measured (the profile's moe_compute table for this shape, "
               "interpolated in tokens per rank)\n"
             : "routed-MoE compute: roofline (the profile's compute_efficiency and "
               "memory_efficiency; it has no moe_compute table for this shape)\n";
}

std::string PlanToText(const Plan& plan, const std::vector<RecommendationResult>& recommendations) {
  std::string out = absl::StrFormat("capacity plan: %s on %s (%s per GPU), %s copy schedule\n",
                                    plan.model, plan.hardware, FormatBytes(plan.hbm_bytes),
                                    ContentionModeName(plan.contention));
  absl::StrAppend(&out, MoeComputeSourceLine(plan));
  for (const PlanWorkloadPoint& w : plan.workloads) {
    absl::StrAppend(&out, absl::StrFormat("\n%d tokens per rank, sequence length %d\n",
                                          w.tokens_per_rank, w.sequence_length));
    TextTable table({"d", "recipe", "owner", "k", "fits", "weights/GPU", "KV/GPU", "KV tokens",
                     "copies", "copy/layer", "compute/layer", "stall/layer", "forward",
                     "DEP forward", "DEP/DWDP"});
    for (const PlanCandidate& c : plan.candidates) {
      if (c.tokens_per_rank != w.tokens_per_rank || c.sequence_length != w.sequence_length) {
        continue;
      }
      // How the copies were priced: a Latin square (exact), the fluid model of shared sources
      // (with "?" when its runs disagree by more than 10%), or a bound (hot source, or no fit).
      std::string copies = c.copy_pricing == CopyPricing::kLatinSquare ? "latin"
                           : c.copy_pricing == CopyPricing::kFluid     ? "fluid"
                           : c.copy_pricing == CopyPricing::kBound     ? "bound"
                                                                       : "deferred";
      if (c.unstable) copies += "?";
      if (c.copy_pricing == CopyPricing::kBound && c.max_served_experts > 0 &&
          static_cast<double>(c.max_served_experts) > 1.25 * c.mean_served_experts) {
        copies = absl::StrFormat("hot r%d", c.hottest_rank);
      }
      table.AddRow({absl::StrCat(c.dwdp_size),
                    absl::StrCat(c.num_experts_per_worker, "/", c.num_prefetch_experts),
                    c.overlap > 0 ? OwnerPolicyName(c.owner) : "-", absl::StrCat(c.num_buffers),
                    c.fits ? "yes" : "no", FormatBytes(c.weights_bytes_per_gpu),
                    FormatBytes(c.kv_bytes_per_gpu), Tokens(c.kv_tokens), copies,
                    FormatNanos(c.prefetch_ns_per_layer), FormatNanos(c.compute_ns_per_layer),
                    FormatNanos(c.stall_ns_per_layer), FormatNanos(c.forward_ns),
                    FormatNanos(c.dep_forward_ns), Ratio(c.dwdp_over_dep)});
    }
    absl::StrAppend(&out, table.Render({0, 1, 2, 4, 8}));
    for (const RecommendationResult& r : recommendations) {
      if (r.workload.tokens_per_rank != w.tokens_per_rank ||
          r.workload.sequence_length != w.sequence_length) {
        continue;
      }
      if (!r.recommendation) {
        absl::StrAppend(&out, "recommended: none; ", r.none_reason, "\n");
        continue;
      }
      absl::StrAppend(&out, "recommended:\n");
      for (const std::string& line : r.recommendation->reasons) {
        absl::StrAppend(&out, "  ", line, "\n");
      }
    }
  }
  absl::StrAppend(&out, "\n", Dependencies(plan));
  return out;
}

std::string PlanToCsv(const Plan& plan) {
  std::string out =
      "dwdp_size,num_experts_per_worker,num_prefetch_experts,overlap,num_buffers,"
      "tokens_per_rank,sequence_length,fits,weights_bytes_per_gpu,local_expert_bytes,"
      "pool_bytes,non_moe_bytes,activation_bytes,kv_bytes_per_gpu,kv_tokens,vmm_mappings,"
      "prefetch_bytes_per_layer,prefetch_ns_per_layer,compute_ns_per_layer,"
      "stall_ns_per_layer,forward_ns,dep_forward_ns,dwdp_over_dep,tokens_per_s_per_gpu,owner,"
      "copy_pricing,forward_min_ns,forward_low_ns,forward_high_ns,unstable,"
      "closed_form_forward_ns,max_served_experts,mean_served_experts,hottest_rank,"
      "copies_per_layer,recommendable\n";
  for (const PlanCandidate& c : plan.candidates) {
    absl::StrAppend(
        &out,
        absl::StrFormat("%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%.0f,%.0f,%.0f,%.0f,"
                        "%.0f,%.4f,%.1f\n",
                        c.dwdp_size, c.num_experts_per_worker, c.num_prefetch_experts, c.overlap,
                        c.num_buffers, c.tokens_per_rank, c.sequence_length, c.fits ? 1 : 0,
                        c.weights_bytes_per_gpu, c.local_expert_bytes, c.pool_bytes,
                        c.non_moe_bytes, c.activation_bytes, c.kv_bytes_per_gpu, c.kv_tokens,
                        c.vmm_mappings, c.prefetch_bytes_per_layer, c.prefetch_ns_per_layer,
                        c.compute_ns_per_layer, c.stall_ns_per_layer, c.forward_ns,
                        c.dep_forward_ns, c.dwdp_over_dep, c.tokens_per_s_per_gpu));
    out.pop_back();  // the newline: the copy model's columns follow
    absl::StrAppend(
        &out,
        absl::StrFormat(",%s,%s,%.0f,%.0f,%.0f,%d,%.0f,%d,%.1f,%d,%d,%d\n",
                        OwnerPolicyName(c.owner), CopyPricingName(c.copy_pricing), c.forward_min_ns,
                        c.forward_low_ns, c.forward_high_ns, c.unstable ? 1 : 0,
                        c.closed_form_forward_ns, c.max_served_experts, c.mean_served_experts,
                        c.hottest_rank, c.copies_per_layer, Recommendable(c) ? 1 : 0));
  }
  return out;
}

nlohmann::json CandidateToJson(const PlanCandidate& c) {
  nlohmann::json j = {{"dwdp_size", c.dwdp_size},
                      {"num_experts_per_worker", c.num_experts_per_worker},
                      {"num_prefetch_experts", c.num_prefetch_experts},
                      {"overlap", c.overlap},
                      {"num_buffers", c.num_buffers},
                      {"tokens_per_rank", c.tokens_per_rank},
                      {"sequence_length", c.sequence_length},
                      {"fits", c.fits},
                      {"weights_bytes_per_gpu", c.weights_bytes_per_gpu},
                      {"local_expert_bytes", c.local_expert_bytes},
                      {"pool_bytes", c.pool_bytes},
                      {"non_moe_bytes", c.non_moe_bytes},
                      {"activation_bytes", c.activation_bytes},
                      {"kv_bytes_per_gpu", c.kv_bytes_per_gpu},
                      {"kv_tokens", c.kv_tokens},
                      {"kv_tokens_needed", c.kv_tokens_needed},
                      {"vmm_mappings", c.vmm_mappings},
                      {"prefetch_bytes_per_layer", c.prefetch_bytes_per_layer},
                      {"prefetch_ns_per_layer", c.prefetch_ns_per_layer},
                      {"compute_ns_per_layer", c.compute_ns_per_layer},
                      {"stall_ns_per_layer", c.stall_ns_per_layer},
                      {"forward_ns", c.forward_ns},
                      {"dep_forward_ns", c.dep_forward_ns},
                      {"dwdp_over_dep", c.dwdp_over_dep},
                      {"tokens_per_s_per_gpu", c.tokens_per_s_per_gpu},
                      {"owner", OwnerPolicyName(c.owner)},
                      {"copy_pricing", CopyPricingName(c.copy_pricing)},
                      {"forward_min_ns", c.forward_min_ns},
                      {"forward_low_ns", c.forward_low_ns},
                      {"forward_high_ns", c.forward_high_ns},
                      {"unstable", c.unstable},
                      {"closed_form_forward_ns", c.closed_form_forward_ns},
                      {"max_served_experts", c.max_served_experts},
                      {"mean_served_experts", c.mean_served_experts},
                      {"hottest_rank", c.hottest_rank},
                      {"copies_per_layer", c.copies_per_layer},
                      {"recommendable", Recommendable(c)}};
  if (!c.fits) j["fit_note"] = c.fit_note;
  if (const std::string why = NotRecommendableReason(c); c.fits && !why.empty()) {
    j["not_recommended"] = why;
  }
  return j;
}

nlohmann::json PlanToJson(const Plan& plan,
                          const std::vector<RecommendationResult>& recommendations) {
  nlohmann::json candidates = nlohmann::json::array();
  for (const PlanCandidate& c : plan.candidates) candidates.push_back(CandidateToJson(c));
  nlohmann::json deps = nlohmann::json::array();
  for (const ProfileDependency& d : plan.depends_on) {
    deps.push_back({{"name", d.name}, {"value", d.value}, {"source", ProvenanceName(d.source)}});
  }
  nlohmann::json recs = nlohmann::json::array();
  for (const RecommendationResult& r : recommendations) {
    nlohmann::json entry = {{"tokens_per_rank", r.workload.tokens_per_rank},
                            {"sequence_length", r.workload.sequence_length}};
    if (r.recommendation) {
      entry["candidate"] = CandidateToJson(r.recommendation->candidate);
      entry["reasons"] = r.recommendation->reasons;
    } else {
      entry["candidate"] = nullptr;
      entry["reason"] = r.none_reason;
    }
    recs.push_back(std::move(entry));
  }
  nlohmann::json out = {{"model", plan.model},
                        {"hardware", plan.hardware},
                        {"contention", ContentionModeName(plan.contention)},
                        {"hbm_bytes", plan.hbm_bytes},
                        {"moe_compute", MoeComputeMeasured(plan) ? "measured" : "roofline"},
                        {"depends_on", deps},
                        {"candidates", candidates}};
  out["recommended"] = nullptr;
  if (!recommendations.empty() && recommendations.front().recommendation) {
    out["recommended"] = CandidateToJson(recommendations.front().recommendation->candidate);
    out["recommended"]["reasons"] = recommendations.front().recommendation->reasons;
  }
  if (!recommendations.empty()) out["recommendations"] = recs;
  return out;
}

}  // namespace dwdp
