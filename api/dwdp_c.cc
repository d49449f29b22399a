// include/dwdp/dwdp_c.h: the C ABI of libdwdp.so.
//
// The runtime functions are a thin layer over the C++ engine API (dwdp::api::Runtime), so both
// APIs behave alike; the inspection functions call the same library functions as the CLI's
// `--format json` paths (core/report/inspect_json.h, core/plan/plan_request.h), so the
// documents are the CLI's. Nothing here throws across the boundary: every entry point catches,
// and reports through dwdp_last_error().

#include "dwdp/dwdp_c.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "api/engine_config.h"
#include "core/config/loader.h"
#include "core/plan/plan_request.h"
#include "core/report/inspect_json.h"
#include "dwdp/dwdp.h"

struct dwdp_runtime {
  std::unique_ptr<dwdp::api::Runtime> runtime;
  std::vector<int64_t> moe_layers;  // sorted, for the layer checks
  int64_t num_weights = 0;
  bool closed = false;
};

namespace {

using dwdp::Scenario;
using dwdp::api::Config;

#ifdef DWDP_HAVE_CUDA
constexpr bool kHaveCuda = true;
#else
constexpr bool kHaveCuda = false;
#endif

thread_local std::string last_error;

// Records `message` as the thread's last error, with the "dwdp: " prefix of every sentence.
int Fail(int code, absl::string_view message) {
  last_error =
      absl::StartsWith(message, "dwdp: ") ? std::string(message) : absl::StrCat("dwdp: ", message);
  return code;
}

int Fail(const absl::Status& status) {
  return Fail(absl::IsNotFound(status) ? DWDP_ERROR_NOT_FOUND : DWDP_ERROR_INVALID_ARGUMENT,
              status.message());
}

// Runs an entry point's body with the thread's error cleared, turning any exception into an
// error code: nothing may unwind into a C caller.
template <typename Body>
int Guarded(const char* function, Body&& body) {
  last_error.clear();
  try {
    return body();
  } catch (const std::exception& e) {
    return Fail(DWDP_ERROR_RUNTIME,
                absl::StrFormat("%s failed unexpectedly: %s", function, e.what()));
  } catch (...) {
    return Fail(DWDP_ERROR_RUNTIME, absl::StrFormat("%s failed unexpectedly", function));
  }
}

// A malloc'd copy of the document for the caller (dwdp_free). Invalid UTF-8 in a name is
// replaced rather than thrown on.
int Emit(const nlohmann::json& doc, char** out) {
  const std::string text = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  char* copy = static_cast<char*>(std::malloc(text.size() + 1));
  if (copy == nullptr) return Fail(DWDP_ERROR_RUNTIME, "out of host memory for the result");
  std::memcpy(copy, text.c_str(), text.size() + 1);
  *out = copy;
  return DWDP_OK;
}

absl::StatusOr<Scenario> LoadScenario(const dwdp_scenario* scenario) {
  if (scenario == nullptr) return absl::InvalidArgumentError("no scenario was given (NULL)");
  if (scenario->path != nullptr) return dwdp::LoadScenarioFile(scenario->path);
  if (scenario->text == nullptr) {
    return absl::InvalidArgumentError("the scenario has neither a path nor a text");
  }
  const std::string name = scenario->name != nullptr ? scenario->name : "<string>";
  absl::StatusOr<Scenario> loaded = dwdp::LoadScenarioString(scenario->text, name);
  if (loaded.ok()) loaded->source_file = name;
  return loaded;
}

// --- plan options ------------------------------------------------------------------------

absl::Status OptionError(const std::string& key, absl::string_view what,
                         const nlohmann::json& value) {
  return absl::InvalidArgumentError(
      absl::StrFormat("plan option '%s' must be %s; got %s", key, what,
                      value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
}

absl::StatusOr<int64_t> IntIn(const std::string& key, const nlohmann::json& value, int64_t low,
                              int64_t high) {
  const std::string what = absl::StrFormat("an integer in [%d, %d]", low, high);
  if (!value.is_number_integer()) return OptionError(key, what, value);
  const int64_t v = value.get<int64_t>();
  if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(high)) {
    return OptionError(key, what, value);
  }
  if (v < low || v > high) return OptionError(key, what, value);
  return v;
}

absl::StatusOr<std::vector<int64_t>> IntsIn(const std::string& key, const nlohmann::json& value,
                                            int64_t low, int64_t high) {
  const std::string what = absl::StrFormat("a list of integers in [%d, %d]", low, high);
  if (!value.is_array()) return OptionError(key, what, value);
  std::vector<int64_t> out;
  for (const nlohmann::json& item : value) {
    absl::StatusOr<int64_t> v = IntIn(key, item, low, high);
    if (!v.ok()) return OptionError(key, what, value);
    out.push_back(*v);
  }
  return out;
}

absl::StatusOr<std::string> OneOf(const std::string& key, const nlohmann::json& value,
                                  const std::vector<std::string>& choices) {
  const std::string what = absl::StrCat("one of ", absl::StrJoin(choices, ", "));
  if (!value.is_string()) return OptionError(key, what, value);
  const std::string text = value.get<std::string>();
  if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
    return OptionError(key, what, value);
  }
  return text;
}

absl::StatusOr<bool> Flag(const std::string& key, const nlohmann::json& value) {
  if (!value.is_boolean()) return OptionError(key, "true or false", value);
  return value.get<bool>();
}

// The options of `dwdp plan` with the CLI's ranges; `hardware` receives --hardware's value.
absl::Status ParsePlanOptions(const char* text, dwdp::PlanRequest* request, std::string* hardware) {
  if (text == nullptr) return absl::OkStatus();
  const nlohmann::json options = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (options.is_discarded() || !options.is_object()) {
    return absl::InvalidArgumentError("the plan options are not a JSON object");
  }
  static const std::vector<std::string> kKeys = {
      "hardware",        "dwdp_sizes",       "max_dwdp_size", "num_buffers",
      "tokens_per_rank", "sequence_lengths", "contention",    "tokens_cv",
      "all_recipes",     "recommend",        "objective"};
  bool recommend = false;
  dwdp::PlanObjective objective = dwdp::PlanObjective::kThroughput;
  dwdp::PlanOptions& o = request->options;
  for (const auto& [key, value] : options.items()) {
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "plan option '%s' is unknown; the options are %s", key, absl::StrJoin(kKeys, ", ")));
    }
    if (value.is_null()) continue;  // the default, as when the option is left out
    absl::Status status;
    auto take = [&status](auto parsed, auto& into) {
      if (parsed.ok()) {
        into = *std::move(parsed);
      } else {
        status = parsed.status();
      }
    };
    if (key == "hardware") {
      if (!value.is_string()) return OptionError(key, "a preset name or a profile path", value);
      *hardware = value.get<std::string>();
    } else if (key == "dwdp_sizes") {
      take(IntsIn(key, value, 2, 4096), o.dwdp_sizes);
    } else if (key == "max_dwdp_size") {
      take(IntIn(key, value, 2, 4096), o.max_dwdp_size);
    } else if (key == "num_buffers") {
      take(IntsIn(key, value, 2, 64), o.num_buffers);
    } else if (key == "tokens_per_rank") {
      take(IntsIn(key, value, 1, int64_t{1} << 24), o.tokens_per_rank);
    } else if (key == "sequence_lengths") {
      take(IntsIn(key, value, 1, int64_t{1} << 24), o.sequence_lengths);
    } else if (key == "contention") {
      std::string mode;
      take(OneOf(key, value, {"rotate", "ascending", "round_robin"}), mode);
      if (mode == "rotate") o.contention = dwdp::ContentionMode::kRotate;
      if (mode == "ascending") o.contention = dwdp::ContentionMode::kAscending;
      if (mode == "round_robin") o.contention = dwdp::ContentionMode::kRoundRobin;
    } else if (key == "tokens_cv") {
      if (!value.is_number() || value.get<double>() < 0 || value.get<double>() > 10) {
        return OptionError(key, "a number in [0, 10]", value);
      }
      o.tokens_cv = value.get<double>();
    } else if (key == "all_recipes") {
      take(Flag(key, value), o.all_recipes);
    } else if (key == "recommend") {
      take(Flag(key, value), recommend);
    } else if (key == "objective") {
      std::string name;
      take(OneOf(key, value, {"throughput", "smallest"}), name);
      if (name == "smallest") objective = dwdp::PlanObjective::kSmallest;
    }
    if (!status.ok()) return status;
  }
  if (recommend) request->recommend = objective;
  return absl::OkStatus();
}

