#include "core/backend.h"

#include "core/pattern.h"

#include <unistd.h>

#include <utility>

namespace dwdp {

const char* HandleKindName(HandleKind kind) {
  switch (kind) {
    case HandleKind::kNone:
      return "none";
    case HandleKind::kPosixFd:
      return "posix_fd";
    case HandleKind::kFabric:
      return "fabric";
  }
  return "?";
}

SharedHandle::SharedHandle(SharedHandle&& other) noexcept { *this = std::move(other); }

SharedHandle& SharedHandle::operator=(SharedHandle&& other) noexcept {
  if (this != &other) {
    close_fd();
    kind_ = other.kind_;
    owner_rank_ = other.owner_rank_;
    bytes_ = other.bytes_;
    fd_ = std::exchange(other.fd_, -1);
    fabric_ = std::move(other.fabric_);
    sim_token_ = other.sim_token_;
  }
  return *this;
}

SharedHandle::~SharedHandle() { close_fd(); }

void SharedHandle::set_fd(int fd) {
  close_fd();
  fd_ = fd;
}

int SharedHandle::release_fd() { return std::exchange(fd_, -1); }

void SharedHandle::close_fd() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

uint8_t PatternByte(const PatternRef& pattern, uint64_t tensor_offset) {
  const uint64_t eb = pattern.expert_bytes == 0 ? 1 : pattern.expert_bytes;
  return PatternValue(pattern.layer, pattern.weight, tensor_offset / eb, tensor_offset % eb);
}

}  // namespace dwdp
