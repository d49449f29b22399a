#pragma once

// dwdp for inference engines: Distributed Weight Data Parallelism of the MoE experts.
//
// Each GPU of a DWDP group keeps a slice of every MoE layer's experts. Before a layer runs,
// dwdp pulls the other experts from the peers over NVLink into a small pool of `num_buffers`
// slots, and presents local and pulled experts as ONE contiguous [num_experts, ...] tensor per
// (layer, weight) at a fixed device address: the engine's MoE kernels read it like any
// fully-loaded weight.
//
// Use (one process per GPU, launched by MPI, or by any launcher when the engine hands over its
// own group communicator in Options::group_comm; the engine has selected its GPU with
// cudaSetDevice):
//
//   dwdp::api::Config config;                      // TensorRT-LLM's DwdpConfig + the model
//   std::vector<dwdp::api::LocalChunk> chunks;     // this rank's experts, per (layer, weight)
//   dwdp::api::Options options;
//   options.copy_stream = engine_copy_stream;
//   std::unique_ptr<dwdp::api::Runtime> dwdp;
//   dwdp::api::Status st = dwdp::api::Runtime::Create(config, chunks, options, &dwdp);
//   if (!st.ok) { report(st.message); }
//   // chunks may be freed now; bind the composite tensors once:
//   void* w13 = dwdp->tensor(layer, 0);            // valid until the runtime is closed
//
//   // every forward, on the engine's own streams:
//   dwdp->prime(copy_stream);
//   for (each MoE layer L in ascending order) {
//     ... attention of L on compute_stream ...
//     dwdp->wait_and_bind(L, compute_stream);      // compute waits for L's experts
//     ... MoE kernels of L on compute_stream, reading dwdp->tensor(L, w) ...
//     dwdp->record_compute(L, compute_stream);     // AFTER the kernels that read L's tensors
//     dwdp->prefetch_next(L, copy_stream);         // pull the layer num_buffers ahead
//   }
//
// The four per-layer calls only enqueue stream waits, event records and device-to-device
// copies: none of them waits for the GPU or for another rank, so they are safe to issue while
// the engine's forward is in flight (and cheap: a few microseconds of host time per call).
//
// Threads: MPI is used with MPI_THREAD_FUNNELED, so create and close the runtime from the
// thread that initialised MPI. dwdp uses the GPU whose primary context is current on that
// thread at Create (the engine's cudaSetDevice); issue the per-layer calls from a thread where
// it is current too. The per-layer calls of one Runtime must not run concurrently.
//
// This header is self-contained C++17 with no CUDA or MPI types: a stream is a `void*` holding
// a cudaStream_t / CUstream, device memory is a `void*` or `const void*`.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

// Symbols libdwdp.so exports (everything else in it is hidden).
#if defined(__GNUC__)
#define DWDP_API __attribute__((visibility("default")))
#else
#define DWDP_API
#endif

namespace dwdp::api {

// The outcome of a call. `message` is one sentence saying what went wrong and, where it can,
// what to change ("dwdp: ... "); empty when ok.
struct Status {
  bool ok = true;
  std::string message;

  static Status Ok() { return {}; }
  static Status Error(std::string text) { return {false, std::move(text)}; }
};

// How each rank orders the copies of one prefetch across its peers.
enum class ContentionMode {
  kRotate,      // default: whole runs, owners visited r+1, r+2, ... so no NVLink is shared
  kAscending,   // owners in ascending order (TensorRT-LLM's default)
  kRoundRobin,  // TensorRT-LLM's contention option: pieces of slice_bytes interleaved
};

// A DWDP-managed weight of every MoE layer (e.g. "w3_w1_weight", "w2_weight_scale"): one
// contiguous byte range per expert, treated as opaque bytes.
struct Weight {
  std::string name;
  uint64_t bytes_per_expert = 0;
};

struct Config {
  // TensorRT-LLM's DwdpConfig.
  int64_t dwdp_size = 0;                   // ranks of one DWDP group (>= 2)
  int64_t num_groups = 1;                  // groups side by side (world = num_groups * dwdp_size)
  int64_t num_experts_per_worker = 0;      // experts each rank stores ("size")
  int64_t num_prefetch_experts = 0;        // offset between consecutive ranks' first experts
  int64_t num_buffers = 2;                 // pool slots (k >= 2; 2 = double buffering)
  uint64_t pool_page_bytes = 16ull << 20;  // a power of two, a multiple of the VMM granularity
  ContentionMode contention_mode = ContentionMode::kRotate;
  uint64_t contention_slice_bytes = 2ull << 20;  // kRoundRobin only

  // The model.
  int64_t num_experts = 0;          // experts per MoE layer (gate side)
  std::vector<int64_t> moe_layers;  // layer indices of the MoE layers, ascending
  std::vector<Weight> weights;      // the same for every MoE layer, in this order
};

// Rank r stores experts [r * num_prefetch_experts, r * num_prefetch_experts +
// num_experts_per_worker) of every (layer, weight). The engine has loaded them contiguously,
// expert after expert, into its own device memory (cudaMalloc) on this rank's GPU.
struct LocalChunk {
  int64_t layer = 0;   // a layer index listed in Config::moe_layers
  int64_t weight = 0;  // an index into Config::weights
  const void* device_ptr = nullptr;
  uint64_t bytes = 0;  // num_experts_per_worker * bytes_per_expert
};

// The engine's own communicator of this rank's DWDP group (torch.distributed, NCCL, its own
// MPI wrapper), as plain C callbacks. dwdp uses it only inside Create (to agree on the config
// and to exchange handle names), never per forward. Every rank of the group passes one.
struct GroupComm {
  // Hands rank `rank`'s bytes to dwdp; dwdp copies them before put returns.
  using PutFn = void (*)(void* sink, int64_t rank, const void* data, uint64_t bytes);

