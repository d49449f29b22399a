#include "backends/cuda/fabric_exchange.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

namespace dwdp::cuda {
namespace {

// Per handle on the wire: owner rank, bytes, fabric length, fabric bytes.
constexpr uint32_t kFabricMagic = 0x42465744;  // "DWFB"

template <typename T>
void Append(std::vector<uint8_t>& out, T value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

template <typename T>
bool Read(const std::vector<uint8_t>& in, size_t& pos, T* value) {
  if (in.size() - pos < sizeof(T)) return false;
  std::memcpy(value, in.data() + pos, sizeof(T));
  pos += sizeof(T);
  return true;
}

absl::StatusOr<std::vector<SharedHandle>> Decode(const std::vector<uint8_t>& bytes,
                                                 int64_t from_rank) {
  const auto malformed = [&] {
    return absl::DataLossError(absl::StrFormat(
        "the fabric handles gathered from rank %d are malformed (a different dwdp build?)",
        from_rank));
  };
  size_t pos = 0;
  uint32_t magic = 0;
  uint64_t count = 0;
  if (!Read(bytes, pos, &magic) || magic != kFabricMagic || !Read(bytes, pos, &count)) {
    return malformed();
  }
  std::vector<SharedHandle> handles;
  for (uint64_t i = 0; i < count; ++i) {
    int64_t owner = 0;
    uint64_t size = 0;
    uint32_t length = 0;
    if (!Read(bytes, pos, &owner) || !Read(bytes, pos, &size) || !Read(bytes, pos, &length) ||
        bytes.size() - pos < length) {
      return malformed();
    }
    SharedHandle handle(HandleKind::kFabric, owner, size);
    handle.set_fabric(
        std::vector<uint8_t>(bytes.begin() + static_cast<std::ptrdiff_t>(pos),
                             bytes.begin() + static_cast<std::ptrdiff_t>(pos) + length));
    pos += length;
    handles.push_back(std::move(handle));
  }
  if (pos != bytes.size()) return malformed();
  return handles;
}

}  // namespace

absl::StatusOr<std::vector<std::vector<std::vector<SharedHandle>>>> FabricHandleExchange::Exchange(
    std::vector<std::vector<SharedHandle>> exported) {
  const int64_t rank = group_.rank();
  const int64_t size = group_.size();
  if (exported.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the fabric exchange hosts one rank per process, got handles of %d ranks",
                        exported.size()));
  }
  std::vector<SharedHandle>& mine = exported[0];
  std::vector<uint8_t> wire;
  Append(wire, kFabricMagic);
  Append(wire, static_cast<uint64_t>(mine.size()));
  for (size_t i = 0; i < mine.size(); ++i) {
    const SharedHandle& handle = mine[i];
    if (handle.kind() != HandleKind::kFabric || handle.fabric().empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("handle %d of rank %d is not an exported fabric handle (kind %s)", i,
                          rank, HandleKindName(handle.kind())));
    }
    Append(wire, handle.owner_rank());
    Append(wire, handle.bytes());
    Append(wire, static_cast<uint32_t>(handle.fabric().size()));
    wire.insert(wire.end(), handle.fabric().begin(), handle.fabric().end());
  }
  if (options_.exit_after_export_rank == rank) {
    std::fprintf(stderr, "dwdp: test hook: group rank %ld exits after exporting its handles\n",
                 static_cast<long>(rank));
    std::fflush(stderr);
    std::_Exit(options_.exit_after_export_code);
  }
  absl::StatusOr<std::vector<std::vector<uint8_t>>> gathered = group_.Allgather(wire);
  if (!gathered.ok()) {
    return absl::Status(gathered.status().code(),
                        absl::StrFormat("fabric handle exchange on rank %d: %s", rank,
                                        gathered.status().message()));
  }
  if (static_cast<int64_t>(gathered->size()) != size) {
    return absl::InternalError(
        absl::StrFormat("allgather returned %d entries for %d ranks", gathered->size(), size));
  }
  std::vector<std::vector<std::vector<SharedHandle>>> result(1);
  result[0].resize(static_cast<size_t>(size));
  for (int64_t r = 0; r < size; ++r) {
    if (r == rank) {
      result[0][static_cast<size_t>(r)] = std::move(mine);
      continue;
    }
    absl::StatusOr<std::vector<SharedHandle>> handles =
        Decode((*gathered)[static_cast<size_t>(r)], r);
    if (!handles.ok()) return handles.status();
    result[0][static_cast<size_t>(r)] = std::move(*handles);
  }
  return result;
}

absl::Status FabricHandleExchange::Barrier() {
  absl::Status status = group_.Barrier();
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrFormat("barrier after the fabric handle exchange on rank %d: %s",
                                        group_.rank(), status.message()));
  }
  return status;
}

}  // namespace dwdp::cuda
