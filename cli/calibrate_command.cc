// dwdp calibrate --out PROFILE.yaml: measures the numbers of the simulator's timing model
// (SIMULATOR.md §2) and writes them as a hardware profile: the `--base` preset with each
// measured number replaced (provenance `measured`).
//
// Where the measurements come from:
//   * the GPUs of this machine, one process per GPU under mpirun (backends/cuda/cuda_calibrate.h);
//   * `--backend sim --hardware PROFILE --ranks N`: a simulated machine of that profile
//     (backends/sim/sim_calibrate.h), which shows what the measurements recover of it;
//   * `--from-raw RAW.json`: the raw measurements an earlier run saved with --raw.
// Every path ends in the same derivation (core/calibrate/derive.h) of the same raw record, so
// the same measurements give the same profile and summary. This file parses the options and
// writes the files.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/sim/copy_schedules.h"
#include "backends/sim/sim_calibrate.h"
#include "cli/common.h"
#include "core/calibrate/calibration.h"
#include "core/calibrate/derive.h"
#include "core/calibrate/measure.h"
#include "core/calibrate/prefetch.h"
#include "core/calibrate/raw.h"
#include "core/config/loader.h"
#include "core/util/bytes.h"

#if defined(DWDP_HAVE_CUDA)
#include "backends/cuda/cuda_calibrate.h"
#endif

namespace dwdp::cli {
namespace {

struct CalibrateOptions {
  std::string out;
  std::string base = "h100-sxm";
  std::string max_bytes = "1GiB";
  std::string name;
  std::string raw;
  std::string from_raw;
  int repetitions = 5;
  double timeout_s = 60;
  std::string backend = "cuda";
  std::string hardware;
  int64_t ranks = 2;
  std::vector<std::string> moe_shapes;
  std::string moe_tokens;
  std::string only;
  std::string prefetch_drift;
};

// What every backend measures, from the options.
absl::StatusOr<MeasureOptions> MeasureOptionsOf(const CalibrateOptions& opts, uint64_t max_bytes) {
  MeasureOptions measure;
  measure.max_bytes = max_bytes;
  measure.repetitions = opts.repetitions;
  measure.only_compute = opts.only == kOnlyCompute;
  measure.only_prefetch = opts.only == kOnlyPrefetch;
  if (!opts.prefetch_drift.empty()) {
    if (!measure.only_prefetch) {
      return absl::InvalidArgumentError(
          "--prefetch-drift sets the free starts of the prefetch rotation: use it with --only "
          "prefetch");
    }
    absl::StatusOr<std::vector<double>> drifts = ParsePrefetchDrifts(opts.prefetch_drift);
    if (!drifts.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prefetch-drift: ", drifts.status().message()));
    }
    measure.prefetch_drift_steps = *drifts;
  }
  for (const std::string& text : opts.moe_shapes) {
    absl::StatusOr<MoeShape> shape = ParseMoeShape(text);
    if (!shape.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--moe-shape: ", shape.status().message()));
    }
    measure.moe_shapes.push_back(*shape);
  }
  if (!opts.moe_tokens.empty()) {
    absl::StatusOr<std::vector<int64_t>> tokens = ParseTokenCounts(opts.moe_tokens);
    if (!tokens.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--moe-tokens: ", tokens.status().message()));
    }
    measure.moe_tokens = *tokens;
  }
  if (measure.only_compute && measure.moe_shapes.empty()) {
    return absl::InvalidArgumentError(
        "--only compute times the routed-MoE layer: give its shape with --moe-shape");
  }
  return measure;
}

// Checks before any measurement that the profile can be written where asked.
absl::Status CheckWritable(const std::string& path) {
  std::filesystem::path p(path);
  std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("the directory of --out '", path, "' does not exist"));
  }
  if (access(dir.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("the directory of --out '", path, "' is not writable"));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", tmp, "'"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return absl::PermissionDeniedError(absl::StrCat("cannot move the profile to '", path, "'"));
  }
  return absl::OkStatus();
}

