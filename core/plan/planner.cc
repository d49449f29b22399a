#include "core/plan/planner.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <thread>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "core/perf/copy_flow.h"
#include "core/perf/layer_times.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

absl::Status CheckInputs(const Scenario& scenario) {
  const ModelSpec& m = scenario.model;
  const HardwareProfile& hw = scenario.hardware;
  if (m.num_experts < 2) {
    return absl::InvalidArgumentError(absl::StrCat("the model has ", m.num_experts,
                                                   " routed experts; planning needs at least 2"));
  }
  if (m.weights.empty() || m.expert_bytes() == 0) {
    return absl::InvalidArgumentError(
        "the model lists no DWDP-managed weights (model.weights); the planner needs their "
        "bytes per expert");
  }
  if (m.moe_layers.empty()) {
    return absl::InvalidArgumentError("the model has no MoE layers (model.moe_layers)");
  }
  if (m.top_k < 1 || m.hidden_size < 1 || m.moe_intermediate_size < 1) {
    return absl::InvalidArgumentError(
        "the model needs top_k, hidden_size and moe_intermediate_size of at least 1");
  }
  if (hw.hbm_bytes.value <= 0 || hw.hbm_bw.value <= 0 || hw.peer_copy_bw.value <= 0 ||
      PeakFlops(hw, m.expert_dtype).value <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hardware profile '", hw.name,
        "' lacks hbm_bytes, hbm_bw, peer_copy_bw or a peak FLOP rate; the planner needs all four"));
  }
  if (hw.granularity.value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hardware profile '", hw.name, "' has no VMM granularity"));
  }
  return absl::OkStatus();
}

uint64_t ToBytes(double value) {
  if (!(value > 0)) return 0;
  if (value >= static_cast<double>(std::numeric_limits<uint64_t>::max())) {
    return std::numeric_limits<uint64_t>::max();
  }
  return static_cast<uint64_t>(value);
}

std::vector<PlanWorkloadPoint> WorkloadPoints(const Scenario& scenario, const PlanOptions& opts) {
  std::vector<int64_t> lengths = opts.sequence_lengths;
  if (lengths.empty()) lengths.push_back(scenario.workload.sequence_length);
  std::vector<int64_t> tokens = opts.tokens_per_rank;
  if (tokens.empty()) tokens.push_back(scenario.workload.tokens_per_rank);
  std::vector<PlanWorkloadPoint> points;
  for (int64_t s : lengths) {
    for (int64_t t : tokens) {
      // No token count: one sequence per rank (the usual context-server batch at long ISL).
      PlanWorkloadPoint p{t > 0 ? t : s, s};
      const bool seen = std::any_of(points.begin(), points.end(), [&](const PlanWorkloadPoint& q) {
        return q.tokens_per_rank == p.tokens_per_rank && q.sequence_length == p.sequence_length;
      });
      if (!seen) points.push_back(p);
    }
  }
  return points;
}

}  // namespace

const char* CopyPricingName(CopyPricing p) {
  switch (p) {
    case CopyPricing::kLatinSquare:
      return "latin_square";
    case CopyPricing::kFluid:
      return "fluid";
    case CopyPricing::kBound:
      return "bound";
    case CopyPricing::kDeferred:
      return "deferred";
  }
  return "?";
}

