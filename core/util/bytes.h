#pragma once

// Byte arithmetic with overflow checks. Every size in dwdp is a uint64_t; a scenario whose
// sizes would overflow is rejected with a message, never wrapped.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dwdp {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;

std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b);
std::optional<uint64_t> CheckedMul(uint64_t a, uint64_t b);

// `alignment` must be a power of two or any positive value; both work for every multiple.
uint64_t AlignDown(uint64_t value, uint64_t alignment);
// Empty when rounding up overflows.
std::optional<uint64_t> AlignUp(uint64_t value, uint64_t alignment);

bool IsPowerOfTwo(uint64_t value);

// A non-negative decimal number times `multiplier`, computed exactly on the decimal digits:
// "4096", "1.5", "16777216.0", "2.5e3", "1E6", ".5", "+7" (no whitespace). Binary floating
// point would round "4097.0000000000000001" to a whole number and "9007199254740993.0" to
// another one; this never does.
struct WholeDecimal {
  enum class Outcome {
    kWhole,       // `value` holds the number
    kNotWhole,    // well formed, but not a whole number
    kTooLarge,    // well formed and whole (or not), but 2^64 or more
    kNotDecimal,  // not of the form above (a sign '-', units, "inf", hex, ...)
  };
  Outcome outcome = Outcome::kNotDecimal;
  uint64_t value = 0;
};
WholeDecimal ParseWholeDecimal(absl::string_view text, uint64_t multiplier = 1);

// "16MiB", "2 GiB", "512KiB", "1.5GiB", "4096", "2MB" (decimal). Returns InvalidArgument with
// a sentence naming the problem on a malformed string, a negative value, a value that is not
// a whole number of bytes or an overflow. Exact for any number of digits.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// Human form: "16 MiB", "2.25 MiB", "1.50 GiB", "512 B".
std::string FormatBytes(uint64_t bytes);

// "398 GB/s" style (decimal, as vendors quote bandwidth).
std::string FormatBandwidth(double bytes_per_second);

// "4.37 ms", "812 us", "35 ns".
std::string FormatNanos(double nanoseconds);

}  // namespace dwdp
