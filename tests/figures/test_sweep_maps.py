"""The report's claim maps are sweeps: a section's map and ``scurve sweep`` over the same grid
give the same table (the same numbers), and the claims judge the sweep's rows."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tqdm import tqdm

from dynamics.errors import UsageError
from figures.claims import grid_runs
from figures.cli import main
from figures.reporting.blocks import Context
from figures.reporting.sections import scalar_vector, weight_decay
from figures.sweeps import CacheStats

MACHINE = ("seconds",)  # the one column that depends on the machine (figures/sweep.py)


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in MACHINE} for row in csv.DictReader(fh)]


def _context(out: Path, section: object, settings: object, pool: ThreadPoolExecutor) -> Context:
    return Context(out, True, pool, out / "cache", CacheStats(), section,  # type: ignore[arg-type]
                   tqdm(total=0, disable=True), settings)


def test_section_map_equals_the_cli_sweep_of_its_grid(tmp_path: Path) -> None:
    """Section 1's claim map (vector, n × σ, flow to t = 10) and the command a user types for
    the same grid: the same rows, every measurement equal to the digit (separate caches, so
    each side computes its own cells)."""
    settings = scalar_vector.Settings(5, (0.01, 1.0), (1, 10))
    with ThreadPoolExecutor(1) as pool:
        ctx = _context(tmp_path / "report", scalar_vector.SECTION, settings, pool)
        rows = ctx.sweep("map-claim1-sweep", "vector", scalar_vector.map_grid(settings),
                         seeds=[0], theories=["flow"], defaults={"t_max": scalar_vector.T_MAX})
    out = tmp_path / "cli"
    assert main(["sweep", "vector", "--grid", "n=1,10", "--grid", "init=0.01,1", "--set",
                 "t_max=10", "--theory", "flow", "--seeds", "1", "--workers", "1",
                 "--out", str(out)]) == 0
    section_table = _table(tmp_path / "report" / "data" / "01-scalar-vector-map-claim1-sweep.csv")
    cli_table = _table(out / "results.csv")
    assert len(section_table) == len(rows) == 4
    assert section_table == cli_table
    # the numbers the claim judges are the rows' own: the run summary's t_0.5 is the column's
    runs = grid_runs(rows, ("n", "init"))
    for row in cli_table:
        run = runs[(int(row["n"]), float(row["init"]))]
        assert float(row["t_0.5"]) == pytest.approx(run["crossings"]["0.5"], rel=1e-9)


def test_weight_decay_map_sweeps_a_list_option_and_lambda_zero(tmp_path: Path) -> None:
    """Section 9's grid: λ = 0 beside every λ of the map, s = 1 through ``singular_values`` (a
    sampler option that is no axis); the rows' solution size at λ < s is s − λ (the closed
    form ‖XYᵀ‖ = max(s − λ, 0), to the flow's settling tolerance)."""
    settings = weight_decay.Settings(4, (0.0,), (0.3,), (0.1,))
    with ThreadPoolExecutor(1) as pool:
        ctx = _context(tmp_path, weight_decay.SECTION, settings, pool)
        rows = ctx.sweep("map", "factorization", weight_decay.map_grid(settings), seeds=[0],
                         theories=["flow"], defaults=weight_decay.MAP_DEFAULTS | {"n": 4})
    runs = grid_runs(rows, ("init", "weight_decay"))
    assert sorted(runs) == [(0.1, 0.0), (0.1, 0.3)]
    from figures.claims import solution_size

    assert solution_size(runs[(0.1, 0.3)]) == pytest.approx(0.7, rel=1e-3)
    assert solution_size(runs[(0.1, 0.0)]) == pytest.approx(1.0, rel=1e-3)


def test_grid_runs_refuses_rows_it_cannot_key_apart() -> None:
    rows = [{"n": 1, "seed": s, "source": "flow", "run": {}} for s in (0, 1)]
    assert len(grid_runs(rows, ("n", "seed"))) == 2
    with pytest.raises(UsageError, match="two flow rows"):
        grid_runs(rows, ("n",))


