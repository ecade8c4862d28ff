"""Sweeps: the on-disk cache (keys, hits, misses, atomic files) and the executor hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dynamics.trajectory import Trajectory
from figures.sweeps import (
    CacheStats,
    JobError,
    batched,
    cache_key,
    load_result,
    run_jobs,
    save_result,
)


def _power(config: dict) -> dict:
    """A job: x ** p for x = 0..n-1, and the thread it ran on."""
    return {"values": np.arange(config["n"]) ** config["p"],
            "thread": threading.current_thread().name}


_CALLS: list[int] = []


def _slow_counted(config: dict) -> dict:
    """A job that takes a while and counts its calls."""
    _CALLS.append(config["n"])
    time.sleep(0.3)
    return {"n": config["n"]}


def _fails(config: dict) -> dict:
    if config["fail"]:
        raise RuntimeError("boom")
    return {"ok": True}


def _trajectory() -> Trajectory:
    t = np.linspace(0.0, 2.0, 5)
    return Trajectory(t, np.exp(-t), 1.0, {"X": np.ones((5, 2, 1))}, {"X": np.ones((5, 1))},
                      "flow", np.arange(5))


def test_cache_key_depends_on_the_config_only():
    assert cache_key(_power, {"n": 3, "p": 2}) == cache_key(_power, {"p": 2, "n": 3})
    assert cache_key(_power, {"n": 3, "p": 2}) != cache_key(_power, {"n": 3, "p": 3})
    assert cache_key(_power, {"n": 3, "p": 2}) != cache_key(_fails, {"n": 3, "p": 2})


def test_rerun_hits_the_cache_and_a_changed_config_misses(tmp_path):
    jobs = [(_power, {"n": 4, "p": 2}), (_power, {"n": 3, "p": 3})]
    with ThreadPoolExecutor(2) as pool:
        first = CacheStats()
        out = run_jobs(jobs, pool, tmp_path, stats=first)
        again = CacheStats()
        back = run_jobs(jobs, pool, tmp_path, stats=again)
        changed = CacheStats()
        run_jobs([(_power, {"n": 4, "p": 2}), (_power, {"n": 3, "p": 4})], pool, tmp_path,
                 stats=changed)
    assert (first.hits, first.misses) == (0, 2)
    assert (again.hits, again.misses) == (2, 0)
    assert (changed.hits, changed.misses) == (1, 1)
    assert [r["values"].tolist() for r in out] == [[0, 1, 4, 9], [0, 1, 8]]
    assert all(np.array_equal(a["values"], b["values"]) for a, b in zip(out, back, strict=True))
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temporary files


def test_a_given_executor_is_used(tmp_path):
    with ThreadPoolExecutor(1, thread_name_prefix="given-pool") as pool:
        (result,) = run_jobs([(_power, {"n": 2, "p": 1})], pool, tmp_path)
    assert result["thread"].startswith("given-pool")


def test_a_failing_job_raises_after_the_others_are_cached(tmp_path):
    stats = CacheStats()
    with ThreadPoolExecutor(2) as pool, pytest.raises(JobError, match="boom"):
        run_jobs([(_fails, {"fail": True}), (_fails, {"fail": False})], pool, tmp_path,
                 stats=stats)
    assert stats.misses == 1
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_results_round_trip_with_trajectories(tmp_path):
    result = {"run": {"trajectory": _trajectory(), "crossings": {"0.5": 1.2, "0.1": None}},
              "list": [1, "a", np.float64(2.5)], "flag": True}
    save_result(tmp_path / "r.npz", result, {"config": 1})
    back = load_result(tmp_path / "r.npz")
    traj = back["run"]["trajectory"]
    assert isinstance(traj, Trajectory)
    assert np.array_equal(traj.loss, result["run"]["trajectory"].loss)
    assert traj.cosines["X"].shape == (5, 2, 1) and traj.method == "flow"
    assert back["run"]["crossings"] == {"0.5": 1.2, "0.1": None}
    assert back["list"] == [1, "a", 2.5] and back["flag"] is True


def test_a_corrupt_cache_file_is_recomputed(tmp_path):
    job = (_power, {"n": 2, "p": 2})
    (tmp_path / f"{cache_key(*job)}.npz").write_bytes(b"not an npz file")
    stats = CacheStats()
    with ThreadPoolExecutor(1) as pool:
        (result,) = run_jobs([job], pool, tmp_path, stats=stats)
    assert stats.misses == 1 and result["values"].tolist() == [0, 1]


def test_dask_executor_on_a_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        stats = CacheStats()
        out = run_jobs([(_power, {"n": 3, "p": 2})], client.get_executor(), tmp_path,
                       stats=stats)
    assert out[0]["values"].tolist() == [0, 1, 4]
    assert stats.misses == 1


def test_a_job_running_for_one_caller_is_shared_with_another(tmp_path):
    _CALLS.clear()
    jobs = [(_slow_counted, {"n": 7}), (_slow_counted, {"n": 7})]  # twice in one call, too
    with ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(2) as callers:
        stats = [CacheStats(), CacheStats()]
        futures = [callers.submit(run_jobs, jobs, pool, tmp_path, None, st) for st in stats]
        results = [f.result() for f in futures]
    assert _CALLS == [7]  # computed once for the four requests
    assert all(r == [{"n": 7}, {"n": 7}] for r in results)
    assert sum(st.misses for st in stats) == 1 and sum(st.hits for st in stats) == 3
    assert len(list(tmp_path.glob("*.npz"))) == 1


_KILLED_RUN = """
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from figures.sweeps import CacheStats, run_jobs

