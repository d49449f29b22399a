#include "core/pipeline/runtime.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/moe/routing.h"
#include "core/partition/partition.h"
#include "core/pattern.h"
#include "core/pipeline/setup_vote.h"

namespace dwdp {
namespace {

absl::Status WithContext(const absl::Status& status, absl::string_view what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

// The value of a small per-expert vector (standing in for fc31_alpha) for expert e: distinct
// per expert so a misplaced shard shows.
double AlphaOf(int64_t expert) { return 1.0 + 0.5 * static_cast<double>(expert); }

}  // namespace

absl::StatusOr<Fault> ParseFault(absl::string_view name) {
  for (Fault f : {Fault::kNone, Fault::kFreeAtBind, Fault::kSkipReadyWait, Fault::kBadCopyOffset,
                  Fault::kPartialMap}) {
    if (name == FaultName(f)) return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown fault '", name,
                   "' (choose free-at-bind, skip-ready-wait, bad-copy-offset or partial-map)"));
}

const char* FaultName(Fault fault) {
  switch (fault) {
    case Fault::kNone:
      return "none";
    case Fault::kFreeAtBind:
      return "free-at-bind";
    case Fault::kSkipReadyWait:
      return "skip-ready-wait";
    case Fault::kBadCopyOffset:
      return "bad-copy-offset";
    case Fault::kPartialMap:
      return "partial-map";
  }
  return "?";
}

struct GroupRuntime::RankState {
  struct PeerView {
    DevPtr va = 0;
    uint64_t bytes = 0;
  };
  int64_t rank = 0;
  Driver* driver = nullptr;
  Streams* streams = nullptr;
  StreamId compute = -1;
  StreamId copy = -1;
  std::vector<std::vector<Handle>> local;  // [position][weight]
  std::vector<SharedHandle> exported;      // position-major; kept until the barrier
  std::vector<std::vector<std::vector<PeerView>>> peer_views;  // [peer][position][weight]
  std::vector<std::vector<Handle>> pool;                       // [slot][page]
  std::vector<std::vector<DevPtr>> composite;                  // [position][weight]
  CopyPlan copy_plan;
  CopyPlan edge_plan;
  std::unique_ptr<WeightManager> manager;
  std::vector<CleanupAction> cleanup;  // creation order
  int64_t bad_copy_position = -1;
  size_t bad_copy_op = 0;
  int64_t bad_copy_shift = 0;
};

GroupRuntime::GroupRuntime(const GroupLayout& layout, Coordinator& coordinator,
                           RuntimeOptions options)
    : layout_(layout), coordinator_(coordinator), options_(std::move(options)) {}

GroupRuntime::~GroupRuntime() { (void)Teardown(); }

absl::StatusOr<std::unique_ptr<GroupRuntime>> GroupRuntime::Setup(const GroupLayout& layout,
                                                                  Coordinator& coordinator,
                                                                  RuntimeOptions options) {
  const size_t layers = static_cast<size_t>(layout.num_layers());
  if (options.attention_ns.empty()) options.attention_ns.assign(layers, 0);
  if (options.moe_ns.empty()) options.moe_ns.assign(layers, 0);
  if (options.attention_ns.size() != layers || options.moe_ns.size() != layers) {
    return absl::InvalidArgumentError("runtime: compute times must be given for every MoE layer");
  }
  if (auto st = CheckCopyPlanSize(layout, options.contention); !st.ok()) return st;
  if ((options.compute_stream || options.copy_stream) && coordinator.hosted_ranks().size() != 1) {
    return absl::InvalidArgumentError(
        "runtime: existing compute or copy streams can be given only when one rank is hosted");
  }
  std::unique_ptr<GroupRuntime> runtime(new GroupRuntime(layout, coordinator, std::move(options)));
  for (int64_t r : coordinator.hosted_ranks()) {
    if (r < 0 || r >= static_cast<int64_t>(layout.ranks.size())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "runtime: hosted rank %d is outside the group of %d ranks", r, layout.ranks.size()));
    }
    auto state = std::make_unique<RankState>();
    state->rank = r;
    state->driver = &coordinator.driver(r);
    state->streams = &coordinator.streams(r);
    state->copy_plan = MakeCopyPlan(layout, r, runtime->options_.contention);
    state->edge_plan = MakeEdgeFillPlan(layout, r);
    runtime->ranks_.push_back(std::move(state));
  }
  absl::Status status = runtime->RunSetup();
  if (!status.ok()) {
    // Roll back every hosted rank; the first error stays the reported one. Work that setup
    // already enqueued (fills of local handles and edge bytes) finishes first: unmapping under
    // it would be an illegal address on the GPU.
    std::string rollback_errors;
    for (auto& rank : runtime->ranks_) {
      if (!rank->cleanup.empty()) (void)rank->streams->Synchronize();
    }
    for (auto& rank : runtime->ranks_) {
      absl::Status undo = runtime->Unwind(*rank);
      if (!undo.ok()) absl::StrAppend(&rollback_errors, "; rollback also failed: ", undo.message());
    }
    return absl::Status(status.code(), absl::StrCat(status.message(), rollback_errors));
  }
  return runtime;
}

