"""Run folders: resumption after a kill, recomputation from params.npz, configuration checks."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pyodejl.experiments.tracking as tracking
from pyodejl.experiments import ConfigMismatchError, RunConfig, load_run, objective_from_run, track

# A 4-parameter Neural ODE (seed 000 Fig. 7's size) trained by Adam on minibatches:
# exercises the optimiser state, the per-step batches and the ODE objective.
CFG = RunConfig(task="exponential-1d", model="node", width=1, num_samples=12, optimizer="adam",
                batch_size=4, lr=0.05, steps=7, hessian_every=2, seed=11)


class Killed(Exception):
    pass


def _records(run):
    return run.records


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return track(CFG, tmp_path_factory.mktemp("ref") / "run", progress=False)


def _assert_same_run(a, b):
    assert _records(a) == _records(b)  # bit-identical floats, same keys, no duplicates
    pa, pb = a.params(), b.params()
    assert sorted(pa) == sorted(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    sa, sb = a.spectra(), b.spectra()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_reference_run_layout(reference):
    steps = [r["step"] for r in reference.records]
    assert steps == [0, 2, 4, 6, 7]
    for r in reference.records:
        for key in ("step", "loss", "eig_max", "eig_2nd", "eig_min", "trace", "grad_norm", "nfe"):
            assert key in r
        assert r["hessian"] == "exact" and r["num_params"] == 4
        assert r["eig_min"] <= r["eig_2nd"] <= r["eig_max"]
    assert sorted(reference.params()) == steps
    assert reference.complete
    assert json.loads((reference.path / "config.json").read_text())["lr"] == 0.05


@pytest.mark.parametrize("kill_at", [1, 3, 6])
def test_resume_after_kill_reproduces_uninterrupted_run(reference, tmp_path, kill_at):
    out = tmp_path / "run"

    def kill(step, theta):
        if step == kill_at:
            raise Killed

    with pytest.raises(Killed):
        track(CFG, out, progress=False, callback=kill)
    partial = load_run(out)
    assert not partial.complete
    assert all(r["step"] <= kill_at for r in partial.records)
    resumed = track(CFG, out, progress=False)
    _assert_same_run(resumed, reference)


def test_kill_between_records_and_checkpoint(reference, tmp_path, monkeypatch):
    """Records and params of step 4 written, the checkpoint not: resumption must not duplicate them."""
    out = tmp_path / "run"
    real = tracking._save_checkpoint
    calls = []

    def flaky(path, step, theta, opt_state):
        calls.append(step)
        if step == 4:
            raise Killed
        real(path, step, theta, opt_state)

    monkeypatch.setattr(tracking, "_save_checkpoint", flaky)
    with pytest.raises(Killed):
        track(CFG, out, progress=False)
    assert [r["step"] for r in load_run(out).records] == [0, 2, 4]
    monkeypatch.setattr(tracking, "_save_checkpoint", real)
    _assert_same_run(track(CFG, out, progress=False), reference)


def test_records_equal_recomputation_from_saved_params(reference):
    obj = objective_from_run(reference.path)
    params, spectra = reference.params(), reference.spectra()
    for rec in reference.records:
        theta = params[rec["step"]]
        assert obj.value(theta) == pytest.approx(rec["loss"], rel=1e-12)
        assert np.linalg.norm(obj.grad(theta)) == pytest.approx(rec["grad_norm"], rel=1e-10)
        w = np.linalg.eigvalsh(obj.hessian(theta))
        np.testing.assert_allclose(w, spectra[rec["step"]], rtol=1e-9, atol=1e-12)
        assert w[-1] == pytest.approx(rec["eig_max"], rel=1e-9)
        assert w[-2] == pytest.approx(rec["eig_2nd"], rel=1e-9)
        assert w[0] == pytest.approx(rec["eig_min"], rel=1e-9, abs=1e-12)
        assert np.sum(w) == pytest.approx(rec["trace"], rel=1e-9)
        assert obj.stats(theta).nfe == rec["nfe"]


def test_finished_run_is_not_recomputed(reference):
    mtime = os.path.getmtime(reference.path / "records.jsonl")
    again = track(CFG, reference.path, progress=False)
    assert again.records == reference.records
    assert os.path.getmtime(reference.path / "records.jsonl") == mtime


def test_changed_configuration_refuses_to_resume(reference):
    changed = RunConfig(**{**CFG.as_dict(), "lr": 0.1, "batch_size": 3})
    with pytest.raises(ConfigMismatchError, match=r"batch_size: saved 4, now 3.*lr: saved 0.05, now 0.1"):
        track(changed, reference.path, progress=False)


def test_folder_with_foreign_files_is_refused(tmp_path):
    (tmp_path / "records.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="no config.json"):
        track(CFG, tmp_path, progress=False)


def test_batches_are_a_function_of_seed_and_step():
    a = [tracking.batch_indices(3, k, 10, 3) for k in range(6)]
    b = [tracking.batch_indices(3, k, 10, 3) for k in range(6)]
    c = [tracking.batch_indices(4, k, 10, 3) for k in range(6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    # one epoch = 3 disjoint batches of 3 (one sample dropped)
    epoch = np.concatenate(a[:3])
    assert len(np.unique(epoch)) == 9 and all(len(x) == 3 for x in a)
    assert tracking.batch_indices(3, 0, 10, None) is None


def test_tracking_fraction_is_fixed_and_seeded():
    a = tracking.tracking_indices(1, 100, 0.1)
    assert len(a) == 10 and np.array_equal(a, tracking.tracking_indices(1, 100, 0.1))
    assert not np.array_equal(a, tracking.tracking_indices(2, 100, 0.1))
    assert tracking.tracking_indices(1, 100, 1.0) is None


@pytest.mark.slow
def test_sigkill_subprocess_then_resume_matches(reference, tmp_path):
    """A real kill -9 of `python -m pyodejl track` mid-run, then the same command again."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pyodejl", "track", "--task", "exponential-1d", "--model", "node",
           "--width", "1", "--num-samples", "12", "--optimizer", "adam", "--batch-size", "4",
           "--lr", "0.05", "--steps", "7", "--hessian-every", "2", "--seed", "11", "--out", str(out),
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoint.npz").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _assert_same_run(load_run(out), reference)
