#include "core/config/loader.h"

#include "core/config/moe_weights.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/config/model_math.h"
#include "core/config/yaml_fields.h"
#include "core/util/bytes.h"

namespace dwdp {
namespace {

using config_internal::AtPosition;
using config_internal::Field;
using config_internal::StrictMap;

#define DWDP_LOADER_RETURN_IF_ERROR(expr) \
  do {                                    \
    absl::Status status_ = (expr);        \
    if (!status_.ok()) return status_;    \
  } while (false)

// Limits on values no scenario can use. They keep every later computation (partition,
// layouts, byte offsets) far from overflow, so the core can use plain arithmetic on loaded
// values; partition-level validity (size_positive, gap, coverage, …) is left to validation.
constexpr int64_t kMaxRanks = 65536;
constexpr int64_t kMaxExperts = 1000000;
constexpr int64_t kMaxLayers = 65536;
constexpr int64_t kMaxDimension = int64_t{1} << 20;
constexpr int64_t kMaxTokens = int64_t{1} << 30;
constexpr uint64_t kMaxExpertBytes = uint64_t{1} << 40;
// Every byte count of a layout (N·eb, rounded up to pages, summed over weights and layers)
// stays below 2^62, so adding alignment padding can never wrap.
constexpr uint64_t kMaxTotalBytes = uint64_t{1} << 62;
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 20;
// yaml-cpp parses flow collections recursively; a hostile "[[[[…" must not exhaust the stack.
constexpr int kMaxFlowNesting = 64;

// Used when a scenario has no workload section (or leaves a field out).
constexpr int64_t kDefaultTokensPerRank = 8192;

constexpr absl::string_view kScenarioKeys[] = {"name", "model", "dwdp", "hardware", "workload"};
constexpr absl::string_view kModelKeys[] = {"preset",
                                            "display_name",
                                            "num_experts",
                                            "moe_layers",
                                            "num_layers",
                                            "hidden_size",
                                            "moe_intermediate_size",
                                            "dense_intermediate_size",
                                            "top_k",
                                            "num_shared_experts",
                                            "vocab_size",
                                            "attention",
                                            "expert_dtype",
                                            "dense_dtype",
                                            "weights",
                                            "non_moe_bytes",
                                            "kv_bytes_per_token"};
constexpr absl::string_view kAttentionKeys[] = {
    "kind",         "num_heads",        "num_kv_heads",     "head_dim",  "q_lora_rank",
    "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"};
constexpr absl::string_view kWeightKeys[] = {"name", "expert_bytes", "dtype", "shape"};
constexpr absl::string_view kDwdpKeys[] = {"dwdp_size",
                                           "num_groups",
                                           "num_experts_per_worker",
                                           "num_prefetch_experts",
                                           "num_buffers",
                                           "pool_page_bytes",
                                           "contention",
                                           "loaded_chunk",
                                           "owner"};
constexpr absl::string_view kContentionKeys[] = {"mode", "slice_bytes"};
constexpr absl::string_view kWorkloadKeys[] = {"tokens_per_rank", "sequence_length",  "forwards",
                                               "tokens_cv",       "layer_compute_ns", "isl",
                                               "max_num_tokens",  "compute",          "seed"};
constexpr absl::string_view kIslKeys[] = {"distribution", "length", "min", "max",
                                          "mean",         "cv",     "path"};
constexpr absl::string_view kIslDistributions[] = {"fixed", "uniform", "lognormal", "file"};
constexpr absl::string_view kQuantityKeys[] = {"value", "source"};
constexpr absl::string_view kSources[] = {"spec", "measured", "assumed"};
constexpr absl::string_view kDTypes[] = {"fp4", "fp8", "bf16"};
constexpr absl::string_view kContentionModes[] = {"rotate", "ascending", "round_robin",
                                                  "staggered"};
constexpr absl::string_view kOwnerPolicies[] = {"lowest", "balanced"};

// ---------------------------------------------------------------------------------------
// Hardware profile fields: one table drives parsing, "missing field" checks and writing.

enum class QuantityKind { kNumber, kBytes, kCount };

struct HardwareField {
  absl::string_view key;
  Quantity HardwareProfile::*member;
  QuantityKind kind;
  double min;
  double max;
  bool min_exclusive;  // (min, max] instead of [min, max]
  bool power_of_two;
};

// Terms of the contention model that came after the first profiles were written: a map without
// 'preset' may leave them out and gets the HardwareProfile defaults (no egress or fabric limit
// beyond one pair's rate, the whole per-copy fixed cost on the path), i.e. the older model.
constexpr absl::string_view kOptionalHardwareNumbers[] = {"copy_latency_on_link",
                                                          "copy_latency_loaded_ns",
                                                          "egress_bw",
                                                          "fabric_bw",
                                                          "compute_read_bw",
                                                          "stream_queue_entries",
                                                          "fabric_share_spread",
                                                          "egress_fanout_efficiency"};

constexpr double kMaxBandwidth = 1e15;  // bytes/s
constexpr double kMaxFlops = 1e18;
constexpr double kMaxNanos = 1e12;

constexpr HardwareField kHardwareFields[] = {
    {"granularity", &HardwareProfile::granularity, QuantityKind::kBytes, 4096, 1 << 30, false,
     true},
    {"nvlink_bw", &HardwareProfile::nvlink_bw, QuantityKind::kNumber, 0, kMaxBandwidth, true,
     false},
    {"peer_copy_bw", &HardwareProfile::peer_copy_bw, QuantityKind::kNumber, 0, kMaxBandwidth, true,
     false},
    {"copy_latency_ns", &HardwareProfile::copy_latency_ns, QuantityKind::kNumber, 0, kMaxNanos,
     false, false},
    {"copy_latency_on_link", &HardwareProfile::copy_latency_on_link, QuantityKind::kNumber, 0, 1,
     false, false},
    {"copy_latency_loaded_ns", &HardwareProfile::copy_latency_loaded_ns, QuantityKind::kNumber, 0,
     kMaxNanos, false, false},
    {"local_copy_bw", &HardwareProfile::local_copy_bw, QuantityKind::kNumber, 0, kMaxBandwidth,
     true, false},
    {"hbm_bw", &HardwareProfile::hbm_bw, QuantityKind::kNumber, 0, kMaxBandwidth, true, false},
    {"hbm_bytes", &HardwareProfile::hbm_bytes, QuantityKind::kBytes, 1 << 20,
     static_cast<double>(uint64_t{1} << 50), false, false},
    {"flops_fp4", &HardwareProfile::flops_fp4, QuantityKind::kNumber, 0, kMaxFlops, true, false},
    {"flops_fp8", &HardwareProfile::flops_fp8, QuantityKind::kNumber, 0, kMaxFlops, true, false},
    {"flops_bf16", &HardwareProfile::flops_bf16, QuantityKind::kNumber, 0, kMaxFlops, true, false},
    {"compute_efficiency", &HardwareProfile::compute_efficiency, QuantityKind::kNumber, 0, 1, true,
     false},
    {"memory_efficiency", &HardwareProfile::memory_efficiency, QuantityKind::kNumber, 0, 1, true,
     false},
    {"kernel_overhead_ns", &HardwareProfile::kernel_overhead_ns, QuantityKind::kNumber, 0,
     kMaxNanos, false, false},
    {"compute_slowdown", &HardwareProfile::compute_slowdown, QuantityKind::kNumber, 0, 10, false,
     false},
    {"concurrent_pull_efficiency", &HardwareProfile::concurrent_pull_efficiency,
     QuantityKind::kNumber, 0, 1, true, false},
    {"egress_bw", &HardwareProfile::egress_bw, QuantityKind::kNumber, 0, kMaxBandwidth, false,
     false},
    {"egress_fanout_efficiency", &HardwareProfile::egress_fanout_efficiency, QuantityKind::kNumber,
     0, 1, true, false},
    {"fabric_bw", &HardwareProfile::fabric_bw, QuantityKind::kNumber, 0, kMaxBandwidth, false,
     false},
    {"fabric_share_spread", &HardwareProfile::fabric_share_spread, QuantityKind::kNumber, 0, 2,
     false, false},
    {"compute_read_bw", &HardwareProfile::compute_read_bw, QuantityKind::kNumber, 0, kMaxBandwidth,
     false, false},
    {"host_issue_ns", &HardwareProfile::host_issue_ns, QuantityKind::kNumber, 0, kMaxNanos, false,
     false},
    {"stream_queue_entries", &HardwareProfile::stream_queue_entries, QuantityKind::kCount, 0, 1e7,
     false, false},
    {"event_ns", &HardwareProfile::event_ns, QuantityKind::kNumber, 0, kMaxNanos, false, false},
    {"map_ns", &HardwareProfile::map_ns, QuantityKind::kNumber, 0, kMaxNanos, false, false},
    {"nvlink_domain", &HardwareProfile::nvlink_domain, QuantityKind::kCount, 1, kMaxRanks, false,
     false},
    {"gpus_per_node", &HardwareProfile::gpus_per_node, QuantityKind::kCount, 1, 1024, false, false},
    {"max_mappings", &HardwareProfile::max_mappings, QuantityKind::kCount, 1, 1e9, false, false},
    {"max_fabric_mappings", &HardwareProfile::max_fabric_mappings, QuantityKind::kCount, 1, 1e9,
     false, false},
};

constexpr absl::string_view kHardwareTextKeys[] = {
    "preset",           "name",           "gpu_name",   "measured_on",
    "fabric_supported", "imex_permitted", "moe_compute"};

constexpr absl::string_view kMoeComputeKeys[] = {"hidden",   "intermediate", "experts", "top_k",
                                                 "dtype",    "source",       "kernel",  "tokens",
                                                 "alone_ns", "under_copy_ns"};

std::vector<absl::string_view> HardwareKeys() {
  std::vector<absl::string_view> keys(std::begin(kHardwareTextKeys), std::end(kHardwareTextKeys));
  for (const HardwareField& field : kHardwareFields) keys.push_back(field.key);
  return keys;
}

Provenance ProvenanceFromName(absl::string_view name) {
  if (name == "spec") return Provenance::kSpec;
  if (name == "measured") return Provenance::kMeasured;
  return Provenance::kAssumed;
}

// A plain number is `assumed`: a user typing a number has not said where it comes from.
absl::Status ReadQuantity(const Field& field, const HardwareField& rule, Quantity* out) {
  Field value_field = field;
  Provenance source = Provenance::kAssumed;
  if (field.IsMap()) {
    StrictMap map;
    DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(kQuantityKeys, &map));
    std::optional<Field> value = map.Get("value");
    if (!value) return map.Missing("value", "a number with provenance is {value: X, source: S}");
    value_field = *value;
    if (std::optional<Field> source_field = map.Get("source")) {
      std::string name;
      DWDP_LOADER_RETURN_IF_ERROR(source_field->ReadChoice(kSources, &name));
      source = ProvenanceFromName(name);
    }
  }
  double value = 0;
  switch (rule.kind) {
    case QuantityKind::kNumber:
      DWDP_LOADER_RETURN_IF_ERROR(
          value_field.ReadDouble(rule.min, rule.max, &value, rule.min_exclusive));
      break;
    case QuantityKind::kBytes: {
      uint64_t bytes = 0;
      DWDP_LOADER_RETURN_IF_ERROR(value_field.ReadSize(static_cast<uint64_t>(rule.min),
                                                       static_cast<uint64_t>(rule.max), &bytes));
      if (rule.power_of_two && !IsPowerOfTwo(bytes)) {
        return value_field.Error(absl::StrCat("must be a power of two, got ", bytes));
      }
      value = static_cast<double>(bytes);
      break;
    }
    case QuantityKind::kCount: {
      int64_t count = 0;
      DWDP_LOADER_RETURN_IF_ERROR(value_field.ReadInt(static_cast<int64_t>(rule.min),
                                                      static_cast<int64_t>(rule.max), &count));
      value = static_cast<double>(count);
      break;
    }
  }
  *out = Quantity{value, source};
  return absl::OkStatus();
}

// `default_name` names the profile when the map has neither `name` nor `preset`.
absl::Status ReadDType(const Field& field, DType* out);

// One entry of `moe_compute`: a model shape and its measured layer times by tokens per rank.
absl::Status ParseMoeComputeTable(const Field& field, MoeComputeTable* table) {
  StrictMap map;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(kMoeComputeKeys, &map));
  for (const auto& [key, target] :
       {std::pair<absl::string_view, int64_t*>{"hidden", &table->hidden},
        {"intermediate", &table->intermediate},
        {"experts", &table->num_experts},
        {"top_k", &table->top_k}}) {
    std::optional<Field> value = map.Get(key);
    if (!value) return map.Missing(key, "a moe_compute table names its model shape");
    DWDP_LOADER_RETURN_IF_ERROR(value->ReadInt(1, 1 << 20, target));
  }
  if (table->top_k > table->num_experts) {
    return field.Error(
        absl::StrCat("top_k ", table->top_k, " is larger than experts ", table->num_experts));
  }
  if (std::optional<Field> dtype = map.Get("dtype")) {
    DWDP_LOADER_RETURN_IF_ERROR(ReadDType(*dtype, &table->dtype));
  }
  if (std::optional<Field> source = map.Get("source")) {
    std::string name;
    constexpr absl::string_view kSources[] = {"measured", "spec", "assumed"};
    DWDP_LOADER_RETURN_IF_ERROR(source->ReadChoice(kSources, &name));
    table->source = name == "measured" ? Provenance::kMeasured
                    : name == "spec"   ? Provenance::kSpec
                                       : Provenance::kAssumed;
  }
  if (std::optional<Field> kernel = map.Get("kernel")) {
    DWDP_LOADER_RETURN_IF_ERROR(kernel->ReadString(&table->kernel));
  }
  std::optional<Field> tokens = map.Get("tokens");
  if (!tokens) return map.Missing("tokens", "a moe_compute table needs its token counts");
  std::vector<Field> items;
  DWDP_LOADER_RETURN_IF_ERROR(tokens->ReadSequence(&items));
  if (items.empty()) return tokens->Error("expected at least one token count");
  for (const Field& item : items) {
    int64_t t = 0;
    DWDP_LOADER_RETURN_IF_ERROR(item.ReadInt(1, int64_t{1} << 30, &t));
    if (!table->tokens.empty() && t <= table->tokens.back()) {
      return item.Error("token counts must be in ascending order without repeats");
    }
    table->tokens.push_back(t);
  }
  for (const auto& [key, target] :
       {std::pair<absl::string_view, std::vector<double>*>{"alone_ns", &table->alone_ns},
        {"under_copy_ns", &table->under_copy_ns}}) {
    std::optional<Field> values = map.Get(key);
    if (!values) {
      if (key == "alone_ns") return map.Missing(key, "a moe_compute table needs its times");
      continue;
    }
    DWDP_LOADER_RETURN_IF_ERROR(values->ReadSequence(&items));
    if (items.size() != table->tokens.size()) {
      return values->Error(absl::StrCat("expected ", table->tokens.size(),
                                        " times, one per token count, found ", items.size()));
    }
    for (const Field& item : items) {
      double ns = 0;
      DWDP_LOADER_RETURN_IF_ERROR(item.ReadDouble(0, kMaxNanos, &ns, /*min_exclusive=*/true));
      target->push_back(ns);
    }
  }
  return absl::OkStatus();
}

