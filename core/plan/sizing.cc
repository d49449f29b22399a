#include "core/plan/sizing.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <queue>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/perf/perf_model.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  const size_t at = std::min(
      values.size() - 1,
      static_cast<size_t>(std::ceil(p * static_cast<double>(values.size()))) - (p > 0 ? 1 : 0));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(at), values.end());
  return values[at];
}

// Piecewise-linear interpolation on a sorted grid (clamped at the ends).
struct Axis {
  std::vector<double> x;
  // Index i and weight w of x[i] .. x[i + 1].
  std::pair<size_t, double> Locate(double v) const {
    if (v <= x.front()) return {0, 0.0};
    if (v >= x.back()) return {x.size() - 2, 1.0};
    const size_t i = static_cast<size_t>(std::upper_bound(x.begin(), x.end(), v) - x.begin()) - 1;
    return {i, (v - x[i]) / (x[i + 1] - x[i])};
  }
};

Axis MakeAxis(double top, int points, const std::vector<double>& exact) {
  Axis axis;
  axis.x.push_back(0);
  for (int i = 0; i < points; ++i) {
    axis.x.push_back(std::round(
        std::pow(std::max(top, 2.0), static_cast<double>(i) / static_cast<double>(points - 1))));
  }
  for (double e : exact) axis.x.push_back(e);
  std::sort(axis.x.begin(), axis.x.end());
  axis.x.erase(std::unique(axis.x.begin(), axis.x.end()), axis.x.end());
  return axis;
}

// The per-layer compute of one rank over (tokens, context), from the perf model's per-layer
// functions (so a measured compute table behind MoeLayerCost flows in), interpolated.
class ComputeTable {
 public:
  ComputeTable(const ModelSpec& model, const HardwareProfile& hw, const Axis& tokens,
               const Axis& context)
      : tokens_(tokens), context_(context) {
    const size_t nt = tokens.x.size();
    const size_t ns = context.x.size();
    pre_.assign(nt * ns, 0);
    dense_.assign(nt * ns, 0);
    moe_.assign(nt, 0);
    for (size_t i = 1; i < nt; ++i) {
      const int64_t t = static_cast<int64_t>(tokens.x[i]);
      for (size_t j = 0; j < ns; ++j) {
        const ForwardShape shape{t, std::max<int64_t>(1, static_cast<int64_t>(context.x[j]))};
        const LayerCost moe = MoeLayerCost(model, hw, shape);
        pre_[i * ns + j] = moe.pre_moe_ns();
        dense_[i * ns + j] = DenseLayerCost(model, hw, shape).total_ns();
        if (j == 0) moe_[i] = moe.routed_moe.time_ns;
      }
    }
  }
  double Pre(double t, double s) const { return Bilinear(pre_, t, s); }
  double Dense(double t, double s) const { return Bilinear(dense_, t, s); }
  double Moe(double t) const {
    const auto [i, w] = tokens_.Locate(t);
    return moe_[i] * (1 - w) + moe_[i + 1] * w;
  }
  const Axis& tokens() const { return tokens_; }
  const Axis& context() const { return context_; }

 private:
  double Bilinear(const std::vector<double>& v, double t, double s) const {
    const size_t ns = context_.x.size();
    const auto [i, wt] = tokens_.Locate(t);
    const auto [j, ws] = context_.Locate(s);
    const double a = v[i * ns + j] * (1 - ws) + v[i * ns + j + 1] * ws;
    const double b = v[(i + 1) * ns + j] * (1 - ws) + v[(i + 1) * ns + j + 1] * ws;
    return a * (1 - wt) + b * wt;
  }
  Axis tokens_;
  Axis context_;
  std::vector<double> pre_, dense_, moe_;
};

// How long one forward takes, DWDP (per rank) or DEP (the lockstep group).
class ForwardModel {
 public:
  ForwardModel(const Scenario& scenario, const ComputeTable& table, const SizingCandidate& c)
      : table_(table), kind_(c.kind), d_(c.group_size) {
    const ModelSpec& model = scenario.model;
    const HardwareProfile& hw = scenario.hardware;
    flags_ = MoeLayerFlags(model);
    layers_ = static_cast<int64_t>(model.moe_layers.size());
    dense_layers_ = static_cast<int64_t>(flags_.size()) - layers_;
    if (kind_ == Parallelism::kDwdp) {
      const double read_bw =
          hw.compute_read_bw.value > 0
              ? hw.compute_read_bw.value
              : hw.hbm_bw.value *
                    (hw.memory_efficiency.value > 0 ? hw.memory_efficiency.value : 1.0);
      read_floor_ns_ = read_bw > 0 ? static_cast<double>(model.num_experts) *
                                         static_cast<double>(model.expert_bytes()) / read_bw * 1e9
                                   : 0.0;
      slowdown_ = hw.compute_slowdown.value;
      buffers_ = c.dwdp.num_buffers;
      copy_ns_ = c.copy_ns_per_layer;
      return;
    }
    // DEP: the all-to-alls over the largest rank's tokens and the experts' work at the mean.
    const Axis& t = table.tokens();
    a2a_.assign(t.x.size(), 0);
    routed_.assign(t.x.size(), 0);
    for (size_t i = 1; i < t.x.size(); ++i) {
      const int64_t tokens = static_cast<int64_t>(t.x[i]);
      const DepLayerCost dep = DepMoeLayerCost(model, hw, {tokens, 1}, d_, 0);
      a2a_[i] = dep.dispatch_ns + dep.combine_ns;
      routed_[i] = dep.routed_moe.time_ns;
    }
  }

  // DWDP: the forward over the table's grid, so a DES step is a lookup (after set_copy_ns).
  void Prepare() {
    if (kind_ != Parallelism::kDwdp) return;
    const ComputeTable& table = table_;
    {
      const size_t nt = table.tokens().x.size();
      const size_t ns = table.context().x.size();
      grid_.assign(nt * ns, 0);
      for (size_t i = 1; i < nt; ++i) {
        for (size_t j = 0; j < ns; ++j) {
          grid_[i * ns + j] = Dwdp(table.tokens().x[i], table.context().x[j]);
        }
      }
    }
  }
  void set_copy_ns(double copy_ns) { copy_ns_ = copy_ns; }

