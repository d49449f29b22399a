// include/dwdp/dwdp.h on the cuda backend: libdwdp.so.
//
// A thin shell over what `dwdp run --backend cuda` uses: the backend factory (MPI, the GPU),
// CudaDriver, CudaStreams, the handle exchange and the core's GroupRuntime, which does setup
// and teardown with rollback. What differs from a dwdp run: the local experts come from the
// engine's chunks (RuntimeOptions::local_experts), the engine's streams are adopted rather than
// created, and the engine issues the weight manager's calls itself.

#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "api/callback_comm.h"
#include "api/engine_config.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_coordinator.h"
#include "backends/cuda/cuda_session.h"
#include "backends/cuda/cuda_streams.h"
#include "backends/cuda/mpi_comm.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "core/pipeline/runtime.h"
#include "dwdp/dwdp.h"

namespace dwdp::api {
namespace {

Status ToApi(const absl::Status& status) {
  if (status.ok()) return Status::Ok();
  return Status::Error(absl::StrCat("dwdp: ", status.message()));
}

ContentionConfig ToContention(const Config& config) {
  ContentionConfig contention;
  switch (config.contention_mode) {
    case ContentionMode::kRotate:
      contention.mode = dwdp::ContentionMode::kRotate;
      break;
    case ContentionMode::kAscending:
      contention.mode = dwdp::ContentionMode::kAscending;
      break;
    case ContentionMode::kRoundRobin:
      contention.mode = dwdp::ContentionMode::kRoundRobin;
      break;
  }
  contention.slice_bytes = config.contention_slice_bytes;
  return contention;
}

// This rank's chunks against a valid config. Returns, by [position][weight], each chunk's
// device address.
absl::StatusOr<std::vector<std::vector<DevPtr>>> CheckChunks(
    const Config& config, const std::vector<LocalChunk>& chunks) {
  const size_t layers = config.moe_layers.size();
  const size_t weights = config.weights.size();
  std::vector<std::vector<DevPtr>> table(layers, std::vector<DevPtr>(weights, 0));
  for (const LocalChunk& chunk : chunks) {
    auto it = std::lower_bound(config.moe_layers.begin(), config.moe_layers.end(), chunk.layer);
    if (it == config.moe_layers.end() || *it != chunk.layer) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "a chunk is given for layer %d, which is not in moe_layers", chunk.layer));
    }
    if (chunk.weight < 0 || chunk.weight >= static_cast<int64_t>(weights)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("a chunk of layer %d names weight %d; the config has %d weights (0..%d)",
                          chunk.layer, chunk.weight, weights, weights - 1));
    }
    const Weight& weight = config.weights[chunk.weight];
    const size_t position = static_cast<size_t>(it - config.moe_layers.begin());
    DevPtr& slot = table[position][chunk.weight];
    if (slot != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("two chunks are given for layer %d %s", chunk.layer, weight.name));
    }
    if (chunk.device_ptr == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the chunk of layer %d %s has no device pointer", chunk.layer, weight.name));
    }
    // No overflow: the layout above multiplied num_experts (>= size) by the same bytes.
    const uint64_t expected =
        static_cast<uint64_t>(config.num_experts_per_worker) * weight.bytes_per_expert;
    if (chunk.bytes != expected) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the chunk of layer %d %s has %d bytes; it must hold num_experts_per_worker (%d) "
          "experts of %d bytes = %d bytes",
          chunk.layer, weight.name, chunk.bytes, config.num_experts_per_worker,
          weight.bytes_per_expert, expected));
    }
    slot = reinterpret_cast<DevPtr>(chunk.device_ptr);
  }
  for (size_t p = 0; p < layers; ++p) {
    for (size_t w = 0; w < weights; ++w) {
      if (table[p][w] == 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("no chunk is given for layer %d %s (every MoE layer needs one chunk "
                            "per weight)",
                            config.moe_layers[p], config.weights[w].name));
      }
    }
  }
  return table;
}

