// Where tests find their scenarios and the dwdp binary (tests/support/test_paths.h). A bundle of
// the tests copied to a GPU machine must find the scenarios copied next to it, not look for them
// at the path of the machine that built it.

#define BOOST_TEST_MODULE test_paths_test
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/run_process.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;
using dwdp::testing::RunCommand;

namespace {

// A directory laid out as scripts/bundle.sh lays out a bundle: this test executable, and a
// scenarios/ folder holding a file the source tree does not have.
struct FakeBundle {
  fs::path dir;
  FakeBundle() {
    dir = fs::temp_directory_path() / ("dwdp-bundle-" + std::to_string(getpid()));
    fs::create_directories(dir / "scenarios");
    fs::copy_file(dwdp::testing::ExecutableDir() / "test_paths_test", dir / "test_paths_test",
                  fs::copy_options::overwrite_existing);
    std::ofstream(dir / "scenarios" / "only-in-the-bundle.yaml") << "name: marker\n";
  }
  ~FakeBundle() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

}  // namespace

// Run by the copy in the fake bundle only (the parent sets DWDP_TEST_BUNDLE_CHILD).
BOOST_AUTO_TEST_CASE(child_sees_the_bundle_scenarios) {
  if (std::getenv("DWDP_TEST_BUNDLE_CHILD") == nullptr) return;
  const fs::path marker = dwdp::testing::SourcePath("scenarios/only-in-the-bundle.yaml");
  BOOST_TEST(fs::exists(marker), marker.string());
}

BOOST_AUTO_TEST_CASE(a_copied_test_finds_the_scenarios_next_to_it) {
  if (std::getenv("DWDP_TEST_BUNDLE_CHILD") != nullptr) return;
  FakeBundle bundle;
  const auto result = RunCommand({"env", "-u", "DWDP_SOURCE_DIR", "DWDP_TEST_BUNDLE_CHILD=1",
                                  (bundle.dir / "test_paths_test").string(),
                                  "--run_test=child_sees_the_bundle_scenarios"});
  BOOST_TEST(result.exit_code == 0, result.out + result.err);
}

BOOST_AUTO_TEST_CASE(a_wrong_source_dir_variable_is_one_clear_sentence) {
  if (std::getenv("DWDP_TEST_BUNDLE_CHILD") != nullptr) return;
  setenv("DWDP_SOURCE_DIR", "/nonexistent/dwdp", 1);
  try {
    (void)dwdp::testing::SourcePath("scenarios/default.yaml");
    BOOST_FAIL("no error for a DWDP_SOURCE_DIR without scenarios/");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(std::string(e.what()).find("DWDP_SOURCE_DIR is '/nonexistent/dwdp'") == 0u,
               e.what());
  }
  unsetenv("DWDP_SOURCE_DIR");
}
