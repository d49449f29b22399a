"""dwdp.torch.install: DWDP inside a PyTorch MoE model whose experts hold fused
[num_experts, ...] parameters, such as the transformers models Qwen3-MoE, Qwen2-MoE,
DeepSeek-V3, Mixtral and gpt-oss (their `...Experts` modules: gate_up_proj, down_proj).

    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)   # on the CPU
    installed = dwdp.torch.install(model, dwdp.Config(dwdp_size=2, num_experts_per_worker=64,
                                                      num_prefetch_experts=64))
    model.to("cuda")                       # the rest of the model
    logits = model(input_ids).logits       # the model's own code, unchanged

install() finds the experts modules, keeps this rank's slice of each fused parameter (only that
slice is ever copied to the GPU), hands the slices to a dwdp.Runtime, points the parameters at
the runtime's composite tensors (the rest of the experts are freed) and registers hooks:
prime before the model's forward, wait_and_bind before each experts module, record_compute and
prefetch_next after it. Parameters of the experts modules with fewer dimensions (gpt-oss's
per-expert biases) stay whole on every rank: they are small.

For inference only: the managed parameters stop requiring grad, and the model must not be moved
to another device or dtype afterwards (move it before, or move only the rest, as above).
CUDA graphs and torch.compile are not supported (the hooks must run every forward).
"""

import re

import torch

from dwdp import _lib
from dwdp import group as _group
from dwdp.config import Config, Weight, dtype_name
from dwdp.runtime import Runtime

# Direct parameters whose presence (with >= 3 dimensions) marks a fused experts module.
FUSED_NAMES = ("gate_up_proj", "down_proj", "gate_proj", "up_proj")


def fused_parameters(module):
    """The parameters dwdp manages in `module`: its direct ones with >= 3 dimensions whose
    first dimension is the expert count, in registration order. Empty when it is not a fused
    experts module."""
    direct = list(module.named_parameters(recurse=False))
    marks = [p for name, p in direct if name in FUSED_NAMES and p.dim() >= 3]
    if not marks:
        return []
    experts = marks[0].shape[0]
    return [(name, p) for name, p in direct if p.dim() >= 3 and p.shape[0] == experts]


def find_experts(model):
    """[(qualified name, module)] of the fused experts modules of `model`, in model order."""
    return [(name, module) for name, module in model.named_modules() if fused_parameters(module)]


def _no_experts_message(model):
    lists = [name for name, module in model.named_modules()
             if name.endswith("experts") and isinstance(module, torch.nn.ModuleList)]
    message = ("the model (%s) has no MoE experts module with fused [num_experts, ...] "
               "parameters (%s); dwdp.torch supports models whose experts are fused, such as "
               "the transformers models Qwen3-MoE, DeepSeek-V3, Mixtral and gpt-oss" %
               (type(model).__name__, " / ".join(FUSED_NAMES[:2])))
    if lists:
        message += "; its experts at %s are separate modules (nn.ModuleList)" % lists[0]
    return message


def _layer_ids(names):
    """The layer index of each experts module: the first integer of its qualified name
    (model.layers.7.mlp.experts -> 7), or its position when those are not ascending."""
    ids = []
    for name in names:
        numbers = re.findall(r"(?:^|\.)(\d+)(?=\.|$)", name)
        ids.append(int(numbers[0]) if numbers else None)
    if None in ids or any(b <= a for a, b in zip(ids, ids[1:])):
        return list(range(len(names)))
    return ids


def _describe(weight):
    return "%s %s %s" % (weight.name, weight.dtype, list(weight.shape))


def _model_side(experts):
    """num_experts, layer ids and weights as the model holds them, checked to be the same in
    every MoE layer."""
    names = [name for name, _ in experts]
    first_name, first = experts[0]
    params = fused_parameters(first)
    num_experts = params[0][1].shape[0]
    weights = tuple(Weight(name, dtype_name(p.dtype), tuple(p.shape[1:])) for name, p in params)
    for name, module in experts[1:]:
        theirs = tuple(Weight(n, dtype_name(p.dtype), tuple(p.shape[1:]))
                       for n, p in fused_parameters(module))
        if theirs != weights:
            _lib.fail("the MoE layers differ: %s holds %s but %s holds %s; dwdp needs the same "
                      "expert weights in every MoE layer" %
                      (name, ", ".join(map(_describe, theirs)), first_name,
                       ", ".join(map(_describe, weights))))
    return num_experts, tuple(_layer_ids(names)), weights


