#include "core/calibrate/raw.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace dwdp {
namespace {

using Json = nlohmann::json;

// Walks the file and keeps the first problem with the path where it was found; after one, every
// read returns an empty value, so the parser reads straight through and checks once at the end.
class Reader {
 public:
  const absl::Status& status() const { return status_; }

  // The member `key` of `object` (at `path`), or null when it is missing and not `required`.
  const Json* Member(const Json& object, const char* key, const std::string& path, bool required) {
    if (!status_.ok()) return nullptr;
    if (!object.is_object()) {
      Fail(path, absl::StrCat("expected an object, found ", object.type_name()));
      return nullptr;
    }
    auto it = object.find(key);
    if (it == object.end()) {
      if (required) Fail(path, absl::StrCat("missing '", key, "'"));
      return nullptr;
    }
    return &*it;
  }

  double Number(const Json& j, const std::string& path) {
    if (!status_.ok()) return 0;
    if (!j.is_number() || !std::isfinite(j.get<double>())) {
      Fail(path, absl::StrCat("expected a finite number, found ", Found(j)));
      return 0;
    }
    return j.get<double>();
  }
  double Number(const Json& object, const char* key, const std::string& path) {
    const Json* j = Member(object, key, path, true);
    return j != nullptr ? Number(*j, Path(path, key)) : 0;
  }
  std::optional<double> OptionalNumber(const Json& object, const char* key,
                                       const std::string& path) {
    const Json* j = Member(object, key, path, false);
    if (j == nullptr) return std::nullopt;
    return Number(*j, Path(path, key));
  }

  std::vector<double> Numbers(const Json& j, const std::string& path) {
    std::vector<double> values;
    if (!status_.ok()) return values;
    if (!j.is_array()) {
      Fail(path, absl::StrCat("expected an array of numbers, found ", Found(j)));
      return values;
    }
    for (size_t i = 0; i < j.size(); ++i) values.push_back(Number(j[i], Index(path, i)));
    return values;
  }
  std::vector<double> Numbers(const Json& object, const char* key, const std::string& path,
                              bool required = true) {
    const Json* j = Member(object, key, path, required);
    return j != nullptr ? Numbers(*j, Path(path, key)) : std::vector<double>{};
  }

  std::string String(const Json& object, const char* key, const std::string& path,
                     bool required = true) {
    const Json* j = Member(object, key, path, required);
    if (j == nullptr) return "";
    if (!j->is_string()) {
      Fail(Path(path, key), absl::StrCat("expected a string, found ", Found(*j)));
      return "";
    }
    return j->get<std::string>();
  }

  // An array whose elements are read by `element(json, path)`.
  template <typename F>
  void Array(const Json& j, const std::string& path, F element) {
    if (!status_.ok()) return;
    if (!j.is_array()) {
      Fail(path, absl::StrCat("expected an array, found ", Found(j)));
      return;
    }
    for (size_t i = 0; i < j.size() && status_.ok(); ++i) element(j[i], Index(path, i));
  }

  // [a, b] of two numbers.
  std::pair<double, double> Pair(const Json& j, const std::string& path) {
    if (!status_.ok()) return {0, 0};
    if (!j.is_array() || j.size() != 2) {
      Fail(path, absl::StrCat("expected [number, number], found ", Found(j)));
      return {0, 0};
    }
    return {Number(j[0], Index(path, 0)), Number(j[1], Index(path, 1))};
  }

  void Fail(const std::string& path, const std::string& what) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  }

  static std::string Path(const std::string& path, const char* key) {
    return path.empty() ? key : absl::StrCat(path, ".", key);
  }
  static std::string Index(const std::string& path, size_t i) {
    return absl::StrCat(path, "[", i, "]");
  }

 private:
  static std::string Found(const Json& j) {
    return j.is_primitive() ? j.dump() : std::string(j.type_name());
  }

  absl::Status status_;
};

// A list of token counts; every element a whole number.
std::vector<int64_t> Counts(Reader& in, const Json& object, const char* key,
                            const std::string& path, bool required) {
  std::vector<int64_t> out;
  for (double x : in.Numbers(object, key, path, required)) {
    if (x != std::floor(x)) {
      in.Fail(Reader::Path(path, key), absl::StrCat("expected whole numbers, found ", x));
      break;
    }
    out.push_back(static_cast<int64_t>(x));
  }
  return out;
}

