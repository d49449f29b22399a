#pragma once

// Whether a setup/teardown gave back the device memory it took, judged from cuMemGetInfo-style
// readings of the whole device. Such readings only mean something when this process has its
// GPU to itself: ranks sharing a GPU (the normal case on a one-GPU workstation) allocate and
// free in between, so the device-wide figure moves either way for reasons of theirs. The exact
// check, what this process's driver still holds by name, is made separately and always
// (Driver::LiveResources).

#include <cstdint>
#include <optional>
#include <string>

namespace dwdp {

struct DeviceMemoryReadings {
  bool alone_on_gpu = false;      // no other process of the job uses this GPU
  uint64_t before = 0;            // in use before setup (after the driver's warm-up)
  uint64_t after = 0;             // after teardown
  std::optional<uint64_t> again;  // after one more setup/teardown, when it was run
};

struct DeviceMemoryVerdict {
  bool leak = false;       // a failure: memory grows with every setup/teardown
  bool run_again = false;  // run one more setup/teardown and judge again with `again`
  uint64_t retained = 0;   // kept by the driver once (not growing)
  std::string message;     // one sentence, for the report
};

// The rules:
//   * GPU shared with other ranks: nothing is judged (the driver's accounting still is).
//   * less in use after than before: fine ("shrinks": freed by something else, or the driver).
//   * more in use after than before: one more setup/teardown decides. The driver keeps a little
//     after the first run that maps peer memory (seen: one 2 MiB granule per GPU); a leak grows
//     again by about the same amount, the driver's one-time cost does not.
DeviceMemoryVerdict JudgeDeviceMemory(const DeviceMemoryReadings& readings);

}  // namespace dwdp
