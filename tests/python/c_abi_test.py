"""The C ABI of libdwdp.so (include/dwdp/dwdp_c.h) called directly through ctypes: its error
paths return a code and one sentence, never crash, and need no GPU."""

import ctypes
import json
import os
import socket
import unittest

import support  # noqa: F401 -- puts python/ on the path

from dwdp import _lib

OK, INVALID_ARGUMENT, NOT_FOUND, NO_CUDA_BACKEND, RUNTIME = range(5)


def lib():
    return _lib.library()


def last_error():
    return lib().dwdp_last_error().decode()


def valid_config(layers, weights):
    """A valid dwdp_config (16 experts, 9/7 on 2 ranks) over the given arrays."""
    config = _lib.ConfigC()
    lib().dwdp_config_init(ctypes.byref(config))
    config.dwdp_size = 2
    config.num_experts_per_worker = 9
    config.num_prefetch_experts = 7
    config.num_experts = 16
    config.moe_layers = layers
    config.num_moe_layers = len(layers)
    config.weights = weights
    config.num_weights = len(weights)
    return config


class Fixture(unittest.TestCase):
    def setUp(self):
        self.layers = (_lib.c_int64 * 3)(1, 2, 4)
        self.weights = (_lib.WeightC * 2)(_lib.WeightC(b"w13", 1572869),
                                          _lib.WeightC(b"w2", 786433))
        self.config = valid_config(self.layers, self.weights)
        self.placeholder = ctypes.create_string_buffer(16)
        self.chunks = (_lib.LocalChunkC * 6)(*[
            _lib.LocalChunkC(layer, w, ctypes.addressof(self.placeholder),
                             9 * self.weights[w].bytes_per_expert)
            for layer in (1, 2, 4) for w in (0, 1)])

    def assertFails(self, code, expected, sentence):
        self.assertEqual(code, expected, last_error())
        message = last_error()
        self.assertTrue(message.startswith("dwdp: "), message)
        self.assertNotIn("\n", message)
        self.assertIn(sentence, message)