// One list of repetitions per token count.
std::vector<std::vector<double>> PerTokens(Reader& in, const Json& object, const char* key,
                                           const std::string& path, size_t tokens, bool required) {
  std::vector<std::vector<double>> out;
  const Json* j = in.Member(object, key, path, required);
  if (j == nullptr) return out;
  const std::string p = Reader::Path(path, key);
  in.Array(*j, p, [&](const Json& x, const std::string& xp) { out.push_back(in.Numbers(x, xp)); });
  if (in.status().ok() && (required || !out.empty()) && out.size() != tokens) {
    in.Fail(p,
            absl::StrCat("expected one list per token count (", tokens, "), found ", out.size()));
  }
  return out;
}

RawMoeCompute ParseMoeCompute(Reader& in, const Json& j, const std::string& path) {
  RawMoeCompute m;
  m.hidden = static_cast<int64_t>(in.Number(j, "hidden", path));
  m.intermediate = static_cast<int64_t>(in.Number(j, "intermediate", path));
  m.num_experts = static_cast<int64_t>(in.Number(j, "experts", path));
  m.top_k = static_cast<int64_t>(in.Number(j, "top_k", path));
  m.kernel = in.String(j, "kernel", path, /*required=*/false);
  m.tokens = Counts(in, j, "tokens", path, true);
  m.alone_ns = PerTokens(in, j, "alone_ns", path, m.tokens.size(), true);
  m.under_copy_ns = PerTokens(in, j, "under_copy_ns", path, m.tokens.size(), false);
  m.copy_outlasts_kernel_by_ns =
      PerTokens(in, j, "copy_outlasts_kernel_by_ns", path, m.tokens.size(), false);
  m.skipped_tokens = Counts(in, j, "skipped_tokens", path, false);
  return m;
}

