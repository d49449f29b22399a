#pragma once

// Helpers shared by the sub-commands: loading a scenario with the right exit code, output
// formats, JSON printing.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "cli/commands.h"
#include "core/config/scenario.h"

namespace dwdp::cli {

enum class Format { kText, kJson, kCsv };

// Adds `--format` with the given choices (first is the default).
void AddFormatOption(CLI::App& command, std::string& format,
                     const std::vector<std::string>& choices = {"text", "json"});
Format ParseFormat(const std::string& format);

// Loads a scenario; on failure prints one sentence to stderr and sets exit code 2.
std::optional<Scenario> LoadScenarioOrReport(const std::string& path, CommandContext& ctx);

// Prints "error: MESSAGE" to stderr and sets the exit code.
void ReportError(const absl::Status& status, int exit_code, CommandContext& ctx);
// The same with the exit code of the failure (ExitCodeOf, core/run/exit_code.h).
void ReportError(const absl::Status& status, CommandContext& ctx);
void ReportError(const std::string& message, int exit_code, CommandContext& ctx);

void PrintJson(const nlohmann::json& json);

// Writes text to path; on failure reports "cannot write PATH" (usage error) and returns false.
bool WriteFileOrReport(const std::string& path, const std::string& text, CommandContext& ctx);

}  // namespace dwdp::cli
