#include "backends/sim/sim_threads.h"

#include <string>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dwdp::sim {

// A rank's Comm: its collectives are blocking points of the scheduler.
class ThreadComm : public Comm {
 public:
  ThreadComm(SimThreads* threads, int64_t rank) : threads_(threads), rank_(rank) {}
  int64_t rank() const override { return rank_; }
  int64_t size() const override { return threads_->size(); }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> Allgather(
      absl::Span<const uint8_t> mine) override {
    return threads_->Block(rank_, SimThreads::Waiting::kAllgather, mine);
  }
  absl::Status Barrier() override {
    return threads_->Block(rank_, SimThreads::Waiting::kBarrier, {}).status();
  }

 private:
  SimThreads* threads_;
  int64_t rank_;
};

namespace {

// A rank's HandleExchange over its Comm, as the cuda backend's fabric exchange works: every
// rank's handles, described as bytes, by one Allgather.
class ThreadExchange : public HandleExchange {
 public:
  explicit ThreadExchange(Comm& comm) : comm_(comm) {}

  absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> Exchange(
      std::vector<std::vector<SharedHandle>> exported) override {
    if (exported.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrFormat("exchange on rank %d: a rank hosts itself only, got %d ranks' handles",
                          comm_.rank(), exported.size()));
    }
    nlohmann::json mine = nlohmann::json::array();
    for (const SharedHandle& h : exported[0]) {
      mine.push_back(
          {static_cast<int>(h.kind()), h.owner_rank(), h.bytes(), h.sim_token(), h.fabric()});
    }
    const std::string text = mine.dump();
    auto all = comm_.Allgather(std::vector<uint8_t>(text.begin(), text.end()));
    if (!all.ok()) return all.status();
    std::vector<std::vector<std::vector<SharedHandle>>> result(1);
    for (const std::vector<uint8_t>& bytes : *all) {
      const nlohmann::json theirs = nlohmann::json::parse(bytes.begin(), bytes.end());
      std::vector<SharedHandle>& handles = result[0].emplace_back();
      for (const nlohmann::json& h : theirs) {
        SharedHandle handle(static_cast<HandleKind>(h[0].get<int>()), h[1].get<int64_t>(),
                            h[2].get<uint64_t>());
        handle.set_sim_token(h[3].get<uint64_t>());
        handle.set_fabric(h[4].get<std::vector<uint8_t>>());
        handles.push_back(std::move(handle));
      }
    }
    return result;
  }
  absl::Status Barrier() override { return comm_.Barrier(); }

 private:
  Comm& comm_;
};

}  // namespace

// A Streams object of one rank: the world's engine, with Synchronize a blocking point.
class ThreadStreams : public Streams {
 public:
  ThreadStreams(SimThreads* threads, int64_t rank, bool timing)
      : threads_(threads),
        rank_(rank),
        timing_(timing),
        inner_(&threads->world_.engine(), rank, timing) {
    (void)inner_.TakeTimeline();  // a new Streams object starts with an empty timeline
  }
  ~ThreadStreams() override {
    for (EventId e : events_) (void)inner_.DestroyEvent(e);
    for (StreamId s : streams_) (void)inner_.DestroyStream(s);
  }

