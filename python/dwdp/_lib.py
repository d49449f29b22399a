"""libdwdp.so through ctypes: finding and loading it, the C ABI of include/dwdp/dwdp_c.h, and
turning its error codes into dwdp.Error.

ctypes rather than a compiled extension: the package then works with any CPython 3 and any
PyTorch build, and the only binary is the library the C++ engines use too.
"""

import ctypes
import glob
import os
import threading

# The DWDP_C_ABI_VERSION this module declares the functions for.
ABI_VERSION = 1

# dwdp_error of dwdp_c.h, by the names dwdp.Error.code uses.
_CODE_NAMES = {1: "invalid_argument", 2: "not_found", 3: "no_cuda_backend", 4: "runtime"}


class Error(Exception):
    """A dwdp failure. str(error) is the library's sentence ("dwdp: ...").

    code: "invalid_argument", "not_found", "no_cuda_backend", "runtime" or "library" (the
    library could not be loaded). result: for layout() of an invalid scenario, the document
    `dwdp validate --format json` prints, saying which check failed; else None.
    """

    def __init__(self, message, code="invalid_argument", result=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.result = result


def fail(message, code="invalid_argument", result=None):
    """Raises Error with the "dwdp: " prefix every sentence of the library carries."""
    if not message.startswith("dwdp: "):
        message = "dwdp: " + message
    raise Error(message, code, result)


# --- the C types ---------------------------------------------------------------------------

c_int64 = ctypes.c_int64
c_uint64 = ctypes.c_uint64
c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p


class Scenario(ctypes.Structure):
    _fields_ = [("path", c_char_p), ("text", c_char_p), ("name", c_char_p)]


class WeightC(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("bytes_per_expert", c_uint64)]


class ConfigC(ctypes.Structure):
    _fields_ = [
        ("dwdp_size", c_int64),
        ("num_groups", c_int64),
        ("num_experts_per_worker", c_int64),
        ("num_prefetch_experts", c_int64),
        ("num_buffers", c_int64),
        ("pool_page_bytes", c_uint64),
        ("contention_mode", c_int64),
        ("contention_slice_bytes", c_uint64),
        ("num_experts", c_int64),
        ("moe_layers", ctypes.POINTER(c_int64)),
        ("num_moe_layers", c_uint64),
        ("weights", ctypes.POINTER(WeightC)),
        ("num_weights", c_uint64),
    ]


class LocalChunkC(ctypes.Structure):
    _fields_ = [("layer", c_int64), ("weight", c_int64), ("device_ptr", c_void_p),
                ("bytes", c_uint64)]


PUT_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int64, c_void_p, c_uint64)
ALLGATHER_FN = ctypes.CFUNCTYPE(ctypes.c_int, c_void_p, c_void_p, c_uint64, PUT_FN, c_void_p)
BARRIER_FN = ctypes.CFUNCTYPE(ctypes.c_int, c_void_p)


class GroupCommC(ctypes.Structure):
    _fields_ = [("user", c_void_p), ("rank", c_int64), ("size", c_int64),
                ("allgather", ALLGATHER_FN), ("barrier", BARRIER_FN)]


SPLIT_WORLD = -1


class OptionsC(ctypes.Structure):
    _fields_ = [("group_comm", ctypes.POINTER(GroupCommC)), ("mpi_comm", c_int64),
                ("copy_stream", c_void_p), ("timeout_seconds", ctypes.c_double)]


class RuntimeInfoC(ctypes.Structure):
    _fields_ = [("group_rank", c_int64), ("local_expert_begin", c_int64),
                ("local_expert_end", c_int64), ("device_bytes", c_uint64)]


