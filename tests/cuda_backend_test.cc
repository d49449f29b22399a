// The cuda backend's building blocks. What needs no GPU runs everywhere: CUDA error names, the
// module loader, and the fd and fabric handle exchanges between forked processes (real fds over
// real Unix sockets). The GPU cases (VMM create/export/import/map, copies, fill + verify, the
// compute stand-in, timing) are skipped with a message when no GPU is visible.

#define BOOST_TEST_MODULE cuda_backend
#include <boost/test/unit_test.hpp>

#if DWDP_HAVE_CUDA

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "backends/cuda/cuda_backend_factory.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_driver.h"
#include "backends/cuda/cuda_error.h"
#include "backends/cuda/cuda_streams.h"
#include "backends/cuda/fabric_exchange.h"
#include "backends/cuda/fd_exchange.h"
#include "backends/cuda/loader.h"
#include "core/backend.h"
#include "core/pattern.h"

namespace dwdp::cuda {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---------------------------------------------------------------------------------------------
// A Comm between forked processes over a full mesh of socketpairs (stands in for MPI).

bool WriteAll(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t size, int timeout_ms) {
  auto* p = static_cast<uint8_t*>(data);
  while (size > 0) {
    pollfd entry{fd, POLLIN, 0};
    if (::poll(&entry, 1, timeout_ms) <= 0) return false;
    const ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

class MeshComm : public Comm {
 public:
  // peers[r]: this rank's end of the socketpair to rank r (-1 for itself).
  MeshComm(int64_t rank, std::vector<int> peers, bool stop_after_first_allgather)
      : rank_(rank), peers_(std::move(peers)), stop_(stop_after_first_allgather) {}

  int64_t rank() const override { return rank_; }
  int64_t size() const override { return static_cast<int64_t>(peers_.size()); }

  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      absl::Span<const uint8_t> mine) override {
    std::vector<std::vector<uint8_t>> all(peers_.size());
    all[static_cast<size_t>(rank_)].assign(mine.begin(), mine.end());
    const uint64_t length = mine.size();
    for (size_t r = 0; r < peers_.size(); ++r) {
      if (static_cast<int64_t>(r) == rank_) continue;
      if (!WriteAll(peers_[r], &length, sizeof(length)) ||
          !WriteAll(peers_[r], mine.data(), mine.size())) {
        return absl::UnavailableError(absl::StrFormat("mesh write to rank %d failed", r));
      }
    }
    for (size_t r = 0; r < peers_.size(); ++r) {
      if (static_cast<int64_t>(r) == rank_) continue;
      uint64_t peer_length = 0;
      if (!ReadAll(peers_[r], &peer_length, sizeof(peer_length), 10000)) {
        return absl::DeadlineExceededError(absl::StrFormat("mesh read from rank %d failed", r));
      }
      all[r].resize(peer_length);
      if (!ReadAll(peers_[r], all[r].data(), peer_length, 10000)) {
        return absl::DeadlineExceededError(absl::StrFormat("mesh read from rank %d failed", r));
      }
    }
    if (stop_) ::raise(SIGSTOP);  // a rank that hangs right after agreeing
    return all;
  }

  absl::Status Barrier() override { return Allgather({}).status(); }

 private:
  int64_t rank_;
  std::vector<int> peers_;
  bool stop_;
};

struct RankOutcome {
  bool exited = false;  // false: still running at the end (killed)
  int exit_code = -1;
  std::string message;
  double seconds = 0;  // from start until it exited
};

// Forks `ranks` processes that run body(rank, comm); a rank's status message comes back over a
// pipe and its exit code is 0 when the body returned OK. Ranks in `hang` stop after their first
// allgather; they are killed once the others have exited.
std::vector<RankOutcome> RunRanks(int ranks,
                                  const std::function<absl::Status(int64_t, Comm&)>& body,
                                  const std::set<int>& hang = {}, double limit_seconds = 30) {
  std::vector<std::vector<int>> mesh(ranks, std::vector<int>(ranks, -1));
  for (int i = 0; i < ranks; ++i) {
    for (int j = i + 1; j < ranks; ++j) {
      int pair[2];
      BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
      mesh[i][j] = pair[0];
      mesh[j][i] = pair[1];
    }
  }
  std::vector<int> result_pipes(ranks);
  std::vector<pid_t> pids(ranks);
  const Clock::time_point start = Clock::now();
  for (int r = 0; r < ranks; ++r) {
    int pipe_fds[2];
    BOOST_REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(pipe_fds[0]);
      for (int i = 0; i < ranks; ++i) {
        for (int j = 0; j < ranks; ++j) {
          if (i != r && mesh[i][j] >= 0) ::close(mesh[i][j]);
        }
      }
      MeshComm comm(r, mesh[r], hang.count(r) > 0);
      const absl::Status status = body(r, comm);
      const std::string text = status.ToString();
      WriteAll(pipe_fds[1], text.data(), text.size());
      ::_exit(status.ok() ? 0 : 1);
    }
    ::close(pipe_fds[1]);
    result_pipes[r] = pipe_fds[0];
    pids[r] = pid;
  }
  for (auto& row : mesh) {
    for (int fd : row) {
      if (fd >= 0) ::close(fd);
    }
  }

  std::vector<RankOutcome> outcomes(ranks);
  auto must_finish_done = [&] {
    for (int r = 0; r < ranks; ++r) {
      if (!hang.count(r) && !outcomes[r].exited) return false;
    }
    return true;
  };
  while (!must_finish_done() && SecondsSince(start) < limit_seconds) {
    for (int r = 0; r < ranks; ++r) {
      if (outcomes[r].exited) continue;
      int status = 0;
      if (::waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        outcomes[r].exited = true;
        outcomes[r].exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        outcomes[r].seconds = SecondsSince(start);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (int r = 0; r < ranks; ++r) {
    if (!outcomes[r].exited) {
      ::kill(pids[r], SIGKILL);
      ::waitpid(pids[r], nullptr, 0);
    }
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(result_pipes[r], buffer, sizeof(buffer))) > 0) {
      outcomes[r].message.append(buffer, static_cast<size_t>(n));
    }
    ::close(result_pipes[r]);
  }
  return outcomes;
}

// What rank `rank`'s handle `index` holds, so that the receiver can tell it got the right file.
std::string HandleContent(int64_t rank, int index) {
  return absl::StrFormat("handle %d of rank %d", index, rank);
}

// A memfd standing in for an exported VMM handle.
absl::StatusOr<SharedHandle> MakeFdHandle(int64_t rank, int index) {
  const int fd = ::memfd_create("dwdp-test-handle", MFD_CLOEXEC);
  if (fd < 0) return absl::InternalError("memfd_create failed");
  const std::string content = HandleContent(rank, index);
  if (!WriteAll(fd, content.data(), content.size())) {
    ::close(fd);
    return absl::InternalError("memfd write failed");
  }
  SharedHandle handle(HandleKind::kPosixFd, rank, 2u << 20);
  handle.set_fd(fd);
  return handle;
}

absl::Status CheckFdHandles(const std::vector<std::vector<SharedHandle>>& by_rank, int64_t me,
                            int count) {
  for (int64_t r = 0; r < static_cast<int64_t>(by_rank.size()); ++r) {
    const std::vector<SharedHandle>& handles = by_rank[static_cast<size_t>(r)];
    if (static_cast<int>(handles.size()) != count) {
      return absl::InternalError(absl::StrFormat("rank %d got %d handles of rank %d, expected %d",
                                                 me, handles.size(), r, count));
    }
    for (int k = 0; k < count; ++k) {
      const SharedHandle& handle = handles[static_cast<size_t>(k)];
      const std::string expected = HandleContent(r, k);
      std::string got(expected.size() + 8, '\0');
      const ssize_t n = ::pread(handle.fd(), got.data(), got.size(), 0);
      got.resize(n > 0 ? static_cast<size_t>(n) : 0);
      if (got != expected || handle.owner_rank() != r || handle.bytes() != (2u << 20) ||
          handle.kind() != HandleKind::kPosixFd) {
        return absl::InternalError(absl::StrFormat(
            "rank %d: handle %d of rank %d reads '%s' (owner %d, %d bytes), expected '%s'", me, k,
            r, got, handle.owner_rank(), handle.bytes(), expected));
      }
    }
  }
  return absl::OkStatus();
}

std::function<absl::Status(int64_t, Comm&)> FdExchangeBody(int count,
                                                           HandleExchangeOptions options) {
  return [count, options](int64_t rank, Comm& comm) -> absl::Status {
    std::vector<std::vector<SharedHandle>> exported(1);
    for (int k = 0; k < count; ++k) {
      absl::StatusOr<SharedHandle> handle = MakeFdHandle(rank, k);
      if (!handle.ok()) return handle.status();
      exported[0].push_back(std::move(*handle));
    }
    FdHandleExchange exchange(comm, options);
    absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> result =
        exchange.Exchange(std::move(exported));
    if (!result.ok()) return result.status();
    if (result->size() != 1) return absl::InternalError("expected one hosted rank");
    if (absl::Status s = CheckFdHandles((*result)[0], rank, count); !s.ok()) return s;
    return exchange.Barrier();
  };
}

void ExpectAllOk(const std::vector<RankOutcome>& outcomes) {
  for (size_t r = 0; r < outcomes.size(); ++r) {
    BOOST_TEST_CONTEXT("rank " << r) {
      BOOST_TEST(outcomes[r].exited);
      BOOST_TEST(outcomes[r].exit_code == 0);
      BOOST_TEST(outcomes[r].message == "OK");
    }
  }
}

// ---------------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(without_gpu)

BOOST_AUTO_TEST_CASE(cuda_error_names_match_the_driver_names) {
  // CUresult values of the driver API (cuda.h), named without a driver.
  BOOST_TEST(CuResultName(0) == "CUDA_SUCCESS");
  BOOST_TEST(CuResultName(1) == "CUDA_ERROR_INVALID_VALUE");
  BOOST_TEST(CuResultName(2) == "CUDA_ERROR_OUT_OF_MEMORY");
  BOOST_TEST(CuResultName(700) == "CUDA_ERROR_ILLEGAL_ADDRESS");
  BOOST_TEST(CuResultName(800) == "CUDA_ERROR_NOT_PERMITTED");
  BOOST_TEST(CuResultName(801) == "CUDA_ERROR_NOT_SUPPORTED");
  BOOST_TEST(CuResultName(424242) == "CUresult 424242");

  BOOST_TEST(CuStatus(0, "anything").ok());
  const absl::Status partial = CuStatus(801, "cuMemMap of pool page 3 of layer 7 on rank 2");
  BOOST_TEST(partial.code() == absl::StatusCode::kUnimplemented);
  BOOST_TEST(std::string(partial.message()) ==
             "cuMemMap of pool page 3 of layer 7 on rank 2: CUDA_ERROR_NOT_SUPPORTED");
  BOOST_TEST(CuStatus(2, "create").code() == absl::StatusCode::kResourceExhausted);
  BOOST_TEST(CuStatus(800, "create").code() == absl::StatusCode::kPermissionDenied);
  BOOST_TEST(CuStatus(1, "map").code() == absl::StatusCode::kInvalidArgument);
}

BOOST_AUTO_TEST_CASE(loader_says_why_a_missing_module_cannot_load) {
  const std::string missing = "/nonexistent/dir/libdwdp_cuda.so";
  absl::StatusOr<CudaBackendFactory*> factory = LoadCudaBackendFrom(missing);
  BOOST_REQUIRE(!factory.ok());
  BOOST_TEST(factory.status().code() == absl::StatusCode::kFailedPrecondition);
  BOOST_TEST(absl::StrContains(factory.status().message(), missing));
  BOOST_TEST(absl::StrContains(factory.status().message(), "could not be loaded"));

  // A shared library that is not a dwdp module.
  absl::StatusOr<CudaBackendFactory*> not_module = LoadCudaBackendFrom("libm.so.6");
  BOOST_REQUIRE(!not_module.ok());
  BOOST_TEST(absl::StrContains(not_module.status().message(), "not a dwdp cuda backend module"));

  // The search list: $DWDP_CUDA_MODULE first, then next to the executable.
  ::setenv("DWDP_CUDA_MODULE", missing.c_str(), 1);
  const std::vector<std::string> candidates = CudaModuleCandidates();
  ::unsetenv("DWDP_CUDA_MODULE");
  BOOST_REQUIRE(candidates.size() == 3u);
  BOOST_TEST(candidates[0] == missing);
  BOOST_TEST(absl::EndsWith(candidates[1], "/libdwdp_cuda.so"));
  BOOST_TEST(absl::EndsWith(candidates[2], "/lib/libdwdp_cuda.so"));
}

// Runs after the failure cases: the loader keeps the first module it loads.
BOOST_AUTO_TEST_CASE(loader_opens_the_built_module) {
  const std::string path = DWDP_CUDA_MODULE_PATH;
  if (::access(path.c_str(), F_OK) != 0) {
    BOOST_TEST_MESSAGE("skipped: " << path << " is not built (target dwdp_cuda_plugin)");
    return;
  }
  absl::StatusOr<CudaBackendFactory*> factory = LoadCudaBackendFrom(path);
  BOOST_REQUIRE_MESSAGE(factory.ok(), factory.status().ToString());
  BOOST_TEST((*factory)->abi_version() == kCudaBackendAbiVersion);
  BOOST_TEST(!(*factory)->initialized());
  if (!CudaDeviceCount().ok()) {
    // No GPU here: initialising says so in one sentence, before touching MPI.
    const absl::Status status = (*factory)->Initialize({});
    BOOST_TEST(status.code() == absl::StatusCode::kFailedPrecondition);
    BOOST_TEST(absl::StrContains(status.message(), "the cuda backend cannot run on"));
    BOOST_TEST_MESSAGE("Initialize without a GPU: " << status.message());
  }
}

BOOST_AUTO_TEST_CASE(peer_uid_check_accepts_only_the_allowed_uid) {
  int pair[2];
  BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  BOOST_TEST(CheckPeerUid(pair[0], ::geteuid()).ok());
  const absl::Status other = CheckPeerUid(pair[0], ::geteuid() + 1);
  BOOST_TEST(other.code() == absl::StatusCode::kPermissionDenied);
  BOOST_TEST(absl::StrContains(other.message(), absl::StrFormat("of uid %d", ::geteuid())));
  ::close(pair[0]);
  ::close(pair[1]);
}

BOOST_AUTO_TEST_CASE(fd_exchange_passes_real_fds_between_processes) {
  // 300 handles per rank: more than one SCM_RIGHTS message (250 fds each).
  ExpectAllOk(RunRanks(2, FdExchangeBody(300, {})));
}

BOOST_AUTO_TEST_CASE(fd_exchange_between_three_ranks_in_small_batches) {
  HandleExchangeOptions options;
  options.max_fds_per_message = 7;
  ExpectAllOk(RunRanks(3, FdExchangeBody(40, options)));
}

BOOST_AUTO_TEST_CASE(fd_exchange_of_no_handles) { ExpectAllOk(RunRanks(2, FdExchangeBody(0, {}))); }

BOOST_AUTO_TEST_CASE(fd_exchange_turns_away_another_uid) {
  // Every rank accepts only a uid nobody has: the connections are turned away, so no handle
  // arrives and the exchange fails within the timeout, saying why.
  HandleExchangeOptions options;
  options.timeout_seconds = 1;
  options.allowed_peer_uid = ::geteuid() + 1;
  const std::vector<RankOutcome> outcomes = RunRanks(2, FdExchangeBody(3, options));
  bool told = false;
  for (size_t r = 0; r < outcomes.size(); ++r) {
    BOOST_TEST_CONTEXT("rank " << r << ": " << outcomes[r].message) {
      BOOST_TEST(outcomes[r].exited);
      BOOST_TEST(outcomes[r].exit_code == 1);
      BOOST_TEST(outcomes[r].seconds < 10.0);
      told = told || absl::StrContains(outcomes[r].message, "turned away a connection");
    }
  }
  BOOST_TEST(told);
}

BOOST_AUTO_TEST_CASE(fd_exchange_times_out_when_a_peer_never_connects) {
  // Rank 1 agrees on the socket names, then hangs (SIGSTOP) without ever connecting.
  HandleExchangeOptions options;
  options.timeout_seconds = 0.5;
  const std::vector<RankOutcome> outcomes = RunRanks(2, FdExchangeBody(5, options), {1});
  BOOST_TEST_MESSAGE("rank 0: " << outcomes[0].message);
  BOOST_TEST(outcomes[0].exited);
  BOOST_TEST(outcomes[0].exit_code == 1);
  BOOST_TEST(absl::StrContains(outcomes[0].message, "DEADLINE_EXCEEDED"));
  BOOST_TEST(absl::StrContains(outcomes[0].message, "rank 1 never connected within 0.5 s"));
  BOOST_TEST(outcomes[0].seconds < 5.0);
}

BOOST_AUTO_TEST_CASE(fd_exchange_fails_fast_when_a_rank_exits_after_exporting) {
  HandleExchangeOptions options;
  options.timeout_seconds = 3;
  options.exit_after_export_rank = 1;
  options.exit_after_export_code = 3;
  const std::vector<RankOutcome> outcomes = RunRanks(2, FdExchangeBody(5, options));
  BOOST_TEST_MESSAGE("rank 0: " << outcomes[0].message);
  BOOST_TEST(outcomes[1].exited);
  BOOST_TEST(outcomes[1].exit_code == 3);
  BOOST_TEST(outcomes[0].exited);
  BOOST_TEST(outcomes[0].exit_code == 1);
  BOOST_TEST(absl::StrContains(outcomes[0].message, "rank 1"));
  BOOST_TEST(outcomes[0].seconds < 10.0);
}

BOOST_AUTO_TEST_CASE(exit_hook_reads_the_environment) {
  ::setenv("DWDP_TEST_EXIT_AFTER_EXPORT_RANK", "1", 1);
  const HandleExchangeOptions from_env = WithEnvironmentHooks({});
  HandleExchangeOptions explicit_rank;
  explicit_rank.exit_after_export_rank = 0;
  const HandleExchangeOptions kept = WithEnvironmentHooks(explicit_rank);
  ::unsetenv("DWDP_TEST_EXIT_AFTER_EXPORT_RANK");
  BOOST_TEST(from_env.exit_after_export_rank == 1);
  BOOST_TEST(kept.exit_after_export_rank == 0);
  BOOST_TEST(WithEnvironmentHooks({}).exit_after_export_rank == -1);
}

BOOST_AUTO_TEST_CASE(fabric_exchange_gathers_the_opaque_bytes) {
  ExpectAllOk(RunRanks(3, [](int64_t rank, Comm& comm) -> absl::Status {
    auto fabric_bytes = [](int64_t owner, int k) {
      std::vector<uint8_t> bytes(64);
      for (size_t i = 0; i < bytes.size(); ++i) {
        bytes[i] = static_cast<uint8_t>(owner * 31 + k * 7 + static_cast<int>(i));
      }
      return bytes;
    };
    std::vector<std::vector<SharedHandle>> exported(1);
    for (int k = 0; k < 4; ++k) {
      SharedHandle handle(HandleKind::kFabric, rank, (k + 1) * (2u << 20));
      handle.set_fabric(fabric_bytes(rank, k));
      exported[0].push_back(std::move(handle));
    }
    FabricHandleExchange exchange(comm);
    auto result = exchange.Exchange(std::move(exported));
    if (!result.ok()) return result.status();
    for (int64_t r = 0; r < 3; ++r) {
      const auto& handles = (*result)[0][static_cast<size_t>(r)];
      if (handles.size() != 4) return absl::InternalError("wrong handle count");
      for (int k = 0; k < 4; ++k) {
        const SharedHandle& h = handles[static_cast<size_t>(k)];
        if (h.kind() != HandleKind::kFabric || h.owner_rank() != r ||
            h.bytes() != (k + 1) * (2u << 20) || h.fabric() != fabric_bytes(r, k)) {
          return absl::InternalError(
              absl::StrFormat("rank %d: handle %d of rank %d differs", rank, k, r));
        }
      }
    }
    return exchange.Barrier();
  }));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
// GPU cases (one GPU). Skipped with the reason when no GPU is visible.

struct GpuAvailable {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    const absl::StatusOr<int> count = CudaDeviceCount();
    boost::test_tools::assertion_result result(count.ok());
    if (!count.ok()) {
      result.message() << "no GPU here, skipped (" << count.status().message() << ")";
    }
    return result;
  }
};

// One device, its driver and streams; everything a case creates is torn down by the driver's
// and the streams' destructors should an assertion stop it early.
struct GpuFixture {
  GpuFixture() {
    BOOST_REQUIRE(UseDevice(0).ok());
    BOOST_TEST_MESSAGE("GPU: " << DescribeDevice(0));
    CudaDriverOptions driver_options;
    driver_options.rank = 0;
    auto created_driver = CudaDriver::Create(driver_options);
    BOOST_REQUIRE_MESSAGE(created_driver.ok(), created_driver.status().ToString());
    driver = std::move(*created_driver);
    BOOST_TEST_MESSAGE("handle kind: " << HandleKindName(driver->shareable_kind()) << " ("
                                       << driver->handle_kind_reason() << ")");
    auto created_streams = CudaStreams::Create({});
    BOOST_REQUIRE_MESSAGE(created_streams.ok(), created_streams.status().ToString());
    streams = std::move(*created_streams);
    auto copy = streams->CreateStream("copy");
    auto compute = streams->CreateStream("compute");
    BOOST_REQUIRE(copy.ok() && compute.ok());
    copy_stream = *copy;
    compute_stream = *compute;
    granularity = driver->granularity();
  }

  // A reservation with `handle` mapped whole at its start and access set.
  DevPtr MapWhole(Handle handle, uint64_t bytes) {
    auto va = driver->Reserve(bytes, granularity);
    BOOST_REQUIRE_MESSAGE(va.ok(), va.status().ToString());
    const absl::Status mapped = driver->Map(*va, bytes, handle, 0);
    BOOST_REQUIRE_MESSAGE(mapped.ok(), mapped.ToString());
    const absl::Status access = driver->SetAccess(*va, bytes);
    BOOST_REQUIRE_MESSAGE(access.ok(), access.ToString());
    return *va;
  }

  void UnmapAndFree(DevPtr va, uint64_t bytes) {
    BOOST_TEST(driver->Unmap(va, bytes).ok());
    BOOST_TEST(driver->Free(va, bytes).ok());
  }

  absl::Status Verify(DevPtr va, uint64_t bytes, const PatternRef& pattern) {
    KernelLaunch kernel;
    kernel.name = "verify";
    kernel.reads.push_back({va, bytes, true, pattern});
    if (absl::Status s = streams->Launch(kernel, compute_stream, {}); !s.ok()) return s;
    return streams->Synchronize();
  }

  std::unique_ptr<CudaDriver> driver;
  std::unique_ptr<CudaStreams> streams;
  StreamId copy_stream = 0;
  StreamId compute_stream = 0;
  uint64_t granularity = 0;
};

BOOST_AUTO_TEST_SUITE(with_gpu, *boost::unit_test::precondition(GpuAvailable()))

BOOST_FIXTURE_TEST_CASE(create_export_import_map_copy_verify, GpuFixture) {
  const uint64_t bytes = 2 * granularity;
  // An expert size that does not divide the granularity, so experts straddle chunks and pages.
  const PatternRef pattern{3, 1, 1'000'003};

  auto local = driver->Create(bytes, driver->shareable_kind());
  BOOST_REQUIRE_MESSAGE(local.ok(), local.status().ToString());
  BOOST_TEST(driver->live_device_bytes() == bytes);
  auto shared = driver->Export(*local);
  BOOST_REQUIRE_MESSAGE(shared.ok(), shared.status().ToString());
  BOOST_TEST(shared->bytes() == bytes);
  auto imported = driver->Import(*shared);  // our own handle, as a peer would import it
  BOOST_REQUIRE_MESSAGE(imported.ok(), imported.status().ToString());
  shared->close_fd();                                // imported fds are closed right after import
  BOOST_TEST(driver->live_device_bytes() == bytes);  // an import allocates nothing

  const DevPtr local_va = MapWhole(*local, bytes);
  const DevPtr peer_view = MapWhole(*imported, bytes);
  BOOST_REQUIRE(streams->Fill(local_va, bytes, pattern, 0, copy_stream, {}).ok());
  BOOST_REQUIRE(streams->Synchronize().ok());
  // The imported view sees the same physical bytes.
  const absl::Status peer_ok = Verify(peer_view, bytes, pattern);
  BOOST_CHECK_MESSAGE(peer_ok.ok(), peer_ok.ToString());

  // A pool page (no shareable handle) filled by a copy from the peer view.
  auto pool_page = driver->Create(bytes, HandleKind::kNone);
  BOOST_REQUIRE_MESSAGE(pool_page.ok(), pool_page.status().ToString());
  BOOST_TEST(driver->live_device_bytes() == 2 * bytes);
  BOOST_TEST(driver->peak_device_bytes() == 2 * bytes);
  const DevPtr pool_va = MapWhole(*pool_page, bytes);
  BOOST_REQUIRE(streams->Copy(pool_va, peer_view, bytes, copy_stream, {}).ok());
  BOOST_REQUIRE(streams->Synchronize().ok());
  const absl::Status pool_ok = Verify(pool_va, bytes, pattern);
  BOOST_CHECK_MESSAGE(pool_ok.ok(), pool_ok.ToString());

  // Unaligned start and end: the byte-wise edges of the kernels.
  BOOST_REQUIRE(streams->Fill(pool_va + 3, bytes - 10, pattern, 0, copy_stream, {}).ok());
  BOOST_REQUIRE(streams->Synchronize().ok());
  const absl::Status unaligned_ok = Verify(pool_va + 3, bytes - 10, pattern);
  BOOST_CHECK_MESSAGE(unaligned_ok.ok(), unaligned_ok.ToString());

  UnmapAndFree(pool_va, bytes);
  UnmapAndFree(peer_view, bytes);
  UnmapAndFree(local_va, bytes);
  BOOST_TEST(driver->Release(*pool_page).ok());
  BOOST_TEST(driver->Release(*imported).ok());
  BOOST_TEST(driver->Release(*local).ok());
  BOOST_TEST(driver->live_device_bytes() == 0u);
  BOOST_TEST(driver->peak_device_bytes() == 2 * bytes);
}

BOOST_FIXTURE_TEST_CASE(partial_map_is_refused_with_not_supported, GpuFixture) {
  const uint64_t bytes = 2 * granularity;
  auto handle = driver->Create(bytes, driver->shareable_kind());
  BOOST_REQUIRE_MESSAGE(handle.ok(), handle.status().ToString());
  auto va = driver->Reserve(bytes, granularity);
  BOOST_REQUIRE(va.ok());
  for (uint64_t offset : {uint64_t{0}, granularity}) {
    const absl::Status partial = driver->Map(*va, granularity, *handle, offset);
    BOOST_TEST_CONTEXT("offset " << offset << ": " << partial.ToString()) {
      BOOST_TEST(!partial.ok());
      BOOST_TEST(absl::StrContains(partial.message(), "CUDA_ERROR_NOT_SUPPORTED"));
    }
    if (partial.ok()) BOOST_TEST(driver->Unmap(*va, granularity).ok());
  }
  BOOST_TEST(driver->Free(*va, bytes).ok());
  BOOST_TEST(driver->Release(*handle).ok());
}

BOOST_FIXTURE_TEST_CASE(verify_names_the_first_planted_wrong_byte, GpuFixture) {
  const uint64_t bytes = granularity;
  const PatternRef pattern{7, 2, 4096 + 5};
  auto handle = driver->Create(bytes, HandleKind::kNone);
  BOOST_REQUIRE(handle.ok());
  const DevPtr va = MapWhole(*handle, bytes);
  BOOST_REQUIRE(streams->Fill(va, bytes, pattern, 0, copy_stream, {}).ok());

  // Plant wrong bytes by filling single bytes with another layer's pattern, at offsets where
  // the two patterns differ.
  auto plant = [&](uint64_t tensor_offset) {
    PatternRef wrong = pattern;
    do {
      ++wrong.layer;
    } while (PatternByte(wrong, tensor_offset) == PatternByte(pattern, tensor_offset));
    BOOST_REQUIRE(streams->Fill(va + tensor_offset, 1, wrong, tensor_offset, copy_stream, {}).ok());
    return PatternByte(wrong, tensor_offset);
  };
  const uint64_t first_wrong = 3 * pattern.expert_bytes + 17;
  const unsigned got = plant(first_wrong);
  plant(bytes - 1);
  BOOST_REQUIRE(streams->Synchronize().ok());

  const absl::Status status = Verify(va, bytes, pattern);
  BOOST_TEST_MESSAGE("verification: " << status.ToString());
  BOOST_TEST(status.code() == absl::StatusCode::kDataLoss);
  BOOST_TEST(absl::StrContains(status.message(), "layer 7, weight 2, expert 3, byte offset 17"));
  BOOST_TEST(absl::StrContains(
      status.message(),
      absl::StrFormat("expected 0x%02x, got 0x%02x", PatternByte(pattern, first_wrong), got)));
  // The result buffer is reset: a clean tensor verifies again.
  BOOST_REQUIRE(streams->Fill(va, bytes, pattern, 0, copy_stream, {}).ok());
  BOOST_REQUIRE(streams->Synchronize().ok());
  BOOST_TEST(Verify(va, bytes, pattern).ok());

  UnmapAndFree(va, bytes);
  BOOST_TEST(driver->Release(*handle).ok());
}

BOOST_FIXTURE_TEST_CASE(compute_runs_for_the_requested_time_and_waits_show_stalls, GpuFixture) {
  const uint64_t bytes = 64 * granularity;
  auto handle = driver->Create(bytes, HandleKind::kNone);
  BOOST_REQUIRE(handle.ok());
  const DevPtr va = MapWhole(*handle, bytes);
  auto ready = streams->CreateEvent();
  BOOST_REQUIRE(ready.ok());

  constexpr double kDurationNs = 3e6;
  KernelLaunch kernel;
  kernel.name = "moe";
  kernel.reads.push_back({va, bytes, false, {}});
  kernel.duration_ns = kDurationNs;
  OpTag compute_tag;
  compute_tag.kind = OpKind::kCompute;
  compute_tag.layer = 5;
  OpTag record_tag;
  record_tag.kind = OpKind::kRecord;
  OpTag wait_tag;
  wait_tag.kind = OpKind::kWait;
  BOOST_REQUIRE(streams->Launch(kernel, compute_stream, compute_tag).ok());
  BOOST_REQUIRE(streams->Record(*ready, compute_stream, record_tag).ok());
  BOOST_REQUIRE(streams->Wait(copy_stream, *ready, wait_tag).ok());
  BOOST_REQUIRE(streams->Synchronize().ok());

  const std::vector<TimedOp> timeline = streams->TakeTimeline();
  BOOST_REQUIRE(timeline.size() == 3u);
  const TimedOp* compute = nullptr;
  const TimedOp* wait = nullptr;
  for (const TimedOp& op : timeline) {
    BOOST_TEST(op.start_ns <= op.end_ns);
    if (op.tag.kind == OpKind::kCompute) compute = &op;
    if (op.tag.kind == OpKind::kWait) wait = &op;
  }
  BOOST_REQUIRE(compute != nullptr);
  BOOST_REQUIRE(wait != nullptr);
  const double ran = compute->end_ns - compute->start_ns;
  BOOST_TEST_MESSAGE("compute ran " << ran / 1e6 << " ms for 3 ms requested; the wait stalled "
                                    << (wait->end_ns - wait->start_ns) / 1e6 << " ms");
  BOOST_TEST(compute->tag.layer == 5);
  BOOST_TEST(compute->bytes == bytes);
  BOOST_TEST(ran >= 0.95 * kDurationNs);
  BOOST_TEST(ran <= kDurationNs + 2e6);
  // The copy stream reached the wait at once and waited for the kernel.
  BOOST_TEST(wait->end_ns - wait->start_ns >= 0.8 * kDurationNs);
  BOOST_TEST(streams->TakeTimeline().empty());

  BOOST_TEST(streams->DestroyEvent(*ready).ok());
  UnmapAndFree(va, bytes);
  BOOST_TEST(driver->Release(*handle).ok());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace dwdp::cuda

#else  // !DWDP_HAVE_CUDA

BOOST_AUTO_TEST_CASE(cuda_backend_not_built) {
  BOOST_TEST_MESSAGE("dwdp was configured without the cuda backend; nothing to test here");
  BOOST_TEST(true);
}

#endif  // DWDP_HAVE_CUDA