  absl::StatusOr<StreamId> CreateStream(absl::string_view name) override {
    absl::StatusOr<StreamId> id = inner_.CreateStream(name);
    if (id.ok()) streams_.push_back(*id);
    return id;
  }
  absl::StatusOr<EventId> CreateEvent() override {
    absl::StatusOr<EventId> id = inner_.CreateEvent();
    if (id.ok()) events_.push_back(*id);
    return id;
  }
  absl::Status DestroyEvent(EventId event) override {
    std::erase(events_, event);
    return inner_.DestroyEvent(event);
  }
  absl::Status DestroyStream(StreamId stream) override {
    std::erase(streams_, stream);
    return inner_.DestroyStream(stream);
  }
  absl::Status Record(EventId event, StreamId stream, const OpTag& tag) override {
    return inner_.Record(event, stream, tag);
  }
  absl::Status Wait(StreamId stream, EventId event, const OpTag& tag) override {
    return inner_.Wait(stream, event, tag);
  }
  absl::Status Copy(DevPtr dst, DevPtr src, uint64_t bytes, StreamId stream,
                    const OpTag& tag) override {
    return inner_.Copy(dst, src, bytes, stream, tag);
  }
  absl::Status Fill(DevPtr dst, uint64_t bytes, const PatternRef& pattern, uint64_t tensor_offset,
                    StreamId stream, const OpTag& tag) override {
    return inner_.Fill(dst, bytes, pattern, tensor_offset, stream, tag);
  }
  absl::Status Launch(const KernelLaunch& kernel, StreamId stream, const OpTag& tag) override {
    return inner_.Launch(kernel, stream, tag);
  }
  absl::Status PrepareMoe(const MoeKernel& kernel) override { return inner_.PrepareMoe(kernel); }
  absl::Status WaitFlag(StreamId stream, DevPtr flag, uint32_t value, const OpTag& tag) override {
    return inner_.WaitFlag(stream, flag, value, tag);
  }
  absl::Status WriteFlags(absl::Span<const DevPtr> flags, uint32_t value, StreamId stream,
                          const OpTag& tag) override {
    return inner_.WriteFlags(flags, value, stream, tag);
  }
  absl::Status Synchronize() override {
    return threads_->Block(rank_, SimThreads::Waiting::kSynchronize, {}).status();
  }
  std::vector<TimedOp> TakeTimeline() override {
    std::vector<TimedOp> ops = inner_.TakeTimeline();
    if (!timing_) ops.clear();
    return ops;
  }

 private:
  SimThreads* threads_;
  int64_t rank_;
  bool timing_;
  SimStreams inner_;
  std::vector<StreamId> streams_;
  std::vector<EventId> events_;
};

SimThreads::SimThreads(SimWorld& world) : world_(world) {
  for (int64_t rank = 0; rank < world.size(); ++rank) {
    comms_.push_back(std::make_unique<ThreadComm>(this, rank));
    exchanges_.push_back(std::make_unique<ThreadExchange>(*comms_.back()));
  }
}

SimThreads::~SimThreads() = default;

std::unique_ptr<Streams> SimThreads::NewStreams(int64_t rank, bool timing) {
  return std::make_unique<ThreadStreams>(this, rank, timing);
}

double SimThreads::host_now_ns(int64_t rank) { return world_.engine().SettledHostNs(rank); }

absl::Status SimThreads::Outcome::first_error() const {
  if (!scheduler.ok()) return scheduler;
  for (size_t rank = 0; rank < ranks.size(); ++rank) {
    if (!ranks[rank].ok()) {
      return absl::Status(ranks[rank].code(),
                          absl::StrCat("rank ", rank, ": ", ranks[rank].message()));
    }
  }
  return absl::OkStatus();
}

SimThreads::Outcome SimThreads::Run(const std::function<absl::Status(int64_t rank)>& body) {
  const int64_t n = size();
  Outcome outcome;
  outcome.ranks.assign(n, absl::OkStatus());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ranks_.assign(n, RankState{});
    scheduler_error_ = absl::OkStatus();
    in_run_ = true;
    running_ = 0;
  }
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int64_t rank = 0; rank < n; ++rank) {
    threads.emplace_back([this, rank, &body, &outcome] {
      {
        std::unique_lock<std::mutex> lock(mu_);
        turn_.wait(lock, [&] { return running_ == rank; });
      }
      absl::Status status = body(rank);
      std::lock_guard<std::mutex> lock(mu_);
      outcome.ranks[rank] = std::move(status);
      ranks_[rank].waiting = Waiting::kReturned;
      HandOnLocked();
      turn_.notify_all();
    });
  }
  for (std::thread& t : threads) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  in_run_ = false;
  outcome.scheduler = scheduler_error_;
  return outcome;
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> SimThreads::Block(
    int64_t rank, Waiting what, absl::Span<const uint8_t> mine) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!in_run_ || running_ != rank) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "rank %d: a collective or synchronize outside SimThreads::Run, or not on the rank's own "
        "thread",
        rank));
  }
  RankState& me = ranks_[rank];
  me.waiting = what;
  me.mine.assign(mine.begin(), mine.end());
  me.result = absl::OkStatus();
  me.gathered.clear();
  HandOnLocked();
  turn_.notify_all();
  turn_.wait(lock, [&] { return running_ == rank; });
  if (!me.result.ok()) return me.result;
  return std::move(me.gathered);
}

