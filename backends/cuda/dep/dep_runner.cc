// The DEP baseline's rank on one GPU: NCCL for the all-to-alls, the MoE kernel's grouped GEMMs
// for the local experts (see dep_runner.h for the per-layer sequence).

#include "backends/cuda/dep/dep_runner.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_error.h"
#include "backends/cuda/dep/dep_kernels.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/moe/moe_kernels.h"
#include "backends/cuda/moe/moe_layer.h"
#include "core/dep/dep_reference.h"
#include "core/moe/bf16.h"
#include "core/moe/routing.h"
#include "core/pattern.h"
#include "core/pipeline/setup_vote.h"

namespace dwdp::cuda {
namespace {

absl::Status Cuda(cudaError_t error, absl::string_view what) {
  return RuntimeStatus(static_cast<int>(error), absl::StrCat("DEP: ", what));
}
absl::Status Launched(int error, absl::string_view kernel) {
  return RuntimeStatus(error, absl::StrCat("DEP: launching ", kernel));
}
absl::Status Nccl(ncclResult_t result, absl::string_view what) {
  if (result == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("DEP: ", what, " failed: ", ncclGetErrorString(result)));
}

absl::Status WithContext(const absl::Status& status, absl::string_view where) {
  return absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};

// One device allocation (never of zero bytes, so that every buffer has an address).
class Buffer {
 public:
  absl::Status Allocate(uint64_t bytes, absl::string_view what) {
    void* p = nullptr;
    const uint64_t size = std::max<uint64_t>(bytes, 256);
    if (absl::Status s =
            Cuda(cudaMalloc(&p, size), absl::StrFormat("allocating %s (%d bytes)", what, size));
        !s.ok()) {
      return s;
    }
    memory_.reset(p);
    bytes_ = size;
    return absl::OkStatus();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(memory_.get());
  }
  uint64_t address() const { return reinterpret_cast<uint64_t>(memory_.get()); }
  uint64_t bytes() const { return bytes_; }

 private:
  std::unique_ptr<void, CudaFree> memory_;
  uint64_t bytes_ = 0;
};

template <typename T>
absl::Status Upload(Buffer& buffer, const std::vector<T>& values, absl::string_view what) {
  if (absl::Status s = buffer.Allocate(values.size() * sizeof(T), what); !s.ok()) return s;
  if (values.empty()) return absl::OkStatus();
  return Cuda(cudaMemcpy(buffer.as<void>(), values.data(), values.size() * sizeof(T),
                         cudaMemcpyHostToDevice),
              absl::StrCat("uploading ", what));
}

struct StreamDestroy {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct EventDestroy {
  void operator()(cudaEvent_t e) const { cudaEventDestroy(e); }
};
struct CommDestroy {
  void operator()(ncclComm_t c) const { ncclCommDestroy(c); }
};
using StreamPtr = std::unique_ptr<CUstream_st, StreamDestroy>;
using EventPtr = std::unique_ptr<CUevent_st, EventDestroy>;
using CommPtr = std::unique_ptr<ncclComm, CommDestroy>;

// The events of one layer: attention, (wait), dispatch, compute, (wait), combine.
enum LayerEvent {
  kStart,
  kAttention,
  kArrived,
  kDispatched,
  kComputed,
  kReady,
  kCombined,
  kEvents
};

struct LayerState {
  int64_t layer = 0;
  dep::DispatchPlan plan;
  Buffer w13, w2;  // this rank's experts [experts_per_rank, ...]
  Buffer send_token, permuted_from, returned_from, entry_row, weights, counts_send;
  moe::RoutingPlan local;     // the grouped GEMMs' problem: rows per local expert
  moe::RoutingPlan resident;  // this rank's tokens over every expert (the functional check)
  std::vector<EventPtr> events;
};

class NcclDepRunner : public DepRunner {
 public:
  NcclDepRunner(Comm& group, const DepRunnerOptions& options)
      : group_(group),
        rank_(options.rank),
        ep_(options.ep_size),
        host_staged_(options.host_staged) {}

  ~NcclDepRunner() override {
    if (stream_) cudaStreamSynchronize(stream_.get());
  }

