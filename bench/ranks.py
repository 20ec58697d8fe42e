"""Where this process sits in a distributed job, and how it never hangs there.

`distributed_env` reads the rank, the world size and the local rank from the launcher:
``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or Slurm's ``srun`` (``SLURM_PROCID``,
``SLURM_NTASKS``, ``SLURM_LOCALID``). `init_distributed` joins the process group with a
timeout: NCCL for GPUs (one per local rank), gloo for CPUs.

A distributed run has one failure mode a single process does not: waiting forever for a peer
that died or never started. Two guards stop that. The process group's timeout makes gloo fail
any collective, and NCCL's watchdog abort any kernel, that waits longer than it; and a
`Watchdog` thread ends the process when a step it was told about has not finished a few
seconds after that, whatever the backend did.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

EXIT_TIMEOUT = 3  # exit code when the watchdog ends a stuck process


class CommError(RuntimeError):
    """A collective benchmark cannot run or its result is wrong; the message says which rank,
    which collective and what to do."""


def max_across_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise maximum of ``values`` over all ranks (every rank gets the result)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def watchdog_limit(timeout_s: float) -> float:
    """The watchdog fires a little after the backend's own timeout, so the backend's error
    (which names the failed operation) normally comes first."""
    return timeout_s + max(5.0, 0.2 * timeout_s)


class Watchdog:
    """Ends the process if a step does not finish in time.

    ``kick(what)`` starts a new deadline of ``limit_s`` seconds for the step named ``what``.
    If the deadline passes, the watchdog prints which rank was stuck in which step and calls
    ``os._exit`` (a stuck collective cannot be interrupted from Python). ``stop()`` disarms it.
    """

    def __init__(self, limit_s: float, rank: int, exit=os._exit):
        self.limit_s, self.rank, self._exit = limit_s, rank, exit
        self.what = "start-up"
        self.deadline = time.monotonic() + limit_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="flopcast-comm-watchdog",
                                        daemon=True)
        self._thread.start()

    def kick(self, what: str | None = None) -> None:
        if what is not None:
            self.what = what
        self.deadline = time.monotonic() + self.limit_s

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(min(0.5, self.limit_s / 4)):
            if time.monotonic() > self.deadline:
                print(f"flopcast comm: rank {self.rank}: {self.what} did not finish within "
                      f"{self.limit_s:g} s; a rank has probably died or never joined (check "
                      f"the other ranks' logs); ending the run", file=sys.stderr, flush=True)
                self._exit(EXIT_TIMEOUT)
                return


# -- the launch: torchrun or Slurm -----------------------------------------------------------


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job, from the launcher's environment variables."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str  # "torchrun" | "slurm"


def _first_slurm_host(environ) -> str | None:
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def distributed_env(environ=None) -> DistEnv:
    """Rank, world size and local rank from torchrun (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``) or, failing that, from Slurm (``SLURM_PROCID``, ``SLURM_NTASKS``,
    ``SLURM_LOCALID``). Under Slurm the rendezvous address is ``MASTER_ADDR`` when set, else
    the job's first node (``scontrol show hostnames``), and ``MASTER_PORT`` defaults to 29500;
    both are written into ``environ`` for ``torch.distributed``'s ``env://`` start-up."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ and "WORLD_SIZE" in environ:
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local = int(environ.get("LOCAL_RANK", rank))
        launcher = "torchrun"
    elif "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ:
        rank, world = int(environ["SLURM_PROCID"]), int(environ["SLURM_NTASKS"])
        local = int(environ.get("SLURM_LOCALID", 0))
        launcher = "slurm"
        if "MASTER_ADDR" not in environ:
            host = _first_slurm_host(environ)
            if host is None:
                raise CommError("under Slurm without MASTER_ADDR, and the first node of the "
                                "job could not be found with `scontrol show hostnames`: export "
                                "MASTER_ADDR=<first node> before srun")
            environ["MASTER_ADDR"] = host
        environ.setdefault("MASTER_PORT", "29500")
        environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    else:
        raise CommError("no rank in the environment (RANK/WORLD_SIZE or SLURM_PROCID/"
                        "SLURM_NTASKS): launch with `torchrun --nproc-per-node N -m bench.comm` "
                        "or under `srun`")
    if world < 2:
        raise CommError(f"world size {world}: a collective over one rank moves no data; launch "
                        "at least 2 ranks (torchrun --nproc-per-node 2 or more)")
    if not 0 <= rank < world:
        raise CommError(f"rank {rank} is outside the world size {world}")
    return DistEnv(rank=rank, world_size=world, local_rank=local, launcher=launcher)


def init_distributed(env: DistEnv, backend: str, timeout_s: float) -> torch.device:
    """Join the process group (``env://``) within ``timeout_s``; returns this rank's device."""
    if backend == "nccl":
        device = torch.device("cuda", env.local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timedelta(seconds=timeout_s), device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return device
