"""The collective-communication benchmark (bench.comm): the nccl-tests figures, the exact-result
checks, the launch environment, and real multi-process runs with gloo on 127.0.0.1 (2 and 4
ranks), including a rank that never joins and a rank that dies mid-run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import collectives, comm, rank_power, ranks
from bench.collectives import COLLECTIVES, _Case, bandwidths_gbps, bus_factor, message_elements
from bench.ranks import CommError, Watchdog, distributed_env
from bench.telemetry import Telemetry, Window

REPO = Path(__file__).resolve().parents[2]


# -- the figures, against hand computation ---------------------------------------------------


def test_bus_factors_are_nccl_tests_factors():
    # nccl-tests doc/PERFORMANCE.md, by hand for 8 ranks: 2*7/8, 7/8, 7/8, 7/8, 1.
    assert bus_factor("all_reduce", 8) == 1.75
    assert bus_factor("all_gather", 8) == 0.875
    assert bus_factor("reduce_scatter", 8) == 0.875
    assert bus_factor("all_to_all", 8) == 0.875
    assert bus_factor("broadcast", 8) == 1.0
    assert bus_factor("all_reduce", 2) == 1.0
    with pytest.raises(CommError, match="unknown collective 'gather'"):
        bus_factor("gather", 8)


def test_bandwidths_by_hand():
    # 1 MiB all-reduced over 4 ranks in 1 ms: 1048576 B / 1e-3 s = 1.048576 GB/s of algorithm
    # bandwidth, times 2*3/4 = 1.572864 GB/s of bus bandwidth.
    algbw, busbw = bandwidths_gbps("all_reduce", 1 << 20, 4, 1e-3)
    assert algbw == pytest.approx(1.048576, rel=1e-12)
    assert busbw == pytest.approx(1.572864, rel=1e-12)
    # 64 MiB all-to-all over 16 ranks in 10 ms: 6.7108864 GB/s, times 15/16.
    algbw, busbw = bandwidths_gbps("all_to_all", 64 << 20, 16, 1e-2)
    assert (algbw, busbw) == pytest.approx((6.7108864, 6.2914560), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(collective=st.sampled_from(COLLECTIVES), message_bytes=st.integers(1, 1 << 31),
       world=st.integers(2, 4096), elem=st.sampled_from([2, 4]))
def test_message_elements_rounds_down_to_whole_chunks(collective, message_bytes, world, elem):
    count = message_elements(collective, message_bytes, world, elem)
    assert 0 <= count * elem <= message_bytes
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        assert count % world == 0
        assert count * elem > message_bytes - world * elem  # the largest such count
    else:
        assert count == message_bytes // elem


def test_parse_size_and_op():
    assert comm.parse_size("4096") == 4096
    assert comm.parse_size("64K") == 65536
    assert comm.parse_size("64KiB") == 65536
    assert comm.parse_size("1m") == 1 << 20
    assert comm.parse_size("1GiB") == 1 << 30
    assert comm.parse_op("all-reduce") == "all_reduce"
    for bad in ("", "12Q", "0", "-4K"):
        with pytest.raises(Exception):
            comm.parse_size(bad)
    with pytest.raises(Exception, match="known: all_reduce"):
        comm.parse_op("gather")


def test_plan_iterations_fills_target_within_limits():
    s = collectives.Settings(min_iterations=5, max_iterations=50, target_s=0.1)
    assert collectives.plan_iterations(0.01, s) == 10
    assert collectives.plan_iterations(1.0, s) == 5
    assert collectives.plan_iterations(1e-6, s) == 50


# -- exact results: simulate n ranks without a network ----------------------------------------


def _simulate(collective, n, count, corrupt=None):
    """Build every rank's buffers, perform the collective by hand in float64 and return the
    cases with their outputs filled in."""
    cases = [_Case(collective, count, r, n, torch.float32, torch.device("cpu"), seed=7)
             for r in range(n)]
    k = count // n
    inputs = [c.inp.double() for c in cases]
    if corrupt == "drop-rank-1":
        inputs[1] = torch.zeros_like(inputs[1])
    for r, c in enumerate(cases):
        if collective == "all_reduce":
            result = sum(inputs)
        elif collective == "reduce_scatter":
            result = sum(inputs)[r * k:(r + 1) * k]
        elif collective == "all_gather":
            result = torch.cat(inputs)
        elif collective == "all_to_all":
            order = list(range(n))
            if corrupt == "swap-senders":
                order[0], order[1] = order[1], order[0]
            result = torch.cat([inputs[s][r * k:(r + 1) * k] for s in order])
        else:
            result = cases[0].out.double()
        c.out.copy_(result.to(c.out.dtype))
    return cases


@pytest.mark.parametrize("collective", COLLECTIVES)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_exact_result_is_known_on_every_rank(collective, n):
    count = message_elements(collective, 4096, n, 4)
    for case in _simulate(collective, n, count):
        assert case.error() == 0.0


@pytest.mark.parametrize("collective,corrupt", [("all_reduce", "drop-rank-1"),
                                                ("reduce_scatter", "drop-rank-1"),
                                                ("all_gather", "drop-rank-1"),
                                                ("all_to_all", "swap-senders")])
def test_a_wrong_result_is_caught(collective, corrupt):
    count = message_elements(collective, 4096, 4, 4)
    errors = [case.error() for case in _simulate(collective, 4, count, corrupt)]
    assert max(errors) > 1e-2


def test_an_unwritten_output_is_caught():
    case = _Case("all_gather", 64, 0, 2, torch.float32, torch.device("cpu"), seed=1)
    assert case.error() == float("inf")  # the output is still NaN


# -- the launch environment and the watchdog -------------------------------------------------


def test_env_from_torchrun():
    env = distributed_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (3, 8, 1, "torchrun")


def test_env_from_slurm_writes_the_rendezvous_variables():
    environ = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "5",
               "MASTER_ADDR": "node001"}
    env = distributed_env(environ)
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (5, 16, 5, "slurm")
    assert environ["RANK"] == "5" and environ["WORLD_SIZE"] == "16"
    assert environ["MASTER_PORT"] == "29500" and environ["MASTER_ADDR"] == "node001"


def test_env_errors_say_what_to_do(monkeypatch):
    with pytest.raises(CommError, match="torchrun --nproc-per-node N -m bench.comm"):
        distributed_env({})
    with pytest.raises(CommError, match="world size 1"):
        distributed_env({"RANK": "0", "WORLD_SIZE": "1"})
    monkeypatch.setattr(ranks, "_first_slurm_host", lambda environ: None)
    with pytest.raises(CommError, match="export MASTER_ADDR"):
        distributed_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n[1-2]"})


def test_watchdog_fires_only_when_a_step_overruns(capsys):
    fired = []
    dog = Watchdog(0.4, rank=3, exit=fired.append)
    for _ in range(6):  # kicked steps never overrun
        dog.kick("step")
        time.sleep(0.1)
    assert fired == []
    dog.kick("all_reduce of 1024 bytes")
    time.sleep(1.0)
    dog.stop()
    assert fired == [ranks.EXIT_TIMEOUT]
    err = capsys.readouterr().err
    assert "rank 3: all_reduce of 1024 bytes did not finish within 0.4 s" in err


# -- combining per-rank power ----------------------------------------------------------------


def _window(rank, energy_j, power_w, temp_c, throttled=False, reasons=(), calls=10):
    return {"rank": rank, "host": "h", "backend": "nvml", "time_s": 2.0 + rank, "calls": calls,
            "energy_j": energy_j, "avg_power_w": power_w, "max_power_w": power_w and power_w + 10,
            "sm_clock_mhz": 1900.0, "mem_clock_mhz": 2600.0, "temp_c": temp_c,
            "power_limit_w": 700.0 - rank, "throttled": throttled,
            "throttle_reasons": list(reasons), "missing_reason": None}


def test_power_combines_ranks_by_hand():
    fields = rank_power.combine([_window(0, 1000.0, 500.0, 60.0),
                                 _window(1, 1400.0, 700.0, 70.0, True, ["sw_power_cap"])])
    assert fields["avg_power_w"] == 600.0  # mean over ranks
    assert fields["energy_j"] == 120.0  # (1000/10 + 1400/10) / 2 per operation per rank
    assert fields["max_power_w"] == 710.0 and fields["temp_c"] == 70.0
    assert fields["power_limit_w"] == 699.0 and fields["power_window_s"] == 3.0
    assert fields["throttled"] is True and fields["throttle_reasons"] == ["sw_power_cap"]
    assert [r["energy_j"] for r in fields["rank_power"]] == [100.0, 140.0]
    assert fields["tflops_per_w"] is None and fields["power_missing_reason"] is None


def test_power_missing_on_one_rank_blanks_the_record():
    bad = dict(_window(1, None, None, None), missing_reason="NVML: not supported")
    fields = rank_power.combine([_window(0, 1000.0, 500.0, 60.0), bad])
    assert fields["avg_power_w"] is None and fields["energy_j"] is None
    assert fields["power_missing_reason"] == "rank 1: NVML: not supported"
    assert rank_power.window_calls(2.0, 0.3) == 7 and rank_power.window_calls(2.0, 5.0) == 1


# -- one rank in this process: the check and the power window through measure() ------------


class FixedEnergy(Telemetry):
    """A telemetry whose every window used 12 J and saw 60 degrees C."""

    backend = "fixed"

    def _stop(self, time_s):
        return Window(backend=self.backend, time_s=time_s, energy_j=12.0,
                      avg_power_w=12.0 / time_s, max_power_w=99.0, temp_c=60.0,
                      throttle_reasons=())


@pytest.fixture
def one_rank(monkeypatch):
    """A real gloo process group of one rank in this process, and a quiet watchdog."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    fired = []
    dog = Watchdog(30, rank=0, exit=fired.append)
    group = collectives.Group(rank=0, world_size=1, nodes=1, backend="gloo",
                       device=torch.device("cpu"), device_name="cpu", telemetry=FixedEnergy())
    try:
        yield group, dog
    finally:
        dog.stop()
        dist.destroy_process_group()
    assert fired == []