absl::Status GroupRuntime::Step(RankState& rank, absl::string_view step) {
  if (!options_.step_hook) return absl::OkStatus();
  return WithContext(options_.step_hook(rank.rank, step),
                     absl::StrFormat("setup step '%s' on rank %d", step, rank.rank));
}

absl::Status GroupRuntime::AgreeOn(absl::string_view phase, absl::Status local) {
  auto votes =
      coordinator_.Allgather(std::vector<std::vector<uint8_t>>(ranks_.size(), SetupVote(local)));
  if (!local.ok()) return local;
  if (!votes.ok()) return WithContext(votes.status(), absl::StrCat("agree on ", phase));
  return AgreedSetup(phase, *votes);
}

absl::Status GroupRuntime::RunSetup() {
  absl::Status local;
  for (auto& rank : ranks_) {
    if (local.ok()) local = SetupStreams(*rank);
  }
  for (auto& rank : ranks_) {
    if (local.ok()) local = CreateLocalHandles(*rank);
  }
  if (auto st = AgreeOn("create local handles", local); !st.ok()) return st;
  // Exchange: every rank's exported handles, position-major, to every rank.
  std::vector<std::vector<SharedHandle>> exported;
  for (auto& rank : ranks_) exported.push_back(std::move(rank->exported));
  auto exchanged = coordinator_.exchange().Exchange(std::move(exported));
  if (!exchanged.ok()) return WithContext(exchanged.status(), "exchange handles");
  if (exchanged->size() != ranks_.size()) {
    return absl::InternalError("exchange handles: wrong number of hosted ranks in the result");
  }
  for (size_t i = 0; i < ranks_.size(); ++i) {
    if (local.ok()) local = ImportPeerViews(*ranks_[i], (*exchanged)[i]);
  }
  if (auto st = AgreeOn("import peer handles", local); !st.ok()) return st;
  if (auto st = coordinator_.exchange().Barrier(); !st.ok()) {
    return WithContext(st, "barrier after importing peer handles");
  }
  // Exported (and any unimported) fds are closed only now, after every peer has imported.
  exchanged->clear();
  for (auto& rank : ranks_) {
    if (local.ok()) local = CreatePoolAndComposites(*rank);
  }
  for (auto& rank : ranks_) {
    if (local.ok()) local = FillEdgeBytes(*rank);
  }
  for (auto& rank : ranks_) {
    if (local.ok()) local = CreateWeightManager(*rank);
  }
  for (auto& rank : ranks_) {
    if (local.ok()) local = PrepareMoeKernels(*rank);
  }
  if (auto st = AgreeOn("create the pool and the MoE kernels", local); !st.ok()) return st;
  return ScatterSmallVectors();
}

MoeKernel GroupRuntime::MoeKernelOf(const RankState& rank, int64_t position,
                                    int64_t forward) const {
  const MoeCompute& moe = *options_.moe;
  const RankLayout& rl = layout_.ranks[rank.rank];
  const int64_t layer = layout_.moe_layers[position];
  const auto tensor = [&](int64_t w) {
    return rank.composite[position][w] + rl.weights[w].pre_padding;
  };
  MoeKernel kernel;
  kernel.hidden = moe.hidden;
  kernel.intermediate = moe.intermediate;
  kernel.num_experts = moe.num_experts;
  kernel.top_k = moe.top_k;
  kernel.tokens = moe.tokens;
  // The routing is a function of the layer (the same every forward, so it is planned once at
  // setup); the inputs differ per layer, forward and rank, as a real batch's would.
  kernel.routing_seed = moe::LayerRoutingSeed(layer, moe.seed);
  kernel.input_seed = moe::LayerInputSeed(layer, forward, rank.rank, moe.seed);
  kernel.w13 = tensor(moe.weights.w13);
  kernel.w2 = tensor(moe.weights.w2);
  kernel.check_against_resident = options_.functional;
  kernel.layer = layer;
  kernel.w13_weight = moe.weights.w13;
  kernel.w2_weight = moe.weights.w2;
  return kernel;
}