// `all`: every phase ran, so its entries are required.
RawRank ParseRank(Reader& in, const Json& j, const std::string& path, bool first, bool all) {
  RawRank r;
  r.hostname = in.String(j, "hostname", path, /*required=*/false);
  if (const Json* w = in.Member(j, "warnings", path, false)) {
    in.Array(*w, Reader::Path(path, "warnings"), [&](const Json& x, const std::string& p) {
      if (!x.is_string()) return in.Fail(p, "expected a string");
      r.warnings.push_back(x.get<std::string>());
    });
  }
  // Rank 0 pulls from rank 1; the others have no (or an empty) entry.
  {
    const Json* pair = in.Member(j, "single_pair", path, first && all);
    if (pair != nullptr) {
      in.Array(*pair, Reader::Path(path, "single_pair"), [&](const Json& x, const std::string& p) {
        const auto [bytes, ns] = in.Pair(x, p);
        r.single_pair.push_back({bytes, ns});
      });
    }
  }
  if (const Json* local = in.Member(j, "local_copy", path, all)) {
    const std::string p = Reader::Path(path, "local_copy");
    r.local_copy = {in.Number(*local, "bytes", p), in.Numbers(*local, "ns", p)};
  }
  // Rank 0 is the one pulled from: it has no egress entry.
  if (const Json* egress = in.Member(j, "egress", path, !first && all)) {
    const std::string p = Reader::Path(path, "egress");
    RawEgressPull e;
    e.bytes = in.Number(*egress, "bytes", p);
    e.ns = in.Numbers(*egress, "ns", p);
    e.start_ns = in.Numbers(*egress, "start_ns", p, false);
    e.end_ns = in.Numbers(*egress, "end_ns", p, false);
    if (e.start_ns.size() != e.end_ns.size() ||
        (!e.start_ns.empty() && e.start_ns.size() != e.ns.size())) {
      in.Fail(p, "start_ns, end_ns and ns must have one entry per repetition each");
    }
    r.egress = std::move(e);
  }
  if (const Json* ingress = in.Member(j, "ingress", path, false)) {
    const std::string p = Reader::Path(path, "ingress");
    r.ingress = RawIngress{in.Number(*ingress, "bytes_per_peer", p),
                           static_cast<int64_t>(in.Number(*ingress, "peers", p)),
                           in.Numbers(*ingress, "span_ns", p)};
  }
  if (const Json* s = in.Member(j, "schedules", path, all)) {
    const std::string p = Reader::Path(path, "schedules");
    r.schedules.bytes_per_peer = in.Number(*s, "bytes_per_peer", p);
    r.schedules.piece_bytes = in.Number(*s, "piece_bytes", p);
    if (const Json* runs = in.Member(*s, "runs", p, true)) {
      const std::string rp = Reader::Path(p, "runs");
      if (!runs->is_object()) in.Fail(rp, "expected an object of schedules");
      for (auto it = runs->begin(); runs->is_object() && it != runs->end(); ++it) {
        const std::string sp = absl::StrCat(rp, "['", it.key(), "']");
        r.schedules.runs[it.key()] = {in.Number(it.value(), "bytes", sp),
                                      in.Numbers(it.value(), "span_ns", sp)};
      }
    }
  }
  if (const Json* k = in.Member(j, "kernel_accuracy", path, all)) {
    in.Array(*k, Reader::Path(path, "kernel_accuracy"), [&](const Json& x, const std::string& p) {
      r.kernel_accuracy.push_back(in.Pair(x, p));
    });
  }
  if (const Json* cc = in.Member(j, "compute_under_copies", path, false)) {
    const std::string p = Reader::Path(path, "compute_under_copies");
    if (!cc->is_object()) in.Fail(p, "expected an object");
    for (auto it = cc->begin(); cc->is_object() && it != cc->end(); ++it) {
      const std::string lp = absl::StrCat(p, "['", it.key(), "']");
      RawComputeUnderCopies c;
      c.requested_ns = in.Number(it.value(), "requested_ns", lp);
      c.read_bytes = in.Number(it.value(), "read_bytes", lp);
      c.alone_ns = in.Numbers(it.value(), "alone_ns", lp);
      c.with_copy_ns = in.Numbers(it.value(), "with_copy_ns", lp);
      c.copy_outlasts_kernel_by_ns = in.Numbers(it.value(), "copy_outlasts_kernel_by_ns", lp);
      r.compute_under_copies[it.key()] = std::move(c);
    }
  }
  if (const Json* host = in.Member(j, "host_ns_per_call", path, all)) {
    const std::string p = Reader::Path(path, "host_ns_per_call");
    if (!host->is_object()) in.Fail(p, "expected an object");
    for (auto it = host->begin(); host->is_object() && it != host->end(); ++it) {
      r.host_ns_per_call[it.key()] = in.Numbers(it.value(), absl::StrCat(p, ".", it.key()));
    }
  }
  if (const Json* queue = in.Member(j, "stream_queue_calls", path, false)) {
    const std::string p = Reader::Path(path, "stream_queue_calls");
    if (!queue->is_object()) in.Fail(p, "expected an object");
    for (auto it = queue->begin(); queue->is_object() && it != queue->end(); ++it) {
      r.stream_queue_calls[it.key()] = in.Numbers(it.value(), absl::StrCat(p, ".", it.key()));
    }
  }
  if (const Json* map = in.Member(j, "map_ns", path, all)) {
    const std::string p = Reader::Path(path, "map_ns");
    r.map_ns = {in.Number(*map, "bytes", p), in.Numbers(*map, "map", p),
                in.Numbers(*map, "set_access", p), in.Numbers(*map, "unmap", p)};
  }
  if (const Json* moe = in.Member(j, "moe_compute", path, false)) {
    in.Array(*moe, Reader::Path(path, "moe_compute"), [&](const Json& x, const std::string& p) {
      r.moe_compute.push_back(ParseMoeCompute(in, x, p));
    });
  }
  if (const Json* pf = in.Member(j, "prefetch", path, false)) {
    const std::string p = Reader::Path(path, "prefetch");
    RawPrefetch prefetch;
    prefetch.piece_bytes = in.Number(*pf, "piece_bytes", p);
    if (const Json* pairs = in.Member(*pf, "pairs", p, true)) {
      in.Array(*pairs, Reader::Path(p, "pairs"), [&](const Json& x, const std::string& xp) {
        prefetch.pair_ns[static_cast<int64_t>(in.Number(x, "source", xp))] =
            in.Numbers(x, "ns", xp);
      });
    }
    if (const Json* runs = in.Member(*pf, "runs", p, true)) {
      in.Array(*runs, Reader::Path(p, "runs"), [&](const Json& x, const std::string& xp) {
        RawPrefetchRun run;
        run.start = in.String(x, "start", xp);
        run.drift_ns = in.Number(x, "drift_ns", xp);
        if (const Json* reps = in.Member(x, "repetitions", xp, true)) {
          in.Array(*reps, Reader::Path(xp, "repetitions"),
                   [&](const Json& rep, const std::string& rp) {
                     std::vector<RawPrefetchCopy>& copies = run.repetitions.emplace_back();
                     in.Array(rep, rp, [&](const Json& c, const std::string& cp) {
                       copies.push_back({static_cast<int64_t>(in.Number(c, "source", cp)),
                                         static_cast<int64_t>(in.Number(c, "step", cp)),
                                         in.Number(c, "start_ns", cp), in.Number(c, "end_ns", cp)});
                     });
                   });
        }
        prefetch.runs.push_back(std::move(run));
      });
    }
    r.prefetch = std::move(prefetch);
  }
  r.device_memory_before = in.OptionalNumber(j, "device_memory_before", path);
  r.device_memory_after = in.OptionalNumber(j, "device_memory_after", path);
  r.device_memory_after_second_setup =
      in.OptionalNumber(j, "device_memory_after_second_setup", path);
  r.driver_retained_bytes = in.OptionalNumber(j, "driver_retained_bytes", path);
  return r;
}