namespace {

// A hot source at this multiple of the forward without contention is priced by its egress
// alone: such a candidate is never the pick, and the fluid run of a large group that waits on
// one rank costs the sweep most of its time.
constexpr double kHotSourceCut = 1.25;

struct CandidateSpec {
  int64_t dwdp_size = 0;
  int64_t size = 0;
  int64_t stride = 0;
  int64_t num_buffers = 0;
  OwnerPolicy owner = OwnerPolicy::kLowest;
};

// The copies of one (d, recipe, owner, schedule), shared by every k and workload point.
using CopiesKey = std::tuple<int64_t, int64_t, OwnerPolicy>;
using CopiesCache = std::map<CopiesKey, GroupCopies>;

absl::StatusOr<PlanCandidate> Evaluate(const Scenario& scenario, const CandidateSpec& spec,
                                       const PlanWorkloadPoint& workload,
                                       const ContentionConfig& contention, double tokens_cv,
                                       const GroupCopies* shared_copies, bool defer_fluid) {
  const ModelSpec& model = scenario.model;
  const HardwareProfile& hw = scenario.hardware;
  const int64_t num_buffers = spec.num_buffers;
  if (num_buffers < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_buffers must be at least 2 (got ", num_buffers, ")"));
  }
  if (workload.tokens_per_rank < 1 || workload.sequence_length < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a workload point needs tokens_per_rank and sequence_length of at least 1 (got ",
        workload.tokens_per_rank, " and ", workload.sequence_length, ")"));
  }
  absl::StatusOr<Partition> partition =
      Partition::Create(spec.dwdp_size, spec.size, spec.stride, model.num_experts);
  if (!partition.ok()) return partition.status();
  absl::StatusOr<GroupLayout> layout =
      ComputeGroupLayout(*partition, model.weights, model.moe_layers, ToBytes(hw.granularity.value),
                         scenario.dwdp.pool_page_bytes, num_buffers, spec.owner);
  if (!layout.ok()) return layout.status();

  PlanCandidate c;
  c.dwdp_size = spec.dwdp_size;
  c.owner = spec.owner;
  c.num_experts_per_worker = spec.size;
  c.num_prefetch_experts = spec.stride;
  c.overlap = spec.size - spec.stride;
  c.num_buffers = num_buffers;
  c.tokens_per_rank = workload.tokens_per_rank;
  c.sequence_length = workload.sequence_length;
  // Memory of the most loaded rank: ranks with page-edge bytes hold a little more than others,
  // and a group fits only if every rank does.
  const uint64_t layers = static_cast<uint64_t>(layout->num_layers());
  for (const RankLayout& rank : layout->ranks) {
    uint64_t slot_pages = 0;
    for (uint64_t pages : rank.slot_pages) slot_pages += pages;
    c.local_expert_bytes = std::max(c.local_expert_bytes, rank.local_bytes_per_layer * layers);
    c.pool_bytes = std::max(c.pool_bytes, slot_pages * layout->pool_page_bytes);
  }
  c.non_moe_bytes = model.non_moe_bytes;
  c.weights_bytes_per_gpu = c.local_expert_bytes + c.pool_bytes + c.non_moe_bytes;
  const ForwardShape shape{workload.tokens_per_rank, workload.sequence_length};
  c.activation_bytes = ToBytes(ActivationBytes(model, shape));
  const uint64_t hbm = ToBytes(hw.hbm_bytes.value);
  const uint64_t used = c.weights_bytes_per_gpu + c.activation_bytes;
  c.kv_bytes_per_gpu = hbm > used ? hbm - used : 0;
  c.kv_tokens = model.kv_bytes_per_token > 0 ? c.kv_bytes_per_gpu / model.kv_bytes_per_token : 0;
  // The forward's own sequences must have their KV resident: T tokens of T/S sequences, or one
  // whole sequence when a chunk is shorter than it.
  c.kv_tokens_needed =
      model.kv_bytes_per_token > 0
          ? static_cast<uint64_t>(std::max(workload.tokens_per_rank, workload.sequence_length))
          : 0;
  uint64_t pool_pages_per_layer = 0;
  for (const RankLayout& rank : layout->ranks) {
    pool_pages_per_layer = std::max(pool_pages_per_layer, rank.pool_pages_per_layer);
  }
  c.vmm_mappings = layers * (pool_pages_per_layer +
                             model.weights.size() * static_cast<uint64_t>(spec.dwdp_size));
  const uint64_t max_mappings = ToBytes(hw.max_mappings.value);
  if (hbm <= used) {
    c.fit_note =
        absl::StrCat("weights and activations need ", FormatBytes(used), " of ", FormatBytes(hbm));
  } else if (c.kv_tokens < c.kv_tokens_needed) {
    c.fit_note = absl::StrCat("KV room for ", c.kv_tokens, " tokens, the forward needs ",
                              c.kv_tokens_needed);
  } else if (max_mappings > 0 && c.vmm_mappings > max_mappings) {
    c.fit_note = absl::StrCat(c.vmm_mappings, " VMM mappings exceed the limit of ", max_mappings);
  }
  c.fits = c.fit_note.empty();

