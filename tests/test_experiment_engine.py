"""The experiment engine: the one run folder, the one trainer, declared experiments, reports, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyodejl as pj
from pyodejl.experiments.folder import ConfigMismatchError, RunFolder, RunFolderError
from pyodejl.experiments.trainer import Measurement, Plateau, Problem, Training, _Clock, train

sys.path.insert(0, str(Path(__file__).parent))
import engine_toy  # noqa: E402

from pyodejl.experiments.engine import run_experiment  # noqa: E402
from pyodejl.experiments.report import build_report, render_markdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------
# the run folder
# --------------------------------------------------------------------------------------


def test_folder_keeps_its_configuration(tmp_path):
    f = RunFolder(tmp_path / "r", {"a": 1, "b": [1.5, "x"]})
    f.append({"step": 0, "loss": 1.0})
    again = RunFolder(tmp_path / "r", {"a": 1, "b": [1.5, "x"]})
    assert again.records() == [{"step": 0, "loss": 1.0}]
    assert again.versions["pyodejl"] == pj.__version__
    with pytest.raises(ConfigMismatchError, match=r"different configuration \(a: saved 1, now 2\)"):
        RunFolder(tmp_path / "r", {"a": 2, "b": [1.5, "x"]})
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        RunFolder(tmp_path / "missing")


def test_folder_drops_a_record_line_cut_by_a_kill(tmp_path):
    f = RunFolder(tmp_path, {})
    f.append({"step": 0, "v": 1})
    with open(tmp_path / "records.jsonl", "a") as fh:
        fh.write('{"step": 1, "v"')  # a kill in the middle of a write
    assert f.records() == [{"step": 0, "v": 1}]
    f.append({"step": 1, "v": 2})  # not glued onto the cut line
    assert f.records() == [{"step": 0, "v": 1}, {"step": 1, "v": 2}]
    assert (tmp_path / "records.jsonl").read_text().count("\n") == 2


def test_folder_refuses_a_corrupt_record_inside_the_file(tmp_path):
    f = RunFolder(tmp_path, {})
    f.append({"step": 0})
    with open(tmp_path / "records.jsonl", "a") as fh:
        fh.write("garbage\n")
    f2 = RunFolder(tmp_path, {})
    with pytest.raises(RunFolderError, match=r"records.jsonl.*line 2"):
        f2.records()


def test_resume_drops_records_after_the_checkpoint(tmp_path):
    f = RunFolder(tmp_path, {})
    f.append({"step": 0})
    f.save_checkpoint(1, {"theta": np.arange(3.0)})
    f.append({"step": 1})  # written after the checkpoint: recomputed on resume
    step, arrays = f.resume({"theta": np.zeros(3)})
    assert step == 1 and np.array_equal(arrays["theta"], np.arange(3.0))
    assert f.records() == [{"step": 0}]
    with pytest.raises(RunFolderError, match=r"checkpoint.npz.*'theta' is float64\[3\], expected float64\[4\]"):
        f.resume({"theta": np.zeros(4)})
    (tmp_path / "checkpoint.npz").write_bytes(b"not an archive")
    with pytest.raises(RunFolderError, match="checkpoint.npz is unreadable"):
        f.resume({"theta": np.zeros(3)})


def test_folder_refuses_corrupt_configuration_and_result(tmp_path):
    f = RunFolder(tmp_path, {"x": 1})
    f.finish({"final": {"a": 1.0}})
    assert RunFolder(tmp_path, {"x": 1}).result() == {"final": {"a": 1.0}}
    (tmp_path / "result.json").write_text("[1, 2")
    with pytest.raises(RunFolderError, match="result.json is unreadable: invalid JSON"):
        RunFolder(tmp_path, {"x": 1}).result()
    (tmp_path / "config.json").write_bytes(b"\xff\xfe")
    with pytest.raises(RunFolderError, match="config.json is unreadable"):
        RunFolder(tmp_path, {"x": 1})


# --------------------------------------------------------------------------------------
# the trainer, against independent loops
# --------------------------------------------------------------------------------------


def _adam_reference(theta, grad_of, steps, lr):
    """Adam (Kingma & Ba 2015) with optax's defaults, written out by hand."""
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for k in range(steps):
        g = grad_of(k, theta)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mhat, vhat = m / (1 - 0.9 ** (k + 1)), v / (1 - 0.999 ** (k + 1))
        theta = theta - lr * mhat / (np.sqrt(vhat) + 1e-8)
    return theta