// --- the engine API ----------------------------------------------------------------------

absl::StatusOr<Config> ToConfig(const dwdp_config* c) {
  if (c == nullptr) return absl::InvalidArgumentError("no config was given (NULL)");
  Config config;
  config.dwdp_size = c->dwdp_size;
  config.num_groups = c->num_groups;
  config.num_experts_per_worker = c->num_experts_per_worker;
  config.num_prefetch_experts = c->num_prefetch_experts;
  config.num_buffers = c->num_buffers;
  config.pool_page_bytes = c->pool_page_bytes;
  switch (c->contention_mode) {
    case DWDP_CONTENTION_ROTATE:
      config.contention_mode = dwdp::api::ContentionMode::kRotate;
      break;
    case DWDP_CONTENTION_ASCENDING:
      config.contention_mode = dwdp::api::ContentionMode::kAscending;
      break;
    case DWDP_CONTENTION_ROUND_ROBIN:
      config.contention_mode = dwdp::api::ContentionMode::kRoundRobin;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrFormat(
          "contention_mode is %d; it must be 0 (rotate), 1 (ascending) or 2 (round robin)",
          c->contention_mode));
  }
  config.contention_slice_bytes = c->contention_slice_bytes;
  config.num_experts = c->num_experts;
  if (c->num_moe_layers > 0 && c->moe_layers == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("num_moe_layers is %d but moe_layers is NULL", c->num_moe_layers));
  }
  if (c->num_weights > 0 && c->weights == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("num_weights is %d but weights is NULL", c->num_weights));
  }
  config.moe_layers.assign(c->moe_layers, c->moe_layers + c->num_moe_layers);
  for (uint64_t w = 0; w < c->num_weights; ++w) {
    if (c->weights[w].name == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("weight %d has no name (NULL)", w));
    }
    config.weights.push_back({c->weights[w].name, c->weights[w].bytes_per_expert});
  }
  return config;
}

