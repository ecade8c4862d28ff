"""Sweeps: map experiment jobs over any executor, caching every result on disk.

A *job* is a pair ``(fn, config)``: a picklable top-level function and the JSON-able dict it
is called with, ``fn(config) -> result``. A result is any nesting of dicts (string keys),
lists, numbers, strings, None, numpy arrays and :class:`~dynamics.trajectory.Trajectory`.

Each result is stored under ``cache_dir/<key>.npz``, where the key is the SHA-256 of the
canonical JSON of ``{function, config, code version}``. The code version hashes the source of
the job function and of the functions of its own module that it calls (transitively), the
values of the module constants they use, and the sources of the ``dynamics`` and
``validation`` packages. A file is written to a temporary name and moved into place with
``os.replace`` as soon as its job finishes, so a run killed midway loses nothing already
finished, and a rerun recomputes only the jobs whose configuration or code changed. A job
asked for twice while it runs (the same job in two report sections, which run in threads) is
submitted once and shared.

The executor is any :class:`concurrent.futures.Executor`: a local process pool by default,
a thread pool, or a Dask cluster's ``distributed.Client(address).get_executor()``.

*Batched jobs.* A job function may declare that several of its jobs compute faster together
(:func:`batched`: the trainer trains many seeds and initialisations in one tensor). Its
``batch_key(config)`` names the group a job may join (None: it runs alone); the jobs of one
call that miss the cache and share a key are submitted as ONE task,
``batch_fn([config, ...]) -> [result, ...]`` (at most ``max_batch`` jobs each), and its results
are split back: each job is still cached under its own key, the key it has when run alone, as
soon as its task ends. A batch function must return what the job function returns for each
config (tested bit for bit where it is used), so batching changes cost, never a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any

import numpy as np
from tqdm import tqdm

from dynamics.trajectory import Trajectory

__all__ = [
    "CacheStats",
    "Job",
    "JobError",
    "batched",
    "cache_key",
    "default_executor",
    "load_result",
    "run_jobs",
    "save_result",
]

Job = tuple[Callable[[dict[str, Any]], Any], dict[str, Any]]
"""``(fn, config)``: ``fn`` a picklable top-level function, ``config`` a JSON-able dict."""

_PACKAGES = ("dynamics", "validation")
_TRAJECTORY_FIELDS = tuple(f.name for f in dataclasses.fields(Trajectory))
_IN_FLIGHT: dict[tuple[int, str], tuple[Future[Any], int | None]] = {}
"""(executor id, cache key) -> its future and its place in a batch's results (None: alone)."""
_IN_FLIGHT_LOCK = threading.Lock()


class JobError(RuntimeError):
    """A job raised; the message names its function and configuration."""


@dataclass
class CacheStats:
    """Counts of the jobs found in the cache (``hits``) and computed (``misses``).

    Safe to share between threads that run jobs concurrently (:meth:`count`).
    """

    hits: int = 0
    misses: int = 0
    computed: list[str] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds (user + system, in the worker) of the computed jobs, by function."""
    peak_mb: dict[str, float] = field(default_factory=dict)
    """Largest worker peak resident memory (MB) set by a computed job, by function."""
    parent: CacheStats | None = None
    """Counted here too (a report's totals over its sections' own stats)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, hits: int = 0, computed: str | None = None,
              seconds: float | None = None, peak_mb: float | None = None) -> None:
        """Add ``hits`` cache hits, and one miss for a job of function ``computed`` that took
        ``seconds`` of CPU time and raised its worker's peak memory to ``peak_mb``."""
        with self._lock:
            self.hits += hits
            if computed is not None:
                self.misses += 1
                self.computed.append(computed)
                if seconds is not None:
                    self.cpu_seconds[computed] = self.cpu_seconds.get(computed, 0.0) + seconds
                if peak_mb is not None:
                    self.peak_mb[computed] = max(self.peak_mb.get(computed, 0.0), peak_mb)
        if self.parent is not None:
            self.parent.count(hits, computed, seconds, peak_mb)

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "computed": list(self.computed),
                "cpu_seconds": {k: round(v, 2) for k, v in sorted(
                    self.cpu_seconds.items(), key=lambda kv: -kv[1])},
                "jobs_cpu_seconds": round(sum(self.cpu_seconds.values()), 2),
                "peak_mb": {k: round(v) for k, v in sorted(
                    self.peak_mb.items(), key=lambda kv: -kv[1])}}


def _timed(fn: Callable[[dict[str, Any]], Any], config: dict[str, Any]
           ) -> tuple[Any, float, float | None]:
    """``fn(config)``, the CPU seconds it took in this (worker) process, and the worker's peak
    resident memory in MB if this job raised it (None if an earlier job's peak stands: the
    job that sets a worker's high-water mark is the one that owns it)."""
    before = peak_rss_mb()
    started = time.process_time()
    value = fn(config)
    seconds = time.process_time() - started
    after = peak_rss_mb()
    return value, seconds, (after if after > before else None)