  // DWDP: one rank's forward of `load`.
  double Rank(const ForwardLoad& load) const {
    if (load.tokens <= 0) return 0;
    const ForwardShape shape = load.shape();
    const size_t ns = table_.context().x.size();
    const auto [i, wt] = table_.tokens().Locate(static_cast<double>(shape.tokens_per_rank));
    const auto [j, ws] = table_.context().Locate(static_cast<double>(shape.sequence_length));
    const double a = grid_[i * ns + j] * (1 - ws) + grid_[i * ns + j + 1] * ws;
    const double b = grid_[(i + 1) * ns + j] * (1 - ws) + grid_[(i + 1) * ns + j + 1] * ws;
    return a * (1 - wt) + b * wt;
  }
  // DEP: the group's forward when rank r carries loads[r].
  double Group(const std::vector<ForwardLoad>& loads) const {
    double pre = 0;
    double dense = 0;
    int64_t most = 0;
    double total = 0;
    for (const ForwardLoad& load : loads) {
      if (load.tokens <= 0) continue;
      const ForwardShape shape = load.shape();
      const double t = static_cast<double>(shape.tokens_per_rank);
      const double s = static_cast<double>(shape.sequence_length);
      pre = std::max(pre, table_.Pre(t, s));
      dense = std::max(dense, table_.Dense(t, s));
      most = std::max(most, load.tokens);
      total += t;
    }
    if (most == 0) return 0;
    const double mean = total / static_cast<double>(d_);
    return static_cast<double>(dense_layers_) * dense +
           static_cast<double>(layers_) *
               (pre + Lookup(a2a_, static_cast<double>(most)) + Lookup(routed_, mean));
  }
  // DWDP forward straight from the tables (used to build the grid and to fit the copy time).
  double Dwdp(double t, double s, double copy_ns = -1) const {
    if (t <= 0) return 0;
    const UniformLayers layers{table_.Dense(t, s), table_.Pre(t, s),
                               std::max(table_.Moe(t), read_floor_ns_)};
    return DwdpForwardOf(flags_, layers, slowdown_, buffers_, copy_ns < 0 ? copy_ns_ : copy_ns)
        .forward_ns;
  }

 private:
  double Lookup(const std::vector<double>& v, double t) const {
    const auto [i, w] = table_.tokens().Locate(t);
    return v[i] * (1 - w) + v[i + 1] * w;
  }
  const ComputeTable& table_;
  Parallelism kind_;
  int64_t d_;
  std::vector<bool> flags_;
  int64_t layers_ = 0;
  int64_t dense_layers_ = 0;
  double read_floor_ns_ = 0;
  double slowdown_ = 0;
  int64_t buffers_ = 2;
  double copy_ns_ = 0;
  std::vector<double> grid_;
  std::vector<double> a2a_, routed_;
};

// Σ of j + 1 for j in [done, done + chunk): the context the chunk's tokens attend to.
double Attended(int64_t done, int64_t chunk) {
  const double a = static_cast<double>(done);
  const double c = static_cast<double>(chunk);
  return c * (2 * a + c + 1) / 2;
}

// Requests of a run: arrival gaps (unit exponentials, scaled by the rate) and lengths, drawn
// once so that every configuration and rate sees the same requests.
struct RequestStream {
  std::vector<double> gaps;
  std::vector<int64_t> lengths;
};

RequestStream MakeStream(const InputLengths& isl, int64_t count, uint64_t seed) {
  RequestStream s;
  LengthSampler lengths(isl, seed);
  uint64_t state = seed * 0xD1B54A32D192ED03ull + 7;
  for (int64_t i = 0; i < count; ++i) {
    const double u = (static_cast<double>(SplitMix(state) >> 11) + 0.5) / 9007199254740992.0;
    s.gaps.push_back(-std::log(u));
    s.lengths.push_back(lengths.Next());
  }
  return s;
}

// A rank that always has work: its forwards, packed MNT tokens at a time from an endless queue.
std::vector<ForwardLoad> SaturatedForwards(const InputLengths& isl, int64_t mnt, int64_t forwards,
                                           uint64_t seed) {
  LengthSampler lengths(isl, seed);
  std::vector<ForwardLoad> out;
  int64_t length = lengths.Next();
  int64_t done = 0;
  while (static_cast<int64_t>(out.size()) < forwards) {
    ForwardLoad load;
    while (load.tokens < mnt) {
      const int64_t chunk = std::min(length - done, mnt - load.tokens);
      load.attended += Attended(done, chunk);
      load.tokens += chunk;
      done += chunk;
      if (done == length) {
        length = lengths.Next();
        done = 0;
      }
    }
    out.push_back(load);
  }
  return out;
}

struct Queued {
  int64_t id = 0;
  int64_t length = 0;
  int64_t done = 0;
  double arrival = 0;
};

// Packs a forward from the head of `queue`; `finished` gets the requests it completes.
ForwardLoad Pack(std::deque<Queued>& queue, int64_t mnt, std::vector<Queued>& finished) {
  ForwardLoad load;
  while (!queue.empty() && load.tokens < mnt) {
    Queued& q = queue.front();
    const int64_t chunk = std::min(q.length - q.done, mnt - load.tokens);
    load.attended += Attended(q.done, chunk);
    load.tokens += chunk;
    q.done += chunk;
    if (q.done == q.length) {
      finished.push_back(q);
      queue.pop_front();
    }
  }
  return load;
}

