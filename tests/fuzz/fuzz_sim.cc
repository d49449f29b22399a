// Whole functional runs of the simulator (backends/sim: setup, forwards, teardown through the
// GroupRuntime the GPU uses) on small scenarios decoded from fuzzer bytes (sim_case.h), plus a
// check of the core's copy plans that does not go through the simulator at all.
//
// Properties:
// * a case that is not a valid scenario fails ValidatePartition and ComputeGroupLayout with a
//   clean InvalidArgument status naming the failing check; a valid one always gets a layout
//   (every byte count here is far from overflow) and is then:
// * delivered exactly, by the plans alone: for every rank, every contention mode and the
//   edge-fill plan, the copies write each byte the layout says the rank must receive exactly
//   once and nothing else; every byte comes from the handle of the expert's owner (the lowest
//   rank holding it, Partition::owner), from that owner's own experts, at the handle offset
//   that holds it; and lands where the composite VA's map plan puts that tensor byte: the
//   pre/post pool pages of the weight, never shared with another weight of the slot, or the
//   edge bytes of the rank's local handle, never its own experts. The expectation comes from
//   the partition (ranges, owners) and the layout's byte fields (DWDP_SPEC §2-§4), not from
//   the plans;
// * simulated cleanly: SimulateScenario in functional mode with the hazard checker gives an
//   ok report (every byte the MoE kernel reads verified) with no hazard, no error, nothing
//   alive after teardown, and each layer copies exactly the rank's remote bytes per forward.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/sim/simulate.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "fuzz_check.h"
#include "sim_case.h"

