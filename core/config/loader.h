#pragma once

// Scenario loading per INTERFACE.md: model and hardware presets, unit strings for sizes,
// strict keys. Every error names file:line:col and the key, in one sentence.
//
// The loader checks structure (types, units, ranges that no scenario can use). Whether the
// DWDP partition works is core/partition's job, so e.g. `num_experts_per_worker: 0` loads
// and fails validation with check `size_positive`.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/config/scenario.h"

namespace dwdp {

// Missing file or directory: NotFoundError / FailedPreconditionError; malformed content:
// InvalidArgumentError. The message starts with "FILE:LINE:COL: " where a position applies.
absl::StatusOr<Scenario> LoadScenarioFile(const std::string& path);

// `display_name` stands in for the file name in messages.
absl::StatusOr<Scenario> LoadScenarioString(absl::string_view yaml,
                                            absl::string_view display_name = "<string>");

// A hardware profile file (the same map as an inline `hardware:` entry).
absl::StatusOr<HardwareProfile> LoadHardwareProfileFile(const std::string& path);

// Input lengths, one whole number of tokens per line ('#' comments and blank lines skipped).
// An empty file, a line that is not a length, or a missing file is an error naming the file.
absl::StatusOr<std::vector<int64_t>> LoadLengthFile(const std::string& path);

// Resolves a preset name or a profile file path.
absl::StatusOr<HardwareProfile> ResolveHardware(const std::string& name_or_path);

absl::StatusOr<ModelSpec> ModelPreset(absl::string_view name);
std::vector<std::string> ModelPresetNames();
absl::StatusOr<HardwareProfile> HardwarePreset(absl::string_view name);
std::vector<std::string> HardwarePresetNames();

// A profile as YAML that LoadHardwareProfileFile reads back (used by `dwdp calibrate`).
std::string HardwareProfileToYaml(const HardwareProfile& profile);

}  // namespace dwdp
