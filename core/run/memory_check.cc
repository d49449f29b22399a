#include "core/run/memory_check.h"

#include "absl/strings/str_format.h"
#include "core/util/bytes.h"

namespace dwdp {

DeviceMemoryVerdict JudgeDeviceMemory(const DeviceMemoryReadings& r) {
  DeviceMemoryVerdict v;
  if (!r.alone_on_gpu) {
    v.message =
        "device memory not compared: other ranks share this GPU and change its free memory; the "
        "driver's own accounting was checked instead";
    return v;
  }
  if (r.after <= r.before) {
    v.message = r.after == r.before
                    ? absl::StrFormat("device memory in use is back to %s", FormatBytes(r.before))
                    : absl::StrFormat("device memory in use shrinks from %s to %s",
                                      FormatBytes(r.before), FormatBytes(r.after));
    return v;
  }
  if (!r.again) {
    v.run_again = true;
    v.message = absl::StrFormat(
        "device memory in use grows from %s to %s; one more setup/teardown tells a leak from "
        "what the driver keeps once",
        FormatBytes(r.before), FormatBytes(r.after));
    return v;
  }
  if (*r.again > r.after) {
    v.leak = true;
    v.message = absl::StrFormat(
        "device memory in use grows with every setup/teardown: %s before, %s after the run, %s "
        "after one more setup/teardown",
        FormatBytes(r.before), FormatBytes(r.after), FormatBytes(*r.again));
    return v;
  }
  v.retained = r.after - r.before;
  v.message = absl::StrFormat(
      "device memory in use: %s before, %s after the run and %s after one more setup/teardown "
      "(%s kept by the driver once, not growing)",
      FormatBytes(r.before), FormatBytes(r.after), FormatBytes(*r.again), FormatBytes(v.retained));
  return v;
}

}  // namespace dwdp