  // Copies: the real plans of every rank, priced with the sources' egress shared.
  GroupCopies own_copies;
  if (shared_copies == nullptr) own_copies = GroupCopiesOf(*layout, contention);
  const GroupCopies& copies = shared_copies != nullptr ? *shared_copies : own_copies;
  Scenario at_point = scenario;
  at_point.workload.tokens_per_rank = workload.tokens_per_rank;
  at_point.workload.sequence_length = workload.sequence_length;
  const LayerTimes times = ComputeLayerTimes(at_point);
  PipelineCompute compute;
  compute.prelude_ns = times.prelude_ns;
  compute.pre_moe_ns = times.attention_ns.empty() ? 0.0 : times.attention_ns.front();
  compute.moe_ns = times.moe_ns.empty() ? 0.0 : times.moe_ns.front();
  compute.moe_read_bytes =
      static_cast<double>(model.num_experts) * static_cast<double>(model.expert_bytes());
  compute.moe_layers = static_cast<int64_t>(model.moe_layers.size());
  compute.num_buffers = num_buffers;

  const std::vector<int64_t> served = ServedExperts(*partition, spec.owner);
  int64_t total_served = 0;
  for (int64_t q = 0; q < spec.dwdp_size; ++q) {
    total_served += served[static_cast<size_t>(q)];
    if (served[static_cast<size_t>(q)] > c.max_served_experts) {
      c.max_served_experts = served[static_cast<size_t>(q)];
      c.hottest_rank = q;
    }
  }
  c.mean_served_experts = static_cast<double>(total_served) / static_cast<double>(spec.dwdp_size);
  c.copies_per_layer = copies.copies_max;
  c.prefetch_bytes_per_layer = copies.pulled_bytes_max;

  const CopyEstimate closed = EstimateLayerCopy(model, hw, spec.dwdp_size, spec.size, contention);
  const DwdpForwardEstimate closed_form =
      DwdpForward(model, hw, shape, num_buffers, closed.time_ns);
  c.closed_form_forward_ns = closed_form.forward_ns;
  c.compute_ns_per_layer = closed_form.moe_compute_ns;

