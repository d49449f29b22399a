#include "core/layout/copy_order.h"

#include <cstddef>

namespace dwdp {

std::vector<int64_t> PeerOrder(int64_t rank, int64_t group_size, PeerOrderKind kind) {
  std::vector<int64_t> peers;
  if (group_size < 2) return peers;
  peers.reserve(static_cast<size_t>(group_size - 1));
  for (int64_t step = 1; step < group_size; ++step) {
    switch (kind) {
      case PeerOrderKind::kRotate:
        peers.push_back((rank + step) % group_size);
        break;
      case PeerOrderKind::kAscending: {
        const int64_t peer = step - 1;
        peers.push_back(peer < rank ? peer : peer + 1);
        break;
      }
    }
  }
  return peers;
}

}  // namespace dwdp
