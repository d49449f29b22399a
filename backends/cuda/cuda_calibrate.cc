#include "backends/cuda/cuda_calibrate.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "backends/cuda/cuda_session.h"
#include "core/calibrate/calibration.h"
#include "core/run/exit_code.h"
#include "core/run/memory_check.h"

namespace dwdp::cuda {
namespace {

double HostNowNs() {
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}

// The kernel driver's version ("580.95.05") from /proc; empty where it cannot be read.
std::string KernelDriverVersion() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(in, line)) return "";
  for (absl::string_view token : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    const bool versionish = token.find('.') != absl::string_view::npos &&
                            std::all_of(token.begin(), token.end(), [](char ch) {
                              return (ch >= '0' && ch <= '9') || ch == '.';
                            });
    if (versionish) return std::string(token);
  }
  return "";
}

// True when any rank of `group` says so. Every rank takes part, so all decide alike.
bool AnyRank(Comm& group, bool mine) {
  auto votes = group.Allgather(std::vector<uint8_t>{mine ? uint8_t{1} : uint8_t{0}});
  if (!votes.ok()) return mine;
  for (const auto& v : *votes) mine = mine || (!v.empty() && v[0] == 1);
  return mine;
}

class RankCalibration {
 public:
  RankCalibration(CudaSession& cuda, const GpuCalibrationOptions& options)
      : cuda_(cuda), options_(options), measure_(options.measure) {
    measure_.device_memory_bytes = cuda.process().device_memory_bytes;
    if (measure_.moe_kernel.empty()) measure_.moe_kernel = "cuda backend routed-MoE layer (BF16)";
  }

  // This rank's part; rank 0 also writes. Returns this rank's exit code.
  int Run(const CalibrationWriter& write_on_rank0) {
    const int64_t world_size = cuda_.process().world_size;
    auto group = cuda_.factory().CreateGroupComm(world_size);
    if (!group.ok()) return Error(absl::StrCat("group communicator: ", group.status().message()));
    group_ = *std::move(group);
    if (int code = CheckOneRankPerGpu(); code != kExitOk) return code;
    rank_ = group_->rank();
    auto driver = cuda_.factory().CreateDriver({.rank = rank_});
    if (!driver.ok()) return Error(std::string(driver.status().message()));
    driver_ = *std::move(driver);
    HandleExchangeOptions exchange_options;
    exchange_options.timeout_seconds = options_.timeout_s;
    auto exchange =
        cuda_.factory().CreateHandleExchange(*group_, driver_->shareable_kind(), exchange_options);
    if (!exchange.ok()) return Error(std::string(exchange.status().message()));
    exchange_ = *std::move(exchange);

    absl::StatusOr<RawRank> measured = Measure();
    int exit_code = kExitOk;
    if (!measured.ok()) exit_code = Error(std::string(measured.status().message()));
    const CudaProcessInfo& info = cuda_.process();
    CalibrationRaw header;
    header.measured_on = MeasuredOnLine(info.device_name, group_->size(), KernelDriverVersion(),
                                        info.driver_version, Today());
    header.only = options_.measure.only_compute    ? kOnlyCompute
                  : options_.measure.only_prefetch ? kOnlyPrefetch
                                                   : "";
    header.machine = Machine();
    absl::StatusOr<std::optional<CalibrationRaw>> gathered =
        GatherCalibrationRaw(*group_, measured, header);
    // Every object of the factory goes before rank 0 writes and MPI ends.
    exchange_.reset();
    driver_.reset();
    group_.reset();
    if (!gathered.ok()) {
      std::cerr << "error: " << gathered.status().message() << "; no profile written\n";
      return std::max(exit_code, kExitInvalid);
    }
    if (!gathered->has_value()) return exit_code;  // not rank 0
    return std::max(exit_code, write_on_rank0(**gathered));
  }

 private:
  int Error(const std::string& message) {
    std::cerr << "error: rank " << cuda_.process().world_rank << ": " << message << "\n";
    return kExitInvalid;
  }

  // POSIX-fd handles and the timings need one rank per GPU: checked on every rank, the same
  // answer everywhere.
  int CheckOneRankPerGpu() {
    absl::StatusOr<int64_t> sharing = cuda_.ProcessesOnThisGpu(*group_);
    if (!sharing.ok()) return Error(std::string(sharing.status().message()));
    const bool shared = *sharing > 1;
    auto votes = group_->Allgather(std::vector<uint8_t>{shared ? uint8_t{1} : uint8_t{0}});
    if (!votes.ok())
      return Error(absl::StrCat("gather GPU identities: ", votes.status().message()));
    std::vector<int64_t> sharers;
    for (size_t r = 0; r < votes->size(); ++r) {
      if (!(*votes)[r].empty() && (*votes)[r][0] == 1) sharers.push_back(static_cast<int64_t>(r));
    }
    if (sharers.empty()) return kExitOk;
    if (options_.measure.only_prefetch) {
      // The rotation's code path (flag start, peer views, timeline) runs all the same; only
      // its numbers mean nothing.
      if (group_->rank() == 0) {
        std::cerr << "warning: ranks " << absl::StrJoin(sharers, ", ")
                  << " share their GPU with another rank: the prefetch rotation runs as a "
                     "functional check, its timings and the fitted profile mean nothing\n";
      }
      return kExitOk;
    }
    if (group_->rank() == 0) {
      std::cerr << "error: ranks " << absl::StrJoin(sharers, ", ")
                << " share their GPU with another rank; run one rank per GPU (-np at most the "
                   "number of GPUs)\n";
    }
    return kExitUsage;
  }