def test_a_wrong_collective_fails_before_timing(one_rank, monkeypatch):
    group, dog = one_rank
    settings = collectives.Settings(ops=("all_gather",), sizes=(4096,), warmup=0,
                                    min_iterations=1, max_iterations=1)
    assert collectives.measure("all_gather", 4096, group, settings, dog)["rel_error"] == 0.0

    def half_written(self):  # a collective that forgets the second half of its output
        self.out[: self.count // 2] = self.w[: self.count // 2]

    monkeypatch.setattr(_Case, "run", half_written)
    with pytest.raises(CommError, match="all_gather of 4096 bytes over 1 ranks gave a wrong "
                                        "result on rank 0"):
        collectives.measure("all_gather", 4096, group, settings, dog)


def test_power_window_energy_per_operation(one_rank):
    group, dog = one_rank
    settings = collectives.Settings(warmup=1, min_iterations=3, max_iterations=3,
                                    power_window_s=0.05)
    record = collectives.measure("broadcast", 1024, group, settings, dog)
    calls = rank_power.window_calls(0.05, record["time_s"])
    assert record["energy_j"] == pytest.approx(12.0 / calls)  # 12 J shared by the calls
    assert record["telemetry_backend"] == "fixed" and record["temp_c"] == 60.0
    assert record["rank_power"][0]["energy_j"] == pytest.approx(12.0 / calls)
    assert record["throttled"] is False and record["power_missing_reason"] is None


# -- real runs: ranks on 127.0.0.1 with gloo -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_env(rank, world, port, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in ("RANK", "WORLD_SIZE")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
               WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO), **extra)
    return env


