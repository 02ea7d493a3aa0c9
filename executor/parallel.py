"""Tensor parallelism across processes: the process group, and launching N local ranks.

Every rank runs the same command on its own slice of the weights (planner/shards.py),
with its own plan, arena and KV cache; the schedule's two all-reduce steps sum the
ranks' partial x, and rank 0's sampled token is broadcast to the others. A rank joins
the group from the environment torch's launchers set (RANK, WORLD_SIZE, MASTER_ADDR,
...), so `arena run --tp N` (which starts N local ranks through torch's elastic launcher)
and `torchrun ... arena run` (one machine or several) take the same path.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from planner.errors import ArenaError, note, shown

# How often the launcher looks at its ranks: a rank that dies stops the others within about this.
MONITOR_SECONDS = 0.2
# The folder where a rank that has said why it fails leaves its mark, its exit code, for the
# launcher (see said).
SAID = "ARENA_SAID_DIR"


class PeerLost(Exception):
    """A collective failed: another rank died or left. gloo says so in a RuntimeError, with its
    C++ frames; this carries the first line."""


@dataclass
class Group:
    """This process's place among the ranks, and the two collectives a forward pass uses."""
    rank: int
    size: int
    device: torch.device

    def all_reduce(self, x: torch.Tensor) -> None:
        with _collective():
            dist.all_reduce(x)

    def broadcast(self, x: torch.Tensor) -> None:
        """Rank 0's `x` to every rank, in place."""
        with _collective():
            dist.broadcast(x, 0)

    def gather(self, value) -> list:
        """Every rank's `value` (any picklable object), in rank order, on every rank."""
        out = [None] * self.size
        with _collective():
            dist.all_gather_object(out, value)
        return out


@contextlib.contextmanager
def _collective():
    """A collective's RuntimeError (gloo's, a peer gone) as PeerLost, with its first line."""
    try:
        yield
    except RuntimeError as e:
        raise PeerLost((str(e).strip().splitlines() or [type(e).__name__])[0][:300]) from e


def launched() -> bool:
    """Whether a launcher started this process as one rank of several. A WORLD_SIZE left in the
    environment without the rest of a launcher's variables is refused, not half obeyed."""
    size = os.environ.get("WORLD_SIZE", "1")
    if not _whole(size):
        raise ArenaError(f"WORLD_SIZE={size!r} in the environment: a launcher sets it to the number of ranks")
    if int(size) <= 1:
        return False
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    wrong = [name for name in ("RANK", "MASTER_PORT") if name not in missing and not _whole(os.environ[name])]
    if missing or wrong:
        why = f"no {', '.join(missing)}" if missing else f"{wrong[0]}={os.environ[wrong[0]]!r} is not a number"
        raise ArenaError(f"WORLD_SIZE={size} in the environment, but {why}: run under torchrun (or arena run "
                         "--tp N), or unset WORLD_SIZE")
    return True


def _whole(text: str) -> bool:
    """Whether `text` is a whole number as int() reads it in ASCII digits ('²' is a digit to isdigit)."""
    return text.isascii() and text.isdecimal()


def launched_ranks() -> int:
    """How many ranks a launcher started (1: none)."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def first_rank() -> bool:
    """Whether this process speaks for the run: the only one, or rank 0 of a launcher's."""
    return not launched() or int(os.environ["RANK"]) == 0


def own_launch() -> bool:
    """Whether `launch` (arena run --tp N) started this rank, rather than torchrun."""
    return SAID in os.environ


def join(device_type: str) -> Group:
    """Join the group the environment describes: gloo on CPU, NCCL on CUDA (one GPU a rank)."""
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device_type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ArenaError(f"rank {rank}: local rank {local} has no GPU ({torch.cuda.device_count()} on this machine)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        _share_cores(int(os.environ.get("LOCAL_WORLD_SIZE", size)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size,
                                device_id=device if device.type == "cuda" else None)
    return Group(rank, size, device)


