#pragma once

// Sizing: how many context GPUs a traffic of R requests/s with given input lengths needs to
// keep its time to first token (TTFT) under a target, with DWDP (num_groups × dwdp_size,
// recipe, slots, owner policy) and with DEP (groups × ep_size) on the same GPUs, and why the
// other configurations lose.
//
// The pieces:
// * Input lengths: a distribution (fixed, uniform, lognormal by mean and CV, or a file), drawn
//   with a fixed seed so every configuration sees the same requests.
// * Packing: a rank serves its queue first come first served, up to max_num_tokens (MNT) per
//   forward, cutting a long request into chunks (chunked prefill). A forward's cost comes from
//   its real token count and the context its tokens attend to, not from a CV formula.
// * DEP ranks run in lockstep: every MoE layer's all-to-alls wait for the rank whose attention
//   ends last and move the largest rank's tokens (DepForwardSampled). DWDP ranks run on their
//   own: each pays its own compute and its own copy stall (the planner's group copy model, as
//   an effective copy time per layer of the slowest rank).
// * TTFT comes from a request-level discrete-event simulation (DES) of one group: Poisson
//   arrivals, a router that sends each request to the rank with the fewest outstanding tokens,
//   the packing above, and the forward times of the perf model. It reproduces the M/D/1 queue
//   exactly where that applies (tests/sizing_test.cc).
// * Capacity: the largest request rate per GPU whose TTFT p99 (and p50) meets the targets, by
//   bisection over DES runs; groups = ceil(R / (rate per GPU · group size)).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/scenario.h"
#include "core/plan/planner.h"

namespace dwdp {

// Deterministic draws from an input-length distribution.
class LengthSampler {
 public:
  LengthSampler(const InputLengths& lengths, uint64_t seed);
  int64_t Next();
  double mean() const { return mean_; }
  int64_t longest() const { return longest_; }  // the longest length a draw can give

 private:
  double Uniform();  // (0, 1)
  InputLengths lengths_;
  uint64_t state_;
  double mean_ = 0;
  int64_t longest_ = 0;
  double mu_ = 0;
  double sigma_ = 0;
};

// The scenario's input lengths (workload.isl, or every request sequence_length long); an error
// says what is missing or empty.
absl::StatusOr<InputLengths> WorkloadInputLengths(const Workload& workload);

// The tokens of one forward on one rank and the context they attend to (Σ over its tokens of
// the number of tokens each sees, causal: token j of a request sees j + 1).
struct ForwardLoad {
  int64_t tokens = 0;
  double attended = 0;
  // The perf model's shape: T tokens of sequences whose mean attended context (S + 1) / 2
  // equals this load's.
  ForwardShape shape() const;
};

enum class Parallelism { kDwdp, kDep };
const char* ParallelismName(Parallelism p);

struct SizingRequest {
  double rate = 0;              // requests/s (tokens/s of input when rate_in_tokens)
  bool rate_in_tokens = false;  //
  double ttft_p99_ms = 0;
  std::optional<double> ttft_p50_ms;
  std::vector<int64_t> max_num_tokens;  // MNT sweep; empty: workload.max_num_tokens or tokens
  std::vector<OwnerPolicy> owners;      // DWDP owner policies; empty: lowest and balanced
  int64_t max_gpus = 0;                 // 0: no limit
  int64_t requests = 2000;              // requests per DES run (after a tenth as warm-up)
  uint64_t seed = 1;
  PlanOptions plan;  // DWDP sizes, recipes, slots, copy schedule (owners above win)
};

// The TTFT a DES run measured.
struct TtftStats {
  double p50_ms = 0;
  double p99_ms = 0;
  double mean_ms = 0;
  double forward_p50_ms = 0;  // the group's forwards (DEP) or the ranks' (DWDP)
  double forward_p99_ms = 0;
  double tokens_per_s_per_gpu = 0;  // input tokens served per second and GPU
  bool stable = true;               // false: the queue grew without bound (rate too high)
};

struct SizingCandidate {
  Parallelism kind = Parallelism::kDwdp;
  int64_t group_size = 0;  // dwdp_size or ep_size
  int64_t max_num_tokens = 0;
  // DWDP: the planner's candidate at (MNT, the packed forwards' typical context).
  PlanCandidate dwdp;
  double copy_ns_per_layer = 0;  // DWDP: effective copy time of the slowest rank
  // Memory.
  bool fits = false;
  std::string fit_note;
  uint64_t weights_bytes_per_gpu = 0;
  uint64_t kv_tokens = 0;
  // Saturated (every rank always has work): sampled from the packing, and the closed form of
  // one forward at MNT tokens of the typical context (DEP with workload.tokens_cv).
  double saturated_tokens_per_s_per_gpu = 0;
  double saturated_forward_p50_ms = 0;
  double saturated_forward_p99_ms = 0;
  double closed_form_tokens_per_s_per_gpu = 0;
  // Sizing.
  bool evaluated = false;       // the DES ran (else pruned: it cannot beat the pick)
  double max_rate_per_gpu = 0;  // requests/s per GPU within the TTFT targets (0: none)
  double min_ttft_p99_ms = 0;   // TTFT p99 at a light load (2% of saturation)
  int64_t groups = 0;
  int64_t gpus = 0;           // groups × group_size for the requested rate (0: none)
  TtftStats at_rate;          // TTFT of that deployment at the requested rate
  std::string fail;           // why it is not a deployment: memory / ttft / rate / ...
  std::string fail_kind;      // "memory", "ttft", "rate", "copy" or "" (a deployment)
  std::string Label() const;  // "DWDP d=8 32/32 k=2 MNT 16384" / "DEP ep=8 MNT 16384"
};

struct ParetoPoint {
  Parallelism kind = Parallelism::kDwdp;
  std::string label;
  double tokens_per_s_per_gpu = 0;
  double ttft_p99_ms = 0;
  double ttft_p50_ms = 0;
};

struct SizingResult {
  std::string model;
  std::string hardware;
  double rate = 0;  // requests/s
  double mean_input_tokens = 0;
  InputLengths lengths;
  double ttft_p99_ms = 0;
  std::optional<double> ttft_p50_ms;
  std::vector<SizingCandidate> candidates;
  std::optional<size_t> best_dwdp;  // index into candidates
  std::optional<size_t> best_dep;
  std::vector<ParetoPoint> pareto;  // every DES run, then marked on the front
  std::vector<bool> on_front;
  std::string recommendation;  // one paragraph
  int64_t des_runs = 0;
};

// Errors (one sentence, InvalidArgument): a rate that is not positive, a TTFT target that is
// not positive, an empty length file, no configuration that fits, or no configuration that
// meets the TTFT target at any load (FailedPrecondition, with the best TTFT reachable).
absl::StatusOr<SizingResult> SizeDeployment(const Scenario& scenario, const SizingRequest& request);

// One DES run of one candidate at `rate_per_gpu` requests/s per GPU (tests, --simulate).
absl::StatusOr<TtftStats> SimulateTtft(const Scenario& scenario, const SizingCandidate& candidate,
                                       double rate_per_gpu, int64_t requests, uint64_t seed);

}  // namespace dwdp
