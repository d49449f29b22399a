#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dwdp::testing {

// The directory of the running test executable ("" when /proc is unreadable).
inline std::filesystem::path ExecutableDir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : exe.parent_path();
}

// Where the scenarios, profiles and test data are, in this order:
//   1. $DWDP_SOURCE_DIR (a source tree, or a bundle);
//   2. the directory of the test executable, when it holds scenarios/ (a bundle made by
//      scripts/bundle.sh keeps them next to the tests, so a bundle copied to another machine
//      finds its own);
//   3. the source tree this test was built from.
// None of them having scenarios/ is an error that says how to fix it, rather than a later
// "no such scenario file" that points at the wrong machine's path.
inline std::string DataRoot() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const char* from_env = std::getenv("DWDP_SOURCE_DIR"); from_env != nullptr) {
    if (!fs::is_directory(fs::path(from_env) / "scenarios", ec)) {
      throw std::runtime_error(std::string("DWDP_SOURCE_DIR is '") + from_env +
                               "', which has no scenarios/ directory; point it at the dwdp source "
                               "tree or at a bundle made by scripts/bundle.sh");
    }
    return from_env;
  }
  const fs::path beside = ExecutableDir();
  if (!beside.empty() && fs::is_directory(beside / "scenarios", ec)) return beside.string();
  if (fs::is_directory(fs::path(DWDP_SOURCE_DIR) / "scenarios", ec)) return DWDP_SOURCE_DIR;
  throw std::runtime_error(
      std::string("cannot find the scenarios: neither the test's directory (") + beside.string() +
      ") nor the source tree it was built from (" + DWDP_SOURCE_DIR +
      ") has scenarios/; set DWDP_SOURCE_DIR to the dwdp source tree or "
      "to a bundle made by scripts/bundle.sh");
}

// Absolute path of a file under the data root, e.g. SourcePath("scenarios/default.yaml").
inline std::string SourcePath(const std::string& relative) { return DataRoot() + "/" + relative; }

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

// The dwdp executable: $DWDP_BIN, else one next to the test (a bundle), else the build's.
inline std::string DwdpBinary() {
  if (const char* from_env = std::getenv("DWDP_BIN"); from_env != nullptr) return from_env;
  const std::filesystem::path beside = ExecutableDir() / "dwdp";
  if (access(beside.c_str(), X_OK) == 0) return beside.string();
  return DWDP_BIN;
}

}  // namespace dwdp::testing
