#pragma once

// The end of a setup phase on a group of ranks: every rank allgathers its own result, so all
// ranks go on to the next collective or none does. A rank that failed alone (out of device
// memory, a refused map) would otherwise tear down while its peers wait in the next collective
// (MPI pairs their messages with its teardown's; NCCL never times out).

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dwdp {

// This rank's vote: its status code and message.
std::vector<uint8_t> SetupVote(const absl::Status& local);

// OK when every vote is OK; else the first failed rank's code with "PHASE failed on rank R:
// its message".
absl::Status AgreedSetup(absl::string_view phase, const std::vector<std::vector<uint8_t>>& votes);

}  // namespace dwdp