  absl::Status Init() {
    // NVLink multicast (NVLS) stays off unless the environment sets it: DEP needs only
    // point-to-point sends, and multicast objects are a host-wide resource a baseline should
    // not take.
    setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    if (!host_staged_) {
      if (absl::Status s = InitNccl(); !s.ok()) return s;
    }
    return InitStream();
  }

  absl::Status InitNccl() {
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (rank_ == 0) {
      if (absl::Status s = Nccl(ncclGetUniqueId(&id), "ncclGetUniqueId"); !s.ok()) return s;
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
    absl::StatusOr<std::vector<std::vector<uint8_t>>> ids =
        group_.Allgather(std::vector<uint8_t>(bytes, bytes + sizeof(id)));
    if (!ids.ok()) return ids.status();
    if (ids->empty() || (*ids)[0].size() != sizeof(id)) {
      return absl::InternalError("DEP: rank 0's NCCL id arrived garbled");
    }
    std::memcpy(&id, (*ids)[0].data(), sizeof(id));
    ncclComm_t comm = nullptr;
    if (absl::Status s =
            Nccl(ncclCommInitRank(&comm, static_cast<int>(ep_), id, static_cast<int>(rank_)),
                 "ncclCommInitRank");
        !s.ok()) {
      return s;
    }
    comm_.reset(comm);
    return absl::OkStatus();
  }

  absl::Status InitStream() {
    cudaStream_t stream = nullptr;
    if (absl::Status s =
            Cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "creating the stream");
        !s.ok()) {
      return s;
    }
    stream_.reset(stream);
    int sms = 0;
    int device = 0;
    if (absl::Status s = Cuda(cudaGetDevice(&device), "cudaGetDevice"); !s.ok()) return s;
    if (absl::Status s = Cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
                              "reading the SM count");
        !s.ok()) {
      return s;
    }
    int per_sm = 1;
    if (absl::Status s = Launched(ComputeBlocksPerSm(&per_sm), "the occupancy query"); !s.ok()) {
      return s;
    }
    compute_blocks_ = sms * per_sm;
    return absl::OkStatus();
  }

  absl::StatusOr<DepRankRun> Run(const DepRunSpec& spec) override {
    // Every rank says whether its setup worked before any NCCL call: a peer that failed would
    // leave the others in a collective NCCL never times out of.
    const absl::Status setup = Setup(spec);
    absl::StatusOr<std::vector<std::vector<uint8_t>>> votes = group_.Allgather(SetupVote(setup));
    if (!setup.ok()) return setup;
    if (!votes.ok()) return votes.status();
    if (absl::Status s = AgreedSetup("the DEP setup", *votes); !s.ok()) return s;
    DepRankRun run;
    for (int64_t f = 0; f < spec.forwards; ++f) {
      dep::DepRankTimes times;
      times.rank = rank_;
      times.tokens = tokens_;
      for (size_t p = 0; p < layers_.size(); ++p) {
        if (absl::Status s = RunLayer(spec, f, layers_[p]); !s.ok()) {
          return WithContext(s, absl::StrFormat("forward %d, layer %d", f, layers_[p].layer));
        }
        if (spec.functional) {
          if (absl::Status s = CheckLayer(f, layers_[p], run); !s.ok()) {
            return WithContext(
                s, absl::StrFormat("check of forward %d, layer %d", f, layers_[p].layer));
          }
        }
      }
      if (absl::Status s = Cuda(cudaStreamSynchronize(stream_.get()), "the end of a forward");
          !s.ok()) {
        return s;
      }
      for (LayerState& l : layers_) {
        absl::StatusOr<dep::DepLayerTimes> t = Times(l);
        if (!t.ok()) return t.status();
        times.forward_ns +=
            t->attention_ns + t->wait_ns + t->dispatch_ns + t->compute_ns + t->combine_ns;
        times.layers.push_back(*t);
      }
      run.forwards.push_back(std::move(times));
    }
    if (spec.functional) {
      run.check = {{"ok", check_.ok},       {"compared", check_.compared},
                   {"exact", check_.exact}, {"max_error", check_.max_error},
                   {"scale", check_.scale}, {"first_outside", check_.first_outside}};
      if (!check_.ok) {
        run.errors.push_back(absl::StrCat(
            "the DEP output differs from the resident-weights MoE kernel beyond the tolerance: ",
            check_.first_outside));
      }
    }
    return run;
  }