Json Pairs(const std::vector<std::pair<double, double>>& pairs) {
  Json out = Json::array();
  for (const auto& [a, b] : pairs) out.push_back({a, b});
  return out;
}

Json NumberMap(const std::map<std::string, std::vector<double>>& values) {
  Json out = Json::object();
  for (const auto& [key, list] : values) out[key] = list;
  return out;
}

}  // namespace

Json RawRankToJson(const RawRank& r) {
  Json j = Json::object();
  if (!r.hostname.empty()) j["hostname"] = r.hostname;
  j["warnings"] = r.warnings;
  Json pair = Json::array();
  for (const CopySample& s : r.single_pair) pair.push_back({s.bytes, s.ns});
  j["single_pair"] = std::move(pair);
  j["local_copy"] = {{"bytes", r.local_copy.bytes}, {"ns", r.local_copy.ns}};
  if (r.egress) {
    j["egress"] = {{"bytes", r.egress->bytes}, {"ns", r.egress->ns}};
    if (!r.egress->start_ns.empty() || !r.egress->end_ns.empty()) {
      j["egress"]["start_ns"] = r.egress->start_ns;
      j["egress"]["end_ns"] = r.egress->end_ns;
    }
  }
  if (r.ingress) {
    j["ingress"] = {{"bytes_per_peer", r.ingress->bytes_per_peer},
                    {"peers", r.ingress->peers},
                    {"span_ns", r.ingress->span_ns}};
  }
  Json runs = Json::object();
  for (const auto& [name, run] : r.schedules.runs) {
    runs[name] = {{"bytes", run.bytes}, {"span_ns", run.span_ns}};
  }
  j["schedules"] = {{"bytes_per_peer", r.schedules.bytes_per_peer},
                    {"piece_bytes", r.schedules.piece_bytes},
                    {"runs", std::move(runs)}};
  j["kernel_accuracy"] = Pairs(r.kernel_accuracy);
  if (!r.compute_under_copies.empty()) {
    Json cc = Json::object();
    for (const auto& [label, c] : r.compute_under_copies) {
      cc[label] = {{"requested_ns", c.requested_ns},
                   {"read_bytes", c.read_bytes},
                   {"alone_ns", c.alone_ns},
                   {"with_copy_ns", c.with_copy_ns},
                   {"copy_outlasts_kernel_by_ns", c.copy_outlasts_kernel_by_ns}};
    }
    j["compute_under_copies"] = std::move(cc);
  }
  j["host_ns_per_call"] = NumberMap(r.host_ns_per_call);
  if (!r.stream_queue_calls.empty()) j["stream_queue_calls"] = NumberMap(r.stream_queue_calls);
  j["map_ns"] = {{"bytes", r.map_ns.bytes},
                 {"map", r.map_ns.map},
                 {"set_access", r.map_ns.set_access},
                 {"unmap", r.map_ns.unmap}};
  const std::pair<const char*, const std::optional<double>*> memory[] = {
      {"device_memory_before", &r.device_memory_before},
      {"device_memory_after", &r.device_memory_after},
      {"device_memory_after_second_setup", &r.device_memory_after_second_setup},
      {"driver_retained_bytes", &r.driver_retained_bytes}};
  for (const auto& [key, value] : memory) {
    if (value->has_value()) j[key] = **value;
  }
  if (!r.moe_compute.empty()) {
    Json tables = Json::array();
    for (const RawMoeCompute& m : r.moe_compute) {
      Json t = {{"hidden", m.hidden},
                {"intermediate", m.intermediate},
                {"experts", m.num_experts},
                {"top_k", m.top_k},
                {"tokens", m.tokens},
                {"alone_ns", m.alone_ns},
                {"under_copy_ns", m.under_copy_ns},
                {"copy_outlasts_kernel_by_ns", m.copy_outlasts_kernel_by_ns},
                {"skipped_tokens", m.skipped_tokens}};
      if (!m.kernel.empty()) t["kernel"] = m.kernel;
      tables.push_back(std::move(t));
    }
    j["moe_compute"] = std::move(tables);
  }
  if (r.prefetch) {
    Json pairs = Json::array();
    for (const auto& [source, ns] : r.prefetch->pair_ns) {
      pairs.push_back({{"source", source}, {"ns", ns}});
    }
    Json runs = Json::array();
    for (const RawPrefetchRun& run : r.prefetch->runs) {
      Json reps = Json::array();
      for (const std::vector<RawPrefetchCopy>& rep : run.repetitions) {
        Json copies = Json::array();
        for (const RawPrefetchCopy& c : rep) {
          copies.push_back({{"source", c.source},
                            {"step", c.step},
                            {"start_ns", c.start_ns},
                            {"end_ns", c.end_ns}});
        }
        reps.push_back(std::move(copies));
      }
      runs.push_back(
          {{"start", run.start}, {"drift_ns", run.drift_ns}, {"repetitions", std::move(reps)}});
    }
    j["prefetch"] = {{"piece_bytes", r.prefetch->piece_bytes},
                     {"pairs", std::move(pairs)},
                     {"runs", std::move(runs)}};
  }
  return j;
}

