// ParseByteSize (core/util/bytes.h) on arbitrary text.
//
// Properties:
// * it never crashes, and every rejection is an InvalidArgument with a message;
// * an accepted size re-parses to itself from its plain integer text (with and without " B"),
//   and FormatBytes handles it;
// * exactness: the number part times the unit is computed here in exact decimal arithmetic. A
//   size is accepted exactly when that product is a whole number of bytes that fits 64 bits,
//   and then it is the value returned. Binary floating point cannot promise this for long
//   fractions or values near 2^64, which is why the oracle works on decimal digits.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/util/bytes.h"
#include "fuzz_check.h"

namespace dwdp {
namespace {

// The text as ParseByteSize splits it: a number of digits with at most one '.', then the unit.
struct SplitSize {
  std::string integer_digits;
  std::string fraction_digits;
  std::string unit_text;  // everything after the number, as written
};

std::optional<SplitSize> Split(absl::string_view text) {
  const absl::string_view s = absl::StripAsciiWhitespace(text);
  SplitSize out;
  size_t i = 0;
  bool seen_dot = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '.') {
      if (seen_dot) break;
      seen_dot = true;
    } else if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      (seen_dot ? out.fraction_digits : out.integer_digits).push_back(c);
    } else {
      break;
    }
  }
  if (out.integer_digits.empty() && out.fraction_digits.empty()) return std::nullopt;
  out.unit_text = std::string(s.substr(i));
  return out;
}

// Decimal digits (most significant first) times a 64-bit factor, exactly.
std::string MultiplyDecimal(const std::string& digits, uint64_t factor) {
  std::string out(digits.size(), '0');
  unsigned __int128 carry = 0;
  for (size_t i = digits.size(); i-- > 0;) {
    const unsigned __int128 value =
        static_cast<unsigned __int128>(digits[i] - '0') * factor + carry;
    out[i] = static_cast<char>('0' + static_cast<int>(value % 10));
    carry = value / 10;
  }
  while (carry > 0) {
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(carry % 10)));
    carry /= 10;
  }
  return out;
}

std::string StripLeadingZeros(const std::string& digits) {
  const size_t first = digits.find_first_not_of('0');
  return first == std::string::npos ? std::string("0") : digits.substr(first);
}

// The exact byte count of `split` with unit factor `unit`, or nullopt when it is not a whole
// number or does not fit 64 bits.
std::optional<uint64_t> ExactBytes(const SplitSize& split, uint64_t unit) {
  const std::string product = MultiplyDecimal(split.integer_digits + split.fraction_digits, unit);
  // The last fraction_digits.size() digits of the product are the fractional part.
  const size_t fraction = split.fraction_digits.size();
  std::string whole = product.substr(0, product.size() - fraction);
  const std::string rest = product.substr(product.size() - fraction);
  if (rest.find_first_not_of('0') != std::string::npos) return std::nullopt;
  whole = StripLeadingZeros(whole);
  const std::string max = absl::StrCat(UINT64_MAX);
  if (whole.size() > max.size() || (whole.size() == max.size() && whole > max)) {
    return std::nullopt;
  }
  uint64_t value = 0;
  for (char c : whole) value = value * 10 + static_cast<uint64_t>(c - '0');
  return value;
}

void CheckByteSize(absl::string_view text) {
  const absl::StatusOr<uint64_t> parsed = ParseByteSize(text);
  if (!parsed.ok()) {
    DWDP_FUZZ_CHECK(absl::IsInvalidArgument(parsed.status()),
                    absl::StrCat("a rejection is InvalidArgument: ", parsed.status().ToString()));
    DWDP_FUZZ_CHECK(!parsed.status().message().empty(), "a rejection says why");
  } else {
    const uint64_t bytes = *parsed;
    const absl::StatusOr<uint64_t> plain = ParseByteSize(absl::StrCat(bytes));
    DWDP_FUZZ_CHECK(plain.ok() && *plain == bytes,
                    absl::StrCat("'", bytes, "' does not re-parse to ", bytes));
    const absl::StatusOr<uint64_t> with_unit = ParseByteSize(absl::StrCat(bytes, " B"));
    DWDP_FUZZ_CHECK(with_unit.ok() && *with_unit == bytes,
                    absl::StrCat("'", bytes, " B' does not re-parse to ", bytes));
    DWDP_FUZZ_CHECK(!FormatBytes(bytes).empty(), "FormatBytes gives text");
  }

  // Exactness, for inputs whose unit is known: the factor of the unit is what "1<unit>" parses
  // to (the unit table itself is covered by the unit tests). A unit starting with '.' would be
  // read as part of the number there, so such text is left to the properties above.
  const absl::string_view stripped = absl::StripAsciiWhitespace(text);
  if (stripped.empty() || stripped.front() == '-') return;
  const std::optional<SplitSize> split = Split(text);
  if (!split || (!split->unit_text.empty() && split->unit_text.front() == '.')) return;
  const absl::StatusOr<uint64_t> unit = ParseByteSize(absl::StrCat("1", split->unit_text));
  if (!unit.ok()) {
    DWDP_FUZZ_CHECK(!parsed.ok(), absl::StrCat("'", text, "' was accepted with a unit that '1",
                                               split->unit_text, "' rejects"));
    return;
  }
  const std::optional<uint64_t> exact = ExactBytes(*split, *unit);
  if (exact) {
    DWDP_FUZZ_CHECK(parsed.ok(),
                    absl::StrCat("'", text, "' is exactly ", *exact,
                                 " bytes but was rejected: ", parsed.status().message()));
    DWDP_FUZZ_CHECK(*parsed == *exact,
                    absl::StrCat("'", text, "' is exactly ", *exact, " bytes, parsed ", *parsed));
  } else {
    DWDP_FUZZ_CHECK(!parsed.ok(), absl::StrCat("'", text,
                                               "' is not a whole number of bytes that fits 64 "
                                               "bits, but was accepted as ",
                                               *parsed));
  }
}

}  // namespace
}  // namespace dwdp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Sizes are short; long inputs only slow the search down.
  if (size > 256) return 0;
  dwdp::CheckByteSize(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
