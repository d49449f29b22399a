#pragma once

// Helpers for the simulator tests: hand-written profiles and buffers set up through the driver.

#include <cstdint>
#include <ostream>
#include <string>

#include <boost/test/unit_test.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/sim/sim_world.h"
#include "core/config/scenario.h"

namespace dwdp {
// Boost.Test prints enums through this customization point (found by ADL).
inline std::ostream& boost_test_print_type(std::ostream& out, HandleKind kind) {
  return out << HandleKindName(kind);
}
}  // namespace dwdp

namespace dwdp::testing {

inline constexpr uint64_t kTestMiB = 1024 * 1024;

inline Quantity Q(double value) { return Quantity{value, Provenance::kAssumed}; }

// Round numbers so golden timings can be worked out by hand: 100 bytes/ns between GPUs,
// 400 bytes/ns within one, 1 us per copy, no other costs.
inline HardwareProfile RoundProfile() {
  HardwareProfile p;
  p.name = "round-numbers";
  p.granularity = Q(2 * kTestMiB);
  p.peer_copy_bw = Q(100e9);
  p.local_copy_bw = Q(400e9);
  p.copy_latency_ns = Q(1000);
  p.hbm_bw = Q(800e9);
  p.hbm_bytes = Q(0);
  p.concurrent_pull_efficiency = Q(1.0);
  return p;
}

// An H100 x4 NV18 host with the measured numbers of HARDWARE.md.
inline HardwareProfile H100x4Profile() {
  HardwareProfile p;
  p.name = "h100x4-measured";
  p.granularity = Q(2 * kTestMiB);
  p.nvlink_bw = Q(450e9);
  p.peer_copy_bw = Q(398e9);
  p.copy_latency_ns = Q(4000);
  p.local_copy_bw = Q(1484e9);
  p.hbm_bw = Q(3.35e12);
  p.hbm_bytes = Q(80e9);
  p.compute_slowdown = Q(0.1);
  p.concurrent_pull_efficiency = Q(0.5);
  p.host_issue_ns = Q(0);
  p.event_ns = Q(0);
  p.gpus_per_node = Q(8);
  return p;
}

inline std::unique_ptr<sim::SimWorld> MakeWorld(const HardwareProfile& profile, int64_t ranks,
                                                const sim::SimOptions& options = {}) {
  auto world = sim::SimWorld::Create(profile, ranks, options);
  BOOST_TEST_REQUIRE(world.ok(), world.status().ToString());
  return *std::move(world);
}

#define DWDP_REQUIRE_OK(expr)                                       \
  do {                                                              \
    const ::absl::Status dwdp_status_ = ::absl::Status(expr);       \
    BOOST_TEST_REQUIRE(dwdp_status_.ok(), dwdp_status_.ToString()); \
  } while (0)

template <typename T>
T ValueOrDie(absl::StatusOr<T> value) {
  BOOST_TEST_REQUIRE(value.ok(), value.status().ToString());
  return *std::move(value);
}

// One allocation mapped whole at a fresh reservation of the owning rank, with access set.
struct Buffer {
  Handle handle;
  DevPtr va = 0;
  uint64_t bytes = 0;
};

inline Buffer MakeBuffer(sim::SimDriver& driver, uint64_t bytes,
                         HandleKind kind = HandleKind::kPosixFd) {
  Buffer buffer;
  buffer.bytes = bytes;
  buffer.handle = ValueOrDie(driver.Create(bytes, kind));
  buffer.va = ValueOrDie(driver.Reserve(bytes, 0));
  DWDP_REQUIRE_OK(driver.Map(buffer.va, bytes, buffer.handle, 0));
  DWDP_REQUIRE_OK(driver.SetAccess(buffer.va, bytes));
  return buffer;
}

// `owner`'s buffer seen from `viewer`: export, import, map whole, set access.
inline Buffer MapPeerView(sim::SimWorld& world, int64_t owner, const Buffer& buffer,
                          int64_t viewer) {
  SharedHandle shared = ValueOrDie(world.driver(owner).Export(buffer.handle));
  sim::SimDriver& driver = world.driver(viewer);
  Buffer view;
  view.bytes = buffer.bytes;
  view.handle = ValueOrDie(driver.Import(shared));
  view.va = ValueOrDie(driver.Reserve(buffer.bytes, 0));
  DWDP_REQUIRE_OK(driver.Map(view.va, buffer.bytes, view.handle, 0));
  DWDP_REQUIRE_OK(driver.SetAccess(view.va, buffer.bytes));
  return view;
}

inline void DestroyBuffer(sim::SimDriver& driver, const Buffer& buffer) {
  DWDP_REQUIRE_OK(driver.Unmap(buffer.va, buffer.bytes));
  DWDP_REQUIRE_OK(driver.Free(buffer.va, buffer.bytes));
  DWDP_REQUIRE_OK(driver.Release(buffer.handle));
}

inline bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

inline OpTag Tag(OpKind kind, int64_t layer = -1, std::string label = "") {
  OpTag tag;
  tag.kind = kind;
  tag.layer = layer;
  tag.label = std::move(label);
  return tag;
}

}  // namespace dwdp::testing
