/* dwdp's C ABI: the engine API of dwdp/dwdp.h and the inspection commands of the `dwdp` CLI
 * (validate, recipes, layout, plan) as plain C, exported by libdwdp.so next to the C++ API.
 * It is for callers that cannot link C++: Python through ctypes (the `dwdp` package under
 * python/), Rust, Go. Both APIs drive the same runtime.
 *
 * Conventions:
 *  - Every function that can fail returns an int, one of dwdp_error. On failure,
 *    dwdp_last_error() is one sentence starting with "dwdp: " saying what went wrong and, where
 *    it can, what to change. It is per thread and valid until the thread's next dwdp_ call.
 *  - Objects are opaque handles (dwdp_runtime); everything else is plain C types. A stream is a
 *    void* holding a cudaStream_t / CUstream; device memory is a void*.
 *  - Text results (JSON documents) are malloc'd, NUL-terminated and freed with dwdp_free().
 *  - No function throws or aborts on bad input; NULL where a pointer is required is an
 *    error (DWDP_ERROR_INVALID_ARGUMENT), never a crash.
 *
 * Without the cuda backend (a build without the CUDA toolkit or MPI) the library still loads
 * and the inspection functions work; dwdp_runtime_create returns DWDP_ERROR_NO_CUDA_BACKEND.
 * The threading rules of dwdp/dwdp.h apply to the runtime functions. */

#ifndef DWDP_DWDP_C_H_
#define DWDP_DWDP_C_H_

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define DWDP_C_API __attribute__((visibility("default")))
#else
#define DWDP_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a type or function of this header changes; dwdp_abi_version() returns the
 * value the library was built with, so a binding can refuse a library it does not match. */
#define DWDP_C_ABI_VERSION 1

enum dwdp_error {
  DWDP_OK = 0,
  DWDP_ERROR_INVALID_ARGUMENT = 1, /* the input is wrong: config, chunk, layer, option, file */
  DWDP_ERROR_NOT_FOUND = 2,        /* a named file does not exist */
  DWDP_ERROR_NO_CUDA_BACKEND = 3,  /* this build cannot create a runtime */
  DWDP_ERROR_RUNTIME = 4,          /* the GPU, the driver, the group or a closed runtime */
};

DWDP_C_API uint32_t dwdp_abi_version(void);
/* 1 when this build can create a runtime (it has the cuda backend), else 0. */
DWDP_C_API int dwdp_has_cuda_backend(void);
/* The calling thread's last error sentence; "" after a call that succeeded. */
DWDP_C_API const char* dwdp_last_error(void);
/* Frees a text result of this library; NULL is ignored. */
DWDP_C_API void dwdp_free(char* text);

/* ---------------------------------------------------------------------------------------------
 * Inspection: the JSON documents `dwdp validate | recipes | layout | plan --format json` print,
 * from the same code. */

/* A scenario: a YAML file, or the text of one (YAML, or JSON, which YAML reads too). */
typedef struct dwdp_scenario {
  const char* path; /* a scenario file; when NULL, `text` is used */
  const char* text; /* the scenario itself; profile paths in it resolve against the working dir */
  const char* name; /* stands for the file in messages when `text` is used; NULL: "<string>" */
} dwdp_scenario;

/* `dwdp validate --format json [--world-size W]`; world_size -1: no group checks. An invalid
 * partition is DWDP_OK with {"valid": false, ...}; a file that does not load is an error. */
DWDP_C_API int dwdp_validate(const dwdp_scenario* scenario, int64_t world_size, char** json);
/* `dwdp recipes --dwdp-size D --num-experts N --format json` (empty list when none exists). */
DWDP_C_API int dwdp_recipes(int64_t dwdp_size, int64_t num_experts, char** json);
/* `dwdp layout --format json [--rank R]`; rank -1: every rank. An invalid partition is
 * DWDP_ERROR_INVALID_ARGUMENT, and *json then holds validate's {"valid": false, ...}. */
DWDP_C_API int dwdp_layout(const dwdp_scenario* scenario, int64_t rank, char** json);
/* `dwdp plan --format json` with the options as a JSON object (NULL or "{}": the defaults):
 * {"hardware": "h200-sxm" | "profile.yaml", "dwdp_sizes": [2, 4], "max_dwdp_size": 8,
 *  "num_buffers": [2, 3, 4], "tokens_per_rank": [...], "sequence_lengths": [...],
 *  "contention": "rotate" | "ascending" | "round_robin", "tokens_cv": 0.1,
 *  "all_recipes": false, "recommend": false, "objective": "throughput" | "smallest"}.
 * The CLI's --simulate and --csv-out have no counterpart here. */
DWDP_C_API int dwdp_plan(const dwdp_scenario* scenario, const char* options_json, char** json);

/* ---------------------------------------------------------------------------------------------
 * The engine API (dwdp/dwdp.h): see there for what each call does and when to make it. */