// A usable runtime handle, or the error to return.
int CheckRuntime(const dwdp_runtime* runtime, const char* call) {
  if (runtime == nullptr) {
    return Fail(DWDP_ERROR_INVALID_ARGUMENT, absl::StrFormat("%s: the runtime is NULL", call));
  }
  if (runtime->closed) return Fail(DWDP_ERROR_RUNTIME, absl::StrFormat("%s after close()", call));
  return DWDP_OK;
}

int CheckLayer(const dwdp_runtime* runtime, int64_t layer, const char* call) {
  if (int code = CheckRuntime(runtime, call); code != DWDP_OK) return code;
  if (!std::binary_search(runtime->moe_layers.begin(), runtime->moe_layers.end(), layer)) {
    return Fail(DWDP_ERROR_INVALID_ARGUMENT,
                absl::StrFormat("%s: layer %d is not a MoE layer of the config (%s)", call, layer,
                                absl::StrJoin(runtime->moe_layers, ", ")));
  }
  return DWDP_OK;
}

int FromApi(const dwdp::api::Status& status) {
  return status.ok ? DWDP_OK : Fail(DWDP_ERROR_RUNTIME, status.message);
}

}  // namespace

extern "C" {

uint32_t dwdp_abi_version(void) { return DWDP_C_ABI_VERSION; }

int dwdp_has_cuda_backend(void) { return kHaveCuda ? 1 : 0; }

const char* dwdp_last_error(void) { return last_error.c_str(); }

void dwdp_free(char* text) { std::free(text); }

int dwdp_validate(const dwdp_scenario* scenario, int64_t world_size, char** json) {
  return Guarded("dwdp_validate", [&]() -> int {
    if (json == nullptr) return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_validate: json is NULL");
    *json = nullptr;
    if (world_size != -1 && (world_size < 1 || world_size > (int64_t{1} << 20))) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT,
                  absl::StrFormat("world_size is %d; it must be in [1, %d] (or -1 for none)",
                                  world_size, int64_t{1} << 20));
    }
    absl::StatusOr<Scenario> loaded = LoadScenario(scenario);
    if (!loaded.ok()) return Fail(loaded.status());
    return Emit(dwdp::ValidateJson(
                    *loaded, world_size == -1 ? std::nullopt : std::optional<int64_t>(world_size)),
                json);
  });
}

