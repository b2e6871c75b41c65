"""Stiffness-penalised training (seed 001): the loss, the plateau rule, the Hessian, run folders, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pyodejl  # noqa: F401  (float64)
from pyodejl.experiments.cli import main as cli_main
from pyodejl.experiments.stiffness_training import (
    PlateauState,
    StiffnessRunConfig,
    _ResNetTrainer,
    alpine02_split,
    draw_penalty_triples,
    load_stiffness_experiment,
    penalised_loss,
    penalty_per_sample,
    plateau_step,
    run_stiffness_experiment,
    sampled_penalty_sq_sum,
    train_stiffness_run,
)
from pyodejl.models.resnet import ResNet


def _numpy_forward(theta, x, width, depth):
    """Independent forward pass from the documented θ layout (PyTorch nn.Linear order)."""
    i = 0

    def take(n, shape):
        nonlocal i
        out = theta[i : i + n].reshape(shape)
        i += n
        return out

    W_in, b_in = take(width * 2, (width, 2)), take(width, (width,))
    layers = [(take(width * width, (width, width)), take(width, (width,))) for _ in range(depth)]
    W_out, b_out = take(width, (1, width)), take(1, (1,))
    assert i == theta.size
    return W_in, b_in, layers, W_out, b_out


def _numpy_loss(theta, x, y, width, depth, lam, penalty):
    """Seed 001's loss by a loop over samples and layers; ρ from numpy eig.

    Returns the loss with pᵢ = Σₙ ρ(Jₙ,ᵢ) and with pᵢ = Σₙ (κ(Vₙ,ᵢ)√d)^{1/1024} ρ(Jₙ,ᵢ):
    Gelfand's ‖J^k‖_F^{1/k} (k = 1024) lies between the two, since for J = VΛV⁻¹,
    ρ^k ≤ ‖J^k‖₂ ≤ ‖J^k‖_F ≤ ‖V‖₂‖V⁻¹‖₂·√d·ρ^k.
    """
    W_in, b_in, layers, W_out, b_out = _numpy_forward(theta, x, width, depth)
    h = 1.0 / depth
    sq, p_lo, p_hi = 0.0, [], []
    for xi, yi in zip(x, y):
        s = W_in @ xi + b_in
        lo = hi = 0.0
        for W, b in layers:
            z = W @ s + b
            J = (1.0 - np.tanh(z) ** 2)[:, None] * W
            lam_j, V = np.linalg.eig(J)
            rho = np.max(np.abs(lam_j))
            lo += rho
            hi += rho * (np.linalg.cond(V) * np.sqrt(width)) ** (1.0 / 1024)
            s = s + h * np.tanh(z)
        sq += float((W_out @ s + b_out)[0] - yi) ** 2
        p_lo.append(lo)
        p_hi.append(hi)
    if penalty == "l2":
        tensors = [W_in, b_in, *[a for wb in layers for a in wb], W_out, b_out]
        pm = np.mean([np.linalg.norm(t) for t in tensors])
        v = np.sqrt(sq + lam * len(x) * pm**2)
        return v, v
    return np.sqrt(sq + lam * np.sum(np.square(p_lo))), np.sqrt(sq + lam * np.sum(np.square(p_hi)))


def _theta_after_training(net, x, y, steps=30):
    """θ after a few Adam steps of the plain loss: away from the initialisation."""
    import jax
    import optax

    theta = jax.numpy.asarray(net.init(3))
    opt = optax.adam(1e-2)
    state = opt.init(theta)
    grad = jax.jit(jax.grad(lambda t: penalised_loss(net, t, x, y)))
    for _ in range(steps):
        u, state = opt.update(grad(theta), state, theta)
        theta = optax.apply_updates(theta, u)
    return np.asarray(theta)


def test_penalised_loss_matches_numpy_loop():
    width, depth = 10, 4
    net = ResNet(2, width, depth, 1)
    x, y, _, _ = alpine02_split(900, 100, 0)
    x, y = x[:12], y[:12]
    theta = _theta_after_training(net, x, y)
    # no penalty and the L2 penalty are exact (float64 round-off)
    import jax

    loss = jax.jit(lambda t, penalty, lam: penalised_loss(net, t, x, y, penalty, lam), static_argnums=1)
    for penalty, lam in (("none", 0.0), ("l2", 1e-5), ("l2", 3.0)):
        ref, _ = _numpy_loss(theta, x, y, width, depth, lam, penalty)
        ours = float(loss(theta, penalty, lam))
        assert ours == pytest.approx(ref, rel=1e-12), penalty
    # the stiffness penalty (Gelfand) lies in the bracket that its convergence theory gives;
    # λ large enough that the penalty dominates the data term
    for lam in (1e-3, 1.0):
        lo, hi = _numpy_loss(theta, x, y, width, depth, lam, "stiff")
        ours = float(loss(theta, "stiff", lam))
        assert lo * (1 - 1e-12) <= ours <= hi * (1 + 1e-12)
        assert (hi - lo) / lo < 2e-2  # the bracket is informative (observed: ~5e-3 at λ = 1)


def test_sampled_penalty_averages_to_the_exact_one_over_every_draw():
    """The estimate is unbiased: its mean over all B·N² equally likely (i, a, b) is Σᵢpᵢ²
    exactly (a finite sum, so float64 round-off), and so is its gradient's mean."""
    import jax
    import jax.numpy as jnp

    from pyodejl.stiffness import jacobians_at, layer_jacobians

    width, depth, B = 6, 3, 4
    net = ResNet(2, width, depth, 1)
    x, y, _, _ = alpine02_split(900, 100, 0)
    x, y = x[:B], y[:B]
    theta = jnp.asarray(_theta_after_training(net, x, y))
    i, a, b = np.meshgrid(np.arange(B), np.arange(depth), np.arange(depth), indexing="ij")
    every = np.stack([i.ravel(), a.ravel(), b.ravel()])  # (3, B·N²): all draws, each once

    # the gathered Jacobians are the full set's entries
    states = net.hidden_states(theta, x)
    full = np.asarray(layer_jacobians(net, theta, x))
    gathered = np.asarray(jacobians_at(net, theta, states, every[1], every[0]))
    np.testing.assert_allclose(gathered, full[every[1], every[0]], rtol=1e-13, atol=1e-15)  # einsum order: round-off

    def exact(t):
        return jnp.sum(penalty_per_sample(net, t, x, "stiff") ** 2)

    def mean_estimate(t):
        return sampled_penalty_sq_sum(net, t, net.hidden_states(t, x), every)

    assert float(mean_estimate(theta)) == pytest.approx(float(exact(theta)), rel=1e-13)
    np.testing.assert_allclose(jax.grad(mean_estimate)(theta), jax.grad(exact)(theta), rtol=1e-11, atol=1e-13)
    # one draw: B·N²·ρ_a ρ_b, the summand itself
    rho = np.asarray(penalty_per_sample(net, theta, x, "stiff"))  # Σₙ ρ per sample, for scale
    one = float(sampled_penalty_sq_sum(net, theta, states, every[:, :1]))
    assert 0 < one < B * rho.max() ** 2 * depth**2
    # the loss with the estimate: data term from the same states
    loss = float(penalised_loss(net, theta, x, y, "stiff-sampled", 1e-3, every))
    ref = float(penalised_loss(net, theta, x, y, "stiff", 1e-3))
    assert loss == pytest.approx(ref, rel=1e-13)
    with pytest.raises(ValueError, match="needs triples"):
        penalised_loss(net, theta, x, y, "stiff-sampled", 1e-3)
    # draws are uniform over their ranges and seed-determined
    t1 = draw_penalty_triples(np.random.default_rng(0), 5, B, depth, 2)
    assert t1.shape == (5, 3, 2) and t1[:, 0].max() < B and t1[:, 1:].max() < depth and t1.min() >= 0
    np.testing.assert_array_equal(t1, draw_penalty_triples(np.random.default_rng(0), 5, B, depth, 2))


