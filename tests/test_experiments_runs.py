"""Tracked runs (``pyodejl track``) in the one run folder: resumption after a kill (in process and
a real SIGKILL), recomputation from the saved θ, configuration and package-version checks, clear
errors for corrupt files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pyodejl.experiments.tracking as tracking
from pyodejl.__main__ import main
from pyodejl.experiments import ConfigMismatchError, RunConfig, load_run, objective_from_run, track
from pyodejl.experiments.runs import RunFolderError, VersionMismatchError, package_versions

# A 4-parameter Neural ODE (seed 000 Fig. 7's size) trained by Adam on minibatches:
# exercises the optimiser state, the per-step batches and the ODE objective.
CFG = RunConfig(task="exponential-1d", model="node", width=1, num_samples=12, optimizer="adam",
                batch_size=4, lr=0.05, steps=7, hessian_every=2, seed=11)


class Killed(Exception):
    pass


def _records(run):
    return run.records


# the same run on the command line
CMD = ["track", "--task", "exponential-1d", "--model", "node", "--width", "1", "--num-samples", "12",
       "--optimizer", "adam", "--batch-size", "4", "--lr", "0.05", "--steps", "7", "--hessian-every", "2",
       "--seed", "11", "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return track(CFG, tmp_path_factory.mktemp("ref") / "run", progress=False)


def _kill_at(step):
    def callback(s, theta):
        if s == step:
            raise Killed

    return callback


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    """CFG killed after step 5: checkpoint at step 4; records, θ, spectra, timings of 0, 2, 4."""
    out = tmp_path_factory.mktemp("partial") / "run"
    with pytest.raises(Killed):
        track(CFG, out, progress=False, callback=_kill_at(5))
    return out


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "run")


def _edit_config(folder, edit):
    path = folder / "config.json"
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


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
    # exactly one timing line per tracked step, after any number of resumptions
    for run in (a, b):
        assert [t["step"] for t in run.timings()] == [r["step"] for r in run.records]


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
    assert json.loads((reference.path / "config.json").read_text())["config"]["lr"] == 0.05


def test_run_folder_records_package_versions(reference):
    saved = json.loads((reference.path / "config.json").read_text())["versions"]
    import jax
    import numpy
    import optax

    import pyodejl

    assert saved == package_versions()
    assert saved["pyodejl"] == pyodejl.__version__
    assert (saved["jax"], saved["numpy"], saved["optax"]) == (jax.__version__, numpy.__version__, optax.__version__)
    assert {"jaxlib", "diffrax", "equinox"} <= set(saved)
    run = load_run(reference.path)
    assert run.versions == saved and run.version_history == []
    # versions are not part of the configuration: equality of RunConfigs is about numbers only
    assert run.config == CFG.resolved()


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
    """Records of step 4 written, the checkpoint after step 6 not: resumption must not duplicate them."""
    from pyodejl.experiments.folder import RunFolder

    out = tmp_path / "run"
    real = RunFolder.save_checkpoint

    def flaky(self, step, arrays):
        if step == 6:
            raise Killed
        real(self, step, arrays)

    monkeypatch.setattr(RunFolder, "save_checkpoint", flaky)
    with pytest.raises(Killed):
        track(CFG, out, progress=False)
    assert [r["step"] for r in load_run(out).records] == [0, 2, 4]
    monkeypatch.setattr(RunFolder, "save_checkpoint", real)
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


def test_sigkill_subprocess_then_resume_matches(reference, tmp_path):
    """A real kill -9 of `python -m pyodejl track` as soon as its first record and checkpoint
    appear, then the same command again: identical records, θ, spectra; one timing per step."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pyodejl", *CMD, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoint.npz").exists():
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    # the kill landed mid-run (the training steps after the first record need compiling first)
    partial = load_run(out)
    assert not partial.complete and len(partial.records) < len(reference.records)
    assert partial.records[0] == reference.records[0]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _assert_same_run(load_run(out), reference)


# --------------------------------------------------------------------------------------
# package versions
# --------------------------------------------------------------------------------------