def _merge(config, num_experts, layers, weights):
    """The config with the model's fields filled in; a field the config gives must match."""
    if isinstance(config, dict):
        config = Config(**config)
    if not isinstance(config, Config):
        _lib.fail("install needs a dwdp.Config (or a dict of its fields); got %s" %
                  type(config).__name__)
    changes = {}
    if config.num_experts is None:
        changes["num_experts"] = num_experts
    elif config.num_experts != num_experts:
        _lib.fail("the config says num_experts = %d, but the model's experts hold %d" %
                  (config.num_experts, num_experts))
    if config.moe_layers is None:
        changes["moe_layers"] = layers
    elif tuple(config.moe_layers) != layers:
        _lib.fail("the config's moe_layers are %s, but the model's MoE layers are %s" %
                  (list(config.moe_layers), list(layers)))
    if config.weights is None:
        changes["weights"] = weights
    elif tuple(config.weights) != weights:
        _lib.fail("the config's weights are %s, but the model's experts hold %s (name, dtype, "
                  "per-expert shape)" % (", ".join(map(_describe, config.weights)),
                                         ", ".join(map(_describe, weights))))
    return config.replace(**changes) if changes else config


class _Pipeline:
    """The per-forward calls, made from module hooks, with a check that the MoE layers run once
    per forward in ascending order (what the runtime's slot events rely on)."""

    def __init__(self, runtime, layers):
        self.runtime = runtime
        self.layers = layers
        self.next = None  # position of the MoE layer expected next; None: prime first

    def prime(self, *_):
        self.runtime.prime()
        self.next = 0

    def before(self, position):
        def hook(module, args):
            if position == 0 and self.next != 0:
                # The first MoE layer without a prime: a submodule was called directly, or the
                # last forward stopped part-way (an exception).
                self.prime()
            if position != self.next:
                expected = ("a new forward (layer %d)" % self.layers[0] if self.next is None
                            else "layer %d" % self.layers[self.next])
                _lib.fail("MoE layer %d ran out of order: dwdp expected %s; every MoE layer "
                          "must run once per forward, in ascending order" %
                          (self.layers[position], expected))
            self.runtime.wait_and_bind(self.layers[position])
        return hook

    def after(self, position):
        def hook(module, args, output):
            layer = self.layers[position]
            self.runtime.record_compute(layer)
            self.runtime.prefetch_next(layer)
            self.next = position + 1 if position + 1 < len(self.layers) else None
        return hook


class Installation:
    """DWDP installed in a model (what install returns). close() (or leaving a `with` block)
    removes the hooks, closes the runtime and releases the experts: the model cannot run
    after that."""

    def __init__(self, model, runtime, experts, layers):
        self.model = model
        self.runtime = runtime
        self.experts = experts  # [(qualified name, module)]
        self.layers = layers
        self._hooks = []

    @property
    def config(self):
        return self.runtime.config

    @property
    def local_experts(self):
        return self.runtime.local_experts

    @property
    def device_bytes(self):
        """Device memory dwdp holds for the experts on this rank: local slices and pool."""
        return self.runtime.device_bytes

    def close(self):
        if self.runtime.closed:
            return
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        for layer, (name, module) in zip(self.layers, self.experts):
            for _, p in fused_parameters(module):
                p.data = torch.empty(0, dtype=p.dtype, device=p.device)

            def released(module, args, layer=layer):
                _lib.fail("the experts of MoE layer %d were released by Installation.close(); "
                          "build or load the model again to run it" % layer)
            module.register_forward_pre_hook(released)
        self.runtime.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def install(model, config, comm=None, device=None, copy_stream=None, timeout=60.0):
    """Runs the model's MoE experts with DWDP on this rank (collective over the group: every
    rank of the group calls it with the same model architecture and config).

    config: a dwdp.Config (or a dict of its fields); num_experts, moe_layers and weights may be
    left out (read from the model) or must match it. comm, device, copy_stream, timeout: as for
    dwdp.Runtime.create. Returns an Installation.
    """
    experts = find_experts(model)
    if not experts:
        _lib.fail(_no_experts_message(model))
    num_experts, layers, weights = _model_side(experts)
    config = _merge(config, num_experts, layers, weights)
    if not torch.cuda.is_available():
        _lib.fail("dwdp.torch.install needs a CUDA GPU, and torch sees none", "runtime")
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else (
        torch.device(device))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    group = _group.resolve(comm, config, timeout)
    mine = config.local_experts(group.rank)

    # Only this rank's slice of each fused parameter goes to the GPU.
    chunks = {}
    with torch.no_grad():
        for layer, (_, module) in zip(layers, experts):
            for name, p in fused_parameters(module):
                chunks[(layer, name)] = p.detach()[mine.start:mine.stop].to(device).contiguous()
    runtime = Runtime.create(config, chunks, comm=group, device=device, copy_stream=copy_stream,
                             timeout=timeout)
    del chunks

    # Point the parameters at the composite tensors; the full tensors they held are dropped.
    for layer, (_, module) in zip(layers, experts):
        for name, p in fused_parameters(module):
            p.data = runtime.tensor(layer, name)
            p.requires_grad_(False)
    torch.cuda.empty_cache()

    installed = Installation(model, runtime, experts, list(layers))
    pipeline = _Pipeline(runtime, list(layers))
    installed._hooks.append(model.register_forward_pre_hook(pipeline.prime))
    for position, (_, module) in enumerate(experts):
        installed._hooks.append(module.register_forward_pre_hook(pipeline.before(position)))
        installed._hooks.append(module.register_forward_hook(pipeline.after(position)))
    return installed
