#include "core/calibrate/calibration.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dwdp {
namespace {

void SetMeasured(Quantity& q, const std::optional<double>& value) {
  if (!value) return;
  q.value = *value;
  q.source = Provenance::kMeasured;
}

}  // namespace

HardwareProfile ApplyCalibration(const HardwareProfile& base, const CalibrationMeasurements& m,
                                 const CalibrationIdentity& identity) {
  HardwareProfile hw = base;
  hw.name = identity.name;
  hw.source_file.clear();
  if (!identity.gpu_name.empty()) hw.gpu_name = identity.gpu_name;
  hw.measured_on = identity.measured_on;
  SetMeasured(hw.granularity, m.granularity);
  SetMeasured(hw.peer_copy_bw, m.peer_copy_bw);
  if (m.copy_latency_ns) SetMeasured(hw.copy_latency_ns, std::max(0.0, *m.copy_latency_ns));
  SetMeasured(hw.local_copy_bw, m.local_copy_bw);
  SetMeasured(hw.hbm_bytes, m.hbm_bytes);
  if (m.concurrent_pull_efficiency) {
    // The simulator only shrinks ingress (an efficiency above 1 is refused there).
    SetMeasured(hw.concurrent_pull_efficiency, std::clamp(*m.concurrent_pull_efficiency, 0.0, 1.0));
  }
  SetMeasured(hw.egress_bw, m.egress_bw);
  if (m.egress_fanout_efficiency) {
    // The simulator takes a fraction in (0, 1].
    SetMeasured(hw.egress_fanout_efficiency, std::clamp(*m.egress_fanout_efficiency, 1e-3, 1.0));
  }
  SetMeasured(hw.fabric_bw, m.fabric_bw);
  SetMeasured(hw.fabric_share_spread, m.fabric_share_spread);
  SetMeasured(hw.copy_latency_loaded_ns, m.copy_latency_loaded_ns);
  SetMeasured(hw.compute_read_bw, m.compute_read_bw);
  if (m.copy_latency_on_link) {
    SetMeasured(hw.copy_latency_on_link, std::clamp(*m.copy_latency_on_link, 0.0, 1.0));
  }
  if (m.compute_slowdown) SetMeasured(hw.compute_slowdown, std::max(0.0, *m.compute_slowdown));
  SetMeasured(hw.host_issue_ns, m.host_issue_ns);
  SetMeasured(hw.event_ns, m.event_ns);
  SetMeasured(hw.map_ns, m.map_ns);
  if (m.stream_queue_entries) {
    SetMeasured(hw.stream_queue_entries, std::round(std::max(0.0, *m.stream_queue_entries)));
  }
  if (m.imex_permitted) hw.imex_permitted = *m.imex_permitted;
  for (const auto& [q, value] : {std::pair{&hw.compute_efficiency, m.compute_efficiency},
                                 std::pair{&hw.memory_efficiency, m.memory_efficiency}}) {
    if (value) SetMeasured(*q, std::clamp(*value, 1e-6, 1.0));
  }
  for (const MoeComputeTable& table : m.moe_compute) {
    auto same =
        std::find_if(hw.moe_compute.begin(), hw.moe_compute.end(), [&](const MoeComputeTable& t) {
          return t.hidden == table.hidden && t.intermediate == table.intermediate &&
                 t.num_experts == table.num_experts && t.top_k == table.top_k &&
                 t.dtype == table.dtype;
        });
    if (same != hw.moe_compute.end()) {
      *same = table;
    } else {
      hw.moe_compute.push_back(table);
    }
  }
  return hw;
}

std::string MeasuredOnLine(const std::string& gpu_name, int64_t gpus, const std::string& driver,
                           int cuda_driver_version, const std::string& date) {
  std::string line = absl::StrFormat("%s ×%d", gpu_name, gpus);
  const std::string cuda = cuda_driver_version > 0
                               ? absl::StrFormat("CUDA %d.%d", cuda_driver_version / 1000,
                                                 (cuda_driver_version % 1000) / 10)
                               : "";
  if (!driver.empty() && !cuda.empty()) {
    absl::StrAppend(&line, ", driver ", driver, " / ", cuda);
  } else if (!driver.empty()) {
    absl::StrAppend(&line, ", driver ", driver);
  } else if (!cuda.empty()) {
    absl::StrAppend(&line, ", driver ", cuda);
  }
  absl::StrAppend(&line, ", ", date);
  return line;
}

}  // namespace dwdp