def peak_rss_mb() -> float:
    """This process' peak resident set size in MB: ``VmHWM`` of ``/proc/self/status`` (its own
    address space's high-water mark; ``ru_maxrss`` would carry the spawning parent's peak
    across ``execve``), else ``ru_maxrss`` (bytes on macOS, KiB elsewhere), else 0."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # not on this platform
        return 0.0
    unit = 2**20 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit


def _timed_batch(fn: Callable[[list[dict[str, Any]]], list[Any]],
                 configs: list[dict[str, Any]]) -> tuple[list[Any], float, float | None]:
    """``fn(configs)`` (a batch of jobs), the CPU seconds it took in this process and the peak
    memory it set (as :func:`_timed`)."""
    before = peak_rss_mb()
    started = time.process_time()
    values = fn(configs)
    seconds = time.process_time() - started
    if len(values) != len(configs):
        raise ValueError(f"batch returned {len(values)} results for {len(configs)} jobs")
    after = peak_rss_mb()
    return values, seconds, (after if after > before else None)


def batched(batch_fn: Callable[[list[dict[str, Any]]], list[Any]],
            batch_key: Callable[[dict[str, Any]], str | None]
            ) -> Callable[[Callable[[dict[str, Any]], Any]], Callable[[dict[str, Any]], Any]]:
    """Decorator: the jobs of the decorated function whose ``batch_key(config)`` is equal (not
    None) may run as one task ``batch_fn(configs)`` (module docstring, "Batched jobs").
    ``batch_fn`` and ``batch_key`` must be top-level (picklable) functions."""
    def mark(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        fn.batch = (batch_fn, batch_key)  # type: ignore[attr-defined]
        return fn
    return mark


def default_executor(workers: int | None = None) -> Executor:
    """A process pool of ``workers`` (default: the CPU count, at most 2) single-threaded workers.

    Workers are spawned (not forked, which is unsafe with torch's thread pools) and limited
    to one BLAS/OpenMP thread each, so that the pool uses one core per worker.
    """
    count = workers or min(2, os.cpu_count() or 1)
    return ProcessPoolExecutor(
        max_workers=count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_single_threaded,
    )


def _single_threaded() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


@cache
def _package_digest() -> str:
    """SHA-256 of the sources of the theory and experiment packages."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _names(code: CodeType) -> set[str]:
    """Global names used by ``code`` and the code objects nested in it (comprehensions)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names(const)
    return names


def _function_sources(fn: FunctionType, seen: set[str] | None = None) -> list[str]:
    """Source of ``fn`` and, transitively, of the functions of its module that it names,
    with the values of the module-level constants (numbers, strings, tuples) they use."""
    seen = set() if seen is None else seen
    if fn.__qualname__ in seen:
        return []
    seen.add(fn.__qualname__)
    sources = [inspect.getsource(fn)]
    for name in sorted(_names(fn.__code__)):
        value = fn.__globals__.get(name)
        if isinstance(value, FunctionType) and value.__module__ == fn.__module__:
            sources.extend(_function_sources(value, seen))
        elif isinstance(value, (int, float, str, tuple)):
            sources.append(f"{name} = {value!r}")
    return sources


def _function_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def cache_key(fn: Callable[[dict[str, Any]], Any], config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the job's function, config and code version."""
    code = hashlib.sha256("\n".join(_function_sources(fn)).encode()).hexdigest()  # type: ignore[arg-type]
    payload = {
        "function": _function_name(fn),
        "config": config,
        "code": [code, _package_digest()],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """JSON skeleton of ``obj``; arrays are moved to ``arrays`` and referenced by name."""
    if isinstance(obj, Trajectory):
        return {"__trajectory__": {f: _encode(getattr(obj, f), arrays) for f in _TRAJECTORY_FIELDS}}
    if isinstance(obj, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if isinstance(obj, dict):
        return {str(k): _encode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot cache a result of type {type(obj).__name__}")


def _decode(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__trajectory__" in obj:
            return Trajectory(**{k: _decode(v, arrays) for k, v in obj["__trajectory__"].items()})
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def save_result(path: Path, result: Any, config: dict[str, Any] | None = None) -> None:
    """Write ``result`` to ``path`` (``.npz``, compressed: a third smaller on the report's
    curves) atomically: temporary file, then ``os.replace``."""
    arrays: dict[str, np.ndarray] = {}
    meta = json.dumps({"result": _encode(result, arrays), "config": config})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, __meta__=np.array(meta), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_result(path: Path) -> Any:
    """Read a result written by :func:`save_result` (raises OSError/ValueError if unreadable)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    return _decode(meta["result"], arrays)


def _cached(path: Path | None) -> tuple[bool, Any]:
    if path is None or not path.is_file():
        return False, None
    try:
        return True, load_result(path)
    except (OSError, ValueError, KeyError, EOFError):  # a corrupt file is recomputed
        return False, None


def run_jobs(
    jobs: Sequence[Job],
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
    progress_label: str | tqdm | None = None,
    stats: CacheStats | None = None,
    max_batch: int | None = None,
) -> list[Any]:
    """Results of ``fn(config)`` for every job, in order; cached jobs are not rerun.

    Args:
        jobs: ``(fn, config)`` pairs (see module docstring).
        executor: where the jobs run; default a fresh :func:`default_executor`, shut down
            afterwards (a given executor is left running).
        cache_dir: folder of the cache (``None``: no caching).
        progress_label: label of a new progress bar on stderr, or an open ``tqdm`` bar whose
            total is extended by these jobs (one bar over several calls); ``None``: no bar.
        stats: if given, its hit and miss counts are increased (one miss per job, a batch's
            CPU seconds shared equally among its jobs).
        max_batch: at most this many jobs in one batched task (None: a whole group; 1: no
            batching); module docstring, "Batched jobs".

    Raises:
        JobError: after every other job has finished and been cached, if a job raised.
    """
    folder = None if cache_dir is None else Path(cache_dir)
    keys = [cache_key(fn, c) for fn, c in jobs]
    paths = [None if folder is None else folder / f"{key}.npz" for key in keys]
    results: list[Any] = [None] * len(jobs)
    todo = []
    for i, path in enumerate(paths):
        hit, value = _cached(path)
        if hit:
            results[i] = value
        else:
            todo.append(i)
    stats = CacheStats() if stats is None else stats
    stats.count(hits=len(jobs) - len(todo))
    own_bar = not isinstance(progress_label, tqdm)
    if own_bar:
        bar = tqdm(total=0, desc=progress_label, disable=progress_label is None,
                   dynamic_ncols=True)
    else:
        bar = progress_label
    bar.total = (bar.total or 0) + len(jobs)
    bar.update(len(jobs) - len(todo))
    failure: JobError | None = None
    if todo:
        own = executor is None
        pool = default_executor(min(len(todo), os.cpu_count() or 1)) if own else executor
        owned: list[tuple[int, str]] = []  # in-flight registry entries this call created
        try:
            # a future's result: one job's value (position None) or a batch's list of values
            futures: dict[Future[Any], list[tuple[int, int | None]]] = {}
            mine: set[Future[Any]] = set()  # submitted by this call (it caches their results)
            local: dict[str, tuple[Future[Any], int | None]] = {}  # a job twice: run once
            groups: dict[tuple[str, str], list[int]] = {}  # batchable jobs by (function, key)
            again: list[int] = []  # a batchable job asked for twice in this call

            def place(i: int, held: tuple[Future[Any], int | None], new: bool) -> None:
                local[keys[i]] = held
                futures.setdefault(held[0], []).append((i, held[1]))
                if new:
                    mine.add(held[0])
                    if not own:
                        _IN_FLIGHT[(id(pool), keys[i])] = held
                        owned.append((id(pool), keys[i]))

            with _IN_FLIGHT_LOCK:
                for i in todo:
                    # a job already running for another caller on the same executor (another
                    # report section) is shared, not submitted twice
                    held = local.get(keys[i]) or \
                        (None if own else _IN_FLIGHT.get((id(pool), keys[i])))
                    fn, config = jobs[i]
                    batch = getattr(fn, "batch", None)
                    group = None if held is not None or batch is None or max_batch == 1 \
                        else batch[1](config)
                    if group is not None:
                        members = groups.setdefault((_function_name(fn), group), [])
                        seen = any(keys[j] == keys[i] for j in members)
                        (again if seen else members).append(i)
                    elif held is not None:
                        place(i, held, False)
                    else:
                        place(i, (pool.submit(_timed, fn, config), None), True)
                for members in groups.values():
                    size = max_batch or len(members)
                    batch_fn = jobs[members[0]][0].batch[0]  # type: ignore[attr-defined]
                    for start in range(0, len(members), size):
                        chunk = members[start:start + size]
                        future = pool.submit(_timed_batch, batch_fn, [jobs[i][1] for i in chunk])
                        for pos, i in enumerate(chunk):
                            place(i, (future, pos), True)
                for i in again:
                    place(i, local[keys[i]], False)
            for future in as_completed(futures):
                placed = futures[future]
                fn, config = jobs[placed[0][0]]
                try:
                    value, seconds, peak = future.result()
                except Exception as exc:  # reported once the other jobs have finished
                    failure = failure or JobError(f"{_function_name(fn)}({config}): {exc!r}")
                    bar.update(len(placed))
                    continue
                saved: set[str] = set()
                for i, pos in placed:
                    results[i] = value if pos is None else value[pos]
                    if future not in mine:  # computed by another caller, which caches it
                        stats.count(hits=1)
                    elif keys[i] in saved:  # the same job twice in this call
                        stats.count(hits=1)
                    else:
                        saved.add(keys[i])
                        if paths[i] is not None:
                            save_result(paths[i], results[i], jobs[i][1])
                        share = len({keys[j] for j, _ in placed})
                        stats.count(computed=_function_name(jobs[i][0]), seconds=seconds / share,
                                    peak_mb=peak)
                bar.update(len(placed))
        finally:
            with _IN_FLIGHT_LOCK:
                for entry in owned:
                    _IN_FLIGHT.pop(entry, None)
            if own:
                pool.shutdown(cancel_futures=True)
    if own_bar:
        bar.close()
    if failure is not None:
        raise failure
    return results
