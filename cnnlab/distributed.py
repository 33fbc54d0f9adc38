"""The processes of one data-parallel (DDP) run: who this process is, the process group, and the
few collectives the distributed engine, the loaders and the loop's stop requests need.

A run is distributed when torchrun (or `cnnlab train --nproc N`, which calls torchrun's own
launcher: `launch` below) started it: RANK, WORLD_SIZE and LOCAL_RANK are in the environment.
The process group uses NCCL on GPUs and gloo on the CPU; a collective that waits longer than
CNNLAB_DIST_TIMEOUT seconds (default 300) fails instead of hanging, and a failed collective
(a peer died, or stopped answering) becomes PeerLost: one line, exit code 4.

How the batches are shared (loader.py, fileloader.py, train/data_parallel.py): every process
draws the same epoch order and augmentations from the same generator, cuts each global batch
of `train.batch_size` images into `size` contiguous parts (torch.tensor_split's sizes) and trains
on part `rank`. The loaders yield (this process's rows, the whole batch's labels); the engine
returns the whole batch's logits and mean loss, so every process counts every batch in full and
the loop's numbers are the same in each of them, and the same as in one process.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cnnlab.errors import EXIT_NOTE, ConfigError, PeerLost, keep_reporting

DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory, prints and draws."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env() -> World:
    """The world torchrun describes in the environment (one process when it does not)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return SINGLE
    return World(rank, size, local) if size > 1 else SINGLE


def current() -> World:
    """This process's world: the initialised group's, else what the environment says."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), from_env().local_rank)
    return from_env()


def timeout_s() -> float:
    try:
        return float(os.environ.get("CNNLAB_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


_CONTROL: Any = None  # a gloo group for host-side agreements (stop requests) when the main one is NCCL


def init(device: torch.device) -> World:
    """Join the run's process group (once per process); `device` is this rank's (device.setup)."""
    global _CONTROL
    world = from_env()
    if not world.distributed or dist.is_initialized():
        return current()
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: a distributed run needs CUDA GPUs or the CPU, not {device.type}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s())
    try:
        dist.init_process_group(backend, timeout=timeout, **({"device_id": device} if backend == "nccl" else {}))
        _CONTROL = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None
    except (RuntimeError, ValueError) as e:
        raise PeerLost(f"cannot join the distributed run ({_first_line(e)}); check the rendezvous flags "
                       "(--nnodes, --rdzv-endpoint) and that every node started") from None
    return current()


def finish() -> None:
    """Leave the process group at the end of a run (every rank, after the last collective)."""
    global _CONTROL
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
            dist.destroy_process_group()
    _CONTROL = None


def local_device(device: torch.device, world: World) -> torch.device:
    """This rank's device: GPU LOCAL_RANK (of the visible ones) for CUDA runs, else `device`."""
    if device.type != "cuda" or not world.distributed:
        return device
    count = torch.cuda.device_count()
    index = world.local_rank % max(count, 1)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


# ----------------------------------------------------------------------------- sharing batches


def bounds(n: int, world: World, rank: int | None = None) -> tuple[int, int]:
    """Rows [start, stop) of a batch of n that `rank` (default: this process) trains on; the
    sizes of torch.tensor_split(n, world.size): the first n % size parts hold one row more."""
    r = world.rank if rank is None else rank
    base, extra = divmod(n, world.size)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def rows(t: torch.Tensor, world: World) -> torch.Tensor:
    """This process's rows of a global batch."""
    if not world.distributed:
        return t
    start, stop = bounds(len(t), world)
    return t[start:stop]


def steps(n: int, batch_size: int, world: World) -> int:
    """Global batches in an epoch of n images. A last batch smaller than the number of
    processes is dropped in distributed runs, so no process ever gets an empty part."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest and (rest >= world.size or not world.distributed) else 0)


def gather_rows(t: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """The global batch of n rows from every process's part (`t` is this process's rows)."""
    if not world.distributed:
        return t
    sizes = [bounds(n, world, r) for r in range(world.size)]
    most = max(stop - start for start, stop in sizes)
    padded = t.new_zeros((most, *t.shape[1:]))
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    with collective("gathering a batch"):
        dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: stop - start] for p, (start, stop) in zip(parts, sizes)])


def gather_any(t: torch.Tensor, world: World) -> torch.Tensor:
    """Every process's rows, in rank order, when the sizes are not known in advance (evaluation)."""
    if not world.distributed:
        return t
    size = torch.tensor([len(t)], device=t.device)
    sizes = [torch.empty_like(size) for _ in range(world.size)]
    with collective("gathering evaluation outputs"):
        dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = t.new_zeros((max(counts), *t.shape[1:]))
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    with collective("gathering evaluation outputs"):
        dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def mean_over(value: torch.Tensor, count: int, total: int, world: World) -> torch.Tensor:
    """The global mean of a per-process mean over `count` of `total` rows."""
    if not world.distributed:
        return value
    s = value.detach().double() * count
    with collective("averaging the loss"):
        dist.all_reduce(s)
    return (s / total).float()


