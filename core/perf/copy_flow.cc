#include "core/perf/copy_flow.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>

namespace dwdp {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Pair rate of one puller and egress of one source, bytes per ns.
struct Rates {
  double pair = 0;
  double egress = 0;
  double fanout = 1;
  double fabric = 0;  // pooled over the group, 0: none
  double latency_ns = 0;
  double slowdown = 0;
  double read_bw = 0;  // bytes per ns a kernel reads its tensors at
};

Rates RatesOf(const HardwareProfile& hw) {
  Rates r;
  r.pair =
      hw.peer_copy_bw.value > 0 ? hw.peer_copy_bw.value / 1e9 : 0.85 * hw.nvlink_bw.value / 1e9;
  r.egress = hw.egress_bw.value > 0 ? hw.egress_bw.value / 1e9 : r.pair;
  r.fanout = hw.egress_fanout_efficiency.value > 0
                 ? std::min(1.0, hw.egress_fanout_efficiency.value)
                 : 1.0;
  r.fabric = std::max(0.0, hw.fabric_bw.value) / 1e9;
  r.latency_ns = std::max(0.0, hw.copy_latency_ns.value);
  r.slowdown = std::max(0.0, hw.compute_slowdown.value);
  r.read_bw = hw.compute_read_bw.value > 0
                  ? hw.compute_read_bw.value / 1e9
                  : hw.hbm_bw.value *
                        (hw.memory_efficiency.value > 0 ? hw.memory_efficiency.value : 1.0) / 1e9;
  return r;
}

// The event-driven pipeline of every rank (or of one representative rank of a Latin square,
// where no source is ever shared).
class Pipeline {
 public:
  Pipeline(const GroupCopies& copies, const Rates& rates, const PipelineCompute& compute,
           int64_t layers, bool shared_sources)
      : copies_(copies),
        rates_(rates),
        compute_(compute),
        layers_(layers),
        shared_(shared_sources),
        ranks_(shared_sources ? static_cast<int64_t>(copies.ranks.size()) : 1) {
    const double floor_ns = rates.read_bw > 0 ? compute.moe_read_bytes / rates.read_bw : 0.0;
    moe_work_ns_ = std::max(compute.moe_ns, floor_ns);
    copy_.resize(static_cast<size_t>(ranks_));
    comp_.resize(static_cast<size_t>(ranks_));
    ready_.assign(static_cast<size_t>(ranks_ * layers_), kInfinity);
    moe_end_.assign(static_cast<size_t>(ranks_ * layers_), kInfinity);
    layer_start_.assign(static_cast<size_t>(ranks_ * layers_), 0);
    layer_stall_.assign(static_cast<size_t>(ranks_ * layers_), 0);
    sources_.assign(copies.ranks.size(), {});
    gpu_flows_.assign(copies.ranks.size(), 0);
    const size_t entities = 3 * copies.ranks.size();
    leaves_ = 1;
    while (leaves_ < entities) leaves_ *= 2;
    due_.assign(leaves_, kInfinity);
    tree_.assign(2 * leaves_, 0);
    for (size_t e = 0; e < leaves_; ++e) tree_[leaves_ + e] = static_cast<int64_t>(e);
    for (size_t i = leaves_ - 1; i >= 1; --i) tree_[i] = tree_[2 * i];
  }

  void Run() {
    for (int64_t r = 0; r < ranks_; ++r) {
      Comp& c = comp_[static_cast<size_t>(r)];
      c.phase = CompPhase::kPrelude;
      c.remaining = compute_.prelude_ns;
      c.rate = 1;
      Schedule(CompId(r));
    }
    // Every GPU's compute is set up before any copy starts: a copy slows its source's kernels.
    for (int64_t r = 0; r < ranks_; ++r) StartLayerCopy(r, 0);
    while (due_[static_cast<size_t>(Next())] < kInfinity) {
      const int64_t entity = Next();
      now_ = due_[static_cast<size_t>(entity)];
      SetDue(entity, kInfinity);
      const int64_t r = entity / 3;
      switch (entity % 3) {
        case 0:
          CopyDone(r);
          break;
        case 1:
          CompDone(r);
          break;
        default:
          SourceDone(r);
          break;
      }
    }
  }