absl::Status ParseHardwareMap(const Field& field, absl::string_view default_name,
                              HardwareProfile* out) {
  StrictMap map;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(HardwareKeys(), &map));
  HardwareProfile profile;
  if (std::optional<Field> preset = map.Get("preset")) {
    std::string preset_name;
    DWDP_LOADER_RETURN_IF_ERROR(preset->ReadString(&preset_name));
    absl::StatusOr<HardwareProfile> base = HardwarePreset(preset_name);
    if (!base.ok()) return preset->Error(base.status().message());
    profile = *std::move(base);
    if (!default_name.empty()) profile.name = std::string(default_name);
  } else {
    std::vector<std::string> missing;
    for (const HardwareField& rule : kHardwareFields) {
      const bool optional =
          std::find(std::begin(kOptionalHardwareNumbers), std::end(kOptionalHardwareNumbers),
                    rule.key) != std::end(kOptionalHardwareNumbers);
      if (!optional && !map.Has(rule.key)) missing.emplace_back(rule.key);
    }
    if (!missing.empty()) {
      return map.Missing(
          missing.front(),
          absl::StrCat("a hardware map without 'preset' must give every number; missing: ",
                       absl::StrJoin(missing, ", ")));
    }
    profile.name = default_name.empty() ? "custom" : std::string(default_name);
  }
  for (absl::string_view key : {"name", "gpu_name", "measured_on"}) {
    std::optional<Field> text = map.Get(key);
    if (!text) continue;
    std::string* target = key == "name"       ? &profile.name
                          : key == "gpu_name" ? &profile.gpu_name
                                              : &profile.measured_on;
    DWDP_LOADER_RETURN_IF_ERROR(text->ReadString(target));
  }
  for (const HardwareField& rule : kHardwareFields) {
    if (std::optional<Field> value = map.Get(rule.key)) {
      DWDP_LOADER_RETURN_IF_ERROR(ReadQuantity(*value, rule, &(profile.*rule.member)));
    }
  }
  if (std::optional<Field> flag = map.Get("fabric_supported")) {
    DWDP_LOADER_RETURN_IF_ERROR(flag->ReadBool(&profile.fabric_supported));
  }
  if (std::optional<Field> flag = map.Get("imex_permitted")) {
    DWDP_LOADER_RETURN_IF_ERROR(flag->ReadBool(&profile.imex_permitted));
  }
  if (std::optional<Field> tables = map.Get("moe_compute")) {
    profile.moe_compute.clear();
    std::vector<Field> entries;
    DWDP_LOADER_RETURN_IF_ERROR(tables->ReadSequence(&entries));
    for (const Field& entry : entries) {
      MoeComputeTable table;
      DWDP_LOADER_RETURN_IF_ERROR(ParseMoeComputeTable(entry, &table));
      profile.moe_compute.push_back(std::move(table));
    }
  }
  *out = std::move(profile);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Files and YAML documents.

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view what) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (error || !std::filesystem::exists(status)) {
    if (error && error != std::errc::no_such_file_or_directory) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": cannot access the ", what, " file: ", error.message()));
    }
    return absl::NotFoundError(absl::StrCat(path, ": no such ", what, " file"));
  }
  if (std::filesystem::is_directory(status)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": is a directory, not a ", what, " file"));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": is not a regular file, so it cannot be a ", what, " file"));
  }
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (!error && size > kMaxFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", FormatBytes(size),
                                                   " is too large for a ", what, " file (at most ",
                                                   FormatBytes(kMaxFileBytes), ")"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": cannot open the ", what, " file: ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": reading the ", what, " file failed"));
  }
  return contents.str();
}