// One group of `ranks` GPUs under Poisson arrivals of `rate` requests/s for the whole group.
TtftStats RunDes(const ForwardModel& model, Parallelism kind, int64_t ranks, int64_t mnt,
                 const RequestStream& stream, double group_rate) {
  TtftStats out;
  const int64_t total = static_cast<int64_t>(stream.gaps.size());
  const int64_t warmup = total / 10;
  const double gap_ns = 1e9 / group_rate;
  std::vector<std::deque<Queued>> queues(static_cast<size_t>(ranks));
  std::vector<int64_t> outstanding(static_cast<size_t>(ranks), 0);  // tokens queued or running
  std::vector<double> busy_until(static_cast<size_t>(ranks), -1);   // < 0: idle
  std::vector<std::vector<Queued>> running(static_cast<size_t>(ranks));
  std::vector<double> ttft;
  std::vector<double> forwards;
  ttft.reserve(static_cast<size_t>(total));
  double next_arrival = stream.gaps[0] * gap_ns;
  int64_t arrived = 0;
  int64_t completed = 0;
  int64_t in_system = 0;
  double first_measured = -1;
  double last_done = 0;
  double measured_tokens = 0;
  // The queue a stable system never builds: more than this many requests waiting means the
  // rate is above what the group serves.
  const int64_t unstable_backlog = std::max<int64_t>(200, 20 * ranks);
  std::vector<ForwardLoad> loads(static_cast<size_t>(ranks));

  const auto start_rank = [&](int64_t r, double now) {
    auto& q = queues[static_cast<size_t>(r)];
    if (q.empty()) return;
    auto& done = running[static_cast<size_t>(r)];
    const ForwardLoad load = Pack(q, mnt, done);
    const double f = model.Rank(load);
    forwards.push_back(f);
    busy_until[static_cast<size_t>(r)] = now + f;
    outstanding[static_cast<size_t>(r)] -= load.tokens;
  };
  const auto start_group = [&](double now) {
    bool any = false;
    for (int64_t r = 0; r < ranks; ++r) {
      loads[static_cast<size_t>(r)] =
          Pack(queues[static_cast<size_t>(r)], mnt, running[static_cast<size_t>(r)]);
      outstanding[static_cast<size_t>(r)] -= loads[static_cast<size_t>(r)].tokens;
      any = any || loads[static_cast<size_t>(r)].tokens > 0;
    }
    if (!any) return;
    const double f = model.Group(loads);
    forwards.push_back(f);
    busy_until[0] = now + f;
  };
  const auto finish = [&](int64_t r, double now) {
    for (const Queued& q : running[static_cast<size_t>(r)]) {
      ++completed;
      --in_system;
      if (q.id >= warmup) {
        ttft.push_back((now - q.arrival) / 1e6);
        measured_tokens += static_cast<double>(q.length);
        if (first_measured < 0) first_measured = q.arrival;
        last_done = now;
      }
    }
    running[static_cast<size_t>(r)].clear();
  };

  while (completed < total) {
    // The next event: an arrival, or the earliest end of a forward.
    double next_end = kInfinity;
    int64_t ending = -1;
    const int64_t servers = kind == Parallelism::kDep ? 1 : ranks;
    for (int64_t r = 0; r < servers; ++r) {
      const double t = busy_until[static_cast<size_t>(r)];
      if (t >= 0 && t < next_end) {
        next_end = t;
        ending = r;
      }
    }
    if (arrived < total && next_arrival <= next_end) {
      const double now = next_arrival;
      // The rank with the fewest outstanding tokens takes it.
      int64_t target = 0;
      for (int64_t r = 1; r < ranks; ++r) {
        if (outstanding[static_cast<size_t>(r)] < outstanding[static_cast<size_t>(target)]) {
          target = r;
        }
      }
      const int64_t length = stream.lengths[static_cast<size_t>(arrived)];
      queues[static_cast<size_t>(target)].push_back({arrived, length, 0, now});
      outstanding[static_cast<size_t>(target)] += length;
      ++arrived;
      ++in_system;
      if (arrived < total) next_arrival += stream.gaps[static_cast<size_t>(arrived)] * gap_ns;
      if (in_system > unstable_backlog) {
        out.stable = false;
        break;
      }
      if (kind == Parallelism::kDep) {
        if (busy_until[0] < 0) start_group(now);
      } else if (busy_until[static_cast<size_t>(target)] < 0) {
        start_rank(target, now);
      }
      continue;
    }
    if (ending < 0) break;  // nothing left to happen
    const double now = next_end;
    busy_until[static_cast<size_t>(ending)] = -1;
    if (kind == Parallelism::kDep) {
      for (int64_t r = 0; r < ranks; ++r) finish(r, now);
      start_group(now);
    } else {
      finish(ending, now);
      start_rank(ending, now);
    }
  }
  if (!out.stable || ttft.empty()) {
    out.stable = false;
    out.p50_ms = out.p99_ms = out.mean_ms = kInfinity;
    return out;
  }
  out.p50_ms = Percentile(ttft, 0.5);
  out.p99_ms = Percentile(ttft, 0.99);
  out.mean_ms = std::accumulate(ttft.begin(), ttft.end(), 0.0) / static_cast<double>(ttft.size());
  out.forward_p50_ms = Percentile(forwards, 0.5) / 1e6;
  out.forward_p99_ms = Percentile(forwards, 0.99) / 1e6;
  const double span_ns = last_done - first_measured;
  out.tokens_per_s_per_gpu =
      span_ns > 0 ? measured_tokens / (span_ns / 1e9) / static_cast<double>(ranks) : 0;
  return out;
}

// Everything the DES of one candidate needs.
struct Evaluation {
  double ttft_p99_ms = 0;
  std::optional<double> ttft_p50_ms;
};

bool Meets(const TtftStats& s, const Evaluation& e) {
  return s.stable && s.p99_ms <= e.ttft_p99_ms && (!e.ttft_p50_ms || s.p50_ms <= *e.ttft_p50_ms);
}

