"""dwdp for PyTorch programs: Distributed Weight Data Parallelism of MoE experts.

Each GPU of a DWDP group stores a slice of every MoE layer's experts; before a layer runs, the
other experts are pulled from the peers into a small pool, and the layer's kernels read one
contiguous [num_experts, ...] tensor per weight. This package drives libdwdp.so (the C ABI of
include/dwdp/dwdp_c.h) through ctypes:

    dwdp.Config, dwdp.Weight            the configuration (TensorRT-LLM's DwdpConfig names)
    dwdp.Runtime.create(...)            the runtime of one rank (zero-copy torch views)
    dwdp.torch.install(model, config)   DWDP inside a transformers MoE model (import dwdp.torch)
    dwdp.validate / recipes / layout / plan
                                        what `dwdp <command> --format json` prints, as dicts
    dwdp.Error                          every failure, with the library's sentence

libdwdp.so is found through $DWDP_LIBRARY, else next to the package, else in the source tree's
build/ or dist/, else on the loader's path. Importing the package does not load it.
"""

__version__ = "0.1.0"

from dwdp._lib import Error, has_cuda_backend, library_path
from dwdp.config import Config, Weight
from dwdp.inspection import layout, plan, recipes, validate
from dwdp.runtime import Runtime

__all__ = [
    "Config",
    "Error",
    "Runtime",
    "Weight",
    "has_cuda_backend",
    "layout",
    "library_path",
    "plan",
    "recipes",
    "validate",
]
