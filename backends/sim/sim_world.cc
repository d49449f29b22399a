#include "backends/sim/sim_world.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/util/bytes.h"

namespace dwdp::sim {
namespace {

// Copy engines reach about 88% of the per-direction NVLink figure on Hopper (HARDWARE.md);
// used only when a profile gives the link but no measured copy bandwidth.
constexpr double kCopyEngineShareOfLink = 0.88;

int64_t AsCount(const Quantity& quantity) {
  return quantity.value > 0 ? static_cast<int64_t>(std::llround(quantity.value)) : 0;
}

}  // namespace

bool LeakReport::empty() const {
  for (const RankResources& rank : ranks) {
    if (!rank.empty()) return false;
  }
  return allocations.empty();
}

std::string LeakReport::ToString() const {
  if (empty()) return "nothing alive";
  std::string out;
  for (const RankResources& rank : ranks) {
    if (rank.empty()) continue;
    absl::StrAppendFormat(&out, "rank %d: %d handle(s), %d mapping(s), %d reservation(s)\n",
                          rank.rank, rank.handles.size(), rank.mappings.size(),
                          rank.reservations.size());
    for (const auto* list : {&rank.handles, &rank.mappings, &rank.reservations}) {
      for (const std::string& line : *list) absl::StrAppend(&out, "  ", line, "\n");
    }
  }
  if (!allocations.empty()) {
    absl::StrAppendFormat(&out, "%d physical allocation(s) alive:\n", allocations.size());
    for (const std::string& line : allocations) absl::StrAppend(&out, "  ", line, "\n");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SimWorld>> SimWorld::Create(const HardwareProfile& profile,
                                                           int64_t num_ranks,
                                                           const SimOptions& options) {
  const std::string context = absl::StrFormat("simulating profile '%s'", profile.name);
  if (num_ranks < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: a world needs at least one rank, got %d", context, num_ranks));
  }
  const double granularity = profile.granularity.value;
  if (!(granularity >= 1) || granularity != std::floor(granularity)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the profile's granularity must be a positive whole number of bytes", context));
  }
  EngineParams params;
  params.peer_copy_bw = profile.peer_copy_bw.value > 0
                            ? profile.peer_copy_bw.value
                            : kCopyEngineShareOfLink * profile.nvlink_bw.value;
  if (!(params.peer_copy_bw > 0) && num_ranks > 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the profile gives neither peer_copy_bw nor nvlink_bw", context));
  }
  // A device-to-device copy reads and writes HBM.
  params.local_copy_bw =
      profile.local_copy_bw.value > 0 ? profile.local_copy_bw.value : profile.hbm_bw.value / 2;
  if (!(params.local_copy_bw > 0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the profile gives neither local_copy_bw nor hbm_bw", context));
  }
  params.copy_latency_ns = std::max(0.0, profile.copy_latency_ns.value);
  params.copy_latency_on_link =
      options.copy_latency_on_link.value_or(profile.copy_latency_on_link.value);
  if (!(params.copy_latency_on_link >= 0 && params.copy_latency_on_link <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: copy_latency_on_link %g is not a fraction in [0, 1]", context,
                        params.copy_latency_on_link));
  }
  params.concurrent_pull_efficiency =
      options.concurrent_pull_efficiency.value_or(profile.concurrent_pull_efficiency.value);
  if (params.concurrent_pull_efficiency <= 0) params.concurrent_pull_efficiency = 1;
  if (params.concurrent_pull_efficiency > 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: concurrent_pull_efficiency %g is above 1", context,
                        params.concurrent_pull_efficiency));
  }
  params.egress_bw = options.egress_bw.value_or(profile.egress_bw.value);
  if (!(params.egress_bw > 0)) params.egress_bw = params.peer_copy_bw;
  params.egress_fanout_efficiency = profile.egress_fanout_efficiency.value;
  if (!(params.egress_fanout_efficiency > 0 && params.egress_fanout_efficiency <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: egress_fanout_efficiency %g is not a fraction in (0, 1]", context,
                        params.egress_fanout_efficiency));
  }
  params.copy_latency_loaded_ns = std::max(0.0, profile.copy_latency_loaded_ns.value);
  params.compute_read_bw =
      profile.compute_read_bw.value > 0
          ? profile.compute_read_bw.value
          : profile.hbm_bw.value *
                (profile.memory_efficiency.value > 0 ? profile.memory_efficiency.value : 1.0);
  params.fabric_bw = std::max(0.0, options.fabric_bw.value_or(profile.fabric_bw.value));
  params.compute_slowdown =
      std::max(0.0, options.compute_slowdown.value_or(profile.compute_slowdown.value));
  params.host_issue_ns = std::max(0.0, profile.host_issue_ns.value);
  params.event_ns = std::max(0.0, profile.event_ns.value);
  params.stream_queue_entries = AsCount(profile.stream_queue_entries);
  params.fabric_share_spread = std::max(0.0, profile.fabric_share_spread.value);
  params.seed = options.seed;
  params.functional = options.functional;
  params.check_hazards = options.check_hazards || options.functional;
  params.record_timeline = options.record_timeline;

