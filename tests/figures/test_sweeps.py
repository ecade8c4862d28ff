"""Sweeps: the on-disk cache (keys, hits, misses, atomic files) and the executor hook."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dynamics.trajectory import Trajectory
from figures.sweeps import CacheStats, JobError, cache_key, load_result, run_jobs, save_result


def _power(config: dict) -> dict:
    """A job: x ** p for x = 0..n-1, and the thread it ran on."""
    return {"values": np.arange(config["n"]) ** config["p"],
            "thread": threading.current_thread().name}


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