namespace dwdp::fuzz {
namespace {

// Bytes [begin, end) of one weight's tensor, or of a slot's pool pages.
struct ByteRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t bytes() const { return end - begin; }
};

std::string Text(const ByteRange& range) {
  return absl::StrCat("[", range.begin, ", ", range.end, ")");
}

// Appends [begin, end) when it is not empty, merging it with the last range when they touch.
void AddRange(std::vector<ByteRange>& ranges, uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  if (!ranges.empty() && ranges.back().end == begin) {
    ranges.back().end = end;
    return;
  }
  ranges.push_back({begin, end});
}

// ---------------------------------------------------------------------------------------
// What a rank must receive, from the partition and the layout's byte fields.

// Per-layer copies: every expert outside the rank's own range, whole (DWDP_SPEC §4: the
// remote slices [0, ls) and [le, N)).
std::vector<ByteRange> RemoteExpertBytes(const Partition& partition, int64_t rank, uint64_t eb) {
  const PeerRange own = partition.range_of(rank);
  std::vector<ByteRange> ranges;
  for (int64_t e = 0; e < partition.num_experts(); ++e) {
    if (own.contains(e)) continue;
    AddRange(ranges, static_cast<uint64_t>(e) * eb, static_cast<uint64_t>(e + 1) * eb);
  }
  return ranges;
}

// Edge fill at setup: the bytes of other ranks' experts that share the local handle's first
// and last granule (DWDP_SPEC §2 "Edge bytes"), [page_start, lsb) and [leb, page_end) within
// the tensor.
std::vector<ByteRange> EdgeBytes(const WeightLayout& wl) {
  std::vector<ByteRange> ranges;
  AddRange(ranges, wl.page_start, wl.local_begin);
  AddRange(ranges, wl.local_end, std::min(wl.page_end, wl.tensor_bytes));
  return ranges;
}

// Where tensor byte x of `wl` lives in the rank's memory, from the spec's layout: the local
// handle holds [page_start, page_end) from its offset 0; pool pages hold the rest, the weight
// taking `first_page` onwards of its slot, pre pages first (tensor byte x at VA
// pre_padding + x), then post pages (starting at tensor byte page_end).
struct Place {
  bool local_handle = false;
  uint64_t offset = 0;  // in the local handle, or in the slot's pages (page · PG + offset)
  friend bool operator==(const Place&, const Place&) = default;
};

Place SpecPlace(const WeightLayout& wl, uint64_t first_page, uint64_t pg, uint64_t x) {
  if (x >= wl.page_start && x < wl.page_end) return {true, x - wl.page_start};
  if (x < wl.page_start) return {false, first_page * pg + wl.pre_padding + x};
  return {false, first_page * pg + wl.pre_size + (x - wl.page_end)};
}

// The same from the map plan of the composite VA (the code under test): the piece holding VA
// pre_padding + x.
Place PlanPlace(const MapPlan& plan, uint64_t pg, uint64_t x) {
  const uint64_t va = plan.pre_padding + x;
  for (const MapPiece& piece : plan.pieces) {
    if (va < piece.va_offset || va >= piece.va_offset + piece.bytes) continue;
    if (piece.kind == MapPiece::Kind::kLocalHandle) return {true, va - piece.va_offset};
    return {false, static_cast<uint64_t>(piece.pool_page) * pg + (va - piece.va_offset)};
  }
  DWDP_FUZZ_CHECK(false, absl::StrCat("no piece of the map plan of weight ", plan.weight,
                                      " holds VA offset ", va));
  return {};
}

// ---------------------------------------------------------------------------------------
// The copies of a plan against what the rank must receive.

struct PlanCheck {
  const GroupLayout& layout;
  const Partition& partition;
  int64_t rank;
  std::string what;  // "copy plan (rotate)" etc., for messages
  OwnerPolicy owner = OwnerPolicy::kLowest;
};

// Bytes [x, end) of the run of `op` that starts at tensor byte x lie in one expert; checks that
// they come from that expert's owner for this puller under the owner policy (the lowest rank
// that stores it, or under balanced the storer nearest the puller: the highest below its range,
// the lowest above), out of the owner's own experts, at the owner's handle offset of byte x.
int64_t ExpectedOwner(const Partition& partition, int64_t expert, int64_t puller,
                      OwnerPolicy policy) {
  if (policy == OwnerPolicy::kLowest) return partition.owner(expert).value_or(-1);
  // Independent of OwnerOf: scan the ranks that store the expert.
  int64_t nearest = -1;
  for (int64_t r = 0; r < partition.dwdp_size(); ++r) {
    if (!partition.range_of(r).contains(expert)) continue;
    if (r < puller) nearest = r;                      // below: the last (highest) one
    if (r > puller && nearest < puller) nearest = r;  // above: the first (lowest) one
    if (r > puller && nearest > puller) break;
  }
  return nearest;
}

void CheckSource(const PlanCheck& check, const CopyOp& op, uint64_t x, uint64_t end, uint64_t eb) {
  const int64_t expert = static_cast<int64_t>(x / eb);
  const absl::StatusOr<int64_t> owner =
      ExpectedOwner(check.partition, expert, check.rank, check.owner);
  DWDP_FUZZ_CHECK(owner.ok() && *owner == op.src_rank,
                  absl::StrCat(check.what, " of rank ", check.rank, ": weight ", op.weight,
                               " tensor bytes [", x, ", ", end, ") of expert ", expert,
                               " come from rank ", op.src_rank, ", its owner is ",
                               owner.ok() ? absl::StrCat(*owner) : owner.status().ToString()));
  DWDP_FUZZ_CHECK(check.partition.range_of(op.src_rank).contains(expert),
                  absl::StrCat(check.what, ": expert ", expert, " is not among rank ", op.src_rank,
                               "'s own experts"));
  // The owner's handle holds its tensor bytes from page_start on: byte x at x - page_start.
  const WeightLayout& src = check.layout.ranks[op.src_rank].weights[op.weight];
  const uint64_t read_at = op.src_offset + (x - op.dst_offset);
  DWDP_FUZZ_CHECK(read_at + src.page_start == x,
                  absl::StrCat(check.what, " of rank ", check.rank, ": weight ", op.weight,
                               " tensor byte ", x, " is read at offset ", read_at, " of rank ",
                               op.src_rank, "'s handle, which holds it at ", x - src.page_start));
  DWDP_FUZZ_CHECK(read_at + (end - x) <= src.mnnvl_size,
                  absl::StrCat(check.what, ": reads past rank ", op.src_rank, "'s handle of ",
                               src.mnnvl_size, " bytes"));
}

// Checks that the copies of `ops` for weight `w` write exactly `expected` (sorted, disjoint),
// each byte once, with the right source; returns the pool bytes they write (slot offsets).
std::vector<ByteRange> CheckWeightDelivery(const PlanCheck& check, const std::vector<CopyOp>& ops,
                                           int64_t w, const std::vector<ByteRange>& expected,
                                           uint64_t first_page) {
  const WeightLayout& wl = check.layout.ranks[check.rank].weights[w];
  const uint64_t eb = wl.expert_bytes;
  const uint64_t pg = check.layout.pool_page_bytes;
  const MapPlan map = MakeMapPlan(check.layout, check.rank, 0, w);
  const std::string where = absl::StrCat(check.what, " of rank ", check.rank, " weight ", w);

  std::vector<const CopyOp*> mine;
  for (const CopyOp& op : ops) {
    if (op.weight == w) mine.push_back(&op);
  }
  std::sort(mine.begin(), mine.end(),
            [](const CopyOp* a, const CopyOp* b) { return a->dst_offset < b->dst_offset; });

  std::vector<ByteRange> pool_written;
  uint64_t delivered = 0;
  uint64_t previous_end = 0;
  size_t next_expected = 0;
  for (const CopyOp* op : mine) {
    const ByteRange dst{op->dst_offset, op->dst_offset + op->bytes};
    DWDP_FUZZ_CHECK(dst.begin >= previous_end,
                    absl::StrCat(where, ": bytes ", Text(dst),
                                 " are written twice: the copy before ends at ", previous_end));
    previous_end = dst.end;
    // Inside one expected range (they are merged, so a copy never needs two).
    while (next_expected < expected.size() && expected[next_expected].end <= dst.begin) {
      ++next_expected;
    }
    DWDP_FUZZ_CHECK(next_expected < expected.size() && expected[next_expected].begin <= dst.begin &&
                        dst.end <= expected[next_expected].end,
                    absl::StrCat(where, ": bytes ", Text(dst),
                                 " are not among the bytes the rank must receive"));
    delivered += dst.bytes();
    // Expert by expert: the source, then where the bytes land (per granule-sized step at
    // most, so a change of piece inside the run is seen).
    for (uint64_t x = dst.begin; x < dst.end;) {
      const uint64_t expert_end = std::min(dst.end, (x / eb + 1) * eb);
      CheckSource(check, *op, x, expert_end, eb);
      for (uint64_t y = x; y < expert_end;) {
        const Place spec = SpecPlace(wl, first_page, pg, y);
        const Place plan = PlanPlace(map, pg, y);
        DWDP_FUZZ_CHECK(spec == plan,
                        absl::StrCat(where, ": tensor byte ", y, " lands at ",
                                     plan.local_handle ? "local handle " : "pool ", plan.offset,
                                     ", the layout puts it at ",
                                     spec.local_handle ? "local handle " : "pool ", spec.offset));
        // To the end of the expert, the local handle or the pool page, whichever comes first.
        uint64_t step_end = expert_end;
        if (y < wl.page_start) step_end = std::min(step_end, wl.page_start);
        if (y < wl.page_end) step_end = std::min(step_end, wl.page_end);
        if (!spec.local_handle) step_end = std::min(step_end, y + (pg - spec.offset % pg));
        if (spec.local_handle) {
          // The local handle's own experts are never a copy's destination.
          const uint64_t own_begin = wl.leading_edge;
          const uint64_t own_end = wl.leading_edge + (wl.local_end - wl.local_begin);
          const uint64_t last = spec.offset + (step_end - y);
          DWDP_FUZZ_CHECK(last <= own_begin || spec.offset >= own_end,
                          absl::StrCat(where, ": bytes [", spec.offset, ", ", last,
                                       ") of the local handle hold the rank's own experts [",
                                       own_begin, ", ", own_end, ")"));
        } else {
          AddRange(pool_written, spec.offset, spec.offset + (step_end - y));
        }
        y = step_end;
      }
      x = expert_end;
    }
  }
  uint64_t expected_bytes = 0;
  for (const ByteRange& range : expected) expected_bytes += range.bytes();
  DWDP_FUZZ_CHECK(delivered == expected_bytes,
                  absl::StrCat(where, ": ", delivered, " bytes delivered, the rank must receive ",
                               expected_bytes));
  return pool_written;
}

void CheckPlan(const PlanCheck& check, const CopyPlan& plan, bool edge_fill) {
  const RankLayout& rl = check.layout.ranks[check.rank];
  const int64_t d = check.partition.dwdp_size();
  DWDP_FUZZ_CHECK(plan.rank == check.rank,
                  absl::StrCat(check.what, " of rank ", check.rank, " is labelled ", plan.rank));
  for (const CopyOp& op : plan.ops) {
    DWDP_FUZZ_CHECK(op.weight >= 0 && op.weight < static_cast<int64_t>(rl.weights.size()) &&
                        op.src_rank >= 0 && op.src_rank < d && op.src_rank != check.rank &&
                        op.bytes > 0,
                    absl::StrCat(check.what, " of rank ", check.rank, ": a copy of ", op.bytes,
                                 " bytes of weight ", op.weight, " from rank ", op.src_rank));
  }
  const uint64_t pg = check.layout.pool_page_bytes;
  std::vector<ByteRange> pool_written;
  uint64_t first_page = 0;
  for (int64_t w = 0; w < static_cast<int64_t>(rl.weights.size()); ++w) {
    const WeightLayout& wl = rl.weights[w];
    const std::vector<ByteRange> expected =
        edge_fill ? EdgeBytes(wl) : RemoteExpertBytes(check.partition, check.rank, wl.expert_bytes);
    for (const ByteRange& range : CheckWeightDelivery(check, plan.ops, w, expected, first_page)) {
      pool_written.push_back(range);
    }
    first_page += wl.pool_bytes() / pg;
  }
  // One layer's copies share the slot's pages among the weights; no byte is written twice.
  std::sort(pool_written.begin(), pool_written.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < pool_written.size(); ++i) {
    DWDP_FUZZ_CHECK(pool_written[i - 1].end <= pool_written[i].begin,
                    absl::StrCat(check.what, " of rank ", check.rank, ": pool bytes ",
                                 Text(pool_written[i]), " of the slot are written twice"));
  }
  if (!pool_written.empty()) {
    DWDP_FUZZ_CHECK(pool_written.back().end <= rl.pool_pages_per_layer * pg,
                    absl::StrCat(check.what, " of rank ", check.rank, ": pool bytes up to ",
                                 pool_written.back().end, ", the slot has ",
                                 rl.pool_pages_per_layer, " pages of ", pg));
  }
}

void CheckCopyPlans(const GroupLayout& layout, const Partition& partition,
                    const ContentionConfig& scenario_contention) {
  for (int64_t r = 0; r < partition.dwdp_size(); ++r) {
    for (ContentionMode mode :
         {ContentionMode::kRotate, ContentionMode::kAscending, ContentionMode::kRoundRobin}) {
      ContentionConfig contention = scenario_contention;
      contention.mode = mode;
      for (OwnerPolicy owner : {OwnerPolicy::kLowest, OwnerPolicy::kBalanced}) {
        const PlanCheck check{layout, partition, r,
                              absl::StrCat("copy plan (", ContentionModeName(mode), ", owner ",
                                           OwnerPolicyName(owner), ")"),
                              owner};
        CheckPlan(check, MakeCopyPlan(layout, r, contention, owner), /*edge_fill=*/false);
      }
    }
    const PlanCheck check{layout, partition, r, "edge-fill plan", layout.owner_policy};
    CheckPlan(check, MakeEdgeFillPlan(layout, r), /*edge_fill=*/true);
  }
}

// ---------------------------------------------------------------------------------------
// The simulation.

// Compute times per MoE layer position for the case.
void SetComputeTimes(const SimCase& c, int64_t num_layers, sim::SimulateOptions& options) {
  options.attention_ns.assign(static_cast<size_t>(num_layers), 0);
  options.moe_ns.assign(static_cast<size_t>(num_layers), 0);
  for (int64_t p = 0; p < num_layers; ++p) {
    switch (static_cast<SimCompute>(c.compute)) {
      case SimCompute::kNone:
        break;
      case SimCompute::kShort:
        options.attention_ns[p] = 2000;
        options.moe_ns[p] = 10000;
        break;
      case SimCompute::kLong:
        options.moe_ns[p] = 200000;
        break;
      case SimCompute::kUneven:
        options.moe_ns[p] = p % 2 == 0 ? 1000 : 300000;
        options.prelude_ns = 50000;
        break;
    }
  }
}

std::string Joined(const std::vector<std::string>& lines) { return absl::StrJoin(lines, "\n  "); }

void SimulateCase(const SimCase& c, const Scenario& scenario, const GroupLayout& layout,
                  const Partition& partition) {
  sim::SimulateOptions options;
  options.functional = true;
  options.check_hazards = true;
  options.forwards = c.forwards;
  SetComputeTimes(c, layout.num_layers(), options);
  options.keep_timeline = c.keep_timeline;
  if (!c.link_contention) {
    options.world.concurrent_pull_efficiency = 1;
    options.world.compute_slowdown = 0;
    options.world.copy_latency_on_link = 0;
  }
  const absl::StatusOr<sim::SimulationResult> result =
      sim::SimulateScenario(scenario, layout, options);
  DWDP_FUZZ_CHECK(result.ok(),
                  absl::StrCat("the simulator refused the profile: ", result.status().ToString()));
  const RunReport& report = result->report;
  DWDP_FUZZ_CHECK(report.errors.empty() && result->setup_ok,
                  absl::StrCat("the run failed:\n  ", Joined(report.errors)));
  DWDP_FUZZ_CHECK(report.hazards.empty(),
                  absl::StrCat("the hazard checker found races:\n  ", Joined(report.hazards)));
  DWDP_FUZZ_CHECK(result->leaks.empty(),
                  absl::StrCat("alive after teardown: ", result->leaks.ToString()));
  DWDP_FUZZ_CHECK(report.ok, "the report is not ok without naming an error or a hazard");
  DWDP_FUZZ_CHECK(report.forwards == c.forwards,
                  absl::StrCat(report.forwards, " forwards reported, ", c.forwards, " run"));
  DWDP_FUZZ_CHECK(report.ranks.size() == layout.ranks.size(),
                  absl::StrCat(report.ranks.size(), " ranks reported"));
  // What each rank pulls from each peer in one layer: the remote experts that peer owns.
  const int64_t d = partition.dwdp_size();
  std::vector<std::map<int64_t, uint64_t>> per_layer_from(static_cast<size_t>(d));
  for (int64_t r = 0; r < d; ++r) {
    for (int64_t e = 0; e < partition.num_experts(); ++e) {
      if (partition.range_of(r).contains(e)) continue;
      const int64_t owner = ExpectedOwner(partition, e, r, scenario.dwdp.owner);
      for (const WeightSpec& weight : scenario.model.weights) {
        per_layer_from[r][owner] += weight.expert_bytes;
      }
    }
  }
  for (const RankReport& rank : report.ranks) {
    DWDP_FUZZ_CHECK(rank.rank >= 0 && rank.rank < d, absl::StrCat("rank ", rank.rank, " reported"));
    uint64_t remote = 0;
    std::map<int64_t, uint64_t> per_forward_from;
    for (const auto& [peer, bytes] : per_layer_from[rank.rank]) {
      remote += bytes;
      per_forward_from[peer] = bytes * static_cast<uint64_t>(layout.num_layers());
    }
    DWDP_FUZZ_CHECK(static_cast<int64_t>(rank.layers.size()) == layout.num_layers(),
                    absl::StrCat("rank ", rank.rank, ": ", rank.layers.size(), " layers reported"));
    for (const LayerReport& layer : rank.layers) {
      DWDP_FUZZ_CHECK(
          layer.copy_bytes == remote,
          absl::StrCat("rank ", rank.rank, " layer ", layer.layer, " copies ", layer.copy_bytes,
                       " bytes per forward, its remote experts are ", remote));
    }
    DWDP_FUZZ_CHECK(
        rank.bytes_from_peer == per_forward_from,
        absl::StrCat("rank ", rank.rank, " pulls per forward ",
                     absl::StrJoin(rank.bytes_from_peer, ", ", absl::PairFormatter("<-")),
                     "; its remote experts' owners hold ",
                     absl::StrJoin(per_forward_from, ", ", absl::PairFormatter("<-"))));
  }
  if (c.keep_timeline) {
    // The kept timeline has every forward's copies: each layer's remote bytes once per forward.
    std::vector<uint64_t> copied(static_cast<size_t>(d), 0);
    for (const TimedOp& op : result->timeline) {
      DWDP_FUZZ_CHECK(
          op.rank >= 0 && op.rank < d && result->stream_names.count({op.rank, op.stream}),
          absl::StrCat("a timeline operation of rank ", op.rank, " on stream ", op.stream,
                       " with no stream name"));
      if (op.tag.kind == OpKind::kCopy) copied[op.rank] += op.bytes;
    }
    for (int64_t r = 0; r < d; ++r) {
      uint64_t expected = 0;
      for (const auto& [peer, bytes] : per_layer_from[r]) expected += bytes;
      expected *= static_cast<uint64_t>(layout.num_layers() * c.forwards);
      DWDP_FUZZ_CHECK(copied[r] == expected,
                      absl::StrCat("rank ", r, " copies ", copied[r], " bytes in the timeline of ",
                                   c.forwards, " forward(s), expected ", expected));
    }
  }
}

void CheckSimCase(const SimCase& c) {
  const absl::StatusOr<Scenario> scenario = MakeSimScenario(c);
  DWDP_FUZZ_CHECK(scenario.ok(), absl::StrCat("case: ", scenario.status().ToString()));
  const PartitionInput input = PartitionInput::FromScenario(*scenario);
  const std::optional<PartitionError> error = ValidatePartition(input);
  const absl::StatusOr<GroupLayout> layout = ComputeGroupLayout(*scenario);
  const std::string partition_text =
      absl::StrCat("d=", input.dwdp_size, " size=", input.num_experts_per_worker,
                   " stride=", input.num_prefetch_experts, " N=", input.num_experts);
  if (error) {
    // Not a valid scenario: a clean error that names the check, and nothing to run.
    DWDP_FUZZ_CHECK(!layout.ok() && absl::IsInvalidArgument(layout.status()) &&
                        absl::StrContains(layout.status().message(), error->check),
                    absl::StrCat(partition_text, ": validation fails check ", error->check,
                                 ", the layout gives ", layout.status().ToString()));
    return;
  }
  DWDP_FUZZ_CHECK(layout.ok(), absl::StrCat(partition_text, ": a valid partition has no layout: ",
                                            layout.status().ToString()));
  const absl::StatusOr<Partition> partition = Partition::Create(input);
  DWDP_FUZZ_CHECK(partition.ok(),
                  absl::StrCat(partition_text, ": ", partition.status().ToString()));
  DWDP_FUZZ_CHECK(CheckCopyPlanSize(*layout, scenario->dwdp.contention).ok(),
                  "a round-robin slice of at least 4 KiB over experts of a few granules is "
                  "refused as too many copies");
  CheckCopyPlans(*layout, *partition, scenario->dwdp.contention);
  SimulateCase(c, *scenario, *layout, *partition);
}

}  // namespace
}  // namespace dwdp::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  dwdp::fuzz::CheckSimCase(dwdp::fuzz::DecodeSimCase(provider));
  return 0;
}
