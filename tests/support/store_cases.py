"""Results files and store scenarios shared by the SQLite and the PostgreSQL tests.

Each ``check_*`` function runs one behaviour of `scaling.records.store` against the database at
``url`` and asserts on it; `test_store.py` calls them with SQLite, `test_store_postgres.py`
with a real PostgreSQL server.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from bench.records import flopcast_section, write_section
from scaling.records import database
from scaling.records import store
from scaling.cli.main import main
from scaling.records.load import load_results

H100 = "NVIDIA H100 80GB HBM3"


def machine(host: str, device: str = "cuda", device_name: str = H100) -> dict:
    gpu = device == "cuda"
    return {"hostname": host, "os": "Linux 6.1", "python": "3.11.9", "cpu": "Test CPU",
            "cpu_count": 2, "flopcast": "0.1.0", "torch": "2.13.0", "triton": "3.9.0",
            "cuda": "12.8" if gpu else None, "driver": "570.86" if gpu else None,
            "device": device, "device_name": device_name, "device_count": 8 if gpu else 0,
            "gpus": [{"index": 0, "name": device_name, "uuid": "GPU-0", "pci_bus_id": "0:1b:0",
                      "memory_bytes": 85899345920, "compute_capability": "9.0",
                      "power_limit_w": 700.0, "max_sm_clock_mhz": 1980,
                      "max_mem_clock_mhz": 2619}] if gpu else [],
            "telemetry_backend": "nvml" if gpu else "none",
            "telemetry_reason": None if gpu else "no NVIDIA GPU"}


def gemm(n: int, impl: str, time_s: float, *, dtype="bf16", variant="", device="cuda",
         device_name=H100, power_w: float | None = 650.0, **extra) -> dict:
    """A GEMM record as the benchmark writes it; FLOPs 2*n^3 (kernels/flops.py)."""
    flops, nbytes = 2 * n ** 3, 3 * n * n * 2
    record = {
        "name": f"gemm-{dtype}-rc-{impl}-{n}x{n}x{n}", "test": f"bench/bench_kernels.py::gemm[{n}]",
        "kernel": "gemm", "impl": impl, "dtype": dtype, "out_dtype": "bf16", "direction": "fwd",
        "variant": variant, "layout": "rc", "shape": {"m": n, "n": n, "k": n},
        "flops": flops, "bytes": nbytes, "device": device, "device_name": device_name,
        "time_s": time_s, "time_s_min": time_s * 0.98, "time_s_mean": time_s * 1.01,
        "time_s_stddev": time_s * 0.005, "time_s_iqr": time_s * 0.01, "rounds": 20,
        "iterations": 50, "tflops": flops / time_s / 1e12, "gbps": nbytes / time_s / 1e9,
        "rel_error": 3.1e-3, "tolerance": 1e-2, "telemetry_backend": "nvml" if power_w else "none",
        "power_window_s": 5.0 if power_w else None,
        "energy_j": power_w * time_s if power_w else None,
        "avg_power_w": power_w, "max_power_w": power_w * 1.05 if power_w else None,
        "tflops_per_w": flops / time_s / 1e12 / power_w if power_w else None,
        "sm_clock_mhz": 1755.0 if power_w else None, "mem_clock_mhz": 2619.0 if power_w else None,
        "temp_c": 71.0 if power_w else None, "power_limit_w": 700.0 if power_w else None,
        "throttled": bool(power_w and power_w > 680) if power_w else None,
        "throttle_reasons": ["sw_power_cap"] if power_w and power_w > 680 else [],
        "power_missing_reason": None if power_w else "no NVIDIA GPU",
    }
    record.update(extra)
    return record


def attention(seq: int, impl: str, time_s: float, *, causal=True) -> dict:
    b, h, d = 2, 16, 128
    flops = 4 * b * h * seq * seq * d // (2 if causal else 1)
    record = gemm(64, impl, time_s)
    record.update(name=f"attention-bf16-{impl}-{seq}", kernel="attention", layout="",
                  shape={"batch": b, "heads_q": h, "heads_kv": h, "seq": seq, "head_dim": d,
                         "causal": causal},
                  flops=flops, bytes=4 * b * h * seq * d * 2, tflops=flops / time_s / 1e12)
    return record


def comm(message_bytes: int, time_s: float, world_size: int = 8) -> dict:
    """A collective record with the family's own fields beside the common ones."""
    algbw = message_bytes / time_s / 1e9
    record = gemm(64, "nccl", time_s, power_w=None)
    record.update(name=f"comm-all_reduce-{message_bytes}", kernel="comm", dtype="bf16",
                  layout="", shape={"message_bytes": message_bytes, "world_size": world_size},
                  flops=0, bytes=message_bytes, tflops=None, gbps=algbw, world_size=world_size,
                  nodes=1, backend="nccl", message_bytes=message_bytes, algbw_gbps=algbw,
                  busbw_gbps=algbw * 2 * (world_size - 1) / world_size)
    return record


