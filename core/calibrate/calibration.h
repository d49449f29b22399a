#pragma once

// Turning what `dwdp calibrate` measured into a hardware profile: the numbers that were measured
// replace the base preset's, marked `measured`; everything else keeps the base's value and
// provenance, so a reader of the profile sees which numbers this machine vouches for.

#include <optional>
#include <string>
#include <vector>

#include "core/config/scenario.h"

namespace dwdp {

// Each field is set only when it was measured (a phase that needs more ranks than the run had
// leaves its fields empty).
struct CalibrationMeasurements {
  std::optional<double> granularity;                 // bytes
  std::optional<double> peer_copy_bw;                // bytes/s, fitted slope of one pair
  std::optional<double> copy_latency_ns;             // fitted intercept
  std::optional<double> local_copy_bw;               // bytes/s, device-to-device
  std::optional<double> hbm_bytes;                   // total device memory
  std::optional<double> concurrent_pull_efficiency;  // ingress from >1 peer / peer_copy_bw
  std::optional<double> egress_bw;                   // bytes/s one GPU served to all its pullers
  std::optional<double> egress_fanout_efficiency;    // egress share with >= 2 readers (prefetch)
  std::optional<double> fabric_bw;                   // bytes/s per GPU, all pulling; 0: no limit
  std::optional<double> fabric_share_spread;         // CV of a rank's rotate rate over repetitions
  std::optional<double> copy_latency_on_link;        // fitted by simulating round robin pieces
  std::optional<double> copy_latency_loaded_ns;      // the same, when on_link = 1 is too short
  std::optional<double> compute_read_bw;             // stand-in kernel: bytes read / time
  std::optional<double> compute_slowdown;            // stand-in kernel stretch under copies
  std::optional<double> host_issue_ns;               // host cost of one copy call
  std::optional<double> event_ns;                    // host cost of one record or wait
  std::optional<double> map_ns;                      // (map + set_access + unmap) / 3
  std::optional<double> stream_queue_entries;        // entries a stream took before blocking
  std::optional<bool> imex_permitted;                // FABRIC handles were usable
  std::vector<MoeComputeTable> moe_compute;          // the routed-MoE layer, per shape
  std::optional<double> compute_efficiency;          // roofline fitted to the MoE times
  std::optional<double> memory_efficiency;
};

struct CalibrationIdentity {
  std::string name;         // the profile's name
  std::string gpu_name;     // as the driver reports it
  std::string measured_on;  // see MeasuredOnLine
};

// The base profile with every measured number replaced (provenance `measured`) and the identity
// fields set. Values the simulator cannot take are brought into range here, with the reason:
// concurrent_pull_efficiency above 1 (pulls from several peers beat one pair's fit by noise) is
// 1; a negative latency or slowdown (fit or timing noise around zero) is 0; copy_latency_on_link
// is a fraction, kept in [0, 1], and so are the roofline's efficiencies. A measured MoE table
// replaces the base's table of the same shape and dtype; the base's other tables stay.
HardwareProfile ApplyCalibration(const HardwareProfile& base, const CalibrationMeasurements& m,
                                 const CalibrationIdentity& identity);

// "NVIDIA H100 80GB HBM3 ×4, driver 580.95.05 / CUDA 13.0, 2026-11-28". `driver` may be empty
// (then only the CUDA version is given); `cuda_driver_version` is the driver API version number
// (13000 for 13.0), 0 when unknown.
std::string MeasuredOnLine(const std::string& gpu_name, int64_t gpus, const std::string& driver,
                           int cuda_driver_version, const std::string& date);

}  // namespace dwdp
