#!/usr/bin/env python3
"""A small transformers MoE model on DWDP, compared bit for bit with the same model without it.

    torchrun --nproc-per-node 2 examples/torch_moe.py [options]
    mpirun -np 2 python3 examples/torch_moe.py [options]

Every rank builds the same randomly initialised model from a config (seeded: no download), runs
it on its own GPU without DWDP, then installs DWDP (dwdp.torch.install: each rank keeps its
slice of every MoE layer's experts and pulls the rest from its peer) and runs the same inputs
again. The ranks may share one GPU. Each rank prints one line per case:

    rank 0: qwen3-moe uniform 8/8 k=2: 3 forwards, logits bitwise equal; GPU memory: without
    DWDP 436.1 MiB (experts 384.0), with DWDP 52.1 MiB torch + 240.0 MiB dwdp (local experts
    192.0 + pool 48.0)

and exits 0 when every forward's logits are bitwise equal, else 1.

Options: --model qwen3-moe | deepseek-v3 | mixtral | gpt-oss (default qwen3-moe),
--partition uniform | modeb, --num-buffers K, --forwards F, --all (qwen3-moe and deepseek-v3,
both partitions, k = 2 and 3). Needs torch, transformers, and libdwdp.so (DWDP_LIBRARY or the
source tree's build; PYTHONPATH=python or `pip install ./python`).
"""

import os

# Deterministic cuBLAS; it must be set before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse  # noqa: E402
import copy  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402

try:
    import dwdp  # noqa: E402
except ImportError:  # run from a source checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import dwdp  # noqa: E402

import torch  # noqa: E402

import dwdp.torch  # noqa: E402

MIB = 1 << 20
DWDP_SIZE = 2
NUM_EXPERTS = 16
# Expert sizes with whole-MiB slices (hidden 1024, moe_intermediate 512, bf16): gate_up is
# 2 MiB and down 1 MiB per expert, so the composite tensors are well aligned and the pool's
# 2 MiB pages hold them without waste.
HIDDEN = 1024
MOE_INTERMEDIATE = 512
MOE_LAYERS = 8
VOCAB = 1024
BATCH, SEQUENCE = 2, 64


def model_config(kind):
    """A small transformers config of the model family (MOE_LAYERS MoE layers)."""
    import transformers
    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_attention_heads=8,
                  num_experts_per_tok=4)
    if kind == "qwen3-moe":
        return transformers.Qwen3MoeConfig(
            **common, num_hidden_layers=MOE_LAYERS, num_key_value_heads=4, head_dim=128,
            intermediate_size=2048, moe_intermediate_size=MOE_INTERMEDIATE,
            num_experts=NUM_EXPERTS, decoder_sparse_step=1, mlp_only_layers=[])
    if kind == "deepseek-v3":
        # One dense layer first, as DeepSeek-V3 has; MoE layers 1 .. MOE_LAYERS.
        return transformers.DeepseekV3Config(
            **common, num_hidden_layers=MOE_LAYERS + 1, first_k_dense_replace=1,
            num_key_value_heads=8, intermediate_size=2048,
            moe_intermediate_size=MOE_INTERMEDIATE, n_routed_experts=NUM_EXPERTS,
            n_shared_experts=1, n_group=4, topk_group=2, q_lora_rank=256, kv_lora_rank=128,
            qk_rope_head_dim=32, qk_nope_head_dim=64, v_head_dim=64)
    if kind == "mixtral":
        return transformers.MixtralConfig(
            **common, num_hidden_layers=MOE_LAYERS, num_key_value_heads=4,
            intermediate_size=MOE_INTERMEDIATE, num_local_experts=NUM_EXPERTS)
    if kind == "gpt-oss":
        return transformers.GptOssConfig(
            **common, num_hidden_layers=MOE_LAYERS, num_key_value_heads=4, head_dim=128,
            intermediate_size=MOE_INTERMEDIATE, num_local_experts=NUM_EXPERTS)
    raise SystemExit("unknown model %r" % kind)


def build_model(kind, seed):
    """The model on the CPU in bf16, every rank's bit for bit (seeded). The experts are drawn
    again from their own generator so their values never depend on how the family initialises
    its parameters."""
    import transformers
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(model_config(kind))
    model = model.to(torch.bfloat16).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, module in dwdp.torch.find_experts(model):
            for _, p in module.named_parameters(recurse=False):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return model


def partition(kind):
    """(num_experts_per_worker, num_prefetch_experts): uniform, or the Mode B recipe with the
    least overlap (9/7 for 16 experts on 2 ranks)."""
    recipes = dwdp.recipes(DWDP_SIZE, NUM_EXPERTS)["recipes"]
    wanted = [r for r in recipes if (r["overlap"] == 0) == (kind == "uniform")]
    return wanted[0]["num_experts_per_worker"], wanted[0]["num_prefetch_experts"]


def inputs(seed, rank, forwards, device):
    """Different tokens on each rank and in each forward (so the routing differs)."""
    generator = torch.Generator().manual_seed(seed * 1000 + rank)
    return [torch.randint(0, VOCAB, (BATCH, SEQUENCE), generator=generator).to(device)
            for _ in range(forwards)]


def experts_bytes(model):
    return sum(p.numel() * p.element_size() for _, m in dwdp.torch.find_experts(model)
               for _, p in dwdp.torch.fused_parameters(m))


def forward_all(model, batches):
    with torch.no_grad():
        return [model(input_ids=ids).logits.float().cpu() for ids in batches]


