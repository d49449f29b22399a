#include "backends/cuda/cuda_run_backend.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_coordinator.h"
#include "backends/cuda/cuda_session.h"
#include "core/dep/dep_report.h"
#include "core/partition/partition.h"
#include "core/run/exit_code.h"
#include "core/run/memory_check.h"
#include "core/run/run_dep.h"
#include "core/util/bytes.h"

namespace dwdp::cuda {
namespace {

// Every rank agrees on the exit code (CudaSession::Finish), then the session is gone.
int FinishSession(std::unique_ptr<CudaSession>& cuda, int exit_code) {
  if (cuda == nullptr) return exit_code;
  const int agreed = cuda->Finish(exit_code);
  cuda.reset();
  return agreed;
}

class CudaRunSession : public RunSession {
 public:
  static absl::StatusOr<std::unique_ptr<RunSession>> Open(const Scenario& scenario,
                                                          const GroupLayout& layout,
                                                          const RunRequest& request) {
    CudaSessionOptions session_options;
    session_options.timeout_s = request.timeout_or_default();
    absl::StatusOr<std::unique_ptr<CudaSession>> cuda = CudaSession::Load(session_options);
    if (!cuda.ok()) return cuda.status();
    auto session = std::unique_ptr<CudaRunSession>(new CudaRunSession(*std::move(cuda), layout));
    if (absl::Status s = session->Start(scenario, request); !s.ok()) {
      session->Close(ExitCodeOf(s));
      return s;
    }
    return std::unique_ptr<RunSession>(std::move(session));
  }

  ~CudaRunSession() override { Release(); }

  Coordinator& coordinator() override { return *coordinator_; }
  int64_t group_size() const override { return group_size_; }
  absl::Status Barrier() override { return group_->Barrier(); }
  uint64_t peak_device_bytes(int64_t) override { return driver_->peak_device_bytes(); }

  absl::Status BeforeSetup() override {
    CudaSession::WarmUp(*driver_, *streams_);
    // The whole job, not just the group: two groups may share one GPU as well.
    absl::StatusOr<int64_t> sharing = cuda_->ProcessesOnThisGpu(cuda_->world());
    if (!sharing.ok()) return sharing.status();
    processes_on_gpu_ = *sharing;
    if (processes_on_gpu_ == 1) {
      absl::StatusOr<uint64_t> before = cuda_->DeviceMemoryInUse();
      if (before.ok()) memory_before_ = *before;
    }
    return absl::OkStatus();
  }

  void AfterForwards(GroupRuntime& runtime, RankOutcome& outcome) override {
    const GroupRuntime::HostCost& bind = runtime.wait_and_bind_cost();
    outcome.extra["wait_and_bind_host_ns_mean"] = bind.calls ? bind.total_ns / bind.calls : 0.0;
    outcome.extra["wait_and_bind_host_ns_max"] = bind.max_ns;
    if (!gpu_timing_) return;
    // Every rank decides together whether to run the copy probe, so no rank waits in a
    // collective that a failed peer skipped.
    bool all_ok = outcome.errors.empty();
    absl::StatusOr<std::vector<std::vector<uint8_t>>> votes =
        group_->Allgather(std::vector<uint8_t>{all_ok ? uint8_t{1} : uint8_t{0}});
    if (!votes.ok()) {
      outcome.errors.push_back(absl::StrCat("agree on the copy probe: ", votes.status().message()));
      return;
    }
    for (const auto& v : *votes) all_ok = all_ok && !v.empty() && v[0] == 1;
    if (!all_ok) return;
    // The raw copy rate: the same copies as one prefetch, one rank at a time with nothing else
    // running, so no link or copy engine is shared.
    double raw_ns = 0;
    uint64_t raw_bytes = 0;
    for (int64_t turn = 0; turn < group_size_; ++turn) {
      if (absl::Status s = group_->Barrier(); !s.ok()) {
        outcome.errors.push_back(absl::StrCat("barrier before the copy probe: ", s.message()));
        return;
      }
      if (turn != rank_) continue;
      if (absl::Status s = runtime.ProbeLayerCopies(rank_, 0); !s.ok()) {
        outcome.errors.push_back(std::string(s.message()));
        return;
      }
      double start = 1e300;
      double end = 0;
      for (const TimedOp& op : streams_->TakeTimeline()) {
        if (op.tag.label != "raw copy") continue;
        start = std::min(start, op.start_ns);
        end = std::max(end, op.end_ns);
        raw_bytes += op.bytes;
      }
      raw_ns = end > start ? end - start : 0;
    }
    if (absl::Status s = group_->Barrier(); !s.ok()) {
      outcome.errors.push_back(absl::StrCat("barrier after the copy probe: ", s.message()));
    }
    outcome.extra["raw_copy_ns"] = raw_ns;
    outcome.extra["raw_copy_bytes"] = raw_bytes;
  }