// Deepest flow-collection nesting outside quotes and comments, with where it passed `limit`.
std::optional<YAML::Mark> FlowNestingPastLimit(absl::string_view text, int limit) {
  int depth = 0;
  char quote = 0;
  bool in_comment = false;
  YAML::Mark mark;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++mark.line;
      mark.column = 0;
      in_comment = false;
      continue;
    }
    ++mark.column;
    if (in_comment) continue;
    if (quote != 0) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t')) {
      in_comment = true;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) {
        --mark.column;
        return mark;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

YAML::Mark StartMark() {
  YAML::Mark mark;
  mark.line = 0;
  mark.column = 0;
  return mark;
}

// Where each document of a YAML stream starts and where its root node is, from yaml-cpp's
// events (no nodes are built).
class DocumentMarks : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  std::vector<YAML::Mark> roots;

  void OnDocumentStart(const YAML::Mark& mark) override {
    starts.push_back(mark);
    root_seen_ = false;
  }
  void OnDocumentEnd() override {
    if (!root_seen_) Root(starts.back());
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Root(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Root(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Root(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Root(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Root(mark);
  }
  void OnMapEnd() override {}

 private:
  void Root(const YAML::Mark& mark) {
    if (root_seen_) return;
    roots.push_back(mark);
    root_seen_ = true;
  }
  bool root_seen_ = false;
};

// One YAML document. `what` describes the expected content for the empty-file message.
absl::StatusOr<YAML::Node> ParseYamlDocument(absl::string_view text, const std::string& file,
                                             absl::string_view what) {
  if (std::optional<YAML::Mark> mark = FlowNestingPastLimit(text, kMaxFlowNesting)) {
    return absl::InvalidArgumentError(AtPosition(
        file, *mark,
        absl::StrCat("lists and maps are nested deeper than ", kMaxFlowNesting, " levels")));
  }
  const std::string content(text);
  DocumentMarks documents;
  YAML::Node root;
  try {
    // Documents are counted on parser events rather than with YAML::LoadAll: on a token that
    // cannot start a node at the top level (a stray ',' as in ",--") yaml-cpp 0.7 starts an
    // empty document without consuming the token, again and again, and LoadAll grows without
    // bound. A document that starts where the previous one did has made no progress.
    std::istringstream stream(content);
    YAML::Parser parser(stream);
    while (parser.HandleNextDocument(documents)) {
      const size_t n = documents.starts.size();
      if (n >= 2 && documents.starts[n - 1].pos == documents.starts[n - 2].pos) {
        const YAML::Mark& at = documents.starts.back();
        const bool comma = at.pos >= 0 && static_cast<size_t>(at.pos) < content.size() &&
                           content[static_cast<size_t>(at.pos)] == ',';
        return absl::InvalidArgumentError(
            AtPosition(file, at,
                       comma ? "malformed YAML: ',' outside a list or map"
                             : "malformed YAML: a token that cannot start a value"));
      }
    }
    root = YAML::Load(content);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        AtPosition(file, e.mark, absl::StrCat("malformed YAML: ", e.msg)));
  }
  if (documents.roots.size() > 1) {
    return absl::InvalidArgumentError(
        AtPosition(file, documents.roots[1],
                   absl::StrCat("the file holds ", documents.roots.size(),
                                " YAML documents; it must hold one")));
  }
  if (documents.roots.empty() || root.IsNull()) {
    return absl::InvalidArgumentError(
        AtPosition(file, StartMark(), absl::StrCat("the file is empty; expected ", what)));
  }
  return root;
}

Field RootField(const std::string& file, const YAML::Node& root) {
  return Field(file, root, "", root.Mark().is_null() ? StartMark() : root.Mark());
}

std::string FileStem(absl::string_view path) {
  return std::filesystem::path(std::string(path)).stem().string();
}

// Runs `parse`, turning any exception that escapes yaml-cpp or the standard library into a
// status: the API never throws.
template <typename Fn>
absl::Status Guarded(const std::string& file, Fn&& parse) {
  try {
    return parse();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(AtPosition(file, e.mark, e.msg));
  } catch (const std::exception& e) {
    return absl::InternalError(AtPosition(
        file, YAML::Mark::null_mark(), absl::StrCat("unexpected error while loading: ", e.what())));
  }
}

absl::StatusOr<HardwareProfile> LoadHardwareProfileImpl(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, "hardware profile");
  if (!text.ok()) return text.status();
  HardwareProfile profile;
  DWDP_LOADER_RETURN_IF_ERROR(Guarded(path, [&]() -> absl::Status {
    absl::StatusOr<YAML::Node> root = ParseYamlDocument(*text, path, "a map of hardware numbers");
    if (!root.ok()) return root.status();
    const Field field = RootField(path, *root);
    if (!field.IsMap()) {
      return field.Error(
          absl::StrCat("a hardware profile is a map of hardware numbers; got ", field.Describe()));
    }
    return ParseHardwareMap(field, FileStem(path), &profile);
  }));
  profile.source_file = path;
  return profile;
}

// `hardware:` in a scenario: a preset name, a profile path (relative to the scenario's
// directory) or an inline map.
absl::Status ParseHardwareValue(const Field& field, const std::filesystem::path& base_dir,
                                HardwareProfile* out) {
  if (field.IsMap()) return ParseHardwareMap(field, "", out);
  std::string name_or_path;
  if (!field.IsScalar() || !field.ReadString(&name_or_path).ok()) {
    return field.Error(absl::StrCat(
        "expected a hardware preset name, a profile file path or a map, got ", field.Describe()));
  }
  if (absl::StatusOr<HardwareProfile> preset = HardwarePreset(name_or_path); preset.ok()) {
    *out = *std::move(preset);
    return absl::OkStatus();
  }
  const bool looks_like_path = absl::StrContains(name_or_path, '/') ||
                               absl::EndsWith(name_or_path, ".yaml") ||
                               absl::EndsWith(name_or_path, ".yml");
  if (!looks_like_path) {
    return field.Error(absl::StrCat("unknown hardware preset '", name_or_path,
                                    "'; presets: ", absl::StrJoin(HardwarePresetNames(), ", "),
                                    "; a profile file path ends in .yaml"));
  }
  std::filesystem::path profile_path(name_or_path);
  if (profile_path.is_relative()) profile_path = base_dir / profile_path;
  absl::StatusOr<HardwareProfile> profile = LoadHardwareProfileImpl(profile_path.string());
  if (!profile.ok()) {
    // A missing or unreadable profile is reported where the scenario names it; errors inside
    // the profile already point into the profile file.
    if (absl::IsNotFound(profile.status())) {
      return absl::NotFoundError(
          AtPosition(field.file(), field.mark(),
                     absl::StrCat("key '", field.path(), "': no hardware profile file '",
                                  name_or_path, "' (looked for ", profile_path.string(), ")")));
    }
    if (absl::IsFailedPrecondition(profile.status())) {
      return absl::FailedPreconditionError(
          AtPosition(field.file(), field.mark(),
                     absl::StrCat("key '", field.path(), "': ", profile.status().message())));
    }
    return profile.status();
  }
  *out = *std::move(profile);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Model.

absl::Status ReadDType(const Field& field, DType* out) {
  std::string name;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadChoice(kDTypes, &name));
  *out = name == "fp4" ? DType::kFp4 : name == "fp8" ? DType::kFp8 : DType::kBf16;
  return absl::OkStatus();
}

absl::Status ParseAttention(const Field& field, AttentionSpec* attention) {
  StrictMap map;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(kAttentionKeys, &map));
  if (std::optional<Field> kind = map.Get("kind")) {
    std::string name;
    constexpr absl::string_view kKinds[] = {"mla", "gqa"};
    DWDP_LOADER_RETURN_IF_ERROR(kind->ReadChoice(kKinds, &name));
    attention->kind = name == "mla" ? AttentionKind::kMla : AttentionKind::kGqa;
  }
  const std::pair<absl::string_view, int64_t AttentionSpec::*> int_fields[] = {
      {"num_heads", &AttentionSpec::num_heads},
      {"num_kv_heads", &AttentionSpec::num_kv_heads},
      {"head_dim", &AttentionSpec::head_dim},
      {"q_lora_rank", &AttentionSpec::q_lora_rank},
      {"kv_lora_rank", &AttentionSpec::kv_lora_rank},
      {"qk_nope_head_dim", &AttentionSpec::qk_nope_head_dim},
      {"qk_rope_head_dim", &AttentionSpec::qk_rope_head_dim},
      {"v_head_dim", &AttentionSpec::v_head_dim},
  };
  for (const auto& [key, member] : int_fields) {
    if (std::optional<Field> value = map.Get(key)) {
      DWDP_LOADER_RETURN_IF_ERROR(value->ReadInt(0, kMaxDimension, &(attention->*member)));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseWeights(const Field& field, std::vector<WeightSpec>* out) {
  std::vector<Field> items;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadSequence(&items));
  if (items.empty()) return field.Error("needs at least one weight");
  std::vector<WeightSpec> weights;
  for (const Field& item : items) {
    StrictMap map;
    DWDP_LOADER_RETURN_IF_ERROR(item.ReadMap(kWeightKeys, &map));
    WeightSpec weight;
    std::optional<Field> name = map.Get("name");
    if (!name) return map.Missing("name", "every weight has a name and expert_bytes");
    DWDP_LOADER_RETURN_IF_ERROR(name->ReadString(&weight.name));
    for (const WeightSpec& earlier : weights) {
      if (earlier.name == weight.name) {
        return name->Error(absl::StrCat("weight '", weight.name, "' is listed twice"));
      }
    }
    if (std::optional<Field> dtype = map.Get("dtype")) {
      DType parsed = DType::kBf16;
      DWDP_LOADER_RETURN_IF_ERROR(ReadDType(*dtype, &parsed));
      weight.dtype = parsed;
    }
    std::optional<Field> shape = map.Get("shape");
    if (shape) {
      std::vector<Field> dims;
      DWDP_LOADER_RETURN_IF_ERROR(shape->ReadSequence(&dims));
      if (dims.empty() || dims.size() > 4) {
        return shape->Error("expected the per-expert shape as a list of 1 to 4 dimensions");
      }
      for (const Field& dim : dims) {
        int64_t n = 0;
        DWDP_LOADER_RETURN_IF_ERROR(dim.ReadInt(1, kMaxDimension, &n));
        weight.shape.push_back(n);
      }
      if (!weight.dtype) {
        return shape->Error(absl::StrCat("weight '", weight.name,
                                         "' gives a shape but no dtype; give its dtype (fp4, fp8 "
                                         "or bf16) so its bytes per expert follow from the shape"));
      }
    }
    std::optional<uint64_t> from_shape;
    if (!weight.shape.empty()) {
      uint64_t elements = 1;
      for (int64_t n : weight.shape) {
        std::optional<uint64_t> product = CheckedMul(elements, static_cast<uint64_t>(n));
        if (!product || *product > kMaxExpertBytes) {
          return shape->Error(absl::StrCat("weight '", weight.name, "' shape is too large"));
        }
        elements = *product;
      }
      from_shape = BytesOfElements(*weight.dtype, elements);
      if (!from_shape) {
        return shape->Error(absl::StrCat("weight '", weight.name, "': ", elements,
                                         " fp4 elements are not a whole number of bytes"));
      }
    }
    std::optional<Field> bytes = map.Get("expert_bytes");
    if (bytes) {
      DWDP_LOADER_RETURN_IF_ERROR(
          bytes->ReadSize(1, kMaxExpertBytes, &weight.expert_bytes, "bytes of one expert"));
      if (from_shape && *from_shape != weight.expert_bytes) {
        return bytes->Error(absl::StrCat("weight '", weight.name, "': expert_bytes ",
                                         weight.expert_bytes, " disagrees with its shape [",
                                         absl::StrJoin(weight.shape, ", "), "] in ",
                                         DTypeName(*weight.dtype), ", which is ", *from_shape,
                                         " bytes per expert; give one of them or make them agree"));
      }
    } else if (from_shape) {
      weight.expert_bytes = *from_shape;
    } else {
      return map.Missing("expert_bytes",
                         "every weight has a name and expert_bytes (or a dtype and shape)");
    }
    weights.push_back(std::move(weight));
  }
  *out = std::move(weights);
  return absl::OkStatus();
}

// `moe_layers`: a count, or [first, last] inclusive layer indices.
struct MoeLayersInput {
  std::optional<int64_t> count;
  int64_t first = 0;
  int64_t last = 0;
};

absl::Status ReadMoeLayers(const Field& field, MoeLayersInput* out) {
  if (field.IsScalar()) {
    int64_t count = 0;
    DWDP_LOADER_RETURN_IF_ERROR(field.ReadInt(1, kMaxLayers, &count));
    out->count = count;
    return absl::OkStatus();
  }
  if (!field.IsSequence() || field.node().size() != 2) {
    return field.Error(absl::StrCat(
        "expected a count or [first, last] layer indices, got ",
        field.IsSequence() ? absl::StrCat("a list of ", field.node().size()) : field.Describe()));
  }
  std::vector<Field> bounds;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadSequence(&bounds));
  DWDP_LOADER_RETURN_IF_ERROR(bounds[0].ReadInt(0, kMaxLayers - 1, &out->first));
  DWDP_LOADER_RETURN_IF_ERROR(bounds[1].ReadInt(0, kMaxLayers - 1, &out->last));
  if (out->first > out->last) {
    return field.Error(
        absl::StrCat("first layer ", out->first, " comes after last layer ", out->last));
  }
  return absl::OkStatus();
}

absl::Status ParseModel(const Field& field, ModelSpec* out) {
  if (field.IsScalar()) {
    // `model: deepseek-v3-nvfp4` is shorthand for `model: {preset: deepseek-v3-nvfp4}`.
    absl::StatusOr<ModelSpec> preset = ModelPreset(field.node().Scalar());
    if (!preset.ok()) return field.Error(preset.status().message());
    *out = *std::move(preset);
    return absl::OkStatus();
  }
  StrictMap map;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(kModelKeys, &map));
  ModelSpec model;
  const std::optional<Field> preset = map.Get("preset");
  if (preset) {
    std::string name;
    DWDP_LOADER_RETURN_IF_ERROR(preset->ReadString(&name));
    absl::StatusOr<ModelSpec> base = ModelPreset(name);
    if (!base.ok()) return preset->Error(base.status().message());
    model = *std::move(base);
  } else {
    for (absl::string_view required : {"num_experts", "moe_layers", "weights"}) {
      if (!map.Has(required)) {
        return map.Missing(required, absl::StrCat("a model without 'preset' needs num_experts, "
                                                  "moe_layers and weights; presets: ",
                                                  absl::StrJoin(ModelPresetNames(), ", ")));
      }
    }
  }

  if (std::optional<Field> name = map.Get("display_name")) {
    DWDP_LOADER_RETURN_IF_ERROR(name->ReadString(&model.display_name));
  }
  struct IntField {
    absl::string_view key;
    int64_t ModelSpec::*member;
    int64_t min;
    int64_t max;
  };
  const IntField int_fields[] = {
      {"num_experts", &ModelSpec::num_experts, 1, kMaxExperts},
      {"hidden_size", &ModelSpec::hidden_size, 1, kMaxDimension},
      {"moe_intermediate_size", &ModelSpec::moe_intermediate_size, 1, kMaxDimension},
      {"dense_intermediate_size", &ModelSpec::dense_intermediate_size, 0, kMaxDimension},
      {"top_k", &ModelSpec::top_k, 1, kMaxExperts},
      {"num_shared_experts", &ModelSpec::num_shared_experts, 0, 1024},
      {"vocab_size", &ModelSpec::vocab_size, 0, int64_t{1} << 24},
  };
  for (const IntField& rule : int_fields) {
    if (std::optional<Field> value = map.Get(rule.key)) {
      DWDP_LOADER_RETURN_IF_ERROR(value->ReadInt(rule.min, rule.max, &(model.*rule.member)));
    }
  }
  if (std::optional<Field> attention = map.Get("attention")) {
    DWDP_LOADER_RETURN_IF_ERROR(ParseAttention(*attention, &model.attention));
  }
  if (std::optional<Field> dtype = map.Get("expert_dtype")) {
    DWDP_LOADER_RETURN_IF_ERROR(ReadDType(*dtype, &model.expert_dtype));
  }
  if (std::optional<Field> dtype = map.Get("dense_dtype")) {
    DWDP_LOADER_RETURN_IF_ERROR(ReadDType(*dtype, &model.dense_dtype));
  }
  const std::optional<Field> weights = map.Get("weights");
  if (weights) DWDP_LOADER_RETURN_IF_ERROR(ParseWeights(*weights, &model.weights));
  // Weights that all state the same dtype say what the experts are stored in, unless
  // expert_dtype says it explicitly (the perf model prices the experts by it).
  if (weights && !map.Has("expert_dtype") && !model.weights.empty()) {
    bool same = model.weights.front().dtype.has_value();
    const DType first = model.weights.front().dtype.value_or(DType::kFp4);
    for (const WeightSpec& w : model.weights)
      same = same && w.dtype.has_value() && *w.dtype == first;
    if (same) model.expert_dtype = first;
  }

  // Layers. A count keeps a preset's first MoE layer (DeepSeek-V3's MoE layers start at 3);
  // without a preset it means the last N of num_layers. A model cut short by a smaller
  // count ends after its last MoE layer unless num_layers says otherwise.
  const std::optional<Field> moe_field = map.Get("moe_layers");
  const std::optional<Field> num_layers_field = map.Get("num_layers");
  std::optional<int64_t> num_layers;
  if (num_layers_field) {
    int64_t value = 0;
    DWDP_LOADER_RETURN_IF_ERROR(num_layers_field->ReadInt(1, kMaxLayers, &value));
    num_layers = value;
  }
  if (moe_field) {
    MoeLayersInput input;
    DWDP_LOADER_RETURN_IF_ERROR(ReadMoeLayers(*moe_field, &input));
    int64_t first = input.first;
    int64_t last = input.last;
    if (input.count) {
      if (preset) {
        first = model.moe_layers.empty() ? 0 : model.moe_layers.front();
      } else if (num_layers) {
        if (*input.count > *num_layers) {
          return moe_field->Error(absl::StrCat(*input.count, " MoE layers do not fit in ",
                                               *num_layers, " layers (num_layers)"));
        }
        first = *num_layers - *input.count;
      } else {
        first = 0;
      }
      last = first + *input.count - 1;
      if (last >= kMaxLayers) {
        return moe_field->Error(absl::StrCat("MoE layers ", first, "..", last, " pass the ",
                                             kMaxLayers, "-layer limit"));
      }
    }
    model.moe_layers = config_internal::LayerRange(first, last);
    model.num_layers = num_layers.value_or(last + 1);
  } else if (num_layers) {
    model.num_layers = *num_layers;
  }
  if (!model.moe_layers.empty() && model.moe_layers.back() >= model.num_layers) {
    const Field& at = num_layers_field ? *num_layers_field : *moe_field;
    return at.Error(absl::StrCat("MoE layer ", model.moe_layers.back(), " does not exist in a ",
                                 model.num_layers, "-layer model (num_layers)"));
  }

  if (model.top_k > model.num_experts) {
    const std::optional<Field> at = map.Get("top_k") ? map.Get("top_k") : map.Get("num_experts");
    return (at ? *at : map.self())
        .Error(absl::StrCat("top_k ", model.top_k, " is more than the ", model.num_experts,
                            " experts of the model"));
  }

  // Every layout byte count derives from N·eb per layer; reject shapes that cannot be
  // represented rather than let them wrap later.
  const uint64_t layers = model.moe_layers.size();
  std::optional<uint64_t> total =
      CheckedMul(static_cast<uint64_t>(model.num_experts), model.expert_bytes());
  if (total) total = CheckedMul(*total, layers);
  if (model.expert_bytes() == UINT64_MAX || !total || *total > kMaxTotalBytes) {
    const Field& at = weights                  ? *weights
                      : map.Get("num_experts") ? *map.Get("num_experts")
                                               : map.self();
    return at.Error(absl::StrCat(model.num_experts, " experts × ", model.expert_bytes(),
                                 " bytes per expert × ", layers,
                                 " MoE layers is more bytes than dwdp can address (2^62)"));
  }

  // Replicated bytes and KV size follow the model's shape unless given: a preset cut to six
  // layers replicates six layers of attention, not sixty.
  if (std::optional<Field> bytes = map.Get("non_moe_bytes")) {
    DWDP_LOADER_RETURN_IF_ERROR(bytes->ReadSize(0, uint64_t{1} << 50, &model.non_moe_bytes));
  } else if (std::optional<uint64_t> estimate = config_internal::EstimateNonMoeBytes(model)) {
    model.non_moe_bytes = *estimate;
  } else {
    return map.self().Error("the replicated (non-MoE) weights overflow 64-bit byte arithmetic");
  }
  if (std::optional<Field> bytes = map.Get("kv_bytes_per_token")) {
    DWDP_LOADER_RETURN_IF_ERROR(bytes->ReadSize(0, uint64_t{1} << 40, &model.kv_bytes_per_token));
  } else if (std::optional<uint64_t> estimate = config_internal::EstimateKvBytesPerToken(model)) {
    model.kv_bytes_per_token = *estimate;
  } else {
    return map.self().Error("the KV cache per token overflows 64-bit byte arithmetic");
  }
  if (model.display_name.empty())
    model.display_name = model.preset.empty() ? "custom model" : model.preset;
  *out = std::move(model);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// DWDP partition config and workload.

absl::Status ParseContention(const Field& field, ContentionConfig* out) {
  std::string mode;
  if (field.IsScalar()) {
    DWDP_LOADER_RETURN_IF_ERROR(field.ReadChoice(kContentionModes, &mode));
  } else {
    StrictMap map;
    DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(kContentionKeys, &map));
    if (std::optional<Field> mode_field = map.Get("mode")) {
      DWDP_LOADER_RETURN_IF_ERROR(mode_field->ReadChoice(kContentionModes, &mode));
    }
    if (std::optional<Field> slice = map.Get("slice_bytes")) {
      DWDP_LOADER_RETURN_IF_ERROR(slice->ReadSize(4 * kKiB, 64 * kGiB, &out->slice_bytes));
    }
  }
  if (mode == "ascending") {
    out->mode = ContentionMode::kAscending;
  } else if (mode == "round_robin") {
    out->mode = ContentionMode::kRoundRobin;
  } else if (mode == "rotate") {
    out->mode = ContentionMode::kRotate;
  } else if (mode == "staggered") {
    out->mode = ContentionMode::kStaggered;
  }
  return absl::OkStatus();
}

absl::Status ParseDwdp(const Field& field, const ModelSpec& model, const HardwareProfile& hardware,
                       DwdpConfig* out) {
  StrictMap map;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(kDwdpKeys, &map));
  DwdpConfig config;
  constexpr absl::string_view kRanksWhy = "dwdp supports at most 65536 ranks";
  const std::optional<Field> size_field = map.Get("dwdp_size");
  if (!size_field) return map.Missing("dwdp_size", "the number of GPUs in one DWDP group");
  // Values at or below 1 load: validation reports them with check ids.
  DWDP_LOADER_RETURN_IF_ERROR(
      size_field->ReadInt(-kMaxRanks, kMaxRanks, &config.dwdp_size, kRanksWhy));
  const std::optional<Field> groups_field = map.Get("num_groups");
  if (groups_field) {
    DWDP_LOADER_RETURN_IF_ERROR(
        groups_field->ReadInt(-kMaxRanks, kMaxRanks, &config.num_groups, kRanksWhy));
  }
  if (config.dwdp_size > 0 && config.num_groups > 0 &&
      config.dwdp_size * config.num_groups > kMaxRanks) {
    return (groups_field ? *groups_field : *size_field)
        .Error(absl::StrCat("dwdp_size ", config.dwdp_size, " × num_groups ", config.num_groups,
                            " = ", config.dwdp_size * config.num_groups, " ranks; ", kRanksWhy));
  }

  const std::optional<Field> worker_field = map.Get("num_experts_per_worker");
  const std::optional<Field> prefetch_field = map.Get("num_prefetch_experts");
  constexpr absl::string_view kExpertsWhy = "a model has at most 1000000 experts";
  if (worker_field) {
    DWDP_LOADER_RETURN_IF_ERROR(worker_field->ReadInt(-kMaxExperts, kMaxExperts,
                                                      &config.num_experts_per_worker, kExpertsWhy));
  }
  if (prefetch_field) {
    DWDP_LOADER_RETURN_IF_ERROR(prefetch_field->ReadInt(-kMaxExperts, kMaxExperts,
                                                        &config.num_prefetch_experts, kExpertsWhy));
  }
  if (!worker_field && !prefetch_field && config.dwdp_size >= 2 &&
      model.num_experts % config.dwdp_size == 0) {
    // Uniform partition: every rank stores N/d experts, no overlap.
    config.num_experts_per_worker = config.num_prefetch_experts =
        model.num_experts / config.dwdp_size;
  } else if (!worker_field || !prefetch_field) {
    const absl::string_view missing =
        worker_field ? "num_prefetch_experts" : "num_experts_per_worker";
    return map.Missing(missing,
                       absl::StrCat("give num_experts_per_worker and num_prefetch_experts; "
                                    "`dwdp recipes --dwdp-size ",
                                    config.dwdp_size, " --num-experts ", model.num_experts,
                                    "` lists valid pairs"));
  }
  if (std::optional<Field> chunk = map.Get("loaded_chunk"); chunk && !chunk->IsNull()) {
    int64_t loaded = 0;
    DWDP_LOADER_RETURN_IF_ERROR(chunk->ReadInt(-kMaxExperts, kMaxExperts, &loaded, kExpertsWhy));
    config.loaded_chunk = loaded;
  }
  if (std::optional<Field> buffers = map.Get("num_buffers")) {
    DWDP_LOADER_RETURN_IF_ERROR(buffers->ReadInt(2, 64, &config.num_buffers,
                                                 "at least 2 slots to overlap copy and compute"));
  }
  const auto granularity = static_cast<uint64_t>(hardware.granularity.value);
  // DWDP_SPEC: the pool page defaults to 8·G (16 MiB on every preset). A fixed 16 MiB would not
  // be a multiple of a larger granularity, and the layout would reject what the loader took.
  if (granularity > 0) config.pool_page_bytes = 8 * granularity;
  if (std::optional<Field> page = map.Get("pool_page_bytes")) {
    DWDP_LOADER_RETURN_IF_ERROR(page->ReadSize(4 * kKiB, 64 * kGiB, &config.pool_page_bytes));
    if (!IsPowerOfTwo(config.pool_page_bytes)) {
      return page->Error(absl::StrCat("must be a power of two, got ", config.pool_page_bytes, " (",
                                      FormatBytes(config.pool_page_bytes), ")"));
    }
    if (granularity > 0 && config.pool_page_bytes % granularity != 0) {
      return page->Error(absl::StrCat("must be a multiple of the VMM granularity of ",
                                      hardware.name, " (", FormatBytes(granularity), "), got ",
                                      FormatBytes(config.pool_page_bytes)));
    }
  }
  if (std::optional<Field> contention = map.Get("contention")) {
    DWDP_LOADER_RETURN_IF_ERROR(ParseContention(*contention, &config.contention));
  }
  if (std::optional<Field> owner = map.Get("owner")) {
    std::string policy;
    DWDP_LOADER_RETURN_IF_ERROR(owner->ReadChoice(kOwnerPolicies, &policy));
    config.owner = policy == "balanced" ? OwnerPolicy::kBalanced : OwnerPolicy::kLowest;
  }
  *out = config;
  return absl::OkStatus();
}