# Ranks are forked from one launcher process that imported torch once (an import of torch costs
# seconds of CPU; four of them would dominate these tests). Each rank runs `bench.comm.main`
# with torchrun's environment variables, its stdout and stderr in files; the launcher reports
# every rank's exit code and seconds from fork to exit, and kills all ranks after a limit.
LAUNCHER = r"""
import json, os, signal, sys, time
import bench.collectives as collectives, bench.comm as comm  # import once
world, port, outdir, die_rank, limit = (int(sys.argv[1]), sys.argv[2], sys.argv[3],
                                        int(sys.argv[4]), float(sys.argv[5]))
skip = {int(r) for r in sys.argv[6].split(",") if r}
argv = sys.argv[7:]
if die_rank >= 0:
    measure = collectives.measure
    def measure_then_die(*args, **kwargs):
        record = measure(*args, **kwargs)
        if collectives.dist.get_rank() == die_rank:
            os._exit(7)
        return record
    collectives.measure = measure_then_die
sys.stdout.flush(); sys.stderr.flush()
children = {}
for rank in range(world):
    if rank in skip:
        continue
    pid = os.fork()
    if pid == 0:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank),
                          WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        for name, fd in (("out", 1), ("err", 2)):
            os.dup2(os.open(f"{outdir}/rank{rank}.{name}", os.O_WRONLY | os.O_CREAT), fd)
        code = comm.main(argv)
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    children[pid] = (rank, time.monotonic())
done, deadline = {}, time.monotonic() + limit
while children and time.monotonic() < deadline:
    pid, status = os.waitpid(-1, os.WNOHANG)
    if pid == 0:
        time.sleep(0.05)
        continue
    rank, t0 = children.pop(pid)
    done[rank] = [os.waitstatus_to_exitcode(status), time.monotonic() - t0]
for pid, (rank, t0) in children.items():
    os.kill(pid, signal.SIGKILL)
    done[rank] = ["hung", time.monotonic() - t0]
print(json.dumps(done))
"""