  double uncontended = 0;
  for (int64_t r = 0; r < spec.dwdp_size; ++r) {
    uncontended = std::max(uncontended, UncontendedLayerCopyNs(copies, hw, r));
  }
  const double pair = hw.peer_copy_bw.value;
  const double egress =
      (hw.egress_bw.value > 0 ? hw.egress_bw.value : pair) *
      std::min(1.0,
               hw.egress_fanout_efficiency.value > 0 ? hw.egress_fanout_efficiency.value : 1.0);
  // The hottest source must serve every layer's copies of its experts: with several readers at
  // once it serves egress_bw x egress_fanout_efficiency in all.
  const double hot_layer_ns = egress > 0
                                  ? static_cast<double>(c.max_served_experts) *
                                        static_cast<double>(model.expert_bytes()) / egress * 1e9
                                  : 0.0;
  const double hot_forward_ns =
      compute.prelude_ns + static_cast<double>(compute.moe_layers) * hot_layer_ns;
  const double uncontended_forward_ns =
      DwdpForward(model, hw, shape, num_buffers, uncontended).forward_ns;
  if (!copies.latin_square &&
      (!c.fits || hot_forward_ns > kHotSourceCut * uncontended_forward_ns)) {
    c.copy_pricing = CopyPricing::kBound;
    c.forward_ns = c.forward_min_ns = c.forward_low_ns = c.forward_high_ns =
        std::max(hot_forward_ns, uncontended_forward_ns);
    c.prefetch_ns_per_layer = std::max(hot_layer_ns, uncontended);
    c.stall_ns_per_layer =
        std::max(0.0, c.prefetch_ns_per_layer - (compute.pre_moe_ns + compute.moe_ns));
  } else if (!copies.latin_square && defer_fluid) {
    // Priced when needed (sizing): meanwhile the forward without contention, which no fluid run
    // can beat.
    c.copy_pricing = CopyPricing::kDeferred;
    c.forward_ns = c.forward_min_ns = c.forward_low_ns = c.forward_high_ns = uncontended_forward_ns;
    c.prefetch_ns_per_layer = uncontended;
  } else {
    const GroupPipeline priced = PriceGroupPipeline(copies, hw, compute);
    const int64_t slowest = priced.slowest_rank();
    c.copy_pricing = priced.fluid ? CopyPricing::kFluid : CopyPricing::kLatinSquare;
    c.forward_ns = priced.slowest_forward_ns();
    c.forward_min_ns = *std::min_element(priced.forward_ns.begin(), priced.forward_ns.end());
    c.forward_low_ns = priced.fluid ? priced.forward_low_ns : c.forward_ns;
    c.forward_high_ns = priced.fluid ? priced.forward_high_ns : c.forward_ns;
    c.unstable = priced.unstable();
    c.prefetch_ns_per_layer = priced.copy_ns_per_layer[static_cast<size_t>(slowest)];
    c.stall_ns_per_layer = priced.stall_ns[static_cast<size_t>(slowest)] /
                           static_cast<double>(std::max<int64_t>(compute.moe_layers, 1));
  }
  c.dep_forward_ns = DepForward(model, hw, shape, spec.dwdp_size, tokens_cv).forward_ns;
  c.dwdp_over_dep = c.forward_ns > 0 ? c.dep_forward_ns / c.forward_ns : 0;
  c.tokens_per_s_per_gpu =
      c.forward_ns > 0 ? static_cast<double>(c.tokens_per_rank) / c.forward_ns * 1e9 : 0;
  return c;
}

}  // namespace

absl::StatusOr<PlanCandidate> PriceCandidate(const Scenario& scenario, const PlanCandidate& c,
                                             ContentionMode contention, double tokens_cv) {
  ContentionConfig contention_config = scenario.dwdp.contention;
  contention_config.mode = contention;
  return Evaluate(
      scenario,
      {c.dwdp_size, c.num_experts_per_worker, c.num_prefetch_experts, c.num_buffers, c.owner},
      {c.tokens_per_rank, c.sequence_length}, contention_config, tokens_cv, nullptr, false);
}

bool Recommendable(const PlanCandidate& c) { return NotRecommendableReason(c).empty(); }

std::string NotRecommendableReason(const PlanCandidate& c) {
  if (!c.fits) return c.fit_note;
  if (c.copy_pricing == CopyPricing::kDeferred) {
    return "its shared copy sources were not priced (a lower bound stands for its forward)";
  }
  if (c.copy_pricing == CopyPricing::kBound) {
    return absl::StrFormat(
        "rank %d serves %d expert copies per layer (%.0f on average): the group waits for its "
        "egress",
        c.hottest_rank, c.max_served_experts, c.mean_served_experts);
  }
  if (c.unstable) {
    return absl::StrFormat(
        "the ranks fall in and out of step: forwards from %s to %s in runs that differ by 5%% "
        "in the per-copy cost",
        FormatNanos(c.forward_low_ns), FormatNanos(c.forward_high_ns));
  }
  return "";
}