absl::Status GroupRuntime::PrepareMoeKernels(RankState& rank) {
  if (!options_.moe) return absl::OkStatus();
  if (auto st = Step(rank, "moe kernels"); !st.ok()) return st;
  for (int64_t p = 0; p < layout_.num_layers(); ++p) {
    if (absl::Status st = rank.streams->PrepareMoe(MoeKernelOf(rank, p, 0)); !st.ok()) {
      return WithContext(st, absl::StrFormat("prepare the MoE kernel of layer %d on rank %d",
                                             layout_.moe_layers[p], rank.rank));
    }
  }
  return absl::OkStatus();
}

absl::Status GroupRuntime::SetupStreams(RankState& rank) {
  if (auto st = Step(rank, "streams"); !st.ok()) return st;
  for (auto [name, id, given] : {std::tuple<const char*, StreamId*, std::optional<StreamId>>{
                                     "compute", &rank.compute, options_.compute_stream},
                                 std::tuple<const char*, StreamId*, std::optional<StreamId>>{
                                     "copy", &rank.copy, options_.copy_stream}}) {
    if (given) {
      *id = *given;  // the owner's stream: nothing to destroy at teardown
      continue;
    }
    auto stream = rank.streams->CreateStream(name);
    if (!stream.ok()) {
      return WithContext(stream.status(),
                         absl::StrFormat("create %s stream on rank %d", name, rank.rank));
    }
    *id = *stream;
    Streams* streams = rank.streams;
    const StreamId created = *stream;
    rank.cleanup.push_back({absl::StrFormat("destroy %s stream on rank %d", name, rank.rank),
                            [streams, created] { return streams->DestroyStream(created); }});
  }
  return absl::OkStatus();
}

absl::Status GroupRuntime::CreateLocalHandles(RankState& rank) {
  if (auto st = Step(rank, "local handles"); !st.ok()) return st;
  const RankLayout& rl = layout_.ranks[rank.rank];
  Driver& driver = *rank.driver;
  const int64_t layers = layout_.num_layers();
  struct Staging {
    DevPtr va;
    uint64_t bytes;
    std::string what;
  };
  std::vector<Staging> staging;
  // Staging views are only needed to write the synthetic pattern; they are unmapped right
  // after, so they cost no mapping slots at run time.
  const auto unmap_staging = [&]() {
    absl::Status first;
    for (const Staging& s : staging) {
      // The range is freed even when its unmap reports an error: a driver that fails after
      // doing the work would otherwise leave the reservation behind.
      absl::Status unmapped = driver.Unmap(s.va, s.bytes);
      absl::Status freed = driver.Free(s.va, s.bytes);
      absl::Status st = unmapped.ok() ? freed : unmapped;
      if (first.ok() && !st.ok()) first = WithContext(st, "release staging view of " + s.what);
    }
    staging.clear();
    return first;
  };
  // On a failure part-way, the fills and copies already enqueued through the staging views
  // may still be running: they finish before the views go (unmapping under a running kernel
  // is an illegal address that poisons the whole context).
  const auto abandon_staging = [&]() {
    if (!staging.empty()) (void)rank.streams->Synchronize();
    return unmap_staging();
  };
  // The local handles get content from the engine's chunks, or from the synthetic pattern in
  // functional mode; otherwise (timing runs) they stay as created.
  const bool fill_local = options_.functional || static_cast<bool>(options_.local_experts);
  rank.local.assign(static_cast<size_t>(layers), {});
  for (int64_t p = 0; p < layers; ++p) {
    for (size_t w = 0; w < rl.weights.size(); ++w) {
      const WeightLayout& wl = rl.weights[w];
      const std::string what =
          absl::StrFormat("layer %d %s on rank %d", layout_.moe_layers[p], wl.name, rank.rank);
      auto handle = driver.Create(wl.mnnvl_size, driver.shareable_kind());
      if (!handle.ok()) {
        (void)abandon_staging();
        return WithContext(handle.status(), "create local handle of " + what);
      }
      rank.local[p].push_back(*handle);
      const Handle created = *handle;
      rank.cleanup.push_back({"release local handle of " + what,
                              [&driver, created] { return driver.Release(created); }});
      if (!fill_local) continue;
      auto va = driver.Reserve(wl.mnnvl_size, layout_.granularity);
      if (!va.ok()) {
        (void)abandon_staging();
        return WithContext(va.status(), "reserve staging view of " + what);
      }
      absl::Status st = driver.Map(*va, wl.mnnvl_size, created, 0);
      if (st.ok()) {
        staging.push_back({*va, wl.mnnvl_size, what});
        st = driver.SetAccess(*va, wl.mnnvl_size);
      } else {
        (void)driver.Free(*va, wl.mnnvl_size);
      }
      if (st.ok()) {
        OpTag tag;
        tag.kind = OpKind::kFill;
        tag.layer = layout_.moe_layers[p];
        tag.weight = static_cast<int64_t>(w);
        tag.label = "load local experts";
        if (options_.local_experts) {
          absl::StatusOr<DevPtr> source =
              options_.local_experts(rank.rank, p, static_cast<int64_t>(w));
          st = source.ok() ? rank.streams->Copy(*va + wl.leading_edge, *source,
                                                wl.local_end - wl.local_begin, rank.copy, tag)
                           : source.status();
        } else {
          st = rank.streams->Fill(*va + wl.leading_edge, wl.local_end - wl.local_begin,
                                  PatternRef{layout_.moe_layers[p], static_cast<int64_t>(w),
                                             wl.expert_bytes, options_.pattern_kind},
                                  wl.local_begin, rank.copy, tag);
        }
      }
      if (!st.ok()) {
        (void)abandon_staging();
        return WithContext(st, "load experts into local handle of " + what);
      }
    }
  }
  if (fill_local) {
    absl::Status st = rank.streams->Synchronize();
    absl::Status unmapped = unmap_staging();
    if (!st.ok())
      return WithContext(st, absl::StrFormat("load local experts on rank %d", rank.rank));
    if (!unmapped.ok()) return unmapped;
  }
  for (int64_t p = 0; p < layers; ++p) {
    for (size_t w = 0; w < rl.weights.size(); ++w) {
      auto shared = driver.Export(rank.local[p][w]);
      if (!shared.ok()) {
        return WithContext(shared.status(),
                           absl::StrFormat("export local handle of layer %d %s on rank %d",
                                           layout_.moe_layers[p], rl.weights[w].name, rank.rank));
      }
      rank.exported.push_back(*std::move(shared));
    }
  }
  return absl::OkStatus();
}

