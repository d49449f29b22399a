#include "core/util/bytes.h"

#include <cctype>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dwdp {

std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}

std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b) {
  uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

uint64_t AlignDown(uint64_t value, uint64_t alignment) {
  if (alignment == 0) return value;
  return value - value % alignment;
}

std::optional<uint64_t> AlignUp(uint64_t value, uint64_t alignment) {
  if (alignment == 0) return value;
  const uint64_t rem = value % alignment;
  if (rem == 0) return value;
  return CheckedAdd(value, alignment - rem);
}

bool IsPowerOfTwo(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  if (s.empty()) return absl::InvalidArgumentError("empty size");
  if (s.front() == '-') {
    return absl::InvalidArgumentError(absl::StrCat("size '", text, "' is negative"));
  }
  size_t i = 0;
  bool seen_digit = false;
  bool seen_dot = false;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) {
    if (s[i] == '.') {
      if (seen_dot) break;
      seen_dot = true;
    } else {
      seen_digit = true;
    }
    ++i;
  }
  if (!seen_digit) {
    return absl::InvalidArgumentError(
        absl::StrCat("size '", text, "' does not start with a number (e.g. 16MiB, 2 GiB, 4096)"));
  }
  const std::string number(s.substr(0, i));
  const std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(s.substr(i)));
  uint64_t multiplier = 0;
  if (unit.empty() || unit == "b") {
    multiplier = 1;
  } else if (unit == "kib" || unit == "k") {
    multiplier = kKiB;
  } else if (unit == "mib" || unit == "m") {
    multiplier = kMiB;
  } else if (unit == "gib" || unit == "g") {
    multiplier = kGiB;
  } else if (unit == "tib" || unit == "t") {
    multiplier = kGiB * 1024;
  } else if (unit == "kb") {
    multiplier = 1000;
  } else if (unit == "mb") {
    multiplier = 1000 * 1000;
  } else if (unit == "gb") {
    multiplier = 1000ull * 1000 * 1000;
  } else if (unit == "tb") {
    multiplier = 1000ull * 1000 * 1000 * 1000;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("size '", text, "' has an unknown unit '", unit,
                     "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"));
  }
  if (!seen_dot) {
    uint64_t value = 0;
    for (char c : number) {
      auto next = CheckedMul(value, 10);
      if (next) next = CheckedAdd(*next, static_cast<uint64_t>(c - '0'));
      if (!next)
        return absl::InvalidArgumentError(absl::StrCat("size '", text, "' overflows 64 bits"));
      value = *next;
    }
    auto total = CheckedMul(value, multiplier);
    if (!total)
      return absl::InvalidArgumentError(absl::StrCat("size '", text, "' overflows 64 bits"));
    return *total;
  }
  const long double value = std::strtold(number.c_str(), nullptr) * multiplier;
  if (!(value < static_cast<long double>(std::numeric_limits<uint64_t>::max()))) {
    return absl::InvalidArgumentError(absl::StrCat("size '", text, "' overflows 64 bits"));
  }
  const long double rounded = std::floor(value);
  if (rounded != value) {
    return absl::InvalidArgumentError(
        absl::StrCat("size '", text, "' is not a whole number of bytes"));
  }
  return static_cast<uint64_t>(rounded);
}

std::string FormatBytes(uint64_t bytes) {
  const auto fmt = [](double v, const char* unit) {
    std::string s = absl::StrFormat("%.3f", v);
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return absl::StrCat(s, " ", unit);
  };
  if (bytes >= kGiB) return fmt(static_cast<double>(bytes) / kGiB, "GiB");
  if (bytes >= kMiB) return fmt(static_cast<double>(bytes) / kMiB, "MiB");
  if (bytes >= kKiB) return fmt(static_cast<double>(bytes) / kKiB, "KiB");
  return absl::StrCat(bytes, " B");
}

std::string FormatBandwidth(double bytes_per_second) {
  if (bytes_per_second >= 1e12) return absl::StrFormat("%.2f TB/s", bytes_per_second / 1e12);
  if (bytes_per_second >= 1e9) return absl::StrFormat("%.1f GB/s", bytes_per_second / 1e9);
  return absl::StrFormat("%.1f MB/s", bytes_per_second / 1e6);
}

std::string FormatNanos(double ns) {
  if (ns >= 1e9) return absl::StrFormat("%.3f s", ns / 1e9);
  if (ns >= 1e6) return absl::StrFormat("%.3f ms", ns / 1e6);
  if (ns >= 1e3) return absl::StrFormat("%.1f us", ns / 1e3);
  return absl::StrFormat("%.0f ns", ns);
}

}  // namespace dwdp