def test_where_runs_only_the_chosen_cells_with_the_numbers_of_the_full_grid() -> None:
    """``where`` (a map's extra seeds beside its boundary): only the chosen cells × seeds run,
    and each row equals the same cell's row of the whole grid."""
    from figures.sweep import Axis, sweep

    grid = [Axis("n", (1, 3)), Axis("init", (0.01, 0.1))]
    options = {"theories": ["flow"], "defaults": {"t_max": 5.0}}
    with ThreadPoolExecutor(1) as pool:
        full = sweep("vector", grid, seeds=[0, 1], executor=pool, **options)
        some = sweep("vector", grid, seeds=[0, 1], executor=pool,
                     where=lambda v, seed: v["n"] == 3 and seed == 1, **options)
    assert [(r["n"], r["init"], r["seed"]) for r in some] == [(3, 0.01, 1), (3, 0.1, 1)]
    drop = ("seconds",)
    for row in some:
        (same,) = [r for r in full if (r["n"], r["init"], r["seed"])
                   == (row["n"], row["init"], row["seed"])]
        assert {k: v for k, v in row.items() if k not in drop} == \
            {k: v for k, v in same.items() if k not in drop}


def test_report_specs_are_drawn_by_the_command_lines_sampler() -> None:
    """make_spec draws through dynamics.registry.sample (what ``scurve sample`` and a sweep cell
    draw); an attention config in its builder's own argument ``d`` gives the same arrays as
    the command line's ``n``."""
    import numpy as np

    from dynamics import registry
    from figures.reporting.jobs import make_spec

    base = {"rank": 2, "init": 0.1, "seed": 3}
    by_d = make_spec({"kind": "attention", "d": 6, **base}).data
    by_n = make_spec({"kind": "attention", "n": 6, **base}).data
    cli = registry.sample("attention", {"n": 6, "rank": 2, "init": 0.1}, seed=3).data
    assert by_d.keys() == by_n.keys() == cli.keys()
    assert all(np.array_equal(by_d[k], by_n[k]) and np.array_equal(by_n[k], cli[k])
               for k in by_d)


def _same(a: object, b: object) -> bool:
    """Equal to the bit: dicts, lists, numbers, None, arrays and trajectories."""
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    return a == b or (a != a and b != b)  # NaN == NaN


@pytest.mark.filterwarnings("ignore:seed .* diverged:RuntimeWarning")
@pytest.mark.parametrize(("optimizer", "lr", "t_max", "options"), [
    ("sgd", 0.05, 3.0, {}),
    ("sgd", 0.9, 3.0, {}),  # diverges at σ = 1: the flag is the trainer's
    ("adamw", 0.01, 0.5, {"weight_decay": 0.1}),
])
def test_optimizer_runs_are_the_batched_trainers_runs(optimizer: str, lr: float, t_max: float,
                                                      options: dict, tmp_path: Path) -> None:
    """The report's training grid (``_maps.optimizer_runs``, now sweep cells, a batch per rank)
    holds, per rank × σ × seed, exactly the summary of the runs of ONE call of the trainer on
    the rank's σ × seed specs (:func:`validation.training.train`, float64, CPU; the summary of
    the every-step loss), and the trainer's divergence flags."""
    import math

    from dynamics import registry
    from figures.reporting.jobs import summarize
    from figures.reporting.sections import _maps, optimizers
    from validation.training import TrainConfig, train

    grid = _maps.MapGrid((0.01, 1.0), (1, 4), (0, 1))
    with ThreadPoolExecutor(1) as pool:
        ctx = _context(tmp_path, optimizers.SECTION, None, pool)
        runs = _maps.optimizer_runs(ctx, grid, optimizer, lr, t_max, **options)
    assert sorted(runs) == sorted((r, s, k) for r in grid.ranks for s in grid.sigmas
                                  for k in grid.seeds)
    diverged = 0
    for rank in grid.ranks:
        keys = [(rank, s, k) for s in grid.sigmas for k in grid.seeds]
        specs = [registry.sample("factorization", {"n": grid.n, "rank": r, "init": s}, seed=k)
                 for r, s, k in keys]
        result = train(specs, TrainConfig(optimizer=optimizer, lr=lr,
                                          steps=math.ceil(t_max / lr), dtype="float64",
                                          device="cpu", **options))
        flags = {int(d[0]) for d in result.diverged}
        diverged += len(flags)
        for i, key in enumerate(keys):
            expected = summarize(result.trajectories[i], result.t[i], result.loss[i])
            got = dict(runs[key])
            assert got.pop("diverged") == (i in flags), key
            assert _same(got, expected), key
    assert (diverged > 0) == (lr > 0.5)  # the divergent case diverges, the others do not
