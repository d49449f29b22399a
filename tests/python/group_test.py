"""How a Runtime finds its group (dwdp.group.resolve) and how chunks are checked against the
config, without a GPU."""

import os
import unittest
from unittest import mock

import support  # noqa: F401 -- puts python/ on the path

import dwdp
from dwdp import group as dwdp_group
from dwdp import runtime as dwdp_runtime

LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                      "PMIX_RANK", "SLURM_PROCID", "SLURM_NTASKS")


def config():
    return dwdp.Config(dwdp_size=2, num_experts_per_worker=9, num_prefetch_experts=7,
                       num_experts=16, moe_layers=(1, 2), weights=[("w13", "bf16", (8, 4))])


def environment(**variables):
    """The environment without any launcher's variables, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(variables)
    return mock.patch.dict(os.environ, env, clear=True)


class ResolveTest(unittest.TestCase):
    def setUp(self):
        # torch.distributed is not initialised in these tests, whether torch is here or not.
        patcher = mock.patch.object(dwdp_group, "_torch_distributed", return_value=None)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_no_group_at_all_is_one_sentence(self):
        with environment(), self.assertRaises(dwdp.Error) as caught:
            dwdp_group.resolve(None, config())
        self.assertEqual(str(caught.exception),
                         "dwdp: there is no group to start DWDP in: initialise torch.distributed "
                         "(e.g. start with torchrun) or start the program with mpirun, or pass "
                         "comm=")

    def test_mpi_is_chosen_under_mpirun(self):
        with environment(OMPI_COMM_WORLD_RANK="3", OMPI_COMM_WORLD_SIZE="4"):
            group = dwdp_group.resolve(None, config())
        # World rank 3 with dwdp_size 2: group 1, rank 1 in it; the library splits the world.
        self.assertEqual((group.kind, group.rank, group.size, group.mpi_comm), ("mpi", 1, 2, -1))

    def test_mpi_without_a_launcher_rank(self):
        with environment(), self.assertRaises(dwdp.Error) as caught:
            dwdp_group.resolve("mpi", config())
        self.assertIn("comm='mpi' needs the launcher's rank", str(caught.exception))

    def test_torch_without_torch_distributed(self):
        with self.assertRaises(dwdp.Error) as caught:
            dwdp_group.resolve("torch", config())
        self.assertIn("comm='torch' needs torch.distributed initialised", str(caught.exception))

    def test_an_mpi4py_communicator_is_passed_by_its_fortran_handle(self):
        comm = mock.Mock(py2f=mock.Mock(return_value=42), Get_rank=mock.Mock(return_value=1),
                         Get_size=mock.Mock(return_value=2))
        group = dwdp_group.resolve(comm, config())
        self.assertEqual((group.kind, group.rank, group.mpi_comm), ("mpi", 1, 42))
        comm.Get_size.return_value = 4
        with self.assertRaises(dwdp.Error) as caught:
            dwdp_group.resolve(comm, config())
        self.assertIn("the MPI communicator given has 4 ranks; a DWDP group has dwdp_size = 2",
                      str(caught.exception))

    def test_anything_else_is_refused(self):
        with self.assertRaises(dwdp.Error) as caught:
            dwdp_group.resolve(17, config())
        self.assertIn("comm must be None, 'torch', 'mpi', a torch.distributed ProcessGroup or "
                      "an mpi4py communicator; got 17", str(caught.exception))

    def test_a_group_passes_through(self):
        group = dwdp_group.Group(0, 2)
        self.assertIs(dwdp_group.resolve(group, config()), group)


class ChunkTableTest(unittest.TestCase):
    def test_keys_by_name_or_index_and_triples(self):
        table = dwdp_runtime._chunk_table(config(), {(1, "w13"): "a", (2, 0): "b"})
        self.assertEqual(table, {(1, 0): "a", (2, 0): "b"})
        self.assertEqual(dwdp_runtime._chunk_table(config(), [(1, "w13", "a")]), {(1, 0): "a"})

    def test_bad_keys_and_duplicates(self):
        cases = [({(1, "w2"): "a"}, "the config has no weight named 'w2'"),
                 ({1: "a"}, "chunks are keyed (layer, weight); got key 1"),
                 ([(1, "w13", "a"), (1, 0, "b")], "two chunks are given for layer 1 w13")]
        for chunks, sentence in cases:
            with self.subTest(sentence=sentence), self.assertRaises(dwdp.Error) as caught:
                dwdp_runtime._chunk_table(config(), chunks)
            self.assertIn(sentence, str(caught.exception))

    def test_a_stream_must_be_a_stream(self):
        with self.assertRaises(dwdp.Error) as caught:
            dwdp_runtime._stream_handle("copy")
        self.assertIn("a stream is a torch.cuda.Stream or an integer cudaStream_t; got 'copy'",
                      str(caught.exception))
        self.assertEqual(dwdp_runtime._stream_handle(0).value, None)  # the default stream


if __name__ == "__main__":
    unittest.main()
