#pragma once

// The value types a scenario file turns into. Plain data: no behaviour beyond small helpers.
// Loading (YAML, presets, units, strict keys) lives in core/config/loader.h.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dwdp {

// Where a profile number comes from; reports say which of these a result depends on.
enum class Provenance { kSpec, kMeasured, kAssumed };
const char* ProvenanceName(Provenance p);

struct Quantity {
  double value = 0;
  Provenance source = Provenance::kAssumed;
};

enum class DType { kFp4, kFp8, kBf16 };
const char* DTypeName(DType t);

// One DWDP-managed tensor of a MoE layer, treated as opaque bytes per expert.
// One DWDP-managed tensor of a MoE layer, treated as opaque bytes per expert. Its element type
// and per-expert shape are optional (the loader derives or checks expert_bytes from them); the
// real MoE kernel (workload.compute: moe) needs them to find its BF16 gate_up and down weights.
struct WeightSpec {
  std::string name;
  uint64_t expert_bytes = 0;
  std::optional<DType> dtype;
  std::vector<int64_t> shape;  // per expert, e.g. [2·moe_intermediate, hidden]; empty: unknown
};

// The weights the real MoE kernel reads, by index into ModelSpec::weights.
struct MoeWeightIndex {
  int64_t w13 = -1;  // [2·moe_intermediate_size, hidden_size] BF16 (gate rows, then up rows)
  int64_t w2 = -1;   // [hidden_size, moe_intermediate_size] BF16
};

enum class AttentionKind { kMla, kGqa };

struct AttentionSpec {
  AttentionKind kind = AttentionKind::kGqa;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;      // GQA
  int64_t head_dim = 0;          // GQA
  int64_t q_lora_rank = 0;       // MLA (0: no query compression)
  int64_t kv_lora_rank = 0;      // MLA
  int64_t qk_nope_head_dim = 0;  // MLA
  int64_t qk_rope_head_dim = 0;  // MLA
  int64_t v_head_dim = 0;        // MLA
};

struct ModelSpec {
  std::string preset;  // empty when every field was given explicitly
  std::string display_name;
  int64_t num_experts = 0;
  std::vector<int64_t> moe_layers;  // sorted layer indices of the MoE layers
  int64_t num_layers = 0;           // all transformer layers (dense + MoE)
  int64_t hidden_size = 0;
  int64_t moe_intermediate_size = 0;
  int64_t dense_intermediate_size = 0;  // FFN width of the dense (non-MoE) layers
  int64_t top_k = 0;
  int64_t num_shared_experts = 0;
  int64_t vocab_size = 0;
  AttentionSpec attention;
  DType expert_dtype = DType::kFp4;
  DType dense_dtype = DType::kFp8;
  std::vector<WeightSpec> weights;
  uint64_t non_moe_bytes = 0;       // replicated on every GPU (attention, dense, embeddings)
  uint64_t kv_bytes_per_token = 0;  // KV cache per token per GPU, all layers

  uint64_t expert_bytes() const;  // sum over weights (bytes of one expert)
};

// The order of a layer's copies (DWDP_SPEC §4, core/layout MakeCopyPlan):
//   rotate:      owners r+1, r+2, ... (mod d), every layer alike;
//   ascending:   owners in rank order;
//   round_robin: slice_bytes pieces interleaved across owners in rank order;
//   staggered:   rotate, with the layer at position p starting at its (p mod visits)-th owner
//                visit, so that consecutive layers start at different peers.
enum class ContentionMode { kRotate, kAscending, kRoundRobin, kStaggered };
const char* ContentionModeName(ContentionMode m);

struct ContentionConfig {
  ContentionMode mode = ContentionMode::kRotate;
  uint64_t slice_bytes = 2ull << 20;
};

// Which of the ranks that store an expert a puller copies it from (core/partition OwnerMap).
//   lowest:   the lowest rank that stores it, for every puller (TensorRT-LLM's rule); with
//             overlapping recipes the low ranks serve far more copies than the others.
//   balanced: each puller takes each remote expert from one of the ranks that store it, chosen
//             so that every rank serves about the same number of copies per layer.
enum class OwnerPolicy { kLowest, kBalanced };
const char* OwnerPolicyName(OwnerPolicy p);

