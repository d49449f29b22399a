"""dwdp.Runtime: the engine API of include/dwdp/dwdp.h for PyTorch programs.

    runtime = dwdp.Runtime.create(config, chunks, comm=None, device=None)
    w13 = runtime.tensor(layer, "w13")      # zero-copy torch view [num_experts, *shape]
    runtime.prime()                         # every forward, then per MoE layer in order:
    runtime.wait_and_bind(layer)            #   before the kernels that read the layer
    runtime.record_compute(layer)           #   after them
    runtime.prefetch_next(layer)
    runtime.close()                         # or `with runtime:`

Streams are torch.cuda.Stream objects (or raw cudaStream_t integers); the defaults are the
current stream for compute and the runtime's own copy stream for prime / prefetch_next.
"""

import atexit
import ctypes
import threading
import weakref

from dwdp import _lib
from dwdp import group as _group
from dwdp.config import Config, dtype_itemsize, dtype_typestr, torch_dtype


class _DeviceArray:
    """A raw device range described by __cuda_array_interface__ (version 2: no stream to
    synchronise with; the runtime's own stream waits order every access)."""

    def __init__(self, pointer, shape, typestr):
        self.__cuda_array_interface__ = {
            "data": (pointer, False),
            "shape": tuple(shape),
            "typestr": typestr,
            "strides": None,
            "version": 2,
        }


def _torch():
    """torch, or one sentence saying the runtime needs it."""
    try:
        import torch
    except ImportError as error:
        _lib.fail("dwdp.Runtime needs PyTorch, and it cannot be imported here (%s); the "
                  "inspection functions (validate, recipes, layout, plan) work without it" % error)
    return torch


def _stream_handle(stream):
    """The cudaStream_t of a torch.cuda.Stream (or an integer handle) as a c_void_p."""
    if isinstance(stream, int):
        return ctypes.c_void_p(stream)
    handle = getattr(stream, "cuda_stream", None)
    if not isinstance(handle, int):
        _lib.fail("a stream is a torch.cuda.Stream or an integer cudaStream_t; got %r" %
                  (stream,))
    return ctypes.c_void_p(handle)


_finalize_mpi_registered = False
_finalize_lock = threading.Lock()
_open_runtimes = weakref.WeakSet()


def _shutdown():
    for runtime in list(_open_runtimes):
        try:
            runtime.close()
        except _lib.Error:
            pass  # the process is ending; close() said what it could
    _lib.library().dwdp_shutdown()


def _finalize_mpi_at_exit():
    """MPI must be finalised before a process started by mpirun exits; the library does it
    (after closing the runtimes still open) only when it initialised MPI itself."""
    global _finalize_mpi_registered
    with _finalize_lock:
        if not _finalize_mpi_registered:
            atexit.register(_shutdown)
            _finalize_mpi_registered = True


def _chunk_table(config, chunks):
    """{(layer, weight index): tensor} from a dict keyed (layer, weight name or index) or from
    (layer, weight, tensor) triples."""
    items = chunks.items() if hasattr(chunks, "items") else (
        ((entry[0], entry[1]), entry[2]) for entry in chunks)
    table = {}
    for key, tensor in items:
        try:
            layer, weight = key
        except (TypeError, ValueError):
            _lib.fail("chunks are keyed (layer, weight); got key %r" % (key,))
        index = config.weight_index(weight)
        if (layer, index) in table:
            _lib.fail("two chunks are given for layer %s %s" % (layer, config.weights[index].name))
        table[(layer, index)] = tensor
    return table


def _check_chunk(config, layer, index, tensor, device):
    """The chunk of (layer, weight) must be [num_experts_per_worker, *shape] of the weight's
    dtype, contiguous, on this rank's GPU."""
    torch = _torch()
    weight = config.weights[index]
    where = "the chunk of layer %s %s" % (layer, weight.name)
    if not isinstance(tensor, torch.Tensor):
        _lib.fail("%s is a %s; chunks are torch tensors" % (where, type(tensor).__name__))
    expected = torch_dtype(weight.dtype)
    if tensor.dtype != expected:
        _lib.fail("%s has dtype %s; the config says %s" %
                  (where, str(tensor.dtype).replace("torch.", ""), weight.dtype))
    shape = (config.num_experts_per_worker,) + weight.shape
    if tuple(tensor.shape) != shape:
        _lib.fail("%s has shape %s; the config says [num_experts_per_worker, *shape] = %s" %
                  (where, list(tensor.shape), list(shape)))
    if tensor.device != device:
        _lib.fail("%s is on %s; this rank's runtime is on %s" % (where, tensor.device, device))
    if not tensor.is_contiguous():
        _lib.fail("%s is not contiguous; pass tensor.contiguous()" % where)


