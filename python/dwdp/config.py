"""dwdp.Config and dwdp.Weight: TensorRT-LLM's DwdpConfig fields plus the model's MoE weights,
with the dtype and per-expert shape that the C++ config (bytes only) does not carry."""

import ctypes
import dataclasses
import math
import numbers
from typing import Optional, Tuple

from dwdp import _lib

# name: (bytes per element, __cuda_array_interface__ typestr of an integer or float type of that
# size, the torch dtype's attribute name). The typestr need not be the dtype itself: a view is
# built with it and then reinterpreted (bfloat16 and fp8 have no typestr).
_DTYPES = {
    "bfloat16": (2, "<i2", "bfloat16"),
    "float16": (2, "<f2", "float16"),
    "float32": (4, "<f4", "float32"),
    "float64": (8, "<f8", "float64"),
    "float8_e4m3fn": (1, "|u1", "float8_e4m3fn"),
    "float8_e5m2": (1, "|u1", "float8_e5m2"),
    "uint8": (1, "|u1", "uint8"),
    "int8": (1, "|i1", "int8"),
    "int16": (2, "<i2", "int16"),
    "int32": (4, "<i4", "int32"),
    "int64": (8, "<i8", "int64"),
}
_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32",
            "float": "float32", "fp8": "float8_e4m3fn", "fp8_e4m3": "float8_e4m3fn",
            "fp8_e5m2": "float8_e5m2", "byte": "uint8"}

_CONTENTION = {"rotate": 0, "ascending": 1, "round_robin": 2}


def dtype_name(dtype):
    """The canonical name of a dtype given as a name ("bf16") or a torch.dtype."""
    text = str(dtype)
    if text.startswith("torch."):
        text = text[len("torch."):]
    text = _ALIASES.get(text, text)
    if text not in _DTYPES:
        _lib.fail("dtype %r is not one dwdp knows; use one of %s" %
                  (dtype, ", ".join(sorted(_DTYPES))))
    return text


def dtype_itemsize(name):
    return _DTYPES[name][0]


def dtype_typestr(name):
    return _DTYPES[name][1]


def torch_dtype(name):
    import torch
    return getattr(torch, _DTYPES[name][2])