// Same field names as TensorRT-LLM's DwdpConfig.
struct DwdpConfig {
  int64_t dwdp_size = 0;
  int64_t num_groups = 1;
  int64_t num_experts_per_worker = 0;
  int64_t num_prefetch_experts = 0;
  int64_t num_buffers = 2;
  uint64_t pool_page_bytes = 16ull << 20;
  // Experts per rank in the checkpoint loader; defaults to num_experts_per_worker.
  std::optional<int64_t> loaded_chunk;
  ContentionConfig contention;
  OwnerPolicy owner = OwnerPolicy::kLowest;
};

// Measured time of one routed-MoE layer (router, permutation, the two grouped GEMMs, SiLU·mul,
// combine) of one model shape on this hardware, by tokens per rank, as `dwdp calibrate`
// measures it on the cuda backend's MoE kernel. The perf model interpolates it in tokens
// (core/perf/compute_table.h) and uses it instead of the roofline for that shape.
struct MoeComputeTable {
  int64_t hidden = 0;
  int64_t intermediate = 0;  // moe_intermediate_size
  int64_t num_experts = 0;
  int64_t top_k = 0;
  DType dtype = DType::kBf16;
  Provenance source = Provenance::kMeasured;
  std::string kernel;                 // what was timed, e.g. "cublas padded strided batched"
  std::vector<int64_t> tokens;        // ascending, tokens per rank
  std::vector<double> alone_ns;       // the layer alone on the GPU
  std::vector<double> under_copy_ns;  // while peer copies run into this GPU (empty: not measured)
};

struct HardwareProfile {
  std::string name;
  std::string gpu_name;
  std::string source_file;  // empty for presets and inline maps
  std::string measured_on;  // machine + date for calibrated profiles

  Quantity granularity;      // bytes; VMM minimum = recommended granularity
  Quantity nvlink_bw;        // bytes/s per direction (link capacity)
  Quantity peer_copy_bw;     // bytes/s, copy-engine pull from one peer
  Quantity copy_latency_ns;  // fixed cost of one copy
  // Part of that fixed cost that occupies the copy's path (shared like its bytes) rather than
  // delaying only its own stream; fitted from many small copies of all GPUs at once.
  Quantity copy_latency_on_link{1.0, Provenance::kAssumed};
  // The fixed cost of a remote copy that starts while other remote copies run on its GPUs
  // (0: copy_latency_ns): small pieces pulled both ways at once pay more than one way.
  Quantity copy_latency_loaded_ns;
  Quantity local_copy_bw;  // bytes/s, device-to-device on one GPU
  Quantity hbm_bw;         // bytes/s
  Quantity hbm_bytes;      // usable device memory
  Quantity flops_fp4;      // dense FLOP/s
  Quantity flops_fp8;
  Quantity flops_bf16;
  Quantity compute_efficiency;  // fraction of peak FLOP/s reached by real kernels
  Quantity memory_efficiency;   // fraction of HBM bandwidth reached by real kernels
  Quantity kernel_overhead_ns;  // fixed cost per kernel
  Quantity compute_slowdown;    // fractional slowdown of compute while copies run on the GPU
  Quantity
      concurrent_pull_efficiency;  // ingress efficiency when one GPU pulls from >1 peer at once
  // bytes/s one GPU serves to all its remote pullers together (0: peer_copy_bw). Measured on
  // H100 x4 hosts: 397 GB/s on one, 532 GB/s (1.34x one pair) on another.
  Quantity egress_bw;
  // A GPU's egress while two or more remote pullers read it at once, as a fraction of its rate
  // with one reader (1: no loss). Public nvbandwidth one_to_all_read_ce runs give the source's
  // total at about 0.83x (H800) to 0.86x (GB200 tray) of one pair's read rate.
  Quantity egress_fanout_efficiency{1.0, Provenance::kAssumed};
  // bytes/s per GPU of remote copy traffic when every GPU of the group pulls at once, pooled
  // over the group (0: no such limit). On one H100 x4 host each GPU pulled only about 266 GB/s
  // when all four pulled from each other, although one pair alone ran at 398.
  Quantity fabric_bw;
  // How unevenly the fabric shares itself out among the remote copies that use it at once: the
  // coefficient of variation of one GPU's rate when all pull from each other (0: evenly). 0.13
  // on a 4x H200 host, where each GPU got 241 to 354 GB/s, differently in every repetition;
  // about 0.01 on 2x H200. The simulator draws each remote copy's share at random with it.
  Quantity fabric_share_spread;
  // bytes/s at which the compute kernel reads its layer's tensor: a kernel that reads the whole
  // composite tensor (the cuda backend's stand-in does) takes at least bytes / this, however
  // short its requested time (0: hbm_bw x memory_efficiency). Measured 1.49 TB/s on H100 and
  // 1.61 TB/s on H200 for the stand-in: far below HBM, and what made 100 us layers take 218 us.
  Quantity compute_read_bw;
  Quantity host_issue_ns;  // CPU cost of issuing one stream operation
  // Entries a stream holds before the next enqueue blocks the host (0: no limit). Measured on
  // H100: 1,021. A timed copy takes 3 (its timing events), so 340 copies fill a stream, and a
  // gpt-oss layer pulled in round robin makes 408.
  Quantity stream_queue_entries;
  Quantity event_ns;       // record/wait overhead on the GPU
  Quantity map_ns;         // cuMemMap + cuMemSetAccess of one piece
  Quantity nvlink_domain;  // GPUs in one NVLink domain
  Quantity gpus_per_node;
  Quantity max_mappings;          // VMM mappings per process
  Quantity max_fabric_mappings;   // imported (fabric) mappings per GPU
  bool fabric_supported = false;  // device attribute
  bool imex_permitted = false;    // FABRIC cuMemCreate allowed (IMEX channel present)
  // Measured MoE layer times, one table per model shape (empty: the roofline for every shape).
  std::vector<MoeComputeTable> moe_compute;
};