  double forward_end(int64_t r) const { return comp_[static_cast<size_t>(r)].end_ns; }
  double moe_end(int64_t r, int64_t l) const { return moe_end_[Index(r, l)]; }
  double stall(int64_t r) const { return comp_[static_cast<size_t>(r)].stall_ns; }
  double layer_stall(int64_t r, int64_t l) const { return layer_stall_[Index(r, l)]; }
  double copy_span(int64_t r, int64_t l) const {
    return ready_[Index(r, l)] - layer_start_[Index(r, l)];
  }

 private:
  enum class CopyPhase { kIdle, kLatency, kPayload, kWaitFree, kDone };
  enum class CompPhase { kPrelude, kPreMoe, kWaitReady, kMoe, kDone };
  struct Copy {
    CopyPhase phase = CopyPhase::kIdle;
    int64_t layer = 0;
    size_t visit = 0;
    double remaining = 0;
    double rate = 0;
    double last = 0;
  };
  struct Source {
    std::vector<std::pair<double, int64_t>> readers;  // (served target, rank), a min-heap
    double served = 0;                                // bytes per reader since the start
    double rate = 0;                                  // bytes per ns per reader
    double last = 0;
  };
  struct Comp {
    CompPhase phase = CompPhase::kPrelude;
    int64_t layer = 0;
    double remaining = 0;
    double rate = 1;
    double last = 0;
    double waiting_since = 0;
    double stall_ns = 0;
    double end_ns = 0;
  };

  size_t Index(int64_t r, int64_t l) const { return static_cast<size_t>(r * layers_ + l); }
  static int64_t CopyId(int64_t r) { return 3 * r; }
  static int64_t CompId(int64_t r) { return 3 * r + 1; }
  static int64_t SourceId(int64_t s) { return 3 * s + 2; }
  // The k-th visit of rank r's copy of `layer`: the plan's order, rotated by the layer under
  // the staggered schedule (LayerCopyOrder).
  const CopyVisit& VisitAt(int64_t r, int64_t layer, size_t k) const {
    const std::vector<CopyVisit>& visits = copies_.ranks[static_cast<size_t>(r)];
    const size_t shift =
        copies_.staggered ? static_cast<size_t>(std::max<int64_t>(layer, 0)) % visits.size() : 0;
    return visits[(k + shift) % visits.size()];
  }
  const CopyVisit& VisitOf(int64_t r) const {
    const Copy& c = copy_[static_cast<size_t>(r)];
    return VisitAt(r, c.layer, c.visit);
  }

  void Advance(Copy& c) {
    c.remaining -= c.rate * (now_ - c.last);
    c.last = now_;
  }
  void Advance(Comp& c) {
    c.remaining -= c.rate * (now_ - c.last);
    c.last = now_;
  }
  // Every entity (a rank's copy stream, compute stream or a source) has at most one pending
  // completion: a tournament tree over their due times finds the next (ties by entity, so runs
  // are deterministic) and takes a new due time in log(entities) steps.
  bool Earlier(int64_t a, int64_t b) const {
    const double ta = due_[static_cast<size_t>(a)];
    const double tb = due_[static_cast<size_t>(b)];
    return ta != tb ? ta < tb : a < b;
  }
  int64_t Next() const { return tree_[1]; }
  void SetDue(int64_t entity, double t) {
    due_[static_cast<size_t>(entity)] = t;
    for (size_t i = (leaves_ + static_cast<size_t>(entity)) / 2; i >= 1; i /= 2) {
      const int64_t a = tree_[2 * i];
      const int64_t b = tree_[2 * i + 1];
      const int64_t winner = Earlier(b, a) ? b : a;
      // Another entity still wins here: nothing above changes.
      if (winner == tree_[i] && winner != entity) break;
      tree_[i] = winner;
    }
  }
  void Schedule(int64_t entity) {
    const int64_t r = entity / 3;
    double remaining = 0;
    double rate = 0;
    if (entity % 3 == 0) {
      remaining = copy_[static_cast<size_t>(r)].remaining;
      rate = copy_[static_cast<size_t>(r)].rate;
    } else {
      remaining = comp_[static_cast<size_t>(r)].remaining;
      rate = comp_[static_cast<size_t>(r)].rate;
    }
    SetDue(entity, rate > 0 ? now_ + std::max(0.0, remaining) / rate : kInfinity);
  }
  void Unschedule(int64_t entity) { SetDue(entity, kInfinity); }