  void AfterTeardown(RankOutcome& outcome) override {
    // A peer's imports keep this GPU's memory alive until the peer releases them: measure once
    // every rank of the group has torn down.
    if (absl::Status s = group_->Barrier(); !s.ok()) {
      outcome.errors.push_back(absl::StrCat("barrier after teardown: ", s.message()));
      return;
    }
    DeviceMemoryReadings readings;
    readings.alone_on_gpu = processes_on_gpu_ == 1 && memory_before_.has_value();
    if (readings.alone_on_gpu) {
      absl::StatusOr<uint64_t> after = cuda_->DeviceMemoryInUse();
      if (!after.ok()) readings.alone_on_gpu = false;
      readings.before = memory_before_.value_or(0);
      readings.after = after.value_or(0);
    }
    DeviceMemoryVerdict verdict = JudgeDeviceMemory(readings);
    // Every rank votes, so all run the second setup or none does.
    absl::StatusOr<std::vector<std::vector<uint8_t>>> votes =
        group_->Allgather(std::vector<uint8_t>{verdict.run_again ? uint8_t{1} : uint8_t{0}});
    bool any_again = false;
    if (votes.ok()) {
      for (const auto& v : *votes) any_again = any_again || (!v.empty() && v[0] == 1);
    }
    if (any_again) {
      RuntimeOptions again;
      again.contention = contention_;
      auto second = GroupRuntime::Setup(layout_, *coordinator_, again);
      if (second.ok()) {
        (void)(*second)->Teardown();
        second->reset();
      }
      (void)group_->Barrier();
      if (verdict.run_again) {
        absl::StatusOr<uint64_t> again_reading = cuda_->DeviceMemoryInUse();
        if (again_reading.ok()) {
          readings.again = *again_reading;
          verdict = JudgeDeviceMemory(readings);
        }
      }
    }
    outcome.extra["processes_on_gpu"] = processes_on_gpu_;
    outcome.extra["device_memory"] = verdict.message;
    if (readings.alone_on_gpu) {
      outcome.extra["device_memory_before"] = readings.before;
      outcome.extra["device_memory_after"] = readings.after;
      if (readings.again) outcome.extra["device_memory_after_second_setup"] = *readings.again;
      outcome.extra["driver_retained_bytes"] = verdict.retained;
    }
    if (verdict.leak) outcome.errors.push_back(verdict.message);
  }

  bool reports() const override { return rank_ == 0; }

  void Annotate(const std::vector<RankOutcome>& outcomes, RunReport& report) override {
    nlohmann::json per_rank = nlohmann::json::array();
    double efficiency_sum = 0;
    int efficiency_count = 0;
    for (const RankOutcome& o : outcomes) {
      const double raw_ns = o.extra.value("raw_copy_ns", 0.0);
      const double raw_bw = raw_ns > 0 ? o.extra.value("raw_copy_bytes", 0.0) / (raw_ns * 1e-9) : 0;
      // Achieved: bytes over copy time, summed over the rank's layers (mean over forwards).
      double copy_ns = 0;
      uint64_t copy_bytes = 0;
      if (o.rank >= 0 && o.rank < static_cast<int64_t>(report.ranks.size())) {
        for (const LayerReport& l : report.ranks[o.rank].layers) {
          copy_ns += l.copy_ns;
          copy_bytes += l.copy_bytes;
        }
      }
      const double achieved = copy_ns > 0 ? static_cast<double>(copy_bytes) / (copy_ns * 1e-9) : 0;
      const double efficiency = raw_bw > 0 ? achieved / raw_bw : 0;
      if (raw_bw > 0 && achieved > 0) {
        efficiency_sum += efficiency;
        ++efficiency_count;
      }
      nlohmann::json row = o.extra;
      row.erase("raw_copy_ns");
      row.erase("raw_copy_bytes");
      row["rank"] = o.rank;
      row["raw_copy_bytes_per_s"] = raw_bw;
      row["achieved_copy_bytes_per_s"] = achieved;
      row["prefetch_efficiency"] = efficiency;
      per_rank.push_back(std::move(row));
    }
    const CudaProcessInfo& info = cuda_->process();
    report.extra["cuda"] = {
        {"handle_kind", HandleKindName(handle_kind_)},
        {"world_size", info.world_size},
        {"device", info.device_name},
        {"driver_version", info.driver_version},
        {"ranks", per_rank},
        {"prefetch_efficiency", efficiency_count ? efficiency_sum / efficiency_count : 0.0}};
    if (!gpu_timing_) {
      report.extra["note"] =
          "--no-gpu-timing: no per-operation events, so no per-layer times; host costs only";
    }
  }