def _integer(owner, field, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _lib.fail("%s.%s must be an integer; got %r" % (owner, field, value))
    value = int(value)
    if minimum is not None and value < minimum:
        _lib.fail("%s.%s is %d; it must be at least %d" % (owner, field, value, minimum))
    return value


@dataclasses.dataclass(frozen=True)
class Weight:
    """A DWDP-managed weight of every MoE layer: each expert's slice is `shape` of `dtype`,
    contiguous, and the composite tensor is [num_experts, *shape].

    Weight("w13", "bfloat16", (2 * inter, hidden)); Weight.raw("scales", 4096) for opaque bytes.
    bytes_per_expert, when given, must equal prod(shape) * itemsize.
    """

    name: str
    dtype: str = "uint8"
    shape: Tuple[int, ...] = ()
    bytes_per_expert: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            _lib.fail("a Weight needs a name (a non-empty string); got %r" % (self.name,))
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if isinstance(self.shape, numbers.Integral):
            object.__setattr__(self, "shape", (self.shape,))
        try:
            shape = tuple(self.shape)
        except TypeError:
            _lib.fail("weight %s: shape must be a sequence of positive integers; got %r" %
                      (self.name, self.shape))
        if not shape:
            _lib.fail("weight %s: shape is empty; give each expert's shape, e.g. (2 * inter, "
                      "hidden)" % self.name)
        for extent in shape:
            if isinstance(extent, bool) or not isinstance(extent, numbers.Integral) or extent <= 0:
                _lib.fail("weight %s: shape must be positive integers; got %r" %
                          (self.name, self.shape))
        shape = tuple(int(extent) for extent in shape)
        object.__setattr__(self, "shape", shape)
        computed = math.prod(shape) * dtype_itemsize(self.dtype)
        if self.bytes_per_expert is not None:
            given = _integer("Weight(%s)" % self.name, "bytes_per_expert", self.bytes_per_expert)
            if given != computed:
                _lib.fail("weight %s: shape %s of %s is %d bytes per expert, but bytes_per_expert "
                          "says %d" % (self.name, list(shape), self.dtype, computed, given))
        object.__setattr__(self, "bytes_per_expert", computed)

    @classmethod
    def raw(cls, name, bytes_per_expert):
        """A weight dwdp treats as opaque bytes (a uint8 vector per expert)."""
        return cls(name, "uint8", (_integer("Weight(%s)" % name, "bytes_per_expert",
                                            bytes_per_expert, 1),))


def _as_weight(item):
    if isinstance(item, Weight):
        return item
    if isinstance(item, dict):
        return Weight(**item)
    if isinstance(item, (tuple, list)):
        return Weight(*item)
    _lib.fail("a weight is a dwdp.Weight, a dict or a (name, dtype, shape) tuple; got %r" %
              (item,))


@dataclasses.dataclass(frozen=True)
class Config:
    """The DWDP configuration of one group, with TensorRT-LLM's DwdpConfig field names, and the
    model's MoE side (num_experts, moe_layers, weights).

    The model fields may be left out when dwdp.torch.install reads them from the model. A
    complete Config is checked by the library on construction (partition, names, byte counts),
    so a bad one raises dwdp.Error with the library's sentence before any GPU work.
    """

    dwdp_size: int
    num_experts_per_worker: int
    num_prefetch_experts: int
    num_groups: int = 1
    num_buffers: int = 2
    pool_page_bytes: int = 16 << 20
    contention_mode: str = "rotate"
    contention_slice_bytes: int = 2 << 20
    num_experts: Optional[int] = None
    moe_layers: Optional[Tuple[int, ...]] = None
    weights: Optional[Tuple[Weight, ...]] = None

    def __post_init__(self):
        for field in ("dwdp_size", "num_experts_per_worker", "num_prefetch_experts",
                      "num_groups", "num_buffers", "pool_page_bytes", "contention_slice_bytes"):
            object.__setattr__(self, field, _integer("Config", field, getattr(self, field)))
        if self.contention_mode not in _CONTENTION:
            _lib.fail("Config.contention_mode is %r; it must be one of %s" %
                      (self.contention_mode, ", ".join(_CONTENTION)))
        if self.num_experts is not None:
            object.__setattr__(self, "num_experts",
                               _integer("Config", "num_experts", self.num_experts))
        if self.moe_layers is not None:
            layers = self.moe_layers
            if isinstance(layers, numbers.Integral):
                layers = range(int(layers))
            object.__setattr__(self, "moe_layers", tuple(
                _integer("Config", "moe_layers", layer) for layer in layers))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(_as_weight(w) for w in self.weights))
        if self.complete:
            self.check()

    @property
    def complete(self):
        """Whether the model fields are set (a Runtime needs them)."""
        return None not in (self.num_experts, self.moe_layers, self.weights)

    def check(self):
        """The library's checks of a complete config (what Runtime.create checks first)."""
        if not self.complete:
            missing = [f for f in ("num_experts", "moe_layers", "weights")
                       if getattr(self, f) is None]
            _lib.fail("the Config has no %s; give them, or let dwdp.torch.install read them "
                      "from the model" % ", ".join(missing))
        c_config, keepalive = self.to_c()
        _lib.check(_lib.library().dwdp_config_check(ctypes.byref(c_config)))
        del keepalive

    def replace(self, **changes):
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def weight_index(self, weight):
        """The index of a weight given by name or index."""
        if isinstance(weight, str):
            for index, w in enumerate(self.weights or ()):
                if w.name == weight:
                    return index
            _lib.fail("the config has no weight named %r; its weights are %s" %
                      (weight, ", ".join(w.name for w in self.weights or ())))
        index = _integer("Config", "weight index", weight)
        if not 0 <= index < len(self.weights or ()):
            _lib.fail("weight index %d is out of range; the config has %d weights" %
                      (index, len(self.weights or ())))
        return index

    def local_experts(self, group_rank):
        """The experts group rank `group_rank` stores: range(r * stride, r * stride + size)."""
        begin = group_rank * self.num_prefetch_experts
        return range(begin, begin + self.num_experts_per_worker)

    def to_c(self):
        """The dwdp_config struct, and the buffers it points into (keep them alive)."""
        lib = _lib.library()
        config = _lib.ConfigC()
        lib.dwdp_config_init(ctypes.byref(config))
        config.dwdp_size = self.dwdp_size
        config.num_groups = self.num_groups
        config.num_experts_per_worker = self.num_experts_per_worker
        config.num_prefetch_experts = self.num_prefetch_experts
        config.num_buffers = self.num_buffers
        config.pool_page_bytes = self.pool_page_bytes
        config.contention_mode = _CONTENTION[self.contention_mode]
        config.contention_slice_bytes = self.contention_slice_bytes
        config.num_experts = self.num_experts if self.num_experts is not None else 0
        layers = (_lib.c_int64 * len(self.moe_layers or ()))(*(self.moe_layers or ()))
        names = [w.name.encode("utf-8") for w in self.weights or ()]
        weights = (_lib.WeightC * len(names))(
            *[_lib.WeightC(name, w.bytes_per_expert) for name, w in zip(names, self.weights)])
        config.moe_layers = layers
        config.num_moe_layers = len(layers)
        config.weights = weights
        config.num_weights = len(weights)
        return config, (layers, names, weights)

    def to_scenario(self, name="dwdp-config", hardware="h200-sxm"):
        """This config as a scenario dict for validate / layout / plan. A scenario lists MoE
        layers as [first, last]; non-contiguous layers are given by their count, which is all
        the layout depends on."""
        if not self.complete:
            self.check()
        layers = sorted(self.moe_layers)
        contiguous = layers == list(range(layers[0], layers[-1] + 1))
        model = {
            "display_name": name,
            "num_experts": self.num_experts,
            "moe_layers": [layers[0], layers[-1]] if contiguous else len(layers),
            "weights": [{"name": w.name, "expert_bytes": w.bytes_per_expert}
                        for w in self.weights],
        }
        if contiguous:
            model["num_layers"] = layers[-1] + 1
        return {
            "name": name,
            "model": model,
            "dwdp": {
                "dwdp_size": self.dwdp_size,
                "num_groups": self.num_groups,
                "num_experts_per_worker": self.num_experts_per_worker,
                "num_prefetch_experts": self.num_prefetch_experts,
                "num_buffers": self.num_buffers,
                "pool_page_bytes": self.pool_page_bytes,
                "contention": {"mode": self.contention_mode,
                               "slice_bytes": self.contention_slice_bytes},
            },
            "hardware": hardware,
        }
