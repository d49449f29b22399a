#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace dwdp::testing {

// Absolute path of a file in the source tree, e.g. SourcePath("scenarios/default.yaml").
// DWDP_SOURCE_DIR in the environment overrides the build's (tests copied to a GPU machine).
inline std::string SourcePath(const std::string& relative) {
  const char* from_env = std::getenv("DWDP_SOURCE_DIR");
  return std::string(from_env != nullptr ? from_env : DWDP_SOURCE_DIR) + "/" + relative;
}

// The .yaml files directly in a source directory, sorted.
inline std::vector<std::filesystem::path> YamlFilesIn(const std::string& relative_dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(SourcePath(relative_dir))) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The first line of a file (scenario files state their expected outcome there).
inline std::string FirstLine(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The built dwdp executable.
inline std::string DwdpBinary() { return DWDP_BIN; }

}  // namespace dwdp::testing
