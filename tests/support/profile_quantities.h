#pragma once

// Every number of a hardware profile, for tests that check a profile survives a trip through a
// file unchanged. The list is written out here, not taken from the loader's field table, so a
// field the loader forgets to read or write shows up as a difference.

#include <boost/test/unit_test.hpp>
#include <vector>

#include "core/config/scenario.h"

namespace dwdp::testing {

inline std::vector<Quantity> AllQuantities(const HardwareProfile& h) {
  return {h.granularity,
          h.nvlink_bw,
          h.peer_copy_bw,
          h.copy_latency_ns,
          h.local_copy_bw,
          h.hbm_bw,
          h.hbm_bytes,
          h.flops_fp4,
          h.flops_fp8,
          h.flops_bf16,
          h.compute_efficiency,
          h.memory_efficiency,
          h.kernel_overhead_ns,
          h.compute_slowdown,
          h.concurrent_pull_efficiency,
          h.host_issue_ns,
          h.event_ns,
          h.map_ns,
          h.nvlink_domain,
          h.gpus_per_node,
          h.max_mappings,
          h.max_fabric_mappings,
          h.egress_bw,
          h.egress_fanout_efficiency,
          h.fabric_bw,
          h.copy_latency_on_link,
          h.copy_latency_loaded_ns,
          h.compute_read_bw,
          h.stream_queue_entries,
          h.fabric_share_spread};
}

// Every number equal, exactly, with the same provenance.
inline void ExpectSameQuantities(const HardwareProfile& expected, const HardwareProfile& actual) {
  const std::vector<Quantity> a = AllQuantities(expected), b = AllQuantities(actual);
  BOOST_REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    BOOST_TEST_CONTEXT("quantity " << i) {
      BOOST_TEST(a[i].value == b[i].value);  // exact, not approximately
      BOOST_TEST(ProvenanceName(a[i].source) == ProvenanceName(b[i].source));
    }
  }
}

}  // namespace dwdp::testing
