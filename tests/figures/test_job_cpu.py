"""CPU seconds per computed job (:class:`figures.sweeps.CacheStats`): what the report's run
record says each section and each job function cost."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

from figures.sweeps import CacheStats, run_jobs


def spin(config):
    """Burn ``config["cpu"]`` seconds of this process's CPU time (measured by the OS)."""
    started = time.process_time()
    while time.process_time() - started < config["cpu"]:
        sum(range(1000))
    return config["cpu"]


def hold(config):
    """Touch ``config["mb"]`` MB of fresh memory (resident while it lives)."""
    block = np.ones(int(config["mb"] * 2**20 // 8))
    return float(block[-1])


def idle(config):
    """Sleep: wall time, almost no CPU."""
    time.sleep(config["wall"])
    return 0


def test_computed_jobs_count_their_cpu_seconds_and_cached_ones_none(tmp_path):
    total = CacheStats()
    section = CacheStats(parent=total)
    jobs = [(spin, {"cpu": 0.15}), (spin, {"cpu": 0.1}), (idle, {"wall": 0.2})]
    with ThreadPoolExecutor(1) as pool:
        assert run_jobs(jobs, pool, tmp_path, None, section) == [0.15, 0.1, 0]
        cpu = section.to_dict()["cpu_seconds"]
        spin_s = cpu[f"{__name__}.spin"]
        # the OS clock ticks at ≤ 10 ms; the loop overshoots by one sum(range(1000)) (~10 µs)
        assert 0.25 <= spin_s < 0.25 + 0.1
        assert cpu[f"{__name__}.idle"] < 0.1  # sleeping is not CPU time
        assert total.to_dict() == section.to_dict()  # the parent counts the same
        assert run_jobs(jobs, pool, tmp_path, None, section) == [0.15, 0.1, 0]  # cached
    assert section.hits == 3 and section.misses == 3
    # both sides rounded to 0.01 s
    assert abs(section.to_dict()["jobs_cpu_seconds"] - spin_s - cpu[f"{__name__}.idle"]) <= 0.011


def test_the_job_that_raises_a_workers_peak_memory_owns_it(tmp_path):
    """In a fresh worker process, a job holding 300 MB sets the high-water mark (recorded
    under its function, ≥ 300 MB); a job after it in the same worker that allocates little
    records none."""
    stats = CacheStats()
    # this (parent) process peaks above the job's 300 MB first: a spawned worker's peak must
    # be its own, not the parent's carried across execve (ru_maxrss would be)
    assert hold({"mb": 600}) == 1.0
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        run_jobs([(hold, {"mb": 300})], pool, tmp_path, None, stats)
        run_jobs([(spin, {"cpu": 0.02})], pool, tmp_path, None, stats)
    peaks = stats.to_dict()["peak_mb"]
    assert list(peaks) == [f"{__name__}.hold"] and peaks[f"{__name__}.hold"] >= 300
