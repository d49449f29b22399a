// dwdp compare SIM.json GPU.json: how well the simulator predicted a GPU run of the same
// scenario (core/report/compare.h). dwdp compare DWDP.json DEP.json: the measured DEP/DWDP
// forward ratio next to the planner's (core/dep/dep_compare.h). Exit 0 within the tolerance, 1
// beyond it, 2 when a report cannot be read or the two do not describe the same run.

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cli/common.h"
#include "core/dep/dep_compare.h"
#include "core/report/compare.h"

namespace dwdp::cli {
namespace {

struct CompareCliOptions {
  std::string predicted;
  std::string measured;
  double tolerance = 0.10;
  bool all_layers = false;
  std::string format;
};

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the ", what, " report '", path, "'"));
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", what, " report '", path,
                     "' is not valid JSON (write it with `dwdp run ... --format json > FILE`)"));
  }
  return j;
}

}  // namespace

void RegisterCompare(CLI::App& app, CommandContext& ctx) {
  auto opts = std::make_shared<CompareCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "compare",
      "Compare a simulator report with a GPU report of the same scenario, or a DWDP report with "
      "a DEP baseline report (--baseline dep) of it");
  cmd->add_option("predicted", opts->predicted, "`dwdp run --backend sim --format json` output")
      ->required();
  cmd->add_option("measured", opts->measured, "`dwdp run --backend cuda --format json` output")
      ->required();
  cmd->add_option("--tolerance", opts->tolerance,
                  "Largest relative error of the mean per-layer copy time (each rank) and the "
                  "forward time")
      ->check(CLI::Range(1e-6, 100.0))
      ->capture_default_str();
  cmd->add_flag("--all-layers", opts->all_layers, "text: a table for every layer of every rank");
  AddFormatOption(*cmd, opts->format);
  cmd->callback([opts, &ctx] {
    absl::StatusOr<nlohmann::json> predicted = ReadJsonFile(opts->predicted, "predicted");
    if (!predicted.ok()) return ReportError(predicted.status(), kExitUsage, ctx);
    absl::StatusOr<nlohmann::json> measured = ReadJsonFile(opts->measured, "measured");
    if (!measured.ok()) return ReportError(measured.status(), kExitUsage, ctx);
    if (dep::IsDepReport(*measured) || dep::IsDepReport(*predicted)) {
      // DWDP.json DEP.json: the measured DEP/DWDP ratio beside the planner's.
      absl::StatusOr<dep::DepVsDwdp> versus = dep::CompareDepWithDwdp(*predicted, *measured);
      if (!versus.ok()) {
        return ReportError(absl::StrCat("cannot compare '", opts->predicted, "' with '",
                                        opts->measured, "': ", versus.status().message()),
                           kExitUsage, ctx);
      }
      if (ParseFormat(opts->format) == Format::kJson) {
        PrintJson(versus->ToJson());
      } else {
        std::cout << versus->ToText();
      }
      return;
    }
    absl::StatusOr<ReportComparison> comparison =
        CompareRunReports(*predicted, *measured, {.tolerance = opts->tolerance});
    if (!comparison.ok()) {
      return ReportError(absl::StrCat("cannot compare '", opts->predicted, "' with '",
                                      opts->measured, "': ", comparison.status().message()),
                         kExitUsage, ctx);
    }
    if (ParseFormat(opts->format) == Format::kJson) {
      PrintJson(comparison->ToJson());
    } else {
      std::cout << comparison->ToText(opts->all_layers);
    }
    if (!comparison->within_tolerance()) {
      std::cerr << "error: the prediction is beyond the tolerance: " << comparison->failures.front()
                << "\n";
      ctx.exit_code = kExitInvalid;
    }
  });
}

}  // namespace dwdp::cli