  DriverLimits limits;
  limits.granularity = static_cast<uint64_t>(granularity);
  limits.fabric_supported = profile.fabric_supported;
  limits.imex_permitted = profile.imex_permitted;
  limits.max_mappings = AsCount(profile.max_mappings);
  limits.max_fabric_mappings = AsCount(profile.max_fabric_mappings);
  limits.gpus_per_node = AsCount(profile.gpus_per_node);

  const uint64_t capacity =
      profile.hbm_bytes.value > 0 ? static_cast<uint64_t>(profile.hbm_bytes.value) : 0;
  auto memory = std::make_unique<PhysicalMemory>(num_ranks, capacity, options.functional,
                                                 options.functional_byte_limit);
  std::unique_ptr<SimWorld> world(new SimWorld(options, std::move(memory)));
  std::vector<SimDriver*> drivers;
  for (int64_t rank = 0; rank < num_ranks; ++rank) {
    world->drivers_.push_back(std::make_unique<SimDriver>(rank, limits, world->memory_.get()));
    drivers.push_back(world->drivers_.back().get());
  }
  world->engine_ = std::make_unique<Engine>(params, std::move(drivers), world->memory_.get());
  Engine* engine = world->engine_.get();
  world->memory_->set_on_destroy([engine](uint64_t id) { engine->ForgetAllocation(id); });
  for (int64_t rank = 0; rank < num_ranks; ++rank) {
    world->drivers_[rank]->set_before_unmap(
        [engine, rank](DevPtr va, uint64_t bytes) { engine->BeforeUnmap(rank, va, bytes); });
  }
  for (int64_t rank = 0; rank < num_ranks; ++rank) {
    world->streams_.push_back(std::make_unique<SimStreams>(engine, rank));
    world->comms_.push_back(std::make_unique<SimComm>(world.get(), rank));
  }
  return world;
}

SimWorld::SimWorld(const SimOptions& options, std::unique_ptr<PhysicalMemory> memory)
    : options_(options), memory_(std::move(memory)) {}

SimWorld::~SimWorld() {
  // Allocations destroyed from here on need no hazard bookkeeping.
  memory_->set_on_destroy(nullptr);
}

const std::vector<Hazard>& SimWorld::hazards() const {
  static const std::vector<Hazard> kNone;
  return engine_->hazard_checker() != nullptr ? engine_->hazard_checker()->hazards() : kNone;
}

uint64_t SimWorld::hazards_dropped() const {
  return engine_->hazard_checker() != nullptr ? engine_->hazard_checker()->dropped() : 0;
}

