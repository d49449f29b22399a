#!/usr/bin/env python3
"""torch._grouped_mm on THIS GPU, the reference moe_bench compares against, and the ratio.

    python3 bench/torch_moe_reference.py [MOE_BENCH.json]

moe_bench's `torch ms` column is the table measured once on an H200; on another GPU the ratio
needs torch timed on the same card. This times the same work the same way: the routed experts
only (gate_up grouped GEMM, SiLU(gate) * up, down grouped GEMM) on already-permuted tokens with
a uniform top-k (every expert gets tokens * top_k / experts rows), BF16, CUDA events, mean of
10 after 3 warm-ups. Given the JSON of `moe_bench --strategy all --format json`, it adds our
GEMM time per strategy and the ratio ours / torch (and the strategy moe_bench's `auto` would
pick is the fastest of them).
"""

import json
import sys

import torch

SHAPES = {  # name: (hidden, moe_intermediate, experts, top_k), as in moe_bench
    "qwen3": (2048, 768, 128, 8),
    "gpt-oss": (2880, 2880, 128, 4),
    "dsv3": (7168, 2048, 256, 8),
}
TOKENS = (1024, 4096, 16384)
WARMUPS, ITERATIONS = 3, 10


def time_torch(hidden, inter, experts, top_k, tokens):
    gen = torch.Generator(device="cuda").manual_seed(1)
    rows = tokens * top_k
    x = torch.rand(rows, hidden, device="cuda", dtype=torch.bfloat16, generator=gen) - 0.5
    # _grouped_mm wants the experts' matrices as [E, K, N] with N contiguous in memory or a
    # transposed view; the views below are the layouts engines store (w13 [E, 2I, H]).
    w13 = torch.rand(experts, 2 * inter, hidden, device="cuda", dtype=torch.bfloat16,
                     generator=gen) - 0.5
    w2 = torch.rand(experts, hidden, inter, device="cuda", dtype=torch.bfloat16,
                    generator=gen) - 0.5
    per_expert = rows // experts
    offs = torch.arange(1, experts + 1, device="cuda", dtype=torch.int32) * per_expert
    x = x[: per_expert * experts]

    def layer():
        gate_up = torch._grouped_mm(x, w13.transpose(1, 2), offs=offs)
        gate, up = gate_up.chunk(2, dim=-1)
        return torch._grouped_mm(torch.nn.functional.silu(gate) * up, w2.transpose(1, 2),
                                 offs=offs)

    for _ in range(WARMUPS):
        layer()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(ITERATIONS):
        layer()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / ITERATIONS


def main(argv):
    ours = {}
    if len(argv) > 1:
        with open(argv[1]) as f:
            for row in json.load(f)["rows"]:
                ours.setdefault((row["shape"], row["tokens"]), {})[row["strategy"]] = row["gemm_ms"]
    print("torch %s, %s (BF16; mean of %d after %d warm-ups)" %
          (torch.__version__, torch.cuda.get_device_name(), ITERATIONS, WARMUPS))
    header = "%-8s %6s %9s" % ("shape", "tokens", "torch ms")
    if ours:
        header += " %9s %-11s %7s" % ("ours ms", "strategy", "ours/t")
    print(header)
    for name, (hidden, inter, experts, top_k) in SHAPES.items():
        for tokens in TOKENS:
            t = time_torch(hidden, inter, experts, top_k, tokens)
            line = "%-8s %6d %9.3f" % (name, tokens, t)
            mine = ours.get((name, tokens))
            if mine:
                strategy, ms = min(mine.items(), key=lambda kv: kv[1])
                line += " %9.3f %-11s %6.2fx" % (ms, strategy, ms / t)
            print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv)