def test_sampled_penalty_run_resumes_identically_and_differs_from_plain(tmp_path):
    config = StiffnessRunConfig(model="res-stiff-sampled", seed=1, epochs=3, proxy_every=100, lam=1.0, **SMALL)
    folder = tmp_path / "s"
    assert train_stiffness_run(config, folder, hessian=False, progress=False, stop_after=1)["summary"] is None
    resumed = train_stiffness_run(config, folder, hessian=False, progress=False)["records"]
    ref = train_stiffness_run(config, tmp_path / "ref", hessian=False, progress=False)["records"]
    assert [r["epoch"] for r in resumed] == [0, 1, 2, 3]
    for r, q in zip(resumed, ref):
        assert r["train_mse"] == pytest.approx(q["train_mse"], rel=1e-12, abs=0)
    plain = StiffnessRunConfig(model="res", seed=1, epochs=3, proxy_every=100, **SMALL)
    other = train_stiffness_run(plain, tmp_path / "plain", hessian=False, progress=False)["records"]
    assert abs(other[-1]["train_mse"] - ref[-1]["train_mse"]) > 1e-6 * ref[-1]["train_mse"]


def test_plateau_rule_follows_pytorch_defaults():
    s = PlateauState(1e-3)
    s = plateau_step(s, 1.0)
    assert (s.lr, s.best, s.bad_epochs) == (1e-3, 1.0, 0)
    # within the relative threshold is no improvement: 11 such epochs (> patience 10) cut lr by 10
    for k in range(10):
        s = plateau_step(s, 1.0 - 0.5e-4)
        assert s.lr == 1e-3 and s.bad_epochs == k + 1
    s = plateau_step(s, 1.0)
    assert s.lr == pytest.approx(1e-4) and s.bad_epochs == 0 and s.best == 1.0
    s = plateau_step(s, 0.5)
    assert s.best == 0.5 and s.bad_epochs == 0


