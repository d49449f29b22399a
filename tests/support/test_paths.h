#pragma once

#include <cstdlib>
#include <string>

namespace dwdp::testing {

// Absolute path of a file in the source tree, e.g. SourcePath("scenarios/default.yaml").
// DWDP_SOURCE_DIR in the environment overrides the build's (tests copied to a GPU machine).
inline std::string SourcePath(const std::string& relative) {
  const char* from_env = std::getenv("DWDP_SOURCE_DIR");
  return std::string(from_env != nullptr ? from_env : DWDP_SOURCE_DIR) + "/" + relative;
}

// The built dwdp executable.
inline std::string DwdpBinary() { return DWDP_BIN; }

}  // namespace dwdp::testing
