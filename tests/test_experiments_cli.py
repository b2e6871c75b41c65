"""Command line: clear errors for bad flags and impossible combinations; end-to-end runs per model kind."""

import subprocess
import sys

import numpy as np
import pytest

from pyodejl.__main__ import main
from pyodejl.derivatives.methods import FAST_METHODS, GRADIENT_METHODS, HESSIAN_METHODS
from pyodejl.experiments import load_run, objective_from_run
from pyodejl.experiments.cli import build_parser
from pyodejl.solving import SOLVERS, SolveError

BASE = ["track", "--no-progress"]


def _error(capsys, argv, status=2):
    """stderr of a failing command: argparse's own errors exit through SystemExit,
    the others return the status after one line ``pyodejl <command>: error: ...``."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    else:
        err = capsys.readouterr().err
        assert err.startswith(f"pyodejl {argv[0]}: error: ") and err.count("\n") == 1, err
        assert code == status
        return err
    assert code == status
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "spiral", "--model", "node", "--optimizer", "gd", "--batch-size", "4"], "takes no batch_size"),
        (["--task", "spiral", "--model", "node", "--optimizer", "sgd"], "needs a batch_size"),
        (["--task", "spiral", "--model", "node", "--optimizer", "sgd", "--batch-size", "17"], "exceeds the 16 samples"),
        (["--task", "spiral", "--model", "node", "--augment-dim", "2"], "only applies to model 'anode'"),
        (["--task", "spiral", "--model", "anode", "--augment-dim", "0"], "augment_dim >= 1"),
        (["--task", "spiral", "--model", "mlp", "--grad-method", "backsolve"], "needs an ODE model"),
        (["--task", "spiral", "--model", "mlp", "--hessian-method", "adjoint-adjoint"], "needs an ODE model"),
        (["--task", "nested-spheres", "--model", "node", "--dim", "5"], "supports dim in"),
        (["--task", "nested-spheres", "--model", "node", "--loss", "abs"], "does not fit task"),
        (["--task", "spiral", "--model", "node", "--loss", "logistic"], "does not fit task"),
        (["--task", "spiral", "--model", "node", "--hessian-fraction", "1.5"], "expected a number in (0, 1]"),
        (["--task", "spiral", "--model", "node", "--hessian-fraction", "0.01"], "fewer than 2"),
        (["--task", "spiral", "--model", "node", "--lr", "-1"], "expected a positive"),
        (["--task", "spiral", "--model", "node", "--width", "0"], "expected a positive integer"),
        (["--task", "imagenet", "--model", "node"], "invalid choice"),
        (["--task", "spiral", "--model", "resnet"], "invalid choice"),
        (["--task", "spiral", "--model", "node", "--solver", "rk4"], "invalid choice"),
        (["--task", "spiral", "--model", "node", "--bogus"], "unrecognized arguments"),
    ],
)
def test_track_errors(capsys, tmp_path, extra, message):
    err = _error(capsys, BASE + extra + ["--out", str(tmp_path / "r")])
    assert message in err
    assert not (tmp_path / "r").exists()


def test_track_requires_out_task_model(capsys):
    assert "--out" in _error(capsys, BASE + ["--task", "spiral", "--model", "node"])
    assert "--task" in _error(capsys, BASE + ["--model", "node", "--out", "x"])


def test_plot_errors(capsys, tmp_path):
    assert "not a run folder" in _error(capsys, ["plot", str(tmp_path)])
    with pytest.raises(Exception, match="not a run folder"):  # --debug: the exception and its traceback
        main(["plot", str(tmp_path), "--debug"])


def test_method_and_solver_choices_come_from_the_engine_registries():
    track = build_parser()._subparsers._group_actions[0].choices["track"]
    choices = {a.dest: a.choices for a in track._actions if a.choices is not None}
    assert choices["grad_method"] == list(GRADIENT_METHODS)
    assert choices["hessian_method"] == sorted({**HESSIAN_METHODS, **FAST_METHODS})
    assert set(choices["solver"]) == {k for k, v in SOLVERS.items() if v.adaptive}


# a 4-parameter Neural ODE whose solves cannot finish in one step
FAILING = ["--task", "exponential-1d", "--model", "node", "--width", "1", "--num-samples", "6",
           "--steps", "2", "--max-steps", "1"]


def test_solver_failure_is_one_line_exit_1(tmp_path, capsys):
    out = str(tmp_path / "r")
    err = _error(capsys, BASE + FAILING + ["--out", out], status=1)
    assert "max_steps=1" in err and "Traceback" not in err
    with pytest.raises(SolveError, match="max_steps=1"):
        main(["--debug"] + BASE + FAILING + ["--out", out])


def test_entry_point_exit_status(tmp_path):
    """The real ``python -m pyodejl``: status 1 and one line on stderr, no traceback."""
    cmd = [sys.executable, "-m", "pyodejl"] + BASE + FAILING + ["--out", str(tmp_path / "r")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("pyodejl track: error: ") and "max_steps=1" in res.stderr
    assert res.stderr.count("\n") == 1


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["track", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--task", "--model", "--width", "--depth", "--activation", "--optimizer", "--batch-size",
                 "--lr", "--steps", "--hessian-every", "--hessian-fraction", "--seed", "--out"):
        assert flag in text


def _track(tmp_path, name, argv):
    out = tmp_path / name
    assert main(BASE + argv + ["--out", str(out)]) == 0
    return load_run(out)


def test_end_to_end_mlp_with_estimated_curvature_and_plot(tmp_path, capsys):
    """Seed 000 Fig. 9's 31-parameter network (1 -> 10 -> 1 on t) with SGD, tracked on a fraction r;
    exact_max_params 0 forces Lanczos + Hutch++, checked against the exact spectrum."""
    run = _track(tmp_path, "mlp", ["--task", "exponential-1d", "--model", "mlp", "--width", "10",
                                   "--optimizer", "sgd", "--batch-size", "8", "--lr", "0.05", "--steps", "6",
                                   "--hessian-every", "3", "--hessian-fraction", "0.5",
                                   "--exact-max-params", "0", "--trace-matvecs", "31"])
    assert [r["step"] for r in run.records] == [0, 3, 6]
    assert all(r["num_params"] == 31 and r["hessian"].startswith("lanczos+hutch++") for r in run.records)
    assert all(r["tracked_samples"] == 20 and r["nfe"] is None for r in run.records)
    assert run.spectra() == {}
    obj = objective_from_run(run.path)
    for rec in run.records:
        w = np.linalg.eigvalsh(obj.hessian(run.params()[rec["step"]]))
        assert rec["eig_max"] == pytest.approx(w[-1], rel=1e-5)
        assert rec["eig_2nd"] == pytest.approx(w[-2], rel=1e-5)
        assert rec["eig_min"] == pytest.approx(w[0], rel=1e-5, abs=1e-6 * abs(w[-1]))
        # Hutch++ with 31 = p products: the sketch spans nearly everything, so the trace is close
        assert rec["trace"] == pytest.approx(np.sum(w), rel=0.05, abs=0.05 * np.abs(w).sum())
    capsys.readouterr()
    assert main(["plot", str(run.path)]) == 0
    assert (run.path / "figures" / "evolution.png").stat().st_size > 0


def test_end_to_end_node(tmp_path):
    run = _track(tmp_path, "node", ["--task", "coupled-sinusoids", "--model", "node", "--width", "2",
                                    "--num-samples", "10", "--optimizer", "gd", "--lr", "0.1", "--steps", "4",
                                    "--hessian-every", "2", "--loss", "abs"])
    assert [r["step"] for r in run.records] == [0, 2, 4]
    assert all(r["num_params"] == 12 and r["hessian"] == "exact" and r["nfe"] > 0 for r in run.records)
    assert run.records[-1]["loss"] < run.records[0]["loss"]
    assert sorted(run.spectra()) == [0, 2, 4]


def test_end_to_end_anode_and_overlay(tmp_path):
    common = ["--task", "nested-spheres", "--num-samples", "16", "--width", "3", "--optimizer", "adam",
              "--lr", "0.05", "--steps", "3", "--hessian-every", "3", "--model", "anode", "--augment-dim", "2"]
    anode = _track(tmp_path, "anode", common)
    # vector field 4 -> 3 -> 4 (31) + readout (4 + 1)
    assert anode.records[0]["num_params"] == 36 and anode.config.augment_dim == 2
    assert all(0 <= r["accuracy"] <= 1 for r in anode.records)
    other = _track(tmp_path, "anode_seed1", common + ["--seed", "1"])
    assert other.records[0]["loss"] != anode.records[0]["loss"]
    assert main(["plot", str(anode.path), str(other.path), "--labels", "seed 0", "seed 1"]) == 0
    assert (tmp_path / "figures" / "overlay.png").exists()
    assert (tmp_path / "figures" / "spectra_1.png").exists()
