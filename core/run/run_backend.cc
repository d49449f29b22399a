#include "core/run/run_backend.h"

#include "absl/strings/str_cat.h"

namespace dwdp {
namespace {

nlohmann::json OpToJson(const TimedOp& op) {
  return {op.rank,      op.stream,      static_cast<int>(op.tag.kind),
          op.tag.layer, op.tag.weight,  op.tag.peer,
          op.tag.slot,  op.tag.forward, op.tag.label,
          op.bytes,     op.issue_ns,    op.start_ns,
          op.end_ns};
}

TimedOp OpFromJson(const nlohmann::json& j) {
  TimedOp op;
  op.rank = j.at(0);
  op.stream = j.at(1);
  op.tag.kind = static_cast<OpKind>(j.at(2).get<int>());
  op.tag.layer = j.at(3);
  op.tag.weight = j.at(4);
  op.tag.peer = j.at(5);
  op.tag.slot = j.at(6);
  op.tag.forward = j.at(7);
  op.tag.label = j.at(8);
  op.bytes = j.at(9);
  op.issue_ns = j.at(10);
  op.start_ns = j.at(11);
  op.end_ns = j.at(12);
  return op;
}

}  // namespace

nlohmann::json RankOutcomeToJson(const RankOutcome& outcome) {
  nlohmann::json ops = nlohmann::json::array();
  for (const TimedOp& op : outcome.ops) ops.push_back(OpToJson(op));
  nlohmann::json names = nlohmann::json::array();
  for (const auto& [stream, name] : outcome.stream_names) names.push_back({stream, name});
  return {{"rank", outcome.rank},
          {"errors", outcome.errors},
          {"ops", std::move(ops)},
          {"stream_names", std::move(names)},
          {"peak_device_bytes", outcome.peak_device_bytes},
          {"forwards_done", outcome.forwards_done},
          {"extra", outcome.extra}};
}

absl::StatusOr<RankOutcome> RankOutcomeFromJson(const nlohmann::json& json) {
  try {
    RankOutcome outcome;
    outcome.rank = json.at("rank");
    outcome.errors = json.at("errors").get<std::vector<std::string>>();
    for (const auto& op : json.at("ops")) outcome.ops.push_back(OpFromJson(op));
    for (const auto& pair : json.at("stream_names")) {
      outcome.stream_names[pair.at(0).get<StreamId>()] = pair.at(1).get<std::string>();
    }
    outcome.peak_device_bytes = json.at("peak_device_bytes");
    outcome.forwards_done = json.at("forwards_done");
    outcome.extra = json.at("extra");
    return outcome;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        absl::StrCat("a rank's outcome arrived incomplete or garbled: ", e.what()));
  }
}

const RunBackend* RunBackendTable::Find(const std::string& name) const {
  for (const RunBackend& b : backends_) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

std::vector<std::string> RunBackendTable::names() const {
  std::vector<std::string> out;
  for (const RunBackend& b : backends_) out.push_back(b.name);
  return out;
}

}  // namespace dwdp