absl::Status GroupRuntime::ImportPeerViews(
    RankState& rank, std::vector<std::vector<SharedHandle>>& handles_by_rank) {
  if (auto st = Step(rank, "peer views"); !st.ok()) return st;
  const int64_t d = static_cast<int64_t>(layout_.ranks.size());
  const int64_t layers = layout_.num_layers();
  const size_t num_weights = layout_.ranks[rank.rank].weights.size();
  if (static_cast<int64_t>(handles_by_rank.size()) != d) {
    return absl::InternalError(
        absl::StrFormat("exchange gave handles of %d ranks to rank %d, the group has %d",
                        handles_by_rank.size(), rank.rank, d));
  }
  // Only peers this rank actually reads from are imported (fewer fabric mappings).
  std::set<int64_t> sources;
  for (const CopyOp& op : rank.copy_plan.ops) sources.insert(op.src_rank);
  for (const CopyOp& op : rank.edge_plan.ops) sources.insert(op.src_rank);
  Driver& driver = *rank.driver;
  rank.peer_views.assign(static_cast<size_t>(d), {});
  for (int64_t peer : sources) {
    auto& handles = handles_by_rank[peer];
    if (handles.size() != static_cast<size_t>(layers) * num_weights) {
      return absl::InternalError(absl::StrFormat(
          "rank %d received %d handles from rank %d, "
          "expected %d",
          rank.rank, handles.size(), peer, layers * static_cast<int64_t>(num_weights)));
    }
    rank.peer_views[peer].assign(static_cast<size_t>(layers),
                                 std::vector<RankState::PeerView>(num_weights));
    for (int64_t p = 0; p < layers; ++p) {
      for (size_t w = 0; w < num_weights; ++w) {
        const WeightLayout& peer_weight = layout_.ranks[peer].weights[w];
        const std::string what =
            absl::StrFormat("rank %d's layer %d %s on rank %d", peer, layout_.moe_layers[p],
                            peer_weight.name, rank.rank);
        SharedHandle& shared = handles[static_cast<size_t>(p) * num_weights + w];
        auto imported = driver.Import(shared);
        shared.close_fd();  // imported fds are closed right after import
        if (!imported.ok()) return WithContext(imported.status(), "import " + what);
        const Handle handle = *imported;
        rank.cleanup.push_back(
            {"release imported " + what, [&driver, handle] { return driver.Release(handle); }});
        const uint64_t bytes = peer_weight.mnnvl_size;
        auto va = driver.Reserve(bytes, layout_.granularity);
        if (!va.ok()) return WithContext(va.status(), "reserve peer view of " + what);
        const DevPtr base = *va;
        rank.cleanup.push_back({"free peer view of " + what,
                                [&driver, base, bytes] { return driver.Free(base, bytes); }});
        if (auto st = driver.Map(base, bytes, handle, 0); !st.ok()) {
          return WithContext(st, "map peer view of " + what);
        }
        rank.cleanup.push_back({"unmap peer view of " + what,
                                [&driver, base, bytes] { return driver.Unmap(base, bytes); }});
        if (auto st = driver.SetAccess(base, bytes); !st.ok()) {
          return WithContext(st, "set access on peer view of " + what);
        }
        rank.peer_views[peer][p][w] = {base, bytes};
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GroupRuntime::CreatePoolAndComposites(RankState& rank) {
  if (auto st = Step(rank, "pool and composite VAs"); !st.ok()) return st;
  const RankLayout& rl = layout_.ranks[rank.rank];
  Driver& driver = *rank.driver;
  rank.pool.assign(static_cast<size_t>(layout_.num_buffers), {});
  for (int64_t s = 0; s < layout_.num_buffers; ++s) {
    for (uint64_t page = 0; page < rl.slot_pages[s]; ++page) {
      // Pool pages are written by this GPU's copy engine and read only locally: no shareable
      // handle, so they use no fabric routing entries.
      auto handle = driver.Create(layout_.pool_page_bytes, HandleKind::kNone);
      if (!handle.ok()) {
        return WithContext(handle.status(), absl::StrFormat("create pool page %d of slot %d on "
                                                            "rank %d",
                                                            page, s, rank.rank));
      }
      rank.pool[s].push_back(*handle);
      const Handle created = *handle;
      rank.cleanup.push_back(
          {absl::StrFormat("release pool page %d of slot %d on rank %d", page, s, rank.rank),
           [&driver, created] { return driver.Release(created); }});
    }
  }
  bool partial_map_planted = options_.fault != Fault::kPartialMap;
  rank.composite.assign(static_cast<size_t>(layout_.num_layers()), {});
  for (int64_t p = 0; p < layout_.num_layers(); ++p) {
    for (size_t w = 0; w < rl.weights.size(); ++w) {
      const MapPlan plan = MakeMapPlan(layout_, rank.rank, p, static_cast<int64_t>(w));
      const std::string what = absl::StrFormat("layer %d %s on rank %d", layout_.moe_layers[p],
                                               rl.weights[w].name, rank.rank);
      auto va = driver.Reserve(plan.total_size, layout_.granularity);
      if (!va.ok()) return WithContext(va.status(), "reserve composite VA of " + what);
      const DevPtr base = *va;
      const uint64_t total = plan.total_size;
      rank.cleanup.push_back({"free composite VA of " + what,
                              [&driver, base, total] { return driver.Free(base, total); }});
      rank.composite[p].push_back(base);
      for (const MapPiece& piece : plan.pieces) {
        const bool is_local = piece.kind == MapPiece::Kind::kLocalHandle;
        const Handle handle = is_local ? rank.local[p][w] : rank.pool[plan.slot][piece.pool_page];
        uint64_t bytes = piece.bytes;
        if (!partial_map_planted && is_local && bytes >= 2 * layout_.granularity) {
          bytes -= layout_.granularity;  // planted fault: map all but the last granule
          partial_map_planted = true;
        }
        const std::string piece_name = is_local ? std::string("local handle")
                                                : absl::StrFormat("pool page %d", piece.pool_page);
        if (auto st = driver.Map(base + piece.va_offset, bytes, handle, 0); !st.ok()) {
          return WithContext(st, absl::StrFormat("map %s of %s", piece_name, what));
        }
        const DevPtr at = base + piece.va_offset;
        rank.cleanup.push_back({absl::StrFormat("unmap %s of %s", piece_name, what),
                                [&driver, at, bytes] { return driver.Unmap(at, bytes); }});
      }
      if (auto st = driver.SetAccess(base, total); !st.ok()) {
        return WithContext(st, "set access on composite VA of " + what);
      }
    }
  }
  if (!partial_map_planted) {
    return absl::FailedPreconditionError(
        "cannot plant partial-map: no local handle spans two granules in this scenario");
  }
  return absl::OkStatus();
}

absl::Status GroupRuntime::FillEdgeBytes(RankState& rank) {
  if (auto st = Step(rank, "edge bytes"); !st.ok()) return st;
  if (rank.edge_plan.ops.empty()) return absl::OkStatus();
  const RankLayout& rl = layout_.ranks[rank.rank];
  for (int64_t p = 0; p < layout_.num_layers(); ++p) {
    for (const CopyOp& op : rank.edge_plan.ops) {
      const WeightLayout& wl = rl.weights[op.weight];
      OpTag tag;
      tag.kind = OpKind::kEdgeCopy;
      tag.layer = layout_.moe_layers[p];
      tag.weight = op.weight;
      tag.peer = op.src_rank;
      tag.label = "edge bytes";
      const DevPtr dst = rank.composite[p][op.weight] + wl.pre_padding + op.dst_offset;
      const DevPtr src = rank.peer_views[op.src_rank][p][op.weight].va + op.src_offset;
      if (auto st = rank.streams->Copy(dst, src, op.bytes, rank.copy, tag); !st.ok()) {
        return WithContext(st, absl::StrFormat("fill edge bytes of layer %d %s on rank %d from "
                                               "rank %d",
                                               tag.layer, wl.name, rank.rank, op.src_rank));
      }
    }
  }
  return WithContext(rank.streams->Synchronize(),
                     absl::StrFormat("fill edge bytes on rank %d", rank.rank));
}

absl::Status GroupRuntime::CreateWeightManager(RankState& rank) {
  if (auto st = Step(rank, "weight manager"); !st.ok()) return st;
  WeightManager::Options wm;
  wm.num_layers = layout_.num_layers();
  wm.num_buffers = layout_.num_buffers;
  wm.layer_ids = layout_.moe_layers;
  if (options_.fault == Fault::kFreeAtBind) wm.fault = PipelineFault::kFreeAtBind;
  if (options_.fault == Fault::kSkipReadyWait) wm.fault = PipelineFault::kSkipReadyWait;
  if (options_.fault == Fault::kBadCopyOffset && !rank.copy_plan.ops.empty()) {
    // One copy of one layer reads one expert off, staying inside the peer's view so the only
    // symptom is wrong bytes.
    rank.bad_copy_position = std::min<int64_t>(1, layout_.num_layers() - 1);
    for (size_t i = 0; i < rank.copy_plan.ops.size(); ++i) {
      const CopyOp& op = rank.copy_plan.ops[i];
      const WeightLayout& src = layout_.ranks[op.src_rank].weights[op.weight];
      const int64_t eb = static_cast<int64_t>(src.expert_bytes);
      if (op.src_offset + op.bytes + src.expert_bytes <= src.mnnvl_size) {
        rank.bad_copy_op = i;
        rank.bad_copy_shift = eb;
        break;
      }
      if (op.src_offset >= src.expert_bytes) {
        rank.bad_copy_op = i;
        rank.bad_copy_shift = -eb;
        break;
      }
    }
  }
  RankState* state = &rank;
  auto manager =
      WeightManager::Create(*rank.streams, rank.compute, rank.copy, std::move(wm),
                            [this, state](int64_t position, StreamId stream, const OpTag& tag) {
                              return IssueLayerCopies(*state, position, stream, tag);
                            });
  if (!manager.ok()) {
    return WithContext(manager.status(),
                       absl::StrFormat("create weight manager on rank %d", rank.rank));
  }
  rank.manager = *std::move(manager);
  rank.cleanup.push_back({absl::StrFormat("destroy weight manager events on rank %d", rank.rank),
                          [state] { return state->manager->Destroy(); }});
  return absl::OkStatus();
}

absl::Status GroupRuntime::IssueLayerCopies(RankState& rank, int64_t position, StreamId stream,
                                            const OpTag& layer_tag) {
  const RankLayout& rl = layout_.ranks[rank.rank];
  for (size_t i : LayerCopyOrder(rank.copy_plan, position, options_.contention.mode)) {
    const CopyOp& op = rank.copy_plan.ops[i];
    const WeightLayout& wl = rl.weights[op.weight];
    OpTag tag = layer_tag;
    tag.weight = op.weight;
    tag.peer = op.src_rank;
    int64_t src_offset = static_cast<int64_t>(op.src_offset);
    if (position == rank.bad_copy_position && i == rank.bad_copy_op) {
      src_offset += rank.bad_copy_shift;
      tag.label = "copy (planted: one expert off)";
    }
    const DevPtr dst = rank.composite[position][op.weight] + wl.pre_padding + op.dst_offset;
    const DevPtr src =
        rank.peer_views[op.src_rank][position][op.weight].va + static_cast<uint64_t>(src_offset);
    if (auto st = rank.streams->Copy(dst, src, op.bytes, stream, tag); !st.ok()) {
      return WithContext(st, absl::StrFormat("copy layer %d %s from rank %d on rank %d", tag.layer,
                                             wl.name, op.src_rank, rank.rank));
    }
  }
  return absl::OkStatus();
}

absl::Status GroupRuntime::ScatterSmallVectors() {
  const int64_t size = layout_.ranks.front().range.count();
  std::vector<std::vector<uint8_t>> mine;
  for (auto& rank : ranks_) {
    if (auto st = Step(*rank, "scatter"); !st.ok()) return st;
    // One shard of `size` rows per rank; rows past N (none after validation) would be padding.
    std::vector<double> shard(static_cast<size_t>(size));
    const PeerRange& range = layout_.ranks[rank->rank].range;
    for (int64_t i = 0; i < size; ++i) shard[i] = AlphaOf(range.start + i);
    std::vector<uint8_t> bytes(shard.size() * sizeof(double));
    std::memcpy(bytes.data(), shard.data(), bytes.size());
    mine.push_back(std::move(bytes));
  }
  auto gathered = coordinator_.Allgather(std::move(mine));
  if (!gathered.ok()) return WithContext(gathered.status(), "allgather per-expert vectors");
  std::vector<std::vector<double>> shards;
  for (const auto& bytes : *gathered) {
    std::vector<double> shard(bytes.size() / sizeof(double));
    std::memcpy(shard.data(), bytes.data(), shard.size() * sizeof(double));
    shards.push_back(std::move(shard));
  }
  auto full = ScatterShards(layout_.peer_ranges, shards, layout_.num_experts);
  if (!full.ok()) return WithContext(full.status(), "scatter per-expert vectors");
  for (int64_t e = 0; e < layout_.num_experts; ++e) {
    if ((*full)[e] != AlphaOf(e)) {
      return absl::InternalError(absl::StrFormat(
          "scatter per-expert vectors: expert %d has %g, expected %g", e, (*full)[e], AlphaOf(e)));
    }
  }
  return absl::OkStatus();
}

absl::Status GroupRuntime::RunForward(int64_t forward) {
  for (auto& rank : ranks_) {
    if (!rank->manager) return absl::FailedPreconditionError("run after teardown");
    Streams& streams = *rank->streams;
    WeightManager& manager = *rank->manager;
    manager.set_forward(forward);
    const std::string where = absl::StrFormat("forward %d on rank %d", forward, rank->rank);
    if (auto st = manager.Prime(); !st.ok()) return WithContext(st, where);
    if (options_.prelude_ns > 0) {
      OpTag tag;
      tag.kind = OpKind::kCompute;
      tag.forward = forward;
      tag.label = "dense layers";
      if (auto st = streams.Launch({"dense layers", {}, options_.prelude_ns}, rank->compute, tag);
          !st.ok()) {
        return WithContext(st, where);
      }
    }
    const RankLayout& rl = layout_.ranks[rank->rank];
    for (int64_t p = 0; p < layout_.num_layers(); ++p) {
      const int64_t layer = layout_.moe_layers[p];
      OpTag tag;
      tag.kind = OpKind::kCompute;
      tag.layer = layer;
      tag.slot = manager.slot_of(p);
      tag.forward = forward;
      if (options_.attention_ns[p] > 0) {
        tag.label = "attention";
        if (auto st =
                streams.Launch({"attention", {}, options_.attention_ns[p]}, rank->compute, tag);
            !st.ok()) {
          return WithContext(st, where);
        }
      }
      const auto bind_start = std::chrono::steady_clock::now();
      absl::Status bound = manager.WaitAndBind(p);
      const double bind_ns =
          std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - bind_start)
              .count();
      wait_and_bind_cost_.total_ns += bind_ns;
      wait_and_bind_cost_.max_ns = std::max(wait_and_bind_cost_.max_ns, bind_ns);
      ++wait_and_bind_cost_.calls;
      if (!bound.ok()) return WithContext(bound, where);
      KernelLaunch kernel;
      kernel.name = "moe";
      kernel.duration_ns = options_.moe_ns[p];
      for (size_t w = 0; w < rl.weights.size(); ++w) {
        const WeightLayout& wl = rl.weights[w];
        kernel.reads.push_back(
            {rank->composite[p][w] + wl.pre_padding, wl.tensor_bytes, options_.functional,
             PatternRef{layer, static_cast<int64_t>(w), wl.expert_bytes, options_.pattern_kind}});
      }
      if (options_.moe) kernel.moe = MoeKernelOf(*rank, p, forward);
      tag.label = "moe";
      if (auto st = streams.Launch(kernel, rank->compute, tag); !st.ok()) {
        return WithContext(st, where);
      }
      if (auto st = manager.RecordCompute(p); !st.ok()) return WithContext(st, where);
      if (auto st = manager.PrefetchNext(p); !st.ok()) return WithContext(st, where);
    }
  }
  absl::Status first;
  for (auto& rank : ranks_) {
    absl::Status st = rank->streams->Synchronize();
    if (first.ok() && !st.ok()) {
      first = WithContext(st, absl::StrFormat("forward %d on rank %d", forward, rank->rank));
    }
  }
  return first;
}

absl::Status GroupRuntime::ProbeLayerCopies(int64_t rank, int64_t position) {
  for (auto& r : ranks_) {
    if (r->rank != rank) continue;
    if (!r->manager) return absl::FailedPreconditionError("copy probe after teardown");
    if (position < 0 || position >= layout_.num_layers()) {
      return absl::OutOfRangeError(absl::StrFormat("copy probe of layer position %d", position));
    }
    OpTag tag;
    tag.kind = OpKind::kCopy;
    tag.layer = layout_.moe_layers[position];
    tag.forward = -1;
    tag.label = "raw copy";
    // The probe moves the same bytes as whole runs, one owner after the other (the rotate
    // plan): the single-pair rate every schedule is measured against.
    const int64_t saved_position = r->bad_copy_position;
    r->bad_copy_position = -1;  // the probe measures, it does not plant faults
    CopyPlan schedule = std::move(r->copy_plan);
    r->copy_plan = MakeCopyPlan(layout_, rank, {ContentionMode::kRotate, 0});
    absl::Status st = IssueLayerCopies(*r, position, r->copy, tag);
    r->copy_plan = std::move(schedule);
    r->bad_copy_position = saved_position;
    if (st.ok()) st = r->streams->Synchronize();
    return WithContext(st, absl::StrFormat("copy probe on rank %d", rank));
  }
  return absl::NotFoundError(absl::StrFormat("rank %d is not hosted here", rank));
}

absl::StatusOr<WeightManager*> GroupRuntime::ManagerOf(int64_t rank, const char* call) {
  for (auto& r : ranks_) {
    if (r->rank != rank) continue;
    if (!r->manager) {
      return absl::FailedPreconditionError(absl::StrFormat("%s after teardown", call));
    }
    return r->manager.get();
  }
  return absl::NotFoundError(absl::StrFormat("%s: rank %d is not hosted here", call, rank));
}

absl::Status GroupRuntime::Prime(int64_t rank, StreamId copy) {
  auto manager = ManagerOf(rank, "prime");
  return manager.ok() ? (*manager)->Prime(copy) : manager.status();
}

absl::Status GroupRuntime::WaitAndBind(int64_t rank, int64_t position, StreamId compute) {
  auto manager = ManagerOf(rank, "wait_and_bind");
  return manager.ok() ? (*manager)->WaitAndBind(position, compute) : manager.status();
}

absl::Status GroupRuntime::RecordCompute(int64_t rank, int64_t position, StreamId compute) {
  auto manager = ManagerOf(rank, "record_compute");
  return manager.ok() ? (*manager)->RecordCompute(position, compute) : manager.status();
}

absl::Status GroupRuntime::PrefetchNext(int64_t rank, int64_t position, StreamId copy) {
  auto manager = ManagerOf(rank, "prefetch_next");
  return manager.ok() ? (*manager)->PrefetchNext(position, copy) : manager.status();
}

absl::Status GroupRuntime::Unwind(RankState& rank) {
  absl::Status first;
  while (!rank.cleanup.empty()) {
    CleanupAction action = std::move(rank.cleanup.back());
    rank.cleanup.pop_back();
    absl::Status st = action.undo();
    if (first.ok() && !st.ok()) first = WithContext(st, action.what);
  }
  rank.manager.reset();
  return first;
}

absl::Status GroupRuntime::Teardown() {
  absl::Status first;
  for (auto& rank : ranks_) {
    if (rank->cleanup.empty()) continue;
    absl::Status st = rank->streams->Synchronize();
    if (first.ok() && !st.ok()) first = WithContext(st, "synchronize before teardown");
    if (options_.moe) rank->streams->ReleaseMoe();
  }
  for (auto& rank : ranks_) {
    absl::Status st = Unwind(*rank);
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

std::string GroupRuntime::stream_name(int64_t rank, StreamId stream) const {
  for (const auto& r : ranks_) {
    if (r->rank != rank) continue;
    if (stream == r->compute) return "compute";
    if (stream == r->copy) return "copy";
  }
  return absl::StrCat("stream ", stream);
}

DevPtr GroupRuntime::composite_base(int64_t rank, int64_t position, int64_t weight) const {
  for (const auto& r : ranks_) {
    if (r->rank == rank) return r->composite.at(position).at(weight);
  }
  return 0;
}

const CopyPlan& GroupRuntime::copy_plan(int64_t rank) const {
  for (const auto& r : ranks_) {
    if (r->rank == rank) return r->copy_plan;
  }
  static const CopyPlan kEmpty;
  return kEmpty;
}

std::vector<std::string> GroupRuntime::pending_cleanup(int64_t rank) const {
  std::vector<std::string> out;
  for (const auto& r : ranks_) {
    if (r->rank != rank) continue;
    for (auto it = r->cleanup.rbegin(); it != r->cleanup.rend(); ++it) out.push_back(it->what);
  }
  return out;
}

}  // namespace dwdp