@pytest.mark.parametrize("batch", [None, 8])
def test_trainer_equals_a_hand_written_adam_loop(tmp_path, batch):
    X, y = engine_toy.data()
    n = len(y)

    def grad_of(k, theta):
        if batch is None:
            idx = np.arange(n)
        else:  # the documented sampler: epoch e is default_rng([seed, 2, e]).permutation(n)
            epoch, j = divmod(k, n // batch)
            idx = np.sort(np.random.default_rng([3, 2, epoch]).permutation(n)[j * batch:(j + 1) * batch])
        Xb, yb = X[idx], y[idx]
        return Xb.T @ (Xb @ theta - yb) / len(idx)

    theta0 = np.array([0.3, -0.1, 0.7])

    def objective(step, indices):
        idx = slice(None) if indices is None else indices
        return pj.FunctionObjective(engine_toy.squared_error, 3, (X[idx], y[idx]))

    out = train(Problem(theta0, objective, num_samples=n), Training(steps=23, lr=0.05, batch_size=batch),
                RunFolder(tmp_path, {}), seed=3)
    expected = _adam_reference(theta0, grad_of, 23, 0.05)
    np.testing.assert_allclose(out["theta"], expected, rtol=1e-12, atol=1e-14)


def test_trainer_steps_never_copy_theta_to_the_host(monkeypatch):
    """Between records, checkpoints and measurements a step of a traced objective reads nothing back
    from the device: the trainer's NumPy conversions of JAX arrays are counted from the end of step 1
    to the end of step 8 of 10 (none allowed), its objective is handed the device θ, and training still
    finishes with the hand-written Adam's θ."""
    import jax

    from pyodejl.experiments import trainer

    X, y = engine_toy.data()
    theta0 = np.array([0.3, -0.1, 0.7])
    seen, copies, window = [], [], [False]

    class Spy(pj.FunctionObjective):
        def direct_function(self, theta):
            seen.append(type(theta))
            return super().direct_function(theta)

    class CountingNumpy:
        def __getattr__(self, name):
            return getattr(np, name)

        def asarray(self, x, *args, **kwargs):
            if window[0] and isinstance(x, jax.Array):
                copies.append(x.shape)
            return np.asarray(x, *args, **kwargs)

    monkeypatch.setattr(trainer, "np", CountingNumpy())
    obj = Spy(engine_toy.squared_error, 3, (X, y))
    out = train(Problem(theta0, lambda k, i: obj), Training(steps=10, lr=0.05, record_every=100,
                                                            checkpoint_every=100), seed=0,
                progress=lambda done: window.__setitem__(0, 1 <= done < 9))
    assert copies == [] and seen and all(issubclass(t, jax.Array) for t in seen)
    expected = _adam_reference(theta0, lambda k, th: X.T @ (X @ th - y) / len(y), 10, 0.05)
    np.testing.assert_allclose(out["theta"], expected, rtol=1e-12, atol=1e-14)


def test_trainer_with_a_continuous_adjoint_and_scheduled_weights(tmp_path):
    """The non-fused path (gradient from the objective) with a weight schedule, against a loop
    that sets the weights and takes the same objective's gradient by hand."""
    from pyodejl import regularizers as R

    vf = pj.MLP([2, 4, 2], activation="tanh")
    model = pj.NeuralODE(vf, solver="dopri5", rtol=1e-8, atol=1e-10)
    ts = np.linspace(0, 1, 5)
    targets = np.stack([np.cos(ts), -np.sin(ts)], 1)
    obj = pj.TrajectoryLoss(model, ts, [1.0, 0.0], targets, regularizers=[R.WeightDecay(1.0)])
    sched = {"weight_decay": R.ExponentialDecay(1.0, 0.01, 6)}
    theta0 = vf.init(0)

    def grad_of(k, theta):
        obj.set_weights({"weight_decay": 0.01 ** (k / 6)})  # λ₀ exp(−c k), c = log(λ₀/λ₁)/K
        return obj.grad(theta, method="backsolve")

    expected = _adam_reference(theta0, grad_of, 6, 0.02)
    out = train(Problem(theta0, lambda k, i: obj), Training(steps=6, lr=0.02, gradient="backsolve", schedules=sched),
                RunFolder(tmp_path / "a", {}), seed=0)
    np.testing.assert_allclose(out["theta"], expected, rtol=1e-12, atol=1e-14)
    unscheduled = train(Problem(theta0, lambda k, i: obj), Training(steps=6, lr=0.02, gradient="backsolve"),
                        RunFolder(tmp_path / "b", {}), seed=0)
    assert np.abs(unscheduled["theta"] - expected).max() > 1e-6  # the schedule matters here


def test_plateau_cuts_the_learning_rate(tmp_path):
    """SGD with lr 2 on θ²/2 flips θ → −θ forever (the loss never improves); after
    ``patience`` steps the plateau rule cuts lr to 0.2 and θ then contracts by 0.8 a step."""
    quad = lambda theta: 0.5 * (theta**2).sum()  # noqa: E731
    obj = pj.FunctionObjective(quad, 1)
    run = lambda plateau, name: train(Problem(np.array([1.0]), lambda k, i: obj),  # noqa: E731
                                      Training(steps=40, lr=2.0, optimizer="sgd", plateau=plateau),
                                      RunFolder(tmp_path / name, {}), seed=0)
    assert abs(run(None, "off")["theta"][0]) == 1.0
    cut = run(Plateau(factor=0.1, patience=3), "on")["theta"][0]
    assert abs(cut) < 0.8**20


def test_clock_keeps_compilation_out():
    import jax

    clock = _Clock()
    f = jax.jit(lambda x: x * 2.0 + 1.0)
    with clock:
        f(np.ones(3)).block_until_ready()  # compiles
    with clock:
        f(np.ones(3)).block_until_ready()  # cached
    assert (clock.skipped, clock.timed) == (1, 1)
    assert clock.compile > 0
    wall, _ = clock.totals()
    assert wall == pytest.approx(2 * clock.wall)


def test_training_settings_are_checked():
    with pytest.raises(ValueError, match="lr must be positive"):
        Training(steps=3, lr=-1.0)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        Training(steps=3, lr=0.1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        Training(steps=-1, lr=0.1)


def test_zero_steps_measures_the_initial_parameters():
    obj = pj.FunctionObjective(lambda th: (th**2).sum(), 2)
    theta0 = np.array([1.0, -2.0])
    out = train(Problem(theta0, lambda k, i: obj), Training(steps=0, lr=0.1),
                measurements=(Measurement("value", lambda o, th: {"value": float(o.value(th))}),), seed=0)
    np.testing.assert_array_equal(out["theta"], theta0)
    assert out["final"]["value"] == 5.0


def test_divergence_is_an_error_not_a_nan(tmp_path):
    obj = pj.FunctionObjective(lambda th: (th**4).sum(), 1)
    with pytest.raises(pj.SolveError, match="diverged at step"):
        train(Problem(np.array([10.0]), lambda k, i: obj), Training(steps=20, lr=1.0, optimizer="sgd",
                                                                    record_every=1), RunFolder(tmp_path, {}), seed=0)


# --------------------------------------------------------------------------------------
# kill, resume, corruption
# --------------------------------------------------------------------------------------


def _numbers(out):
    """Everything of an experiment folder but timings and provenance."""
    rep = build_report(out, engine_toy.EXPERIMENT)
    runs = {}
    for d in sorted(Path(out).glob("*/seed_*")):
        f = RunFolder(d)
        runs[str(d.relative_to(out))] = (f.records(), f.result()["final"])
    return rep["rows"], rep["targets"], runs


@pytest.fixture(scope="module")
def toy_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "ref"
    run_experiment(engine_toy.EXPERIMENT, out, progress=False, log=lambda m: None)
    return out


def _lines(out):
    return sum(p.read_bytes().count(b"\n") for p in Path(out).rglob("records.jsonl"))


def test_sigkill_at_any_moment_then_resume_gives_the_same_numbers(tmp_path, toy_reference):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, str(Path(__file__).parent / "engine_toy.py"), str(out)]
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(5):
        before = _lines(out)
        proc = subprocess.Popen(cmd, env=env)
        deadline = time.time() + 120
        # kill once training has visibly progressed, then a random moment later (mid-step,
        # mid-checkpoint or mid-record)
        while proc.poll() is None and _lines(out) < before + 3 and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    subprocess.run(cmd, env=env, check=True, timeout=120)
    assert kills >= 3
    assert _numbers(out) == _numbers(toy_reference)
    # every record exactly once
    for d in Path(out).glob("*/seed_*"):
        steps = [(r["step"], r["kind"]) for r in RunFolder(d).records()]
        assert len(steps) == len(set(steps))


def _digest(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_corrupting_any_file_gives_the_same_report_or_names_the_file(tmp_path, toy_reference):
    expected = _numbers(toy_reference)
    files = [p.relative_to(toy_reference) for p in sorted(toy_reference.rglob("*")) if p.is_file()]
    assert len(files) >= 9
    for rel in files:
        copy = tmp_path / str(rel).replace("/", "_")
        shutil.copytree(toy_reference, copy)
        (copy / rel).write_bytes(b"\x00garbage{" + bytes(range(256)))
        before = {k: v for k, v in _digest(copy).items() if k != copy / rel}
        outcomes = []
        rerun = lambda: run_experiment(engine_toy.EXPERIMENT, copy, progress=False, log=lambda m: None)  # noqa: E731
        for action in (lambda: _numbers(copy), lambda: rerun() and _numbers(copy)):
            try:
                outcomes.append("same" if action() == expected else "different")
            except (RunFolderError, ConfigMismatchError) as exc:
                assert str(copy / rel) in str(exc), (rel, exc)
                assert "\n" not in str(exc)
                outcomes.append("named")
        assert "different" not in outcomes, rel
        after = {k: v for k, v in _digest(copy).items() if k != copy / rel}
        if outcomes[-1] == "named":
            assert after == before, f"{rel}: other files were touched"
        if "named" not in outcomes:
            assert _numbers(copy) == expected


# --------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------


def test_report_statistics_and_verdicts(toy_reference):
    rep = build_report(toy_reference, engine_toy.EXPERIMENT)
    losses = {v: [RunFolder(toy_reference / v / f"seed_{s}").result()["final"]["loss"] for s in (0, 1)]
              for v in ("full", "minibatch")}
    row = rep["rows"]["full"]["loss"]
    assert row["mean"] == pytest.approx(np.mean(losses["full"]), rel=1e-15)
    assert row["std"] == pytest.approx(np.std(losses["full"], ddof=1), rel=1e-12)
    (t,) = rep["targets"]
    assert t["value"] == pytest.approx(np.mean(losses["minibatch"]) / np.mean(losses["full"]), rel=1e-14)
    assert t["met"] == (t["value"] <= 10.0)
    md = render_markdown(rep)
    assert f"| full | {row['mean']:#.4g} ± {row['std']:#.2g} |" in md  # significant digits kept: 1.000, not 1
    assert "minibatches within 10× of full batch" in md
    assert rep["provenance"]["cores"] == [os.cpu_count()]


def test_a_benchmark_measurement_renders_as_a_report():
    from pyodejl.experiments import Column
    from pyodejl.experiments.report import measurement_report

    cols = [Column("ours", "ours", digits=3), Column("peer", "peer", digits=3)]
    rep = measurement_report(name="bench", title="A benchmark", source="here", columns=cols,
                             rows={"gradient (s)": {"ours": 0.8612, "peer": 2.264}, "HVPs": {"ours": 158},
                                   "broken": {"ours": float("nan"), "peer": None}},
                             command="python bench.py", loads=(0.4, 1.2), row_heading="measurement")
    md = render_markdown(json.loads(json.dumps(rep)))
    assert "| measurement | ours | peer |" in md
    assert "| gradient (s) | 0.861 | 2.26 |" in md and "| HVPs | 158 | – |" in md
    assert "| broken | – | – |" in md
    assert "One measurement per cell." in md and "Seeds" not in md
    assert "`python bench.py`" in md and "1-min load 0.4–1.2" in md
    with pytest.raises(ValueError, match="no column has"):
        measurement_report(name="b", title="t", source="s", columns=cols, rows={"r": {"other": 1.0}}, command="c")


def test_rank_agreement_is_spearmans_correlation_of_the_row_means():
    from scipy.stats import spearmanr

    from pyodejl.experiments.declaration import RankAgreement
    from pyodejl.experiments.report import _judge

    evidence = [3.0, 1.0, 2.0, 2.0, 5.0]
    nll = [0.1, 0.4, 0.2, 0.3, 0.25]
    rows = {f"r{i}": {"e": {"mean": e}, "nll": {"mean": n}} for i, (e, n) in enumerate(zip(evidence, nll))}
    names = tuple(rows)
    out = _judge(RankAgreement("e", "nll", names, ">=", 0.5, "agree", sign=-1.0), rows)
    expected = spearmanr(evidence, -np.array(nll)).statistic  # a tie in the evidence: mean ranks
    assert out["value"] == pytest.approx(expected, abs=1e-15) and out["met"] == (expected >= 0.5)
    flipped = _judge(RankAgreement("e", "nll", names, ">=", 0.5, "agree", sign=1.0), rows)
    assert flipped["value"] == pytest.approx(-expected, abs=1e-15)
    missing = _judge(RankAgreement("e", "nll", (*names[:2], "absent"), ">=", 0.5, "agree"), rows)
    assert missing["verdict"] == "not run"
    with pytest.raises(ValueError, match="at least 3 rows"):
        RankAgreement("e", "nll", names[:2], ">=", 0.5, "agree")
    with pytest.raises(ValueError, match="sign"):
        RankAgreement("e", "nll", names, ">=", 0.5, "agree", sign=2.0)


def test_report_names_the_commits_of_its_runs_not_of_deleted_ones(toy_reference, tmp_path):
    import shutil

    from pyodejl.experiments.folder import git_commit

    out = tmp_path / "copy"
    shutil.copytree(toy_reference, out)
    assert build_report(out, engine_toy.EXPERIMENT)["provenance"]["commits"] == [git_commit()]
    # an invocation whose runs were deleted and rerun leaves its command, not its commit
    RunFolder(out).append({"step": 99, "command": "pyodejl run toy", "commit": "0000000000-dirty", "date": "x"})
    rep = build_report(out, engine_toy.EXPERIMENT)
    assert rep["provenance"]["commits"] == [git_commit()] and "pyodejl run toy" in rep["provenance"]["commands"]


# --------------------------------------------------------------------------------------
# command line, and every registered experiment's quick run
# --------------------------------------------------------------------------------------


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pyodejl", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "MPLBACKEND": "Agg"}, timeout=600)


def test_cli_lists_experiments_and_errors_in_one_line(tmp_path):
    from pyodejl.experiments.catalogue import experiment_names

    listed = _cli("run", "--list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == experiment_names()
    bad = _cli("run", "no-such-experiment", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown experiment" in bad.stderr
    assert not (tmp_path / "x").exists()
    missing = _cli("report", str(tmp_path / "nothing"))
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


def _experiments():
    from pyodejl.experiments.catalogue import experiment_names

    return experiment_names()


@pytest.mark.parametrize("name", _experiments())
def test_every_experiment_quick_run_and_report(tmp_path, name):
    from pyodejl.experiments.report import build_report, render_markdown

    out = tmp_path / name
    done = _cli("run", name, "--quick", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    # in this process: `pyodejl report` is these two calls (its command line is tested on the first name)
    report = json.loads(json.dumps(build_report(out)))
    assert report["experiment"] == name and report["quick"] and not report["unfinished"]
    assert report["rows"] and all(r for r in report["rows"].values())
    assert "**Quick smoke run, not a result.**" in render_markdown(report)
    if name == _experiments()[0]:
        rep = _cli("report", str(out), "--json")
        assert rep.returncode == 0 and json.loads(rep.stdout)["rows"] == report["rows"], rep.stderr
        again = _cli("run", name, "--quick", "--out", str(out), "--no-progress")  # finished: skipped
        assert again.returncode == 0 and "skipped" in again.stdout
    if name in FIGURES:  # the experiment's own figures, drawn from the quick run's folder
        import matplotlib

        matplotlib.use("Agg")
        from pyodejl.plotting.report import plot_experiment

        written = {p.name for p in plot_experiment(out, tmp_path / "figures")}
        assert {f"{name}_training.png", FIGURES[name]} <= written
        assert all((tmp_path / "figures" / f).stat().st_size > 0 for f in written)


#: One figure each experiment with a figure hook must draw from its quick run.
FIGURES = {"hessian-tracking": "hessian-tracking_fig7-node_lr0.05.png", "fd-step": "fd-step_error.png",
           "hessian-scaling": "hessian-scaling_time.png", "laplace-lv": "laplace-lv_bands.png",
           "ggn-vs-hessian": "ggn-vs-hessian_spectra.png"}


def test_reproduction_tables_are_their_saved_reports_rendered():
    """Every table between report markers in REPRODUCTION.md is the rendering of a committed,
    full (not --quick) report; editing a number by hand, or a report, fails this test."""
    from pyodejl.experiments.folder import read_json
    from pyodejl.experiments.report import sync_markdown

    text = (ROOT / "REPRODUCTION.md").read_text(encoding="utf-8")
    names = re.findall(r"^<!-- pyodejl report (\S+) -->$", text, re.M)
    assert names, "REPRODUCTION.md has no rendered report"
    for name in names:
        report = read_json(ROOT / name)
        assert not report["quick"] and not report["unfinished"], name
    assert sync_markdown(text, ROOT) == text
    # and the check has teeth: one changed digit in a rendered table is found
    block = text.index(f"<!-- pyodejl report {names[0]} -->")
    row = text.index("\n| ", text.index("| --- |", block)) + 1
    digit = next(i for i in range(row, len(text)) if text[i].isdigit())
    tampered = text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:]
    assert sync_markdown(tampered, ROOT) != tampered
