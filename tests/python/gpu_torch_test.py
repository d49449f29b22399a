"""DWDP in PyTorch on a GPU with two ranks (they may share one GPU): the raw dwdp.Runtime with
zero-copy views, and dwdp.torch.install in transformers MoE models whose logits must be
bitwise equal to the same model's without DWDP.

    PYTHONPATH=python DWDP_LIBRARY=build/default/cli/libdwdp.so \\
        torchrun --nproc-per-node 2 tests/python/gpu_torch_test.py -v

Skipped unless started that way with torch, transformers and a CUDA GPU (CI discovers this
file and skips it). Every rank runs the same tests in the same order; each case is collective.
"""

import importlib.util
import os
import sys
import unittest

import support

import dwdp


def _why_not():
    if os.environ.get("WORLD_SIZE") != "2":
        return ("needs two ranks: torchrun --nproc-per-node 2 tests/python/gpu_torch_test.py")
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as error:
        return "needs torch and transformers (%s)" % error
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    return None


WHY_NOT = _why_not()
MIB = 1 << 20


def load_example():
    """examples/torch_moe.py as a module, loaded once."""
    if "torch_moe" in sys.modules:
        return sys.modules["torch_moe"]
    path = os.path.join(support.REPO, "examples", "torch_moe.py")
    spec = importlib.util.spec_from_file_location("torch_moe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["torch_moe"] = module
    spec.loader.exec_module(module)
    return module


@unittest.skipIf(WHY_NOT is not None, WHY_NOT or "")
class GpuTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.example = load_example()
        cls.rank, cls.device, cls.comm = cls.example.start()


class RuntimeTest(GpuTest):
    """dwdp.Runtime directly: every byte of every expert, local or pulled, through the
    zero-copy views, over two forwards."""

    def test_views_hold_every_expert_of_every_layer(self):
        import torch
        config = dwdp.Config(dwdp_size=2, num_experts_per_worker=9, num_prefetch_experts=7,
                             num_experts=16, moe_layers=(0, 2, 3), num_buffers=2,
                             weights=[dwdp.Weight("w13", "bf16", (256, 128)),
                                      dwdp.Weight("w2", "float32", (3, 5))])

        def value(layer, weight, expert):  # exact in bf16 and float32
            return float(layer * 40 + weight * 20 + expert)

        mine = config.local_experts(self.rank)
        chunks = {}
        for layer in config.moe_layers:
            for w, weight in enumerate(config.weights):
                values = torch.tensor([value(layer, w, e) for e in mine])
                shape = (len(mine),) + weight.shape
                chunks[(layer, weight.name)] = values.view(-1, *[1] * len(weight.shape)).expand(
                    shape).to(dtype=dwdp.config.torch_dtype(weight.dtype),
                              device=self.device).contiguous()
        with dwdp.Runtime.create(config, chunks, comm=self.comm, device=self.device) as runtime:
            del chunks
            self.assertEqual(list(runtime.local_experts), list(mine))
            self.assertEqual(runtime.group_rank, self.rank)
            view = runtime.tensor(2, "w13")
            self.assertEqual((view.dtype, tuple(view.shape)), (torch.bfloat16, (16, 256, 128)))
            self.assertIs(runtime.tensor(2, 0), view)  # one view per (layer, weight)
            self.assertEqual(runtime.tensor(0, "w2").dtype, torch.float32)
            for forward in range(2):
                runtime.prime()
                for layer in config.moe_layers:
                    runtime.wait_and_bind(layer)
                    for w, weight in enumerate(config.weights):
                        got = runtime.tensor(layer, w).float()
                        want = torch.tensor([value(layer, w, e) for e in range(16)],
                                            device=self.device)
                        want = want.view(-1, *[1] * len(weight.shape)).expand(got.shape)
                        self.assertTrue(torch.equal(got, want),
                                        "forward %d layer %d %s" % (forward, layer, weight.name))
                    runtime.record_compute(layer)
                    runtime.prefetch_next(layer)
            torch.cuda.synchronize(self.device)
            with self.assertRaises(dwdp.Error) as caught:
                runtime.wait_and_bind(1)
            self.assertIn("layer 1 is not a MoE layer of the config (0, 2, 3)",
                          str(caught.exception))
        self.assertTrue(runtime.closed)
        with self.assertRaises(dwdp.Error) as caught:
            runtime.prime()
        self.assertIn("prime after close()", str(caught.exception))


class ChunkErrorsTest(GpuTest):
    """Chunks that disagree with the config are refused on this rank before any group work."""

    def test_wrong_dtype_shape_and_device(self):
        import torch
        config = dwdp.Config(dwdp_size=2, num_experts_per_worker=8, num_prefetch_experts=8,
                             num_experts=16, moe_layers=(0,),
                             weights=[dwdp.Weight("w13", "bf16", (64, 32))])
        good = torch.zeros(8, 64, 32, dtype=torch.bfloat16, device=self.device)
        cases = [
            (good.float(), "the chunk of layer 0 w13 has dtype float32; the config says "
                           "bfloat16"),
            (good[:, :32], "the chunk of layer 0 w13 has shape [8, 32, 32]; the config says "
                           "[num_experts_per_worker, *shape] = [8, 64, 32]"),
            (good.cpu(), "the chunk of layer 0 w13 is on cpu"),
            (good.transpose(1, 2).contiguous().transpose(1, 2), "is not contiguous"),
        ]
        for chunk, sentence in cases:
            with self.subTest(sentence=sentence), self.assertRaises(dwdp.Error) as caught:
                dwdp.Runtime.create(config, {(0, "w13"): chunk}, comm=self.comm,
                                    device=self.device)
            self.assertIn(sentence, str(caught.exception))

    def test_a_model_without_fused_experts(self):
        import torch
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.torch.install(model, dwdp.Config(dwdp_size=2, num_experts_per_worker=8,
                                                  num_prefetch_experts=8))
        self.assertIn("has no MoE experts module with fused [num_experts, ...] parameters",
                      str(caught.exception))

    def test_a_config_that_disagrees_with_the_model(self):
        model = self.example.build_model("qwen3-moe", 1)
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.torch.install(model, dwdp.Config(dwdp_size=2, num_experts_per_worker=16,
                                                  num_prefetch_experts=16, num_experts=32))
        self.assertIn("the config says num_experts = 32, but the model's experts hold 16",
                      str(caught.exception))


class ModelsTest(GpuTest):
    """The example's comparison as tests: logits bitwise equal over several forwards, and the
    experts a rank does not store are gone from its GPU."""

    def check(self, kind, partition, num_buffers, forwards=3):
        r = self.example.run_case(kind, partition, num_buffers, forwards, 1234, self.device,
                                  self.comm, self.rank)
        print("\nrank %d: %s" % (self.rank, r.line()), flush=True)
        self.assertTrue(r.baseline_deterministic,
                        "the model without DWDP gives different logits for the same input")
        self.assertTrue(r.equal, r.line())
        first = self.rank * r.stride
        self.assertEqual(list(r.local_experts), list(range(first, first + r.size)))
        # dwdp holds exactly the local handles and pool pages of its layout.
        self.assertEqual(r.device_bytes, r.expected_local + r.expected_pool)
        # torch holds no expert memory after install: only what is not an expert (1 MiB of
        # slack for small allocations).
        self.assertLessEqual(r.resident, r.baseline_resident - r.experts_bytes + MIB)
        # Forward for forward, the rank needs less GPU memory than with every expert.
        self.assertLess(r.dwdp_torch_peak + r.device_bytes, r.baseline_peak)


def _add_case(kind, partition, num_buffers):
    def test(self):
        self.check(kind, partition, num_buffers)
    name = "test_%s_%s_k%d" % (kind.replace("-", "_"), partition, num_buffers)
    setattr(ModelsTest, name, test)


for _kind in ("qwen3-moe", "deepseek-v3"):
    for _partition in ("uniform", "modeb"):
        for _k in (2, 3):
            _add_case(_kind, _partition, _k)
# Two more families with fused experts, one case each.
_add_case("mixtral", "modeb", 2)
_add_case("gpt-oss", "uniform", 3)


if __name__ == "__main__":
    unittest.main()