int dwdp_recipes(int64_t dwdp_size, int64_t num_experts, char** json) {
  return Guarded("dwdp_recipes", [&]() -> int {
    if (json == nullptr) return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_recipes: json is NULL");
    *json = nullptr;
    if (dwdp_size < 2 || dwdp_size > 65536) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT,
                  absl::StrFormat("dwdp_size is %d; it must be in [2, 65536]", dwdp_size));
    }
    if (num_experts < 1 || num_experts > 1000000) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT,
                  absl::StrFormat("num_experts is %d; it must be in [1, 1000000]", num_experts));
    }
    return Emit(dwdp::RecipesJson(dwdp_size, num_experts), json);
  });
}

int dwdp_layout(const dwdp_scenario* scenario, int64_t rank, char** json) {
  return Guarded("dwdp_layout", [&]() -> int {
    if (json == nullptr) return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_layout: json is NULL");
    *json = nullptr;
    if (rank != -1 && (rank < 0 || rank > 65535)) {
      return Fail(
          DWDP_ERROR_INVALID_ARGUMENT,
          absl::StrFormat("rank is %d; it must be in [0, 65535] (or -1 for every rank)", rank));
    }
    absl::StatusOr<Scenario> loaded = LoadScenario(scenario);
    if (!loaded.ok()) return Fail(loaded.status());
    absl::StatusOr<nlohmann::json> doc =
        dwdp::LayoutJson(*loaded, rank == -1 ? std::nullopt : std::optional<int64_t>(rank));
    if (doc.ok()) return Emit(*doc, json);
    if (absl::IsInvalidArgument(doc.status())) {
      // Which check failed, as `dwdp validate` reports it.
      if (int code = Emit(dwdp::ValidateJson(*loaded, std::nullopt), json); code != DWDP_OK) {
        return code;
      }
    }
    return Fail(DWDP_ERROR_INVALID_ARGUMENT,
                absl::StrCat(loaded->source_file, ": ", doc.status().message()));
  });
}

int dwdp_plan(const dwdp_scenario* scenario, const char* options_json, char** json) {
  return Guarded("dwdp_plan", [&]() -> int {
    if (json == nullptr) return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_plan: json is NULL");
    *json = nullptr;
    dwdp::PlanRequest request;
    std::string hardware;
    if (absl::Status st = ParsePlanOptions(options_json, &request, &hardware); !st.ok()) {
      return Fail(st);
    }
    absl::StatusOr<Scenario> loaded = LoadScenario(scenario);
    if (!loaded.ok()) return Fail(loaded.status());
    if (!hardware.empty()) {
      absl::StatusOr<dwdp::HardwareProfile> profile = dwdp::ResolveHardware(hardware);
      if (!profile.ok()) return Fail(profile.status());
      loaded->hardware = *std::move(profile);
    }
    absl::StatusOr<nlohmann::json> doc = dwdp::PlanJson(*loaded, request);
    if (!doc.ok()) return Fail(DWDP_ERROR_INVALID_ARGUMENT, doc.status().message());
    return Emit(*doc, json);
  });
}