// `isl: 8192` (fixed) or `isl: {distribution: fixed | uniform | lognormal | file, ...}`.
absl::Status ParseInputLengths(const Field& field, const std::filesystem::path& base_dir,
                               InputLengths* out) {
  InputLengths isl;
  if (field.IsScalar()) {
    DWDP_LOADER_RETURN_IF_ERROR(field.ReadInt(1, kMaxTokens, &isl.length));
    *out = isl;
    return absl::OkStatus();
  }
  StrictMap map;
  DWDP_LOADER_RETURN_IF_ERROR(field.ReadMap(kIslKeys, &map));
  std::string kind = "fixed";
  if (std::optional<Field> d = map.Get("distribution")) {
    DWDP_LOADER_RETURN_IF_ERROR(d->ReadChoice(kIslDistributions, &kind));
  }
  const auto need = [&](absl::string_view key, absl::string_view why) -> absl::StatusOr<Field> {
    std::optional<Field> f = map.Get(key);
    if (!f) return map.Missing(key, why);
    return *f;
  };
  if (std::optional<Field> min = map.Get("min")) {
    DWDP_LOADER_RETURN_IF_ERROR(min->ReadInt(1, kMaxTokens, &isl.min));
  }
  if (std::optional<Field> max = map.Get("max")) {
    DWDP_LOADER_RETURN_IF_ERROR(max->ReadInt(1, kMaxTokens, &isl.max));
  }
  if (kind == "fixed") {
    absl::StatusOr<Field> length = need("length", "the input length of every request");
    if (!length.ok()) return length.status();
    DWDP_LOADER_RETURN_IF_ERROR(length->ReadInt(1, kMaxTokens, &isl.length));
  } else if (kind == "uniform") {
    isl.distribution = LengthDistribution::kUniform;
    if (!map.Get("max")) return map.Missing("max", "the longest input length");
    if (isl.max < isl.min) {
      return map.self().Error(
          absl::StrCat("max ", isl.max, " is below min ", isl.min, "; give min <= max"));
    }
  } else if (kind == "lognormal") {
    isl.distribution = LengthDistribution::kLognormal;
    absl::StatusOr<Field> mean = need("mean", "the mean input length");
    if (!mean.ok()) return mean.status();
    DWDP_LOADER_RETURN_IF_ERROR(mean->ReadDouble(1, static_cast<double>(kMaxTokens), &isl.mean));
    absl::StatusOr<Field> cv =
        need("cv", "the coefficient of variation (standard deviation / mean)");
    if (!cv.ok()) return cv.status();
    DWDP_LOADER_RETURN_IF_ERROR(cv->ReadDouble(0, 10, &isl.cv));
    // Without a cap a heavy tail draws lengths no context server takes.
    if (isl.max == 0) isl.max = std::min<int64_t>(kMaxTokens, static_cast<int64_t>(8 * isl.mean));
    if (isl.max < isl.min) {
      return map.self().Error(
          absl::StrCat("max ", isl.max, " is below min ", isl.min, "; give min <= max"));
    }
  } else {
    isl.distribution = LengthDistribution::kFile;
    absl::StatusOr<Field> path = need("path", "a text file of input lengths, one per line");
    if (!path.ok()) return path.status();
    DWDP_LOADER_RETURN_IF_ERROR(path->ReadString(&isl.path));
    std::filesystem::path resolved(isl.path);
    if (resolved.is_relative()) resolved = base_dir / resolved;
    absl::StatusOr<std::vector<int64_t>> lengths = LoadLengthFile(resolved.string());
    if (!lengths.ok()) return path->Error(lengths.status().message());
    isl.lengths = *std::move(lengths);
  }
  *out = std::move(isl);
  return absl::OkStatus();
}

