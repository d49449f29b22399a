"""How a Runtime reaches the other ranks of its DWDP group while it is created.

The group is needed only inside Runtime.create: to agree on the config and to exchange the names
of the sockets that carry the memory handles. Two ways, chosen by `comm`:

* torch.distributed (comm=None when it is initialised, "torch", or a ProcessGroup): what a
  PyTorch engine already has, started by torchrun or by the engine. No MPI is initialised. The
  exchange runs on a gloo group of the DWDP group's ranks (created once per Runtime), so it
  never touches the engine's NCCL streams; a ProcessGroup passed in is used as it is.
* MPI (comm=None under mpirun without torch.distributed, "mpi", or an mpi4py communicator):
  libdwdp.so splits MPI_COMM_WORLD into groups of dwdp_size ranks, or duplicates the
  communicator given, initialising MPI itself when nobody has (and finalising it at exit).

torch.distributed wins when both are there: it is how PyTorch programs are started, and it
needs no MPI runtime on the machine.
"""

import datetime
import os

from dwdp import _lib

# Environment variables through which launchers tell a process its world rank.
_MPI_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")
_MPI_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")


class Group:
    """This rank's DWDP group: `rank` in 0 .. size-1, and either a torch process group
    (allgather / barrier from Python) or an MPI communicator handle for the library."""

    def __init__(self, rank, size, process_group=None, mpi_comm=None):
        self.rank = rank
        self.size = size
        self.process_group = process_group
        self.mpi_comm = mpi_comm

    @property
    def kind(self):
        return "torch" if self.process_group is not None else "mpi"

    def allgather(self, data):
        import torch.distributed as dist
        parts = [None] * self.size
        dist.all_gather_object(parts, data, group=self.process_group)
        return parts

    def barrier(self):
        import torch.distributed as dist
        dist.barrier(group=self.process_group)


def _torch_distributed():
    """torch.distributed when it is importable and initialised, else None."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def _mpi_launched():
    return any(name in os.environ for name in _MPI_SIZE_VARIABLES + _MPI_RANK_VARIABLES)


def _new_group(dist, ranks, timeout):
    options = {"ranks": ranks, "timeout": datetime.timedelta(seconds=timeout)}
    if dist.is_gloo_available():
        options["backend"] = "gloo"
    try:
        # Only the group's own ranks take part (torch >= 2.1), so ranks outside any DWDP group
        # (other servers of the job) need not call Runtime.create.
        return dist.new_group(use_local_synchronization=True, **options)
    except TypeError:
        return dist.new_group(**options)


def _from_torch(dist, config, timeout):
    world, rank = dist.get_world_size(), dist.get_rank()
    d = config.dwdp_size
    if world < config.num_groups * d:
        _lib.fail("torch.distributed has %d ranks, fewer than num_groups * dwdp_size = %d * %d: "
                  "start more ranks or use fewer groups" % (world, config.num_groups, d))
    if rank // d >= config.num_groups:
        _lib.fail("rank %d of torch.distributed falls in DWDP group %d but there are only %d "
                  "group(s) of %d ranks: only ranks below %d create a Runtime, or pass comm= a "
                  "process group of dwdp_size ranks" %
                  (rank, rank // d, config.num_groups, d, config.num_groups * d))
    first = rank // d * d
    group = _new_group(dist, list(range(first, first + d)), timeout)
    return Group(rank - first, d, process_group=group)


def _from_mpi(config, mpi_comm=_lib.SPLIT_WORLD, rank=None):
    if rank is None:
        for name in _MPI_RANK_VARIABLES:
            if os.environ.get(name, "").isdigit():
                rank = int(os.environ[name]) % config.dwdp_size
                break
        else:
            _lib.fail("comm='mpi' needs the launcher's rank (%s are unset): start the program "
                      "with mpirun, or pass an mpi4py communicator" %
                      ", ".join(_MPI_RANK_VARIABLES))
    return Group(rank, config.dwdp_size, mpi_comm=mpi_comm)


def resolve(comm, config, timeout=60.0):
    """The Group for `comm` (see the module's doc); Group objects pass through."""
    if isinstance(comm, Group):
        return comm
    if comm is None:
        dist = _torch_distributed()
        if dist is not None:
            return _from_torch(dist, config, timeout)
        if _mpi_launched():
            return _from_mpi(config)
        _lib.fail("there is no group to start DWDP in: initialise torch.distributed (e.g. start "
                  "with torchrun) or start the program with mpirun, or pass comm=")
    if comm == "torch":
        dist = _torch_distributed()
        if dist is None:
            _lib.fail("comm='torch' needs torch.distributed initialised "
                      "(torch.distributed.init_process_group) before Runtime.create")
        return _from_torch(dist, config, timeout)
    if comm == "mpi":
        return _from_mpi(config)
    if hasattr(comm, "py2f") and hasattr(comm, "Get_rank"):  # an mpi4py communicator
        if comm.Get_size() != config.dwdp_size:
            _lib.fail("the MPI communicator given has %d ranks; a DWDP group has dwdp_size = %d"
                      % (comm.Get_size(), config.dwdp_size))
        return _from_mpi(config, comm.py2f(), comm.Get_rank())
    dist = _torch_distributed()
    if dist is not None and isinstance(comm, dist.ProcessGroup):
        size = dist.get_world_size(comm)
        if size != config.dwdp_size:
            _lib.fail("the process group given has %d ranks; a DWDP group has dwdp_size = %d" %
                      (size, config.dwdp_size))
        return Group(dist.get_rank(comm), size, process_group=comm)
    _lib.fail("comm must be None, 'torch', 'mpi', a torch.distributed ProcessGroup or an mpi4py "
              "communicator; got %r" % (comm,))