void dwdp_config_init(dwdp_config* config) {
  if (config == nullptr) return;
  const Config defaults;
  *config = dwdp_config{};
  config->dwdp_size = defaults.dwdp_size;
  config->num_groups = defaults.num_groups;
  config->num_experts_per_worker = defaults.num_experts_per_worker;
  config->num_prefetch_experts = defaults.num_prefetch_experts;
  config->num_buffers = defaults.num_buffers;
  config->pool_page_bytes = defaults.pool_page_bytes;
  config->contention_mode = DWDP_CONTENTION_ROTATE;
  config->contention_slice_bytes = defaults.contention_slice_bytes;
  config->num_experts = defaults.num_experts;
}

void dwdp_options_init(dwdp_options* options) {
  if (options == nullptr) return;
  const dwdp::api::Options defaults;
  *options = dwdp_options{};
  options->group_comm = nullptr;
  options->mpi_comm = defaults.mpi_comm;
  options->copy_stream = defaults.copy_stream;
  options->timeout_seconds = defaults.timeout_seconds;
}

int dwdp_config_check(const dwdp_config* config) {
  return Guarded("dwdp_config_check", [&]() -> int {
    absl::StatusOr<Config> converted = ToConfig(config);
    if (!converted.ok()) return Fail(converted.status());
    const dwdp::api::Status status = dwdp::api::CheckConfig(*converted);
    return status.ok ? DWDP_OK : Fail(DWDP_ERROR_INVALID_ARGUMENT, status.message);
  });
}

int dwdp_runtime_create(const dwdp_config* config, const dwdp_local_chunk* chunks,
                        uint64_t num_chunks, const dwdp_options* options, dwdp_runtime** runtime) {
  return Guarded("dwdp_runtime_create", [&]() -> int {
    if (runtime == nullptr) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_runtime_create: runtime is NULL");
    }
    *runtime = nullptr;
    absl::StatusOr<Config> converted = ToConfig(config);
    if (!converted.ok()) return Fail(converted.status());
    if (const dwdp::api::Status st = dwdp::api::CheckConfig(*converted); !st.ok) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT, st.message);
    }
    if (num_chunks > 0 && chunks == nullptr) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT,
                  absl::StrFormat("num_chunks is %d but chunks is NULL", num_chunks));
    }
    dwdp::api::Options api_options;
    dwdp::api::GroupComm group;
    if (options != nullptr) {
      api_options.mpi_comm = options->mpi_comm;
      api_options.copy_stream = options->copy_stream;
      api_options.timeout_seconds = options->timeout_seconds;
      if (options->group_comm != nullptr) {
        group.user = options->group_comm->user;
        group.rank = options->group_comm->rank;
        group.size = options->group_comm->size;
        group.allgather = options->group_comm->allgather;
        group.barrier = options->group_comm->barrier;
        api_options.group_comm = &group;
      }
    }
    std::vector<dwdp::api::LocalChunk> local;
    for (uint64_t i = 0; i < num_chunks; ++i) {
      local.push_back({chunks[i].layer, chunks[i].weight, chunks[i].device_ptr, chunks[i].bytes});
    }
    std::unique_ptr<dwdp::api::Runtime> created;
    const dwdp::api::Status status =
        dwdp::api::Runtime::Create(*converted, local, api_options, &created);
    if (!status.ok) {
      return Fail(kHaveCuda ? DWDP_ERROR_RUNTIME : DWDP_ERROR_NO_CUDA_BACKEND, status.message);
    }
    auto handle = std::make_unique<dwdp_runtime>();
    handle->runtime = std::move(created);
    handle->moe_layers = converted->moe_layers;
    handle->num_weights = static_cast<int64_t>(converted->weights.size());
    *runtime = handle.release();
    return DWDP_OK;
  });
}