class BasicsTest(Fixture):
    def test_version_and_backend(self):
        self.assertEqual(lib().dwdp_abi_version(), _lib.ABI_VERSION)
        self.assertIn(lib().dwdp_has_cuda_backend(), (0, 1))

    def test_defaults_are_the_cpp_ones(self):
        config = _lib.ConfigC()
        lib().dwdp_config_init(ctypes.byref(config))
        self.assertEqual((config.num_groups, config.num_buffers, config.pool_page_bytes,
                          config.contention_mode, config.contention_slice_bytes),
                         (1, 2, 16 << 20, 0, 2 << 20))
        options = _lib.OptionsC()
        lib().dwdp_options_init(ctypes.byref(options))
        self.assertEqual((options.mpi_comm, options.timeout_seconds), (_lib.SPLIT_WORLD, 60.0))
        self.assertFalse(options.group_comm)

    def test_the_error_is_cleared_by_a_call_that_succeeds(self):
        out = ctypes.c_void_p()
        self.assertEqual(lib().dwdp_recipes(1, 16, ctypes.byref(out)), INVALID_ARGUMENT)
        self.assertNotEqual(last_error(), "")
        self.assertEqual(lib().dwdp_recipes(2, 16, ctypes.byref(out)), OK)
        self.assertEqual(last_error(), "")
        self.assertEqual(json.loads(_lib.take_text(out))["dwdp_size"], 2)

    def test_null_results_and_handles_are_refused(self):
        scenario = _lib.Scenario(os.path.join(support.SCENARIOS, "default.yaml").encode(), None,
                                 None)
        self.assertFails(lib().dwdp_recipes(2, 16, None), INVALID_ARGUMENT, "json is NULL")
        self.assertFails(lib().dwdp_validate(ctypes.byref(scenario), -1, None), INVALID_ARGUMENT,
                         "json is NULL")
        out = ctypes.c_void_p()
        self.assertFails(lib().dwdp_validate(None, -1, ctypes.byref(out)), INVALID_ARGUMENT,
                         "no scenario was given (NULL)")
        empty = _lib.Scenario(None, None, None)
        self.assertFails(lib().dwdp_layout(ctypes.byref(empty), -1, ctypes.byref(out)),
                         INVALID_ARGUMENT, "the scenario has neither a path nor a text")
        self.assertFails(lib().dwdp_config_check(None), INVALID_ARGUMENT, "no config was given")
        info = _lib.RuntimeInfoC()
        self.assertFails(lib().dwdp_runtime_info_get(None, ctypes.byref(info)), INVALID_ARGUMENT,
                         "the runtime is NULL")
        pointer = ctypes.c_void_p()
        self.assertFails(lib().dwdp_runtime_tensor(None, 1, 0, ctypes.byref(pointer)),
                         INVALID_ARGUMENT, "tensor: the runtime is NULL")
        for call in (lambda: lib().dwdp_runtime_prime(None, None),
                     lambda: lib().dwdp_runtime_wait_and_bind(None, 1, None),
                     lambda: lib().dwdp_runtime_record_compute(None, 1, None),
                     lambda: lib().dwdp_runtime_prefetch_next(None, 1, None),
                     lambda: lib().dwdp_runtime_close(None)):
            self.assertFails(call(), INVALID_ARGUMENT, "the runtime is NULL")
        lib().dwdp_runtime_destroy(None)  # ignored, like free(NULL)
        lib().dwdp_free(None)

    def test_out_of_range_arguments(self):
        out = ctypes.c_void_p()
        scenario = _lib.Scenario(os.path.join(support.SCENARIOS, "default.yaml").encode(), None,
                                 None)
        self.assertFails(lib().dwdp_validate(ctypes.byref(scenario), 0, ctypes.byref(out)),
                         INVALID_ARGUMENT, "world_size is 0; it must be in [1, 1048576]")
        self.assertFails(lib().dwdp_layout(ctypes.byref(scenario), -2, ctypes.byref(out)),
                         INVALID_ARGUMENT, "rank is -2")
        self.assertFails(lib().dwdp_recipes(2, 0, ctypes.byref(out)), INVALID_ARGUMENT,
                         "num_experts is 0; it must be in [1, 1000000]")

    def test_a_missing_scenario_file_is_not_found(self):
        out = ctypes.c_void_p()
        scenario = _lib.Scenario(b"/nonexistent/scenario.yaml", None, None)
        self.assertFails(lib().dwdp_validate(ctypes.byref(scenario), -1, ctypes.byref(out)),
                         NOT_FOUND, "/nonexistent/scenario.yaml")
        self.assertIsNone(out.value)

    def test_scenario_text_names_itself_in_messages(self):
        out = ctypes.c_void_p()
        scenario = _lib.Scenario(None, b"name: x\nmodel: 3\n", b"inline.yaml")
        self.assertFails(lib().dwdp_validate(ctypes.byref(scenario), -1, ctypes.byref(out)),
                         INVALID_ARGUMENT, "inline.yaml:2:")

    def test_plan_options_are_checked(self):
        out = ctypes.c_void_p()
        scenario = _lib.Scenario(os.path.join(support.SCENARIOS, "default.yaml").encode(), None,
                                 None)
        cases = [(b"[1, 2]", "the plan options are not a JSON object"),
                 (b"{not json", "the plan options are not a JSON object"),
                 (b'{"dwdp_size": 2}', "plan option 'dwdp_size' is unknown; the options are "
                                       "hardware, dwdp_sizes"),
                 (b'{"max_dwdp_size": 2.5}', "plan option 'max_dwdp_size' must be an integer "
                                             "in [2, 4096]; got 2.5"),
                 (b'{"num_buffers": [2, 65]}', "plan option 'num_buffers' must be a list of "
                                               "integers in [2, 64]; got [2,65]"),
                 (b'{"all_recipes": 1}', "plan option 'all_recipes' must be true or false"),
                 (b'{"hardware": 7}', "plan option 'hardware' must be a preset name or a "
                                      "profile path")]
        for options, sentence in cases:
            with self.subTest(options=options):
                self.assertFails(lib().dwdp_plan(ctypes.byref(scenario), options,
                                                 ctypes.byref(out)),
                                 INVALID_ARGUMENT, sentence)
        self.assertEqual(lib().dwdp_plan(ctypes.byref(scenario), None, ctypes.byref(out)), OK)
        self.assertIn("candidates", json.loads(_lib.take_text(out)))


