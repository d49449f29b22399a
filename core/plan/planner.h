#pragma once

// Capacity planner: sweeps DWDP group sizes, recipes, slot counts and workload points for one
// model on one platform, and says per candidate whether it fits in device memory, how much KV
// cache is left, whether the copy of the remote experts hides behind compute, and how it
// compares with DEP (expert parallelism with all-to-all) on the same GPUs.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/scenario.h"
#include "core/perf/perf_model.h"

namespace dwdp {

struct PlanOptions {
  int64_t min_dwdp_size = 2;
  // 0: the platform's NVLink domain (hardware.nvlink_domain), capped at the expert count.
  int64_t max_dwdp_size = 0;
  // Only these sizes when non-empty (still within [2, NVLink domain]).
  std::vector<int64_t> dwdp_sizes;
  // false: only the least-overlap recipe of each size; true: every valid recipe.
  bool all_recipes = false;
  std::vector<int64_t> num_buffers = {2, 3, 4};
  // Workload points; empty: the scenario's workload value. A zero tokens_per_rank means one
  // sequence of the point's sequence_length per rank.
  std::vector<int64_t> tokens_per_rank;
  std::vector<int64_t> sequence_lengths;
  // The copy schedule whose estimate the planner uses (default: the scenario's).
  std::optional<ContentionMode> contention;
  // Owner policies to sweep (default: the scenario's dwdp.owner).
  std::vector<OwnerPolicy> owners;
  // Threads that evaluate candidates (0: one per core); the plan is the same for any count.
  int64_t threads = 0;
  // Leave the fluid copy model for later (CopyPricing::kDeferred): the sizing search prices a
  // candidate only when it could be the pick.
  bool defer_fluid = false;
  // Coefficient of variation of per-rank tokens for DEP's synchronisation term (default: the
  // scenario's workload.tokens_cv).
  std::optional<double> tokens_cv;
};

// How a candidate's copies were priced (core/perf/copy_flow.h).
enum class CopyPricing {
  kLatinSquare,  // every rank reads a different source at every moment: exact
  kFluid,        // the ranks share sources: the fluid pipeline of the whole group
  kBound,        // not simulated (never recommended): the larger of the uncontended copy and the
                 // hottest source's egress time, for a candidate that waits on one hot source or
                 // does not fit
  kDeferred,     // not priced yet: the forward without contention stands for it (a lower
                 // bound); EvaluateCandidate prices it
};
const char* CopyPricingName(CopyPricing p);

struct PlanCandidate {
  int64_t dwdp_size = 0;
  OwnerPolicy owner = OwnerPolicy::kLowest;
  int64_t num_experts_per_worker = 0;
  int64_t num_prefetch_experts = 0;
  int64_t overlap = 0;
  int64_t num_buffers = 0;
  int64_t tokens_per_rank = 0;
  int64_t sequence_length = 0;

  // Memory per GPU (bytes). weights = local experts + pool + replicated non-MoE weights.
  uint64_t local_expert_bytes = 0;  // Σ mnnvl_size over weights × MoE layers (largest rank)
  uint64_t pool_bytes = 0;          // k slots × slot pages × pool page bytes (largest rank)
  uint64_t non_moe_bytes = 0;
  uint64_t weights_bytes_per_gpu = 0;
  uint64_t activation_bytes = 0;
  uint64_t kv_bytes_per_gpu = 0;  // device memory left for KV cache (0 when over)
  uint64_t kv_tokens = 0;         // tokens of KV that fit in kv_bytes_per_gpu
  uint64_t kv_tokens_needed = 0;  // max(tokens_per_rank, sequence_length)
  // VMM mappings per process: per (MoE layer, weight) every pool page, the local handle and a
  // whole-handle view of each of the d − 1 peers. GB200 allows about 130K (max_mappings).
  uint64_t vmm_mappings = 0;
  bool fits = false;
  std::string fit_note;  // why it does not fit (empty when it does)

