// The VMM driver rules of SIMULATOR.md §1, one case each, with the CUDA error names.

#define BOOST_TEST_MODULE sim_driver
#include <boost/test/unit_test.hpp>

#include "backends/sim/sim_world.h"
#include "tests/support/sim_fixtures.h"

namespace dwdp::testing {
namespace {

using sim::SimDriver;
using sim::SimOptions;
using sim::SimWorld;

constexpr uint64_t kG = 2 * kTestMiB;

bool FailsWith(const absl::Status& status, absl::StatusCode code, const std::string& cuda_name) {
  BOOST_TEST_MESSAGE(status.ToString());
  return status.code() == code && Contains(status, cuda_name);
}

BOOST_AUTO_TEST_CASE(granularity_comes_from_the_profile) {
  auto world = MakeWorld(RoundProfile(), 1);
  BOOST_TEST(world->driver(0).granularity() == 2 * kTestMiB);
  HardwareProfile profile = RoundProfile();
  profile.granularity = Q(4 * kTestMiB);
  auto coarse = MakeWorld(profile, 1);
  BOOST_TEST(coarse->driver(0).granularity() == 4 * kTestMiB);
  // Allocations follow it: 2 MiB is not a multiple of 4 MiB.
  BOOST_TEST(FailsWith(coarse->driver(0).Create(kG, HandleKind::kPosixFd).status(),
                       absl::StatusCode::kInvalidArgument, "CUDA_ERROR_INVALID_VALUE"));
}

BOOST_AUTO_TEST_CASE(create_needs_a_positive_multiple_of_the_granularity) {
  auto world = MakeWorld(RoundProfile(), 1);
  SimDriver& driver = world->driver(0);
  for (uint64_t bytes : {uint64_t{0}, kG / 2, kG + 4096, 3 * kG - 1}) {
    BOOST_TEST(FailsWith(driver.Create(bytes, HandleKind::kPosixFd).status(),
                         absl::StatusCode::kInvalidArgument, "CUDA_ERROR_INVALID_VALUE"));
  }
  BOOST_TEST(driver.Create(3 * kG, HandleKind::kPosixFd).ok());
  BOOST_TEST(driver.Create(kG, HandleKind::kNone).ok());
}

BOOST_AUTO_TEST_CASE(fabric_needs_support_and_imex_permission) {
  HardwareProfile profile = RoundProfile();
  profile.fabric_supported = true;  // the attribute says yes...
  profile.imex_permitted = false;   // ...but there is no IMEX channel (the lent H100s)
  auto no_imex = MakeWorld(profile, 1);
  BOOST_TEST(no_imex->driver(0).shareable_kind() == HandleKind::kPosixFd);
  BOOST_TEST(FailsWith(no_imex->driver(0).Create(kG, HandleKind::kFabric).status(),
                       absl::StatusCode::kPermissionDenied, "CUDA_ERROR_NOT_PERMITTED"));

  profile.fabric_supported = false;
  profile.imex_permitted = true;
  auto no_support = MakeWorld(profile, 1);
  BOOST_TEST(no_support->driver(0).shareable_kind() == HandleKind::kPosixFd);
  BOOST_TEST(FailsWith(no_support->driver(0).Create(kG, HandleKind::kFabric).status(),
                       absl::StatusCode::kPermissionDenied, "CUDA_ERROR_NOT_PERMITTED"));

  profile.fabric_supported = true;
  auto both = MakeWorld(profile, 1);
  BOOST_TEST(both->driver(0).shareable_kind() == HandleKind::kFabric);
  BOOST_TEST(both->driver(0).Create(kG, HandleKind::kFabric).ok());
}

BOOST_AUTO_TEST_CASE(export_and_import_refer_to_the_same_physical_allocation) {
  auto world = MakeWorld(RoundProfile(), 2);
  SimDriver& owner = world->driver(0);
  SimDriver& peer = world->driver(1);
  const Handle local = ValueOrDie(owner.Create(2 * kG, HandleKind::kPosixFd));
  SharedHandle shared = ValueOrDie(owner.Export(local));
  BOOST_TEST(shared.kind() == HandleKind::kPosixFd);
  BOOST_TEST(shared.owner_rank() == 0);
  BOOST_TEST(shared.bytes() == 2 * kG);
  BOOST_TEST(shared.sim_token() != 0u);

  const Handle imported = ValueOrDie(peer.Import(shared));
  // The import allocates nothing: the memory is rank 0's.
  BOOST_TEST(owner.live_device_bytes() == 2 * kG);
  BOOST_TEST(peer.live_device_bytes() == 0u);
  // The owner lets go first; the importer still holds the memory.
  DWDP_REQUIRE_OK(owner.Release(local));
  BOOST_TEST(owner.live_device_bytes() == 2 * kG);
  const DevPtr va = ValueOrDie(peer.Reserve(2 * kG, 0));
  DWDP_REQUIRE_OK(peer.Map(va, 2 * kG, imported, 0));
  DWDP_REQUIRE_OK(peer.Release(imported));
  BOOST_TEST(owner.live_device_bytes() == 2 * kG);  // still mapped on rank 1
  DWDP_REQUIRE_OK(peer.Unmap(va, 2 * kG));
  BOOST_TEST(owner.live_device_bytes() == 0u);
  // Once released everywhere the token is dead.
  BOOST_TEST(FailsWith(peer.Import(shared).status(), absl::StatusCode::kInvalidArgument,
                       "CUDA_ERROR_INVALID_VALUE"));
}

BOOST_AUTO_TEST_CASE(export_needs_a_shareable_allocation) {
  auto world = MakeWorld(RoundProfile(), 1);
  const Handle pool_page = ValueOrDie(world->driver(0).Create(kG, HandleKind::kNone));
  BOOST_TEST(FailsWith(world->driver(0).Export(pool_page).status(),
                       absl::StatusCode::kInvalidArgument, "CUDA_ERROR_INVALID_VALUE"));
  SharedHandle forged(HandleKind::kPosixFd, 0, kG);
  forged.set_sim_token(12345);
  BOOST_TEST(FailsWith(world->driver(0).Import(forged).status(), absl::StatusCode::kInvalidArgument,
                       "CUDA_ERROR_INVALID_VALUE"));
}

BOOST_AUTO_TEST_CASE(posix_fds_do_not_leave_their_node) {
  HardwareProfile profile = RoundProfile();
  profile.gpus_per_node = Q(2);
  auto world = MakeWorld(profile, 4);
  const Handle local = ValueOrDie(world->driver(0).Create(kG, HandleKind::kPosixFd));
  SharedHandle shared = ValueOrDie(world->driver(0).Export(local));
  BOOST_TEST(world->driver(1).Import(shared).ok());  // same node
  BOOST_TEST(FailsWith(world->driver(2).Import(shared).status(), absl::StatusCode::kInvalidArgument,
                       "CUDA_ERROR_INVALID_VALUE"));
}

BOOST_AUTO_TEST_CASE(reserve_needs_granular_size_and_alignment) {
  auto world = MakeWorld(RoundProfile(), 2);
  SimDriver& driver = world->driver(0);
  BOOST_TEST(FailsWith(driver.Reserve(0, 0).status(), absl::StatusCode::kInvalidArgument,
                       "CUDA_ERROR_INVALID_VALUE"));
  BOOST_TEST(FailsWith(driver.Reserve(kG + 1, 0).status(), absl::StatusCode::kInvalidArgument,
                       "CUDA_ERROR_INVALID_VALUE"));
  BOOST_TEST(FailsWith(driver.Reserve(kG, kG / 2).status(), absl::StatusCode::kInvalidArgument,
                       "CUDA_ERROR_INVALID_VALUE"));
  const DevPtr first = ValueOrDie(driver.Reserve(kG, 0));
  const DevPtr aligned = ValueOrDie(driver.Reserve(kG, 8 * kG));
  BOOST_TEST(aligned % (8 * kG) == 0u);
  BOOST_TEST(aligned >= first + kG);
  // Every rank has its own part of the address space, so a VA names its rank.
  const DevPtr other = ValueOrDie(world->driver(1).Reserve(kG, 0));
  BOOST_TEST((first >> SimDriver::kVaSpaceShift) == 1u);
  BOOST_TEST((other >> SimDriver::kVaSpaceShift) == 2u);
}

BOOST_AUTO_TEST_CASE(map_needs_one_reservation_granular_values_and_no_overlap) {
  auto world = MakeWorld(RoundProfile(), 1);
  SimDriver& driver = world->driver(0);
  const Handle small = ValueOrDie(driver.Create(kG, HandleKind::kPosixFd));
  const Handle large = ValueOrDie(driver.Create(2 * kG, HandleKind::kPosixFd));
  const DevPtr a = ValueOrDie(driver.Reserve(2 * kG, 0));
  const DevPtr b = ValueOrDie(driver.Reserve(2 * kG, 0));
  BOOST_TEST_REQUIRE(b == a + 2 * kG);  // adjacent reservations
  const auto invalid = [](const absl::Status& s) {
    return FailsWith(s, absl::StatusCode::kInvalidArgument, "CUDA_ERROR_INVALID_VALUE");
  };
  // Not inside any reservation.
  BOOST_TEST(invalid(driver.Map(a + 64 * kG, kG, small, 0)));
  // Straddles two reservations even though both are reserved.
  BOOST_TEST(invalid(driver.Map(a + kG, 2 * kG, large, 0)));
  // Address not a multiple of the granularity.
  BOOST_TEST(invalid(driver.Map(a + 4096, kG, small, 0)));
  // Size zero, unknown handle.
  BOOST_TEST(invalid(driver.Map(a, 0, small, 0)));
  BOOST_TEST(invalid(driver.Map(a, kG, Handle{999}, 0)));
  DWDP_REQUIRE_OK(driver.Map(a, kG, small, 0));
  // Already mapped.
  BOOST_TEST(invalid(driver.Map(a, 2 * kG, large, 0)));
  const Handle another = ValueOrDie(driver.Create(kG, HandleKind::kPosixFd));
  BOOST_TEST(invalid(driver.Map(a, kG, another, 0)));
  DWDP_REQUIRE_OK(driver.Map(a + kG, kG, another, 0));
  DWDP_REQUIRE_OK(driver.Map(b, 2 * kG, large, 0));
}

BOOST_AUTO_TEST_CASE(partial_map_is_not_supported) {
  auto world = MakeWorld(RoundProfile(), 2);
  SimDriver& driver = world->driver(0);
  const Handle handle = ValueOrDie(driver.Create(4 * kG, HandleKind::kPosixFd));
  const DevPtr va = ValueOrDie(driver.Reserve(4 * kG, 0));
  const auto unsupported = [](const absl::Status& s) {
    return FailsWith(s, absl::StatusCode::kUnimplemented, "CUDA_ERROR_NOT_SUPPORTED");
  };
  BOOST_TEST(unsupported(driver.Map(va, kG, handle, 0)));           // a prefix
  BOOST_TEST(unsupported(driver.Map(va, 2 * kG, handle, 2 * kG)));  // a suffix
  BOOST_TEST(unsupported(driver.Map(va, kG, handle, kG)));          // the middle
  // Beyond the allocation is not a partial map but an invalid one.
  BOOST_TEST(FailsWith(driver.Map(va, 4 * kG, handle, kG), absl::StatusCode::kInvalidArgument,
                       "CUDA_ERROR_INVALID_VALUE"));
  // The same rule holds for an imported handle.
  SharedHandle shared = ValueOrDie(driver.Export(handle));
  const Handle imported = ValueOrDie(world->driver(1).Import(shared));
  const DevPtr peer_va = ValueOrDie(world->driver(1).Reserve(4 * kG, 0));
  BOOST_TEST(unsupported(world->driver(1).Map(peer_va, 2 * kG, imported, 0)));
  DWDP_REQUIRE_OK(driver.Map(va, 4 * kG, handle, 0));
}

BOOST_AUTO_TEST_CASE(set_access_needs_a_fully_mapped_contiguous_range) {
  auto world = MakeWorld(RoundProfile(), 1);
  SimDriver& driver = world->driver(0);
  const DevPtr va = ValueOrDie(driver.Reserve(4 * kG, 0));
  const Handle first = ValueOrDie(driver.Create(kG, HandleKind::kNone));
  const Handle third = ValueOrDie(driver.Create(kG, HandleKind::kNone));
  DWDP_REQUIRE_OK(driver.Map(va, kG, first, 0));
  DWDP_REQUIRE_OK(driver.Map(va + 2 * kG, kG, third, 0));
  const auto invalid = [](const absl::Status& s) {
    return FailsWith(s, absl::StatusCode::kInvalidArgument, "CUDA_ERROR_INVALID_VALUE");
  };
  BOOST_TEST(invalid(driver.SetAccess(va, 3 * kG)));       // hole at va + kG
  BOOST_TEST(invalid(driver.SetAccess(va + kG, kG)));      // nothing mapped there
  BOOST_TEST(invalid(driver.SetAccess(va, kG + 4096)));    // not granular
  BOOST_TEST(invalid(driver.SetAccess(va + 3 * kG, kG)));  // reserved, unmapped
  const Handle second = ValueOrDie(driver.Create(kG, HandleKind::kNone));
  DWDP_REQUIRE_OK(driver.Map(va + kG, kG, second, 0));
  // One set-access over several mappings (a composite VA).
  DWDP_REQUIRE_OK(driver.SetAccess(va, 3 * kG));
}

BOOST_AUTO_TEST_CASE(access_before_set_access_is_an_illegal_address) {
  auto world = MakeWorld(RoundProfile(), 1);
  SimDriver& driver = world->driver(0);
  const Buffer source = MakeBuffer(driver, kG);
  const Handle handle = ValueOrDie(driver.Create(kG, HandleKind::kNone));
  const DevPtr no_access = ValueOrDie(driver.Reserve(kG, 0));
  DWDP_REQUIRE_OK(driver.Map(no_access, kG, handle, 0));
  auto& streams = world->streams(0);
  const StreamId stream = ValueOrDie(streams.CreateStream("copy"));
  DWDP_REQUIRE_OK(streams.Copy(no_access + 4096, source.va, 4096, stream, Tag(OpKind::kCopy, 7)));
  const absl::Status status = streams.Synchronize();
  BOOST_TEST(FailsWith(status, absl::StatusCode::kInternal, "CUDA_ERROR_ILLEGAL_ADDRESS"));
  BOOST_TEST(Contains(status, sim::FormatVa(no_access + 4096)));
  BOOST_TEST(Contains(status, "layer 7"));
  BOOST_TEST_REQUIRE(world->errors().size() == 1u);

  // A kernel reading an address nobody mapped faults too, naming the VA.
  auto other = MakeWorld(RoundProfile(), 1);
  const StreamId compute = ValueOrDie(other->streams(0).CreateStream("compute"));
  const DevPtr nowhere = other->driver(0).va_base() + 5 * kG;
  KernelLaunch kernel{"moe", {KernelRead{nowhere, 4096}}, 10};
  DWDP_REQUIRE_OK(other->streams(0).Launch(kernel, compute, Tag(OpKind::kCompute)));
  const absl::Status fault = other->streams(0).Synchronize();
  BOOST_TEST(FailsWith(fault, absl::StatusCode::kInternal, "CUDA_ERROR_ILLEGAL_ADDRESS"));
  BOOST_TEST(Contains(fault, sim::FormatVa(nowhere)));
  BOOST_TEST(Contains(fault, "'moe'"));
}

BOOST_AUTO_TEST_CASE(unmap_takes_exactly_a_range_that_map_created) {
  auto world = MakeWorld(RoundProfile(), 1);
  SimDriver& driver = world->driver(0);
  const Handle handle = ValueOrDie(driver.Create(2 * kG, HandleKind::kNone));
  const DevPtr va = ValueOrDie(driver.Reserve(4 * kG, 0));
  DWDP_REQUIRE_OK(driver.Map(va, 2 * kG, handle, 0));
  const auto invalid = [](const absl::Status& s) {
    return FailsWith(s, absl::StatusCode::kInvalidArgument, "CUDA_ERROR_INVALID_VALUE");
  };
  BOOST_TEST(invalid(driver.Unmap(va, kG)));           // a sub-range
  BOOST_TEST(invalid(driver.Unmap(va + kG, kG)));      // a sub-range
  BOOST_TEST(invalid(driver.Unmap(va, 4 * kG)));       // more than the mapping
  BOOST_TEST(invalid(driver.Unmap(va + 2 * kG, kG)));  // never mapped
  DWDP_REQUIRE_OK(driver.Unmap(va, 2 * kG));
  BOOST_TEST(invalid(driver.Unmap(va, 2 * kG)));  // twice
}

BOOST_AUTO_TEST_CASE(memory_lives_until_released_and_unmapped_and_free_needs_no_mappings) {
  auto world = MakeWorld(RoundProfile(), 1);
  SimDriver& driver = world->driver(0);
  const Handle handle = ValueOrDie(driver.Create(2 * kG, HandleKind::kNone));
  const DevPtr va = ValueOrDie(driver.Reserve(2 * kG, 0));
  DWDP_REQUIRE_OK(driver.Map(va, 2 * kG, handle, 0));
  const auto invalid = [](const absl::Status& s) {
    return FailsWith(s, absl::StatusCode::kInvalidArgument, "CUDA_ERROR_INVALID_VALUE");
  };
  BOOST_TEST(invalid(driver.Free(va, 2 * kG)));  // still mapped
  // Released while mapped: the memory stays until the unmap.
  DWDP_REQUIRE_OK(driver.Release(handle));
  BOOST_TEST(driver.live_device_bytes() == 2 * kG);
  BOOST_TEST(invalid(driver.Release(handle)));  // released twice
  DWDP_REQUIRE_OK(driver.Unmap(va, 2 * kG));
  BOOST_TEST(driver.live_device_bytes() == 0u);
  BOOST_TEST(invalid(driver.Free(va, kG)));  // not the reserved range
  DWDP_REQUIRE_OK(driver.Free(va, 2 * kG));
  BOOST_TEST(invalid(driver.Free(va, 2 * kG)));  // twice
}

BOOST_AUTO_TEST_CASE(mappings_per_process_are_limited) {
  HardwareProfile profile = RoundProfile();
  profile.max_mappings = Q(2);
  auto world = MakeWorld(profile, 1);
  SimDriver& driver = world->driver(0);
  const DevPtr va = ValueOrDie(driver.Reserve(3 * kG, 0));
  for (int i = 0; i < 2; ++i) {
    const Handle page = ValueOrDie(driver.Create(kG, HandleKind::kNone));
    DWDP_REQUIRE_OK(driver.Map(va + i * kG, kG, page, 0));
  }
  const Handle third = ValueOrDie(driver.Create(kG, HandleKind::kNone));
  BOOST_TEST(FailsWith(driver.Map(va + 2 * kG, kG, third, 0), absl::StatusCode::kResourceExhausted,
                       "CUDA_ERROR_OUT_OF_MEMORY"));
  DWDP_REQUIRE_OK(driver.Unmap(va, kG));
  DWDP_REQUIRE_OK(driver.Map(va + 2 * kG, kG, third, 0));
}

BOOST_AUTO_TEST_CASE(imported_fabric_mappings_per_gpu_are_limited) {
  HardwareProfile profile = RoundProfile();
  profile.fabric_supported = true;
  profile.imex_permitted = true;
  profile.max_fabric_mappings = Q(1);
  auto world = MakeWorld(profile, 2);
  SimDriver& owner = world->driver(0);
  SimDriver& peer = world->driver(1);
  const DevPtr va = ValueOrDie(peer.Reserve(4 * kG, 0));
  for (int i = 0; i < 2; ++i) {
    const Handle local = ValueOrDie(owner.Create(kG, HandleKind::kFabric));
    SharedHandle shared = ValueOrDie(owner.Export(local));
    const Handle imported = ValueOrDie(peer.Import(shared));
    const absl::Status mapped = peer.Map(va + i * kG, kG, imported, 0);
    if (i == 0) {
      DWDP_REQUIRE_OK(mapped);
    } else {
      BOOST_TEST(
          FailsWith(mapped, absl::StatusCode::kResourceExhausted, "CUDA_ERROR_OUT_OF_MEMORY"));
    }
  }
  // Local allocations use no fabric routing entry.
  const Handle own = ValueOrDie(peer.Create(kG, HandleKind::kFabric));
  DWDP_REQUIRE_OK(peer.Map(va + 2 * kG, kG, own, 0));
  const Handle page = ValueOrDie(peer.Create(kG, HandleKind::kNone));
  DWDP_REQUIRE_OK(peer.Map(va + 3 * kG, kG, page, 0));
}

BOOST_AUTO_TEST_CASE(device_memory_capacity_and_accounting) {
  HardwareProfile profile = RoundProfile();
  profile.hbm_bytes = Q(4 * kG);
  auto world = MakeWorld(profile, 2);
  SimDriver& driver = world->driver(0);
  const Handle a = ValueOrDie(driver.Create(3 * kG, HandleKind::kPosixFd));
  BOOST_TEST(FailsWith(driver.Create(2 * kG, HandleKind::kPosixFd).status(),
                       absl::StatusCode::kResourceExhausted, "CUDA_ERROR_OUT_OF_MEMORY"));
  // The capacity is per GPU.
  BOOST_TEST(world->driver(1).Create(4 * kG, HandleKind::kNone).ok());
  const Handle b = ValueOrDie(driver.Create(kG, HandleKind::kNone));
  BOOST_TEST(driver.live_device_bytes() == 4 * kG);
  DWDP_REQUIRE_OK(driver.Release(a));
  BOOST_TEST(driver.live_device_bytes() == kG);
  const Handle c = ValueOrDie(driver.Create(2 * kG, HandleKind::kNone));
  BOOST_TEST(driver.live_device_bytes() == 3 * kG);
  BOOST_TEST(driver.peak_device_bytes() == 4 * kG);
  DWDP_REQUIRE_OK(driver.Release(b));
  DWDP_REQUIRE_OK(driver.Release(c));
  BOOST_TEST(driver.live_device_bytes() == 0u);
  BOOST_TEST(driver.peak_device_bytes() == 4 * kG);
}

BOOST_AUTO_TEST_CASE(functional_mode_refuses_to_store_too_many_bytes) {
  SimOptions options;
  options.functional = true;
  options.functional_byte_limit = 4 * kG;
  auto world = MakeWorld(RoundProfile(), 1, options);
  BOOST_TEST(world->driver(0).Create(3 * kG, HandleKind::kNone).ok());
  const absl::Status refused = world->driver(0).Create(2 * kG, HandleKind::kNone).status();
  BOOST_TEST(refused.code() == absl::StatusCode::kResourceExhausted);
  BOOST_TEST(Contains(refused, "functional mode"));
}

BOOST_AUTO_TEST_CASE(leak_report_lists_what_is_alive_and_is_empty_after_teardown) {
  auto world = MakeWorld(RoundProfile(), 2);
  const Buffer local = MakeBuffer(world->driver(0), 2 * kG);
  const Buffer view = MapPeerView(*world, 0, local, 1);
  const sim::LeakReport alive = world->leak_report();
  BOOST_TEST_MESSAGE(alive.ToString());
  BOOST_TEST(!alive.empty());
  BOOST_TEST_REQUIRE(alive.ranks.size() == 2u);
  BOOST_TEST(alive.ranks[0].handles.size() == 1u);
  BOOST_TEST(alive.ranks[0].mappings.size() == 1u);
  BOOST_TEST(alive.ranks[0].reservations.size() == 1u);
  BOOST_TEST(alive.ranks[1].handles.size() == 1u);
  BOOST_TEST(alive.ranks[1].handles[0].find("imported") != std::string::npos);
  BOOST_TEST(alive.allocations.size() == 1u);  // one physical allocation, seen twice
  const std::string text = alive.ToString();
  BOOST_TEST(text.find(sim::FormatVa(view.va)) != std::string::npos);
  BOOST_TEST(text.find("rank 1") != std::string::npos);

  // Tear down the importer only: rank 0's resources are still listed.
  DestroyBuffer(world->driver(1), view);
  const sim::LeakReport half = world->leak_report();
  BOOST_TEST(half.ranks[1].empty());
  BOOST_TEST(!half.ranks[0].empty());

  DestroyBuffer(world->driver(0), local);
  const sim::LeakReport none = world->leak_report();
  BOOST_TEST(none.empty());
  BOOST_TEST(none.ToString() == "nothing alive");
}

BOOST_AUTO_TEST_CASE(profile_without_copy_bandwidth_is_refused) {
  HardwareProfile profile = RoundProfile();
  profile.peer_copy_bw = Q(0);
  profile.nvlink_bw = Q(0);
  BOOST_TEST(!SimWorld::Create(profile, 2).ok());
  profile.nvlink_bw = Q(900e9);  // falls back to the copy-engine share of the link
  auto world = MakeWorld(profile, 2);
  BOOST_TEST(world->params().peer_copy_bw == 0.88 * 900e9);
}

}  // namespace
}  // namespace dwdp::testing