absl::Status ParseWorkload(const std::optional<Field>& field, const std::filesystem::path& base_dir,
                           Workload* out) {
  Workload workload;
  workload.tokens_per_rank = kDefaultTokensPerRank;
  StrictMap map;
  if (field) DWDP_LOADER_RETURN_IF_ERROR(field->ReadMap(kWorkloadKeys, &map));
  if (std::optional<Field> tokens = map.Get("tokens_per_rank")) {
    DWDP_LOADER_RETURN_IF_ERROR(tokens->ReadInt(0, kMaxTokens, &workload.tokens_per_rank));
  }
  workload.sequence_length = workload.tokens_per_rank;
  if (std::optional<Field> length = map.Get("sequence_length")) {
    DWDP_LOADER_RETURN_IF_ERROR(length->ReadInt(0, kMaxTokens, &workload.sequence_length));
  }
  if (std::optional<Field> forwards = map.Get("forwards")) {
    DWDP_LOADER_RETURN_IF_ERROR(forwards->ReadInt(1, 1000000, &workload.forwards));
  }
  if (std::optional<Field> cv = map.Get("tokens_cv")) {
    DWDP_LOADER_RETURN_IF_ERROR(cv->ReadDouble(0, 10, &workload.tokens_cv));
  }
  if (std::optional<Field> kind = map.Get("compute")) {
    std::string name;
    constexpr absl::string_view kComputeKinds[] = {"stand-in", "moe"};
    DWDP_LOADER_RETURN_IF_ERROR(kind->ReadChoice(kComputeKinds, &name));
    workload.compute = name == "moe" ? ComputeKind::kMoe : ComputeKind::kStandIn;
  }
  if (std::optional<Field> seed = map.Get("seed")) {
    int64_t value = 0;
    DWDP_LOADER_RETURN_IF_ERROR(seed->ReadInt(0, int64_t{1} << 62, &value));
    workload.seed = static_cast<uint64_t>(value);
  }
  if (std::optional<Field> compute = map.Get("layer_compute_ns"); compute && !compute->IsNull()) {
    double nanos = 0;
    DWDP_LOADER_RETURN_IF_ERROR(compute->ReadDouble(0, kMaxNanos, &nanos));
    workload.layer_compute_ns = nanos;
  }
  if (std::optional<Field> isl = map.Get("isl")) {
    InputLengths lengths;
    DWDP_LOADER_RETURN_IF_ERROR(ParseInputLengths(*isl, base_dir, &lengths));
    workload.input_lengths = std::move(lengths);
  }
  if (std::optional<Field> mnt = map.Get("max_num_tokens")) {
    DWDP_LOADER_RETURN_IF_ERROR(mnt->ReadInt(1, kMaxTokens, &workload.max_num_tokens));
  }
  *out = workload;
  return absl::OkStatus();
}