def broadcast_buffers(module: torch.nn.Module, world: World) -> None:
    """Rank 0's buffers (BatchNorm running statistics) everywhere, so every process evaluates the
    weights rank 0 saves. Each process's own batches moved its running statistics a little."""
    if not world.distributed:
        return
    with collective("sharing BatchNorm statistics"):
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's `obj` (picklable plain data made by cnnlab itself) in every process."""
    if not world.distributed:
        return obj
    box = [obj if world.is_main else None]
    with collective("sharing the run directory"):
        dist.broadcast_object_list(box, src=0, group=_CONTROL)
    return box[0]


def agreed_stop(requested: Callable[[], int | None], world: World, every: int = 1) -> Callable[[], int | None]:
    """A stop request (SIGINT/SIGTERM) seen by any process, seen by all at the same step.

    Each process gets its signal at its own moment; they must stop after the same step or the
    others would wait in the next collective. Every `every`-th call asks all processes (a host
    all-reduce on the gloo group); the calls in between answer None. The loop calls it the same
    number of times in every process, so the asks line up."""
    if not world.distributed:
        return requested
    calls = [0]

    def ask() -> int | None:
        calls[0] += 1
        if calls[0] % every:
            return None
        mine = torch.tensor([requested() or 0], dtype=torch.int64)
        with collective("agreeing on a stop request"):
            dist.all_reduce(mine, op=dist.ReduceOp.MAX, group=_CONTROL)
        return int(mine) or None

    return ask


def seed_rank(seed: int, salt: str, world: World) -> None:
    """Give ranks above 0 their own torch stream (dropout masks), reproducibly per run and position."""
    if world.rank > 0:
        import zlib

        torch.manual_seed((seed * 1_000_003 + world.rank * 7919 + zlib.crc32(salt.encode())) % 2**63)


_PEER_WORDS = ("gloo", "nccl", "connection", "timed out", "timeout", "processgroup", "store", "socket", "peer")


def is_peer_failure(e: BaseException) -> bool:
    """Whether an exception is a failed collective (a process died or hung), not a bug of ours."""
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(e, dist_error):
        return True
    return isinstance(e, RuntimeError) and any(w in str(e).lower() for w in _PEER_WORDS)


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a failed collective into PeerLost: one line saying what happened and what to do."""
    try:
        yield
    except PeerLost:
        raise
    except Exception as e:
        if not is_peer_failure(e):
            raise
        keep_reporting()
        raise PeerLost(lost_message(what, e)) from None


def lost_message(what: str, e: BaseException) -> str:
    return (f"another process of this distributed run died or stopped answering while {what} "
            f"({_first_line(e)[:160]}); the job stops")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line


# ----------------------------------------------------------------------------- launching


def launch(command: list[str], nproc: int, say: Callable[[str], None] | None = None) -> int:
    """Run `python -m cnnlab COMMAND...` in `nproc` processes on this machine through torchrun's
    own launcher (torch.distributed.run, standalone rendezvous on a free port); the exit code.

    Each process gets the cores divided between them (OMP_NUM_THREADS) unless that is set. When
    a process fails, rank 0 has usually printed the reason (PeerLost, a user error) and noted
    its exit code; the launcher adds its own line only when rank 0 said nothing (it was killed).
    Ctrl-C reaches the training processes directly (they stop together after a step and save);
    the launcher ignores it rather than forward a second signal, which would stop them at once."""
    import signal
    import tempfile

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    import cnnlab

    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    env_before = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnlab.__file__)))
    os.environ["PYTHONPATH"] = root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // nproc)))
    # The elastic agent logs every step of a worker's end at WARNING/ERROR; rank 0's line says it.
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    with tempfile.TemporaryDirectory(prefix="cnnlab-launch-") as tmp:
        note = os.path.join(tmp, "exit")
        os.environ[EXIT_NOTE] = note
        args = torchrun.parse_args(["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0",
                                    "--monitor-interval", "0.2", "--signals-to-handle", "SIGTERM,SIGHUP,SIGQUIT",
                                    "-m", "cnnlab", *command])
        try:
            torchrun.run(args)
            return 0
        except ChildFailedError as e:
            return _failure_code(e, note, say)
        finally:
            signal.signal(signal.SIGINT, previous)
            os.environ.clear()
            os.environ.update(env_before)


def _failure_code(e: Any, note: str, say: Callable[[str], None]) -> int:
    try:
        with open(note) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        pass
    failures = e.failures  # {rank: ProcessFailure}
    rank, first = min(failures.items(), key=lambda kv: kv[1].timestamp)
    how = f"was killed by signal {-first.exitcode}" if first.exitcode < 0 else f"exited with code {first.exitcode}"
    say(f"cnnlab: error: training process rank {rank} {how}; the job stopped. `cnnlab resume RUN_DIR` "
        "(the run directory printed above) continues it from its last checkpoint")
    return first.exitcode if first.exitcode > 0 else 1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