  std::string TextAppendix(const RunReport& report) const override {
    std::string out;
    if (!gpu_timing_) {
      absl::StrAppend(&out,
                      "\nno GPU timing events (--no-gpu-timing): per-layer times are not "
                      "measured; the host cost of wait_and_bind is\n");
    } else {
      absl::StrAppend(&out,
                      "\nGPU copy rates (raw: the same copies, one rank at a time, nothing "
                      "else running):\n");
    }
    for (const auto& r : report.extra["cuda"]["ranks"]) {
      const std::string host = absl::StrFormat("wait_and_bind host cost %.2f us mean, %.2f us max",
                                               r.value("wait_and_bind_host_ns_mean", 0.0) / 1e3,
                                               r.value("wait_and_bind_host_ns_max", 0.0) / 1e3);
      if (gpu_timing_) {
        absl::StrAppendFormat(
            &out, "  rank %d: achieved %s, raw %s, prefetch efficiency %.1f%%; %s; %s\n",
            r["rank"].get<int64_t>(), FormatBandwidth(r["achieved_copy_bytes_per_s"]),
            FormatBandwidth(r["raw_copy_bytes_per_s"]),
            100 * r["prefetch_efficiency"].get<double>(), host,
            r.value("device_memory", std::string()));
      } else {
        absl::StrAppendFormat(&out, "  rank %d: %s; %s\n", r["rank"].get<int64_t>(), host,
                              r.value("device_memory", std::string()));
      }
    }
    return out;
  }

  int Close(int exit_code) override {
    Release();
    return FinishSession(cuda_, exit_code);
  }

 private:
  CudaRunSession(std::unique_ptr<CudaSession> cuda, const GroupLayout& layout)
      : cuda_(std::move(cuda)), layout_(layout) {}

  absl::Status Start(const Scenario& scenario, const RunRequest& request) {
    const CudaProcessInfo& info = cuda_->process();
    PartitionInput input = PartitionInput::FromScenario(scenario);
    input.world_size = info.world_size;
    input.rank = info.world_rank;
    if (auto error = ValidatePartition(input)) {
      return InvalidScenario(
          absl::InvalidArgumentError(absl::StrCat(error->check, ": ", error->message)));
    }
    group_size_ = scenario.dwdp.dwdp_size;
    gpu_timing_ = request.gpu_timing_or_default();
    contention_ = scenario.dwdp.contention;
    auto group = cuda_->factory().CreateGroupComm(group_size_);
    if (!group.ok()) {
      return absl::Status(group.status().code(),
                          absl::StrCat("group communicator: ", group.status().message()));
    }
    group_ = *std::move(group);
    rank_ = group_->rank();
    auto driver = cuda_->factory().CreateDriver({.rank = rank_});
    if (!driver.ok()) return driver.status();
    driver_ = *std::move(driver);
    handle_kind_ = driver_->shareable_kind();
    auto streams = cuda_->factory().CreateStreams({.rank = rank_, .timing = gpu_timing_});
    if (!streams.ok()) return streams.status();
    streams_ = *std::move(streams);
    HandleExchangeOptions exchange_options;
    exchange_options.timeout_seconds = request.timeout_or_default();
    auto exchange = cuda_->factory().CreateHandleExchange(*group_, handle_kind_, exchange_options);
    if (!exchange.ok()) return exchange.status();
    exchange_ = *std::move(exchange);
    coordinator_ =
        std::make_unique<CudaCoordinator>(rank_, *driver_, *streams_, *exchange_, *group_);
    return absl::OkStatus();
  }

  // Every object of the factory goes before MPI ends, in reverse order of creation.
  void Release() {
    coordinator_.reset();
    exchange_.reset();
    streams_.reset();
    driver_.reset();
    group_.reset();
  }

