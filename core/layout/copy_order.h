#pragma once

// The order in which a rank pulls from its peers (DWDP_SPEC §4). The pipeline's copy plan, the
// copy schedules `dwdp calibrate` times and the simulator's replay of them all take their order
// from here, so that what is measured is what runs.

#include <cstdint>
#include <vector>

namespace dwdp {

enum class PeerOrderKind {
  // rank + 1, rank + 2, ... (mod group size): at every step each rank reads a different peer
  // (a Latin square), so no GPU serves two pullers at once.
  kRotate,
  // 0, 1, ... in rank order: every rank starts on the same GPU.
  kAscending,
};

// Every rank of the group but `rank`, in the order `kind` gives; empty when the group has one
// rank. `rank` must lie in [0, group_size).
std::vector<int64_t> PeerOrder(int64_t rank, int64_t group_size, PeerOrderKind kind);

// Where peer `peer` comes in rank order among the peers of `rank` (0 .. group_size - 2): the
// slot its bytes land in when a rank keeps one destination region per peer.
inline int64_t PeerSlot(int64_t rank, int64_t peer) { return peer < rank ? peer : peer - 1; }

}  // namespace dwdp
