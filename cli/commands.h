#pragma once

// Each sub-command registers itself on the CLI11 app and sets `exit_code` when it runs.
// Exit codes (INTERFACE.md): 0 success / valid; 1 invalid scenario or the run found an error;
// 2 usage error or unreadable/malformed file. Human text to stdout; errors to stderr.

#include <CLI/CLI.hpp>

#include "core/run/exit_code.h"

namespace dwdp::cli {

using dwdp::kExitInvalid;
using dwdp::kExitOk;
using dwdp::kExitUsage;

struct CommandContext {
  int exit_code = kExitOk;
};

void RegisterValidate(CLI::App& app, CommandContext& ctx);
void RegisterRecipes(CLI::App& app, CommandContext& ctx);
void RegisterLayout(CLI::App& app, CommandContext& ctx);
void RegisterRun(CLI::App& app, CommandContext& ctx);
void RegisterPlan(CLI::App& app, CommandContext& ctx);
void RegisterPlace(CLI::App& app, CommandContext& ctx);
void RegisterCalibrate(CLI::App& app, CommandContext& ctx);
void RegisterCompare(CLI::App& app, CommandContext& ctx);

}  // namespace dwdp::cli
