#include "core/config/yaml_fields.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/util/bytes.h"

namespace dwdp::config_internal {
namespace {

// Edit distance, for "did you mean" on unknown keys; keys are short, so O(n·m) is nothing.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

// True when `abbreviation` can be read out of `word` in order ("src" in "source").
bool IsSubsequence(absl::string_view abbreviation, absl::string_view word) {
  size_t next = 0;
  for (char c : word) {
    if (next < abbreviation.size() && abbreviation[next] == c) ++next;
  }
  return next == abbreviation.size();
}

// The allowed key a typo most likely meant: a small edit distance, or an abbreviation or
// shortened form of the key ("heads" for "num_heads"). Empty when nothing is close.
std::string ClosestKey(absl::string_view key, absl::Span<const absl::string_view> allowed) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  const size_t typo_limit = std::max<size_t>(2, key.size() / 3);
  for (absl::string_view candidate : allowed) {
    const size_t distance = EditDistance(key, candidate);
    const bool close = distance <= typo_limit || (key.size() >= 3 && IsSubsequence(key, candidate));
    if (close && distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  return best;
}

// Offset of the first byte that does not belong to a well-formed UTF-8 sequence (RFC 3629: no
// overlong forms, no surrogates, nothing past U+10FFFF), or npos. yaml-cpp passes such bytes
// through from the file, and the commands write loaded names as JSON, which must be UTF-8.
size_t FirstInvalidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    unsigned char low = 0x80;  // bounds of the second byte, tighter after some lead bytes
    unsigned char high = 0xBF;
    if (lead < 0x80) {
      length = 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong
      if (lead == 0xED) high = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong
      if (lead == 0xF4) high = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    for (size_t k = 1; k < length; ++k) {
      const auto byte = static_cast<unsigned char>(text[i + k]);
      const unsigned char min = k == 1 ? low : 0x80;
      const unsigned char max = k == 1 ? high : 0xBF;
      if (byte < min || byte > max) return i;
    }
    i += length;
  }
  return absl::string_view::npos;
}

std::string Quote(absl::string_view text) {
  constexpr size_t kMaxShown = 40;
  if (text.size() > kMaxShown) return absl::StrCat("'", text.substr(0, kMaxShown), "…'");
  return absl::StrCat("'", text, "'");
}

std::string RangeText(absl::string_view lowest, absl::string_view highest, bool has_lowest,
                      bool has_highest, absl::string_view why) {
  std::string text;
  if (has_lowest && has_highest) {
    text = absl::StrCat("must be between ", lowest, " and ", highest);
  } else if (has_lowest) {
    text = absl::StrCat("must be at least ", lowest);
  } else {
    text = absl::StrCat("must be at most ", highest);
  }
  if (!why.empty()) absl::StrAppend(&text, " (", why, ")");
  return text;
}

// Doubles in messages: integers without a fraction, others in shortest form.
std::string NumberText(double value) {
  if (std::fabs(value) < 1e15 && value == std::floor(value)) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrCat(value);
}

}  // namespace

std::string OneLine(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7F) {
      out += absl::StrFormat("\\x%02X", byte);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string AtPosition(absl::string_view file, const YAML::Mark& mark, absl::string_view message) {
  // Messages quote the user's text and yaml-cpp's (which can hold the offending character):
  // escaping control characters keeps every message one line, as the commands print it.
  if (mark.is_null()) return OneLine(absl::StrCat(file, ": ", message));
  return OneLine(absl::StrCat(file, ":", mark.line + 1, ":", mark.column + 1, ": ", message));
}

absl::Status Field::Error(absl::string_view message) const {
  if (path_.empty()) return absl::InvalidArgumentError(AtPosition(file_, mark_, message));
  return absl::InvalidArgumentError(
      AtPosition(file_, mark_, absl::StrCat("key '", path_, "': ", message)));
}

std::string Field::Describe() const {
  if (node_.IsNull()) return "nothing";
  if (node_.IsMap()) return "a map";
  if (node_.IsSequence()) return "a list";
  return Quote(node_.Scalar());
}

absl::Status Field::ReadInt(int64_t min, int64_t max, int64_t* out, absl::string_view why) const {
  if (!IsScalar()) return Error(absl::StrCat("expected an integer, got ", Describe()));
  const std::string text(absl::StripAsciiWhitespace(node_.Scalar()));
  const std::string range =
      RangeText(absl::StrCat(min), absl::StrCat(max), min != std::numeric_limits<int64_t>::min(),
                max != std::numeric_limits<int64_t>::max(), why);
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    // Exponent and fraction forms are fine when exactly whole ("1e6", "64.0"); the value comes
    // from the decimal digits, since a double would round "4.0000000000000001" to 4.
    const bool negative = !text.empty() && text.front() == '-';
    const absl::string_view magnitude = absl::string_view(text).substr(negative ? 1 : 0);
    const WholeDecimal exact = negative && absl::StartsWith(magnitude, "+")
                                   ? WholeDecimal{}
                                   : ParseWholeDecimal(magnitude);
    switch (exact.outcome) {
      case WholeDecimal::Outcome::kWhole: {
        // int64_t holds magnitudes up to 2^63 - 1, and 2^63 when negative.
        constexpr uint64_t kTwoTo63 = uint64_t{1} << 63;
        if (exact.value > (negative ? kTwoTo63 : kTwoTo63 - 1)) {
          return Error(absl::StrCat(range, ", got ", text));
        }
        // Conversion to int64_t is modular (C++20), so -2^63 comes out right too.
        value = static_cast<int64_t>(negative ? 0 - exact.value : exact.value);
        break;
      }
      case WholeDecimal::Outcome::kNotWhole:
        return Error(absl::StrCat("expected a whole number, got ", Quote(text)));
      case WholeDecimal::Outcome::kTooLarge:
        return Error(absl::StrCat(range, ", got ", text));
      case WholeDecimal::Outcome::kNotDecimal: {
        // Other number forms absl reads (hexadecimal "0x40", "inf") keep their double reading.
        double as_double = 0;
        if (!absl::SimpleAtod(text, &as_double) || std::isnan(as_double)) {
          return Error(absl::StrCat("expected an integer, got ", Quote(text)));
        }
        if (std::isfinite(as_double) && as_double != std::floor(as_double)) {
          return Error(absl::StrCat("expected a whole number, got ", Quote(text)));
        }
        // 2^63 as a double: anything at or beyond it does not fit int64_t.
        constexpr double kTwoTo63 = 9223372036854775808.0;
        if (!std::isfinite(as_double) || as_double >= kTwoTo63 || as_double < -kTwoTo63) {
          return Error(absl::StrCat(range, ", got ", text));
        }
        value = static_cast<int64_t>(as_double);
        break;
      }
    }
  }
  if (value < min || value > max) return Error(absl::StrCat(range, ", got ", text));
  *out = value;
  return absl::OkStatus();
}

absl::Status Field::ReadSize(uint64_t min, uint64_t max, uint64_t* out,
                             absl::string_view why) const {
  if (!IsScalar()) {
    return Error(absl::StrCat("expected a size in bytes (an integer or a string like 16MiB), got ",
                              Describe()));
  }
  const std::string text(absl::StripAsciiWhitespace(node_.Scalar()));
  const std::string range = RangeText(absl::StrCat(min, " (", FormatBytes(min), ")"),
                                      absl::StrCat(max, " (", FormatBytes(max), ")"), true,
                                      max != std::numeric_limits<uint64_t>::max(), why);
  if (!text.empty() && text.front() == '-') {
    return Error(absl::StrCat("a size cannot be negative, got ", Quote(text)));
  }
  uint64_t value = 0;
  double as_double = 0;
  // Plain integers first; then fraction and exponent forms, exact on their decimal digits (a
  // double would round 4097.0000000000000001 to 4097); then other forms absl reads; then unit
  // strings.
  const WholeDecimal exact = ParseWholeDecimal(text);
  if (absl::SimpleAtoi(text, &value)) {
    // Plain integer.
  } else if (exact.outcome != WholeDecimal::Outcome::kNotDecimal) {
    if (exact.outcome == WholeDecimal::Outcome::kNotWhole) {
      return Error(absl::StrCat("expected a whole number of bytes, got ", Quote(text)));
    }
    if (exact.outcome == WholeDecimal::Outcome::kTooLarge) {
      return Error(absl::StrCat(range, ", got ", text));
    }
    value = exact.value;
  } else if (absl::SimpleAtod(text, &as_double) && !std::isnan(as_double)) {
    // Other number forms absl reads (hexadecimal "0x200000", "inf") keep their double reading.
    constexpr double kTwoTo64 = 18446744073709551616.0;
    if (!std::isfinite(as_double) || as_double >= kTwoTo64) {
      return Error(absl::StrCat(range, ", got ", text));
    }
    if (as_double != std::floor(as_double)) {
      return Error(absl::StrCat("expected a whole number of bytes, got ", Quote(text)));
    }
    value = static_cast<uint64_t>(as_double);
  } else {
    absl::StatusOr<uint64_t> parsed = ParseByteSize(text);
    if (!parsed.ok()) return Error(parsed.status().message());
    value = *parsed;
  }
  if (value < min || value > max) return Error(absl::StrCat(range, ", got ", text));
  *out = value;
  return absl::OkStatus();
}

absl::Status Field::ReadDouble(double min, double max, double* out, bool min_exclusive) const {
  if (!IsScalar()) return Error(absl::StrCat("expected a number, got ", Describe()));
  const std::string text(absl::StripAsciiWhitespace(node_.Scalar()));
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || std::isnan(value)) {
    return Error(absl::StrCat("expected a number, got ", Quote(text)));
  }
  const bool below = min_exclusive ? !(value > min) : !(value >= min);
  if (!std::isfinite(value) || below || value > max) {
    const std::string lowest = min_exclusive ? absl::StrCat("greater than ", NumberText(min))
                                             : absl::StrCat("between ", NumberText(min), " and");
    if (min_exclusive) {
      return Error(
          absl::StrCat("must be ", lowest, " and at most ", NumberText(max), ", got ", text));
    }
    return Error(absl::StrCat("must be ", lowest, " ", NumberText(max), ", got ", text));
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status Field::ReadString(std::string* out) const {
  if (!IsScalar()) return Error(absl::StrCat("expected a string, got ", Describe()));
  if (absl::StripAsciiWhitespace(node_.Scalar()).empty()) {
    return Error("expected a non-empty string");
  }
  if (const size_t bad = FirstInvalidUtf8(node_.Scalar()); bad != absl::string_view::npos) {
    return Error(absl::StrFormat("expected UTF-8 text, got byte 0x%02X at offset %d of the value",
                                 static_cast<unsigned char>(node_.Scalar()[bad]), bad));
  }
  *out = node_.Scalar();
  return absl::OkStatus();
}

absl::Status Field::ReadBool(bool* out) const {
  bool value = false;
  if (!IsScalar() || !YAML::convert<bool>::decode(node_, value)) {
    return Error(absl::StrCat("expected true or false, got ", Describe()));
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status Field::ReadChoice(absl::Span<const absl::string_view> choices,
                               std::string* out) const {
  std::string text;
  absl::Status status = ReadString(&text);
  if (status.ok() && std::find(choices.begin(), choices.end(), text) == choices.end()) {
    status =
        Error(absl::StrCat("must be one of ", absl::StrJoin(choices, ", "), "; got ", Quote(text)));
  }
  if (!status.ok()) return status;
  *out = text;
  return absl::OkStatus();
}

absl::Status Field::ReadSequence(std::vector<Field>* out) const {
  if (!IsSequence()) return Error(absl::StrCat("expected a list, got ", Describe()));
  std::vector<Field> items;
  for (size_t i = 0; i < node_.size(); ++i) {
    const YAML::Node item = node_[i];
    const YAML::Mark mark = item.IsNull() || item.Mark().is_null() ? mark_ : item.Mark();
    items.emplace_back(file_, item, absl::StrCat(path_, "[", i, "]"), mark);
  }
  *out = std::move(items);
  return absl::OkStatus();
}

absl::Status Field::ReadMap(absl::Span<const absl::string_view> allowed_keys,
                            StrictMap* out) const {
  return StrictMap::Open(*this, allowed_keys, out);
}

std::string StrictMap::PathOf(absl::string_view key) const {
  if (self_.path().empty()) return std::string(key);
  return absl::StrCat(self_.path(), ".", key);
}

absl::Status StrictMap::Open(const Field& field, absl::Span<const absl::string_view> allowed_keys,
                             StrictMap* out) {
  if (!field.IsMap()) return field.Error(absl::StrCat("expected a map, got ", field.Describe()));
  StrictMap map;
  map.self_ = field;
  // Entries are copied out: the iterator hands out a proxy whose members must not be bound by
  // reference.
  for (const auto& entry : field.node()) {
    const YAML::Node key = entry.first;
    const YAML::Node value = entry.second;
    const YAML::Mark key_mark = key.Mark().is_null() ? field.mark() : key.Mark();
    if (!key.IsScalar()) {
      return absl::InvalidArgumentError(AtPosition(
          field.file(), key_mark,
          absl::StrCat(field.path().empty() ? "" : absl::StrCat("key '", field.path(), "': "),
                       "map keys must be plain names")));
    }
    const std::string& name = key.Scalar();
    const std::string path = map.PathOf(name);
    const auto key_error = [&](absl::string_view message) {
      return absl::InvalidArgumentError(
          AtPosition(field.file(), key_mark, absl::StrCat("key '", path, "': ", message)));
    };
    for (const auto& [seen_name, seen_field] : map.entries_) {
      if (seen_name == name) {
        // yaml-cpp keeps both entries and lookups return the first: refuse rather than guess.
        return key_error(
            absl::StrCat("duplicate key (first given on line ", seen_field.mark().line + 1, ")"));
      }
    }
    if (std::find(allowed_keys.begin(), allowed_keys.end(), name) == allowed_keys.end()) {
      const std::string closest = ClosestKey(name, allowed_keys);
      const std::string hint =
          closest.empty() ? "" : absl::StrCat("; did you mean '", closest, "'?");
      return key_error(absl::StrCat("unknown key", hint,
                                    " (known keys here: ", absl::StrJoin(allowed_keys, ", "), ")"));
    }
    // A key without a value gets the mark of whatever follows it; point at the key instead.
    const YAML::Mark value_mark =
        value.IsNull() || value.Mark().is_null() ? key_mark : value.Mark();
    map.entries_.emplace_back(name, Field(field.file(), value, path, value_mark));
  }
  *out = std::move(map);
  return absl::OkStatus();
}

std::optional<Field> StrictMap::Get(absl::string_view key) const {
  for (const auto& [name, field] : entries_) {
    if (name == key) return field;
  }
  return std::nullopt;
}

std::vector<std::string> StrictMap::Keys() const {
  std::vector<std::string> keys;
  for (const auto& entry : entries_) keys.push_back(entry.first);
  return keys;
}

absl::Status StrictMap::Missing(absl::string_view key, absl::string_view reason) const {
  std::string message = absl::StrCat("key '", PathOf(key), "': missing");
  if (!reason.empty()) absl::StrAppend(&message, " (", reason, ")");
  return absl::InvalidArgumentError(AtPosition(self_.file(), self_.mark(), message));
}

}  // namespace dwdp::config_internal