std::string Ms(double ms) {
  if (!std::isfinite(ms)) return "unbounded";
  return ms >= 100 ? absl::StrFormat("%.0f ms", ms) : absl::StrFormat("%.1f ms", ms);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

LengthSampler::LengthSampler(const InputLengths& lengths, uint64_t seed)
    : lengths_(lengths), state_(seed * 0x9E3779B97F4A7C15ull + 1) {
  switch (lengths_.distribution) {
    case LengthDistribution::kFixed:
      mean_ = static_cast<double>(lengths_.length);
      longest_ = lengths_.length;
      break;
    case LengthDistribution::kUniform:
      mean_ = (static_cast<double>(lengths_.min) + static_cast<double>(lengths_.max)) / 2;
      longest_ = lengths_.max;
      break;
    case LengthDistribution::kLognormal: {
      // sigma² = ln(1 + cv²), mu = ln(mean) − sigma² / 2: a log-normal of that mean and CV.
      const double s2 = std::log1p(lengths_.cv * lengths_.cv);
      sigma_ = std::sqrt(s2);
      mu_ = std::log(std::max(lengths_.mean, 1.0)) - s2 / 2;
      longest_ = lengths_.max;
      // The clamp moves the mean a little: measure it on draws of their own.
      LengthSampler probe = *this;
      probe.state_ = 0x5DEECE66Dull;
      double sum = 0;
      constexpr int kDraws = 1 << 15;
      for (int i = 0; i < kDraws; ++i) sum += static_cast<double>(probe.Next());
      mean_ = sum / kDraws;
      break;
    }
    case LengthDistribution::kFile:
      for (int64_t l : lengths_.lengths) {
        mean_ += static_cast<double>(l);
        longest_ = std::max(longest_, l);
      }
      mean_ /= static_cast<double>(std::max<size_t>(lengths_.lengths.size(), 1));
      break;
  }
}

double LengthSampler::Uniform() {
  return (static_cast<double>(SplitMix(state_) >> 11) + 0.5) / 9007199254740992.0;
}

int64_t LengthSampler::Next() {
  switch (lengths_.distribution) {
    case LengthDistribution::kFixed:
      return lengths_.length;
    case LengthDistribution::kUniform: {
      const double span = static_cast<double>(lengths_.max - lengths_.min + 1);
      return std::min(lengths_.max, lengths_.min + static_cast<int64_t>(Uniform() * span));
    }
    case LengthDistribution::kLognormal: {
      const double z =
          std::sqrt(-2 * std::log(Uniform())) * std::cos(2 * 3.14159265358979323846 * Uniform());
      const double x = std::exp(mu_ + sigma_ * z);
      return std::clamp<int64_t>(static_cast<int64_t>(std::llround(x)), lengths_.min, lengths_.max);
    }
    case LengthDistribution::kFile: {
      const size_t n = lengths_.lengths.size();
      return lengths_
          .lengths[std::min(n - 1, static_cast<size_t>(Uniform() * static_cast<double>(n)))];
    }
  }
  return 1;
}

absl::StatusOr<InputLengths> WorkloadInputLengths(const Workload& workload) {
  if (workload.input_lengths) {
    const InputLengths& isl = *workload.input_lengths;
    if (isl.distribution == LengthDistribution::kFile && isl.lengths.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the length file ", isl.path, " holds no input lengths"));
    }
    return isl;
  }
  if (workload.sequence_length < 1) {
    return absl::InvalidArgumentError(
        "no input lengths: give workload.isl or workload.sequence_length");
  }
  InputLengths fixed;
  fixed.length = workload.sequence_length;
  return fixed;
}

ForwardShape ForwardLoad::shape() const {
  if (tokens <= 0) return {0, 1};
  const double s = 2 * attended / static_cast<double>(tokens) - 1;
  return {tokens, std::max<int64_t>(1, static_cast<int64_t>(std::llround(s)))};
}

const char* ParallelismName(Parallelism p) { return p == Parallelism::kDwdp ? "DWDP" : "DEP"; }

std::string SizingCandidate::Label() const {
  if (kind == Parallelism::kDep) {
    return absl::StrFormat("DEP ep=%d MNT %d", group_size, max_num_tokens);
  }
  return absl::StrFormat("DWDP d=%d %d/%d k=%d%s MNT %d", group_size, dwdp.num_experts_per_worker,
                         dwdp.num_prefetch_experts, dwdp.num_buffers,
                         dwdp.overlap > 0 ? absl::StrCat(" ", OwnerPolicyName(dwdp.owner)) : "",
                         max_num_tokens);
}

namespace {

// The copy time per layer that makes the rank model's forward at (MNT, context) equal the
// planner's group price of the candidate.
double FitCopyTime(const ForwardModel& model, double tokens, double context, double target) {
  double low = 0;
  double high = std::max(1.0, target);
  if (model.Dwdp(tokens, context, low) >= target) return 0;
  for (int i = 0; i < 60 && model.Dwdp(tokens, context, high) < target; ++i) high *= 2;
  for (int i = 0; i < 50; ++i) {
    const double mid = (low + high) / 2;
    (model.Dwdp(tokens, context, mid) < target ? low : high) = mid;
  }
  return (low + high) / 2;
}

// DEP memory per GPU: N/ep experts of every MoE layer (no pool), the replicated weights and
// activations; the rest holds KV.
void DepMemory(const Scenario& scenario, SizingCandidate& c, uint64_t kv_needed) {
  const ModelSpec& model = scenario.model;
  const uint64_t experts =
      static_cast<uint64_t>((model.num_experts + c.group_size - 1) / c.group_size);
  c.weights_bytes_per_gpu =
      experts * model.expert_bytes() * static_cast<uint64_t>(model.moe_layers.size()) +
      model.non_moe_bytes;
  const double activations = ActivationBytes(model, {c.max_num_tokens, c.max_num_tokens});
  const double hbm = scenario.hardware.hbm_bytes.value;
  const double left = hbm - static_cast<double>(c.weights_bytes_per_gpu) - activations;
  c.kv_tokens = left > 0 && model.kv_bytes_per_token > 0
                    ? static_cast<uint64_t>(left / static_cast<double>(model.kv_bytes_per_token))
                    : 0;
  if (left <= 0) {
    c.fit_note =
        absl::StrFormat("weights and activations need %s of %s",
                        FormatBytes(c.weights_bytes_per_gpu + static_cast<uint64_t>(activations)),
                        FormatBytes(static_cast<uint64_t>(hbm)));
  } else if (model.kv_bytes_per_token > 0 && c.kv_tokens < kv_needed) {
    c.fit_note =
        absl::StrFormat("KV room for %d tokens, a request needs %d", c.kv_tokens, kv_needed);
  }
  c.fits = c.fit_note.empty();
}

std::string LengthsText(const InputLengths& isl, double mean) {
  switch (isl.distribution) {
    case LengthDistribution::kFixed:
      return absl::StrFormat("every request %d tokens", isl.length);
    case LengthDistribution::kUniform:
      return absl::StrFormat("input lengths uniform in [%d, %d]", isl.min, isl.max);
    case LengthDistribution::kLognormal:
      return absl::StrFormat("log-normal input lengths, mean %.0f, CV %.2f", mean, isl.cv);
    case LengthDistribution::kFile:
      return absl::StrFormat("%d input lengths from %s, mean %.0f", isl.lengths.size(), isl.path,
                             mean);
  }
  return "";
}

std::string DeploymentText(const SizingCandidate& c) {
  std::string what;
  if (c.kind == Parallelism::kDwdp) {
    what = absl::StrFormat(
        "%d group%s of dwdp_size %d (%d/%d, %d slots%s, max_num_tokens %d)", c.groups,
        c.groups == 1 ? "" : "s", c.group_size, c.dwdp.num_experts_per_worker,
        c.dwdp.num_prefetch_experts, c.dwdp.num_buffers,
        c.dwdp.overlap > 0 ? absl::StrCat(", ", OwnerPolicyName(c.dwdp.owner), " owner") : "",
        c.max_num_tokens);
  } else {
    what = absl::StrFormat("%d group%s of ep_size %d (max_num_tokens %d)", c.groups,
                           c.groups == 1 ? "" : "s", c.group_size, c.max_num_tokens);
  }
  return absl::StrFormat("%d GPUs, %s, TTFT p99 %s / p50 %s at %.0f tokens/s per GPU", c.gpus, what,
                         Ms(c.at_rate.p99_ms), Ms(c.at_rate.p50_ms),
                         c.at_rate.tokens_per_s_per_gpu);
}

std::string RecommendationText(const SizingResult& r) {
  std::string out = absl::StrFormat(
      "For %.3g requests/s (%s) within TTFT p99 %s%s on %s: ", r.rate,
      LengthsText(r.lengths, r.mean_input_tokens), Ms(r.ttft_p99_ms),
      r.ttft_p50_ms ? absl::StrCat(" and p50 ", Ms(*r.ttft_p50_ms)) : "", r.hardware);
  const SizingCandidate* dwdp = r.best_dwdp ? &r.candidates[*r.best_dwdp] : nullptr;
  const SizingCandidate* dep = r.best_dep ? &r.candidates[*r.best_dep] : nullptr;
  absl::StrAppend(&out, "DWDP needs ",
                  dwdp ? DeploymentText(*dwdp) : "more than any candidate gives", "; DEP needs ",
                  dep ? DeploymentText(*dep) : "more than any candidate gives", ". ");
  if (dwdp && dep) {
    if (dwdp->gpus < dep->gpus) {
      absl::StrAppend(&out, absl::StrFormat("DWDP saves %d GPUs (%.0f%%)", dep->gpus - dwdp->gpus,
                                            100.0 * (dep->gpus - dwdp->gpus) / dep->gpus));
    } else if (dwdp->gpus > dep->gpus) {
      absl::StrAppend(&out,
                      absl::StrFormat("DEP needs %d fewer GPUs (%.0f%%)", dwdp->gpus - dep->gpus,
                                      100.0 * (dwdp->gpus - dep->gpus) / dwdp->gpus));
    } else {
      absl::StrAppend(&out, "both need the same GPUs");
    }
    absl::StrAppend(
        &out,
        absl::StrFormat(
            ": saturated, a DWDP rank serves %.0f tokens/s (its forwards p50 %s, p99 %s, each "
            "rank on its own) and a DEP GPU %.0f (group forwards p50 %s, p99 %s, every MoE layer "
            "waiting for the slowest rank; the closed form with tokens_cv says %.0f). ",
            dwdp->saturated_tokens_per_s_per_gpu, Ms(dwdp->saturated_forward_p50_ms),
            Ms(dwdp->saturated_forward_p99_ms), dep->saturated_tokens_per_s_per_gpu,
            Ms(dep->saturated_forward_p50_ms), Ms(dep->saturated_forward_p99_ms),
            dep->closed_form_tokens_per_s_per_gpu));
  }
  if (dwdp) {
    const double layer = dwdp->dwdp.compute_ns_per_layer;
    absl::StrAppend(
        &out,
        absl::StrFormat("The DWDP pick's copies take %s per MoE layer against %s of compute%s. ",
                        FormatNanos(dwdp->copy_ns_per_layer), FormatNanos(layer),
                        dwdp->copy_ns_per_layer <= layer ? " and hide" : ", so it stalls"));
  }
  int64_t memory = 0, copy = 0, ttft = 0;
  for (const SizingCandidate& c : r.candidates) {
    memory += c.fail_kind == "memory";
    copy += c.fail_kind == "copy";
    ttft += c.fail_kind == "ttft";
  }
  absl::StrAppend(&out, absl::StrFormat("Of the %d configurations, %d do not fit in memory, %d "
                                        "wait on a hot copy source or are unpredictable, %d miss "
                                        "the TTFT target at any load; the rest need more GPUs.",
                                        r.candidates.size(), memory, copy, ttft));
  return out;
}

}  // namespace

absl::StatusOr<TtftStats> SimulateTtft(const Scenario& scenario, const SizingCandidate& candidate,
                                       double rate_per_gpu, int64_t requests, uint64_t seed) {
  if (!(rate_per_gpu > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request rate must be a positive number of requests per second (got ",
                     rate_per_gpu, ")"));
  }
  absl::StatusOr<InputLengths> isl = WorkloadInputLengths(scenario.workload);
  if (!isl.ok()) return isl.status();
  LengthSampler sampler(*isl, seed);
  const double mnt = static_cast<double>(candidate.max_num_tokens);
  const Axis tokens = MakeAxis(mnt, 40, {mnt});
  const Axis context = MakeAxis(2.0 * static_cast<double>(sampler.longest()) + 2, 24,
                                {static_cast<double>(sampler.longest())});
  const ComputeTable table(scenario.model, scenario.hardware, tokens, context);
  ForwardModel model(scenario, table, candidate);
  model.Prepare();
  const RequestStream stream = MakeStream(*isl, std::max<int64_t>(requests, 20), seed);
  return RunDes(model, candidate.kind, candidate.group_size, candidate.max_num_tokens, stream,
                rate_per_gpu * static_cast<double>(candidate.group_size));
}

absl::StatusOr<SizingResult> SizeDeployment(const Scenario& scenario,
                                            const SizingRequest& request) {
  if (!(request.rate > 0) || !std::isfinite(request.rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rate must be a positive number of requests per second (got ", request.rate, ")"));
  }
  if (!(request.ttft_p99_ms > 0) || (request.ttft_p50_ms && !(*request.ttft_p50_ms > 0))) {
    return absl::InvalidArgumentError("the TTFT targets must be positive numbers of milliseconds");
  }
  if (request.requests < 100) {
    return absl::InvalidArgumentError("a DES run needs at least 100 requests");
  }
  absl::StatusOr<InputLengths> isl = WorkloadInputLengths(scenario.workload);
  if (!isl.ok()) return isl.status();
  const LengthSampler sampler(*isl, request.seed);

  SizingResult result;
  result.model =
      scenario.model.preset.empty() ? scenario.model.display_name : scenario.model.preset;
  result.hardware = scenario.hardware.name;
  result.lengths = *isl;
  result.mean_input_tokens = sampler.mean();
  result.rate = request.rate_in_tokens ? request.rate / sampler.mean() : request.rate;
  result.ttft_p99_ms = request.ttft_p99_ms;
  result.ttft_p50_ms = request.ttft_p50_ms;

  std::vector<int64_t> mnts = request.max_num_tokens;
  if (mnts.empty()) {
    mnts.push_back(scenario.workload.max_num_tokens > 0 ? scenario.workload.max_num_tokens
                                                        : scenario.workload.tokens_per_rank);
  }
  for (int64_t m : mnts) {
    if (m < 1) return absl::InvalidArgumentError("max_num_tokens must be at least 1");
  }
  std::sort(mnts.begin(), mnts.end());
  mnts.erase(std::unique(mnts.begin(), mnts.end()), mnts.end());
  const double longest = static_cast<double>(sampler.longest());

  // One compute table for every configuration.
  std::vector<double> exact_tokens;
  for (int64_t m : mnts) exact_tokens.push_back(static_cast<double>(m));
  const Axis tokens_axis = MakeAxis(static_cast<double>(mnts.back()), 40, exact_tokens);
  const Axis context_axis = MakeAxis(2 * longest + 2, 24, {longest});
  const ComputeTable table(scenario.model, scenario.hardware, tokens_axis, context_axis);
  const RequestStream stream = MakeStream(*isl, request.requests, request.seed);

  PlanOptions plan_options = request.plan;
  plan_options.owners = request.owners.empty()
                            ? std::vector<OwnerPolicy>{OwnerPolicy::kLowest, OwnerPolicy::kBalanced}
                            : request.owners;
  plan_options.sequence_lengths.clear();
  plan_options.tokens_per_rank.clear();
  plan_options.defer_fluid = true;
  const ContentionMode contention = plan_options.contention.value_or(scenario.dwdp.contention.mode);

  // Saturated forwards of independent ranks, per MNT (DEP ranks take one stream each).
  const HardwareProfile& hw = scenario.hardware;
  const int64_t domain = static_cast<int64_t>(hw.nvlink_domain.value);
  const int64_t max_group = std::max<int64_t>(
      2, plan_options.max_dwdp_size > 0 ? std::min(plan_options.max_dwdp_size, domain) : domain);
  constexpr int64_t kSaturatedForwards = 96;
  const double tokens_cv = plan_options.tokens_cv.value_or(scenario.workload.tokens_cv);

  std::map<int64_t, std::vector<std::vector<ForwardLoad>>> saturated_by_mnt;
  std::map<int64_t, int64_t> context_by_mnt;
  for (int64_t m : mnts) {
    std::vector<std::vector<ForwardLoad>> saturated;
    for (int64_t r = 0; r < max_group; ++r) {
      saturated.push_back(SaturatedForwards(*isl, m, kSaturatedForwards,
                                            request.seed * 1000003ull + static_cast<uint64_t>(r)));
    }
    double context_sum = 0;
    for (const ForwardLoad& l : saturated[0]) context_sum += l.shape().sequence_length;
    const int64_t context =
        std::max<int64_t>(1, static_cast<int64_t>(std::llround(context_sum / kSaturatedForwards)));
    const uint64_t kv_needed = static_cast<uint64_t>(std::max<double>(m, longest));

    // DWDP: the planner's candidates at (MNT, the typical packed context).
    PlanOptions at_m = plan_options;
    at_m.tokens_per_rank = {m};
    at_m.sequence_lengths = {context};
    absl::StatusOr<Plan> plan = PlanCapacity(scenario, at_m);
    if (!plan.ok()) return plan.status();
    for (const PlanCandidate& p : plan->candidates) {
      SizingCandidate c;
      c.kind = Parallelism::kDwdp;
      c.group_size = p.dwdp_size;
      c.max_num_tokens = m;
      c.dwdp = p;
      c.weights_bytes_per_gpu = p.weights_bytes_per_gpu;
      c.kv_tokens = p.kv_tokens;
      c.fits = p.fits && (scenario.model.kv_bytes_per_token == 0 || p.kv_tokens >= kv_needed);
      c.fit_note = !p.fits ? p.fit_note
                           : (c.fits ? ""
                                     : absl::StrFormat("KV room for %d tokens, a request "
                                                       "needs %d",
                                                       p.kv_tokens, kv_needed));
      c.closed_form_tokens_per_s_per_gpu = p.tokens_per_s_per_gpu;
      if (!c.fits) {
        c.fail_kind = "memory";
        c.fail = c.fit_note;
      } else if (!Recommendable(p) && p.copy_pricing != CopyPricing::kDeferred) {
        c.fail_kind = "copy";
        c.fail = NotRecommendableReason(p);
      }
      result.candidates.push_back(std::move(c));
    }
    // DEP on the same GPUs: every ep size of the sweep that the model fits.
    const int64_t min_size = std::max<int64_t>(2, plan_options.min_dwdp_size);
    std::vector<int64_t> dep_sizes = plan_options.dwdp_sizes;
    if (dep_sizes.empty()) {
      for (int64_t d = min_size; d <= max_group; ++d) dep_sizes.push_back(d);
    }
    for (int64_t d : dep_sizes) {
      if (d > max_group) continue;
      SizingCandidate c;
      c.kind = Parallelism::kDep;
      c.group_size = d;
      c.max_num_tokens = m;
      DepMemory(scenario, c, kv_needed);
      const ForwardShape shape{m, context};
      c.closed_form_tokens_per_s_per_gpu =
          static_cast<double>(m) / DepForward(scenario.model, hw, shape, d, tokens_cv).forward_ns *
          1e9;
      if (!c.fits) {
        c.fail_kind = "memory";
        c.fail = c.fit_note;
      }
      result.candidates.push_back(std::move(c));
    }
    // DEP's saturated throughput and forward times (DWDP's when its DES runs).
    for (SizingCandidate& c : result.candidates) {
      if (c.max_num_tokens != m || c.kind != Parallelism::kDep || !c.fail_kind.empty()) continue;
      const ForwardModel model(scenario, table, c);
      std::vector<double> times;
      double tokens = 0;
      double time = 0;
      std::vector<ForwardLoad> loads(static_cast<size_t>(c.group_size));
      for (int64_t j = 0; j < kSaturatedForwards; ++j) {
        for (int64_t r = 0; r < c.group_size; ++r) {
          loads[static_cast<size_t>(r)] = saturated[static_cast<size_t>(r)][static_cast<size_t>(j)];
          tokens += static_cast<double>(loads[static_cast<size_t>(r)].tokens);
        }
        const double f = model.Group(loads);
        times.push_back(f);
        time += f * static_cast<double>(c.group_size);
      }
      c.saturated_tokens_per_s_per_gpu = time > 0 ? tokens / time * 1e9 : 0;
      c.saturated_forward_p50_ms = Percentile(times, 0.5) / 1e6;
      c.saturated_forward_p99_ms = Percentile(times, 0.99) / 1e6;
    }
    saturated_by_mnt[m] = std::move(saturated);
    context_by_mnt[m] = context;
  }

  // The search, per kind: no candidate serves more than its saturated rate, so it needs at
  // least the GPUs that rate allows. Every candidate is tested at that count (one DES run at
  // the rate per GPU it gives), then at its next group count, always the smallest count of
  // all candidates first; the first count at which one meets the TTFT targets is the answer,
  // and nothing is run beyond it. Ties at a count go to the higher saturated throughput.
  const double mean_length = sampler.mean();
  // DWDP's sampled rate is known only once it is tested: until then its closed form at the
  // typical context, with a margin for what the sampled forwards may gain on it.
  const auto rate_bound = [&](const SizingCandidate& c) {
    return c.saturated_tokens_per_s_per_gpu > 0 ? c.saturated_tokens_per_s_per_gpu
                                                : 1.05 * c.closed_form_tokens_per_s_per_gpu;
  };
  const auto lower_bound_gpus = [&](const SizingCandidate& c) -> int64_t {
    const double saturated_rate = rate_bound(c) / mean_length;
    if (!(saturated_rate > 0)) return std::numeric_limits<int64_t>::max() / 2;
    const double per_group = saturated_rate * static_cast<double>(c.group_size);
    return static_cast<int64_t>(std::ceil(result.rate / per_group - 1e-12)) * c.group_size;
  };
  const Evaluation evaluation{request.ttft_p99_ms, request.ttft_p50_ms};
  std::map<size_t, std::unique_ptr<ForwardModel>> models;
  // The forward model of a candidate, built on first use (DWDP: with its fitted copy time and
  // its sampled saturated forwards).
  const auto model_of = [&](size_t i) -> const ForwardModel& {
    auto found = models.find(i);
    if (found != models.end()) return *found->second;
    SizingCandidate& c = result.candidates[i];
    auto model = std::make_unique<ForwardModel>(scenario, table, c);
    if (c.kind == Parallelism::kDwdp) {
      const double m = static_cast<double>(c.max_num_tokens);
      c.copy_ns_per_layer = FitCopyTime(
          *model, m, static_cast<double>(context_by_mnt[c.max_num_tokens]), c.dwdp.forward_ns);
      model->set_copy_ns(c.copy_ns_per_layer);
      model->Prepare();
      std::vector<double> times;
      double tokens = 0;
      double time = 0;
      const auto& saturated = saturated_by_mnt[c.max_num_tokens];
      for (size_t r = 0; r < std::min<size_t>(4, saturated.size()); ++r) {
        for (const ForwardLoad& l : saturated[r]) {
          const double f = model->Rank(l);
          times.push_back(f);
          tokens += static_cast<double>(l.tokens);
          time += f;
        }
      }
      c.saturated_tokens_per_s_per_gpu = time > 0 ? tokens / time * 1e9 : 0;
      c.saturated_forward_p50_ms = Percentile(times, 0.5) / 1e6;
      c.saturated_forward_p99_ms = Percentile(times, 0.99) / 1e6;
    }
    return *models.emplace(i, std::move(model)).first->second;
  };
  const auto run = [&](size_t i, double rate_per_gpu) {
    const SizingCandidate& c = result.candidates[i];
    ++result.des_runs;
    TtftStats s = RunDes(model_of(i), c.kind, c.group_size, c.max_num_tokens, stream,
                         rate_per_gpu * static_cast<double>(c.group_size));
    if (s.stable) {
      result.pareto.push_back({c.kind, c.Label(), rate_per_gpu * mean_length, s.p99_ms, s.p50_ms});
    }
    return s;
  };
  // The largest rate per GPU within the targets, by bisection between 2% of saturation and
  // saturation.
  const auto max_rate = [&](size_t i) {
    const double saturated = result.candidates[i].saturated_tokens_per_s_per_gpu / mean_length;
    double low = 0.02 * saturated;
    double high = saturated;
    for (int step = 0; step < 8; ++step) {
      const double mid = (low + high) / 2;
      (Meets(run(i, mid), evaluation) ? low : high) = mid;
    }
    return low;
  };
  const int64_t gpu_cap = request.max_gpus > 0 ? request.max_gpus : int64_t{1} << 40;
  for (Parallelism kind : {Parallelism::kDwdp, Parallelism::kDep}) {
    // (GPUs to test, -saturated throughput bound, candidate): the smallest count first.
    using Entry = std::tuple<int64_t, double, size_t>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;
    for (size_t i = 0; i < result.candidates.size(); ++i) {
      const SizingCandidate& c = result.candidates[i];
      if (c.kind == kind && c.fail_kind.empty()) {
        queue.push({lower_bound_gpus(c), -rate_bound(c), i});
      }
    }
    std::optional<size_t> best;
    int64_t best_gpus = std::numeric_limits<int64_t>::max();
    while (!queue.empty()) {
      const auto [gpus, neg_rate, i] = queue.top();
      queue.pop();
      if ((best && gpus >= best_gpus) || gpus > gpu_cap) break;
      SizingCandidate& c = result.candidates[i];
      if (!c.evaluated && c.kind == Parallelism::kDwdp &&
          c.dwdp.copy_pricing == CopyPricing::kDeferred) {
        // It could be the pick: price its shared copy sources now.
        absl::StatusOr<PlanCandidate> priced =
            PriceCandidate(scenario, c.dwdp, contention, tokens_cv);
        if (!priced.ok()) return priced.status();
        c.dwdp = *std::move(priced);
        c.closed_form_tokens_per_s_per_gpu = c.dwdp.tokens_per_s_per_gpu;
        if (!Recommendable(c.dwdp)) {
          c.fail_kind = "copy";
          c.fail = NotRecommendableReason(c.dwdp);
          continue;
        }
        queue.push({lower_bound_gpus(c), -rate_bound(c), i});
        continue;
      }
      if (!c.evaluated) {
        (void)model_of(i);
        // Its sampled saturated rate may allow fewer or need more GPUs than the estimate.
        const int64_t bound = lower_bound_gpus(c);
        if (bound != gpus) {
          queue.push({bound, -rate_bound(c), i});
          c.evaluated = true;
          c.min_ttft_p99_ms = -1;  // the light-load check is still due
          continue;
        }
        c.evaluated = true;
        c.min_ttft_p99_ms = -1;
      }
      if (c.min_ttft_p99_ms < 0) {
        // At a light load a request waits for almost nothing: if even that misses the target,
        // no number of GPUs helps.
        const TtftStats light = run(i, 0.02 * c.saturated_tokens_per_s_per_gpu / mean_length);
        c.min_ttft_p99_ms = light.p99_ms;
        if (!Meets(light, evaluation)) {
          c.fail_kind = "ttft";
          c.fail = absl::StrFormat("TTFT p99 %s (p50 %s) even at 2%% of its saturated rate",
                                   Ms(light.p99_ms), Ms(light.p50_ms));
          continue;
        }
      }
      const TtftStats at = run(i, result.rate / static_cast<double>(gpus));
      if (Meets(at, evaluation)) {
        c.groups = gpus / c.group_size;
        c.gpus = gpus;
        c.at_rate = at;
        if (!best || gpus < best_gpus) {
          best = i;
          best_gpus = gpus;
        }
        continue;
      }
      queue.push({gpus + c.group_size, neg_rate, i});
    }
    // Everything left over needs more GPUs than the pick (or the budget).
    for (size_t i = 0; i < result.candidates.size(); ++i) {
      SizingCandidate& c = result.candidates[i];
      if (c.kind != kind || !c.fail_kind.empty() || (best && i == *best)) continue;
      c.fail_kind = "rate";
      if (c.gpus > 0) {
        c.fail = absl::StrFormat("needs %d GPUs", c.gpus);
      } else {
        c.fail = absl::StrFormat("needs more than %d GPUs",
                                 best ? best_gpus - 1 : std::min(gpu_cap, lower_bound_gpus(c) - 1));
        if (!best && request.max_gpus > 0) {
          c.fail = absl::StrFormat("needs more than the %d GPUs allowed", request.max_gpus);
        }
      }
    }
    if (best) {
      SizingCandidate& c = result.candidates[*best];
      c.max_rate_per_gpu = std::max(max_rate(*best), result.rate / static_cast<double>(c.gpus));
    }
    (kind == Parallelism::kDwdp ? result.best_dwdp : result.best_dep) = best;
  }

  // Curves for the plot: per kind and max_num_tokens, the configuration with the highest
  // saturated throughput that was simulated, at loads from 20% to 97% of its saturation.
  for (Parallelism kind : {Parallelism::kDwdp, Parallelism::kDep}) {
    for (int64_t m : mnts) {
      std::optional<size_t> top;
      for (size_t i = 0; i < result.candidates.size(); ++i) {
        const SizingCandidate& c = result.candidates[i];
        if (c.kind != kind || c.max_num_tokens != m || !c.evaluated || c.fail_kind == "ttft" ||
            c.fail_kind == "copy" || c.saturated_tokens_per_s_per_gpu <= 0) {
          continue;
        }
        if (!top || c.saturated_tokens_per_s_per_gpu >
                        result.candidates[*top].saturated_tokens_per_s_per_gpu) {
          top = i;
        }
      }
      if (!top) continue;
      const double saturated = result.candidates[*top].saturated_tokens_per_s_per_gpu / mean_length;
      for (double load : {0.2, 0.4, 0.6, 0.75, 0.85, 0.92, 0.97}) (void)run(*top, load * saturated);
    }
  }

  // The Pareto front of every DES run: no other point has more tokens/s per GPU at a lower
  // TTFT p99.
  std::vector<size_t> by_rate(result.pareto.size());
  std::iota(by_rate.begin(), by_rate.end(), 0);
  result.on_front.assign(result.pareto.size(), false);
  for (Parallelism kind : {Parallelism::kDwdp, Parallelism::kDep}) {
    std::sort(by_rate.begin(), by_rate.end(), [&](size_t a, size_t b) {
      return result.pareto[a].ttft_p99_ms < result.pareto[b].ttft_p99_ms;
    });
    double best_rate = -1;
    for (size_t i : by_rate) {
      if (result.pareto[i].kind != kind) continue;
      if (result.pareto[i].tokens_per_s_per_gpu > best_rate) {
        result.on_front[i] = true;
        best_rate = result.pareto[i].tokens_per_s_per_gpu;
      }
    }
  }

  if (result.best_dwdp || result.best_dep) result.recommendation = RecommendationText(result);
  if (!result.best_dwdp && !result.best_dep) {
    // Say why: memory, the copies, or the TTFT target.
    double best_ttft = kInfinity;
    bool any_fits = false;
    for (const SizingCandidate& c : result.candidates) {
      any_fits = any_fits || c.fits;
      if (c.evaluated && c.min_ttft_p99_ms > 0) best_ttft = std::min(best_ttft, c.min_ttft_p99_ms);
    }
    if (!any_fits) {
      return absl::FailedPreconditionError(
          absl::StrFormat("no DWDP or DEP configuration of %s fits in the %s of %s", result.model,
                          FormatBytes(static_cast<uint64_t>(hw.hbm_bytes.value)), hw.name));
    }
    bool any_rate = false;
    for (const SizingCandidate& c : result.candidates) any_rate = any_rate || c.fail_kind == "rate";
    if (request.max_gpus > 0 && any_rate) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "no configuration holds %.3g requests/s within TTFT p99 %s on %d GPUs or fewer",
          result.rate, Ms(request.ttft_p99_ms), request.max_gpus));
    }
    return absl::FailedPreconditionError(absl::StrFormat(
        "no configuration meets TTFT p99 %s%s at any load: the best reaches %s at a light load",
        Ms(request.ttft_p99_ms),
        request.ttft_p50_ms ? absl::StrCat(" and p50 ", Ms(*request.ttft_p50_ms)) : "",
        Ms(best_ttft)));
  }
  return result;
}

}  // namespace dwdp
