"""The collective-communication benchmark as a ``python -m pytest --benchmark`` case.

Collectives need one process per rank, so a plain single-process ``python -m pytest
--benchmark`` skips this case and says how to run it. Launched under torchrun (started as
``python -m torch.distributed.run``, so that every rank runs this environment's Python and
pytest), every rank runs pytest and the case runs `bench.comm` with the run's ``--sweep``,
``--results-dir`` and ``--power-window``; rank 0 writes the results file (source
``bench.comm``)::

    python -m torch.distributed.run --nproc-per-node 8 -m pytest --benchmark bench/bench_comm.py
"""

from __future__ import annotations

import os

import pytest

from bench import comm

HOW_TO_RUN = ("collective benchmarks need one process per rank: run "
              "`python -m torch.distributed.run --nproc-per-node N -m bench.comm "
              "[--sweep quick|full]` (or `python -m torch.distributed.run --nproc-per-node N "
              "-m pytest --benchmark bench/bench_comm.py`)")


def launched_ranks(environ=os.environ) -> int:
    """How many ranks the launcher (torchrun or Slurm) started; 1 without one."""
    return int(environ.get("WORLD_SIZE") or environ.get("SLURM_NTASKS") or 1)


def test_comm(request):
    if launched_ranks() < 2:
        pytest.skip(HOW_TO_RUN)
    config = request.config
    argv = ["--sweep", config.getoption("flopcast_sweep"),
            "--results-dir", str(config.getoption("flopcast_results_dir"))]
    window = config.getoption("flopcast_power_window")
    if window is not None:
        argv += ["--power-window", str(window)]
    code = comm.main(argv)
    assert code == 0, f"bench.comm ended with exit code {code} (its error is printed above)"