absl::Status ParseScenario(const Field& root, const std::filesystem::path& base_dir,
                           absl::string_view default_name, Scenario* out) {
  if (!root.IsMap()) {
    return root.Error(
        absl::StrCat("a scenario is a map with name, model, dwdp, hardware and "
                     "workload; got ",
                     root.Describe()));
  }
  StrictMap map;
  DWDP_LOADER_RETURN_IF_ERROR(root.ReadMap(kScenarioKeys, &map));
  Scenario scenario;
  scenario.name = std::string(default_name);
  if (std::optional<Field> name = map.Get("name")) {
    DWDP_LOADER_RETURN_IF_ERROR(name->ReadString(&scenario.name));
  }
  const std::optional<Field> model = map.Get("model");
  if (!model) return map.Missing("model", "a preset name or a map of model fields");
  DWDP_LOADER_RETURN_IF_ERROR(ParseModel(*model, &scenario.model));
  const std::optional<Field> hardware = map.Get("hardware");
  if (!hardware) {
    return map.Missing("hardware",
                       absl::StrCat("a preset (", absl::StrJoin(HardwarePresetNames(), ", "),
                                    "), a profile file path or a map"));
  }
  DWDP_LOADER_RETURN_IF_ERROR(ParseHardwareValue(*hardware, base_dir, &scenario.hardware));
  const std::optional<Field> dwdp = map.Get("dwdp");
  if (!dwdp) return map.Missing("dwdp", "at least dwdp_size");
  DWDP_LOADER_RETURN_IF_ERROR(ParseDwdp(*dwdp, scenario.model, scenario.hardware, &scenario.dwdp));
  DWDP_LOADER_RETURN_IF_ERROR(ParseWorkload(map.Get("workload"), base_dir, &scenario.workload));
  if (scenario.workload.compute == ComputeKind::kMoe) {
    // The real kernel needs its two BF16 tensors; say so where the scenario asks for it.
    if (absl::StatusOr<MoeWeightIndex> moe = FindMoeWeights(scenario.model); !moe.ok()) {
      StrictMap workload;
      DWDP_LOADER_RETURN_IF_ERROR(map.Get("workload")->ReadMap(kWorkloadKeys, &workload));
      return workload.Get("compute")->Error(moe.status().message());
    }
  }
  *out = std::move(scenario);
  return absl::OkStatus();
}