  // Per MoE layer.
  uint64_t prefetch_bytes_per_layer = 0;
  double prefetch_ns_per_layer = 0;
  double compute_ns_per_layer = 0;  // one MoE layer's compute, copy slowdown included
  // Mean exposed wait for the copy over the MoE layers, from the slot pipeline's recurrence
  // (DwdpForward): steady state max(0, copy − layer) whatever k, plus what prime leaves exposed.
  double stall_ns_per_layer = 0;

  double forward_ns = 0;  // the slowest rank's forward
  // Copy pricing from the real owner map and schedule (core/perf/copy_flow.h).
  CopyPricing copy_pricing = CopyPricing::kLatinSquare;
  double forward_min_ns = 0;   // the fastest rank's forward
  double forward_low_ns = 0;   // fluid: the slowest rank in the lowest of the perturbed runs
  double forward_high_ns = 0;  // ... and in the highest
  bool unstable = false;       // fluid runs more than 10% apart: not predictable, not recommended
  double closed_form_forward_ns = 0;  // the per-rank closed form (EstimateLayerCopy, DwdpForward)
  // Egress per MoE layer, in experts: the most any rank serves and the mean over the ranks.
  int64_t max_served_experts = 0;
  double mean_served_experts = 0;
  int64_t hottest_rank = 0;
  int64_t copies_per_layer = 0;  // the most copies any rank issues per layer
  double dep_forward_ns = 0;
  double dwdp_over_dep = 0;         // DEP time / DWDP time (> 1: DWDP faster)
  double tokens_per_s_per_gpu = 0;  // tokens_per_rank / forward time
};

struct PlanWorkloadPoint {
  int64_t tokens_per_rank = 0;
  int64_t sequence_length = 0;
};

struct Plan {
  std::string model;
  std::string hardware;
  ContentionMode contention = ContentionMode::kRotate;
  uint64_t hbm_bytes = 0;
  std::vector<PlanWorkloadPoint> workloads;
  std::vector<PlanCandidate> candidates;  // by workload point, dwdp_size, recipe, num_buffers
  std::vector<ProfileDependency> depends_on;
};

// Errors: a model without experts, weights or MoE layers; a profile without memory, bandwidth
// or peak rates; no workload point; an option out of range. Every message says what to set.
absl::StatusOr<Plan> PlanCapacity(const Scenario& scenario, const PlanOptions& options);

// Evaluates one (d, recipe, k, workload) point with the scenario's owner policy; the building
// block of PlanCapacity.
absl::StatusOr<PlanCandidate> EvaluateCandidate(const Scenario& scenario, int64_t dwdp_size,
                                                int64_t num_experts_per_worker,
                                                int64_t num_prefetch_experts, int64_t num_buffers,
                                                const PlanWorkloadPoint& workload,
                                                ContentionMode contention, double tokens_cv);
// The same candidate priced in full (a kDeferred one gets its fluid run), with its own owner.
absl::StatusOr<PlanCandidate> PriceCandidate(const Scenario& scenario, const PlanCandidate& c,
                                             ContentionMode contention, double tokens_cv);

// True when Recommend may pick the candidate: it fits, and its copies were priced by the Latin
// square or a stable fluid run (a hot-source estimate or an unstable run is shown, not picked).
bool Recommendable(const PlanCandidate& c);
std::string NotRecommendableReason(const PlanCandidate& c);  // empty when recommendable

enum class PlanObjective {
  kThroughput,  // most tokens/s per GPU among candidates that fit
  kSmallest,    // the smallest group that fits (then the fastest of it)
};

struct Recommendation {
  PlanCandidate candidate;
  std::vector<std::string> reasons;  // a few lines for people
};

// The best candidate that fits, for one workload point; nullopt (with the reason) when none
// fits. Ties within 1% of throughput go to the smaller group, then fewer slots (less memory).
struct RecommendationResult {
  PlanWorkloadPoint workload;
  std::optional<Recommendation> recommendation;
  std::string none_reason;
};
std::vector<RecommendationResult> Recommend(const Plan& plan, PlanObjective objective);

}  // namespace dwdp