def write_run(directory, host: str, records: list[dict], *, created_utc: str,
              device="cuda", device_name=H100, run_id: str | None = None) -> Path:
    section = flopcast_section(records, machine(host, device, device_name),
                               source="pytest --benchmark", sweep="quick",
                               run_id=run_id or uuid.uuid4().hex, created_utc=created_utc)
    return write_section(section, directory)


def three_runs(directory) -> list[Path]:
    """An H100 kernel run, a collective run a day later and a CPU run a day after that."""
    return [
        write_run(directory, "node-a", [
            gemm(4096, "torch", 2.0e-4), gemm(4096, "triton", 1.6e-4, power_w=690.0),
            gemm(8192, "torch", 1.5e-3),
            gemm(4096, "torch", 1.0e-4, dtype="fp8_e4m3", variant="rowwise"),
            attention(4096, "torch", 1.2e-3), attention(4096, "triton", 1.5e-3)],
            created_utc="2026-11-01T10:00:00+00:00"),
        write_run(directory, "node-b", [comm(2 ** 20, 5e-5), comm(2 ** 28, 1.4e-3)],
                  created_utc="2026-11-02T10:00:00+00:00"),
        write_run(directory, "laptop", [
            gemm(256, "torch", 1e-3, device="cpu", device_name="Test CPU", power_w=None),
            gemm(256, "triton", 4e-3, device="cpu", device_name="Test CPU", power_w=None)],
            created_utc="2026-11-03T09:30:00+00:00", device="cpu", device_name="Test CPU"),
    ]