def test_hessian_matches_finite_differences_of_the_gradient():
    import jax
    import jax.numpy as jnp

    config = StiffnessRunConfig(
        model="res", width=4, depth=2, n_train=30, n_test=10, batch_size=15, hessian_chunk=20
    ).resolved()
    data = alpine02_split(30, 10, 0)
    tr = _ResNetTrainer(config, data)
    theta = tr.init(1)
    H = tr.hessian(theta)
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    g = jax.jit(jax.grad(lambda t: jnp.mean((tr.net(t, x)[:, 0] - y) ** 2)))
    eps = 1e-5
    cols = [0, 7, 20, 33, 45, theta.size - 1]  # input layer, both residual layers, readout
    fd = np.stack(
        [
            (np.asarray(g(theta + eps * e)) - np.asarray(g(theta - eps * e))) / (2 * eps)
            for e in np.eye(theta.size)[cols]
        ],
        axis=1,
    )
    # central differences of an exact gradient: O(eps² |g‴|) + round-off 1e-16/eps ~ 1e-10
    np.testing.assert_allclose(H[:, cols], fd, atol=1e-8 * np.abs(H).max())
    np.testing.assert_array_equal(H, H.T)


def _records(folder):
    return [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines() if line.strip()]


CLI_RUN = [
    "--models",
    "res",
    "--seeds",
    "0",
    "--epochs",
    "4",
    "--proxy-every",
    "100",
    "--no-hessian",
    "--no-progress",
    "--width",
    "5",
    "--depth",
    "3",
    "--n-train",
    "60",
    "--n-test",
    "20",
    "--batch-size",
    "15",
]
SMALL = dict(width=5, depth=3, n_train=60, n_test=20, batch_size=15)