  // A flow touching GPU g started or ended: its kernels run slower while any does.
  void GpuFlow(int64_t g, int delta) {
    if (!shared_ && g != 0) return;  // one representative rank: only its own GPU is tracked
    int& flows = gpu_flows_[static_cast<size_t>(g)];
    const bool before = flows > 0;
    flows += delta;
    const bool after = flows > 0;
    if (before == after || g >= ranks_) return;
    Comp& c = comp_[static_cast<size_t>(g)];
    if (c.phase == CompPhase::kWaitReady || c.phase == CompPhase::kDone) return;
    Advance(c);
    c.rate = after ? 1.0 / (1.0 + rates_.slowdown) : 1.0;
    Schedule(CompId(g));
  }

  // The copies reading one source share its egress equally (processor sharing): every reader
  // gets the same rate, so one clock per source, `served` bytes per reader so far, tells when
  // each finishes, and a change of readers reschedules one event, not one per reader.
  double ShareOf(const Source& source) const {
    const size_t n = source.readers.size();
    if (n == 0) return 0;
    const double egress = rates_.egress * (n >= 2 ? rates_.fanout : 1.0);
    return std::min(rates_.pair, egress / static_cast<double>(n));
  }
  void AdvanceSource(Source& source) {
    source.served += source.rate * (now_ - source.last);
    source.last = now_;
  }
  void ScheduleSource(int64_t s) {
    const Source& source = sources_[static_cast<size_t>(s)];
    if (source.readers.empty() || source.rate <= 0) {
      SetDue(SourceId(s), kInfinity);
      return;
    }
    const double left = std::max(0.0, source.readers.front().first - source.served);
    SetDue(SourceId(s), now_ + left / source.rate);
  }
  // The readers of `s` changed: its share (or, with a pooled fabric, every source's) is new.
  void Reshare(int64_t s) {
    if (rates_.fabric <= 0) {
      Source& source = sources_[static_cast<size_t>(s)];
      source.rate = ShareOf(source);
      ScheduleSource(s);
      return;
    }
    // Pooled fabric: water-fill its capacity over all readers, each capped by its source share.
    std::vector<std::pair<double, int64_t>> caps;  // (share, source)
    size_t readers = 0;
    for (size_t q = 0; q < sources_.size(); ++q) {
      AdvanceSource(sources_[q]);
      if (sources_[q].readers.empty()) continue;
      caps.push_back({ShareOf(sources_[q]), static_cast<int64_t>(q)});
      readers += sources_[q].readers.size();
    }
    std::sort(caps.begin(), caps.end());
    double left = rates_.fabric * static_cast<double>(sources_.size());
    for (const auto& [share, q] : caps) {
      const double n = static_cast<double>(sources_[static_cast<size_t>(q)].readers.size());
      const double rate = std::min(share, left / static_cast<double>(readers));
      left -= rate * n;
      readers -= sources_[static_cast<size_t>(q)].readers.size();
      sources_[static_cast<size_t>(q)].rate = rate;
      ScheduleSource(q);
    }
  }
  static bool LaterTarget(const std::pair<double, int64_t>& a,
                          const std::pair<double, int64_t>& b) {
    return a > b;  // a min-heap by target, then rank
  }
  void JoinSource(int64_t r, int64_t s, uint64_t bytes) {
    Source& source = sources_[static_cast<size_t>(s)];
    AdvanceSource(source);
    source.readers.push_back({source.served + static_cast<double>(bytes), r});
    std::push_heap(source.readers.begin(), source.readers.end(), LaterTarget);
    Reshare(s);
  }
  void SourceDone(int64_t s) {
    Source& source = sources_[static_cast<size_t>(s)];
    AdvanceSource(source);
    std::pop_heap(source.readers.begin(), source.readers.end(), LaterTarget);
    const int64_t r = source.readers.back().second;
    source.readers.pop_back();
    Reshare(s);
    PayloadDone(r);
  }

