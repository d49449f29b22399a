// A stand-in inference engine that embeds dwdp through <dwdp/dwdp.h> alone.
//
//   mpirun -np 2 build/default/cli/engine_example
//
// Each rank (one GPU each) loads its slice of a small MoE model into its own cudaMalloc'd
// memory, hands the slices to dwdp, frees them, and runs three forward passes on its own
// streams. Its "MoE kernel" copies every layer's composite tensors back to the host, where
// every byte of every expert is checked against the value the owner loaded. A wrong byte is
// named (forward, layer, weight, expert, byte, expected, got) and the exit code is 1.
//
// The model: 16 experts, MoE layers 1, 2, 4 and 5 (layers 0 and 3 are dense), three weights
// whose per-expert sizes are odd, so the ranks' slices do not start or end on a 2 MiB page and
// dwdp must fill the edge bytes of each local page from the neighbour. The partition is the
// Mode B recipe 9/7 for 2 ranks: rank 0 stores experts [0, 9), rank 1 [7, 16) (two experts
// are stored by both).

#include <cuda_runtime.h>
#include <dwdp/dwdp.h>
#include <mpi.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr int64_t kDwdpSize = 2;
constexpr int64_t kNumExperts = 16;
constexpr int64_t kExpertsPerRank = 9;  // num_experts_per_worker
constexpr int64_t kStride = 7;          // num_prefetch_experts
constexpr int kForwards = 3;

// The value of byte `offset` of expert `expert` of (layer, weight): a mix of all four, so a
// byte from the wrong expert, layer, weight or offset shows.
uint8_t ExpectedByte(int64_t layer, int64_t weight, int64_t expert, uint64_t offset) {
  uint64_t x = (static_cast<uint64_t>(layer) << 52) ^ (static_cast<uint64_t>(weight) << 44) ^
               (static_cast<uint64_t>(expert) << 36) ^ offset;
  x *= 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint8_t>(x);
}

int world_rank = 0;

// Prints one line prefixed with this rank.
__attribute__((format(printf, 1, 2))) void Say(const char* format, ...) {
  char text[2048];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof(text), format, args);
  va_end(args);
  std::printf("rank %d: %s\n", world_rank, text);
  std::fflush(stdout);
}

bool CudaOk(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return true;
  Say("error: %s: %s (%s)", what, cudaGetErrorString(error), cudaGetErrorName(error));
  return false;
}

// The rank's GPU: its rank among the processes of this node, modulo the GPUs it can see.
bool SelectDevice() {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
  int local_rank = 0;
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_free(&node);
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    Say("error: this example needs a GPU per rank, and none is usable here: %s",
        error != cudaSuccess ? cudaGetErrorString(error) : "no CUDA device is visible");
    return false;
  }
  const int device = local_rank % count;
  if (!CudaOk(cudaSetDevice(device), "cudaSetDevice")) return false;
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  Say("GPU %d of %d (%s)", device, count, prop.name);
  return true;
}

// What the engine owns: its streams and its loaded chunks (device memory it frees itself).
struct Engine {
  cudaStream_t compute = nullptr;
  cudaStream_t copy = nullptr;
  std::vector<void*> chunks;
  std::vector<std::vector<uint8_t>> staging;  // host copies being uploaded (until setup returns)

  void FreeChunks() {
    for (void* chunk : chunks) cudaFree(chunk);
    chunks.clear();
    staging.clear();
  }
  ~Engine() {
    FreeChunks();
    if (compute != nullptr) cudaStreamDestroy(compute);
    if (copy != nullptr) cudaStreamDestroy(copy);
  }
};

