#pragma once

#include <string>

namespace dwdp::testing {

// Absolute path of a file in the source tree, e.g. SourcePath("scenarios/default.yaml").
inline std::string SourcePath(const std::string& relative) {
  return std::string(DWDP_SOURCE_DIR) + "/" + relative;
}

// The built dwdp executable.
inline std::string DwdpBinary() { return DWDP_BIN; }

}  // namespace dwdp::testing