 private:
  absl::Status Setup(const DepRunSpec& spec) {
    const dep::DepShape& shape = spec.shape;
    const moe::MoeShape local_shape{shape.num_experts / ep_, shape.hidden, shape.intermediate, 1};
    const moe::MoeShape full_shape{shape.num_experts, shape.hidden, shape.intermediate,
                                   shape.top_k};
    if (spec.w13_expert_bytes != moe::W13ExpertBytes(full_shape) ||
        spec.w2_expert_bytes != moe::W2ExpertBytes(full_shape)) {
      return absl::InvalidArgumentError(
          "DEP: the model's expert weights are not the BF16 gate_up and down of its shape");
    }
    tokens_ = spec.tokens[static_cast<size_t>(rank_)];
    hidden_ = shape.hidden;
    top_k_ = shape.top_k;
    const int64_t epr = shape.num_experts / ep_;
    int64_t max_rows = 1;
    layers_.resize(spec.moe_layers.size());
    for (size_t p = 0; p < layers_.size(); ++p) {
      LayerState& l = layers_[p];
      l.layer = spec.moe_layers[p];
      l.plan = spec.Plan(static_cast<int64_t>(p));
      const dep::SourcePlan& src = l.plan.sources[static_cast<size_t>(rank_)];
      const dep::DestinationPlan& dest = l.plan.destinations[static_cast<size_t>(rank_)];
      max_rows = std::max(max_rows, dest.rows());
      // This rank's experts, filled with functional mode's pattern (what DWDP's owners hold).
      const uint64_t w13_bytes = static_cast<uint64_t>(epr) * spec.w13_expert_bytes;
      const uint64_t w2_bytes = static_cast<uint64_t>(epr) * spec.w2_expert_bytes;
      if (absl::Status s = l.w13.Allocate(w13_bytes, "the local gate_up weights"); !s.ok())
        return s;
      if (absl::Status s = l.w2.Allocate(w2_bytes, "the local down weights"); !s.ok()) return s;
      const uint64_t first = static_cast<uint64_t>(rank_ * epr);
      if (absl::Status s = Launched(
              LaunchFill(stream_.get(), l.w13.address(), w13_bytes, l.layer, spec.w13_weight,
                         spec.w13_expert_bytes, first * spec.w13_expert_bytes, 1024, kPatternBf16),
              "the weight fill");
          !s.ok()) {
        return s;
      }
      if (absl::Status s = Launched(
              LaunchFill(stream_.get(), l.w2.address(), w2_bytes, l.layer, spec.w2_weight,
                         spec.w2_expert_bytes, first * spec.w2_expert_bytes, 1024, kPatternBf16),
              "the weight fill");
          !s.ok()) {
        return s;
      }
      std::vector<int32_t> counts_send;
      for (int64_t d = 0; d < ep_; ++d) {
        const std::vector<int32_t> m = l.plan.CountsMessage(rank_, d);
        counts_send.insert(counts_send.end(), m.begin(), m.end());
      }
      for (absl::Status s : {Upload(l.send_token, src.send_token, "the send rows"),
                             Upload(l.permuted_from, dest.permuted_from, "the permutation"),
                             Upload(l.returned_from, dest.returned_from, "the inverse permutation"),
                             Upload(l.entry_row, src.entry_row, "the entry rows"),
                             Upload(l.weights, src.weights, "the router weights"),
                             Upload(l.counts_send, counts_send, "the counts")}) {
        if (!s.ok()) return s;
      }
      l.local.seed = l.plan.routing_seed;
      l.local.tokens = dest.rows();
      l.local.expert_counts = dest.expert_counts;
      l.resident.seed = l.plan.routing_seed;
      l.resident.tokens = tokens_;
      l.resident.expert_counts.assign(static_cast<size_t>(shape.num_experts), 0);
      for (int32_t e : src.experts) ++l.resident.expert_counts[static_cast<size_t>(e)];
      for (int i = 0; i < kEvents; ++i) {
        cudaEvent_t event = nullptr;
        if (absl::Status s = Cuda(cudaEventCreate(&event), "creating a timing event"); !s.ok()) {
          return s;
        }
        l.events.emplace_back(event);
      }
    }
    const uint64_t row_bytes = static_cast<uint64_t>(hidden_) * 2;
    const uint64_t entries = static_cast<uint64_t>(tokens_ * top_k_);
    for (auto [buffer, bytes, what] :
         {std::tuple<Buffer*, uint64_t, const char*>{&x_, tokens_ * row_bytes, "the input"},
          {&out_, tokens_ * row_bytes, "the output"},
          {&send_, entries * row_bytes, "the send rows"},
          {&returned_, entries * row_bytes, "the returned rows"},
          {&recv_, static_cast<uint64_t>(max_rows) * row_bytes, "the received rows"},
          {&back_, static_cast<uint64_t>(max_rows) * row_bytes, "the rows going back"},
          {&counts_recv_, static_cast<uint64_t>(ep_ * epr) * 4, "the received counts"},
          {&flag_, 64, "the all-reduce flag"},
          {&mismatch_, 64, "the stand-in's flags"}}) {
      if (absl::Status s = buffer->Allocate(bytes, what); !s.ok()) return s;
    }
    void* host = nullptr;
    if (absl::Status s = Cuda(cudaMallocHost(&host, static_cast<size_t>(ep_ * epr) * 4),
                              "allocating the host counts");
        !s.ok()) {
      return s;
    }
    host_counts_.reset(host);
    auto layer = moe::MoeLayer::Create(local_shape, max_rows);
    if (!layer.ok()) return layer.status();
    local_layer_ = *std::move(layer);
    if (spec.functional) {
      auto full = moe::MoeLayer::Create(full_shape, tokens_);
      if (!full.ok()) return full.status();
      full_layer_ = *std::move(full);
      for (LayerState& l : layers_) {
        if (absl::Status s = full_layer_->Reserve(l.resident); !s.ok()) return s;
      }
      const uint64_t n = static_cast<uint64_t>(shape.num_experts);
      if (absl::Status s = full_w13_.Allocate(n * spec.w13_expert_bytes, "every expert's gate_up");
          !s.ok()) {
        return s;
      }
      if (absl::Status s = full_w2_.Allocate(n * spec.w2_expert_bytes, "every expert's down");
          !s.ok()) {
        return s;
      }
      if (absl::Status s = reference_.Allocate(tokens_ * row_bytes, "the reference output");
          !s.ok()) {
        return s;
      }
      w13_weight_ = spec.w13_weight;
      w2_weight_ = spec.w2_weight;
      w13_expert_bytes_ = spec.w13_expert_bytes;
      w2_expert_bytes_ = spec.w2_expert_bytes;
    }
    return Cuda(cudaStreamSynchronize(stream_.get()), "setup");
  }

