#include "core/backend.h"

#include "core/pattern.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dwdp {

std::string RankResources::ToString() const {
  if (empty()) return "";
  std::string out = absl::StrFormat("rank %d: %d handle(s), %d mapping(s), %d reservation(s)", rank,
                                    handles.size(), mappings.size(), reservations.size());
  for (const auto* list : {&handles, &mappings, &reservations}) {
    for (const std::string& line : *list) absl::StrAppend(&out, "\n  ", line);
  }
  return out;
}

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kCopy:
      return "copy";
    case OpKind::kEdgeCopy:
      return "edge copy";
    case OpKind::kFill:
      return "fill";
    case OpKind::kCompute:
      return "kernel";
    case OpKind::kWait:
      return "wait";
    case OpKind::kRecord:
      return "record";
  }
  return "?";
}

std::string FormatOpTag(const OpTag& tag) {
  std::string out;
  const auto add = [&out](absl::string_view name, int64_t value) {
    if (value < 0) return;
    absl::StrAppend(&out, out.empty() ? "" : " ", name, " ", value);
  };
  add("layer", tag.layer);
  add("weight", tag.weight);
  add("slot", tag.slot);
  add("peer", tag.peer);
  add("forward", tag.forward);
  if (!tag.label.empty()) absl::StrAppend(&out, out.empty() ? "'" : " '", tag.label, "'");
  return out;
}

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
  return PatternValue(pattern.layer, pattern.weight, tensor_offset / eb, tensor_offset % eb,
                      pattern.kind);
}

void FillPattern(const PatternRef& pattern, uint64_t tensor_offset, uint8_t* out, uint64_t bytes) {
  const uint64_t eb = pattern.expert_bytes == 0 ? 1 : pattern.expert_bytes;
  uint64_t done = 0;
  while (done < bytes) {
    const uint64_t offset = tensor_offset + done;
    const uint64_t expert = offset / eb;
    uint64_t in_expert = offset % eb;
    const uint64_t run = std::min(bytes - done, eb - in_expert);
    const uint64_t seed = PatternSeed(pattern.layer, pattern.weight, expert);
    uint8_t* dst = out + done;
    const uint8_t* const end = dst + run;
    // Unaligned head, whole words, tail.
    while (dst < end && in_expert % 8 != 0) {
      *dst++ = static_cast<uint8_t>(PatternWordOf(pattern.kind, seed, in_expert / 8) >>
                                    (8 * (in_expert % 8)));
      ++in_expert;
    }
    while (end - dst >= 8) {
      const uint64_t word = PatternWordOf(pattern.kind, seed, in_expert / 8);
      std::memcpy(dst, &word, 8);  // little-endian: byte k is bits 8k..8k+7
      dst += 8;
      in_expert += 8;
    }
    while (dst < end) {
      *dst++ = static_cast<uint8_t>(PatternWordOf(pattern.kind, seed, in_expert / 8) >>
                                    (8 * (in_expert % 8)));
      ++in_expert;
    }
    done += run;
  }
}

}  // namespace dwdp
