#include "core/util/bytes.h"

#include <algorithm>
#include <cctype>

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

WholeDecimal ParseWholeDecimal(absl::string_view text, uint64_t multiplier) {
  using Outcome = WholeDecimal::Outcome;
  WholeDecimal out;
  // Syntax: [+] digits [. digits] [(e|E) [+|-] digits], at least one mantissa digit.
  size_t i = 0;
  if (i < text.size() && text[i] == '+') ++i;
  std::string digits;  // the mantissa's digits, the decimal point removed
  int64_t scale = 0;   // value = digits × 10^scale
  bool seen_digit = false;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    digits.push_back(text[i]);
    seen_digit = true;
  }
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      digits.push_back(text[i]);
      --scale;
      seen_digit = true;
    }
  }
  if (!seen_digit) return out;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
    if (i == text.size()) return out;
    // Saturating far beyond any text's length keeps the answer exact and the arithmetic safe.
    int64_t exponent = 0;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      exponent = std::min<int64_t>(exponent * 10 + (text[i] - '0'), int64_t{1} << 40);
    }
    scale += negative ? -exponent : exponent;
  }
  if (i != text.size()) return out;

  // Drop leading zeros (they change nothing) and trailing zeros (into the scale).
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos || multiplier == 0) {
    out.outcome = Outcome::kWhole;
    return out;
  }
  digits.erase(0, first);
  while (digits.back() == '0') {
    digits.pop_back();
    ++scale;
  }
  // A non-zero value of 10^20 or more does not fit 64 bits, whatever the multiplier.
  if (scale + static_cast<int64_t>(digits.size()) > 20) {
    out.outcome = Outcome::kTooLarge;
    return out;
  }
  // digits × multiplier, exactly, as decimal digits (a carry stays below 10 × multiplier).
  std::string product(digits.size(), '0');
  unsigned __int128 carry = 0;
  for (size_t k = digits.size(); k-- > 0;) {
    const unsigned __int128 step =
        static_cast<unsigned __int128>(digits[k] - '0') * multiplier + carry;
    product[k] = static_cast<char>('0' + static_cast<int>(step % 10));
    carry = step / 10;
  }
  for (; carry > 0; carry /= 10) {
    product.insert(product.begin(), static_cast<char>('0' + static_cast<int>(carry % 10)));
  }
  if (scale < 0) {
    // The last -scale digits are the fraction: all zero for a whole number.
    const size_t fraction = static_cast<size_t>(-scale);
    if (fraction > product.size() ||
        product.find_first_not_of('0', product.size() - fraction) != std::string::npos) {
      out.outcome = Outcome::kNotWhole;
      return out;
    }
    product.erase(product.size() - fraction);
  } else {
    product.append(static_cast<size_t>(scale), '0');
  }
  uint64_t value = 0;
  for (char c : product) {
    std::optional<uint64_t> next = CheckedMul(value, 10);
    if (next) next = CheckedAdd(*next, static_cast<uint64_t>(c - '0'));
    if (!next) {
      out.outcome = Outcome::kTooLarge;
      return out;
    }
    value = *next;
  }
  out.outcome = Outcome::kWhole;
  out.value = value;
  return out;
}

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
  const WholeDecimal exact = ParseWholeDecimal(number, multiplier);
  switch (exact.outcome) {
    case WholeDecimal::Outcome::kWhole:
      return exact.value;
    case WholeDecimal::Outcome::kNotWhole:
      return absl::InvalidArgumentError(
          absl::StrCat("size '", text, "' is not a whole number of bytes"));
    case WholeDecimal::Outcome::kTooLarge:
      return absl::InvalidArgumentError(absl::StrCat("size '", text, "' overflows 64 bits"));
    case WholeDecimal::Outcome::kNotDecimal:
      break;
  }
  // Unreachable: `number` is digits with at most one '.' and at least one digit.
  return absl::InvalidArgumentError(
      absl::StrCat("size '", text, "' does not start with a number (e.g. 16MiB, 2 GiB, 4096)"));
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