def _run_ranks(world, argv, tmp_path, *, skip=(), die_rank=-1, limit=60.0):
    """{rank: (exit code, seconds from start to exit, stdout, stderr)} of a forked run."""
    logs = tmp_path / "logs"
    logs.mkdir()
    cmd = [sys.executable, "-c", LAUNCHER, str(world), str(_free_port()), str(logs),
           str(die_rank), str(limit), ",".join(map(str, skip)), *argv]
    env = _rank_env(0, 1, 0)
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=limit + 60)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {int(rank): (code, elapsed, (logs / f"rank{rank}.out").read_text(),
                        (logs / f"rank{rank}.err").read_text())
            for rank, (code, elapsed) in report.items()}


def _check_records(records, world, ops, sizes):
    assert {(r["variant"], r["message_bytes"]) for r in records} == \
        {(op, message_elements(op, size, world, 4) * 4) for op in ops for size in sizes}
    for r in records:
        assert r["kernel"] == "comm" and r["impl"] == "torch" and r["dtype"] == "fp32"
        assert r["world_size"] == world and r["nodes"] == 1 and r["backend"] == "gloo"
        assert r["shape"] == {"message_bytes": r["message_bytes"], "world_size": world}
        assert r["bytes"] == r["message_bytes"] and r["flops"] == 0
        assert r["rel_error"] == 0.0  # every result was exact on every rank
        n, t = world, r["time_s"]
        assert r["algbw_gbps"] == pytest.approx(r["message_bytes"] / t / 1e9, rel=1e-12)
        factor = {"all_reduce": 2 * (n - 1) / n, "broadcast": 1.0}.get(r["variant"], (n - 1) / n)
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * factor, rel=1e-12)
        assert 0 < r["time_s_min"] <= r["time_s"] and r["rounds"] == 3
        assert r["power_missing_reason"]  # gloo ranks: not measured, and why


def test_torchrun_two_ranks_all_collectives(tmp_path):
    """The real entry point under torchrun: every collective, results checked, one file."""
    sizes = [1024, 65536]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "bench.comm", "--sizes", "1K", "64K", "--iters", "3", "--warmup", "1",
           "--timeout", "30", "--results-dir", str(tmp_path)]
    env = _rank_env(0, 1, 0)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key)
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    section = json.loads(files[0].read_text())["flopcast"]
    assert section["source"] == "bench.comm" and section["sweep"] is None
    _check_records(section["records"], 2, COLLECTIVES, sizes)
    assert "busbw GB/s" in done.stdout and "10 records written" in done.stdout


FOUR_RANK_OPS = ["all_reduce", "all_to_all", "reduce_scatter"]
FOUR_RANK_SIZES = [4096, 65536, 1 << 20]


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory):
    """One real run of 4 ranks: (per-rank outcome, results folder)."""
    tmp = tmp_path_factory.mktemp("four-ranks")
    out = tmp / "results"
    argv = ["--ops", *FOUR_RANK_OPS, "--sizes", *map(str, FOUR_RANK_SIZES), "--iters", "3",
            "--warmup", "1", "--timeout", "30", "--results-dir", str(out)]
    return _run_ranks(4, argv, tmp), out