  absl::Status Barrier() {
    if (host_staged_) {
      if (absl::Status s = Cuda(cudaStreamSynchronize(stream_.get()), "the wait for every rank");
          !s.ok()) {
        return s;
      }
      return group_.Barrier();
    }
    return Nccl(ncclAllReduce(flag_.as<void>(), flag_.as<void>(), 1, ncclInt32, ncclSum,
                              comm_.get(), stream_.get()),
                "the all-reduce every rank arrives at");
  }

  // Ranks sharing a GPU (NCCL refuses them): every rank's chunks for every other rank travel
  // through host memory and the group's allgather. Functional only: its times are not DEP's.
  // chunk d of this rank (device address, bytes) goes to rank d; the chunk from rank s lands
  // at into[s].
  struct Chunk {
    uint8_t* device = nullptr;
    uint64_t bytes = 0;
  };
  absl::Status HostStagedExchange(const std::vector<Chunk>& out, const std::vector<Chunk>& into,
                                  absl::string_view what) {
    if (absl::Status s = Cuda(cudaStreamSynchronize(stream_.get()), what); !s.ok()) return s;
    const uint64_t header = static_cast<uint64_t>(ep_) * sizeof(uint64_t);
    uint64_t body = 0;
    for (int64_t d = 0; d < ep_; ++d) body += d == rank_ ? 0 : out[static_cast<size_t>(d)].bytes;
    std::vector<uint8_t> message(header + body);
    uint64_t at = header;
    for (int64_t d = 0; d < ep_; ++d) {
      const uint64_t bytes = d == rank_ ? 0 : out[static_cast<size_t>(d)].bytes;
      std::memcpy(message.data() + d * sizeof(uint64_t), &bytes, sizeof(bytes));
      if (bytes > 0) {
        if (absl::Status s =
                Cuda(cudaMemcpyAsync(message.data() + at, out[static_cast<size_t>(d)].device, bytes,
                                     cudaMemcpyDeviceToHost, stream_.get()),
                     absl::StrCat(what, ": to the host"));
            !s.ok()) {
          return s;
        }
      }
      at += bytes;
    }
    if (absl::Status s = Cuda(cudaStreamSynchronize(stream_.get()), what); !s.ok()) return s;
    absl::StatusOr<std::vector<std::vector<uint8_t>>> all = group_.Allgather(message);
    if (!all.ok()) return all.status();
    for (int64_t src = 0; src < ep_ && src < static_cast<int64_t>(all->size()); ++src) {
      if (src == rank_) continue;
      const std::vector<uint8_t>& m = (*all)[static_cast<size_t>(src)];
      if (m.size() < header) return absl::DataLossError(absl::StrCat(what, ": a short message"));
      uint64_t offset = header;
      uint64_t bytes = 0;
      for (int64_t d = 0; d <= rank_; ++d) {
        std::memcpy(&bytes, m.data() + d * sizeof(uint64_t), sizeof(bytes));
        if (d < rank_) offset += bytes;
      }
      if (bytes != into[static_cast<size_t>(src)].bytes || offset + bytes > m.size()) {
        return absl::DataLossError(absl::StrFormat("%s: rank %d sent %d bytes, %d expected", what,
                                                   src, bytes,
                                                   into[static_cast<size_t>(src)].bytes));
      }
      // On the runner's stream, not with cudaMemcpy: from pageable memory that may return
      // before its DMA lands, and the legacy stream does not order the runner's (non-blocking)
      // stream, whose next read would then see the old bytes.
      if (bytes > 0) {
        if (absl::Status s =
                Cuda(cudaMemcpyAsync(into[static_cast<size_t>(src)].device, m.data() + offset,
                                     bytes, cudaMemcpyHostToDevice, stream_.get()),
                     absl::StrCat(what, ": from the host"));
            !s.ok()) {
          return s;
        }
      }
    }
    // The gathered messages must outlive the copies.
    return Cuda(cudaStreamSynchronize(stream_.get()), what);
  }