// A fingerprint of everything every rank must agree on, so a rank started with a different
// config fails setup up front instead of exchanging handles of the wrong sizes.
std::string Fingerprint(const Config& c) {
  std::string text = absl::StrCat(
      c.dwdp_size, "/", c.num_groups, "/", c.num_experts_per_worker, "/", c.num_prefetch_experts,
      "/", c.num_buffers, "/", c.pool_page_bytes, "/", static_cast<int>(c.contention_mode), "/",
      c.contention_slice_bytes, "/", c.num_experts, "/", absl::StrJoin(c.moe_layers, ","));
  for (const Weight& w : c.weights) absl::StrAppend(&text, "/", w.name, ":", w.bytes_per_expert);
  return text;
}

}  // namespace

struct Runtime::Impl {
  // Declaration order is the reverse of destruction order: the runtime (teardown) goes first,
  // the communicator last.
  std::unique_ptr<Comm> group;
  std::unique_ptr<Driver> driver;
  std::unique_ptr<cuda::CudaStreams> streams;
  std::unique_ptr<HandleExchange> exchange;
  std::unique_ptr<cuda::CudaCoordinator> coordinator;
  GroupLayout layout;  // GroupRuntime keeps a reference to it
  std::unique_ptr<GroupRuntime> runtime;

  int64_t rank = 0;
  PeerRange range;
  std::vector<std::vector<void*>> tensors;  // [position][weight]
  // The engine's streams seen so far; few in practice, so a linear scan beats a map.
  std::vector<std::pair<void*, StreamId>> adopted;
  bool closed = false;

  absl::StatusOr<int64_t> PositionOf(int64_t layer, const char* call) const {
    auto it = std::lower_bound(layout.moe_layers.begin(), layout.moe_layers.end(), layer);
    if (it == layout.moe_layers.end() || *it != layer) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: layer %d is not a MoE layer of the config", call, layer));
    }
    return static_cast<int64_t>(it - layout.moe_layers.begin());
  }

  // Registering a stream is host bookkeeping only (no driver call, no synchronisation).
  absl::StatusOr<StreamId> StreamOf(void* stream, const char* role) {
    for (const auto& [native, id] : adopted) {
      if (native == stream) return id;
    }
    auto id = streams->AdoptStream(stream, absl::StrFormat("engine %s stream %p", role, stream));
    if (!id.ok()) return id.status();
    adopted.emplace_back(stream, *id);
    return *id;
  }

  absl::Status Usable(const char* call) const {
    if (closed || runtime == nullptr) {
      return absl::FailedPreconditionError(absl::StrFormat("%s after close()", call));
    }
    return absl::OkStatus();
  }

  absl::Status Close() {
    if (closed) return absl::OkStatus();
    closed = true;
    absl::Status first;
    if (runtime != nullptr) {
      first = runtime->Teardown();
      runtime.reset();
    }
    coordinator.reset();
    exchange.reset();
    streams.reset();
    driver.reset();
    group.reset();
    tensors.clear();
    return first;
  }
};

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Runtime::~Runtime() { (void)close(); }