  void StartLayerCopy(int64_t r, int64_t layer) {
    Copy& c = copy_[static_cast<size_t>(r)];
    c.layer = layer;
    c.visit = 0;
    layer_start_[Index(r, layer)] = now_;
    StartVisit(r);
  }

  void StartVisit(int64_t r) {
    Copy& c = copy_[static_cast<size_t>(r)];
    const auto& visits = copies_.ranks[static_cast<size_t>(r)];
    while (c.visit < visits.size() && VisitAt(r, c.layer, c.visit).bytes == 0) ++c.visit;
    if (c.visit >= visits.size()) {
      LayerCopied(r);
      return;
    }
    const CopyVisit& v = VisitAt(r, c.layer, c.visit);
    c.phase = CopyPhase::kLatency;
    c.remaining = static_cast<double>(v.copies) * rates_.latency_ns;
    c.rate = 1;
    c.last = now_;
    GpuFlow(r, +1);
    GpuFlow(v.source, +1);
    Schedule(CopyId(r));
  }

  void CopyDone(int64_t r) {
    Copy& c = copy_[static_cast<size_t>(r)];
    Advance(c);
    const CopyVisit& v = VisitOf(r);
    if (c.phase == CopyPhase::kLatency) {
      c.phase = CopyPhase::kPayload;
      if (shared_) {
        c.rate = 0;
        Unschedule(CopyId(r));
        JoinSource(r, v.source, v.bytes);
      } else {
        // A Latin square: the source has this one reader.
        c.remaining = static_cast<double>(v.bytes);
        c.rate = std::min(rates_.pair, rates_.egress);
        Schedule(CopyId(r));
      }
      return;
    }
    PayloadDone(r);
  }

  void PayloadDone(int64_t r) {
    Copy& c = copy_[static_cast<size_t>(r)];
    const CopyVisit& v = VisitOf(r);
    c.phase = CopyPhase::kIdle;
    c.rate = 0;
    Unschedule(CopyId(r));
    // The next visit starts before this one's flows are let go, so the GPUs' kernels do not
    // speed up for the instant between two copies.
    const int64_t source = v.source;
    ++c.visit;
    StartVisit(r);
    GpuFlow(r, -1);
    GpuFlow(source, -1);
  }

  void LayerCopied(int64_t r) {
    Copy& c = copy_[static_cast<size_t>(r)];
    ready_[Index(r, c.layer)] = now_;
    Comp& comp = comp_[static_cast<size_t>(r)];
    if (comp.phase == CompPhase::kWaitReady && comp.layer == c.layer) StartMoe(r);
    const int64_t next = c.layer + 1;
    if (next >= layers_) {
      c.phase = CopyPhase::kDone;
      return;
    }
    c.layer = next;
    if (next < compute_.num_buffers || moe_end_[Index(r, next - compute_.num_buffers)] <= now_) {
      StartLayerCopy(r, next);
    } else {
      c.phase = CopyPhase::kWaitFree;  // X.wait(free[slot])
    }
  }

  void StartMoe(int64_t r) {
    Comp& c = comp_[static_cast<size_t>(r)];
    c.stall_ns += now_ - c.waiting_since;
    layer_stall_[Index(r, c.layer)] = now_ - c.waiting_since;
    c.phase = CompPhase::kMoe;
    c.remaining = moe_work_ns_;
    c.last = now_;
    c.rate = gpu_flows_[static_cast<size_t>(r)] > 0 ? 1.0 / (1.0 + rates_.slowdown) : 1.0;
    Schedule(CompId(r));
  }

  void StartPreMoe(int64_t r, int64_t layer) {
    Comp& c = comp_[static_cast<size_t>(r)];
    c.phase = CompPhase::kPreMoe;
    c.layer = layer;
    c.remaining = compute_.pre_moe_ns;
    c.last = now_;
    c.rate = gpu_flows_[static_cast<size_t>(r)] > 0 ? 1.0 / (1.0 + rates_.slowdown) : 1.0;
    Schedule(CompId(r));
  }

