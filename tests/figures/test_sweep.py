"""scurve sweep: grammar, one-line errors, the table against single predict/train runs,
resuming after SIGKILL, and the same table on a Dask LocalCluster."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from figures import sweep_cli
from figures.cli import main
from figures.sweep import SweepError, parse_grid, parse_seeds, sample_cell, sweep
from figures.sweeps import CacheStats

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "symmetric.py"
DIMS = {"n": 10, "r": 2, "k": 2}
GRID = ["init=0.03..0.3:3:log", "lr=0.05,0.1,0.2"]
STEPS = 150
ARGS = ["sweep", "--model", str(MODEL), "--dims", "n=10,r=2,k=2", "--grid", GRID[0],
        "--grid", GRID[1], "--seeds", "2", "--theory", "flow,discrete", "--train", "sgd",
        "--steps", str(STEPS)]


def _table(path: Path) -> list[dict[str, str]]:
    """results.csv without the machine-dependent ``seconds`` column."""
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


# ----------------------------------------------------------------------- grammar
def test_grid_grammar() -> None:
    assert parse_grid("lr=0.01,0.05").values == (0.01, 0.05)
    assert parse_grid("optimizer=sgd,adam").values == ("sgd", "adam")
    assert parse_grid("init=1e-3..1:4:log").values == pytest.approx((1e-3, 1e-2, 1e-1, 1.0))
    assert parse_grid("momentum=0..0.9:4").values == pytest.approx((0.0, 0.3, 0.6, 0.9))
    assert parse_grid("n=10..20:3").values == (10, 15, 20)
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("4,7") == [4, 7]


@pytest.mark.parametrize("text, words", [
    ("init=1..2:0", "empty range"),
    ("init=1..1:3", "empty range"),
    ("init=-1..1:3:log", "log range"),
    ("init=0..1:3:log", "log range"),
    ("lr=", "expected NAME"),
    ("n=1.5,2", "not an integer"),
])
def test_grid_grammar_errors(text: str, words: str) -> None:
    with pytest.raises(SweepError, match=words):
        parse_grid(text)


@pytest.mark.parametrize("extra, words", [
    (["--grid", "width=1,2"], "width: not a parameter of symmetric (valid: n, k, r, init"),
    (["--grid", "init=0..1:3:log"], "log range"),
    (["--grid", "init=1..2:0"], "empty range"),
    (["--grid", "lr=0.1,0.2", "--plot", "t_0.7", "--x", "lr", "--y", "lr"],
     "unknown measurement 't_0.7'"),
    (["--theory", "flw"], "unknown method 'flw'"),
    (["--batch", "0"], "--batch: must be >= 1, got 0"),
])
def test_cli_errors_are_one_line(extra: list[str], words: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--model", str(MODEL), "--dims", "n=10,r=2,k=2", "--lr", "0.1",
                 "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err, err


def test_unreachable_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep_cli, "SCHEDULER_TIMEOUT_S", 1)
    code = main([*ARGS, "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "tcp://127.0.0.1:9" in err and "1 s" in err


# ----------------------------------------------------------------------- the table
@pytest.mark.parametrize("argv, config", [
    (["--model", str(MODEL), "--dims", "n=10,r=2,k=2"],
     {"problem": "symmetric", "dims": DIMS, "model_file": str(MODEL), "sample": {}}),
    (["factorization", "--n", "12", "--rank", "2"],
     {"problem": "factorization", "dims": None, "sample": {"n": 12, "rank": 2, "scale": 1.0,
                                                           "weight_decay": 0.0}}),
    (["committee", "--n", "40", "--students", "3"],  # any registered family's sampler
     {"problem": "committee", "dims": None, "sample": {"n": 40, "students": 3}}),
])
def test_cell_samples_what_scurve_sample_samples(argv: list[str], config: dict,
                                                 tmp_path: Path) -> None:
    from dynamics.problems import load

    path = tmp_path / "spec.npz"
    assert main(["sample", *argv, "--init", "0.3", "--seed", "1", "-o", str(path)]) == 0
    expected = load(path)
    config["sample"].update(init=0.3)
    got = sample_cell({**config, "seed": 1})
    want, have = expected.arrays(), got.arrays()
    assert set(have) == set(want)
    for key in want:
        np.testing.assert_array_equal(have[key], want[key])


@pytest.mark.parametrize("grid", [
    pytest.param(GRID, marks=pytest.mark.slow),  # the 3 × 3 acceptance grid (~15-25 s)
    ["init=0.3", "lr=0.1,0.2"],  # the same check, fast
])
def test_table_equals_single_predict_and_train_runs(grid: list[str], tmp_path: Path) -> None:
    """A grid × 2 seeds of examples/symmetric.py, flow + discrete + SGD: every row's
    numbers are those of one predict / one train run of that cell (independent calls)."""
    from dynamics.integrate import predict
    from dynamics.methods import Discrete, Flow
    from dynamics.model import load_file
    from dynamics.problems import sample_model
    from validation.training import TrainConfig, train

    with ThreadPoolExecutor(1) as pool:
        rows = sweep("symmetric", grid, dims=DIMS, model_file=MODEL, seeds=2,
                     theories=("flow", "discrete"), train="sgd", steps=STEPS, executor=pool,
                     cache_dir=tmp_path / "cache")
    cells = len(parse_grid(grid[0]).values) * len(parse_grid(grid[1]).values)
    assert len(rows) == cells * 2 * 3
    model = load_file(MODEL)
    checked = 0
    for row in rows[::4] if cells > 2 else rows:  # 1/4 of the big grid's rows, all sources
        spec = sample_model(model, DIMS, init=row["init"], seed=row["seed"])
        t_max = 1.5 * row["lr"] * STEPS
        if row["source"] == "train":
            traj = train(spec, TrainConfig(optimizer="sgd", lr=row["lr"], steps=STEPS,
                                           dtype="float64", device="cpu",
                                           record="all")).trajectories[0]
        else:
            method = Flow() if row["source"] == "flow" else Discrete(row["lr"])
            traj = predict(spec, method, t_max=t_max)
        cross = traj.crossing_times((0.5, 0.1, 0.01))
        for f in (0.5, 0.1, 0.01):
            assert row[f"t_{f:g}"] == cross[f], (row, f)
        assert row["final_loss"] == float(traj.loss[-1])
        assert row["plateaus"] == len(traj.phases().plateaus)
        checked += 1
    assert checked >= min(len(rows), 13)
    # the relative error of a theory: |t_theory − t_train| / t_train of the same cell
    by_key = {(r["init"], r["lr"], r["seed"], r["source"]): r for r in rows}
    for (init, lr, seed, source), row in by_key.items():
        if source == "train":
            continue
        t_train = by_key[(init, lr, seed, "train")]["t_0.5"]
        if t_train is not None and row["t_0.5"] is not None:
            assert row["rel_err_0.5"] == pytest.approx(abs(row["t_0.5"] - t_train) / t_train,
                                                       rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batched_training_cells_equal_one_job_per_cell(dtype: str, tmp_path: Path) -> None:
    """Cells that differ only in init and seed train as one batch; the table is bit for bit
    the one of one job per cell (``batch=1``), every column but the seconds (on the CPU, in
    either training precision)."""
    from figures.sweep import batch_key, plan

    grid = ["init=0.03,0.3", "lr=0.1,0.2"]
    options = dict(dims=DIMS, model_file=MODEL, seeds=2, theories=("flow",), train="sgd",
                   steps=STEPS, dtype=dtype)
    keys = [batch_key(config) for _, config in plan("symmetric", grid, **options).jobs]
    assert len(set(keys)) == 2 and keys.count(keys[0]) == 4  # a batch per lr: 2 inits × 2 seeds
    tables = []
    for batch in (None, 1):
        with ThreadPoolExecutor(1) as pool:
            rows = sweep("symmetric", grid, executor=pool, cache_dir=tmp_path / str(batch),
                         batch=batch, **options)
        tables.append([{k: v for k, v in r.items() if k != "seconds"} for r in rows])
    assert len(tables[0]) == 16 and tables[0] == tables[1]
    assert all(r["t_0.5"] is not None for r in tables[0])  # every curve crossed: not vacuous


def test_cli_writes_table_heatmap_and_index(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["sweep", "--model", str(MODEL), "--dims", "n=10,r=2,k=2", "--grid", GRID[1],
                 "--grid", "init=0.1,0.3", "--theory", "flow", "--out", str(out),
                 "--plot", "t_0.5", "--x", "init", "--y", "lr", "--workers", "1"]) == 0
    rows = _table(out / "results.csv")  # theory only: no torch in the worker
    assert len(rows) == 6  # 3 × 2 cells, one source
    assert list(rows[0])[:4] == ["lr", "init", "seed", "source"]
    assert (out / "t_0.5_init_lr.png").stat().st_size > 1000
    assert "t_0.5_init_lr.png" in (out / "index.html").read_text()
    curves = np.load(out / "curves.npz")
    assert len(curves.files) == 2 * len(rows)


# ----------------------------------------------------------------------- kill, rerun
@pytest.mark.slow  # ~40 s on the shared machine: a subprocess, 18 + 18 cells
def test_sigkill_then_rerun_recomputes_only_missing_cells(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "figures.cli", *ARGS, "--workers", "1",
                             "--out", str(killed)], cwd=ROOT, env=env,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    cache = killed / "cache"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache.glob("*.npz"))) < 9:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(cache.glob("*.npz")))
    assert 9 <= done < 18, done  # killed halfway (18 cells × seeds)
    stats = CacheStats()
    with ThreadPoolExecutor(1) as pool:
        rows = sweep("symmetric", GRID, dims=DIMS, model_file=MODEL, seeds=2,
                     theories=("flow", "discrete"), train="sgd", steps=STEPS,
                     executor=pool, cache_dir=cache, stats=stats)
    assert stats.hits == done and stats.misses == 18 - done
    from figures.sweep import write_outputs

    write_outputs(rows, killed, ["init", "lr"])
    fresh = tmp_path / "fresh"
    assert main([*ARGS, "--workers", "1", "--out", str(fresh)]) == 0
    assert _table(killed / "results.csv") == _table(fresh / "results.csv")


@pytest.mark.slow
def test_local_cluster_gives_the_identical_table(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    local = tmp_path / "local"
    assert main([*ARGS, "--workers", "2", "--out", str(local)]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = tmp_path / "dask"
        assert main([*ARGS, "--scheduler", cluster.scheduler_address, "--out",
                     str(dask)]) == 0
    assert _table(local / "results.csv") == _table(dask / "results.csv")


def test_rerun_hits_the_cache_and_a_changed_model_file_invalidates(tmp_path: Path) -> None:
    model = tmp_path / "mine.py"
    model.write_text(MODEL.read_text())

    def run() -> CacheStats:
        stats = CacheStats()
        with ThreadPoolExecutor(1) as pool:
            sweep("symmetric", ["init=0.3"], dims=DIMS, model_file=model, seeds=1,
                  theories=("flow",), executor=pool, cache_dir=tmp_path / "cache",
                  stats=stats)
        return stats

    assert (run().misses, run().hits) == (1, 1)
    model.write_text(MODEL.read_text() + "\n# edited\n")
    assert run().misses == 1


def test_readme_command_parses() -> None:
    """The README's "Map your model" command is valid sweep grammar (it is not run here:
    its output, the committed heatmap, was made by running it)."""
    import re
    import shlex

    from figures.cli import build_parser

    section = (ROOT / "README.md").read_text().split("## Map your model", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[:2] == ["scurve", "sweep"]
    args = build_parser().parse_args(argv[1:])
    assert [parse_grid(g).name for g in args.grid] == ["init", "lr"]
    assert (ROOT / "docs" / "sweep" / "symmetric_rel_err_0.5.png").is_file()


# ------------------------------------------------------------ run-option axes
def test_run_option_axes_grammar() -> None:
    assert parse_grid("betas=0.9/0.999,0.5/0.99").values == ("0.9/0.999", "0.5/0.99")
    assert parse_grid("beta2=0.9,0.999").values == (0.9, 0.999)
    assert parse_grid("schedule=step:step_size=10,gamma=0.5|linear:start_factor=0.5,"
                      "total_iters=20").values == ("step:step_size=10,gamma=0.5",
                                                   "linear:start_factor=0.5,total_iters=20")
    assert parse_grid("objective=mean,power(q=1)").values == ("mean", "power(q=1)")
    for bad, words in (("betas=0.9", "B1/B2"), ("beta1=1.5", r"\[0, 1\)"),
                       ("objective=median", "unknown group objective"),
                       ("schedule=step:gamma=x", "schedule")):
        with pytest.raises(SweepError, match=words):
            parse_grid(bad)


def test_objective_axis_on_a_model_without_groups_is_refused() -> None:
    with pytest.raises(SweepError, match="has no groups"):
        sweep("factorization", ["objective=mean,power(q=1)"], defaults={"n": 4, "lr": 0.1},
              theories=("flow",))


def test_betas_schedule_and_objective_axes_equal_single_runs(tmp_path: Path) -> None:
    """Each new axis reaches the run: the rows equal one predict / train with that setting."""
    from dynamics.integrate import predict
    from dynamics.methods import Adam, Discrete, Flow
    from dynamics.problems import Factorization, sample_model
    from dynamics.schedules import schedule_from_text
    from validation.training import TrainConfig, train

    with ThreadPoolExecutor(1) as pool:
        rows = sweep("factorization", ["betas=0.9/0.999,0.5/0.9"], seeds=1, theories=("adam",),
                     train="adam", steps=60, defaults={"n": 6, "rank": 1, "init": 0.1,
                                                       "lr": 0.02},
                     executor=pool, cache_dir=tmp_path / "c1")
        sched = ["schedule=step:step_size=20,gamma=0.5|linear:start_factor=0.5,total_iters=30"]
        rows2 = sweep("factorization", sched, seeds=1, theories=("discrete",), train="sgd",
                      steps=60, defaults={"n": 6, "rank": 1, "init": 0.1, "lr": 0.2},
                      executor=pool, cache_dir=tmp_path / "c2")
    spec = Factorization.sample(6, 1, init=0.1, seed=0)
    for row in rows:
        betas = tuple(float(b) for b in row["betas"].split("/"))
        if row["source"] == "train":
            traj = train(spec, TrainConfig(optimizer="adam", lr=0.02, steps=60, betas=betas,
                                           dtype="float64", device="cpu",
                                           record="all")).trajectories[0]
        else:
            traj = predict(spec, Adam(0.02, betas=betas), t_max=1.5 * 0.02 * 60)
        assert row["final_loss"] == float(traj.loss[-1]), row
    # the axis changed the run (not final_loss: an ODE stopped at 1e-4·L_ref ends on that level)
    assert rows[0]["t_0.5"] != rows[2]["t_0.5"]
    for row in rows2:
        schedule = schedule_from_text(row["schedule"])
        if row["source"] == "train":
            traj = train(spec, TrainConfig(optimizer="sgd", lr=0.2, steps=60, schedule=schedule,
                                           dtype="float64", device="cpu",
                                           record="all")).trajectories[0]
        else:
            traj = predict(spec, Discrete(0.2, schedule=schedule), t_max=1.5 * 0.2 * 60)
        assert row["final_loss"] == float(traj.loss[-1]), row
    assert rows2[0]["final_loss"] != rows2[2]["final_loss"]
    # a grouped model: the objective axis trains that objective
    with ThreadPoolExecutor(1) as pool:
        rows3 = sweep("modes", ["objective=mean,power(q=1)"], dims={"n": 6, "k": 4, "G": 2},
                      seeds=1, theories=("flow",), defaults={"init": 0.01},
                      executor=pool, cache_dir=tmp_path / "c3")
    assert [r["objective"] for r in rows3] == ["mean", "power(q=1)"]
    for row in rows3:
        s = sample_model("modes", {"n": 6, "k": 4, "G": 2}, init=0.01, seed=0)
        traj = predict(s.with_objective(row["objective"]), Flow())
        assert row["t_0.5"] == traj.crossing_times((0.5,))[0.5]
    assert rows3[0]["t_0.5"] != rows3[1]["t_0.5"]


def test_any_registered_sampler_option_is_an_axis_and_set_fixes_one(tmp_path: Path) -> None:
    """Axis names and types come from the model's registered sampler (dynamics.registry):
    icl's ``heads`` and ``separate`` are axes; ``--set`` fixes an option in every cell."""
    from figures.sweep import axis_types

    types = axis_types("icl", None)
    assert types["heads"] == "int" and types["separate"] == "bool" and types["init"] == "float"
    assert "rank" not in axis_types("vector", None)
    assert parse_grid("separate=true,false", types).values == (True, False)
    with pytest.raises(SweepError, match="not a parameter of vector"):
        sweep("vector", ["rank=1,2"], defaults={"n": 3})
    # committee specs sweep through their own cells: tests/figures/test_sweep_committee.py
    code = main(["sweep", "vector", "--set", "n=3", "--set", "scale=2", "--grid",
                 "init=0.1,0.2", "--out", str(tmp_path)])
    assert code == 0
    rows = _table(tmp_path / "results.csv")
    assert [r["init"] for r in rows] == ["0.1", "0.2"]
    # L_ref = ½‖a‖² with ‖a‖ ≈ scale: the --set value reached the sampler
    from dynamics.problems import Vector

    assert float(rows[0]["l_ref"]) == Vector.sample(3, init=0.1, scale=2.0, seed=0).l_ref