absl::Status SimWorld::Barrier() {
  if (collective_) {
    return absl::FailedPreconditionError(
        "SimWorld::Barrier: a per-rank collective is in progress; finish it first");
  }
  std::vector<int64_t> ranks(size());
  for (int64_t rank = 0; rank < size(); ++rank) ranks[rank] = rank;
  engine_->JoinHosts(ranks);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> SimWorld::Allgather(
    const std::vector<std::vector<uint8_t>>& per_rank) {
  if (static_cast<int64_t>(per_rank.size()) != size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SimWorld::Allgather: %d contributions for %d ranks", per_rank.size(), size()));
  }
  if (absl::Status status = Barrier(); !status.ok()) return status;
  return per_rank;
}

absl::Status SimWorld::RunUntilIdle() { return engine_->RunUntilIdle(); }

absl::Status SimWorld::SynchronizeAll() {
  absl::Status first;
  for (int64_t rank = 0; rank < size(); ++rank) first.Update(engine_->Synchronize(rank));
  return first;
}

LeakReport SimWorld::leak_report() const {
  LeakReport report;
  for (const auto& driver : drivers_) report.ranks.push_back(driver->LiveResources());
  for (const PhysicalAllocation* allocation : memory_->LiveAllocations()) {
    report.allocations.push_back(absl::StrFormat(
        "allocation %d: %s on GPU %d (%s), %d handle(s), %d mapping(s)", allocation->id,
        FormatBytes(allocation->bytes), allocation->owner_gpu, HandleKindName(allocation->kind),
        allocation->holders, allocation->mappings));
  }
  return report;
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> SimWorld::CommCollective(
    int64_t rank, CollectiveKind kind, absl::Span<const uint8_t> mine) {
  const char* name = kind == CollectiveKind::kBarrier ? "Barrier" : "Allgather";
  if (!collective_) {
    // Assigned rather than emplace()d: clang with libstdc++ decides whether Collective is
    // default-constructible while SimWorld is still incomplete (its member initializers are not
    // usable yet), caches "no", and then rejects the argument-less emplace().
    collective_ = Collective{};
    collective_->kind = kind;
    collective_->posted.assign(size(), false);
    collective_->collected.assign(size(), false);
    collective_->data.assign(size(), {});
  }
  Collective& round = *collective_;
  if (round.kind != kind) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s on rank %d: another collective is in progress; every rank must finish it first", name,
        rank));
  }
  if (round.collected[rank]) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s on rank %d: the rank starts a new collective before every rank has collected the "
        "result of the previous one",
        name, rank));
  }
  if (!round.posted[rank]) {
    round.posted[rank] = true;
    round.data[rank].assign(mine.begin(), mine.end());
    ++round.posted_count;
    engine_->set_in_collective(rank, true);
    if (round.posted_count == size()) {
      std::vector<int64_t> ranks(size());
      for (int64_t r = 0; r < size(); ++r) {
        ranks[r] = r;
        engine_->set_in_collective(r, false);
      }
      engine_->JoinHosts(ranks);
      round.complete = true;
    }
  } else if (kind == CollectiveKind::kAllgather &&
             !std::equal(mine.begin(), mine.end(), round.data[rank].begin(),
                         round.data[rank].end())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Allgather on rank %d: called again with different bytes before the round completed",
        rank));
  }
  if (!round.complete) {
    std::vector<int64_t> missing;
    for (int64_t r = 0; r < size(); ++r) {
      if (!round.posted[r]) missing.push_back(r);
    }
    return absl::UnavailableError(absl::StrFormat(
        "%s on rank %d waits for rank(s) %s: the simulator runs every rank on one thread, so "
        "call it on every rank, then again on the ranks that got this answer",
        name, rank, absl::StrJoin(missing, ", ")));
  }
  round.collected[rank] = true;
  ++round.collected_count;
  std::vector<std::vector<uint8_t>> result =
      kind == CollectiveKind::kAllgather ? round.data : std::vector<std::vector<uint8_t>>{};
  if (round.collected_count == size()) collective_.reset();
  return result;
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> SimComm::Allgather(
    absl::Span<const uint8_t> mine) {
  return world_->CommCollective(rank_, SimWorld::CollectiveKind::kAllgather, mine);
}

absl::Status SimComm::Barrier() {
  return world_->CommCollective(rank_, SimWorld::CollectiveKind::kBarrier, {}).status();
}

}  // namespace dwdp::sim
