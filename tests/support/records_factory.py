"""Results files for tests, written through the real writer."""

from bench.records import write_results

MACHINE = {"hostname": "node-a", "os": "Linux", "python": "3.11", "cpu": "Test CPU",
           "cpu_count": 2, "flopcast": "0.1.0", "torch": "2.13.0", "triton": "3.9.0",
           "cuda": None, "driver": None, "device": "cpu", "device_name": "Test CPU",
           "device_count": 0, "gpus": [], "telemetry_backend": "none",
           "telemetry_reason": "NVML library not found"}


def gemm_record(n=256, impl="torch", time_s=1e-3, dtype="bf16", **extra):
    flops = 2 * n * n * n
    nbytes = 3 * n * n * 2
    record = {"name": f"gemm-{dtype}-rr-{impl}-{n}x{n}x{n}", "test": None, "kernel": "gemm",
              "impl": impl, "dtype": dtype, "out_dtype": dtype, "direction": "fwd", "variant": "",
              "layout": "rr", "shape": {"m": n, "n": n, "k": n}, "flops": flops, "bytes": nbytes,
              "device": "cpu", "device_name": "Test CPU", "time_s": time_s,
              "time_s_min": time_s * 0.9, "time_s_mean": time_s, "time_s_stddev": time_s * 0.01,
              "time_s_iqr": time_s * 0.02, "rounds": 10, "iterations": 3,
              "tflops": flops / time_s / 1e12, "gbps": nbytes / time_s / 1e9,
              "rel_error": 2e-3, "tolerance": 1e-2, "telemetry_backend": "none",
              "power_window_s": None, "energy_j": None, "avg_power_w": None, "max_power_w": None,
              "tflops_per_w": None, "sm_clock_mhz": None, "mem_clock_mhz": None, "temp_c": None,
              "power_limit_w": None, "throttled": None, "throttle_reasons": None,
              "power_missing_reason": "NVML library not found"}
    record.update(extra)
    return record


def write_run(directory, records=None, machine=None, sweep="quick"):
    records = records if records is not None else [gemm_record(256), gemm_record(512, time_s=4e-3)]
    return write_results(records, machine or MACHINE, directory, source="pytest --benchmark",
                         sweep=sweep)
