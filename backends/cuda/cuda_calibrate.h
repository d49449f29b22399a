#pragma once

// `mpirun -np N dwdp calibrate`: the calibration's measurements (core/calibrate/measure.h) on
// the GPUs of one machine, one process per GPU. This is the GPU-side glue: bring-up through
// CudaSession, the one-rank-per-GPU check, the driver's warm-up, the device-memory check around
// the measurements (core/run/memory_check.h) and the agreed exit code at the end.
//
// Free of CUDA and MPI headers, like cuda_session.h: the dwdp binary loads the backend at run
// time.

#include <functional>
#include <string>

#include "core/calibrate/measure.h"
#include "core/calibrate/raw.h"

namespace dwdp::cuda {

struct GpuCalibrationOptions {
  MeasureOptions measure;
  std::string base;       // `--base`, recorded in the raw file's machine record
  double timeout_s = 60;  // bound on every wait for a peer
};

// Rank 0's part once every rank has measured: derive the profile from the gathered record and
// write it. Returns the exit code. Called after every backend object is gone, before MPI ends.
using CalibrationWriter = std::function<int(const CalibrationRaw& raw)>;

// Runs the calibration on this process's GPU (every rank of the job calls it) and returns the
// exit code every rank agreed on. Errors go to stderr as "error: rank N: ...". A job of one
// rank, or two ranks on one GPU, is a usage error (exit 2).
int CalibrateOnGpus(const GpuCalibrationOptions& options, const CalibrationWriter& write_on_rank0);

}  // namespace dwdp::cuda
