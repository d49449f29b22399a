#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"dwdp: Distributed Weight Data Parallelism for MoE inference"};
  app.require_subcommand(1);
  dwdp::cli::CommandContext ctx;
  dwdp::cli::RegisterValidate(app, ctx);
  dwdp::cli::RegisterRecipes(app, ctx);
  dwdp::cli::RegisterLayout(app, ctx);
  dwdp::cli::RegisterRun(app, ctx);
  dwdp::cli::RegisterPlan(app, ctx);
  dwdp::cli::RegisterPlace(app, ctx);
  dwdp::cli::RegisterCalibrate(app, ctx);
  dwdp::cli::RegisterCompare(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    // CLI11 returns 0 for --help; every real parse error is a usage error.
    return code == 0 ? 0 : dwdp::cli::kExitUsage;
  }
  return ctx.exit_code;
}
