#include "core/fault/faulty_driver.h"

#include "absl/strings/str_format.h"

namespace dwdp {

absl::Status FaultyDriver::Next(const char* call, bool is_release) {
  ++calls_;
  call_log_.push_back(call);
  const bool fail = calls_ == fail_at_ ||
                    (is_release && fail_releases_from_ > 0 && calls_ >= fail_releases_from_);
  if (!fail) return absl::OkStatus();
  injected_ = true;
  return absl::InternalError(
      absl::StrFormat("%s (injected at driver call %d): %s", call, calls_, error_name_));
}

absl::StatusOr<Handle> FaultyDriver::Create(uint64_t bytes, HandleKind kind) {
  if (auto st = Next("create", false); !st.ok()) return st;
  return inner_.Create(bytes, kind);
}

absl::StatusOr<SharedHandle> FaultyDriver::Export(Handle handle) {
  if (auto st = Next("export", false); !st.ok()) return st;
  return inner_.Export(handle);
}

absl::StatusOr<Handle> FaultyDriver::Import(const SharedHandle& shared) {
  if (auto st = Next("import", false); !st.ok()) return st;
  return inner_.Import(shared);
}

absl::StatusOr<DevPtr> FaultyDriver::Reserve(uint64_t bytes, uint64_t alignment) {
  if (auto st = Next("reserve", false); !st.ok()) return st;
  return inner_.Reserve(bytes, alignment);
}

absl::Status FaultyDriver::Map(DevPtr va, uint64_t bytes, Handle handle, uint64_t offset) {
  if (auto st = Next("map", false); !st.ok()) return st;
  return inner_.Map(va, bytes, handle, offset);
}

absl::Status FaultyDriver::SetAccess(DevPtr va, uint64_t bytes) {
  if (auto st = Next("set_access", false); !st.ok()) return st;
  return inner_.SetAccess(va, bytes);
}

// A failing release still releases underneath, as a driver that reports an error after doing
// the work would; otherwise the leak check could not tell a lost resource from a noisy one.
absl::Status FaultyDriver::Unmap(DevPtr va, uint64_t bytes) {
  absl::Status injected = Next("unmap", true);
  absl::Status real = inner_.Unmap(va, bytes);
  return injected.ok() ? real : injected;
}

absl::Status FaultyDriver::Release(Handle handle) {
  absl::Status injected = Next("release", true);
  absl::Status real = inner_.Release(handle);
  return injected.ok() ? real : injected;
}

absl::Status FaultyDriver::Free(DevPtr va, uint64_t bytes) {
  absl::Status injected = Next("free", true);
  absl::Status real = inner_.Free(va, bytes);
  return injected.ok() ? real : injected;
}

}  // namespace dwdp