int dwdp_runtime_info_get(const dwdp_runtime* runtime, dwdp_runtime_info* info) {
  return Guarded("dwdp_runtime_info_get", [&]() -> int {
    if (info == nullptr) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_runtime_info_get: info is NULL");
    }
    if (int code = CheckRuntime(runtime, "dwdp_runtime_info_get"); code != DWDP_OK) return code;
    info->group_rank = runtime->runtime->group_rank();
    info->local_expert_begin = runtime->runtime->local_expert_begin();
    info->local_expert_end = runtime->runtime->local_expert_end();
    info->device_bytes = runtime->runtime->device_bytes();
    return DWDP_OK;
  });
}

int dwdp_runtime_tensor(const dwdp_runtime* runtime, int64_t layer, int64_t weight, void** tensor) {
  return Guarded("dwdp_runtime_tensor", [&]() -> int {
    if (tensor == nullptr) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_runtime_tensor: tensor is NULL");
    }
    *tensor = nullptr;
    if (int code = CheckLayer(runtime, layer, "tensor"); code != DWDP_OK) return code;
    if (weight < 0 || weight >= runtime->num_weights) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT,
                  absl::StrFormat("tensor: weight %d is out of range; the config has %d weights",
                                  weight, runtime->num_weights));
    }
    *tensor = runtime->runtime->tensor(layer, weight);
    return *tensor != nullptr ? DWDP_OK : Fail(DWDP_ERROR_RUNTIME, "tensor: no such tensor");
  });
}

int dwdp_runtime_prime(dwdp_runtime* runtime, void* copy_stream) {
  return Guarded("dwdp_runtime_prime", [&]() -> int {
    if (int code = CheckRuntime(runtime, "prime"); code != DWDP_OK) return code;
    return FromApi(runtime->runtime->prime(copy_stream));
  });
}

int dwdp_runtime_wait_and_bind(dwdp_runtime* runtime, int64_t layer, void* compute_stream) {
  return Guarded("dwdp_runtime_wait_and_bind", [&]() -> int {
    if (int code = CheckLayer(runtime, layer, "wait_and_bind"); code != DWDP_OK) return code;
    return FromApi(runtime->runtime->wait_and_bind(layer, compute_stream));
  });
}

int dwdp_runtime_record_compute(dwdp_runtime* runtime, int64_t layer, void* compute_stream) {
  return Guarded("dwdp_runtime_record_compute", [&]() -> int {
    if (int code = CheckLayer(runtime, layer, "record_compute"); code != DWDP_OK) return code;
    return FromApi(runtime->runtime->record_compute(layer, compute_stream));
  });
}

int dwdp_runtime_prefetch_next(dwdp_runtime* runtime, int64_t layer, void* copy_stream) {
  return Guarded("dwdp_runtime_prefetch_next", [&]() -> int {
    if (int code = CheckLayer(runtime, layer, "prefetch_next"); code != DWDP_OK) return code;
    return FromApi(runtime->runtime->prefetch_next(layer, copy_stream));
  });
}

int dwdp_runtime_close(dwdp_runtime* runtime) {
  return Guarded("dwdp_runtime_close", [&]() -> int {
    if (runtime == nullptr) {
      return Fail(DWDP_ERROR_INVALID_ARGUMENT, "dwdp_runtime_close: the runtime is NULL");
    }
    if (runtime->closed) return DWDP_OK;
    runtime->closed = true;
    return FromApi(runtime->runtime->close());
  });
}

void dwdp_runtime_destroy(dwdp_runtime* runtime) {
  if (runtime == nullptr) return;
  (void)dwdp_runtime_close(runtime);
  delete runtime;
}

void dwdp_shutdown(void) {
  try {
    dwdp::api::Shutdown();
  } catch (...) {
    // Nothing to report to: the process is ending.
  }
}

}  // extern "C"