def test_four_ranks_rank_zero_alone_writes(four_ranks):
    outcome, out = four_ranks
    assert sorted(outcome) == [0, 1, 2, 3]
    for rank, (code, _, stdout, stderr) in outcome.items():
        assert code == 0, f"rank {rank}: {stderr[-2000:]}"
        assert ("records written" in stdout) == (rank == 0)
    files = list(out.glob("*.json"))
    assert len(files) == 1
    records = json.loads(files[0].read_text())["flopcast"]["records"]
    _check_records(records, 4, FOUR_RANK_OPS, FOUR_RANK_SIZES)


def test_records_feed_the_hardware_profile(four_ranks, tmp_path):
    """The step model's input: bus bandwidth per collective and world size, fitted from the
    records as `scaling.records.load.load_results` loads them. The records are the 4-rank run's,
    with times replaced by a latency-bandwidth law t = 50 us + bytes / 2 GB/s (a busy 2-core
    machine times too noisily to fit), so the fitted curve is known by hand."""
    from bench.records import write_results
    from scaling.hardware.load import load_profile
    from scaling.records.load import load_results

    section = json.loads(next(four_ranks[1].glob("*.json")).read_text())["flopcast"]

    def law_s(nbytes):
        return 50e-6 + nbytes / 2e9

    records = []
    for r in section["records"]:
        algbw, busbw = bandwidths_gbps(r["variant"], r["message_bytes"], 4, law_s(r["message_bytes"]))
        records.append({**r, "time_s": law_s(r["message_bytes"]), "algbw_gbps": algbw,
                        "busbw_gbps": busbw, "gbps": algbw})
    write_results(records, section["machine"], tmp_path, source="bench.comm", sweep=None)

    df = load_results([tmp_path])
    assert len(df) == len(FOUR_RANK_OPS) * len(FOUR_RANK_SIZES)
    profile = load_profile(results=df)
    for op in FOUR_RANK_OPS:
        est = profile.busbw_gbps(op, 65536, 4)
        assert est.label == "measured" and "gloo" in est.source
        # 65536 B / 82.768 us = 0.7918 GB/s of algbw, times 2*3/4 or 3/4.
        assert est.value == pytest.approx(65536 / law_s(65536) / 1e9 * bus_factor(op, 4), rel=1e-6)
    other = profile.busbw_gbps("all_reduce", 65536, 64)
    assert other.label == "measured" and "measured at world size 4, not 64" in other.source


def test_a_rank_that_never_joins_ends_the_run_within_the_timeout(tmp_path):
    out = tmp_path / "results"
    ranks_ = _run_ranks(2, ["--sizes", "1K", "--timeout", "1", "--results-dir", str(out)],
                        tmp_path, skip={1})
    code, elapsed, _, stderr = ranks_[0]
    assert code == 1
    assert "rank 0 of 2: the 2 ranks did not all join within 1 s" in stderr
    assert "Traceback" not in stderr
    assert 1 <= elapsed < ranks.watchdog_limit(1)  # the timeout, never a hang
    assert not out.exists()


def test_a_rank_that_dies_mid_run_ends_the_others_with_a_clear_error(tmp_path):
    out = tmp_path / "results"
    argv = ["--ops", "all_reduce", "--sizes", "1K", "4K", "--iters", "3", "--warmup", "1",
            "--timeout", "3", "--results-dir", str(out)]
    ranks_ = _run_ranks(2, argv, tmp_path, die_rank=1)
    assert ranks_[1][0] == 7
    code, elapsed, _, stderr = ranks_[0]
    assert code == 1, stderr
    assert "rank 0 of 2:" in stderr and "all_reduce of 4096 bytes" in stderr
    assert "a rank has probably died" in stderr
    assert elapsed < ranks.watchdog_limit(3)
    assert not out.exists()  # nothing half-measured is written


def test_a_single_process_is_refused_with_the_launch_command(monkeypatch, capsys):
    for key in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    assert comm.main(["--sizes", "1K"]) == 2
    assert "torchrun --nproc-per-node N -m bench.comm" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_nccl_without_gpus_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert comm.main(["--backend", "nccl"]) == 2
    assert "use --backend gloo" in capsys.readouterr().err


# -- back-to-back timing (nccl-tests' method), on a simulated CUDA device ----------------------


