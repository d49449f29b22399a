#pragma once

// The flags of `dwdp run` and their translation into a RunRequest (core/run/run_request.h).
// Kept apart from the command so that tests can parse a command line and see exactly what
// request it makes: every flag must reach the request, and a backend-specific flag is set in it
// only when given, so that a backend without it refuses it instead of running without it.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "core/run/run_request.h"

namespace dwdp::cli {

struct RunFlags {
  std::string scenario;
  std::string format;
  RunRequest request;  // the fields CLI11 fills directly
  std::string mode = "timing";
  std::string inject = "none";
  std::string contention;
  std::string baseline = "dwdp";
  bool no_hazards = false;
  bool no_gpu_timing = false;
  uint64_t seed = RunRequest::kDefaultSeed;
  double timeout_s = RunRequest::kDefaultTimeoutS;
  CLI::Option* seed_option = nullptr;
  CLI::Option* timeout_option = nullptr;

  // The request these flags make (after parsing).
  absl::StatusOr<RunRequest> ToRequest() const;
};

// Adds every flag of `dwdp run` to `command`; `backends` are the names --backend accepts.
void AddRunFlags(CLI::App& command, RunFlags& flags, const std::vector<std::string>& backends);

}  // namespace dwdp::cli
