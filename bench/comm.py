"""The collective-communication benchmark's command: launch the ranks, join them, measure,
write one results file.

Launch one process per GPU with ``torchrun`` or Slurm's ``srun``::

    torchrun --nproc-per-node 8 -m bench.comm --sweep quick
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m bench.comm --sweep full --ops all_reduce all_to_all
    srun --nodes 2 --ntasks-per-node 8 --gpus-per-node 8 python -m bench.comm --sweep full

What is measured, and how the bandwidths are defined, is `bench.collectives`. Rank 0 alone
writes the results file (results/README.md, kernel ``comm``).

A rank that never joins or dies ends the run with a clear error after ``--timeout`` seconds,
never a hang: the process group is created with that timeout (gloo enforces it on every
collective, NCCL's watchdog on every kernel), and a watchdog thread (`Watchdog`) ends the
process if any step still has not finished shortly after.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import torch
import torch.distributed as dist

from bench.collectives import (COLLECTIVES, DEFAULT_TIMEOUT_S, ITERATIONS, SWEEP_SIZES, GiB,
                               Group, KiB, MiB, Settings, run_sweep)
from bench.device import device_name, machine_info
from bench.ranks import CommError, Watchdog, distributed_env, init_distributed, watchdog_limit
from bench.records import write_results
from bench.telemetry import open_telemetry

# NVML's energy counter updates about every 100 ms (bench/telemetry/base.py), so a 2 s window
# carries a few percent of error; longer windows multiply a full sweep's time (105 cases).
DEFAULT_POWER_WINDOW_S = 2.0
CPU_POWER_REASON = ("not measured for gloo ranks by default: ranks sharing a CPU package each "
                    "see the whole package's energy (pass --power-window SECONDS to measure anyway)")


def parse_size(text: str) -> int:
    """``4096``, ``64K``/``64KiB``, ``1M``/``1MiB``, ``1G``/``1GiB`` (binary units) -> bytes."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": KiB, "M": MiB, "G": GiB}.get(t[-1:], 1)
    digits = t[:-1] if scale > 1 else t
    try:
        value = int(digits) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad message size '{text}': use bytes or 64K, 1M, 1G")
    if value < 1:
        raise argparse.ArgumentTypeError(f"message size '{text}' must be positive")
    return value


def parse_op(text: str) -> str:
    name = text.strip().lower().replace("-", "_")
    if name not in COLLECTIVES:
        raise argparse.ArgumentTypeError(f"unknown collective '{text}'; known: {', '.join(COLLECTIVES)}")
    return name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m bench.comm",
        description="Collective-communication benchmark (all-reduce, all-gather, reduce-scatter, "
                    "all-to-all, broadcast) over torch.distributed: NCCL on GPUs, gloo on CPUs. "
                    "Rank 0 writes one results file.")
    p.add_argument("--sweep", choices=tuple(SWEEP_SIZES), default="quick",
                   help="message sizes: quick (1 KiB..64 MiB, x4 steps) or full (1 KiB..1 GiB, x2 "
                        "steps); default quick")
    p.add_argument("--ops", nargs="+", type=parse_op, default=list(COLLECTIVES), metavar="OP",
                   help=f"collectives to run (default all): {' '.join(COLLECTIVES)}")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None, metavar="SIZE",
                   help="measure these message sizes instead of the sweep's (e.g. 1K 1M 1G)")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="element type (default bf16 with NCCL, fp32 with gloo)")
    p.add_argument("--backend", default=None, choices=("nccl", "gloo"),
                   help="default nccl when CUDA is present, else gloo (CPU tensors)")
    p.add_argument("--results-dir", default="results",
                   help="folder for the results file that rank 0 writes (default results/)")
    p.add_argument("--no-write", action="store_true", help="print the table only; write no file")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="end the run with an error when ranks do not join, or a collective does "
                        f"not finish, within this many seconds (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--power-window", type=float, default=None, metavar="SECONDS",
                   help="steady window per case in which every rank measures its device's power "
                        "(default 2 with NCCL; 0, i.e. off, with gloo, whose ranks share a CPU "
                        "package)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations per case")
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations per case (default: as many as fit the sweep's target "
                        "time, within its limits)")
    return p