  void CompDone(int64_t r) {
    Comp& c = comp_[static_cast<size_t>(r)];
    Advance(c);
    switch (c.phase) {
      case CompPhase::kPrelude:
        StartPreMoe(r, 0);
        return;
      case CompPhase::kPreMoe:
        c.waiting_since = now_;
        if (ready_[Index(r, c.layer)] <= now_) {
          StartMoe(r);
        } else {
          c.phase = CompPhase::kWaitReady;
          c.rate = 0;
          Unschedule(CompId(r));
        }
        return;
      case CompPhase::kMoe: {
        moe_end_[Index(r, c.layer)] = now_;
        // The copy k positions later may start now (free[slot] is recorded after this kernel).
        Copy& copy = copy_[static_cast<size_t>(r)];
        if (copy.phase == CopyPhase::kWaitFree && copy.layer == c.layer + compute_.num_buffers) {
          StartLayerCopy(r, copy.layer);
        }
        if (c.layer + 1 < layers_) {
          StartPreMoe(r, c.layer + 1);
        } else {
          c.phase = CompPhase::kDone;
          c.end_ns = now_;
          c.rate = 0;
          Unschedule(CompId(r));
        }
        return;
      }
      case CompPhase::kWaitReady:
      case CompPhase::kDone:
        return;
    }
  }

  const GroupCopies& copies_;
  Rates rates_;
  PipelineCompute compute_;
  int64_t layers_;
  bool shared_;
  int64_t ranks_;
  double moe_work_ns_ = 0;
  double now_ = 0;
  std::vector<Copy> copy_;
  std::vector<Comp> comp_;
  std::vector<double> ready_;
  std::vector<double> moe_end_;
  std::vector<double> layer_start_;
  std::vector<double> layer_stall_;
  std::vector<Source> sources_;
  std::vector<int> gpu_flows_;
  size_t leaves_ = 1;
  std::vector<int64_t> tree_;  // tree_[i]: the entity due first below node i; leaves from leaves_
  std::vector<double> due_;    // entity -> when its current phase completes
};

}  // namespace

GroupCopies GroupCopiesOf(const GroupLayout& layout, const ContentionConfig& contention) {
  GroupCopies out;
  out.staggered = contention.mode == ContentionMode::kStaggered;
  const int64_t d = static_cast<int64_t>(layout.ranks.size());
  out.ranks.resize(static_cast<size_t>(d));
  out.served_bytes.assign(static_cast<size_t>(d), 0);
  for (int64_t r = 0; r < d; ++r) {
    const CopyPlan plan = MakeCopyPlan(layout, r, contention);
    std::vector<CopyVisit>& visits = out.ranks[static_cast<size_t>(r)];
    uint64_t pulled = 0;
    for (const CopyOp& op : plan.ops) {
      if (!visits.empty() && visits.back().source == op.src_rank) {
        visits.back().bytes += op.bytes;
        ++visits.back().copies;
      } else {
        visits.push_back({op.src_rank, op.bytes, 1});
      }
      out.served_bytes[static_cast<size_t>(op.src_rank)] += op.bytes;
      pulled += op.bytes;
    }
    out.pulled_bytes_max = std::max(out.pulled_bytes_max, pulled);
    out.copies_max = std::max(out.copies_max, static_cast<int64_t>(plan.ops.size()));
  }
  // Latin square: rank r's j-th visit is rank 0's shifted by r, with the same bytes and copies.
  out.latin_square = true;
  const std::vector<CopyVisit>& first = out.ranks.front();
  for (int64_t r = 1; r < d && out.latin_square; ++r) {
    const std::vector<CopyVisit>& visits = out.ranks[static_cast<size_t>(r)];
    if (visits.size() != first.size()) {
      out.latin_square = false;
      break;
    }
    for (size_t j = 0; j < visits.size(); ++j) {
      if (visits[j].source != (first[j].source + r) % d || visits[j].bytes != first[j].bytes ||
          visits[j].copies != first[j].copies) {
        out.latin_square = false;
        break;
      }
    }
  }
  return out;
}