def counts(url) -> tuple[int, int]:
    """(runs, records) stored, read with a fresh engine of our own."""
    engine = sa.create_engine(database.parse_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT count(*) FROM flopcast_runs")).scalar()
            recs = conn.execute(sa.text("SELECT count(*) FROM flopcast_records")).scalar()
            # Every stored run has exactly the records it declares: nothing partial.
            bad = conn.execute(sa.text(
                "SELECT count(*) FROM flopcast_runs r WHERE r.record_count <> "
                "(SELECT count(*) FROM flopcast_records c WHERE c.run = r.id)")).scalar()
    finally:
        engine.dispose()
    assert bad == 0
    return runs, recs


def values(df: pd.DataFrame) -> pd.DataFrame:
    plain = df.astype(object)
    return plain.where(df.notna(), None)


def digest(paths) -> dict:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


def check_round_trip(url, directory) -> None:
    files = three_runs(directory)
    report = store.upload_files([directory], url)
    assert report.ok and report.count(store.UPLOADED) == 3
    assert [o.records for o in report.outcomes] == [6, 2, 2]
    assert counts(url) == (3, 10)

    from_db = store.read_records(url)
    from_files = load_results([directory])
    pd.testing.assert_frame_equal(from_db, from_files)
    assert sorted(from_db.attrs["files"]) == sorted(map(str, files))

    # Independent values, computed by hand from the records written above.
    triton = from_db[(from_db.kernel == "gemm") & (from_db.impl == "triton")
                     & (from_db.device == "cuda")].iloc[0]
    assert triton.speedup_vs_baseline == 2.0e-4 / 1.6e-4
    assert triton.tflops == 2 * 4096 ** 3 / 1.6e-4 / 1e12
    assert triton.throttle_reasons == "sw_power_cap" and bool(triton.throttled)
    bus = from_db[from_db.kernel == "comm"].busbw_gbps.tolist()
    assert bus == [2 ** 20 / 5e-5 / 1e9 * 14 / 8, 2 ** 28 / 1.4e-3 / 1e9 * 14 / 8]

    # The typed columns hold the loader's tidy values, for queries in SQL.
    engine = sa.create_engine(database.parse_url(url), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        row = conn.execute(sa.select(store.records_table).where(
            store.records_table.c.impl == "triton", store.records_table.c.device == "cuda",
            store.records_table.c.kernel == "gemm")).one()
        run = conn.execute(sa.select(store.runs_table).where(
            store.runs_table.c.id == row.run)).one()
    engine.dispose()
    assert (row.shape, row.flops, row.avg_power_w, row.throttled, row.throttle_reasons) == \
        ("4096x4096x4096", 2 * 4096 ** 3, 690.0, True, "sw_power_cap")
    assert row.tflops == triton.tflops and row.rounds == 20
    assert (run.hostname, run.device_name, run.torch, run.cuda, run.record_count) == \
        ("node-a", H100, "2.13.0", "12.8", 6)
    assert run.source_file == str(files[0])


def check_filters(url, directory) -> None:
    three_runs(directory)
    store.upload_files([directory], url)
    files = load_results([directory])
    for filters, expected in [
        ({"kernel": "attention"}, 2), ({"kernel": "gemm,comm"}, 8), ({"device": "h100"}, 8),
        ({"device": "CPU"}, 2), ({"since": "2026-11-02"}, 4),
        ({"since": "2026-11-03T10:30:00+01:00"}, 2), ({"device": "cuda", "kernel": "gemm"}, 4),
        ({"kernel": "fit"}, 0),
    ]:
        from_db = store.read_records(url, **filters)
        assert len(from_db) == expected, filters
        # Same rows, columns and values. pandas infers a column's dtype from the rows it is
        # built from (int or float, str or object), so compare values with missing as None.
        pd.testing.assert_frame_equal(values(from_db),
                                      values(store.filter_records(files, **filters)))


def check_double_upload(url, directory, elsewhere) -> None:
    files = three_runs(directory)
    first = store.upload_files(files, url)
    assert first.count(store.UPLOADED) == 3
    again = store.upload_files(files, url)
    assert [o.status for o in again.outcomes] == [store.PRESENT] * 3 and again.ok
    assert "already present" in again.summary()
    assert counts(url) == (3, 10)

    # The same run from another node: the same content, written with other indentation.
    document = json.loads(files[0].read_text())
    copy = Path(elsewhere) / "copied.json"
    copy.write_text(json.dumps(document, indent=4))
    assert store.upload_files([copy], url).outcomes[0].status == store.PRESENT

    # The same run id with other content is not silently merged: skipped, and said so.
    document["flopcast"]["records"][0]["time_s"] *= 2
    copy.write_text(json.dumps(document))
    clash = store.upload_files([copy], url)
    assert clash.outcomes[0].status == store.CONFLICT and not clash.ok
    assert counts(url) == (3, 10)


def check_bad_files_mixed(url, directory, capsys) -> None:
    good = three_runs(directory)
    truncated = Path(directory) / "truncated.json"
    truncated.write_text(good[0].read_text()[:300])
    future = Path(directory) / "future.json"
    document = json.loads(good[1].read_text())
    document["flopcast"]["schema_version"] = 99
    future.write_text(json.dumps(document))
    nan_time = Path(directory) / "nan.json"
    document = json.loads(good[2].read_text())
    document["flopcast"]["run_id"] = uuid.uuid4().hex
    document["flopcast"]["records"][0]["time_s"] = -1.0
    nan_time.write_text(json.dumps(document))
    before = digest(Path(directory).iterdir())

    capsys.readouterr()
    code = main(["upload", str(directory), "--to", str(url), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    report = json.loads(out)
    status = {Path(f["file"]).name: f["status"] for f in report["files"]}
    assert status == {"truncated.json": "invalid", "future.json": "invalid",
                      "nan.json": "invalid", **{p.name: "uploaded" for p in good}}
    for name, field in [("truncated.json", "JSON"), ("future.json", "schema_version"),
                        ("nan.json", "time_s")]:
        line = next(l for l in err.splitlines() if name in l)
        assert line.startswith("flopcast upload: skipped") and field in line
    assert counts(url) == (3, 10)
    assert digest(Path(directory).iterdir()) == before  # local files untouched


def _stall_then_upload(path, url, seconds, inside, queue) -> None:
    """In a child process: upload ``path``, but stop inside the transaction, after half of the
    run's records, for ``seconds`` (then go on and commit)."""
    insert = store._insert_records

    def stall(conn, run_pk, rows):
        insert(conn, run_pk, rows[: len(rows) // 2])
        inside.set()
        time.sleep(seconds)
        insert(conn, run_pk, rows[len(rows) // 2:])

    store._insert_records = stall
    queue.put(store.upload_files([path], url).outcomes[0].status)


def _stalled_uploader(path, url, seconds):
    ctx = multiprocessing.get_context("fork")  # a child with flopcast already imported
    inside, queue = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_stall_then_upload, args=(path, url, seconds, inside, queue))
    child.start()
    if not inside.wait(60):
        child.kill()
        raise AssertionError("the uploader never reached its transaction")
    return child, queue


def check_kill_mid_upload(url, directory) -> None:
    path = three_runs(directory)[0]
    store.upload_files([three_runs(Path(directory) / "other")[1]], url)  # schema exists, 1 run
    child, _ = _stalled_uploader(path, url, 120)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert counts(url) == (1, 2)  # no trace of the killed run
    report = store.upload_files([path], url)
    assert report.outcomes[0].status == store.UPLOADED and report.outcomes[0].records == 6
    assert counts(url) == (2, 8)


def _uploader(paths, url, barrier, queue) -> None:
    try:
        barrier.wait(30)
        report = store.upload_files(paths, url)
        queue.put([(o.file, o.status) for o in report.outcomes])
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


def check_concurrent_uploaders(url, directory, workers: int = 8) -> None:
    """Eight processes at once, each with its own run and all with one shared run."""
    shared = write_run(Path(directory) / "shared", "node-s", [gemm(1024, "torch", 3e-6)],
                       created_utc="2026-11-04T00:00:00+00:00")
    own = [write_run(Path(directory) / f"w{i}", f"node-{i}",
                     [gemm(1024 * (1 + j), "torch", 1e-5 * (1 + i + j)) for j in range(3)],
                     created_utc=f"2026-11-05T00:00:0{i}+00:00") for i in range(workers)]
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_uploader, args=([own[i], shared], url, barrier, queue))
             for i in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(isinstance(r, list) for r in results), results
    statuses = [status for r in results for _, status in r]
    assert statuses.count(store.UPLOADED) == workers + 1  # every own run, the shared one once
    assert statuses.count(store.PRESENT) == workers - 1
    assert counts(url) == (workers + 1, 3 * workers + 1)
    df = store.read_records(url)
    assert df.run_id.nunique() == workers + 1 and len(df) == 3 * workers + 1


def check_same_run_at_once(url, directory) -> None:
    """Two nodes upload the same run at the same moment: the second finds nothing stored yet
    (the first has not committed), waits for the first, and reports "already present"."""
    path = three_runs(directory)[0]
    store.upload_files([three_runs(Path(directory) / "other")[1]], url)
    child, queue = _stalled_uploader(path, url, 1.0)
    report = store.upload_files([path], url)
    first = queue.get(timeout=60)
    child.join(30)
    assert child.exitcode == 0
    assert (first, report.outcomes[0].status) == (store.UPLOADED, store.PRESENT)
    assert counts(url) == (2, 8)