Status Runtime::Create(const Config& config, const std::vector<LocalChunk>& chunks,
                       const Options& options, std::unique_ptr<Runtime>* runtime) {
  if (runtime == nullptr)
    return Status::Error("dwdp: Runtime::Create needs a place for the result");
  runtime->reset();
  if (absl::Status st = ValidateConfig(config); !st.ok()) return ToApi(st);
  // A chunk error is this rank's alone: it is reported after the group has met (below), so
  // the peers learn of it instead of waiting for this rank until their timeout.
  auto sources = CheckChunks(config, chunks);

  auto impl = std::make_unique<Impl>();
  // The engine's communicator is checked before any GPU work, like the config.
  if (options.group_comm != nullptr) {
    auto group = CallbackComm::Create(*options.group_comm);
    if (!group.ok()) return ToApi(group.status());
    if ((*group)->size() != config.dwdp_size) {
      return ToApi(absl::InvalidArgumentError(
          absl::StrFormat("Options::group_comm has %d ranks; a DWDP group has dwdp_size = %d",
                          (*group)->size(), config.dwdp_size)));
    }
    impl->group = *std::move(group);
  }

  // The same bring-up as every dwdp tool (cuda_session.h), on the GPU the engine made current.
  cuda::CudaSessionOptions session_options;
  session_options.timeout_s = options.timeout_seconds;
  session_options.use_current_device = true;
  session_options.use_mpi = options.group_comm == nullptr;
  auto session = cuda::CudaSession::Open(cuda::GetCudaBackendFactory(), session_options);
  if (!session.ok()) return ToApi(session.status());
  cuda::CudaBackendFactory& factory = (*session)->factory();

  if (impl->group == nullptr && options.mpi_comm == Options::kSplitWorld) {
    PartitionInput input = ToPartitionInput(config);
    input.world_size = factory.process().world_size;
    input.rank = factory.process().world_rank;
    if (auto error = ValidatePartition(input)) {
      return ToApi(absl::InvalidArgumentError(absl::StrCat(error->check, ": ", error->message)));
    }
    auto group = factory.CreateGroupComm(config.dwdp_size);
    if (!group.ok()) return ToApi(group.status());
    impl->group = *std::move(group);
  } else if (impl->group == nullptr) {
    MPI_Comm comm = MPI_Comm_f2c(static_cast<MPI_Fint>(options.mpi_comm));
    if (comm == MPI_COMM_NULL) {
      return ToApi(absl::InvalidArgumentError("Options::mpi_comm is MPI_COMM_NULL"));
    }
    auto group = cuda::MpiComm::Duplicate(comm, options.timeout_seconds);
    if (!group.ok()) return ToApi(group.status());
    impl->group = *std::move(group);
    if (impl->group->size() != config.dwdp_size) {
      return ToApi(absl::InvalidArgumentError(absl::StrFormat(
          "the communicator given in Options::mpi_comm has %d ranks; a DWDP group has "
          "dwdp_size = %d",
          impl->group->size(), config.dwdp_size)));
    }
  }
  impl->rank = impl->group->rank();

  // Before any handle is created every rank learns whether every rank's chunks are usable and
  // whether all were given the same config, so a bad rank is named on all of them at once.
  const std::string fingerprint = Fingerprint(config);
  const std::string vote = sources.ok() ? absl::StrCat("ok ", fingerprint)
                                        : absl::StrCat("error ", sources.status().message());
  auto votes = impl->group->Allgather(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(vote.data()), vote.size()));
  if (!sources.ok()) return ToApi(sources.status());
  if (!votes.ok()) return ToApi(votes.status());
  for (size_t r = 0; r < votes->size(); ++r) {
    const std::string theirs((*votes)[r].begin(), (*votes)[r].end());
    if (absl::StartsWith(theirs, "error ")) {
      return ToApi(absl::FailedPreconditionError(absl::StrFormat(
          "group rank %d cannot start: %s", r, absl::string_view(theirs).substr(6))));
    }
    if (theirs != vote) {
      return ToApi(absl::InvalidArgumentError(absl::StrFormat(
          "group rank %d was given a different Config than group rank %d; every rank of a "
          "group must pass the same one",
          r, impl->rank)));
    }
  }

  // Without MPI every process is world rank 0 to the factory: group rank 0 alone logs.
  auto driver = factory.CreateDriver({.rank = impl->rank, .log_handle_choice = impl->rank == 0});
  if (!driver.ok()) return ToApi(driver.status());
  impl->driver = *std::move(driver);
  // No per-operation timing events: an engine's forward never reads a timeline, and the
  // events would pile up.
  auto streams = cuda::CudaStreams::Create({.rank = impl->rank, .timing = false});
  if (!streams.ok()) return ToApi(streams.status());
  impl->streams = *std::move(streams);
  cuda::HandleExchangeOptions exchange_options;
  exchange_options.timeout_seconds = options.timeout_seconds;
  auto exchange =
      factory.CreateHandleExchange(*impl->group, impl->driver->shareable_kind(), exchange_options);
  if (!exchange.ok()) return ToApi(exchange.status());
  impl->exchange = *std::move(exchange);

  auto layout = LayoutOf(config, impl->driver->granularity());
  if (!layout.ok()) return ToApi(layout.status());
  impl->layout = *std::move(layout);
  impl->range = impl->layout.ranks[impl->rank].range;

  auto copy = impl->StreamOf(options.copy_stream, "copy");
  if (!copy.ok()) return ToApi(copy.status());
  impl->coordinator = std::make_unique<cuda::CudaCoordinator>(
      impl->rank, *impl->driver, *impl->streams, *impl->exchange, *impl->group);
  RuntimeOptions runtime_options;
  runtime_options.contention = ToContention(config);
  runtime_options.copy_stream = *copy;
  runtime_options.local_experts = [table = *std::move(sources)](
                                      int64_t, int64_t position,
                                      int64_t weight) -> absl::StatusOr<DevPtr> {
    return table.at(position).at(weight);
  };
  auto group_runtime = GroupRuntime::Setup(impl->layout, *impl->coordinator, runtime_options);
  if (!group_runtime.ok()) {
    return ToApi(absl::Status(group_runtime.status().code(),
                              absl::StrFormat("setup on group rank %d: %s", impl->rank,
                                              group_runtime.status().message())));
  }
  impl->runtime = *std::move(group_runtime);

  const RankLayout& mine = impl->layout.ranks[impl->rank];
  impl->tensors.assign(impl->layout.moe_layers.size(), {});
  for (int64_t p = 0; p < impl->layout.num_layers(); ++p) {
    for (size_t w = 0; w < mine.weights.size(); ++w) {
      const DevPtr base = impl->runtime->composite_base(impl->rank, p, static_cast<int64_t>(w));
      impl->tensors[p].push_back(reinterpret_cast<void*>(base + mine.weights[w].pre_padding));
    }
  }
  runtime->reset(new Runtime(std::move(impl)));
  return Status::Ok();
}

