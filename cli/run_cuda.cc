// `dwdp run --backend cuda`: one process per GPU under mpirun/srun. Every rank runs the same
// GroupRuntime as the simulator over the cuda backend module; rank 0 of the group gathers the
// timelines and prints the same report (identical JSON shape), plus what only a GPU run has:
// the raw copy rate of the same byte volumes (prefetch efficiency = achieved / raw), the host
// cost of wait_and_bind, and device memory before and after.

#include "cli/run_cuda.h"

#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "core/partition/partition.h"
#include "core/report/run_report.h"
#include "core/util/bytes.h"

#if defined(DWDP_HAVE_CUDA)
#include "backends/cuda/cuda_coordinator.h"
#include "backends/cuda/loader.h"
#endif

namespace dwdp::cli {

#if !defined(DWDP_HAVE_CUDA)

int RunOnCuda(const CudaRunRequest&) {
  std::cerr << "error: this dwdp was built without the cuda backend (the CUDA toolkit or MPI was "
               "not found at build time); rebuild with -DDWDP_CUDA=ON or use --backend sim\n";
  return 2;
}

#else

namespace {

using cuda::CudaCoordinator;

nlohmann::json OpToJson(const TimedOp& op) {
  return {op.rank,      op.stream,      static_cast<int>(op.tag.kind),
          op.tag.layer, op.tag.weight,  op.tag.peer,
          op.tag.slot,  op.tag.forward, op.tag.label,
          op.bytes,     op.issue_ns,    op.start_ns,
          op.end_ns};
}

TimedOp OpFromJson(const nlohmann::json& j) {
  TimedOp op;
  op.rank = j[0];
  op.stream = j[1];
  op.tag.kind = static_cast<OpKind>(j[2].get<int>());
  op.tag.layer = j[3];
  op.tag.weight = j[4];
  op.tag.peer = j[5];
  op.tag.slot = j[6];
  op.tag.forward = j[7];
  op.tag.label = j[8];
  op.bytes = j[9];
  op.issue_ns = j[10];
  op.start_ns = j[11];
  op.end_ns = j[12];
  return op;
}

std::vector<uint8_t> ToBytes(const nlohmann::json& j) {
  const std::string text = j.dump();
  return std::vector<uint8_t>(text.begin(), text.end());
}

// What each rank sends to the group's rank 0 at the end.
struct RankOutcome {
  nlohmann::json json = nlohmann::json::object();
};

int RunGroupRank(cuda::CudaBackendFactory& factory, const CudaRunRequest& request,
                 nlohmann::json& outcome) {
  const Scenario& scenario = *request.scenario;
  const GroupLayout& layout = *request.layout;
  const int64_t d = scenario.dwdp.dwdp_size;
  outcome["errors"] = nlohmann::json::array();
  const auto fail = [&](const std::string& message) {
    outcome["errors"].push_back(message);
    return kExitInvalid;
  };
  auto group = factory.CreateGroupComm(d);
  if (!group.ok()) return fail(absl::StrCat("group communicator: ", group.status().message()));
  const int64_t rank = (*group)->rank();
  outcome["rank"] = rank;
  auto driver = factory.CreateDriver({.rank = rank});
  if (!driver.ok()) return fail(std::string(driver.status().message()));
  auto streams = factory.CreateStreams({.rank = rank, .timing = request.gpu_timing});
  if (!streams.ok()) return fail(std::string(streams.status().message()));
  cuda::HandleExchangeOptions exchange_options;
  exchange_options.timeout_seconds = request.timeout_s;
  auto exchange =
      factory.CreateHandleExchange(**group, (*driver)->shareable_kind(), exchange_options);
  if (!exchange.ok()) return fail(std::string(exchange.status().message()));
  outcome["handle_kind"] = HandleKindName((*driver)->shareable_kind());
  // The driver and the runtime keep some device memory for themselves the first time a VMM
  // handle is mapped, a kernel is launched (its local memory) or a copy runs. Warm those paths
  // up once on a scratch allocation, then take the baseline that teardown must return to.
  {
    Driver& drv = **driver;
    Streams& str = **streams;
    const uint64_t g = drv.granularity();
    auto probe = drv.Create(g, drv.shareable_kind());
    if (probe.ok()) {
      auto shared = drv.Export(*probe);
      auto va = drv.Reserve(g, g);
      if (va.ok() && drv.Map(*va, g, *probe, 0).ok()) {
        auto stream = str.CreateStream("warm-up");
        if (drv.SetAccess(*va, g).ok() && stream.ok()) {
          const PatternRef pattern{0, 0, g / 2};
          OpTag tag;
          tag.label = "warm-up";
          (void)str.Fill(*va, g, pattern, 0, *stream, tag);
          (void)str.Copy(*va + g / 2, *va, g / 2, *stream, tag);
          (void)str.Launch({"warm-up", {{*va, g / 2, true, pattern}}, 0}, *stream, tag);
          (void)str.Synchronize();
          (void)str.TakeTimeline();
        }
        if (stream.ok()) (void)str.DestroyStream(*stream);
        (void)drv.Unmap(*va, g);
      }
      if (va.ok()) (void)drv.Free(*va, g);
      (void)drv.Release(*probe);
    }
  }
  auto memory_before = factory.DeviceMemoryInUse();

  CudaCoordinator coordinator(rank, **driver, **streams, **exchange, **group);
  RuntimeOptions options;
  options.functional = request.functional;
  options.fault = request.fault;
  options.attention_ns = request.times->attention_ns;
  options.moe_ns = request.times->moe_ns;
  options.prelude_ns = request.times->prelude_ns;
  options.contention = scenario.dwdp.contention;
  auto runtime = GroupRuntime::Setup(layout, coordinator, options);
  int exit_code = kExitOk;
  if (!runtime.ok()) {
    const std::string message =
        absl::StrCat("rank ", rank, ": setup: ", runtime.status().message());
    std::cerr << "error: " << message << "\n";
    exit_code = fail(message);
  }
  nlohmann::json ops = nlohmann::json::array();
  int64_t forwards_done = 0;
  double raw_ns = 0;
  uint64_t raw_bytes = 0;
  if (runtime.ok()) {
    (void)(*streams)->TakeTimeline();  // setup is not part of any forward
    for (int64_t f = 0; f < scenario.workload.forwards; ++f) {
      if (request.align_forwards) {
        // Diagnostic only: DWDP itself never synchronises ranks at run time.
        if (auto st = (*group)->Barrier(); !st.ok()) {
          exit_code = fail(absl::StrCat("barrier before forward ", f, ": ", st.message()));
          break;
        }
      }
      absl::Status st = (*runtime)->RunForward(f);
      ++forwards_done;
      if (!st.ok()) {
        std::cerr << "error: rank " << rank << ": " << st.message() << "\n";
        exit_code = fail(std::string(st.message()));
        break;
      }
    }
    for (const TimedOp& op : (*streams)->TakeTimeline()) ops.push_back(OpToJson(op));
    // Every rank decides together whether to run the copy probe, so no rank waits in a
    // collective that a failed peer skipped.
    bool all_ok = exit_code == kExitOk;
    if (auto votes = (*group)->Allgather(std::vector<uint8_t>{all_ok ? uint8_t{1} : uint8_t{0}});
        votes.ok()) {
      for (const auto& v : *votes) all_ok = all_ok && !v.empty() && v[0] == 1;
    } else {
      all_ok = false;
      exit_code = fail(absl::StrCat("agree on the copy probe: ", votes.status().message()));
    }
    // Raw copy rate: the same copies as one prefetch, one rank at a time with nothing else
    // running, so no link or copy engine is shared.
    for (int64_t turn = 0; turn < d && all_ok && request.gpu_timing; ++turn) {
      if (auto st = (*group)->Barrier(); !st.ok()) {
        exit_code = fail(absl::StrCat("barrier before the copy probe: ", st.message()));
        break;
      }
      if (turn != rank) continue;
      if (auto st = (*runtime)->ProbeLayerCopies(rank, 0); !st.ok()) {
        exit_code = fail(std::string(st.message()));
        break;
      }
      double start = 1e300;
      double end = 0;
      for (const TimedOp& op : (*streams)->TakeTimeline()) {
        if (op.tag.label != "raw copy") continue;
        start = std::min(start, op.start_ns);
        end = std::max(end, op.end_ns);
        raw_bytes += op.bytes;
      }
      raw_ns = end > start ? end - start : 0;
    }
    if (all_ok && request.gpu_timing) {
      if (auto st = (*group)->Barrier(); !st.ok()) {
        exit_code = fail(absl::StrCat("barrier after the copy probe: ", st.message()));
      }
    }
    const GroupRuntime::HostCost& bind = (*runtime)->wait_and_bind_cost();
    outcome["wait_and_bind_host_ns_mean"] = bind.calls ? bind.total_ns / bind.calls : 0.0;
    outcome["wait_and_bind_host_ns_max"] = bind.max_ns;
    if (absl::Status st = (*runtime)->Teardown(); !st.ok()) {
      exit_code = fail(absl::StrCat("teardown: ", st.message()));
    }
    runtime->reset();
  }
  // A peer's imports keep this GPU's memory alive until the peer releases them: measure once
  // every rank of the group has torn down.
  if (auto st = (*group)->Barrier(); !st.ok()) {
    exit_code = fail(absl::StrCat("barrier after teardown: ", st.message()));
  }
  outcome["forwards_done"] = forwards_done;
  outcome["raw_copy_ns"] = raw_ns;
  outcome["raw_copy_bytes"] = raw_bytes;
  outcome["peak_device_bytes"] = (*driver)->peak_device_bytes();
  auto memory_after = factory.DeviceMemoryInUse();
  if (memory_before.ok() && memory_after.ok()) {
    outcome["device_memory_before"] = *memory_before;
    outcome["device_memory_after"] = *memory_after;
    // The driver keeps a little memory after the first run that mapped peer memory (seen: one
    // 2 MiB granule per GPU). To tell that from a leak, every rank sets up and tears down once
    // more: a leak grows again, the driver's one-time cost does not.
    const bool differs = *memory_after != *memory_before;
    bool any_differs = differs;
    if (auto votes = (*group)->Allgather(std::vector<uint8_t>{differs ? uint8_t{1} : uint8_t{0}});
        votes.ok()) {
      for (const auto& v : *votes) any_differs = any_differs || (!v.empty() && v[0] == 1);
    }
    if (any_differs) {
      RuntimeOptions again = options;
      again.fault = Fault::kNone;
      again.functional = false;
      auto second = GroupRuntime::Setup(layout, coordinator, again);
      if (second.ok()) {
        (void)(*second)->Teardown();
        second->reset();
      }
      (void)(*group)->Barrier();
      auto memory_again = factory.DeviceMemoryInUse();
      if (memory_again.ok()) {
        outcome["device_memory_after_second_setup"] = *memory_again;
        if (*memory_again != *memory_after) {
          exit_code = fail(absl::StrFormat(
              "device memory in use grows with every setup/teardown: %s before, %s after the "
              "run, %s after one more setup/teardown",
              FormatBytes(*memory_before), FormatBytes(*memory_after), FormatBytes(*memory_again)));
        } else {
          outcome["driver_retained_bytes"] =
              *memory_after > *memory_before ? *memory_after - *memory_before : 0;
        }
      }
    }
  }
  outcome["ops"] = std::move(ops);
  // Gather every rank's outcome on the group (all ranks reach this point unless a peer died,
  // in which case the allgather times out and this rank fails too).
  exchange->reset();
  streams->reset();
  driver->reset();
  auto gathered = (*group)->Allgather(ToBytes(outcome));
  if (!gathered.ok()) return fail(absl::StrCat("gather results: ", gathered.status().message()));
  if (rank != 0) return exit_code;

  std::vector<TimedOp> timeline;
  std::vector<nlohmann::json> outcomes;
  for (const auto& bytes : *gathered) {
    outcomes.push_back(nlohmann::json::parse(bytes.begin(), bytes.end()));
    for (const auto& op : outcomes.back()["ops"]) timeline.push_back(OpFromJson(op));
  }
  RunReport report = BuildRunReport(timeline, d, forwards_done, [&outcomes](int64_t r) {
    return outcomes[r].value("peak_device_bytes", uint64_t{0});
  });
  report.backend = "cuda";
  report.mode = request.functional ? "functional" : "timing";
  report.scenario = scenario.name;
  nlohmann::json per_rank = nlohmann::json::array();
  double efficiency_sum = 0;
  int efficiency_count = 0;
  for (int64_t r = 0; r < d; ++r) {
    const nlohmann::json& o = outcomes[r];
    for (const auto& e : o["errors"])
      report.errors.push_back(absl::StrCat("rank ", r, ": ", e.get<std::string>()));
    const double raw_ns_r = o.value("raw_copy_ns", 0.0);
    const double raw_bw = raw_ns_r > 0 ? o.value("raw_copy_bytes", 0.0) / (raw_ns_r * 1e-9) : 0;
    // Achieved: bytes over copy time, summed over the rank's layers (mean over forwards).
    double copy_ns = 0;
    uint64_t copy_bytes = 0;
    for (const LayerReport& l : report.ranks[r].layers) {
      copy_ns += l.copy_ns;
      copy_bytes += l.copy_bytes;
    }
    const double achieved = copy_ns > 0 ? static_cast<double>(copy_bytes) / (copy_ns * 1e-9) : 0;
    const double efficiency = raw_bw > 0 ? achieved / raw_bw : 0;
    if (raw_bw > 0 && achieved > 0) {
      efficiency_sum += efficiency;
      ++efficiency_count;
    }
    per_rank.push_back({{"rank", r},
                        {"raw_copy_bytes_per_s", raw_bw},
                        {"achieved_copy_bytes_per_s", achieved},
                        {"prefetch_efficiency", efficiency},
                        {"wait_and_bind_host_ns_mean", o.value("wait_and_bind_host_ns_mean", 0.0)},
                        {"wait_and_bind_host_ns_max", o.value("wait_and_bind_host_ns_max", 0.0)},
                        {"device_memory_before", o.value("device_memory_before", uint64_t{0})},
                        {"device_memory_after", o.value("device_memory_after", uint64_t{0})},
                        {"driver_retained_bytes", o.value("driver_retained_bytes", uint64_t{0})}});
  }
  report.extra["cuda"] = {
      {"handle_kind", outcome.value("handle_kind", "")},
      {"world_size", factory.process().world_size},
      {"device", factory.process().device_name},
      {"driver_version", factory.process().driver_version},
      {"ranks", per_rank},
      {"prefetch_efficiency", efficiency_count ? efficiency_sum / efficiency_count : 0.0}};
  report.extra["compute_source"] = request.times->source;
  report.extra["fault"] = FaultName(request.fault);
  report.ok = report.errors.empty();
  if (!request.trace_path.empty()) {
    std::ofstream out(request.trace_path);
    out << ChromeTrace(timeline, [](int64_t, StreamId s) {
             return absl::StrCat("stream ", s);
           }).dump();
  }
  if (!request.gpu_timing) {
    report.extra["note"] =
        "--no-gpu-timing: no per-operation events, so no per-layer times; host costs only";
  }
  if (request.json) {
    std::cout << report.ToJson().dump(2) << "\n";
  } else {
    std::cout << report.ToText(request.all_ranks);
    std::cout << "\nGPU copy rates (raw: the same copies, one rank at a time, nothing else "
                 "running):\n";
    for (const auto& r : per_rank) {
      std::cout << absl::StrFormat(
          "  rank %d: achieved %s, raw %s, prefetch efficiency %.1f%%; wait_and_bind host "
          "cost %.2f us mean, %.2f us max; device memory %s before setup, %s after teardown "
          "(%s kept by the driver, not growing)\n",
          r["rank"].get<int64_t>(), FormatBandwidth(r["achieved_copy_bytes_per_s"]),
          FormatBandwidth(r["raw_copy_bytes_per_s"]), 100 * r["prefetch_efficiency"].get<double>(),
          r["wait_and_bind_host_ns_mean"].get<double>() / 1e3,
          r["wait_and_bind_host_ns_max"].get<double>() / 1e3,
          FormatBytes(r["device_memory_before"].get<uint64_t>()),
          FormatBytes(r["device_memory_after"].get<uint64_t>()),
          FormatBytes(r["driver_retained_bytes"].get<uint64_t>()));
    }
  }
  return report.ok ? exit_code : kExitInvalid;
}

}  // namespace

int RunOnCuda(const CudaRunRequest& request) {
  auto factory = cuda::LoadCudaBackend();
  if (!factory.ok()) {
    std::cerr << "error: " << factory.status().message() << "\n";
    return kExitUsage;
  }
  cuda::CudaInitOptions init;
  init.timeout_seconds = request.timeout_s;
  if (absl::Status st = (*factory)->Initialize(init); !st.ok()) {
    std::cerr << "error: " << st.message() << "\n";
    (*factory)->Shutdown(0);
    return kExitUsage;
  }
  const cuda::CudaProcessInfo& info = (*factory)->process();
  PartitionInput input = PartitionInput::FromScenario(*request.scenario);
  input.world_size = info.world_size;
  input.rank = info.world_rank;
  if (auto error = ValidatePartition(input)) {
    if (info.world_rank == 0)
      std::cerr << "error: " << error->check << ": " << error->message << "\n";
    (*factory)->Shutdown(0);
    return kExitInvalid;
  }
  nlohmann::json outcome;
  int exit_code = RunGroupRank(**factory, request, outcome);
  if (exit_code != kExitOk) {
    for (const auto& e : outcome.value("errors", nlohmann::json::array())) {
      if (info.world_rank != 0) std::cerr << "error: " << e.get<std::string>() << "\n";
    }
  }
  // Every rank must agree on the exit code; a failed rank aborts the job (its peers may wait).
  auto codes = (*factory)->world().Allgather(std::vector<uint8_t>{static_cast<uint8_t>(exit_code)});
  if (codes.ok()) {
    for (const auto& c : *codes) exit_code = std::max<int>(exit_code, c.empty() ? 1 : c[0]);
  } else if (exit_code == kExitOk) {
    exit_code = kExitInvalid;
  }
  (*factory)->Shutdown(exit_code);
  return exit_code;
}

#endif

}  // namespace dwdp::cli
