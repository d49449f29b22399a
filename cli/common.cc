#include "cli/common.h"

#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "core/config/loader.h"

namespace dwdp::cli {

bool WriteFileOrReport(const std::string& path, const std::string& text, CommandContext& ctx) {
  std::ofstream out(path);
  out << text;
  if (!out) {
    ReportError(absl::StrCat("cannot write ", path), kExitUsage, ctx);
    return false;
  }
  return true;
}

void AddFormatOption(CLI::App& command, std::string& format,
                     const std::vector<std::string>& choices) {
  format = choices.front();
  command.add_option("--format", format, "Output format")
      ->check(CLI::IsMember(choices))
      ->capture_default_str();
}

Format ParseFormat(const std::string& format) {
  if (format == "json") return Format::kJson;
  if (format == "csv") return Format::kCsv;
  return Format::kText;
}

std::optional<Scenario> LoadScenarioOrReport(const std::string& path, CommandContext& ctx) {
  auto scenario = LoadScenarioFile(path);
  if (!scenario.ok()) {
    ReportError(scenario.status(), kExitUsage, ctx);
    return std::nullopt;
  }
  return *std::move(scenario);
}

void ReportError(const absl::Status& status, int exit_code, CommandContext& ctx) {
  ReportError(std::string(status.message()), exit_code, ctx);
}

void ReportError(const absl::Status& status, CommandContext& ctx) {
  ReportError(status, ExitCodeOf(status), ctx);
}

void ReportError(const std::string& message, int exit_code, CommandContext& ctx) {
  std::cerr << "error: " << message << "\n";
  ctx.exit_code = exit_code;
}

void PrintJson(const nlohmann::json& json) { std::cout << json.dump(2) << "\n"; }

}  // namespace dwdp::cli