def test_cli_resume_after_interrupt_has_no_duplicated_epochs(tmp_path):
    root = tmp_path / "exp"
    folder = root / "res" / "seed_0"
    config = StiffnessRunConfig(model="res", seed=0, epochs=4, proxy_every=100, **SMALL)
    # a run killed after epoch 2; and a kill between writing epoch 3's record and its checkpoint
    partial = train_stiffness_run(config, folder, hessian=False, progress=False, stop_after=2)
    assert partial["summary"] is None and [r["epoch"] for r in _records(folder)] == [0, 1, 2]
    fake = {**_records(folder)[-1], "epoch": 3, "train_mse": -1.0}
    with open(folder / "records.jsonl", "a") as fh:
        fh.write(json.dumps(fake) + "\n")
    (root / "stiffness_experiment.json").write_text(json.dumps({"kind": "pyodejl-stiffness", "runs": []}))
    assert cli_main(["stiffness", "--out", str(root), *CLI_RUN]) == 0
    recs = _records(folder)
    assert [r["epoch"] for r in recs] == [0, 1, 2, 3, 4]
    assert all(r["train_mse"] > 0 for r in recs)
    # identical to an uninterrupted run (same seed-determined batches, restored Adam state)
    ref = train_stiffness_run(config, tmp_path / "ref", hessian=False, progress=False)["records"]
    for a, b in zip(recs, ref):
        assert a["train_mse"] == pytest.approx(b["train_mse"], rel=1e-12, abs=0)
        assert a["lr"] == b["lr"]
    assert recs[-1]["spectral_radius"] == pytest.approx(ref[-1]["spectral_radius"], rel=1e-12)
    # a rerun skips the finished run
    before = (folder / "summary.json").read_text()
    assert cli_main(["stiffness", "--out", str(root), *CLI_RUN]) == 0
    assert (folder / "summary.json").read_text() == before and len(_records(folder)) == 5
    exp = load_stiffness_experiment(root)
    assert list(exp) == ["res"] and exp["res"][0]["summary"]["epochs"] == 4
    # another configuration in the same folder is refused, naming the difference
    from pyodejl.experiments import ConfigMismatchError

    with pytest.raises(ConfigMismatchError, match="epochs: saved 4, now 5"):
        train_stiffness_run(
            StiffnessRunConfig(**{**config.as_dict(), "epochs": 5}), folder, hessian=False, progress=False
        )
    assert cli_main(["stiffness", "--out", str(root), *CLI_RUN[:5], "5", *CLI_RUN[6:]]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "resnet"], "invalid choice: 'resnet'"),
        (["--epochs", "0"], "expected a positive integer, got 0"),
        (["--epochs", "-3"], "expected a positive integer, got -3"),
        (["--lambda-stiff=-1e-3"], "expected a finite number >= 0, got -1e-3"),
        (["--lambda-l2", "nan"], "expected a finite number >= 0, got nan"),
        (["--batch-size", "0"], "expected a positive integer, got 0"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli_main(["stiffness", "--out", str(tmp_path), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="resnet"), "unknown model 'resnet'"),
        (dict(model="res", epochs=0), "epochs must be a positive integer, got 0"),
        (dict(model="res-stiff-sampled", penalty_draws=0), "penalty_draws must be a positive integer, got 0"),
        (dict(model="res-stiff", lam=-1e-3), "lam .* must be a finite number >= 0, got -0.001"),
        (dict(model="res-l2", lam=float("inf")), "lam .* must be a finite number >= 0"),
        (dict(model="res", lam=1e-3), "model 'res' has no penalty"),
        (dict(model="res", batch_size=40), "batch_size 40 must divide n_train 900"),
        (dict(model="res", seed=-1), "seed must be a non-negative integer"),
    ],
)
def test_config_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StiffnessRunConfig(**kwargs).resolved()


def test_experiment_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        run_stiffness_experiment(tmp_path, ["res", "mlp"], [0])
    with pytest.raises(ValueError, match="seeds must be"):
        run_stiffness_experiment(tmp_path, ["res"], [])
    with pytest.raises(ValueError, match="lambdas for unknown models"):
        run_stiffness_experiment(tmp_path, ["res"], [0], lambdas={"resx": 1.0})
    with pytest.raises(FileNotFoundError, match="not a stiffness experiment folder"):
        load_stiffness_experiment(tmp_path / "nothing")


def _run_quick(tmp_path, models):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "stiffness_training.py"
    spec = importlib.util.spec_from_file_location("stiffness_training_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(["--quick", "--out", str(tmp_path / "q"), "--no-progress", "--models", *models])


def test_quick_example_and_plot_command(tmp_path):
    table = _run_quick(tmp_path, ["res-stiff"])
    assert set(table) == {"res-stiff"}
    for m in table:
        assert table[m]["ER"]["n"] == 2 and table[m]["eig_max"]["n"] == 2
    figs = tmp_path / "q" / "figures"
    assert (figs / "stiffness_proxies.png").stat().st_size > 0
    assert (figs / "stiffness_hessian_spectra.png").stat().st_size > 0
    # python -m pyodejl plot draws the stiffness figures from the folder
    assert cli_main(["plot", str(tmp_path / "q"), "--out", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "stiffness_hessian_spectra.png",
        "stiffness_proxies.png",
    ]


@pytest.mark.slow
def test_quick_example_all_models(tmp_path):
    models = ["res", "res-l2", "res-stiff", "res-stiff-sampled", "node", "node-stiff"]
    table = _run_quick(tmp_path, models)
    assert set(table) == set(models)
    assert (tmp_path / "q" / "figures" / "stiffness_node.png").exists()
    assert table["node-stiff"]["stiffness_estimate"]["n"] == 2