absl::StatusOr<Scenario> LoadScenarioText(absl::string_view yaml, const std::string& file,
                                          const std::filesystem::path& base_dir,
                                          absl::string_view default_name) {
  Scenario scenario;
  DWDP_LOADER_RETURN_IF_ERROR(Guarded(file, [&]() -> absl::Status {
    absl::StatusOr<YAML::Node> root = ParseYamlDocument(
        yaml, file, "a scenario map with name, model, dwdp, hardware and workload");
    if (!root.ok()) return root.status();
    return ParseScenario(RootField(file, *root), base_dir, default_name, &scenario);
  }));
  return scenario;
}

// Shortest text that reads back as the same double.
std::string ExactNumber(double value) {
  char buffer[64];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

}  // namespace

absl::StatusOr<Scenario> LoadScenarioFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, "scenario");
  if (!text.ok()) return text.status();
  absl::StatusOr<Scenario> scenario =
      LoadScenarioText(*text, path, std::filesystem::path(path).parent_path(), FileStem(path));
  if (scenario.ok()) scenario->source_file = path;
  return scenario;
}

absl::StatusOr<Scenario> LoadScenarioString(absl::string_view yaml,
                                            absl::string_view display_name) {
  // Profile paths in a string resolve against the working directory.
  return LoadScenarioText(yaml, std::string(display_name), std::filesystem::path(),
                          FileStem(display_name).empty() ? "scenario" : FileStem(display_name));
}