def job(config):
    if config["slow"] and not os.environ.get("FAST"):
        time.sleep(120)
    return {"i": config["i"]}

stats = CacheStats()
with ThreadPoolExecutor(2) as pool:
    run_jobs([(job, {"i": 0, "slow": False}), (job, {"i": 1, "slow": True})], pool,
             sys.argv[1], stats=stats)
print(json.dumps(stats.to_dict()))
"""


def test_a_run_killed_midway_keeps_every_finished_job(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN))
    cache = tmp_path / "cache"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.Popen([sys.executable, str(script), str(cache)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("*.npz")):  # the fast job has finished and been cached
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
            time.sleep(0.1)
    finally:
        run.kill()  # SIGKILL: no clean-up code runs
        run.wait()
    assert len(list(cache.glob("*.npz"))) == 1
    again = subprocess.run([sys.executable, str(script), str(cache)], capture_output=True,
                           text=True, env={**env, "FAST": "1"}, check=True)
    stats = json.loads(again.stdout.strip().splitlines()[-1])
    assert (stats["hits"], stats["misses"]) == (1, 1)  # only the unfinished job is redone
    assert not list(cache.glob(".tmp-*"))


# ----------------------------------------------------------------------- batched jobs
_BATCHES: list[list[int]] = []


def _square_batch(configs: list[dict]) -> list[dict]:
    """The batch of :func:`_square`: every config at once (records the batch it ran)."""
    _BATCHES.append([c["x"] for c in configs])
    if configs[0]["shift"] == 1:  # slow: still running when a second caller asks for it
        time.sleep(0.3)
    return [{"y": c["x"] ** 2 + c["shift"]} for c in configs]


def _square_key(config: dict) -> str | None:
    return None if config.get("alone") else f"shift={config['shift']}"


@batched(_square_batch, _square_key)
def _square(config: dict) -> dict:
    """A batchable job: x² + shift (its jobs with one shift run as one batch)."""
    return {"y": config["x"] ** 2 + config["shift"]}


def test_batched_jobs_run_as_one_task_and_are_cached_one_by_one(tmp_path):
    _BATCHES.clear()
    jobs = [(_square, {"x": x, "shift": s}) for s in (0, 10) for x in range(3)]
    jobs += [(_square, {"x": 5, "shift": 0, "alone": True}), jobs[0]]  # alone; asked twice
    expected = [{"y": c["x"] ** 2 + c["shift"]} for _, c in jobs]  # computed here
    stats = CacheStats()
    with ThreadPoolExecutor(2) as pool:
        assert run_jobs(jobs, pool, tmp_path, stats=stats) == expected
    assert sorted(_BATCHES) == [[0, 1, 2], [0, 1, 2]]  # one task per shift; x = 5 alone
    assert (stats.hits, stats.misses) == (1, 7)  # one miss per distinct job
    assert len(list(tmp_path.glob("*.npz"))) == 7  # a cache file per job, under its own key
    for fn, config in jobs:
        assert load_result(tmp_path / f"{cache_key(fn, config)}.npz") == _square(config)
    # a rerun with one more cell computes only that one, in a batch of one
    _BATCHES.clear()
    more = [*jobs, (_square, {"x": 7, "shift": 10})]
    with ThreadPoolExecutor(2) as pool:
        assert run_jobs(more, pool, tmp_path, stats=(stats := CacheStats()))[-1] == {"y": 59}
    assert _BATCHES == [[7]] and (stats.hits, stats.misses) == (8, 1)


def test_max_batch_splits_a_group_and_one_turns_batching_off(tmp_path):
    jobs = [(_square, {"x": x, "shift": 0}) for x in range(5)]
    for size, batches in ((2, [[0, 1], [2, 3], [4]]), (1, [])):
        _BATCHES.clear()
        with ThreadPoolExecutor(1) as pool:
            assert run_jobs(jobs, pool, tmp_path / str(size), max_batch=size) == \
                [{"y": x * x} for x in range(5)]
        assert sorted(_BATCHES) == batches


def test_a_batched_job_running_for_one_caller_is_shared_with_another(tmp_path):
    _BATCHES.clear()
    jobs = [(_square, {"x": x, "shift": 1}) for x in range(4)]
    with ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(2) as callers:
        stats = [CacheStats(), CacheStats()]
        futures = [callers.submit(run_jobs, jobs, pool, tmp_path, None, st) for st in stats]
        results = [f.result() for f in futures]
    assert all(r == [{"y": x * x + 1} for x in range(4)] for r in results)
    assert sum(len(b) for b in _BATCHES) == 4  # each job computed once for both callers
    assert sum(st.misses for st in stats) == 4 and sum(st.hits for st in stats) == 4