  // Rows of `hidden` bf16 from every peer's send buffer to its receive buffer; to itself a copy.
  absl::Status ExchangeRows(const Buffer& send, const std::vector<int64_t>& send_counts,
                            const std::vector<int64_t>& send_offsets, const Buffer& recv,
                            const std::vector<int64_t>& recv_counts,
                            const std::vector<int64_t>& recv_offsets, absl::string_view what) {
    const uint64_t row = static_cast<uint64_t>(hidden_) * 2;
    const auto at = [row](const Buffer& b, int64_t offset) {
      return b.as<uint8_t>() + static_cast<uint64_t>(offset) * row;
    };
    const size_t self = static_cast<size_t>(rank_);
    if (send_counts[self] > 0) {
      if (absl::Status s =
              Cuda(cudaMemcpyAsync(at(recv, recv_offsets[self]), at(send, send_offsets[self]),
                                   static_cast<uint64_t>(send_counts[self]) * row,
                                   cudaMemcpyDeviceToDevice, stream_.get()),
                   absl::StrCat(what, " to itself"));
          !s.ok()) {
        return s;
      }
    }
    if (ep_ == 1) return absl::OkStatus();
    std::vector<Chunk> out(static_cast<size_t>(ep_)), into(static_cast<size_t>(ep_));
    for (size_t q = 0; q < out.size(); ++q) {
      out[q] = {at(send, send_offsets[q]), static_cast<uint64_t>(send_counts[q]) * row};
      into[q] = {at(recv, recv_offsets[q]), static_cast<uint64_t>(recv_counts[q]) * row};
    }
    return ExchangeChunks(out, into, what);
  }