def same_bits(a, b):
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def expected_dwdp_bytes(config, rank):
    """What dwdp should hold on the GPU for `rank`: its local handles and pool pages, from the
    layout `dwdp layout` reports for the same config."""
    mine = dwdp.layout(config.to_scenario(), rank=rank)
    r = mine["ranks"][0]
    local = r["local_bytes_per_layer"] * len(config.moe_layers)
    pool = sum(r["slot_pages"]) * mine["pool_page_bytes"]
    return local, pool


class Result:
    """One case on one rank."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def line(self):
        verdict = ("logits bitwise equal" if self.equal else
                   "logits DIFFER in forward(s) %s" % self.differing)
        if not self.baseline_deterministic:
            verdict += " (the model without DWDP is not deterministic here)"
        return ("%s %s %d/%d k=%d: %d forwards, %s; GPU memory: without DWDP %.1f MiB (experts "
                "%.1f), with DWDP %.1f MiB torch + %.1f MiB dwdp (local experts %.1f + pool "
                "%.1f)" % (self.model, self.partition, self.size, self.stride, self.num_buffers,
                           self.forwards, verdict, self.baseline_peak / MIB,
                           self.experts_bytes / MIB, self.dwdp_torch_peak / MIB,
                           self.device_bytes / MIB, self.expected_local / MIB,
                           self.expected_pool / MIB))


def run_case(kind, partition_kind, num_buffers, forwards, seed, device, comm, rank):
    """Runs the model without and with DWDP on the same inputs; returns a Result."""
    model = build_model(kind, seed)
    batches = inputs(seed, rank, forwards, device)
    total_experts = experts_bytes(model)

    # cuBLAS takes its workspace from torch's allocator at the first GEMM on a stream and keeps
    # it; take it now, so that it is in both resident figures and not only in the second.
    warm = torch.ones(64, 64, dtype=torch.bfloat16, device=device)
    product = warm @ warm
    del warm, product

    # Without DWDP: the whole model on the GPU.
    torch.cuda.reset_peak_memory_stats(device)
    baseline = copy.deepcopy(model).to(device)
    baseline_resident = torch.cuda.memory_allocated(device)
    reference = forward_all(baseline, batches)
    again = forward_all(baseline, batches[:1])
    baseline_peak = torch.cuda.max_memory_allocated(device)
    del baseline
    gc.collect()
    torch.cuda.empty_cache()

    # With DWDP: only this rank's slices of the experts go to the GPU.
    size, stride = partition(partition_kind)
    config = dwdp.Config(dwdp_size=DWDP_SIZE, num_experts_per_worker=size,
                         num_prefetch_experts=stride, num_buffers=num_buffers,
                         pool_page_bytes=2 * MIB)
    torch.cuda.reset_peak_memory_stats(device)
    installed = dwdp.torch.install(model, config, comm=comm, device=device)
    model.to(device)
    setup_peak = torch.cuda.max_memory_allocated(device)
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    logits = forward_all(model, batches)
    dwdp_torch_peak = torch.cuda.max_memory_allocated(device)
    device_bytes = installed.device_bytes
    local, pool = expected_dwdp_bytes(installed.config, installed.runtime.group_rank)
    result = Result(
        model=kind, partition=partition_kind, size=size, stride=stride, num_buffers=num_buffers,
        forwards=forwards, equal=all(same_bits(a, b) for a, b in zip(reference, logits)),
        differing=[i for i, (a, b) in enumerate(zip(reference, logits)) if not same_bits(a, b)],
        baseline_deterministic=same_bits(reference[0], again[0]),
        experts_bytes=total_experts, baseline_resident=baseline_resident,
        baseline_peak=baseline_peak, setup_peak=setup_peak,
        resident=resident, dwdp_torch_peak=dwdp_torch_peak, device_bytes=device_bytes,
        expected_local=local, expected_pool=pool,
        local_experts=installed.local_experts, group_rank=installed.runtime.group_rank)
    installed.close()
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return result


def start():
    """(rank, device, comm): torch.distributed under torchrun, MPI under mpirun. Ranks share
    the GPUs there are (local rank modulo the count)."""
    if "MASTER_ADDR" in os.environ and "RANK" in os.environ:
        import torch.distributed as dist
        # gloo: dwdp only bootstraps over it, and NCCL refuses two ranks on one GPU.
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        rank, local, comm = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), "torch"
    else:
        rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", 0)))
        local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", rank))
        comm = "mpi"
    device = torch.device("cuda", local % torch.cuda.device_count())
    torch.cuda.set_device(device)
    # Deterministic kernels where PyTorch has them (index_add_ of the experts' outputs).
    torch.use_deterministic_algorithms(True, warn_only=True)
    return rank, device, comm


def cases(args):
    if args.all:
        return [(m, p, k) for m in ("qwen3-moe", "deepseek-v3") for p in ("uniform", "modeb")
                for k in (2, 3)]
    return [(args.model, args.partition, args.num_buffers)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen3-moe",
                        choices=["qwen3-moe", "deepseek-v3", "mixtral", "gpt-oss"])
    parser.add_argument("--partition", default="uniform", choices=["uniform", "modeb"])
    parser.add_argument("--num-buffers", type=int, default=2)
    parser.add_argument("--forwards", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--all", action="store_true",
                        help="qwen3-moe and deepseek-v3, uniform and Mode B, k = 2 and 3")
    args = parser.parse_args()
    rank, device, comm = start()
    ok = True
    for kind, partition_kind, k in cases(args):
        result = run_case(kind, partition_kind, k, args.forwards, args.seed, device, comm, rank)
        print("rank %d: %s" % (rank, result.line()), flush=True)
        ok = ok and result.equal
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