  std::unique_ptr<CudaSession> cuda_;
  GroupLayout layout_;  // for the second setup of the memory check
  ContentionConfig contention_;
  int64_t group_size_ = 0;
  int64_t rank_ = 0;
  bool gpu_timing_ = true;
  HandleKind handle_kind_ = HandleKind::kPosixFd;
  std::unique_ptr<Comm> group_;
  std::unique_ptr<Driver> driver_;
  std::unique_ptr<Streams> streams_;
  std::unique_ptr<HandleExchange> exchange_;
  std::unique_ptr<CudaCoordinator> coordinator_;
  int64_t processes_on_gpu_ = 0;
  std::optional<uint64_t> memory_before_;
};

// --baseline dep on the GPUs: one process per rank and per GPU, ep_size ranks per group.
class CudaDepSession : public DepSession {
 public:
  static absl::StatusOr<std::unique_ptr<DepSession>> Open(const Scenario& /*scenario*/,
                                                          const DepRunSpec& spec,
                                                          const RunRequest& request) {
    CudaSessionOptions session_options;
    session_options.timeout_s = request.timeout_or_default();
    absl::StatusOr<std::unique_ptr<CudaSession>> cuda = CudaSession::Load(session_options);
    if (!cuda.ok()) return cuda.status();
    auto session = std::unique_ptr<CudaDepSession>(new CudaDepSession(*std::move(cuda)));
    if (absl::Status s = session->Start(spec); !s.ok()) {
      session->Close(ExitCodeOf(s));
      return s;
    }
    return std::unique_ptr<DepSession>(std::move(session));
  }

  ~CudaDepSession() override { Release(); }

  absl::StatusOr<DepOutcome> Run(const DepRunSpec& spec) override {
    absl::StatusOr<DepRankRun> run = runner_->Run(spec);
    nlohmann::json mine = {{"rank", rank_}};
    if (!run.ok()) {
      mine["errors"] = {std::string(run.status().message())};
      mine["forwards"] = nlohmann::json::array();
      mine["check"] = nullptr;
    } else {
      nlohmann::json forwards = nlohmann::json::array();
      for (const dep::DepRankTimes& t : run->forwards) forwards.push_back(dep::RankTimesToJson(t));
      mine["forwards"] = std::move(forwards);
      mine["errors"] = run->errors;
      mine["check"] = run->check;
    }
    const std::string text = mine.dump();
    absl::StatusOr<std::vector<std::vector<uint8_t>>> all =
        group_->Allgather(std::vector<uint8_t>(text.begin(), text.end()));
    if (!all.ok()) return all.status();
    DepOutcome outcome;
    nlohmann::json check = {{"ok", true},       {"compared", 0}, {"exact", 0},
                            {"max_error", 0.0}, {"scale", 0.0},  {"first_outside", ""}};
    bool checked = false;
    for (const std::vector<uint8_t>& bytes : *all) {
      const nlohmann::json rank = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
      if (rank.is_discarded() || !rank.contains("forwards")) {
        return absl::DataLossError("a rank's DEP results arrived garbled");
      }
      const int64_t r = rank.value("rank", int64_t{-1});
      for (const auto& e : rank["errors"]) {
        outcome.errors.push_back(absl::StrCat("rank ", r, ": ", e.get<std::string>()));
      }
      const auto& forwards = rank["forwards"];
      if (outcome.forwards.size() < forwards.size()) outcome.forwards.resize(forwards.size());
      for (size_t f = 0; f < forwards.size(); ++f) {
        absl::StatusOr<dep::DepRankTimes> t = dep::RankTimesFromJson(forwards[f]);
        if (!t.ok()) return t.status();
        outcome.forwards[f].push_back(*std::move(t));
      }
      const nlohmann::json& c = rank["check"];
      if (c.is_object()) {
        checked = true;
        if (!c.value("ok", false) && check["ok"].get<bool>()) {
          check["ok"] = false;
          check["first_outside"] = c.value("first_outside", "");
        }
        check["compared"] = check["compared"].get<int64_t>() + c.value("compared", int64_t{0});
        check["exact"] = check["exact"].get<int64_t>() + c.value("exact", int64_t{0});
        check["max_error"] = std::max(check["max_error"].get<double>(), c.value("max_error", 0.0));
        check["scale"] = std::max(check["scale"].get<double>(), c.value("scale", 0.0));
      }
    }
    // Only forwards every rank finished count.
    outcome.forwards.erase(
        std::remove_if(outcome.forwards.begin(), outcome.forwards.end(),
                       [this](const auto& f) { return static_cast<int64_t>(f.size()) != ep_; }),
        outcome.forwards.end());
    if (checked) {
      check["tolerance"] = "|dep - resident| <= |resident| / 64 + max|resident| / 128";
      check["summary"] = absl::StrFormat(
          "every layer of every forward, %d values against the MoE kernel with every expert's "
          "weights: %s, %d exact, largest error %.3g against a scale of %.3g",
          check["compared"].get<int64_t>(),
          check["ok"].get<bool>() ? "within the tolerance" : "OUTSIDE",
          check["exact"].get<int64_t>(), check["max_error"].get<double>(),
          check["scale"].get<double>());
      outcome.check = std::move(check);
    }
    const CudaProcessInfo& info = cuda_->process();
    outcome.extra["cuda"] = {{"world_size", info.world_size},
                             {"device", info.device_name},
                             {"driver_version", info.driver_version},
                             {"nccl_nvls_enable", NvlsSetting()},
                             {"exchange", host_staged_ ? "host-staged (ranks share a GPU; the "
                                                         "times are not DEP's)"
                                                       : "nccl"}};
    if (host_staged_) {
      outcome.extra["note"] =
          "ranks share a GPU: rows moved through host memory (functional check only)";
    }
    return outcome;
  }