// What runs as each layer's MoE kernel.
//   stand-in: a kernel that reads the layer's composite tensors and runs for the perf model's
//             time (any weight format; the simulator and the GPU take the same time);
//   moe:      the real routed-MoE layer (router, permutation, grouped GEMMs, SiLU·mul, combine)
//             over the composite BF16 tensors on the GPU; the simulator takes the perf model's
//             time for it, from a measured table when the profile has one.
enum class ComputeKind { kStandIn, kMoe };
const char* ComputeKindName(ComputeKind kind);

// Input (prompt) lengths of the requests a context server sees.
enum class LengthDistribution { kFixed, kUniform, kLognormal, kFile };
const char* LengthDistributionName(LengthDistribution d);

struct InputLengths {
  LengthDistribution distribution = LengthDistribution::kFixed;
  int64_t length = 0;  // fixed
  int64_t min = 1;     // uniform: [min, max]; lognormal: draws are clamped to [min, max]
  int64_t max = 0;
  double mean = 0;               // lognormal
  double cv = 0;                 // lognormal: standard deviation / mean
  std::string path;              // file: as given in the scenario
  std::vector<int64_t> lengths;  // file: the lengths it holds (drawn uniformly)
};

struct Workload {
  int64_t tokens_per_rank = 0;  // context tokens per rank per forward
  int64_t sequence_length = 0;
  int64_t forwards = 1;
  double tokens_cv = 0.2;  // coefficient of variation of per-rank tokens (DEP sync term)
  // When set, the compute time of every MoE layer (overrides the perf model).
  std::optional<double> layer_compute_ns;
  // Request input lengths (sizing); unset: every request is sequence_length long.
  std::optional<InputLengths> input_lengths;
  // The engine's max-num-tokens per forward and rank (chunk size); 0: tokens_per_rank.
  int64_t max_num_tokens = 0;
  ComputeKind compute = ComputeKind::kStandIn;
  // Seeds the MoE kernel's router logits and input activations (compute: moe).
  uint64_t seed = 1;
};

struct Scenario {
  std::string name;
  std::string source_file;
  ModelSpec model;
  DwdpConfig dwdp;
  HardwareProfile hardware;
  Workload workload;
};

}  // namespace dwdp