// Three forwards; returns false at the first wrong byte or failed call.
bool RunForwards(dwdp::api::Runtime& dwdp, const dwdp::api::Config& config, Engine& engine) {
  const size_t layers = config.moe_layers.size();
  const size_t weights = config.weights.size();
  // One pinned host buffer per composite tensor: the "kernel" of every layer copies its tensors
  // out, so the check after the forward sees what the kernel saw while the slot was bound.
  std::vector<std::vector<uint8_t*>> seen(layers, std::vector<uint8_t*>(weights, nullptr));
  struct PinnedFree {
    std::vector<std::vector<uint8_t*>>* buffers;
    ~PinnedFree() {
      for (auto& row : *buffers) {
        for (uint8_t* b : row) cudaFreeHost(b);
      }
    }
  } pinned_free{&seen};
  for (size_t p = 0; p < layers; ++p) {
    for (size_t w = 0; w < weights; ++w) {
      const uint64_t bytes = kNumExperts * config.weights[w].bytes_per_expert;
      if (!CudaOk(cudaMallocHost(reinterpret_cast<void**>(&seen[p][w]), bytes), "cudaMallocHost")) {
        return false;
      }
    }
  }
  const auto check = [](const dwdp::api::Status& st, const char* call, int64_t layer) {
    if (!st.ok) Say("error: %s(layer %" PRId64 "): %s", call, layer, st.message.c_str());
    return st.ok;
  };

  for (int forward = 0; forward < kForwards; ++forward) {
    for (size_t p = 0; p < layers; ++p) {
      for (size_t w = 0; w < weights; ++w) {
        std::memset(seen[p][w], 0, kNumExperts * config.weights[w].bytes_per_expert);
      }
    }
    if (!check(dwdp.prime(engine.copy), "prime", -1)) return false;
    for (size_t p = 0; p < layers; ++p) {
      const int64_t layer = config.moe_layers[p];
      // (attention of `layer` would run on engine.compute here)
      if (!check(dwdp.wait_and_bind(layer, engine.compute), "wait_and_bind", layer)) return false;
      for (size_t w = 0; w < weights; ++w) {
        const uint64_t bytes = kNumExperts * config.weights[w].bytes_per_expert;
        if (!CudaOk(cudaMemcpyAsync(seen[p][w], dwdp.tensor(layer, static_cast<int64_t>(w)), bytes,
                                    cudaMemcpyDeviceToHost, engine.compute),
                    "read the composite tensor (cudaMemcpyAsync)")) {
          return false;
        }
      }
      if (!check(dwdp.record_compute(layer, engine.compute), "record_compute", layer)) {
        return false;
      }
      if (!check(dwdp.prefetch_next(layer, engine.copy), "prefetch_next", layer)) return false;
    }
    // The engine waits for its own forward; dwdp's calls above never waited for the GPU.
    if (!CudaOk(cudaStreamSynchronize(engine.compute), "forward on the compute stream") ||
        !CudaOk(cudaStreamSynchronize(engine.copy), "forward on the copy stream")) {
      return false;
    }
    for (size_t p = 0; p < layers; ++p) {
      for (size_t w = 0; w < weights; ++w) {
        const uint64_t eb = config.weights[w].bytes_per_expert;
        const uint8_t* got = seen[p][w];
        for (int64_t e = 0; e < kNumExperts; ++e) {
          for (uint64_t b = 0; b < eb; ++b) {
            const uint8_t want = ExpectedByte(config.moe_layers[p], static_cast<int64_t>(w), e, b);
            const uint8_t have = got[static_cast<uint64_t>(e) * eb + b];
            if (want != have) {
              const bool local = e >= dwdp.local_expert_begin() && e < dwdp.local_expert_end();
              Say("WRONG BYTE in forward %d, layer %" PRId64 " %s, expert %" PRId64
                  " (%s), byte %" PRIu64 " of %" PRIu64 ": expected 0x%02x, got 0x%02x",
                  forward, config.moe_layers[p], config.weights[w].name.c_str(), e,
                  local ? "stored on this rank" : "pulled from a peer", b, eb, want, have);
              return false;
            }
          }
        }
      }
    }
    Say("forward %d: every byte of %zu layers x %zu weights x %" PRId64 " experts is right",
        forward, layers, weights, kNumExperts);
  }
  return true;
}