// Derives the profile from the raw measurements, writes it, checks that it loads back and prints
// the summary; with --raw also writes the raw record with the derivation's summary (kept also
// when no profile came of it: a fixed dwdp can derive it with --from-raw). Returns the exit
// code.
int WriteCalibration(const CalibrationRaw& raw, const HardwareProfile& base,
                     const CalibrateOptions& opts) {
  absl::StatusOr<CalibrationDerivation> d = DeriveCalibration(raw, base, sim::SimulateCopySchedule);
  int code = kExitOk;
  if (!d.ok()) {
    std::cerr << "error: " << d.status().message() << "; no profile written\n";
    code = kExitInvalid;
  } else {
    const std::string name =
        !opts.name.empty() ? opts.name : std::filesystem::path(opts.out).stem().string();
    const HardwareProfile profile =
        ApplyCalibration(base, d->m, {name, d->gpu_name, d->measured_on});
    const std::string yaml = absl::StrCat(
        "# Written by `dwdp calibrate` from the '", base.name,
        "' preset: every number marked `measured` was measured on this machine, the others are "
        "the preset's\n",
        HardwareProfileToYaml(profile));
    if (absl::Status s = WriteFileAtomically(opts.out, yaml); !s.ok()) {
      std::cerr << "error: " << s.message() << "\n";
      return kExitUsage;
    }
    // The written file must load as a profile, or the calibration is of no use.
    if (auto loaded = LoadHardwareProfileFile(opts.out); !loaded.ok()) {
      std::cerr << "error: the written profile does not load back: " << loaded.status().message()
                << "\n";
      return kExitInvalid;
    }
    std::cout << d->report << "\nwrote " << opts.out << "\n";
  }
  if (opts.raw.empty()) return code;
  nlohmann::json json = CalibrationRawToJson(raw);
  if (d.ok()) {
    json["derived"] = d->summary;
    json["notes"] = d->notes;
    json["warnings"] = d->warnings;
  }
  std::ofstream r(opts.raw);
  r << json.dump(1) << "\n";
  if (!r) {
    std::cerr << "error: cannot write the raw measurements to '" << opts.raw << "'\n";
    return kExitUsage;
  }
  std::cout << "wrote the raw measurements to " << opts.raw << "\n";
  return code;
}

absl::StatusOr<nlohmann::json> ReadRawFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read the raw measurements '", path, "' (--from-raw)"));
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the raw measurements '", path,
        "' are not valid JSON (write them with `dwdp calibrate --raw FILE` on the GPUs)"));
  }
  return j;
}

int Fail(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return kExitUsage;
}

// dwdp calibrate --from-raw: the profile of a saved run. The base is --base when given, else the
// one the run used.
int CalibrateFromRaw(const CalibrateOptions& opts, bool base_given) {
  absl::StatusOr<nlohmann::json> json = ReadRawFile(opts.from_raw);
  if (!json.ok()) return Fail(std::string(json.status().message()));
  absl::StatusOr<CalibrationRaw> raw = ParseCalibrationRaw(*json);
  if (!raw.ok()) {
    return Fail(absl::StrCat("'", opts.from_raw,
                             "' is not a `dwdp calibrate --raw` file: ", raw.status().message()));
  }
  const std::string base_name = base_given     ? opts.base
                                : raw->machine ? raw->machine->base
                                               : std::string(kDefaultCalibrationBase);
  absl::StatusOr<HardwareProfile> base = ResolveHardware(base_name);
  if (!base.ok()) {
    return Fail(absl::StrCat(base_given ? "--base" : "the base profile the raw file names", ": ",
                             base.status().message(),
                             base_given ? "" : " (choose one with --base)"));
  }
  if (absl::Status s = CheckWritable(opts.out); !s.ok()) return Fail(std::string(s.message()));
  std::cout << "derived from the raw measurements in " << opts.from_raw << "\n";
  return WriteCalibration(*raw, *base, opts);
}

