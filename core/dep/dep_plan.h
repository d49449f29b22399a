#pragma once

// The DEP baseline (data-parallel attention, expert-parallel MoE) as pure functions: how many
// tokens each rank has, which rank owns which expert, and where every routed (token, slot) entry
// travels in one MoE layer's dispatch and comes back in its combine. The GPU baseline
// (backends/cuda/dep) executes exactly this plan with NCCL; the simulator prices it
// (core/dep/dep_timing.h); the host reference (core/dep/dep_reference.h) runs it on the CPU.
//
// Routing is the real MoE kernel's (core/moe/routing.h): rank r routes its own tokens
// 0 .. tokens[r] - 1 with the layer's routing seed, exactly as each DWDP rank does, so the DEP
// layer of rank r and the DWDP (resident-weights) layer of rank r compute the same products.
//
// Layout of one layer's exchange (row = one entry's hidden state, bf16):
//   send buffer of rank s:  grouped by destination rank, then by the destination's local expert,
//                           then by entry (token * top_k + j) ascending;
//   receive buffer of rank d: the rows from source 0, then source 1, ... (each source's rows in
//                           its send order, so already grouped by local expert per source);
//   permuted rows of rank d: grouped by local expert, then by source, then by send order: the
//                           packed layout of the grouped GEMM;
//   the combine sends every row back in the order it was received, so the returned buffer of
//   rank s has its send order and entry_row says where each entry's expert output lies.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dwdp::dep {

struct DepShape {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
};

// One sentence when DEP cannot run: ep_size < 1, ep_size not dividing the experts, a negative
// or non-finite tokens_cv, a shape the router cannot take.
absl::Status ValidateDep(const DepShape& shape, int64_t ep_size, double tokens_cv);

// Per-rank token counts with mean `mean_tokens` and coefficient of variation `cv`, the same for
// the same arguments: rank r gets mean * (1 + cv * z_r), z evenly spaced with mean 0 and
// standard deviation 1, assigned to ranks in an order drawn from `seed`, each count at least 1
// (cv <= 1 / sqrt(3) never needs the clamp). The total is ranks * mean (the rounding
// remainder goes to the largest ranks).
std::vector<int64_t> TokensPerRank(int64_t mean_tokens, int64_t ranks, double cv, uint64_t seed);

// Experts are owned in contiguous blocks: expert e lives on rank e / experts_per_rank.
inline int64_t OwnerOf(int64_t expert, int64_t experts_per_rank) {
  return expert / experts_per_rank;
}

struct SourcePlan {
  int64_t tokens = 0;
  std::vector<int64_t> send_counts;   // [ep] rows to each destination
  std::vector<int64_t> send_offsets;  // [ep] first row of each destination in the send buffer
  std::vector<int32_t> send_token;    // [rows] the token whose hidden state each send row is
  std::vector<int32_t> entry_row;     // [tokens * top_k] row of the returned buffer of the entry
  std::vector<int32_t> experts;       // [tokens * top_k] the router's choice, best first
  std::vector<float> weights;         // [tokens * top_k] the router's weights
  int64_t rows() const { return static_cast<int64_t>(send_token.size()); }
};

struct DestinationPlan {
  std::vector<int64_t> recv_counts;   // [ep] rows from each source
  std::vector<int64_t> recv_offsets;  // [ep]
  // [ep * experts_per_rank]: rows from source s for local expert e at s * experts_per_rank + e,
  // the message a source sends before its rows ("counts first").
  std::vector<int32_t> counts_from;
  std::vector<int32_t> expert_counts;  // [experts_per_rank] rows per local expert
  std::vector<int32_t> permuted_from;  // [rows] permuted row p holds received row permuted_from[p]
  std::vector<int32_t> returned_from;  // [rows] returned row i holds permuted row returned_from[i]
  int64_t rows() const { return static_cast<int64_t>(permuted_from.size()); }
};

struct DispatchPlan {
  DepShape shape;
  int64_t ep_size = 0;
  int64_t experts_per_rank = 0;
  uint64_t routing_seed = 0;
  std::vector<SourcePlan> sources;            // [ep]
  std::vector<DestinationPlan> destinations;  // [ep]

  // The counts source s sends to destination d (experts_per_rank values).
  std::vector<int32_t> CountsMessage(int64_t s, int64_t d) const;
};

// The plan of one layer. `tokens` has ep_size entries. Requires ValidateDep.
DispatchPlan PlanDispatch(const DepShape& shape, uint64_t routing_seed,
                          const std::vector<int64_t>& tokens, int64_t ep_size);

// Checks what the GPU relies on: every entry sent once to its expert's owner, counts and
// offsets consistent on both sides, both permutations bijections, entry_row pointing at the
// entry's own row. One sentence on the first violation.
absl::Status CheckDispatchPlan(const DispatchPlan& plan);

}  // namespace dwdp::dep