def test_resume_under_other_versions_is_refused_unless_allowed(reference, partial, tmp_path):
    out = _copy(partial, tmp_path)
    old = {**package_versions(), "jax": "0.0.1", "optax": "0.0.2"}
    _edit_config(out, lambda d: d.update(versions=old))
    before = (out / "config.json").read_text()
    with pytest.raises(VersionMismatchError, match=r"jax: saved 0\.0\.1, now .*optax: saved 0\.0\.2, now") as exc:
        track(CFG, out, progress=False)
    assert set(exc.value.differences) == {"jax", "optax"}
    assert "allow_version_change" in str(exc.value)
    assert isinstance(exc.value, ConfigMismatchError)  # a version change is a configuration change
    assert (out / "config.json").read_text() == before and not load_run(out).complete
    resumed = track(CFG, out, progress=False, allow_version_change=True)
    _assert_same_run(resumed, reference)  # (the versions did not really change)
    assert resumed.versions == package_versions()
    assert resumed.version_history == [{"until_step": 4, "versions": old}]
    # now saved under the current versions: a further resume needs no flag
    assert track(CFG, out, progress=False).records == resumed.records


def test_finished_run_is_returned_whatever_the_versions(reference, tmp_path):
    out = _copy(reference.path, tmp_path)
    _edit_config(out, lambda d: d["versions"].update(numpy="1.0"))
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert track(CFG, out, progress=False).records == reference.records
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before


def test_cli_version_mismatch(partial, tmp_path, capsys):
    out = _copy(partial, tmp_path)
    _edit_config(out, lambda d: d["versions"].update(equinox="0.0.3"))
    assert main([*CMD, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyodejl track: error: run folder") and err.count("\n") == 1
    assert "equinox: saved 0.0.3" in err and "--allow-version-change" in err
    with pytest.raises(VersionMismatchError):
        main(["--debug", *CMD, "--out", str(out)])
    assert main([*CMD, "--out", str(out), "--allow-version-change"]) == 0
    assert load_run(out).complete


# --------------------------------------------------------------------------------------
# corrupt files
# --------------------------------------------------------------------------------------


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])  # +1: never exactly at a line end of a short file


def _garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(300))


FILES = ["config.json", "records.jsonl", "checkpoint.npz"]


def _read_back(folder, name):
    """The Run accessor that reads ``name``."""
    from pyodejl.experiments.folder import RunFolder

    load_run(folder)  # reads config.json and records.jsonl
    if name == "checkpoint.npz":
        RunFolder(folder).check()


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
@pytest.mark.parametrize("name", FILES)
def test_corrupt_file_is_named(partial, reference, tmp_path, name, damage):
    out = _copy(partial, tmp_path)
    damage(out / name)
    if name == "records.jsonl" and damage is _truncate:
        # a records file cut inside its last line is what a kill leaves: dropped and recomputed,
        # or, cut before the checkpoint's records, refused
        try:
            _assert_same_run(track(CFG, out, progress=False), reference)
        except RunFolderError as exc:
            assert exc.path == out / name
        return
    with pytest.raises(RunFolderError, match=rf"run folder file .*{name} is unreadable") as exc:
        track(CFG, out, progress=False)
    assert exc.value.path == out / name and isinstance(exc.value, ValueError)
    with pytest.raises(RunFolderError) as exc:
        _read_back(out, name)
    assert exc.value.path == out / name


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("config.json", lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
        ("config.json", lambda p: _edit_config(p.parent, lambda d: d.update(versions=3)), "'versions' must map"),
        ("config.json", lambda p: _edit_config(p.parent, lambda d: d.pop("format")), "format None"),
        ("records.jsonl", lambda p: p.write_text("[1]\n" + p.read_text()), "line 1 is not a JSON object"),
        ("records.jsonl", lambda p: p.write_text(p.read_text().split("\n", 1)[1]),
         "not the ones the checkpoint was written after"),
        ("checkpoint.npz", lambda p: np.savez(p, step=4, num_records=0), "'records_digest' is missing"),
        ("checkpoint.npz", lambda p: np.savez(p, step=4), "'num_records' is missing"),
        ("checkpoint.npz", lambda p: np.savez(p, step=4, num_records=0, records_digest=np.str_("x")),
         r"missing arrays \['clock'"),
    ],
)
def test_inconsistent_file_is_named(partial, tmp_path, name, damage, message):
    out = _copy(partial, tmp_path)
    damage(out / name)
    with pytest.raises(RunFolderError, match=message) as exc:
        track(CFG, out, progress=False)
    assert exc.value.path == out / name


def test_cli_corrupt_file_one_line(partial, tmp_path, capsys):
    out = _copy(partial, tmp_path)
    _truncate(out / "checkpoint.npz")
    assert main([*CMD, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyodejl track: error: run folder file ") and "checkpoint.npz" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    _garbage(out / "records.jsonl")
    assert main(["plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyodejl plot: error: ") and "records.jsonl" in err and err.count("\n") == 1