def settings_from_args(args, backend: str) -> Settings:
    warmup, lo, hi, target = ITERATIONS[args.sweep]
    if args.warmup is not None:
        warmup = args.warmup
    if args.iters is not None:
        lo = hi = args.iters
    if warmup < 0 or lo < 1:
        raise CommError(f"--warmup must be >= 0 and --iters >= 1, got {warmup} and {lo}")
    if not args.timeout > 0:
        raise CommError(f"--timeout must be positive, got {args.timeout}")
    dtype = args.dtype or ("bf16" if backend == "nccl" else "fp32")
    window = args.power_window
    if window is None:
        window = DEFAULT_POWER_WINDOW_S if backend == "nccl" else 0.0
        reason = CPU_POWER_REASON
    else:
        reason = "power window disabled (--power-window 0)"
    if window < 0:
        raise CommError(f"--power-window must be >= 0 seconds, got {window}")
    sizes = tuple(args.sizes) if args.sizes else SWEEP_SIZES[args.sweep]
    return Settings(ops=tuple(dict.fromkeys(args.ops)), sizes=sizes, dtype=dtype, sweep=args.sweep,
                    warmup=warmup, min_iterations=lo, max_iterations=hi, target_s=target,
                    timeout_s=args.timeout, power_window_s=window, power_reason=reason)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        env = distributed_env()
        backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl" and not torch.cuda.is_available():
            raise CommError("--backend nccl needs CUDA GPUs and this torch sees none; use "
                            "--backend gloo for CPU ranks")
        settings = settings_from_args(args, backend)
    except CommError as exc:
        print(f"flopcast comm: {exc}", file=sys.stderr)
        return 2
    who = f"rank {env.rank} of {env.world_size}"
    watchdog = Watchdog(watchdog_limit(settings.timeout_s), env.rank)
    joined = False
    try:
        watchdog.kick(f"joining the process group ({env.world_size} ranks)")
        try:
            device = init_distributed(env, backend, settings.timeout_s)
            joined = True
            hosts = [None] * env.world_size
            dist.all_gather_object(hosts, socket.gethostname())
        except Exception as exc:
            raise CommError(
                f"the {env.world_size} ranks did not all join within {settings.timeout_s:g} s "
                f"({_one_line(exc)}); check that every rank was started and can reach "
                f"MASTER_ADDR:MASTER_PORT ({os.environ.get('MASTER_ADDR')}:"
                f"{os.environ.get('MASTER_PORT')})") from exc
        telemetry = open_telemetry(device)
        group = Group(rank=env.rank, world_size=env.world_size, nodes=len(set(hosts)),
                      backend=backend, device=device, device_name=device_name(device),
                      telemetry=telemetry)
        try:
            records = run_sweep(group, settings, watchdog)
        except CommError:
            raise
        except Exception as exc:
            raise CommError(f"{watchdog.what} failed ({_one_line(exc)}); a rank has probably "
                            f"died or timed out (--timeout {settings.timeout_s:g} s): check the "
                            f"other ranks' logs") from exc
        finally:
            telemetry.close()
        if env.rank == 0 and not args.no_write:
            watchdog.kick("writing the results file")
            # Sizes given with --sizes are no named sweep.
            sweep = None if args.sizes else settings.sweep
            path = write_results(records, machine_info(device), args.results_dir,
                                 source="bench.comm", sweep=sweep)
            print(f"flopcast comm: {len(records)} records written to {path}", flush=True)
        return 0
    except CommError as exc:
        print(f"flopcast comm: {who}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if joined:
            watchdog.kick("leaving the process group")
            dist.destroy_process_group()
        watchdog.stop()


if __name__ == "__main__":
    sys.exit(main())