  bool reports() const override { return rank_ == 0; }

  int Close(int exit_code) override {
    Release();
    return FinishSession(cuda_, exit_code);
  }

 private:
  explicit CudaDepSession(std::unique_ptr<CudaSession> cuda) : cuda_(std::move(cuda)) {}

  static std::string NvlsSetting() {
    const char* value = std::getenv("NCCL_NVLS_ENABLE");
    return value == nullptr ? std::string("unset") : std::string(value);
  }

  absl::Status Start(const DepRunSpec& spec) {
    const CudaProcessInfo& info = cuda_->process();
    ep_ = spec.ep_size;
    // One expert-parallel group per job, so that one report comes out.
    if (info.world_size != ep_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--baseline dep with ep_size %d runs %d processes, one per GPU; this job has %d (start "
          "it with mpirun -np %d, or give --ep-size %d)",
          ep_, ep_, info.world_size, ep_, info.world_size));
    }
    auto group = cuda_->factory().CreateGroupComm(ep_);
    if (!group.ok()) {
      return absl::Status(group.status().code(),
                          absl::StrCat("DEP group communicator: ", group.status().message()));
    }
    group_ = *std::move(group);
    rank_ = group_->rank();
    // NCCL refuses two ranks of one communicator on one GPU: say so before it does, every rank
    // of the group alike.
    absl::StatusOr<int64_t> sharing = cuda_->ProcessesOnThisGpu(*group_);
    if (!sharing.ok()) return sharing.status();
    absl::StatusOr<std::vector<std::vector<uint8_t>>> votes =
        group_->Allgather(std::vector<uint8_t>{*sharing > 1 ? uint8_t{1} : uint8_t{0}});
    if (!votes.ok()) return votes.status();
    bool shared = false;
    for (const auto& v : *votes) shared = shared || (!v.empty() && v[0] == 1);
    if (shared && !spec.functional) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "the DEP baseline needs one GPU per rank (NCCL refuses two ranks on one GPU), but "
          "ranks of this ep_size %d group share a GPU; start one process per GPU, use "
          "--ep-size 1 on a single GPU, or --mode functional (host-staged exchange, no timings)",
          ep_));
    }
    // Functional mode on a shared GPU: the exchanges go through host memory instead of NCCL.
    host_staged_ = shared;
    auto runner = cuda_->factory().CreateDepRunner(
        *group_, {.rank = rank_, .ep_size = ep_, .host_staged = host_staged_});
    if (!runner.ok()) return runner.status();
    runner_ = *std::move(runner);
    return absl::OkStatus();
  }

  void Release() {
    runner_.reset();
    group_.reset();
  }

  std::unique_ptr<CudaSession> cuda_;
  std::unique_ptr<Comm> group_;
  std::unique_ptr<DepRunner> runner_;
  int64_t rank_ = 0;
  int64_t ep_ = 1;
  bool host_staged_ = false;
};

}  // namespace

RunBackend CudaRunBackend() {
  RunBackend backend;
  backend.name = "cuda";
  backend.description = "the GPUs: one process per rank under mpirun or srun";
  backend.options = kRunOptionTimeout | kRunOptionGpuTiming | kRunOptionAlignForwards;
  backend.open = &CudaRunSession::Open;
  backend.open_dep = &CudaDepSession::Open;
  return backend;
}

}  // namespace dwdp::cuda