int64_t Runtime::group_rank() const { return impl_->rank; }
int64_t Runtime::local_expert_begin() const { return impl_->range.start; }
int64_t Runtime::local_expert_end() const { return impl_->range.end; }
uint64_t Runtime::device_bytes() const {
  return impl_->driver != nullptr ? impl_->driver->live_device_bytes() : 0;
}

void* Runtime::tensor(int64_t layer, int64_t weight) const {
  if (impl_->closed) return nullptr;
  auto position = impl_->PositionOf(layer, "tensor");
  if (!position.ok()) return nullptr;
  const std::vector<void*>& row = impl_->tensors[*position];
  if (weight < 0 || weight >= static_cast<int64_t>(row.size())) return nullptr;
  return row[weight];
}

Status Runtime::prime(void* copy_stream) {
  if (absl::Status st = impl_->Usable("prime"); !st.ok()) return ToApi(st);
  auto copy = impl_->StreamOf(copy_stream, "copy");
  if (!copy.ok()) return ToApi(copy.status());
  return ToApi(impl_->runtime->Prime(impl_->rank, *copy));
}

Status Runtime::wait_and_bind(int64_t layer, void* compute_stream) {
  if (absl::Status st = impl_->Usable("wait_and_bind"); !st.ok()) return ToApi(st);
  auto position = impl_->PositionOf(layer, "wait_and_bind");
  if (!position.ok()) return ToApi(position.status());
  auto compute = impl_->StreamOf(compute_stream, "compute");
  if (!compute.ok()) return ToApi(compute.status());
  return ToApi(impl_->runtime->WaitAndBind(impl_->rank, *position, *compute));
}

Status Runtime::record_compute(int64_t layer, void* compute_stream) {
  if (absl::Status st = impl_->Usable("record_compute"); !st.ok()) return ToApi(st);
  auto position = impl_->PositionOf(layer, "record_compute");
  if (!position.ok()) return ToApi(position.status());
  auto compute = impl_->StreamOf(compute_stream, "compute");
  if (!compute.ok()) return ToApi(compute.status());
  return ToApi(impl_->runtime->RecordCompute(impl_->rank, *position, *compute));
}

Status Runtime::prefetch_next(int64_t layer, void* copy_stream) {
  if (absl::Status st = impl_->Usable("prefetch_next"); !st.ok()) return ToApi(st);
  auto position = impl_->PositionOf(layer, "prefetch_next");
  if (!position.ok()) return ToApi(position.status());
  auto copy = impl_->StreamOf(copy_stream, "copy");
  if (!copy.ok()) return ToApi(copy.status());
  return ToApi(impl_->runtime->PrefetchNext(impl_->rank, *position, *copy));
}

Status Runtime::close() { return ToApi(impl_->Close()); }

void Shutdown() { cuda::GetCudaBackendFactory().Shutdown(0); }

}  // namespace dwdp::api