absl::StatusOr<PlanCandidate> EvaluateCandidate(const Scenario& scenario, int64_t dwdp_size,
                                                int64_t num_experts_per_worker,
                                                int64_t num_prefetch_experts, int64_t num_buffers,
                                                const PlanWorkloadPoint& workload,
                                                ContentionMode contention, double tokens_cv) {
  ContentionConfig contention_config = scenario.dwdp.contention;
  contention_config.mode = contention;
  return Evaluate(
      scenario,
      {dwdp_size, num_experts_per_worker, num_prefetch_experts, num_buffers, scenario.dwdp.owner},
      workload, contention_config, tokens_cv, nullptr, false);
}

absl::StatusOr<Plan> PlanCapacity(const Scenario& scenario, const PlanOptions& options) {
  if (absl::Status s = CheckInputs(scenario); !s.ok()) return s;
  const ModelSpec& model = scenario.model;
  const HardwareProfile& hw = scenario.hardware;

  // Every DWDP group stays inside one NVLink domain, and every rank needs at least one expert.
  const int64_t domain = static_cast<int64_t>(hw.nvlink_domain.value);
  if (domain < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hardware profile '", hw.name, "' has an NVLink domain of ", domain,
        " GPU(s); DWDP needs at least 2 GPUs connected by NVLink (set nvlink_domain)"));
  }
  const int64_t largest = std::min(
      {options.max_dwdp_size > 0 ? options.max_dwdp_size : domain, domain, model.num_experts});
  if (options.min_dwdp_size < 2 || options.min_dwdp_size > largest) {
    return absl::InvalidArgumentError(absl::StrCat("the smallest dwdp_size must be in [2, ",
                                                   largest, "] (got ", options.min_dwdp_size, ")"));
  }
  std::vector<int64_t> sizes;
  if (options.dwdp_sizes.empty()) {
    for (int64_t d = options.min_dwdp_size; d <= largest; ++d) sizes.push_back(d);
  } else {
    for (int64_t d : options.dwdp_sizes) {
      if (d < 2 || d > std::min(domain, model.num_experts)) {
        return absl::InvalidArgumentError(
            absl::StrCat("dwdp_size ", d, " is outside [2, ", std::min(domain, model.num_experts),
                         "]: a group must fit the ", domain, "-GPU NVLink domain of ", hw.name,
                         " and give every rank an expert"));
      }
      sizes.push_back(d);
    }
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  }
  if (options.num_buffers.empty()) {
    return absl::InvalidArgumentError("no num_buffers value to plan for");
  }
  for (int64_t k : options.num_buffers) {
    if (k < 2 || k > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("num_buffers must be in [2, 64] (got ", k, ")"));
    }
  }

  Plan plan;
  plan.model = model.preset.empty() ? model.display_name : model.preset;
  plan.hardware = hw.name;
  plan.contention = options.contention.value_or(scenario.dwdp.contention.mode);
  plan.hbm_bytes = ToBytes(hw.hbm_bytes.value);
  plan.workloads = WorkloadPoints(scenario, options);
  for (const PlanWorkloadPoint& w : plan.workloads) {
    if (w.tokens_per_rank < 1 || w.sequence_length < 1) {
      return absl::InvalidArgumentError(
          "no workload to plan for: give workload.sequence_length (and tokens_per_rank) in the "
          "scenario or --sequence-length / --tokens-per-rank");
    }
  }
  const double cv = options.tokens_cv.value_or(scenario.workload.tokens_cv);
  ContentionConfig contention_config = scenario.dwdp.contention;
  contention_config.mode = plan.contention;
  std::vector<OwnerPolicy> owners = options.owners;
  if (owners.empty()) owners.push_back(scenario.dwdp.owner);
  // Every candidate, in the order of the plan: by workload point, size, recipe, owner, slots.
  struct Job {
    CandidateSpec spec;
    size_t workload = 0;
  };
  std::vector<Job> jobs;
  for (size_t w = 0; w < plan.workloads.size(); ++w) {
    for (int64_t d : sizes) {
      std::vector<Recipe> recipes = Recipes(d, model.num_experts);
      if (!options.all_recipes && recipes.size() > 1) recipes.resize(1);
      for (const Recipe& r : recipes) {
        for (OwnerPolicy owner : owners) {
          // With no overlap every expert has one storer: the policies give the same plan.
          if (owner != owners.front() && r.overlap() == 0) continue;
          for (int64_t k : options.num_buffers) {
            jobs.push_back({{d, r.num_experts_per_worker, r.num_prefetch_experts, k, owner}, w});
          }
        }
      }
    }
  }
  // The copies of a (size, recipe, owner) do not depend on the slots or the workload.
  CopiesCache cache;
  for (const Job& job : jobs) {
    const CopiesKey key{job.spec.dwdp_size, job.spec.size, job.spec.owner};
    if (cache.count(key) > 0) continue;
    absl::StatusOr<Partition> partition =
        Partition::Create(job.spec.dwdp_size, job.spec.size, job.spec.stride, model.num_experts);
    if (!partition.ok()) continue;  // Evaluate reports it
    absl::StatusOr<GroupLayout> layout = ComputeGroupLayout(
        *partition, model.weights, model.moe_layers, ToBytes(hw.granularity.value),
        scenario.dwdp.pool_page_bytes, 2, job.spec.owner);
    if (!layout.ok()) continue;
    cache.emplace(key, GroupCopiesOf(*layout, contention_config));
  }
  // Candidates are independent: spread them over the cores (the result does not depend on how
  // many).
  std::vector<std::optional<absl::StatusOr<PlanCandidate>>> results(jobs.size());
  std::atomic<size_t> next{0};
  const auto work = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) {
      const Job& job = jobs[i];
      const auto cached = cache.find({job.spec.dwdp_size, job.spec.size, job.spec.owner});
      results[i] = Evaluate(scenario, job.spec, plan.workloads[job.workload], contention_config, cv,
                            cached == cache.end() ? nullptr : &cached->second, options.defer_fluid);
    }
  };
  const int64_t threads = std::clamp<int64_t>(
      options.threads > 0 ? options.threads
                          : static_cast<int64_t>(std::thread::hardware_concurrency()),
      1, 16);
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads && static_cast<size_t>(t) < jobs.size(); ++t) {
    pool.emplace_back(work);
  }
  work();
  for (std::thread& t : pool) t.join();
  plan.candidates.reserve(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    absl::StatusOr<PlanCandidate>& c = *results[i];
    if (!c.ok()) {
      return absl::Status(
          c.status().code(),
          absl::StrCat("dwdp_size ", jobs[i].spec.dwdp_size, " recipe ", jobs[i].spec.size, "/",
                       jobs[i].spec.stride, ": ", c.status().message()));
    }
    plan.candidates.push_back(*std::move(c));
  }

  // Which profile numbers the whole plan rests on.
  const ForwardShape shape{plan.workloads.front().tokens_per_rank,
                           plan.workloads.front().sequence_length};
  MoeLayerCost(model, hw, shape, &plan.depends_on);
  DenseLayerCost(model, hw, shape, &plan.depends_on);
  DepMoeLayerCost(model, hw, shape, 2, cv, &plan.depends_on);
  ContentionConfig contention = scenario.dwdp.contention;
  contention.mode = plan.contention;
  MergeDependencies(plan.depends_on,
                    EstimateLayerCopy(model, hw, 2, model.num_experts / 2, contention).depends_on);
  AddDependency(plan.depends_on, "compute_slowdown", hw.compute_slowdown);
  // The group copy model: a source's egress alone and with several readers at once.
  if (hw.egress_bw.value > 0) AddDependency(plan.depends_on, "egress_bw", hw.egress_bw);
  AddDependency(plan.depends_on, "egress_fanout_efficiency", hw.egress_fanout_efficiency);
  AddDependency(plan.depends_on, "hbm_bytes", hw.hbm_bytes);
  AddDependency(plan.depends_on, "nvlink_domain", hw.nvlink_domain);
  AddDependency(plan.depends_on, "granularity", hw.granularity);
  if (hw.max_mappings.value > 0) AddDependency(plan.depends_on, "max_mappings", hw.max_mappings);
  return plan;
}