double UncontendedLayerCopyNs(const GroupCopies& copies, const HardwareProfile& hw, int64_t rank) {
  const Rates rates = RatesOf(hw);
  const double rate = std::min(rates.pair, rates.egress);
  double ns = 0;
  for (const CopyVisit& v : copies.ranks.at(static_cast<size_t>(rank))) {
    if (v.bytes == 0) continue;
    ns += static_cast<double>(v.copies) * rates.latency_ns +
          (rate > 0 ? static_cast<double>(v.bytes) / rate : 0.0);
  }
  return ns;
}

double GroupPipeline::slowest_forward_ns() const {
  return forward_ns.empty() ? 0.0 : *std::max_element(forward_ns.begin(), forward_ns.end());
}

double GroupPipeline::spread() const {
  if (!fluid) return 0;
  const double mean = slowest_forward_ns();
  return mean > 0 ? (forward_high_ns - forward_low_ns) / mean : 0.0;
}

int64_t GroupPipeline::slowest_rank() const {
  return forward_ns.empty()
             ? 0
             : static_cast<int64_t>(std::max_element(forward_ns.begin(), forward_ns.end()) -
                                    forward_ns.begin());
}

namespace {

// One run of the pipeline model; forwards, stalls and copy spans per rank.
struct PipelineRun {
  std::vector<double> forward_ns, stall_ns, copy_ns;
};

PipelineRun RunOnce(const GroupCopies& copies, const Rates& rates, const PipelineCompute& compute,
                    bool fluid) {
  const int64_t layers = compute.moe_layers;
  const int64_t d = static_cast<int64_t>(copies.ranks.size());
  const int64_t simulated = fluid ? d : 1;
  // A group whose copies hide behind compute with room to spare settles into one pace per
  // layer; a probe of a few layers then gives the rest of the forward (its last layers, which
  // prefetch nothing, end the probe as they end the forward). Anything else runs every layer.
  constexpr int64_t kProbeLayers = 16;
  constexpr int64_t kSteadyLayers = 3;
  const auto collect = [&](const Pipeline& pipeline, int64_t run_layers, int64_t steady_layer) {
    PipelineRun out;
    const double rest = static_cast<double>(layers - run_layers);
    for (int64_t r = 0; r < simulated; ++r) {
      double forward = pipeline.forward_end(r);
      double stall = pipeline.stall(r);
      double copy = 0;
      for (int64_t l = 0; l < run_layers; ++l) copy += pipeline.copy_span(r, l);
      if (steady_layer > 0) {
        forward +=
            rest * (pipeline.moe_end(r, steady_layer) - pipeline.moe_end(r, steady_layer - 1));
        copy += rest * pipeline.copy_span(r, steady_layer);
      }
      out.forward_ns.push_back(forward);
      out.stall_ns.push_back(stall);
      out.copy_ns.push_back(copy / static_cast<double>(layers));
    }
    // A Latin square: every rank runs like rank 0.
    out.forward_ns.resize(static_cast<size_t>(d), out.forward_ns.front());
    out.stall_ns.resize(static_cast<size_t>(d), out.stall_ns.front());
    out.copy_ns.resize(static_cast<size_t>(d), out.copy_ns.front());
    return out;
  };
  const int64_t steady_layer = kProbeLayers - compute.num_buffers - 1;
  // Only a group whose copies, uncontended, fit in 80% of a layer can settle that way.
  double uncontended = 0;
  for (const std::vector<CopyVisit>& visits : copies.ranks) {
    double ns = 0;
    for (const CopyVisit& v : visits) {
      ns += static_cast<double>(v.copies) * rates.latency_ns +
            static_cast<double>(v.bytes) / std::min(rates.pair, rates.egress);
    }
    uncontended = std::max(uncontended, ns);
  }
  const bool may_settle = uncontended <= 0.8 * (compute.pre_moe_ns + compute.moe_ns);
  if (may_settle && layers > 2 * kProbeLayers && steady_layer > kSteadyLayers) {
    PipelineCompute probe_compute = compute;
    probe_compute.moe_layers = kProbeLayers;
    Pipeline probe(copies, rates, probe_compute, kProbeLayers, fluid);
    probe.Run();
    const double layer_ns = compute.pre_moe_ns + compute.moe_ns;
    bool steady = true;
    for (int64_t r = 0; r < simulated && steady; ++r) {
      const double pace = probe.moe_end(r, steady_layer) - probe.moe_end(r, steady_layer - 1);
      const double span = probe.copy_span(r, steady_layer);
      const double growth = (span - probe.copy_span(r, steady_layer - kSteadyLayers)) /
                            static_cast<double>(kSteadyLayers);
      // Copies that keep growing at this rate stay within 80% of a layer to the end.
      steady = span + std::max(0.0, growth) * static_cast<double>(layers - steady_layer) <=
               0.8 * layer_ns;
      for (int64_t l = steady_layer - kSteadyLayers + 1; l <= steady_layer && steady; ++l) {
        const double step = probe.moe_end(r, l) - probe.moe_end(r, l - 1);
        steady = std::fabs(step - pace) <= 2e-3 * pace && probe.layer_stall(r, l) <= 1e-6 * pace;
      }
    }
    if (steady) return collect(probe, kProbeLayers, steady_layer);
  }
  Pipeline pipeline(copies, rates, compute, layers, fluid);
  pipeline.Run();
  return collect(pipeline, layers, 0);
}

}  // namespace