  // out[q] goes to peer q's into[this rank], for every peer but this rank: grouped NCCL sends and
  // receives, or through host memory and MPI when the ranks share a GPU. Empty chunks are skipped.
  absl::Status ExchangeChunks(const std::vector<Chunk>& out, const std::vector<Chunk>& into,
                              absl::string_view what) {
    if (host_staged_) return HostStagedExchange(out, into, what);
    if (absl::Status s = Nccl(ncclGroupStart(), "ncclGroupStart"); !s.ok()) return s;
    for (int64_t peer = 0; peer < ep_; ++peer) {
      const size_t q = static_cast<size_t>(peer);
      if (peer == rank_) continue;
      absl::Status s;
      if (out[q].bytes > 0) {
        s = Nccl(ncclSend(out[q].device, out[q].bytes, ncclUint8, static_cast<int>(peer),
                          comm_.get(), stream_.get()),
                 absl::StrCat(what, ": ncclSend"));
      }
      if (s.ok() && into[q].bytes > 0) {
        s = Nccl(ncclRecv(into[q].device, into[q].bytes, ncclUint8, static_cast<int>(peer),
                          comm_.get(), stream_.get()),
                 absl::StrCat(what, ": ncclRecv"));
      }
      if (!s.ok()) {
        (void)ncclGroupEnd();
        return s;
      }
    }
    return Nccl(ncclGroupEnd(), absl::StrCat(what, ": ncclGroupEnd"));
  }

  // Counts first: each source tells each owner how many rows per local expert follow; the owner
  // sizes its receives from them and holds them to the plan.
  absl::StatusOr<std::vector<int64_t>> ExchangeCounts(const LayerState& l) {
    const int64_t epr = l.plan.experts_per_rank;
    const size_t bytes = static_cast<size_t>(epr) * 4;
    auto* sent = l.counts_send.as<uint8_t>();
    auto* got = counts_recv_.as<uint8_t>();
    if (absl::Status s = Cuda(cudaMemcpyAsync(got + rank_ * bytes, sent + rank_ * bytes, bytes,
                                              cudaMemcpyDeviceToDevice, stream_.get()),
                              "the counts to itself");
        !s.ok()) {
      return s;
    }
    if (ep_ > 1) {
      std::vector<Chunk> out(static_cast<size_t>(ep_)), into(static_cast<size_t>(ep_));
      for (int64_t q = 0; q < ep_; ++q) {
        out[static_cast<size_t>(q)] = {sent + q * bytes, bytes};
        into[static_cast<size_t>(q)] = {got + q * bytes, bytes};
      }
      if (absl::Status s = ExchangeChunks(out, into, "the counts"); !s.ok()) return s;
    }
    auto* host = static_cast<int32_t*>(host_counts_.get());
    if (absl::Status s = Cuda(cudaMemcpyAsync(host, got, static_cast<size_t>(ep_) * bytes,
                                              cudaMemcpyDeviceToHost, stream_.get()),
                              "reading the counts back");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Cuda(cudaStreamSynchronize(stream_.get()), "waiting for the counts");
        !s.ok()) {
      return s;
    }
    const dep::DestinationPlan& dest = l.plan.destinations[static_cast<size_t>(rank_)];
    std::vector<int64_t> recv_counts(static_cast<size_t>(ep_), 0);
    for (int64_t s = 0; s < ep_; ++s) {
      for (int64_t e = 0; e < epr; ++e) {
        const int32_t c = host[s * epr + e];
        if (c != dest.counts_from[static_cast<size_t>(s * epr + e)]) {
          return absl::DataLossError(absl::StrFormat(
              "rank %d announced %d rows for local expert %d of rank %d, the plan has %d", s, c, e,
              rank_, dest.counts_from[static_cast<size_t>(s * epr + e)]));
        }
        recv_counts[static_cast<size_t>(s)] += c;
      }
    }
    return recv_counts;
  }

  absl::Status Record(LayerState& l, LayerEvent e) {
    return Cuda(cudaEventRecord(l.events[e].get(), stream_.get()), "recording a timing event");
  }