absl::StatusOr<HardwareProfile> LoadHardwareProfileFile(const std::string& path) {
  return LoadHardwareProfileImpl(path);
}

absl::StatusOr<std::vector<int64_t>> LoadLengthFile(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such length file"));
  }
  const uintmax_t size = std::filesystem::file_size(path, error);
  constexpr uintmax_t kMaxLengthFileBytes = uintmax_t{64} << 20;
  if (!error && size > kMaxLengthFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", FormatBytes(size),
                                                   " is too large for a length file (at most ",
                                                   FormatBytes(kMaxLengthFileBytes), ")"));
  }
  std::ifstream in(path);
  if (!in)
    return absl::FailedPreconditionError(absl::StrCat(path, ": cannot read the length file"));
  std::vector<int64_t> lengths;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    int64_t length = 0;
    if (!absl::SimpleAtoi(text, &length) || length < 1 || length > kMaxTokens) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": '", text,
                                                     "' is not an input length (a whole number "
                                                     "of tokens from 1 to ",
                                                     kMaxTokens, ")"));
    }
    lengths.push_back(length);
  }
  if (lengths.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the length file holds no input lengths (one whole number per line)"));
  }
  return lengths;
}

absl::StatusOr<HardwareProfile> ResolveHardware(const std::string& name_or_path) {
  if (absl::StatusOr<HardwareProfile> preset = HardwarePreset(name_or_path); preset.ok()) {
    return preset;
  }
  absl::StatusOr<HardwareProfile> profile = LoadHardwareProfileImpl(name_or_path);
  if (absl::IsNotFound(profile.status())) {
    return absl::NotFoundError(absl::StrCat("'", name_or_path, "' is neither a hardware preset (",
                                            absl::StrJoin(HardwarePresetNames(), ", "),
                                            ") nor an existing profile file"));
  }
  return profile;
}

std::string HardwareProfileToYaml(const HardwareProfile& profile) {
  YAML::Emitter out;
  out << YAML::Comment("dwdp hardware profile") << YAML::Newline
      << YAML::Comment(
             "every number is {value, source}; source is spec (datasheet), measured or assumed")
      << YAML::Newline;
  out << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << profile.name;
  if (!profile.gpu_name.empty()) out << YAML::Key << "gpu_name" << YAML::Value << profile.gpu_name;
  if (!profile.measured_on.empty()) {
    out << YAML::Key << "measured_on" << YAML::Value << profile.measured_on;
  }
  for (const HardwareField& field : kHardwareFields) {
    const Quantity& quantity = profile.*field.member;
    out << YAML::Key << std::string(field.key) << YAML::Value << YAML::Flow << YAML::BeginMap
        << YAML::Key << "value" << YAML::Value << ExactNumber(quantity.value) << YAML::Key
        << "source" << YAML::Value << ProvenanceName(quantity.source) << YAML::EndMap;
  }
  out << YAML::Key << "fabric_supported" << YAML::Value << profile.fabric_supported;
  out << YAML::Key << "imex_permitted" << YAML::Value << profile.imex_permitted;
  if (!profile.moe_compute.empty()) {
    out << YAML::Key << "moe_compute" << YAML::Value << YAML::BeginSeq;
    for (const MoeComputeTable& t : profile.moe_compute) {
      out << YAML::BeginMap;
      out << YAML::Key << "hidden" << YAML::Value << t.hidden;
      out << YAML::Key << "intermediate" << YAML::Value << t.intermediate;
      out << YAML::Key << "experts" << YAML::Value << t.num_experts;
      out << YAML::Key << "top_k" << YAML::Value << t.top_k;
      out << YAML::Key << "dtype" << YAML::Value << DTypeName(t.dtype);
      out << YAML::Key << "source" << YAML::Value << ProvenanceName(t.source);
      if (!t.kernel.empty()) out << YAML::Key << "kernel" << YAML::Value << t.kernel;
      out << YAML::Key << "tokens" << YAML::Value << YAML::Flow << t.tokens;
      out << YAML::Key << "alone_ns" << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (double ns : t.alone_ns) out << ExactNumber(ns);
      out << YAML::EndSeq;
      if (!t.under_copy_ns.empty()) {
        out << YAML::Key << "under_copy_ns" << YAML::Value << YAML::Flow << YAML::BeginSeq;
        for (double ns : t.under_copy_ns) out << ExactNumber(ns);
        out << YAML::EndSeq;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;
  return absl::StrCat(out.c_str(), "\n");
}

}  // namespace dwdp