_PROTOTYPES = {
    "dwdp_abi_version": (ctypes.c_uint32, []),
    "dwdp_has_cuda_backend": (ctypes.c_int, []),
    "dwdp_last_error": (c_char_p, []),
    "dwdp_free": (None, [c_void_p]),
    "dwdp_validate": (ctypes.c_int, [ctypes.POINTER(Scenario), c_int64, ctypes.POINTER(c_void_p)]),
    "dwdp_recipes": (ctypes.c_int, [c_int64, c_int64, ctypes.POINTER(c_void_p)]),
    "dwdp_layout": (ctypes.c_int, [ctypes.POINTER(Scenario), c_int64, ctypes.POINTER(c_void_p)]),
    "dwdp_plan": (ctypes.c_int, [ctypes.POINTER(Scenario), c_char_p, ctypes.POINTER(c_void_p)]),
    "dwdp_config_init": (None, [ctypes.POINTER(ConfigC)]),
    "dwdp_options_init": (None, [ctypes.POINTER(OptionsC)]),
    "dwdp_config_check": (ctypes.c_int, [ctypes.POINTER(ConfigC)]),
    "dwdp_runtime_create": (ctypes.c_int, [ctypes.POINTER(ConfigC), ctypes.POINTER(LocalChunkC),
                                           c_uint64, ctypes.POINTER(OptionsC),
                                           ctypes.POINTER(c_void_p)]),
    "dwdp_runtime_info_get": (ctypes.c_int, [c_void_p, ctypes.POINTER(RuntimeInfoC)]),
    "dwdp_runtime_tensor": (ctypes.c_int, [c_void_p, c_int64, c_int64, ctypes.POINTER(c_void_p)]),
    "dwdp_runtime_prime": (ctypes.c_int, [c_void_p, c_void_p]),
    "dwdp_runtime_wait_and_bind": (ctypes.c_int, [c_void_p, c_int64, c_void_p]),
    "dwdp_runtime_record_compute": (ctypes.c_int, [c_void_p, c_int64, c_void_p]),
    "dwdp_runtime_prefetch_next": (ctypes.c_int, [c_void_p, c_int64, c_void_p]),
    "dwdp_runtime_close": (ctypes.c_int, [c_void_p]),
    "dwdp_runtime_destroy": (None, [c_void_p]),
    "dwdp_shutdown": (None, []),
}


# --- finding and loading the library -------------------------------------------------------

def _candidates():
    """Where libdwdp.so may be, most specific first."""
    explicit = os.environ.get("DWDP_LIBRARY")
    if explicit:
        return [explicit]
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, "lib", "libdwdp.so")]
    # A source checkout: python/dwdp/ -> the repository's build trees and bundle.
    repo = os.path.dirname(os.path.dirname(here))
    found.append(os.path.join(repo, "build", "default", "cli", "libdwdp.so"))
    found += sorted(glob.glob(os.path.join(repo, "build", "*", "cli", "libdwdp.so")))
    found.append(os.path.join(repo, "dist", "dwdp", "lib", "libdwdp.so"))
    return [path for path in found if os.path.exists(path)] + ["libdwdp.so"]


_lock = threading.Lock()
_library = None
_library_path = None


def library():
    """The loaded libdwdp.so with its prototypes declared; raises Error when it cannot be."""
    global _library, _library_path
    with _lock:
        if _library is not None:
            return _library
        tried = []
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError as error:
                tried.append("%s (%s)" % (path, error))
                continue
            missing = [name for name in _PROTOTYPES if not hasattr(lib, name)]
            if missing:
                fail("%s is not a libdwdp.so with the C ABI this package needs (no %s); rebuild "
                     "it or point DWDP_LIBRARY at a current build" % (path, missing[0]), "library")
            for name, (restype, argtypes) in _PROTOTYPES.items():
                function = getattr(lib, name)
                function.restype = restype
                function.argtypes = argtypes
            version = lib.dwdp_abi_version()
            if version != ABI_VERSION:
                fail("%s has C ABI version %d; this package speaks version %d: use the library "
                     "and the package of one dwdp build" % (path, version, ABI_VERSION),
                     "library")
            _library, _library_path = lib, path
            return lib
        fail("cannot load libdwdp.so: build it (scripts/build.sh), or set DWDP_LIBRARY to its "
             "path; tried %s" % "; ".join(tried), "library")


def library_path():
    """The path libdwdp.so was loaded from (loading it if needed)."""
    library()
    return _library_path


def has_cuda_backend():
    """Whether the loaded libdwdp.so can create a Runtime (it was built with the cuda backend)."""
    return bool(library().dwdp_has_cuda_backend())


def check(code, result=None):
    """Raises Error with the library's sentence when `code` is not DWDP_OK."""
    if code == 0:
        return
    message = library().dwdp_last_error().decode("utf-8", "replace")
    raise Error(message or "dwdp: the call failed (code %d)" % code,
                _CODE_NAMES.get(code, "runtime"), result)


def take_text(pointer):
    """The text of a result the library malloc'd, freed afterwards."""
    if not pointer.value:
        return None
    try:
        return ctypes.string_at(pointer.value).decode("utf-8", "replace")
    finally:
        library().dwdp_free(pointer.value)