class RuntimeCreateTest(Fixture):
    def create(self, config=None, chunks=None, count=None, options=None):
        handle = ctypes.c_void_p(1234)
        code = lib().dwdp_runtime_create(
            ctypes.byref(config or self.config), self.chunks if chunks is None else chunks,
            len(self.chunks) if count is None else count,
            None if options is None else ctypes.byref(options), ctypes.byref(handle))
        self.assertIsNone(handle.value)  # NULL on every failure
        return code

    def test_config_errors_come_first(self):
        self.config.num_prefetch_experts = 10
        self.assertFails(self.create(), INVALID_ARGUMENT, "gap: num_prefetch_experts 10")
        self.config.num_prefetch_experts = 7
        self.config.contention_mode = 5
        self.assertFails(self.create(), INVALID_ARGUMENT, "contention_mode is 5; it must be 0 "
                                                          "(rotate), 1 (ascending) or 2")

    def test_null_arrays_are_refused(self):
        self.config.weights = None
        self.assertFails(self.create(), INVALID_ARGUMENT, "num_weights is 2 but weights is NULL")
        self.config = valid_config(self.layers, self.weights)
        self.config.moe_layers = None
        self.assertFails(self.create(), INVALID_ARGUMENT,
                         "num_moe_layers is 3 but moe_layers is NULL")
        self.config = valid_config(self.layers, self.weights)
        self.weights[1].name = None
        self.assertFails(self.create(), INVALID_ARGUMENT, "weight 1 has no name (NULL)")
        self.weights[1].name = b"w2"
        self.assertFails(self.create(chunks=ctypes.POINTER(_lib.LocalChunkC)(), count=6),
                         INVALID_ARGUMENT, "num_chunks is 6 but chunks is NULL")
        self.assertFails(lib().dwdp_runtime_create(ctypes.byref(self.config), self.chunks, 6,
                                                   None, None),
                         INVALID_ARGUMENT, "dwdp_runtime_create: runtime is NULL")

    def test_a_bad_group_communicator_is_refused_before_any_gpu_work(self):
        if not lib().dwdp_has_cuda_backend():
            self.skipTest("this build has no cuda backend")
        calls = []

        def allgather(*args):
            calls.append(args)
            return 1

        allgather_fn = _lib.ALLGATHER_FN(allgather)
        barrier_fn = _lib.BARRIER_FN(lambda user: 1)
        options = _lib.OptionsC()
        lib().dwdp_options_init(ctypes.byref(options))
        comm = _lib.GroupCommC(None, 5, 2, allgather_fn, barrier_fn)
        options.group_comm = ctypes.pointer(comm)
        self.assertFails(self.create(options=options), RUNTIME,
                         "Options::group_comm says rank 5 of 2 ranks")
        comm.rank, comm.size = 0, 3
        self.assertFails(self.create(options=options), RUNTIME,
                         "Options::group_comm has 3 ranks; a DWDP group has dwdp_size = 2")
        comm.size = 2
        comm.barrier = _lib.BARRIER_FN()
        self.assertFails(self.create(options=options), RUNTIME,
                         "Options::group_comm needs both an allgather and a barrier callback")
        self.assertEqual(calls, [])

    def test_without_a_gpu_creation_fails_with_one_sentence(self):
        if os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl"):
            self.skipTest("this machine has a GPU")
        code = self.create()
        if lib().dwdp_has_cuda_backend():
            self.assertFails(code, RUNTIME,
                             "the cuda backend cannot run on %s" % socket.gethostname())
        else:
            self.assertFails(code, NO_CUDA_BACKEND, "built without the cuda backend")


if __name__ == "__main__":
    unittest.main()