  MeasureContext Context() {
    return MeasureContext{*driver_, *group_, *exchange_,
                          [this](bool timing) {
                            return cuda_.factory().CreateStreams({.rank = rank_, .timing = timing});
                          },
                          HostNowNs};
  }

  // Warm-up, the memory baseline, the measurements and the device-memory check.
  absl::StatusOr<RawRank> Measure() {
    const MeasureContext c = Context();
    if (auto streams = cuda_.factory().CreateStreams({.rank = rank_, .timing = false});
        streams.ok()) {
      CudaSession::WarmUp(*driver_, **streams);
    }
    if (absl::Status s = WarmUpDriver(c); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("driver warm-up: ", s.message()));
    }
    // One rank per GPU (checked above): the device-wide reading is this rank's.
    DeviceMemoryReadings readings;
    const absl::StatusOr<uint64_t> before = cuda_.DeviceMemoryInUse();
    readings.alone_on_gpu = before.ok();
    readings.before = before.value_or(0);
    absl::StatusOr<RawRank> measured = MeasureRank(c, measure_);
    const absl::StatusOr<uint64_t> after = cuda_.DeviceMemoryInUse();
    readings.alone_on_gpu = readings.alone_on_gpu && after.ok();
    readings.after = after.value_or(0);
    DeviceMemoryVerdict verdict = JudgeDeviceMemory(readings);
    // Every rank votes, so all run the second setup or none does.
    if (AnyRank(*group_, verdict.run_again)) {
      (void)SetupAndTeardownAgain(c, measure_);
      if (verdict.run_again) {
        if (absl::StatusOr<uint64_t> again = cuda_.DeviceMemoryInUse(); again.ok()) {
          readings.again = *again;
          verdict = JudgeDeviceMemory(readings);
        }
      }
    }
    if (!measured.ok()) return measured;
    if (readings.alone_on_gpu) {
      measured->device_memory_before = static_cast<double>(readings.before);
      measured->device_memory_after = static_cast<double>(readings.after);
      if (readings.again) {
        measured->device_memory_after_second_setup = static_cast<double>(*readings.again);
        if (!verdict.leak) measured->driver_retained_bytes = static_cast<double>(verdict.retained);
      }
    }
    if (verdict.leak) return absl::InternalError(verdict.message);
    // Egress start and end times compare within one host.
    measured->hostname = cuda_.process().hostname;
    return measured;
  }

  // What the derivation needs besides the timings, so --from-raw derives the same profile.
  std::optional<RawMachine> Machine() const {
    if (driver_ == nullptr) return std::nullopt;
    const CudaProcessInfo& info = cuda_.process();
    RawMachine m;
    m.base = options_.base;
    m.gpu_name = info.device_name;
    m.gpus = group_->size();
    m.device_memory_bytes = static_cast<double>(info.device_memory_bytes);
    m.granularity = static_cast<double>(driver_->granularity());
    m.handle_kind = HandleKindName(driver_->shareable_kind());
    m.repetitions = options_.measure.repetitions;
    m.buffer_bytes = static_cast<double>(
        CalibrationBufferSizes(driver_->granularity(), options_.measure.max_bytes, group_->size())
            .src_bytes);
    return m;
  }

  CudaSession& cuda_;
  const GpuCalibrationOptions& options_;
  MeasureOptions measure_;  // with this GPU's memory
  int64_t rank_ = 0;
  std::unique_ptr<Comm> group_;
  std::unique_ptr<Driver> driver_;
  std::unique_ptr<HandleExchange> exchange_;
};

}  // namespace

int CalibrateOnGpus(const GpuCalibrationOptions& options, const CalibrationWriter& write_on_rank0) {
  CudaSessionOptions session_options;
  session_options.timeout_s = options.timeout_s;
  absl::StatusOr<std::unique_ptr<CudaSession>> session = CudaSession::Load(session_options);
  if (!session.ok()) {
    std::cerr << "error: " << session.status().message() << "\n";
    return kExitUsage;
  }
  CudaSession& cuda = **session;
  if (cuda.process().world_size < 2 && !options.measure.only_compute) {
    std::cerr << "error: calibrate measures copies between GPUs and needs at least 2 ranks, one "
                 "per GPU: mpirun -np N dwdp calibrate ... with N >= 2 (one rank runs only the "
                 "MoE compute phase: --only compute)\n";
    return cuda.Finish(kExitUsage);
  }
  int exit_code = kExitOk;
  {
    RankCalibration rank(cuda, options);
    exit_code = rank.Run(write_on_rank0);
  }
  // Every rank agrees on the exit code; a failed rank aborts the job (its peers may wait).
  return cuda.Finish(exit_code);
}

}  // namespace dwdp::cuda