// dwdp calibrate --backend sim: the simulator calibrated against the --hardware profile. The
// base defaults to that profile, so what is not measured keeps its number.
int CalibrateSimulator(const CalibrateOptions& opts, bool base_given,
                       const MeasureOptions& measure) {
  if (opts.hardware.empty()) {
    return Fail("--backend sim calibrates a simulated machine: name its profile with --hardware");
  }
  const int64_t min_ranks = measure.only_compute ? 1 : 2;
  if (opts.ranks < min_ranks || opts.ranks > 1024) {
    return Fail(
        absl::StrFormat("--ranks must be between %d and 1024, got %d", min_ranks, opts.ranks));
  }
  absl::StatusOr<HardwareProfile> hardware = ResolveHardware(opts.hardware);
  if (!hardware.ok()) return Fail(absl::StrCat("--hardware: ", hardware.status().message()));
  const std::string base_name = base_given ? opts.base : opts.hardware;
  absl::StatusOr<HardwareProfile> base = ResolveHardware(base_name);
  if (!base.ok()) return Fail(absl::StrCat("--base: ", base.status().message()));
  if (absl::Status s = CheckWritable(opts.out); !s.ok()) return Fail(std::string(s.message()));
  sim::SimCalibrationOptions sim_options;
  sim_options.ranks = opts.ranks;
  sim_options.measure = measure;
  sim_options.base = base_name;
  absl::StatusOr<CalibrationRaw> raw = sim::MeasureOnSimulator(*hardware, sim_options);
  if (!raw.ok()) {
    std::cerr << "error: " << raw.status().message() << "\n";
    return kExitInvalid;
  }
  return WriteCalibration(*raw, *base, opts);
}

int CalibrateGpus(const CalibrateOptions& opts, const HardwareProfile& base,
                  const MeasureOptions& measure) {
#if defined(DWDP_HAVE_CUDA)
  cuda::GpuCalibrationOptions gpu;
  gpu.measure = measure;
  gpu.base = opts.base;
  gpu.timeout_s = opts.timeout_s;
  return cuda::CalibrateOnGpus(
      gpu, [&](const CalibrationRaw& raw) { return WriteCalibration(raw, base, opts); });
#else
  (void)opts;
  (void)base;
  (void)measure;
  return Fail(
      "this dwdp was built without the cuda backend (the CUDA toolkit or MPI was not found at "
      "build time); calibrate needs it to measure: rebuild with -DDWDP_CUDA=ON, or derive a "
      "profile from a saved run with --from-raw");
#endif
}

}  // namespace