void SimThreads::HandOnLocked() {
  while (true) {
    bool all_returned = true;
    for (int64_t rank = 0; rank < size(); ++rank) {
      if (ranks_[rank].waiting == Waiting::kNothing) {
        running_ = rank;
        return;
      }
      all_returned = all_returned && ranks_[rank].waiting == Waiting::kReturned;
    }
    if (all_returned) {
      running_ = -1;
      return;
    }
    ResolveLocked();
  }
}

namespace {

const char* WaitName(bool barrier) { return barrier ? "Barrier" : "Allgather"; }

}  // namespace

void SimThreads::ResolveLocked() {
  bool synchronized = false;
  for (int64_t rank = 0; rank < size(); ++rank) {
    RankState& r = ranks_[rank];
    if (r.waiting != Waiting::kSynchronize) continue;
    r.result = world_.engine().Synchronize(rank);
    r.waiting = Waiting::kNothing;
    synchronized = true;
  }
  if (synchronized) return;

  // Every rank has returned or waits in a collective (and one at least waits).
  std::vector<int64_t> returned, barrier, allgather;
  for (int64_t rank = 0; rank < size(); ++rank) {
    switch (ranks_[rank].waiting) {
      case Waiting::kReturned:
        returned.push_back(rank);
        break;
      case Waiting::kBarrier:
        barrier.push_back(rank);
        break;
      case Waiting::kAllgather:
        allgather.push_back(rank);
        break;
      default:
        break;
    }
  }
  const auto fail_all = [&](const absl::Status& error) {
    if (scheduler_error_.ok()) scheduler_error_ = error;
    for (RankState& r : ranks_) {
      if (r.waiting == Waiting::kBarrier || r.waiting == Waiting::kAllgather) {
        r.result = error;
        r.waiting = Waiting::kNothing;
      }
    }
  };
  if (!returned.empty()) {
    const bool in_barrier = !barrier.empty();
    fail_all(absl::FailedPreconditionError(absl::StrFormat(
        "rank(s) %s returned while rank(s) %s wait in a %s: every rank must take part in every "
        "collective",
        absl::StrJoin(returned, ", "), absl::StrJoin(in_barrier ? barrier : allgather, ", "),
        WaitName(in_barrier))));
    return;
  }
  if (!barrier.empty() && !allgather.empty()) {
    fail_all(absl::FailedPreconditionError(
        absl::StrFormat("rank(s) %s wait in a Barrier while rank(s) %s wait in an Allgather: the "
                        "ranks went through different collectives",
                        absl::StrJoin(barrier, ", "), absl::StrJoin(allgather, ", "))));
    return;
  }
  if (!barrier.empty()) {
    const absl::Status status = world_.Barrier();
    for (RankState& r : ranks_) {
      r.result = status;
      r.waiting = Waiting::kNothing;
    }
    return;
  }
  std::vector<std::vector<uint8_t>> per_rank;
  for (RankState& r : ranks_) per_rank.push_back(std::move(r.mine));
  absl::StatusOr<std::vector<std::vector<uint8_t>>> all = world_.Allgather(per_rank);
  for (RankState& r : ranks_) {
    r.result = all.status();
    if (all.ok()) r.gathered = *all;
    r.waiting = Waiting::kNothing;
  }
}

}  // namespace dwdp::sim
