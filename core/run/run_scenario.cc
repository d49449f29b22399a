#include "core/run/run_scenario.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/config/moe_weights.h"
#include "core/pattern.h"
#include "core/run/exit_code.h"

namespace dwdp {
namespace {

// Appends `text` unless an error already says it (a failure returned by a call and also kept
// by the backend as an asynchronous error would otherwise be listed twice).
void AddUnique(std::vector<std::string>& errors, const std::string& text) {
  for (const std::string& existing : errors) {
    if (existing.find(text) != std::string::npos) return;
  }
  errors.push_back(text);
}

}  // namespace

absl::StatusOr<RunResult> RunScenario(const Scenario& scenario, const GroupLayout& layout,
                                      const RunRequest& request, const RunBackend& backend,
                                      const RunInputs& inputs) {
  if (absl::Status s = CheckOptionsFor(request, backend.name, backend.options); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<RunSession>> session = backend.open(scenario, layout, request);
  if (!session.ok()) return session.status();
  return RunScenarioWith(scenario, layout, request, *std::move(session), backend.options, inputs);
}

absl::StatusOr<RunResult> RunScenarioWith(const Scenario& scenario, const GroupLayout& layout,
                                          const RunRequest& request,
                                          std::unique_ptr<RunSession> session, uint32_t understood,
                                          const RunInputs& inputs) {
  const LayerTimes times = inputs.times ? *inputs.times : ComputeLayerTimes(scenario);
  const int64_t d = session->group_size();
  const std::vector<int64_t> hosted = session->coordinator().hosted_ranks();
  // The simulator hosts the whole group and folds every forward into the report as it ends,
  // so memory stays flat over long runs; a GPU process hosts one rank and keeps its operations
  // until they travel to the reporting rank.
  const bool whole_group = static_cast<int64_t>(hosted.size()) == d;
  const bool keep_timeline = inputs.keep_timeline || !request.trace_path.empty();

  RunResult result;
  std::vector<std::string> process_errors;
  std::map<int64_t, RankOutcome> mine;
  for (int64_t r : hosted) mine[r].rank = r;
  // A failure of this process: its rank's own on the GPU, the whole group's on the simulator.
  const auto fail = [&](const std::string& message) {
    if (whole_group || hosted.empty()) {
      process_errors.push_back(message);
    } else {
      mine[hosted.front()].errors.push_back(message);
    }
  };

  RuntimeOptions options;
  options.functional = request.functional();
  options.fault = request.fault;
  options.attention_ns = times.attention_ns;
  options.moe_ns = times.moe_ns;
  options.prelude_ns = times.prelude_ns;
  options.contention = scenario.dwdp.contention;
  options.step_hook = inputs.step_hook;
  if (scenario.workload.compute == ComputeKind::kMoe) {
    absl::StatusOr<MoeWeightIndex> weights = FindMoeWeights(scenario.model);
    if (!weights.ok()) return weights.status();
    const ModelSpec& m = scenario.model;
    options.moe =
        MoeCompute{m.hidden_size, m.moe_intermediate_size,           m.num_experts,
                   m.top_k,       scenario.workload.tokens_per_rank, scenario.workload.seed,
                   *weights};
    options.pattern_kind = kPatternBf16;
  }

  RunReportAccumulator accumulator;
  int64_t forwards_done = 0;
  if (absl::Status s = session->BeforeSetup(); !s.ok()) {
    fail(absl::StrCat("before setup: ", s.message()));
  } else {
    absl::StatusOr<std::unique_ptr<GroupRuntime>> runtime =
        GroupRuntime::Setup(layout, session->coordinator(), options);
    if (!runtime.ok()) {
      result.setup_error = runtime.status().code();
      fail(absl::StrCat("setup: ", runtime.status().message()));
    } else {
      result.setup_ok = true;
      // Setup's operations belong to no forward.
      for (int64_t r : hosted) (void)session->coordinator().streams(r).TakeTimeline();
      for (int64_t f = 0; f < scenario.workload.forwards; ++f) {
        if (request.align_forwards) {
          if (absl::Status s = session->Barrier(); !s.ok()) {
            fail(absl::StrCat("barrier before forward ", f, ": ", s.message()));
            break;
          }
        }
        absl::Status st = (*runtime)->RunForward(f);
        ++forwards_done;
        std::vector<TimedOp> forward_ops;
        for (int64_t r : hosted) {
          for (TimedOp& op : session->coordinator().streams(r).TakeTimeline()) {
            RankOutcome& outcome = mine[op.rank];
            if (!outcome.stream_names.contains(op.stream)) {
              outcome.stream_names[op.stream] = (*runtime)->stream_name(op.rank, op.stream);
            }
            if (!whole_group) {
              outcome.ops.push_back(std::move(op));
              continue;
            }
            if (keep_timeline) result.timeline.push_back(op);
            if (op.tag.forward == f) op.tag.forward = 0;
            forward_ops.push_back(std::move(op));
          }
        }
        if (whole_group) {
          RunSession& s = *session;
          accumulator.Add(BuildRunReport(forward_ops, d, 1,
                                         [&s](int64_t rank) { return s.peak_device_bytes(rank); }));
        }
        if (!st.ok()) {
          fail(std::string(st.message()));
          break;
        }
      }
      for (int64_t r : hosted) session->AfterForwards(**runtime, mine[r]);
      if (absl::Status s = (*runtime)->Teardown(); !s.ok()) {
        fail(absl::StrCat("teardown: ", s.message()));
      }
      runtime->reset();
    }
  }
  for (int64_t r : hosted) {
    RankOutcome& outcome = mine[r];
    outcome.forwards_done = forwards_done;
    outcome.peak_device_bytes = session->peak_device_bytes(r);
    // The driver's own accounting: exact, whatever else runs on the GPU.
    const std::string alive = session->coordinator().driver(r).LiveResources().ToString();
    if (!alive.empty()) {
      outcome.errors.push_back(absl::StrCat("resources still alive after teardown: ", alive));
    }
    session->AfterTeardown(outcome);
  }

  // Every rank's outcome to the reporting process.
  std::vector<RankOutcome> outcomes;
  if (whole_group) {
    for (auto& [r, outcome] : mine) outcomes.push_back(std::move(outcome));
  } else {
    std::vector<std::vector<uint8_t>> per_hosted;
    for (int64_t r : hosted) {
      RankOutcome& outcome = mine[r];
      outcome.errors.insert(outcome.errors.begin(), process_errors.begin(), process_errors.end());
      const std::string text = RankOutcomeToJson(outcome).dump();
      per_hosted.emplace_back(text.begin(), text.end());
    }
    process_errors.clear();
    absl::StatusOr<std::vector<std::vector<uint8_t>>> gathered =
        session->coordinator().Allgather(std::move(per_hosted));
    if (!gathered.ok()) {
      // A peer is gone; report what this process knows.
      for (auto& [r, outcome] : mine) {
        outcome.errors.push_back(
            absl::StrCat("gather every rank's results: ", gathered.status().message()));
        outcomes.push_back(std::move(outcome));
      }
    } else {
      for (const std::vector<uint8_t>& bytes : *gathered) {
        nlohmann::json json = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
        absl::StatusOr<RankOutcome> outcome = RankOutcomeFromJson(json);
        if (!outcome.ok()) return outcome.status();
        outcomes.push_back(*std::move(outcome));
      }
    }
  }
  result.reports = session->reports();
  if (!result.reports) {
    result.session = std::move(session);
    return result;
  }

  RunReport& report = result.report;
  if (whole_group) {
    RunSession& s = *session;
    report =
        accumulator.count() > 0
            ? accumulator.Result()
            : BuildRunReport({}, d, 0, [&s](int64_t rank) { return s.peak_device_bytes(rank); });
  } else {
    // Forward by forward, as the simulator folds them.
    int64_t forwards = 0;
    std::map<int64_t, uint64_t> peak;
    for (const RankOutcome& o : outcomes) {
      forwards = std::max(forwards, o.forwards_done);
      peak[o.rank] = o.peak_device_bytes;
    }
    const auto peak_of = [&peak](int64_t rank) { return peak.contains(rank) ? peak[rank] : 0; };
    for (int64_t f = 0; f < forwards; ++f) {
      std::vector<TimedOp> forward_ops;
      for (const RankOutcome& o : outcomes) {
        for (const TimedOp& op : o.ops) {
          if (op.tag.forward != f) continue;
          if (keep_timeline) result.timeline.push_back(op);
          TimedOp folded = op;
          folded.tag.forward = 0;
          forward_ops.push_back(std::move(folded));
        }
      }
      accumulator.Add(BuildRunReport(forward_ops, d, 1, peak_of));
    }
    report = accumulator.count() > 0 ? accumulator.Result() : BuildRunReport({}, d, 0, peak_of);
  }
  for (const RankOutcome& o : outcomes) {
    for (const auto& [stream, name] : o.stream_names) result.stream_names[{o.rank, stream}] = name;
  }
  report.backend = request.backend;
  report.mode = RunModeName(request.mode);
  report.scenario = scenario.name;
  std::vector<std::string> errors = std::move(process_errors);
  for (const RankOutcome& o : outcomes) {
    for (const std::string& e : o.errors) {
      errors.push_back(whole_group ? e : absl::StrCat("rank ", o.rank, ": ", e));
    }
  }
  for (const std::string& e : session->UnreportedErrors()) AddUnique(errors, e);
  report.hazards = session->Hazards();
  report.errors = std::move(errors);
  session->Annotate(outcomes, report);
  report.extra["compute_source"] = times.source;
  report.extra["fault"] = FaultName(request.fault);
  report.extra["options"] = EffectiveOptionsJson(request, scenario, understood);
  report.ok = report.errors.empty() && report.hazards.empty();
  result.session = std::move(session);
  return result;
}

int RunExitCode(const RunResult& result) {
  if (result.report.ok) return kExitOk;
  return result.setup_error == absl::StatusCode::kResourceExhausted ? kExitUsage : kExitInvalid;
}

}  // namespace dwdp
