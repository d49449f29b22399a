#pragma once

// Strict, position-aware reading of YAML values for the scenario loader. Private to
// core/config: every error is one sentence "FILE:LINE:COL: key 'a.b': what is wrong".
//
// yaml-cpp converts leniently (and keeps duplicate map keys), so values are read from their
// scalar text here, and maps are opened through StrictMap, which rejects unknown and
// duplicate keys before any value is used.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace dwdp::config_internal {

// Control characters written as escapes ("\n", "\x06"), so that text quoted from a file never
// breaks a message into lines.
std::string OneLine(absl::string_view text);

// "FILE:LINE:COL: MESSAGE" with 1-based line and column; "FILE: MESSAGE" without a mark. One
// line (OneLine) whatever the message quotes.
std::string AtPosition(absl::string_view file, const YAML::Mark& mark, absl::string_view message);

class StrictMap;

// One value in a YAML document together with what is needed to complain about it.
class Field {
 public:
  Field(std::string file, YAML::Node node, std::string path, YAML::Mark mark)
      : file_(std::move(file)), node_(std::move(node)), path_(std::move(path)), mark_(mark) {}

  const std::string& file() const { return file_; }
  const YAML::Node& node() const { return node_; }
  // Dotted key path, e.g. "model.weights[1].expert_bytes".
  const std::string& path() const { return path_; }
  const YAML::Mark& mark() const { return mark_; }

  bool IsNull() const { return node_.IsNull(); }
  bool IsScalar() const { return node_.IsScalar(); }
  bool IsMap() const { return node_.IsMap(); }
  bool IsSequence() const { return node_.IsSequence(); }

  // InvalidArgument "FILE:LINE:COL: key 'PATH': MESSAGE".
  absl::Status Error(absl::string_view message) const;

  // Whole numbers in [min, max]; "1e6" is accepted because it is exact, "3.5" and "1e30" are
  // not. `why`, when given, follows the range in the message.
  absl::Status ReadInt(int64_t min, int64_t max, int64_t* out, absl::string_view why = {}) const;
  // Byte counts: integers or unit strings ("16MiB", "2 GiB"; core/util/bytes.h).
  absl::Status ReadSize(uint64_t min, uint64_t max, uint64_t* out,
                        absl::string_view why = {}) const;
  // Finite numbers in [min, max] (or (min, max] when min_exclusive).
  absl::Status ReadDouble(double min, double max, double* out, bool min_exclusive = false) const;
  // A non-empty scalar.
  absl::Status ReadString(std::string* out) const;
  absl::Status ReadBool(bool* out) const;
  // One of `choices`; the message lists them.
  absl::Status ReadChoice(absl::Span<const absl::string_view> choices, std::string* out) const;
  absl::Status ReadSequence(std::vector<Field>* out) const;
  // A map with only `allowed_keys`, each at most once (see StrictMap::Open).
  absl::Status ReadMap(absl::Span<const absl::string_view> allowed_keys, StrictMap* out) const;

  // "a map", "a list", "nothing", "'text'": how a value that has the wrong type is described.
  std::string Describe() const;

 private:
  std::string file_;
  YAML::Node node_;
  std::string path_;
  YAML::Mark mark_;
};

// A map whose keys are known to be scalars, unique and allowed.
class StrictMap {
 public:
  StrictMap() : self_("", YAML::Node(), "", YAML::Mark::null_mark()) {}

  // Checks `field` is a map, then every key: a scalar, not seen before, in `allowed_keys`.
  static absl::Status Open(const Field& field, absl::Span<const absl::string_view> allowed_keys,
                           StrictMap* out);

  const Field& self() const { return self_; }
  bool Has(absl::string_view key) const { return Get(key).has_value(); }
  std::optional<Field> Get(absl::string_view key) const;
  // Keys in file order.
  std::vector<std::string> Keys() const;
  // "FILE:LINE:COL: key 'PATH.KEY': missing (REASON)" at the map itself.
  absl::Status Missing(absl::string_view key, absl::string_view reason) const;
  std::string PathOf(absl::string_view key) const;

 private:
  Field self_;
  std::vector<std::pair<std::string, Field>> entries_;
};

}  // namespace dwdp::config_internal