void RegisterCalibrate(CLI::App& app, CommandContext& ctx) {
  auto opts = std::make_shared<CalibrateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate",
      "Measure a hardware profile on this machine's GPUs (cuda backend, mpirun -np N >= 2) or on "
      "a simulated machine (--backend sim), or derive it again from saved raw measurements "
      "(--from-raw)");
  cmd->add_option("--out", opts->out, "Profile YAML file to write")->required();
  CLI::Option* base_option = cmd->add_option(
      "--base", opts->base,
      "Preset or profile whose numbers are kept where nothing is measured (with --from-raw: "
      "default the one the run used; with --backend sim: default --hardware)");
  base_option->capture_default_str();
  CLI::Option* max_bytes =
      cmd->add_option("--max-bytes", opts->max_bytes,
                      "Size of each rank's shareable buffer = the largest copy measured");
  max_bytes->capture_default_str();
  cmd->add_option("--name", opts->name, "Profile name (default: the --out file's stem)");
  CLI::Option* repetitions =
      cmd->add_option("--repetitions", opts->repetitions, "Timed repetitions of every measurement");
  repetitions->check(CLI::Range(1, 100))->capture_default_str();
  CLI::Option* raw =
      cmd->add_option("--raw", opts->raw, "Also write every rank's raw measurements as JSON");
  CLI::Option* timeout = cmd->add_option(
      "--timeout", opts->timeout_s, "Seconds to wait for a peer in any collective before failing");
  timeout->check(CLI::Range(1.0, 3600.0))->capture_default_str();
  CLI::Option* backend =
      cmd->add_option("--backend", opts->backend,
                      "Where to measure: cuda (the GPUs, under mpirun) or sim (a simulated "
                      "machine of --hardware)");
  backend->check(CLI::IsMember({"cuda", "sim"}))->capture_default_str();
  CLI::Option* hardware = cmd->add_option(
      "--hardware", opts->hardware, "With --backend sim: the simulated machine (preset or file)");
  CLI::Option* ranks =
      cmd->add_option("--ranks", opts->ranks, "With --backend sim: the simulated GPUs (default 2)");
  CLI::Option* moe_shape = cmd->add_option(
      "--moe-shape", opts->moe_shapes,
      "HIDDEN,INTER,EXPERTS,TOPK: also time the routed-MoE layer of this shape (BF16) on rank "
      "0's GPU, alone and under inbound copies, into the profile's moe_compute (repeatable)");
  CLI::Option* moe_tokens = cmd->add_option(
      "--moe-tokens", opts->moe_tokens,
      "Tokens per rank the MoE layer is timed at (default 256,512,1K,...,64K; capped by memory)");
  CLI::Option* only = cmd->add_option(
      "--only", opts->only,
      "compute: only the MoE compute phase (one rank is then enough); prefetch: only the "
      "prefetch rotation (every rank pulls a piece from every peer in rotation order, started "
      "by one flag, after a barrier and free with drift) and the fan-out fit");
  only->check(CLI::IsMember({std::string(kOnlyCompute), std::string(kOnlyPrefetch)}));
  CLI::Option* prefetch_drift = cmd->add_option(
      "--prefetch-drift", opts->prefetch_drift,
      "With --only prefetch: the free starts' drifts in steps (one piece at the pair rate): "
      "rank r starts r times the drift late (default 0,0.25,1)");
  cmd->add_option("--from-raw", opts->from_raw,
                  "Derive the profile from a --raw file of an earlier run instead of measuring "
                  "(no GPU needed)")
      ->excludes(max_bytes)
      ->excludes(repetitions)
      ->excludes(raw)
      ->excludes(timeout)
      ->excludes(backend)
      ->excludes(hardware)
      ->excludes(ranks)
      ->excludes(moe_shape)
      ->excludes(moe_tokens)
      ->excludes(only)
      ->excludes(prefetch_drift);
  cmd->callback([opts, base_option, timeout, hardware, ranks, &ctx] {
    if (!opts->from_raw.empty()) {
      ctx.exit_code = CalibrateFromRaw(*opts, base_option->count() > 0);
      return;
    }
    absl::StatusOr<uint64_t> max_bytes = ParseByteSize(opts->max_bytes);
    if (!max_bytes.ok()) {
      return ReportError(absl::StrCat("--max-bytes: ", max_bytes.status().message()), kExitUsage,
                         ctx);
    }
    if (*max_bytes < 4 * kMiB || *max_bytes > 64 * kGiB) {
      return ReportError(absl::StrFormat("--max-bytes must be between 4 MiB and 64 GiB, got %s",
                                         FormatBytes(*max_bytes)),
                         kExitUsage, ctx);
    }
    absl::StatusOr<MeasureOptions> measure = MeasureOptionsOf(*opts, *max_bytes);
    if (!measure.ok()) return ReportError(measure.status(), kExitUsage, ctx);
    if (opts->backend == "sim") {
      if (timeout->count() > 0) {
        return ReportError(
            "--timeout bounds the waits for peer processes on GPUs; the simulator "
            "has none",
            kExitUsage, ctx);
      }
      ctx.exit_code = CalibrateSimulator(*opts, base_option->count() > 0, *measure);
      return;
    }
    if (hardware->count() > 0 || ranks->count() > 0) {
      return ReportError(
          "--hardware and --ranks choose the simulated machine of --backend sim; on GPUs the "
          "machine is this one and the ranks are mpirun's",
          kExitUsage, ctx);
    }
    absl::StatusOr<HardwareProfile> base = ResolveHardware(opts->base);
    if (!base.ok()) return ReportError(base.status(), kExitUsage, ctx);
    if (absl::Status s = CheckWritable(opts->out); !s.ok()) {
      return ReportError(s, kExitUsage, ctx);
    }
    ctx.exit_code = CalibrateGpus(*opts, *base, *measure);
  });
}

}  // namespace dwdp::cli