  absl::Status RunLayer(const DepRunSpec& spec, int64_t forward, LayerState& l) {
    cudaStream_t stream = stream_.get();
    const dep::SourcePlan& src = l.plan.sources[static_cast<size_t>(rank_)];
    const dep::DestinationPlan& dest = l.plan.destinations[static_cast<size_t>(rank_)];
    const uint64_t input_seed =
        dwdp::moe::LayerInputSeed(l.layer, forward, rank_, spec.workload_seed);
    if (absl::Status s = Launched(
            moe::LaunchGenerateInput(stream, x_.as<uint16_t>(), input_seed, tokens_, hidden_),
            "the input");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Record(l, kStart); !s.ok()) return s;
    // Attention stand-in: the DWDP run's attention time for this rank's tokens.
    const size_t p = static_cast<size_t>(&l - layers_.data());
    const double attention = p < spec.times.attention_ns.size() ? spec.times.attention_ns[p] : 0;
    ComputeArgs args;
    args.duration_ns =
        static_cast<uint64_t>(attention * static_cast<double>(tokens_) /
                              static_cast<double>(std::max<int64_t>(spec.mean_tokens, 1)));
    args.mismatch = mismatch_.as<uint64_t>();
    args.sink = mismatch_.as<uint64_t>() + 1;
    args.sink_guard = 1;
    if (absl::Status s = Launched(LaunchCompute(stream, args, compute_blocks_), "the stand-in");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Record(l, kAttention); !s.ok()) return s;
    if (absl::Status s = Barrier(); !s.ok()) return s;
    if (absl::Status s = Record(l, kArrived); !s.ok()) return s;
    // Dispatch.
    if (absl::Status s = Launched(
            dep_kernels::LaunchGatherRows(stream, x_.as<uint16_t>(), l.send_token.as<int32_t>(),
                                          src.rows(), hidden_, send_.as<uint16_t>()),
            "the send gather");
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::vector<int64_t>> recv_counts = ExchangeCounts(l);
    if (!recv_counts.ok()) return recv_counts.status();
    std::vector<int64_t> recv_offsets(static_cast<size_t>(ep_), 0);
    for (int64_t s = 1; s < ep_; ++s) {
      recv_offsets[static_cast<size_t>(s)] =
          recv_offsets[static_cast<size_t>(s - 1)] + (*recv_counts)[static_cast<size_t>(s - 1)];
    }
    if (absl::Status s = ExchangeRows(send_, src.send_counts, src.send_offsets, recv_, *recv_counts,
                                      recv_offsets, "the dispatch");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Record(l, kDispatched); !s.ok()) return s;
    // The local experts.
    const int64_t rows = dest.rows();
    if (absl::Status s =
            Launched(dep_kernels::LaunchGatherRows(
                         stream, recv_.as<uint16_t>(), l.permuted_from.as<int32_t>(), rows, hidden_,
                         reinterpret_cast<uint16_t*>(local_layer_->permuted_input())),
                     "the permutation");
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            local_layer_->EnqueuePermutedExperts(l.local, l.w13.address(), l.w2.address(), stream);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            Launched(dep_kernels::LaunchGatherRows(
                         stream, reinterpret_cast<const uint16_t*>(local_layer_->permuted_output()),
                         l.returned_from.as<int32_t>(), rows, hidden_, back_.as<uint16_t>()),
                     "the inverse permutation");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Record(l, kComputed); !s.ok()) return s;
    if (absl::Status s = Barrier(); !s.ok()) return s;
    if (absl::Status s = Record(l, kReady); !s.ok()) return s;
    // Combine: every row back to its source, then the weighted sum per token.
    if (absl::Status s = ExchangeRows(back_, *recv_counts, recv_offsets, returned_, src.send_counts,
                                      src.send_offsets, "the combine");
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            Launched(moe::LaunchCombine(stream, returned_.as<uint16_t>(), l.entry_row.as<int32_t>(),
                                        l.weights.as<float>(), tokens_, hidden_,
                                        static_cast<int32_t>(top_k_), out_.as<uint16_t>()),
                     "the combine");
        !s.ok()) {
      return s;
    }
    return Record(l, kCombined);
  }

  absl::StatusOr<dep::DepLayerTimes> Times(const LayerState& l) {
    float ms[kEvents] = {};
    for (int i = 1; i < kEvents; ++i) {
      if (absl::Status s =
              Cuda(cudaEventElapsedTime(&ms[i], l.events[i - 1].get(), l.events[i].get()),
                   "reading a timing event");
          !s.ok()) {
        return s;
      }
    }
    const auto ns = [&ms](int i) { return static_cast<double>(ms[i]) * 1e6; };
    dep::DepLayerTimes t;
    t.layer = l.layer;
    t.attention_ns = ns(kAttention);
    t.wait_ns = ns(kArrived) + ns(kReady);
    t.dispatch_ns = ns(kDispatched);
    t.compute_ns = ns(kComputed);
    t.combine_ns = ns(kCombined);
    t.dispatch_bytes = dep::RowsBytes(l.plan.shape, dep::RowsSentAway(l.plan, rank_));
    t.combine_bytes = dep::RowsBytes(l.plan.shape, dep::RowsReceivedFromOthers(l.plan, rank_));
    t.rows_received = l.plan.destinations[static_cast<size_t>(rank_)].rows();
    return t;
  }

  // The same tokens through the MoE kernel with every expert's weights (DWDP's view), outside
  // the timed spans; the DEP output is held to it with the stated tolerance.
  absl::Status CheckLayer(int64_t forward, LayerState& l, DepRankRun& run) {
    (void)run;
    cudaStream_t stream = stream_.get();
    const uint64_t n = static_cast<uint64_t>(l.plan.shape.num_experts);
    if (absl::Status s =
            Launched(LaunchFill(stream, full_w13_.address(), n * w13_expert_bytes_, l.layer,
                                w13_weight_, w13_expert_bytes_, 0, 1024, kPatternBf16),
                     "the full weight fill");
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            Launched(LaunchFill(stream, full_w2_.address(), n * w2_expert_bytes_, l.layer,
                                w2_weight_, w2_expert_bytes_, 0, 1024, kPatternBf16),
                     "the full weight fill");
        !s.ok()) {
      return s;
    }
    moe::MoeIo io;
    io.input = x_.address();
    io.output = reference_.address();
    if (absl::Status s = full_layer_->Enqueue(l.resident, full_w13_.address(), full_w2_.address(),
                                              stream, moe::GemmStrategy::kGroupedBatched, io);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = full_layer_->CheckRouting(stream); !s.ok()) return s;
    const size_t elements = static_cast<size_t>(tokens_ * hidden_);
    std::vector<uint16_t> got(elements), want(elements);
    if (absl::Status s =
            Cuda(cudaMemcpy(got.data(), out_.as<void>(), elements * 2, cudaMemcpyDeviceToHost),
                 "reading the DEP output");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Cuda(
            cudaMemcpy(want.data(), reference_.as<void>(), elements * 2, cudaMemcpyDeviceToHost),
            "reading the reference output");
        !s.ok()) {
      return s;
    }
    std::vector<float> a(elements), b(elements);
    for (size_t i = 0; i < elements; ++i) {
      a[i] = dwdp::moe::Bf16ToFloat(got[i]);
      b[i] = dwdp::moe::Bf16ToFloat(want[i]);
    }
    const dep::Agreement agreement = dep::OutputsAgree(a, b, hidden_);
    check_.compared += agreement.compared;
    check_.exact += agreement.exact;
    check_.max_error = std::max(check_.max_error, agreement.max_error);
    check_.scale = std::max(check_.scale, agreement.scale);
    if (!agreement.ok && check_.ok) {
      check_.ok = false;
      check_.first_outside = absl::StrFormat("rank %d, forward %d, layer %d, %s", rank_, forward,
                                             l.layer, agreement.first_outside);
    }
    return absl::OkStatus();
  }

  Comm& group_;
  int64_t rank_;
  int64_t ep_;
  bool host_staged_;
  CommPtr comm_;
  StreamPtr stream_;
  int compute_blocks_ = 1;
  int64_t tokens_ = 0;
  int64_t hidden_ = 0;
  int64_t top_k_ = 0;
  std::vector<LayerState> layers_;
  Buffer x_, out_, send_, returned_, recv_, back_, counts_recv_, flag_, mismatch_;
  std::unique_ptr<void, HostFree> host_counts_;
  std::unique_ptr<moe::MoeLayer> local_layer_;
  // Functional mode.
  std::unique_ptr<moe::MoeLayer> full_layer_;
  Buffer full_w13_, full_w2_, reference_;
  int64_t w13_weight_ = 0, w2_weight_ = 0;
  uint64_t w13_expert_bytes_ = 0, w2_expert_bytes_ = 0;
  dep::Agreement check_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DepRunner>> MakeDepRunner(Comm& group,
                                                         const DepRunnerOptions& options) {
  auto runner = std::make_unique<NcclDepRunner>(group, options);
  if (absl::Status s = runner->Init(); !s.ok()) return s;
  return std::unique_ptr<DepRunner>(std::move(runner));
}

}  // namespace dwdp::cuda