  void* user = nullptr;  // passed back to the callbacks unchanged
  int64_t rank = -1;     // this rank in the group, 0 .. size-1
  int64_t size = 0;      // ranks in the group: Config::dwdp_size
  // Collective: gathers `bytes` bytes from every rank of the group (the counts may differ
  // between ranks) and calls put(sink, r, data_r, bytes_r) once for every rank r before it
  // returns. Returns 0 on success; anything else fails Create.
  int (*allgather)(void* user, const void* mine, uint64_t bytes, PutFn put, void* sink) = nullptr;
  // Collective: returns once every rank of the group has called it; 0 on success.
  int (*barrier)(void* user) = nullptr;
};

struct Options {
  // When set, the group is this communicator and MPI is neither initialised nor used (mpi_comm
  // is ignored). The pointed-to struct is copied; `user` must stay valid until Create returns.
  const GroupComm* group_comm = nullptr;

  // The communicator of this rank's DWDP group, as a Fortran handle (MPI_Comm_c2f(comm)) so
  // this header needs no MPI types; its ranks are the group ranks 0..dwdp_size-1.
  // kSplitWorld: dwdp splits MPI_COMM_WORLD by world rank / dwdp_size. When MPI is not
  // initialised yet, Create initialises it (MPI_THREAD_FUNNELED); finalising stays the
  // engine's job (MPI_Finalize after the last Runtime is closed).
  static constexpr int64_t kSplitWorld = -1;
  int64_t mpi_comm = kSplitWorld;

  // The engine's copy stream. Setup copies the local chunks on it (so chunk loads the engine
  // enqueued there before are ordered first) and waits for them before Create returns.
  void* copy_stream = nullptr;

  // Bound on every wait for a peer during setup: a rank that never arrives is an error after
  // this long, never a hang.
  double timeout_seconds = 60;
};

// Everything about `config` that can be checked without a GPU or a group (the partition,
// the names, the layout's byte counts with a 2 MiB VMM granularity): Create runs the same
// checks first. The message is one sentence.
DWDP_API Status CheckConfig(const Config& config);

// Ends what Create started for the process: MPI_Finalize when Create initialised MPI itself
// (kSplitWorld while MPI was not initialised). Call once, after the last Runtime is closed;
// harmless when there is nothing to end. An engine that initialised MPI finalises it itself.
DWDP_API void Shutdown();

class DWDP_API Runtime {
 public:
  // Sets up DWDP for this rank (collective over the group: every rank calls it with the same
  // config): validates the config, copies the local chunks into shareable device memory,
  // exchanges handles with the peers, maps the peers' memory, builds the composite tensors and
  // the pool, fills the edge bytes the neighbours own, and creates the pipeline's events.
  // On success `*runtime` is set and the chunks may be freed; on failure nothing is left
  // allocated, `*runtime` is null and the message says why (a machine without a usable GPU
  // gets one sentence saying so).
  static Status Create(const Config& config, const std::vector<LocalChunk>& chunks,
                       const Options& options, std::unique_ptr<Runtime>* runtime);

  // close(), ignoring its status.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // This rank in its group (0 .. dwdp_size-1) and the experts it stores, [begin, end).
  int64_t group_rank() const;
  int64_t local_expert_begin() const;
  int64_t local_expert_end() const;
  // Device memory dwdp holds on this rank's GPU now: its local expert handles and the pool's
  // pages (peer memory it maps is counted by its owner). 0 after close().
  uint64_t device_bytes() const;

  // Byte 0 of the composite [num_experts, ...] tensor of (layer, weight): expert e starts at
  // tensor + e * bytes_per_expert. The address is fixed for the runtime's lifetime, so an
  // engine may bind it once (or capture it in a CUDA graph). The remote experts' bytes are
  // valid on `compute_stream` between wait_and_bind(layer) and record_compute(layer) of each
  // forward. Null for a layer or weight not in the config, or after close().
  void* tensor(int64_t layer, int64_t weight) const;

  // One forward pass. `layer` is a layer index of Config::moe_layers; the layers are visited in
  // ascending order, each exactly once per forward, every forward starting with prime().
  //
  // prime: pull the first num_buffers MoE layers on copy_stream.
  Status prime(void* copy_stream);
  // compute_stream waits until the layer's experts have arrived (a stream wait, no host wait).
  Status wait_and_bind(int64_t layer, void* compute_stream);
  // Marks the layer's slot free once everything enqueued on compute_stream so far is done:
  // call it after the last kernel that reads the layer's tensors, never before.
  Status record_compute(int64_t layer, void* compute_stream);
  // Pulls the MoE layer num_buffers positions after `layer` (into the slot `layer` used) on
  // copy_stream once that slot is free; nothing for the last num_buffers layers.
  Status prefetch_next(int64_t layer, void* copy_stream);

  // Waits for dwdp's outstanding work, then unmaps and frees everything it created, in the
  // order DWDP_SPEC §6 gives. Idempotent. The streams handed to dwdp must stay valid until
  // this returns; peers need not close at the same time.
  Status close();

 private:
  struct Impl;
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dwdp::api