def _share_cores(local_ranks: int) -> None:
    """Each of the ranks on this machine takes its share of the cores, unless the launcher or
    the user said how many threads (torchrun sets OMP_NUM_THREADS=1): with every rank's
    kernels on every core, SmolLM2 over 2 ranks on 2 cores decoded 1.3 tokens a second."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local_ranks))


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def said(faults: list[str], code: int) -> int:
    """Print a rank's faults (one line each), and mark the run as failed for a reason said, for
    `launch`, which may see another rank fail first: the one whose group this rank left.
    Returns `code`, the exit code."""
    for fault in faults:
        note(f"arena: error: {shown(fault)}")
    if SAID in os.environ:     # (absent under torchrun)
        mark = Path(os.environ[SAID], os.environ["RANK"])
        try:        # whole or not at all: the launcher may read the folder at any time
            mark.with_suffix(".part").write_text(str(code))
            mark.with_suffix(".part").replace(mark)
        except OSError:             # the folder was removed: the launcher names the rank's exit instead
            pass
    return code


def bad_input(faults: list[str]) -> int:
    return said(faults, 2)


def launch(ranks: int, entry: Callable, *args) -> int:
    """Run `entry(*args)` in `ranks` local processes through torch's elastic launcher and
    wait: 0 when all succeed, the exit code a rank gave with its reason (bad input: 2), else the exit
    code of the rank that failed first (the launcher has then stopped the others). Rank 0 writes to
    this terminal; the others' stderr goes to files, shown only when one of them failed and
    rank 0 had nothing to say."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # a failure is reported below, in one line; torch's elastic modules set their loggers' own
    # levels, so the parent's does not reach them ("Received 2 death signal" on every Ctrl-C)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.multiprocessing")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        port = _free_port()
    except OSError as e:        # a sandbox without a loopback network, or no name for localhost
        note(f"arena: error: --tp: the ranks meet over the network on localhost, which failed here: {e.strerror or e}")
        return 1
    logs = Path(tempfile.mkdtemp(prefix="arena-ranks-"))
    os.environ[SAID] = str(logs / "said")     # the spawned ranks inherit it
    (logs / "said").mkdir()
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=ranks, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint=f"localhost:{port}", max_restarts=0,
                          monitor_interval=MONITOR_SECONDS, start_method="spawn",
                          logs_specs=DefaultLogsSpecs(log_dir=str(logs), redirects={r: Std.ERR for r in range(1, ranks)}))
    tempdir, tempfile.tempdir = tempfile.tempdir, str(logs)
    try:        # torch's spawn leaves a failed rank's traceback in a temporary file: in logs, removed below
        elastic_launch(config, entry)(*args)
        return 0
    except ChildFailedError as e:
        marks = sorted(_marks(logs / "said").items())
        if marks:       # the other ranks failed in its wake; rank 0 said its faults here
            rank, code = marks[0]
            if rank != 0:
                _show_log(logs, rank)
            return code
        rank, failure = min(e.failures.items(), key=lambda item: item[1].timestamp)
        if rank != 0 and e.failures.get(0, failure).exitcode <= 0:
            _show_log(logs, rank)
        code = failure.exitcode
        cause = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        note(f"arena: error: rank {rank} of {ranks} {cause}; the other ranks were stopped")
        return code if code > 0 else 1
    except SignalException as e:   # the launcher's own handler: Ctrl-C or a kill stopped every rank
        return 128 + e.sigval
    except RendezvousError as e:   # before any rank started (its cause's text holds C++ stack frames)
        cause = str(e.__cause__ or e).splitlines()[0]
        note(f"arena: error: --tp: the ranks could not meet on localhost:{port}: {cause}")
        return 1
    finally:
        tempfile.tempdir = tempdir
        del os.environ[SAID]
        shutil.rmtree(logs, ignore_errors=True)


def _marks(folder: Path) -> dict[int, int]:
    """{rank: exit code} of the ranks that said why they failed (see said)."""
    marks = {}
    for mark in folder.glob("[0-9]*") if folder.is_dir() else []:
        if mark.name.isdigit():     # not a mark still being written (.part)
            marks[int(mark.name)] = int(mark.read_text())
    return marks


def _show_log(logs: Path, rank: int) -> None:
    """What a rank other than 0 wrote to its standard error (a file, see launch)."""
    for log in logs.glob(f"*/attempt_*/{rank}/stderr.log"):
        note(log.read_text(errors="replace")[-4000:].rstrip("\n"))


def _free_port() -> int:
    """A free port on localhost, where the ranks meet, that takes a connection: where the
    loopback network is down, torch's store would try for two minutes, printing C++ frames."""
    with socket.socket() as server, socket.socket() as client:
        server.bind(("localhost", 0))
        server.listen()
        client.settimeout(10)
        client.connect(server.getsockname())
        return server.getsockname()[1]