class _FakeCollective:
    """A collective on a `tests.support.fake_cuda.FakeGPU`: ``host_s`` of Python, then a launch of
    ``device_s`` of work; the all-reduce refill is a short copy."""

    def __init__(self, gpu, device_s, host_s):
        self.gpu, self.device_s, self.host_s = gpu, device_s, host_s
        self.runs = 0

    def reset(self):
        self.gpu.launch(2e-6, "copy")

    def run(self):
        self.gpu.host_work(self.host_s)
        self.gpu.launch(self.device_s, "collective")
        self.runs += 1


class _QuietDog:
    def kick(self, what=None):
        pass


def _events_around_each(case, gpu, iterations):
    """The former method, restated: refill, then a pair of events around each operation."""
    pairs = []
    for _ in range(iterations):
        case.reset()
        start, end = gpu.event(), gpu.event()
        start.record()
        case.run()
        end.record()
        pairs.append((start, end))
    gpu.synchronize()
    return sorted(s.elapsed_time(e) / 1e3 for s, e in pairs)[iterations // 2]


def test_back_to_back_iterations_keep_host_overhead_out_of_the_time():
    from tests.support.fake_cuda import FakeGPU

    # A 30 us collective whose launch costs 20 us and 5 us of Python: back to back, the host
    # (25 us per operation) stays ahead of the device and only the first launch is inside.
    gpu = FakeGPU(launch_s=20e-6, event_host_s=1e-6)
    case = _FakeCollective(gpu, 30e-6, 5e-6)
    n = 100
    per_op = collectives.time_iterations(case, n, torch.device("cuda"), _QuietDog(), cuda=gpu)
    assert case.runs == n
    assert 30e-6 < per_op <= 30e-6 + 25e-6 / n  # at most the first launch, shared by n
    # Events around each operation, with the refill between: the host needs 47 us per
    # iteration (two launches, two event records, the Python), the device 32 us, so each start
    # event waits 15 us of host time for its operation to arrive, inside the interval.
    old = _events_around_each(_FakeCollective(gpu, 30e-6, 5e-6), gpu, 21)
    assert old == pytest.approx(30e-6 + (47e-6 - 32e-6), rel=1e-9)


def test_one_start_and_one_end_event_per_batch():
    from tests.support.fake_cuda import FakeGPU

    gpu = FakeGPU()
    collectives.time_iterations(_FakeCollective(gpu, 30e-6, 0.0), 50, torch.device("cuda"),
                                _QuietDog(), cuda=gpu)
    kinds = [what for what, _, _ in gpu.log]
    assert kinds == ["copy", "event"] + ["collective"] * 50 + ["event"]


def test_batches_are_planned_from_the_first_measurement():
    s = collectives.Settings(min_iterations=5, max_iterations=1000, target_s=0.01)
    # 30 us per operation: ceil(0.01 / 30e-6) = 334 iterations, 5 batches of ceil(334 / 5).
    assert collectives.plan_batches(30e-6, s) == (5, 67)
    assert collectives.plan_batches(1.0, s) == (5, 1)  # at least min_iterations in all
    assert collectives.plan_batches(1.0, collectives.Settings(min_iterations=3)) == (3, 1)


def test_measure_plans_from_its_warm_up_batch(one_rank, monkeypatch):
    group, dog = one_rank
    asked = []

    def fake_time(case, iterations, device, watchdog, cuda=None):
        asked.append(iterations)
        return 2e-3 if len(asked) == 1 else 1e-3 * len(asked)  # warm-up, then batches

    monkeypatch.setattr(collectives, "time_iterations", fake_time)
    settings = collectives.Settings(warmup=4, min_iterations=5, max_iterations=200,
                                    target_s=0.1)
    record = collectives.measure("broadcast", 1024, group, settings, dog)
    # The warm-up batch (4 iterations) said 2 ms: 0.1 s / 2 ms = 50 iterations, 5 batches of 10.
    assert asked == [4, 10, 10, 10, 10, 10]
    assert (record["rounds"], record["iterations"]) == (5, 10)
    assert record["time_s"] == pytest.approx(4e-3)  # median of 2, 3, 4, 5, 6 ms
    assert record["timing_method"] == "cpu-perf-counter" and record["l2_flush"] is False