enum dwdp_contention_mode {
  DWDP_CONTENTION_ROTATE = 0,
  DWDP_CONTENTION_ASCENDING = 1,
  DWDP_CONTENTION_ROUND_ROBIN = 2,
};

typedef struct dwdp_weight {
  const char* name;
  uint64_t bytes_per_expert;
} dwdp_weight;

/* dwdp::api::Config. The arrays are read during the call only. */
typedef struct dwdp_config {
  int64_t dwdp_size;
  int64_t num_groups;
  int64_t num_experts_per_worker;
  int64_t num_prefetch_experts;
  int64_t num_buffers;
  uint64_t pool_page_bytes;
  int64_t contention_mode; /* a dwdp_contention_mode */
  uint64_t contention_slice_bytes;
  int64_t num_experts;
  const int64_t* moe_layers;
  uint64_t num_moe_layers;
  const dwdp_weight* weights;
  uint64_t num_weights;
} dwdp_config;

/* dwdp::api::LocalChunk. */
typedef struct dwdp_local_chunk {
  int64_t layer;
  int64_t weight;
  const void* device_ptr;
  uint64_t bytes;
} dwdp_local_chunk;

/* dwdp::api::GroupComm: the caller's own group communicator (e.g. torch.distributed). */
typedef void (*dwdp_put_fn)(void* sink, int64_t rank, const void* data, uint64_t bytes);
typedef struct dwdp_group_comm {
  void* user;
  int64_t rank;
  int64_t size;
  int (*allgather)(void* user, const void* mine, uint64_t bytes, dwdp_put_fn put, void* sink);
  int (*barrier)(void* user);
} dwdp_group_comm;

#define DWDP_SPLIT_WORLD (-1)

/* dwdp::api::Options. */
typedef struct dwdp_options {
  const dwdp_group_comm* group_comm; /* NULL: MPI (mpi_comm) */
  int64_t mpi_comm;                  /* MPI_Comm_c2f(comm), or DWDP_SPLIT_WORLD */
  void* copy_stream;
  double timeout_seconds;
} dwdp_options;

/* The defaults of dwdp::api::Config and Options (num_groups 1, num_buffers 2, 16 MiB pages,
 * rotate, 2 MiB slices; MPI split of the world, 60 s). */
DWDP_C_API void dwdp_config_init(dwdp_config* config);
DWDP_C_API void dwdp_options_init(dwdp_options* options);

/* dwdp::api::CheckConfig: the checks that need no GPU and no group. */
DWDP_C_API int dwdp_config_check(const dwdp_config* config);

typedef struct dwdp_runtime dwdp_runtime;

typedef struct dwdp_runtime_info {
  int64_t group_rank;
  int64_t local_expert_begin; /* experts this rank stores: [begin, end) */
  int64_t local_expert_end;
  uint64_t device_bytes; /* device memory dwdp holds now: local handles + pool pages */
} dwdp_runtime_info;

/* Collective over the group. On success *runtime is a new handle (free it with
 * dwdp_runtime_destroy); on failure it is NULL and nothing is left allocated. */
DWDP_C_API int dwdp_runtime_create(const dwdp_config* config, const dwdp_local_chunk* chunks,
                                   uint64_t num_chunks, const dwdp_options* options,
                                   dwdp_runtime** runtime);
DWDP_C_API int dwdp_runtime_info_get(const dwdp_runtime* runtime, dwdp_runtime_info* info);
/* Byte 0 of the composite [num_experts, ...] tensor of (layer, weight index). */
DWDP_C_API int dwdp_runtime_tensor(const dwdp_runtime* runtime, int64_t layer, int64_t weight,
                                   void** tensor);
DWDP_C_API int dwdp_runtime_prime(dwdp_runtime* runtime, void* copy_stream);
DWDP_C_API int dwdp_runtime_wait_and_bind(dwdp_runtime* runtime, int64_t layer,
                                          void* compute_stream);
DWDP_C_API int dwdp_runtime_record_compute(dwdp_runtime* runtime, int64_t layer,
                                           void* compute_stream);
DWDP_C_API int dwdp_runtime_prefetch_next(dwdp_runtime* runtime, int64_t layer, void* copy_stream);
/* Idempotent; the handle stays valid (every later call but destroy fails) until destroyed. */
DWDP_C_API int dwdp_runtime_close(dwdp_runtime* runtime);
/* Closes (ignoring the status) and frees the handle; NULL is ignored. */
DWDP_C_API void dwdp_runtime_destroy(dwdp_runtime* runtime);

/* dwdp::api::Shutdown: MPI_Finalize when a runtime's creation initialised MPI. Call once,
 * after the last runtime is destroyed. */
DWDP_C_API void dwdp_shutdown(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DWDP_DWDP_C_H_ */
