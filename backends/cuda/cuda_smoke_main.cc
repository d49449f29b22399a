// dwdp_cuda_smoke: the cuda backend end to end on real GPUs, through the same door dwdp uses
// (the loader and the factory), without the core pipeline:
//
//   mpirun -np 2 build/default/cli/dwdp_cuda_smoke [--mib-per-rank 64] [--layers 3]
//          [--timeout 60] [--handles fd|fabric|auto] [--exit-after-export RANK]
//
// Every rank owns one slice of a tensor of (world size x slice) bytes per layer, filled with the
// pattern. It exports the slice's handle, the ranks exchange handles, import and map their peers'
// slices (peer views), build the composite VA of each layer (its own handle plus one pool page
// per peer slice, one set-access), pull the peer slices in rotate order on a copy stream, and a
// kernel on the compute stream verifies every byte of the composite tensor. Prints per-rank copy
// bandwidth and the handle kind. Exit 0: all good; 1: a check failed; 2: cannot run here.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "backends/cuda/cuda_session.h"
#include "core/backend.h"
#include "core/run/exit_code.h"

namespace dwdp::cuda {
namespace {

struct SmokeOptions {
  uint64_t mib_per_rank = 64;
  int64_t layers = 3;
  double timeout_seconds = 60;
  HandleKindRequest handles = HandleKindRequest::kAuto;
  int64_t exit_after_export_rank = -1;
};

bool ParseOptions(int argc, char** argv, SmokeOptions* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    const std::string value = argv[++i];
    if (flag == "--mib-per-rank") {
      if (!absl::SimpleAtoi(value, &options->mib_per_rank) || options->mib_per_rank == 0) {
        return false;
      }
    } else if (flag == "--layers") {
      if (!absl::SimpleAtoi(value, &options->layers) || options->layers <= 0) return false;
    } else if (flag == "--timeout") {
      if (!absl::SimpleAtod(value, &options->timeout_seconds)) return false;
    } else if (flag == "--exit-after-export") {
      if (!absl::SimpleAtoi(value, &options->exit_after_export_rank)) return false;
    } else if (flag == "--handles") {
      if (value == "fd") {
        options->handles = HandleKindRequest::kPosixFd;
      } else if (value == "fabric") {
        options->handles = HandleKindRequest::kFabric;
      } else if (value == "auto") {
        options->handles = HandleKindRequest::kAuto;
      } else {
        return false;
      }
    } else {
      return false;
    }
  }
  return true;
}

// One layer of this rank: its slice, the peers' slices as imported views, and the composite.
struct Layer {
  Handle local;
  std::vector<Handle> imported;  // by rank (this rank's entry unused)
  std::vector<DevPtr> peer_views;
  std::vector<Handle> pool_pages;  // by rank (this rank's entry unused)
  DevPtr composite = 0;
};

absl::Status Run(CudaBackendFactory& factory, const SmokeOptions& options) {
  const CudaProcessInfo& process = factory.process();
  absl::StatusOr<std::unique_ptr<Comm>> group = factory.CreateGroupComm(process.world_size);
  if (!group.ok()) return group.status();
  const int64_t rank = (*group)->rank();
  const int64_t size = (*group)->size();

  CudaDriverOptions driver_options;
  driver_options.rank = rank;
  driver_options.handle_kind = options.handles;
  driver_options.log_handle_choice = rank == 0;
  absl::StatusOr<std::unique_ptr<Driver>> driver = factory.CreateDriver(driver_options);
  if (!driver.ok()) return driver.status();
  CudaStreamsOptions streams_options;
  streams_options.rank = rank;
  absl::StatusOr<std::unique_ptr<Streams>> streams = factory.CreateStreams(streams_options);
  if (!streams.ok()) return streams.status();
  Driver& d = **driver;
  Streams& s = **streams;

  const uint64_t g = d.granularity();
  const uint64_t slice = (options.mib_per_rank << 20) / g * g;
  if (slice == 0) return absl::InvalidArgumentError("the slice is smaller than the granularity");
  // Experts that straddle pages and slices, as uneven expert sizes do.
  const uint64_t expert_bytes = slice / 3 + 4099;

  absl::StatusOr<StreamId> copy = s.CreateStream("copy");
  absl::StatusOr<StreamId> compute = s.CreateStream("compute");
  absl::StatusOr<EventId> ready = s.CreateEvent();
  if (!copy.ok() || !compute.ok() || !ready.ok()) return absl::InternalError("stream setup failed");

  // Local slices: create, fill, export.
  std::vector<Layer> layers(static_cast<size_t>(options.layers));
  std::vector<std::vector<SharedHandle>> exported(1);
  for (int64_t l = 0; l < options.layers; ++l) {
    Layer& layer = layers[static_cast<size_t>(l)];
    absl::StatusOr<Handle> local = d.Create(slice, d.shareable_kind());
    if (!local.ok()) return local.status();
    layer.local = *local;
    absl::StatusOr<DevPtr> va = d.Reserve(slice, g);
    if (!va.ok()) return va.status();
    if (absl::Status st = d.Map(*va, slice, layer.local, 0); !st.ok()) return st;
    if (absl::Status st = d.SetAccess(*va, slice); !st.ok()) return st;
    const PatternRef pattern{l, 0, expert_bytes};
    if (absl::Status st =
            s.Fill(*va, slice, pattern, static_cast<uint64_t>(rank) * slice, *copy, {});
        !st.ok()) {
      return st;
    }
    if (absl::Status st = s.Synchronize(); !st.ok()) return st;
    if (absl::Status st = d.Unmap(*va, slice); !st.ok()) return st;
    if (absl::Status st = d.Free(*va, slice); !st.ok()) return st;
    absl::StatusOr<SharedHandle> shared = d.Export(layer.local);
    if (!shared.ok()) return shared.status();
    exported[0].push_back(std::move(*shared));
  }

  HandleExchangeOptions exchange_options;
  exchange_options.timeout_seconds = options.timeout_seconds;
  exchange_options.exit_after_export_rank = options.exit_after_export_rank;
  absl::StatusOr<std::unique_ptr<HandleExchange>> exchange =
      factory.CreateHandleExchange(**group, d.shareable_kind(), exchange_options);
  if (!exchange.ok()) return exchange.status();
  auto received = (*exchange)->Exchange(std::move(exported));
  if (!received.ok()) return received.status();

  // Import and map the peers' slices; the imported fds close right after.
  for (int64_t l = 0; l < options.layers; ++l) {
    Layer& layer = layers[static_cast<size_t>(l)];
    layer.imported.resize(static_cast<size_t>(size));
    layer.peer_views.resize(static_cast<size_t>(size));
    for (int64_t p = 0; p < size; ++p) {
      if (p == rank) continue;
      SharedHandle& shared = (*received)[0][static_cast<size_t>(p)][static_cast<size_t>(l)];
      absl::StatusOr<Handle> imported = d.Import(shared);
      if (!imported.ok()) return imported.status();
      shared.close_fd();
      layer.imported[static_cast<size_t>(p)] = *imported;
      absl::StatusOr<DevPtr> view = d.Reserve(slice, g);
      if (!view.ok()) return view.status();
      if (absl::Status st = d.Map(*view, slice, *imported, 0); !st.ok()) return st;
      if (absl::Status st = d.SetAccess(*view, slice); !st.ok()) return st;
      layer.peer_views[static_cast<size_t>(p)] = *view;
    }
  }
  if (absl::Status st = (*exchange)->Barrier(); !st.ok()) return st;
  received->clear();  // exported fds close after the barrier

  // Composite VAs: [slice of rank 0 | slice of rank 1 | ...], this rank's own handle in place.
  const uint64_t total = slice * static_cast<uint64_t>(size);
  for (Layer& layer : layers) {
    absl::StatusOr<DevPtr> composite = d.Reserve(total, g);
    if (!composite.ok()) return composite.status();
    layer.composite = *composite;
    layer.pool_pages.resize(static_cast<size_t>(size));
    for (int64_t p = 0; p < size; ++p) {
      Handle piece = layer.local;
      if (p != rank) {
        absl::StatusOr<Handle> page = d.Create(slice, HandleKind::kNone);
        if (!page.ok()) return page.status();
        layer.pool_pages[static_cast<size_t>(p)] = *page;
        piece = *page;
      }
      if (absl::Status st =
              d.Map(layer.composite + static_cast<uint64_t>(p) * slice, slice, piece, 0);
          !st.ok()) {
        return st;
      }
    }
    if (absl::Status st = d.SetAccess(layer.composite, total); !st.ok()) return st;
  }

  // Pull the peer slices (rotate order), then verify every byte of every composite tensor.
  for (int64_t l = 0; l < options.layers; ++l) {
    Layer& layer = layers[static_cast<size_t>(l)];
    for (int64_t step = 1; step < size; ++step) {
      const int64_t p = (rank + step) % size;
      OpTag tag;
      tag.kind = OpKind::kCopy;
      tag.layer = l;
      tag.peer = p;
      if (absl::Status st = s.Copy(layer.composite + static_cast<uint64_t>(p) * slice,
                                   layer.peer_views[static_cast<size_t>(p)], slice, *copy, tag);
          !st.ok()) {
        return st;
      }
    }
    if (absl::Status st = s.Record(*ready, *copy, {}); !st.ok()) return st;
    if (absl::Status st = s.Wait(*compute, *ready, {}); !st.ok()) return st;
    KernelLaunch kernel;
    kernel.name = absl::StrFormat("verify layer %d", l);
    kernel.reads.push_back({layer.composite, total, true, PatternRef{l, 0, expert_bytes}});
    if (absl::Status st = s.Launch(kernel, *compute, {}); !st.ok()) return st;
  }
  if (absl::Status st = s.Synchronize(); !st.ok()) return st;

  double copy_ns = 0;
  uint64_t copy_bytes = 0;
  for (const TimedOp& op : s.TakeTimeline()) {
    if (op.tag.kind != OpKind::kCopy) continue;
    copy_ns += op.end_ns - op.start_ns;
    copy_bytes += op.bytes;
  }
  std::printf(
      "rank %ld on %s GPU %d (%s): %s handles, %ld layers verified; pulled %.1f MiB from %ld "
      "peers at %.1f GB/s\n",
      static_cast<long>(rank), process.hostname.c_str(), process.device_ordinal,
      process.device_name.c_str(), HandleKindName(d.shareable_kind()),
      static_cast<long>(options.layers), copy_bytes / 1048576.0, static_cast<long>(size - 1),
      copy_ns > 0 ? copy_bytes / copy_ns : 0.0);
  std::fflush(stdout);

  // Teardown in the spec's order: composite VAs, pool pages, peer views, imported, local.
  for (Layer& layer : layers) {
    for (int64_t p = 0; p < size; ++p) {
      if (absl::Status st = d.Unmap(layer.composite + static_cast<uint64_t>(p) * slice, slice);
          !st.ok()) {
        return st;
      }
    }
    if (absl::Status st = d.Free(layer.composite, total); !st.ok()) return st;
    for (int64_t p = 0; p < size; ++p) {
      if (p == rank) continue;
      if (absl::Status st = d.Release(layer.pool_pages[static_cast<size_t>(p)]); !st.ok()) {
        return st;
      }
      if (absl::Status st = d.Unmap(layer.peer_views[static_cast<size_t>(p)], slice); !st.ok()) {
        return st;
      }
      if (absl::Status st = d.Free(layer.peer_views[static_cast<size_t>(p)], slice); !st.ok()) {
        return st;
      }
      if (absl::Status st = d.Release(layer.imported[static_cast<size_t>(p)]); !st.ok()) {
        return st;
      }
    }
  }
  // Peers may still read our slices until everyone has unmapped them.
  if (absl::Status st = (*group)->Barrier(); !st.ok()) return st;
  for (Layer& layer : layers) {
    if (absl::Status st = d.Release(layer.local); !st.ok()) return st;
  }
  if (d.live_device_bytes() != 0) {
    return absl::InternalError(
        absl::StrFormat("%d device bytes still live after teardown", d.live_device_bytes()));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace dwdp::cuda

int main(int argc, char** argv) {
  using namespace dwdp::cuda;
  SmokeOptions options;
  if (!ParseOptions(argc, argv, &options)) {
    std::fprintf(stderr,
                 "usage: dwdp_cuda_smoke [--mib-per-rank N] [--layers N] [--timeout S] "
                 "[--handles fd|fabric|auto] [--exit-after-export RANK]\n");
    return 2;
  }
  CudaSessionOptions session_options;
  session_options.timeout_s = options.timeout_seconds;
  absl::StatusOr<std::unique_ptr<CudaSession>> session = CudaSession::Load(session_options);
  if (!session.ok()) {
    std::fprintf(stderr, "dwdp_cuda_smoke: %s\n", std::string(session.status().message()).c_str());
    return dwdp::ExitCodeOf(session.status());
  }
  const absl::Status status = Run((*session)->factory(), options);
  if (!status.ok()) {
    std::fprintf(stderr, "dwdp_cuda_smoke: rank %ld: %s\n",
                 static_cast<long>((*session)->process().world_rank), status.ToString().c_str());
  }
  return (*session)->Finish(status.ok() ? 0 : 1);
}