GroupPipeline PriceGroupPipeline(const GroupCopies& copies, const HardwareProfile& hw,
                                 const PipelineCompute& compute) {
  GroupPipeline out;
  const int64_t d = static_cast<int64_t>(copies.ranks.size());
  const int64_t layers = compute.moe_layers;
  if (d == 0 || layers <= 0) return out;
  const Rates rates = RatesOf(hw);
  out.fluid = !copies.latin_square;
  if (!out.fluid) {
    const PipelineRun run = RunOnce(copies, rates, compute, false);
    out.forward_ns = run.forward_ns;
    out.stall_ns = run.stall_ns;
    out.copy_ns_per_layer = run.copy_ns;
    return out;
  }
  // Ranks that drift in and out of step share sources in ways that tiny differences decide (a
  // copy a few microseconds later tips a layer into a shared source, and the next layer starts
  // later still). Where that can happen, the price is the mean of runs with the per-copy fixed
  // cost as given, 5% lower and 5% higher, and how far those runs are apart says how predictable
  // the candidate is. A group whose every layer's copies take at most 80% of a layer's compute
  // starts each layer's copies in step and cannot tip: one run is its price.
  const double layer_ns = compute.pre_moe_ns + std::max(compute.moe_ns, 0.0);
  constexpr double kPerturbations[] = {1.0, 0.95, 1.05};
  std::vector<PipelineRun> runs;
  for (double factor : kPerturbations) {
    Rates perturbed = rates;
    perturbed.latency_ns *= factor;
    runs.push_back(RunOnce(copies, perturbed, compute, true));
    if (runs.size() == 1) {
      const double longest = *std::max_element(runs[0].copy_ns.begin(), runs[0].copy_ns.end());
      if (longest <= 0.8 * layer_ns) break;
    }
  }
  out.forward_ns.assign(static_cast<size_t>(d), 0);
  out.stall_ns.assign(static_cast<size_t>(d), 0);
  out.copy_ns_per_layer.assign(static_cast<size_t>(d), 0);
  double low = kInfinity;
  double high = 0;
  const double share = 1.0 / static_cast<double>(runs.size());
  for (const PipelineRun& run : runs) {
    const double slowest = *std::max_element(run.forward_ns.begin(), run.forward_ns.end());
    low = std::min(low, slowest);
    high = std::max(high, slowest);
    for (size_t r = 0; r < static_cast<size_t>(d); ++r) {
      out.forward_ns[r] += run.forward_ns[r] * share;
      out.stall_ns[r] += run.stall_ns[r] * share;
      out.copy_ns_per_layer[r] += run.copy_ns[r] * share;
    }
  }
  out.forward_low_ns = low;
  out.forward_high_ns = high;
  return out;
}

}  // namespace dwdp