Json CalibrationRawToJson(const CalibrationRaw& raw) {
  Json j = Json::object();
  j["measured_on"] = raw.measured_on;
  if (!raw.only.empty()) j["only"] = raw.only;
  if (raw.machine) {
    const RawMachine& m = *raw.machine;
    j["machine"] = {{"base", m.base},
                    {"gpu_name", m.gpu_name},
                    {"gpus", m.gpus},
                    {"device_memory_bytes", m.device_memory_bytes},
                    {"granularity", m.granularity},
                    {"handle_kind", m.handle_kind},
                    {"repetitions", m.repetitions},
                    {"buffer_bytes", m.buffer_bytes}};
  }
  j["ranks"] = Json::array();
  for (const RawRank& r : raw.ranks) j["ranks"].push_back(RawRankToJson(r));
  return j;
}

absl::StatusOr<CalibrationRaw> ParseCalibrationRaw(const Json& raw) {
  Reader in;
  CalibrationRaw out;
  if (!raw.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a JSON object with 'ranks', found ", raw.type_name()));
  }
  out.measured_on = in.String(raw, "measured_on", "");
  out.only = in.String(raw, "only", "", /*required=*/false);
  if (!out.only.empty() && out.only != kOnlyCompute && out.only != kOnlyPrefetch) {
    return absl::InvalidArgumentError(absl::StrCat("only: expected \"", kOnlyCompute, "\", \"",
                                                   kOnlyPrefetch, "\" or nothing, found \"",
                                                   out.only, "\""));
  }
  const bool all = out.only.empty();
  if (const Json* m = in.Member(raw, "machine", "", false)) {
    RawMachine machine;
    machine.base = in.String(*m, "base", "machine");
    machine.gpu_name = in.String(*m, "gpu_name", "machine");
    machine.gpus = static_cast<int64_t>(in.Number(*m, "gpus", "machine"));
    machine.device_memory_bytes = in.Number(*m, "device_memory_bytes", "machine");
    machine.granularity = in.Number(*m, "granularity", "machine");
    machine.handle_kind = in.String(*m, "handle_kind", "machine");
    machine.repetitions = static_cast<int64_t>(in.Number(*m, "repetitions", "machine"));
    machine.buffer_bytes = in.Number(*m, "buffer_bytes", "machine");
    out.machine = std::move(machine);
  }
  if (const Json* ranks = in.Member(raw, "ranks", "", true)) {
    in.Array(*ranks, "ranks", [&](const Json& r, const std::string& path) {
      out.ranks.push_back(ParseRank(in, r, path, out.ranks.empty(), all));
    });
  }
  if (!in.status().ok()) return in.status();
  const size_t min_ranks = out.only == kOnlyCompute ? 1u : 2u;
  if (out.ranks.size() < min_ranks) {
    return absl::InvalidArgumentError(absl::StrCat("ranks: a calibration has at least ", min_ranks,
                                                   " ranks, the file has ", out.ranks.size()));
  }
  if (out.machine && out.machine->gpus != static_cast<int64_t>(out.ranks.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "machine.gpus is ", out.machine->gpus, " but the file has ", out.ranks.size(), " ranks"));
  }
  return out;
}

}  // namespace dwdp