int Run() {
  int world_size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (world_size % kDwdpSize != 0) {
    Say("error: this example runs DWDP groups of %" PRId64
        " ranks; start it with a multiple of %" PRId64 " ranks (mpirun -np 2 %s), not %d",
        kDwdpSize, kDwdpSize, "engine_example", world_size);
    return 1;
  }
  if (!SelectDevice()) return 1;

  dwdp::api::Config config;
  config.dwdp_size = kDwdpSize;
  config.num_groups = world_size / kDwdpSize;
  config.num_experts_per_worker = kExpertsPerRank;
  config.num_prefetch_experts = kStride;
  config.num_buffers = 2;
  config.num_experts = kNumExperts;
  config.moe_layers = {1, 2, 4, 5};
  // Odd sizes: no expert boundary of a rank's slice falls on a 2 MiB page.
  config.weights = {
      {"w3_w1_weight", 1572869}, {"w2_weight", 786433}, {"w3_w1_weight_scale", 98311}};

  Engine engine;
  if (!CudaOk(cudaStreamCreateWithFlags(&engine.compute, cudaStreamNonBlocking),
              "create the compute stream") ||
      !CudaOk(cudaStreamCreateWithFlags(&engine.copy, cudaStreamNonBlocking),
              "create the copy stream")) {
    return 1;
  }

  // Load this rank's experts as a checkpoint loader would: contiguous, expert after expert,
  // uploaded on the engine's copy stream.
  const int64_t group_rank = world_rank % kDwdpSize;
  const int64_t first = group_rank * kStride;
  std::vector<dwdp::api::LocalChunk> chunks;
  for (int64_t layer : config.moe_layers) {
    for (size_t w = 0; w < config.weights.size(); ++w) {
      const uint64_t eb = config.weights[w].bytes_per_expert;
      const uint64_t bytes = kExpertsPerRank * eb;
      std::vector<uint8_t> host(bytes);
      for (int64_t i = 0; i < kExpertsPerRank; ++i) {
        for (uint64_t b = 0; b < eb; ++b) {
          host[static_cast<uint64_t>(i) * eb + b] =
              ExpectedByte(layer, static_cast<int64_t>(w), first + i, b);
        }
      }
      void* chunk = nullptr;
      if (!CudaOk(cudaMalloc(&chunk, bytes), "cudaMalloc of a local chunk")) return 1;
      engine.chunks.push_back(chunk);
      if (!CudaOk(cudaMemcpyAsync(chunk, host.data(), bytes, cudaMemcpyHostToDevice, engine.copy),
                  "upload a local chunk")) {
        return 1;
      }
      engine.staging.push_back(std::move(host));
      chunks.push_back({layer, static_cast<int64_t>(w), chunk, bytes});
    }
  }

  dwdp::api::Options options;
  options.copy_stream = engine.copy;  // setup's copies follow the uploads above on this stream
  std::unique_ptr<dwdp::api::Runtime> dwdp;
  const dwdp::api::Status created = dwdp::api::Runtime::Create(config, chunks, options, &dwdp);
  // dwdp has its own copy of the experts now (or failed): the engine's memory goes back.
  engine.FreeChunks();
  if (!created.ok) {
    Say("error: dwdp setup failed: %s", created.message.c_str());
    return 1;
  }
  Say("group rank %" PRId64 " stores experts [%" PRId64 ", %" PRId64 ") of %" PRId64
      "; the rest are pulled from its peer before each layer; local chunks freed",
      dwdp->group_rank(), dwdp->local_expert_begin(), dwdp->local_expert_end(), kNumExperts);

  bool ok = RunForwards(*dwdp, config, engine);
  const dwdp::api::Status closed = dwdp->close();
  if (!closed.ok) {
    Say("error: dwdp close failed: %s", closed.message.c_str());
    ok = false;
  }
  if (ok) {
    Say("all %zu layers verified over %d forwards", config.moe_layers.size(), kForwards);
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "engine_example: MPI could not be initialised (start it with mpirun)\n");
    return 1;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  int exit_code = Run();
  // Every rank leaves with the worst exit code, so mpirun's status says whether all passed.
  int worst = exit_code;
  MPI_Allreduce(&exit_code, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (world_rank == 0 && worst != 0 && exit_code == 0) {
    Say("a peer failed (see its lines above)");
  }
  MPI_Finalize();
  return worst;
}