class Runtime:
    """One rank's DWDP runtime (see the module's doc). Create it with Runtime.create."""

    def __init__(self, handle, config, group, device, copy_stream, callbacks):
        self._handle = handle
        self.config = config
        self.group = group
        self.device = device
        self.copy_stream = copy_stream
        self._callbacks = callbacks  # the C callbacks must outlive the handle
        self._tensors = {}
        info = _lib.RuntimeInfoC()
        _lib.check(_lib.library().dwdp_runtime_info_get(handle, ctypes.byref(info)))
        self.group_rank = info.group_rank
        self.local_experts = range(info.local_expert_begin, info.local_expert_end)

    @classmethod
    def create(cls, config, chunks, comm=None, device=None, copy_stream=None, timeout=60.0):
        """Sets up DWDP on this rank; collective over the group (every rank calls it with the
        same config).

        config: a complete dwdp.Config. chunks: this rank's experts of every (layer, weight),
        as {(layer, weight name or index): tensor} or (layer, weight, tensor) triples; each
        tensor is [num_experts_per_worker, *shape] of the weight's dtype, contiguous, on
        `device`. They may be freed once create returns. comm: see dwdp.group (None picks
        torch.distributed, else MPI). device: this rank's GPU (default: the current one).
        copy_stream: the stream for prime / prefetch_next (default: a new one).
        """
        torch = _torch()
        if not isinstance(config, Config):
            _lib.fail("Runtime.create needs a dwdp.Config; got %s" % type(config).__name__)
        config.check()
        if not torch.cuda.is_available():
            _lib.fail("Runtime.create needs a CUDA GPU, and torch sees none", "runtime")
        device = torch.device("cuda", torch.cuda.current_device()) if device is None else (
            torch.device(device))
        if device.type != "cuda":
            _lib.fail("the runtime's device must be a CUDA device; got %s" % device)
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        table = _chunk_table(config, chunks)
        for (layer, index), tensor in table.items():
            if layer not in config.moe_layers:
                _lib.fail("a chunk is given for layer %s, which is not in moe_layers" % (layer,))
            _check_chunk(config, layer, index, tensor, device)
        group = _group.resolve(comm, config, timeout)

        # libdwdp.so uses the context current on this thread: make it the device's primary
        # context, created now if torch has not yet.
        torch.cuda.set_device(device)
        torch.zeros(1, device=device)
        if copy_stream is None:
            copy_stream = torch.cuda.Stream(device=device)
        # The chunks were written on torch's streams; the library copies them on its copy
        # stream, so everything before must be done.
        torch.cuda.synchronize(device)

        lib = _lib.library()
        c_config, keepalive = config.to_c()
        chunk_array = (_lib.LocalChunkC * len(table))(*[
            _lib.LocalChunkC(layer, index, tensor.data_ptr(), tensor.numel() *
                             tensor.element_size())
            for (layer, index), tensor in table.items()])
        options = _lib.OptionsC()
        lib.dwdp_options_init(ctypes.byref(options))
        options.copy_stream = _stream_handle(copy_stream)
        options.timeout_seconds = float(timeout)
        callbacks, errors = None, []
        if group.kind == "torch":
            callbacks = _group_callbacks(group, errors)
            options.group_comm = ctypes.pointer(callbacks[0])
        else:
            options.mpi_comm = group.mpi_comm
        handle = ctypes.c_void_p()
        code = lib.dwdp_runtime_create(ctypes.byref(c_config), chunk_array, len(table),
                                       ctypes.byref(options), ctypes.byref(handle))
        del keepalive
        if code != 0 and errors:
            # The library's sentence names the step; the Python error says why it failed.
            cause = errors[0]
            if not isinstance(cause, Exception):
                raise cause
            try:
                _lib.check(code)
            except _lib.Error as error:
                raise _lib.Error("%s (torch.distributed: %s)" % (error.message, cause),
                                 error.code) from cause
        _lib.check(code)
        runtime = cls(handle, config, group, device, copy_stream, callbacks)
        _open_runtimes.add(runtime)
        if group.kind == "mpi":
            _finalize_mpi_at_exit()
        return runtime

    # --- the composite tensors -------------------------------------------------------------

    def tensor(self, layer, weight):
        """The composite [num_experts, *shape] tensor of (layer, weight name or index): a
        zero-copy torch view of dwdp's memory, at a fixed address for the runtime's life. The
        experts this rank does not store are valid on the compute stream between
        wait_and_bind(layer) and record_compute(layer)."""
        torch = _torch()
        index = self.config.weight_index(weight)
        key = (layer, index)
        if key not in self._tensors:
            pointer = ctypes.c_void_p()
            _lib.check(_lib.library().dwdp_runtime_tensor(self._live("tensor"), layer, index,
                                                          ctypes.byref(pointer)))
            w = self.config.weights[index]
            shape = (self.config.num_experts,) + w.shape
            view = torch.as_tensor(_DeviceArray(pointer.value, shape, dtype_typestr(w.dtype)),
                                   device=self.device)
            wanted = torch_dtype(w.dtype)
            if view.dtype != wanted:
                view = view.view(wanted)
            assert view.element_size() == dtype_itemsize(w.dtype)
            self._tensors[key] = view
        return self._tensors[key]

    # --- one forward -----------------------------------------------------------------------

    def prime(self, stream=None):
        """Pulls the first num_buffers MoE layers (the copy stream by default)."""
        _lib.check(_lib.library().dwdp_runtime_prime(self._live("prime"), self._copy(stream)))

    def wait_and_bind(self, layer, stream=None):
        """The compute stream (the current one by default) waits for the layer's experts."""
        _lib.check(_lib.library().dwdp_runtime_wait_and_bind(
            self._live("wait_and_bind"), layer, self._compute(stream)))

    def record_compute(self, layer, stream=None):
        """Frees the layer's slot once the compute stream's work so far is done: call it after
        the last kernel that reads the layer's tensors."""
        _lib.check(_lib.library().dwdp_runtime_record_compute(
            self._live("record_compute"), layer, self._compute(stream)))

    def prefetch_next(self, layer, stream=None):
        """Pulls the MoE layer num_buffers positions after `layer` (the copy stream by
        default)."""
        _lib.check(_lib.library().dwdp_runtime_prefetch_next(
            self._live("prefetch_next"), layer, self._copy(stream)))

    # --- state and teardown ----------------------------------------------------------------

    @property
    def closed(self):
        return self._handle is None

    @property
    def device_bytes(self):
        """Device memory dwdp holds on this rank's GPU: local experts and pool pages."""
        info = _lib.RuntimeInfoC()
        _lib.check(_lib.library().dwdp_runtime_info_get(self._live("device_bytes"),
                                                        ctypes.byref(info)))
        return info.device_bytes

    def close(self):
        """Waits for dwdp's work, then frees everything it created. The views from tensor()
        must not be used afterwards. Idempotent."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        self._tensors.clear()
        lib = _lib.library()
        try:
            _lib.check(lib.dwdp_runtime_close(handle))
        finally:
            lib.dwdp_runtime_destroy(handle)
            self._callbacks = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- nothing to report to from a finaliser
            pass

    def _live(self, call):
        if self._handle is None:
            _lib.fail("%s after close()" % call, "runtime")
        return self._handle

    def _compute(self, stream):
        if stream is None:
            import torch
            stream = torch.cuda.current_stream(self.device)
        return _stream_handle(stream)

    def _copy(self, stream):
        return _stream_handle(self.copy_stream if stream is None else stream)


def _group_callbacks(group, errors):
    """The dwdp_group_comm of a torch.distributed group; exceptions are kept in `errors`
    (a ctypes callback must not raise) and turned into a failure code."""

    def allgather(_user, mine, size, put, sink):
        try:
            data = ctypes.string_at(mine, size) if size else b""
            parts = group.allgather(data)
            for rank, part in enumerate(parts):
                part = bytes(part)
                put(sink, rank, part, len(part))
            return 0
        except BaseException as error:  # noqa: BLE001 -- reported after the C call returns
            errors.append(error)
            return 1

    def barrier(_user):
        try:
            group.barrier()
            return 0
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
            return 1

    allgather_fn = _lib.ALLGATHER_FN(allgather)
    barrier_fn = _lib.BARRIER_FN(barrier)
    struct = _lib.GroupCommC(None, group.rank, group.size, allgather_fn, barrier_fn)
    return (struct, allgather_fn, barrier_fn)