namespace {

bool SameWorkload(const PlanCandidate& c, const PlanWorkloadPoint& w) {
  return c.tokens_per_rank == w.tokens_per_rank && c.sequence_length == w.sequence_length;
}

// True when `a` is a better pick than `b` for the objective. Throughputs within 1% count as
// equal: the model is not that precise, and then a smaller group (fewer peers, less to go
// wrong) and fewer slots (less pool memory, more KV) win.
bool Better(const PlanCandidate& a, const PlanCandidate& b, PlanObjective objective) {
  if (objective == PlanObjective::kSmallest && a.dwdp_size != b.dwdp_size) {
    return a.dwdp_size < b.dwdp_size;
  }
  const double hi = std::max(a.tokens_per_s_per_gpu, b.tokens_per_s_per_gpu);
  if (std::fabs(a.tokens_per_s_per_gpu - b.tokens_per_s_per_gpu) > 0.01 * hi) {
    return a.tokens_per_s_per_gpu > b.tokens_per_s_per_gpu;
  }
  if (a.dwdp_size != b.dwdp_size) return a.dwdp_size < b.dwdp_size;
  if (a.num_buffers != b.num_buffers) return a.num_buffers < b.num_buffers;
  if (a.overlap != b.overlap) return a.overlap < b.overlap;
  return a.tokens_per_s_per_gpu > b.tokens_per_s_per_gpu;
}

std::string Times(double ratio) { return absl::StrFormat("%.2f×", ratio); }

std::string KvTokens(uint64_t tokens) {
  if (tokens >= 1000000) return absl::StrFormat("%.1fM", static_cast<double>(tokens) / 1e6);
  if (tokens >= 1000) return absl::StrFormat("%.0fK", static_cast<double>(tokens) / 1e3);
  return absl::StrCat(tokens);
}

std::string Describe(const PlanCandidate& c) {
  return absl::StrFormat("d=%d %d/%d, %d slots%s", c.dwdp_size, c.num_experts_per_worker,
                         c.num_prefetch_experts, c.num_buffers,
                         c.overlap > 0 ? absl::StrCat(", owner ", OwnerPolicyName(c.owner)) : "");
}

}  // namespace

