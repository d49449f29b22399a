"""dwdp.torch.install on the CPU, with a stand-in for the GPU runtime: which modules it finds,
which slices it hands over, what the parameters become, the order of the per-layer calls, and
its errors. Runs where PyTorch is importable (any build, no GPU); skipped elsewhere. The GPU
path is gpu_torch_test.py."""

import unittest
from unittest import mock

import support  # noqa: F401 -- puts python/ on the path

import dwdp
from dwdp import group as dwdp_group

try:
    import torch
    from torch import nn

    import dwdp.torch as dwdp_torch
except ImportError:
    torch = None

E, HIDDEN, INTER = 8, 16, 8


if torch is not None:
    class FusedExperts(nn.Module):
        """Like transformers 5's Qwen3MoeExperts: fused [E, ...] parameters, a loop over the
        experts each token picked."""

        def __init__(self, bias=False):
            super().__init__()
            self.gate_up_proj = nn.Parameter(torch.randn(E, 2 * INTER, HIDDEN))
            self.down_proj = nn.Parameter(torch.randn(E, HIDDEN, INTER))
            if bias:  # like gpt-oss: per-expert biases, 2-D, stay whole
                self.down_proj_bias = nn.Parameter(torch.randn(E, HIDDEN))

        def forward(self, x, index):
            out = torch.zeros_like(x)
            for e in range(E):
                rows = (index == e).nonzero().flatten()
                if rows.numel():
                    gate, up = (x[rows] @ self.gate_up_proj[e].T).chunk(2, dim=-1)
                    out[rows] += (torch.nn.functional.silu(gate) * up) @ self.down_proj[e].T
            return out

    class Block(nn.Module):
        def __init__(self, moe, bias=False):
            super().__init__()
            self.attn = nn.Linear(HIDDEN, HIDDEN)
            self.gate = nn.Linear(HIDDEN, E)
            self.experts = FusedExperts(bias) if moe else None

        def forward(self, x):
            x = x + self.attn(x)
            if self.experts is None:
                return x
            return x + self.experts(x, self.gate(x).argmax(-1))

    class Model(nn.Module):
        def __init__(self, bias=False):
            super().__init__()
            torch.manual_seed(7)
            # Layer 0 dense, layers 1..3 MoE, as DeepSeek-V3 starts.
            self.layers = nn.ModuleList([Block(i > 0, bias) for i in range(4)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x


class FakeRuntime:
    """Records the calls; its composite tensors hold every expert (what DWDP presents)."""

    created = []

    def __init__(self, config, chunks, full, group):
        self.config, self.chunks, self.full, self.group = config, chunks, full, group
        self.calls = []
        self.closed = False
        self.group_rank = group.rank
        self.local_experts = config.local_experts(group.rank)
        self.device_bytes = 123

    @classmethod
    def create(cls, config, chunks, comm=None, device=None, copy_stream=None, timeout=60.0):
        runtime = cls(config, dict(chunks), cls.full_values, comm)
        cls.created.append(runtime)
        return runtime

    def tensor(self, layer, weight):
        return self.full[(layer, weight)].clone()

    def prime(self):
        self.calls.append(("prime",))

    def wait_and_bind(self, layer):
        self.calls.append(("wait_and_bind", layer))

    def record_compute(self, layer):
        self.calls.append(("record_compute", layer))

    def prefetch_next(self, layer):
        self.calls.append(("prefetch_next", layer))

    def close(self):
        self.closed = True


@unittest.skipIf(torch is None, "needs PyTorch (any build; no GPU)")
class InstallTest(unittest.TestCase):
    def install(self, model, config, rank=1):
        FakeRuntime.full_values = {
            (int(name.split(".")[1]), pname): p.detach().clone()
            for name, module in dwdp_torch.find_experts(model)
            for pname, p in dwdp_torch.fused_parameters(module)}
        FakeRuntime.created = []
        with mock.patch.object(dwdp_torch, "Runtime", FakeRuntime), \
                mock.patch.object(torch.cuda, "is_available", return_value=True), \
                mock.patch.object(torch.cuda, "empty_cache"):
            installed = dwdp_torch.install(model, config, comm=dwdp_group.Group(rank, 2),
                                           device="cpu")
        return installed, FakeRuntime.created[0]

    def config(self, **fields):
        values = dict(dwdp_size=2, num_experts_per_worker=5, num_prefetch_experts=3)
        values.update(fields)
        return dwdp.Config(**values)

    def test_finds_the_fused_experts_and_reads_the_model(self):
        model = Model()
        self.assertEqual([name for name, _ in dwdp_torch.find_experts(model)],
                         ["layers.1.experts", "layers.2.experts", "layers.3.experts"])
        installed, runtime = self.install(model, self.config())
        self.assertEqual(runtime.config.num_experts, E)
        self.assertEqual(runtime.config.moe_layers, (1, 2, 3))
        self.assertEqual(runtime.config.weights,
                         (dwdp.Weight("gate_up_proj", "float32", (2 * INTER, HIDDEN)),
                          dwdp.Weight("down_proj", "float32", (HIDDEN, INTER))))
        self.assertEqual(installed.layers, [1, 2, 3])

    def test_hands_over_only_this_ranks_slice(self):
        model = Model()
        installed, runtime = self.install(model, self.config(), rank=1)
        # Rank 1 of the Mode B recipe 5/3 on 8 experts stores experts [3, 8).
        self.assertEqual(sorted(runtime.chunks), [(layer, name) for layer in (1, 2, 3)
                                                  for name in ("down_proj", "gate_up_proj")])
        for (layer, name), chunk in runtime.chunks.items():
            self.assertTrue(torch.equal(chunk, runtime.full[(layer, name)][3:8]), (layer, name))

    def test_parameters_become_the_composite_tensors_and_the_model_runs_unchanged(self):
        model = Model(bias=True)
        x = torch.randn(6, HIDDEN)
        with torch.no_grad():
            expected = model(x)
        installed, runtime = self.install(model, self.config())
        experts = model.layers[2].experts
        self.assertFalse(experts.gate_up_proj.requires_grad)
        self.assertEqual(experts.down_proj_bias.shape, (E, HIDDEN))  # not managed: stays
        self.assertNotIn("down_proj_bias", [w.name for w in runtime.config.weights])
        with torch.no_grad():
            self.assertTrue(torch.equal(model(x), expected))
        self.assertEqual(runtime.calls, [
            ("prime",),
            ("wait_and_bind", 1), ("record_compute", 1), ("prefetch_next", 1),
            ("wait_and_bind", 2), ("record_compute", 2), ("prefetch_next", 2),
            ("wait_and_bind", 3), ("record_compute", 3), ("prefetch_next", 3)])

    def test_a_submodule_called_alone_primes_itself(self):
        model = Model()
        installed, runtime = self.install(model, self.config())
        x = torch.randn(4, HIDDEN)
        with torch.no_grad():
            for layer in model.layers:  # the layers without the model's own forward
                x = layer(x)
        self.assertEqual(runtime.calls[0], ("prime",))
        self.assertEqual(len(runtime.calls), 10)

    def test_a_layer_out_of_order_is_an_error(self):
        model = Model()
        installed, runtime = self.install(model, self.config())
        with self.assertRaises(dwdp.Error) as caught, torch.no_grad():
            model.layers[2](torch.randn(4, HIDDEN))
        self.assertIn("MoE layer 2 ran out of order: dwdp expected a new forward (layer 1)",
                      str(caught.exception))
        with torch.no_grad():
            model(torch.randn(4, HIDDEN))  # a whole forward still works

    def test_close_releases_the_experts(self):
        model = Model()
        installed, runtime = self.install(model, self.config())
        installed.close()
        self.assertTrue(runtime.closed)
        self.assertEqual(model.layers[1].experts.gate_up_proj.numel(), 0)
        with self.assertRaises(dwdp.Error) as caught, torch.no_grad():
            model(torch.randn(4, HIDDEN))
        self.assertIn("the experts of MoE layer 1 were released by Installation.close()",
                      str(caught.exception))

    def test_a_config_that_disagrees_with_the_model(self):
        cases = [
            (dict(num_experts=16), "the config says num_experts = 16, but the model's experts "
                                   "hold 8"),
            (dict(num_experts=8, moe_layers=(0, 1, 2), weights=[("w", "bf16", (4,))]),
             "the config's moe_layers are [0, 1, 2], but the model's MoE layers are [1, 2, 3]"),
            (dict(num_experts=8, moe_layers=(1, 2, 3),
                  weights=[("gate_up_proj", "bf16", (2 * INTER, HIDDEN)),
                           ("down_proj", "bf16", (HIDDEN, INTER))]),
             "the config's weights are gate_up_proj bfloat16 [16, 16], down_proj bfloat16 "
             "[16, 8], but the model's experts hold gate_up_proj float32 [16, 16], down_proj "
             "float32 [16, 8]"),
        ]
        for fields, sentence in cases:
            with self.subTest(fields=fields), self.assertRaises(dwdp.Error) as caught:
                self.install(Model(), self.config(**fields))
            self.assertIn(sentence, str(caught.exception))

    def test_layers_that_differ_are_an_error(self):
        model = Model()
        model.layers[3].experts.down_proj = nn.Parameter(torch.randn(E, HIDDEN, 2 * INTER))
        with self.assertRaises(dwdp.Error) as caught:
            self.install(model, self.config())
        self.assertIn("the MoE layers differ: layers.3.experts holds gate_up_proj float32 "
                      "[16, 16], down_proj float32 [16, 16] but layers.1.experts holds",
                      str(caught.exception))

    def test_a_model_without_fused_experts(self):
        class PerExpert(nn.Module):
            def __init__(self):
                super().__init__()
                self.experts = nn.ModuleList([nn.Linear(4, 4) for _ in range(4)])

        with self.assertRaises(dwdp.Error) as caught:
            self.install(PerExpert(), self.config())
        self.assertEqual(
            str(caught.exception),
            "dwdp: the model (PerExpert) has no MoE experts module with fused [num_experts, ...] "
            "parameters (gate_up_proj / down_proj); dwdp.torch supports models whose experts "
            "are fused, such as the transformers models Qwen3-MoE, DeepSeek-V3, Mixtral and "
            "gpt-oss; its experts at experts are separate modules (nn.ModuleList)")


if __name__ == "__main__":
    unittest.main()
