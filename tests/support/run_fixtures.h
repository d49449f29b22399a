#pragma once

// Helpers for the run-path tests: `dwdp run` flags parsed as the command does, and scenarios
// loaded from the repository.

#include <algorithm>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "CLI/CLI.hpp"
#include "cli/run_flags.h"
#include "core/config/loader.h"
#include "core/run/run_request.h"
#include "tests/support/test_paths.h"

namespace dwdp::testing {

// `dwdp run ARGS...` through the command's own flag table, as a RunRequest.
inline RunRequest ParseRunFlags(std::vector<std::string> args) {
  CLI::App app;
  CLI::App* run = app.add_subcommand("run");
  cli::RunFlags flags;
  cli::AddRunFlags(*run, flags, {"sim", "cuda"});
  args.insert(args.begin(), "run");
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  app.parse(args);
  absl::StatusOr<RunRequest> request = flags.ToRequest();
  BOOST_REQUIRE(request.ok());
  return *request;
}

// scenarios/NAME.
inline Scenario LoadRepositoryScenario(const std::string& name) {
  auto scenario = LoadScenarioFile(SourcePath("scenarios/" + name));
  BOOST_REQUIRE_MESSAGE(scenario.ok(), scenario.status().message());
  return *scenario;
}

}  // namespace dwdp::testing