std::vector<RecommendationResult> Recommend(const Plan& plan, PlanObjective objective) {
  std::vector<RecommendationResult> results;
  for (const PlanWorkloadPoint& w : plan.workloads) {
    RecommendationResult result;
    result.workload = w;
    const PlanCandidate* best = nullptr;
    const PlanCandidate* largest_kv = nullptr;
    const PlanCandidate* fastest_fit = nullptr;  // fits but not recommendable
    for (const PlanCandidate& c : plan.candidates) {
      if (!SameWorkload(c, w)) continue;
      if (c.fits && (fastest_fit == nullptr || c.forward_ns < fastest_fit->forward_ns)) {
        fastest_fit = &c;
      }
      if (largest_kv == nullptr || c.kv_bytes_per_gpu > largest_kv->kv_bytes_per_gpu ||
          (c.kv_bytes_per_gpu == largest_kv->kv_bytes_per_gpu &&
           c.weights_bytes_per_gpu < largest_kv->weights_bytes_per_gpu)) {
        largest_kv = &c;
      }
      if (!Recommendable(c)) continue;
      if (best == nullptr || Better(c, *best, objective)) best = &c;
    }
    if (best == nullptr && fastest_fit != nullptr) {
      result.none_reason = absl::StrFormat(
          "no candidate that fits can be recommended: the fastest (%s) is not because %s",
          Describe(*fastest_fit), NotRecommendableReason(*fastest_fit));
      results.push_back(std::move(result));
      continue;
    }
    if (best == nullptr) {
      result.none_reason =
          largest_kv == nullptr
              ? "no candidate was evaluated for this workload"
              : absl::StrFormat(
                    "no candidate fits: the leanest (%s) needs %s of weights and %s of "
                    "activations against %s of device memory, leaving room for %s of the %s "
                    "KV tokens the forward needs",
                    Describe(*largest_kv), FormatBytes(largest_kv->weights_bytes_per_gpu),
                    FormatBytes(largest_kv->activation_bytes), FormatBytes(plan.hbm_bytes),
                    KvTokens(largest_kv->kv_tokens), KvTokens(largest_kv->kv_tokens_needed));
      results.push_back(std::move(result));
      continue;
    }
    Recommendation rec;
    rec.candidate = *best;
    const PlanCandidate& c = *best;
    rec.reasons.push_back(absl::StrFormat(
        "%s fits with %s of KV cache per GPU (%s tokens; weights %s = local experts %s + pool "
        "%s + replicated %s)",
        Describe(c), FormatBytes(c.kv_bytes_per_gpu), KvTokens(c.kv_tokens),
        FormatBytes(c.weights_bytes_per_gpu), FormatBytes(c.local_expert_bytes),
        FormatBytes(c.pool_bytes), FormatBytes(c.non_moe_bytes)));
    if (c.stall_ns_per_layer < 1000) {
      rec.reasons.push_back(absl::StrFormat("copy %s per MoE layer (%s) hides behind %s of compute",
                                            FormatNanos(c.prefetch_ns_per_layer),
                                            FormatBytes(c.prefetch_bytes_per_layer),
                                            FormatNanos(c.compute_ns_per_layer)));
    } else {
      rec.reasons.push_back(absl::StrFormat(
          "copy %s per MoE layer (%s) against %s of compute leaves %s of stall per layer",
          FormatNanos(c.prefetch_ns_per_layer), FormatBytes(c.prefetch_bytes_per_layer),
          FormatNanos(c.compute_ns_per_layer), FormatNanos(c.stall_ns_per_layer)));
    }
    rec.reasons.push_back(
        absl::StrFormat("forward %s (%.0f tokens/s per GPU); DEP%d on the same GPUs %s: %s DEP%s",
                        FormatNanos(c.forward_ns), c.tokens_per_s_per_gpu, c.dwdp_size,
                        FormatNanos(c.dep_forward_ns), Times(c.dwdp_over_dep),
                        c.dwdp_over_dep < 1 ? " (DEP is faster here)" : ""));
    // Why not a smaller group: the smallest d below the pick, and what stops it.
    const PlanCandidate* smaller_fit = nullptr;
    int64_t smallest_unfit = 0;
    for (const PlanCandidate& o : plan.candidates) {
      if (!SameWorkload(o, w) || o.dwdp_size >= c.dwdp_size) continue;
      if (!o.fits) {
        smallest_unfit = std::max(smallest_unfit, o.dwdp_size);
        continue;
      }
      if (smaller_fit == nullptr || Better(o, *smaller_fit, PlanObjective::kThroughput)) {
        smaller_fit = &o;
      }
    }
    if (smaller_fit != nullptr && objective == PlanObjective::kThroughput) {
      rec.reasons.push_back(absl::StrFormat(
          "the best smaller group, %s, is %.1f%% slower (stall %s per layer)",
          Describe(*smaller_fit),
          100.0 * (1.0 - smaller_fit->tokens_per_s_per_gpu / c.tokens_per_s_per_gpu),
          FormatNanos(smaller_fit->stall_ns_per_layer)));
    } else if (smallest_unfit > 0) {
      rec.reasons.push_back(absl::StrFormat("groups of %d GPU(s) or fewer do not fit in %s",
                                            smallest_unfit, FormatBytes(plan.hbm_bytes)));
    }
    result.recommendation = std::move(rec);
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace dwdp
