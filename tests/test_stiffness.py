"""Stiffness measures, ResNet layer stiffness, and the tied-linear gradient gap (seed 001).

References: matrices built with known spectra (J = V D V⁻¹), ``numpy.linalg.eigvals`` /
``svd``, closed forms (Gelfand's ‖J^k‖ of a Jordan block, the tied-linear gradients),
central finite differences, ``jax.grad``, and the engine's own adjoints.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl  # noqa: F401  (float64)
from pyodejl.models.resnet import ResNet
from pyodejl.stiffness import (
    layer_jacobians,
    layer_stiffness,
    magnitude_ratio,
    singular_value_ratio,
    spectral_radius,
    stiffness_ratio,
    total_layer_stiffness,
)
from pyodejl.stiffness import tied_linear as tl

EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------
# matrices with known spectra
# ---------------------------------------------------------------------------
def block_diag_from_eigs(eigs):
    """Real block-diagonal D with the given eigenvalues (a complex λ brings its conjugate)."""
    blocks = []
    for lam in eigs:
        lam = complex(lam)
        if lam.imag == 0:
            blocks.append(np.array([[lam.real]]))
        else:
            blocks.append(np.array([[lam.real, abs(lam.imag)], [-abs(lam.imag), lam.real]]))
    d = sum(b.shape[0] for b in blocks)
    D, i = np.zeros((d, d)), 0
    for b in blocks:
        k = b.shape[0]
        D[i : i + k, i : i + k] = b
        i += k
    return D


def full_spectrum(eigs):
    out = []
    for lam in eigs:
        lam = complex(lam)
        out += [lam] if lam.imag == 0 else [lam, lam.conjugate()]
    return np.array(out)


def similarity(d, normal, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    if normal:
        return Q
    # unit upper-triangular factor with large entries: cond(V) in the hundreds
    U = np.eye(d) + np.triu(3.0 * rng.normal(size=(d, d)), 1)
    return Q @ U


SPECTRA = {
    "stable-real": [-1.0, -3.0, -100.0],
    "stable-complex": [-0.5 + 2j, -10.0],
    "mixed-signs": [-4.0, 1.0, 2.0],
    "unstable": [0.5, 2.0 + 1j],
}


def make(name, normal, seed=0):
    eigs = SPECTRA[name]
    D = block_diag_from_eigs(eigs)
    V = similarity(D.shape[0], normal, seed)
    return V @ D @ np.linalg.inv(V), full_spectrum(eigs), np.linalg.cond(V)


@pytest.mark.parametrize("normal", [True, False], ids=["normal", "non-normal"])
@pytest.mark.parametrize("name", list(SPECTRA))
def test_ratios_and_radius_against_known_spectra(name, normal):
    J, lam, cond = make(name, normal)
    # eigenvalue perturbation ≤ cond(V)·eps·‖J‖ (Bauer–Fike); relative to the smallest
    # quantity entering a ratio, with a factor 10 for the ratio and LAPACK's constants.
    scale = np.linalg.norm(J, 2) / np.min(np.abs(lam.real))
    tol = 10 * cond * EPS * scale * 10
    ref_r = lam.real.min() / lam.real.max()
    ref_m = np.abs(lam).max() / np.abs(lam).min()
    assert float(stiffness_ratio(J)) == pytest.approx(ref_r, rel=tol)
    assert float(magnitude_ratio(J)) == pytest.approx(ref_m, rel=tol)
    assert float(spectral_radius(J)) == pytest.approx(np.abs(lam).max(), rel=tol)
    # the same LAPACK routine (geev) behind numpy: agreement to round-off
    ev = np.linalg.eigvals(J)
    assert float(stiffness_ratio(J)) == pytest.approx(ev.real.min() / ev.real.max(), rel=1e-13)
    assert float(magnitude_ratio(J)) == pytest.approx(np.abs(ev).max() / np.abs(ev).min(), rel=1e-13)
    s = np.linalg.svd(J, compute_uv=False)
    svr = float(singular_value_ratio(J))
    assert svr == pytest.approx(s[0] / s[-1], rel=1e-13)
    assert svr >= ref_m * (1 - 1e-12)  # σmax/σmin bounds |λ|max/|λ|min
    if normal:
        assert svr == pytest.approx(ref_m, rel=1e-12)


def test_sign_conventions():
    assert float(stiffness_ratio(np.diag([-1.0, -100.0]))) == pytest.approx(100.0, rel=1e-15)  # seed's example
    assert float(stiffness_ratio(np.diag([2.0, 8.0]))) == pytest.approx(0.25, rel=1e-15)
    assert float(stiffness_ratio(np.diag([-3.0, 1.5]))) == pytest.approx(-2.0, rel=1e-15)


def test_singular_and_degenerate_cases():
    Z = np.zeros((3, 3))
    for f in (stiffness_ratio, magnitude_ratio, singular_value_ratio):
        assert float(f(Z)) == 1.0
    for m in ("eig", "power", "gelfand"):
        assert float(spectral_radius(Z, m)) == 0.0
    # a zero eigenvalue at the top of the real parts, below a decaying one: +inf
    assert float(stiffness_ratio(np.diag([-2.0, 0.0]))) == np.inf
    # a zero eigenvalue at the bottom of positive ones: 0
    assert float(stiffness_ratio(np.diag([0.0, 3.0]))) == 0.0
    # rotation: every real part zero -> 1 (no spread of decay rates); moduli equal -> 1
    R = np.array([[0.0, 2.0], [-2.0, 0.0]])
    assert float(stiffness_ratio(R)) == 1.0
    assert float(magnitude_ratio(R)) == pytest.approx(1.0, rel=1e-15)
    # rank-deficient (round-off zero eigenvalues, not exact zeros): inf, never 1e16
    rng = np.random.default_rng(3)
    S = rng.normal(size=(6, 2)) @ rng.normal(size=(2, 6))
    assert float(magnitude_ratio(S)) == np.inf
    assert float(singular_value_ratio(S)) == np.inf
    # nilpotent (strictly upper triangular): all eigenvalues 0
    N = np.triu(rng.normal(size=(4, 4)), 1)
    assert float(magnitude_ratio(N)) == 1.0
    assert float(spectral_radius(N, "gelfand")) == 0.0
    assert float(spectral_radius(N, "power", iterations=10)) == 0.0
    # rtol moves the zero threshold
    A = np.diag([-1.0, -1e-9])
    assert float(stiffness_ratio(A)) == pytest.approx(1e9, rel=1e-12)
    assert float(stiffness_ratio(A, rtol=1e-8)) == np.inf


# ---------------------------------------------------------------------------
# spectral radius: power method and Gelfand
# ---------------------------------------------------------------------------
def test_power_method_dominant_real_eigenvalue():
    J, lam, _ = make("stable-real", normal=False)  # |λ| = 100, 3, 1: ratio 0.03
    rho, info = spectral_radius(J, "power", iterations=30, return_info=True)
    # error ~ cond·(3/100)^30 — far below round-off
    assert float(rho) == pytest.approx(100.0, rel=1e-12)
    assert bool(info.converged) and info.iterations == 30


def test_power_method_complex_pair_normal_vs_non_normal():
    lam = [2.0 + 1.0j, 0.5]  # dominant conjugate pair, |λ| = √5
    D = block_diag_from_eigs(lam)
    rho_true = np.sqrt(5.0)
    # normal: the pair's eigenvectors are orthogonal, so ‖Jv‖ = ρ although v never converges
    Jn = similarity(3, True, 1) @ D @ similarity(3, True, 1).T
    rho, info = spectral_radius(Jn, "power", iterations=80, return_info=True)
    assert float(rho) == pytest.approx(rho_true, rel=1e-12)
    assert bool(info.converged)
    # non-normal: ‖Jv‖ oscillates around ρ and does not settle — reported, not hidden
    V = similarity(3, False, 2)
    Jnn = V @ D @ np.linalg.inv(V)
    ests = [float(spectral_radius(Jnn, "power", iterations=k)) for k in range(200, 206)]
    rho, info = spectral_radius(Jnn, "power", iterations=205, return_info=True)
    assert not bool(info.converged)
    assert float(info.change) > 1e-3
    assert (max(ests) - min(ests)) / rho_true > 1e-2
    # ...while eig and Gelfand are fine on the same matrix
    assert float(spectral_radius(Jnn)) == pytest.approx(rho_true, rel=1e-12)
    assert float(spectral_radius(Jnn, "gelfand")) == pytest.approx(rho_true, rel=2e-2)


def gelfand_reference(J, squarings):
    """‖J^k‖_F^{1/k}, k = 2**squarings, by NumPy's matrix_power on J/ρ (no overflow)."""
    rho = np.abs(np.linalg.eigvals(J)).max()
    k = 2**squarings
    return rho * np.linalg.norm(np.linalg.matrix_power(J / rho, k)) ** (1.0 / k)


@pytest.mark.parametrize("name", list(SPECTRA))
def test_gelfand_against_numpy_matrix_power(name):
    J, lam, _ = make(name, normal=False)
    rho = np.abs(lam).max()
    est = float(spectral_radius(J, "gelfand"))
    ref = gelfand_reference(J, 10)
    # ‖·‖^{1/1024} of a matrix power accurate to ~cond·k·eps: relative error ~1e-13
    assert est == pytest.approx(ref, rel=1e-12)
    assert est >= rho * (1 - 1e-13)  # ‖A‖_F ≥ ρ(A)


def test_gelfand_closed_forms():
    # normal, dominant conjugate pair: ‖J^k‖_F = √2 ρ^k exactly -> ρ·2^{1/(2k)}
    D = block_diag_from_eigs([1.5 + 2j, 0.3])
    Q = similarity(3, True, 4)
    assert float(spectral_radius(Q @ D @ Q.T, "gelfand")) == pytest.approx(2.5 * 2 ** (1 / 2048), rel=1e-13)
    # Jordan block [[a, 1], [0, a]]: ‖J^k‖_F = |a|^{k-1} √(2a² + k²)
    a = -0.7
    Jb = np.array([[a, 1.0], [0.0, a]])
    for m in (3, 10):
        k = 2**m
        ref = abs(a) * (np.sqrt(2 * a * a + k * k) / abs(a)) ** (1 / k)
        assert float(spectral_radius(Jb, "gelfand", iterations=m)) == pytest.approx(ref, rel=1e-13)
    # scale covariance far outside float64's range of J^1024
    J, lam, _ = make("stable-real", normal=True)
    base = float(spectral_radius(J, "gelfand"))
    for c in (1e150, 1e-150):
        assert float(spectral_radius(c * J, "gelfand")) == pytest.approx(c * base, rel=1e-13)


# ---------------------------------------------------------------------------
# gradients against finite differences
# ---------------------------------------------------------------------------
GRAD_CASES = {
    "stiffness_ratio": lambda J: stiffness_ratio(J),
    "magnitude_ratio": lambda J: magnitude_ratio(J),
    "singular_value_ratio": lambda J: singular_value_ratio(J),
    "spectral_radius-eig": lambda J: spectral_radius(J, "eig"),
    "spectral_radius-power": lambda J: spectral_radius(J, "power", iterations=60),
    "spectral_radius-gelfand": lambda J: spectral_radius(J, "gelfand"),
}


@pytest.fixture(scope="module")
def grad_matrix():
    J, _, _ = make("stable-real", normal=False, seed=5)
    J = J / 30.0 + 0.05 * np.random.default_rng(6).normal(size=J.shape)  # generic, simple eigenvalues
    return J


@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_gradients_against_finite_differences(case, grad_matrix):
    f = GRAD_CASES[case]
    J = grad_matrix
    g = np.asarray(jax.grad(f)(jnp.asarray(J)))
    assert np.all(np.isfinite(g))
    rng = np.random.default_rng(7)
    for _ in range(2):
        E = rng.normal(size=J.shape)
        h = 1e-6
        fd = (float(f(J + h * E)) - float(f(J - h * E))) / (2 * h)
        # central differences: truncation h²·f''' and round-off eps·|f|/h, both < 1e-8 relative here
        assert np.sum(g * E) == pytest.approx(fd, rel=1e-7, abs=1e-9 * abs(float(f(J))))


def test_gradients_finite_at_degenerate_points():
    Z = jnp.zeros((3, 3))
    for f in GRAD_CASES.values():
        assert np.all(np.isfinite(np.asarray(jax.grad(f)(Z))))
    S = jnp.asarray(np.diag([1.0, 0.0, 2.0]))  # singular: ratios are inf, derivative 0
    for f in (magnitude_ratio, singular_value_ratio):
        assert np.all(np.asarray(jax.grad(f)(S)) == 0.0)


# ---------------------------------------------------------------------------
# batching and bad input
# ---------------------------------------------------------------------------
def test_batched_matches_single():
    rng = np.random.default_rng(8)
    Js = rng.normal(size=(2, 3, 4, 4))
    for f in GRAD_CASES.values():
        out = np.asarray(f(Js))
        assert out.shape == (2, 3)
        ref = np.array([[float(f(Js[i, j])) for j in range(3)] for i in range(2)])
        np.testing.assert_allclose(out, ref, rtol=1e-13)
    rho, info = spectral_radius(Js, "power", return_info=True)
    assert rho.shape == info.change.shape == info.converged.shape == (2, 3)
    # jax.vmap over a leading axis gives the same as native batching
    vmapped = jax.vmap(stiffness_ratio)(Js[0])
    np.testing.assert_allclose(np.asarray(vmapped), np.asarray(stiffness_ratio(Js[0])), rtol=1e-14)
    vmapped = jax.vmap(lambda A: spectral_radius(A, "gelfand"))(Js[0])
    np.testing.assert_allclose(np.asarray(vmapped), np.asarray(spectral_radius(Js[0], "gelfand")), rtol=1e-14)


@pytest.mark.parametrize("f", [stiffness_ratio, magnitude_ratio, singular_value_ratio, spectral_radius])
def test_bad_matrices(f):
    with pytest.raises(ValueError, match="square"):
        f(np.ones((2, 3)))
    with pytest.raises(ValueError, match="square"):
        f(np.ones(3))
    with pytest.raises(ValueError, match="square"):
        f(np.ones((0, 0)))
    for bad in (np.nan, np.inf):
        J = np.eye(3)
        J[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            f(J)
    with pytest.raises(TypeError, match="numeric"):
        f([["a", "b"], ["c", "d"]])


def test_bad_input_under_jit_and_options():
    J = np.eye(3)
    J[0, 0] = np.nan
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(jax.jit(stiffness_ratio)(J))
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(jax.grad(lambda A: spectral_radius(A, "gelfand"))(jnp.asarray(J)))
    with pytest.raises(ValueError, match="unknown spectral-radius method"):
        spectral_radius(np.eye(2), "lanczos")
    with pytest.raises(ValueError, match="iterations"):
        spectral_radius(np.eye(2), "power", iterations=0)
    with pytest.raises(ValueError, match="return_info"):
        spectral_radius(np.eye(2), "eig", return_info=True)
    with pytest.raises(ValueError, match="rtol"):
        stiffness_ratio(np.eye(2), rtol=-1.0)


# ---------------------------------------------------------------------------
# ResNet layer stiffness against a plain NumPy loop
# ---------------------------------------------------------------------------
def numpy_layer_stiffness(net, theta, X, measure, dsig):
    """Reference: parse θ by hand, loop over layers and samples, NumPy eig/svd."""
    w, d = net.width, net.in_dim
    o = 0
    W_in = theta[o : o + w * d].reshape(w, d)
    o += w * d
    b_in = theta[o : o + w]
    o += w
    layers = []
    for _ in range(net.depth):
        W = theta[o : o + w * w].reshape(w, w)
        o += w * w
        b = theta[o : o + w]
        o += w
        layers.append((W, b))
    sigma = {"tanh": np.tanh, "softplus": lambda z: np.log1p(np.exp(z))}[net.activation]
    out = np.zeros((net.depth, len(X)))
    for i, x in enumerate(X):
        h = W_in @ x + b_in
        for n, (W, b) in enumerate(layers):
            z = W @ h + b
            J = dsig(z)[:, None] * W
            ev = np.linalg.eigvals(J)
            if measure == "stiffness_ratio":
                out[n, i] = ev.real.min() / ev.real.max()
            elif measure == "magnitude_ratio":
                out[n, i] = np.abs(ev).max() / np.abs(ev).min()
            elif measure == "singular_value_ratio":
                s = np.linalg.svd(J, compute_uv=False)
                out[n, i] = s[0] / s[-1]
            elif measure == "gelfand":
                out[n, i] = gelfand_reference(J, 10)
            else:
                out[n, i] = np.abs(ev).max()
            h = h + net.step * sigma(z)
    return out


DSIG = {"tanh": lambda z: 1 - np.tanh(z) ** 2, "softplus": lambda z: 1 / (1 + np.exp(-z))}


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_layer_stiffness_against_numpy_loop(activation):
    net = ResNet(2, 5, 3, 1, activation=activation, T=2.0)
    theta = net.init(seed=1)
    X = np.random.default_rng(2).uniform(-2, 2, size=(4, 2))
    for measure, kwargs in [
        ("stiffness_ratio", {}),
        ("magnitude_ratio", {}),
        ("singular_value_ratio", {}),
        ("spectral_radius", {}),
        ("gelfand", {"method": "gelfand"}),
    ]:
        name = "spectral_radius" if measure == "gelfand" else measure
        got = np.asarray(layer_stiffness(net, theta, X, name, **kwargs))
        ref = numpy_layer_stiffness(net, theta, X, measure, DSIG[activation])
        assert got.shape == (3, 4)
        # same LAPACK routines on the same matrices (built in a different order): round-off,
        # amplified by the ratios' conditioning (σmax/σmin up to ~1e3 here)
        np.testing.assert_allclose(got, ref, rtol=1e-10)
    single = np.asarray(layer_stiffness(net, theta, X[0], "magnitude_ratio"))
    ref = numpy_layer_stiffness(net, theta, X[:1], "magnitude_ratio", DSIG[activation])[:, 0]
    np.testing.assert_allclose(single, ref, rtol=1e-10)
    assert layer_jacobians(net, theta, X).shape == (3, 4, 5, 5)


def test_total_layer_stiffness_gradient():
    net = ResNet(2, 6, 4, 1)
    theta = net.init(seed=3)
    X = np.random.default_rng(4).uniform(-5, 5, size=(5, 2))
    f = jax.jit(lambda th: total_layer_stiffness(net, th, X, "spectral_radius", method="gelfand"))
    per_layer = layer_stiffness(net, theta, X, "spectral_radius", method="gelfand")
    assert float(f(theta)) == pytest.approx(float(np.sum(per_layer)), rel=1e-14)
    g = np.asarray(jax.grad(f)(jnp.asarray(theta)))
    E = np.random.default_rng(5).normal(size=theta.shape)
    # Gelfand's k = 1024 makes the estimate a sharp soft-max of the moduli: the central
    # difference's h² error is 5e-7 relative at h = 1e-6 (measured, shrinking 100× per
    # 10× in h), so h = 1e-7 (error ~5e-9, round-off ~6e-9).
    h = 1e-7
    fd = (float(f(theta + h * E)) - float(f(theta - h * E))) / (2 * h)
    assert np.sum(g * E) == pytest.approx(fd, rel=5e-8)


def test_layer_stiffness_bad_input():
    net = ResNet(2, 4, 2, 1)
    theta = net.init(0)
    with pytest.raises(ValueError, match="unknown stiffness measure"):
        layer_stiffness(net, theta, np.zeros((3, 2)), "frobenius")
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        layer_stiffness(net, theta, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="theta"):
        layer_stiffness(net, theta[:-1], np.zeros((3, 2)))
    with pytest.raises(TypeError, match="ResNet"):
        layer_stiffness(object(), theta, np.zeros((3, 2)))


# ---------------------------------------------------------------------------
# discretise-then-optimise vs optimise-then-discretise (tied linear layers)
# ---------------------------------------------------------------------------
D_LIN, T_LIN = 3, 1.3
_rng = np.random.default_rng(11)
W_LIN = _rng.normal(size=(D_LIN, D_LIN))
X0_LIN = _rng.normal(size=D_LIN)
Y_LIN = _rng.normal(size=D_LIN)


def tied_resnet_loss(N):
    """‖x_N − y‖² of pj's ResNet with identity activation, identity in/out layers, tied W."""
    net = ResNet(D_LIN, D_LIN, N, D_LIN, activation="identity", T=T_LIN)
    eye = jnp.eye(D_LIN).ravel()
    zeros = jnp.zeros(D_LIN)

    def loss(W):
        layer = jnp.concatenate([W.ravel(), zeros])
        theta = jnp.concatenate([eye, zeros, jnp.tile(layer, N), eye, zeros])
        return jnp.sum((net(theta, X0_LIN[None])[0] - Y_LIN) ** 2)

    return loss


@pytest.mark.parametrize("N", [1, 5, 40])
def test_discrete_gradient_is_resnet_backprop(N):
    loss = tied_resnet_loss(N)
    g = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(W_LIN)))
    G = tl.discrete_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN, N)
    np.testing.assert_allclose(g, G, rtol=1e-12, atol=1e-13 * np.abs(G).max())
    # and the forward passes: the ResNet output is the closed-form Euler state
    net = ResNet(D_LIN, D_LIN, N, D_LIN, activation="identity", T=T_LIN)
    assert float(jax.jit(loss)(jnp.asarray(W_LIN))) == pytest.approx(
        np.sum((tl.resnet_state(W_LIN, X0_LIN, T_LIN, N) - Y_LIN) ** 2), rel=1e-13
    )
    assert net.num_params == 2 * (D_LIN * D_LIN + D_LIN) + N * (D_LIN * D_LIN + D_LIN)


@pytest.mark.parametrize("N", [1, 5, 40])
def test_euler_adjoint_gradient_is_discretised_continuous_adjoint(N):
    # explicit Euler backwards in time on a' = -Wᵀa, dG = a xᵀ dt, values at the step's start
    h = T_LIN / N
    xs = [X0_LIN]
    for _ in range(N):
        xs.append(xs[-1] + h * W_LIN @ xs[-1])
    a = 2 * (xs[-1] - Y_LIN)
    G = np.zeros((D_LIN, D_LIN))
    for n in range(N, 0, -1):
        G += h * np.outer(a, xs[n])
        a = a + h * W_LIN.T @ a
    ref = tl.euler_adjoint_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN, N)
    np.testing.assert_allclose(ref, G, rtol=1e-12, atol=1e-13 * np.abs(G).max())
    # the closed-form gap
    Gd = tl.discrete_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN, N)
    np.testing.assert_allclose(ref - Gd, h * Gd @ W_LIN.T, rtol=1e-11, atol=1e-13 * np.abs(G).max())


def test_scalar_formulas_of_the_seed():
    w, x, y, N = 0.7, 1.2, 0.5, 10
    a = 1 + w / N  # T = 1
    xN = a**N * x
    assert tl.discrete_gradient(w, x, y, 1.0, N) == pytest.approx(2 * (xN - y) * a ** (N - 1) * x, rel=1e-14)
    assert tl.euler_adjoint_gradient(w, x, y, 1.0, N) == pytest.approx(2 * (xN - y) * a**N * x, rel=1e-14)


def test_continuous_gradient_and_first_order_convergence():
    G = tl.continuous_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN)
    # against AD through jax.scipy's expm of the continuous loss
    Lc = lambda W: jnp.sum((jax.scipy.linalg.expm(T_LIN * W) @ X0_LIN - Y_LIN) ** 2)
    G_ad = np.asarray(jax.jit(jax.grad(Lc))(jnp.asarray(W_LIN)))
    np.testing.assert_allclose(G, G_ad, rtol=1e-11, atol=1e-12 * np.abs(G).max())
    errs = {}
    for N in (200, 400, 800):
        errs[N] = (
            np.linalg.norm(tl.discrete_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN, N) - G),
            np.linalg.norm(tl.euler_adjoint_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN, N) - G),
            np.linalg.norm(tl.resnet_state(W_LIN, X0_LIN, T_LIN, N) - tl.ode_state(W_LIN, X0_LIN, T_LIN)),
        )
    # first order: halving h halves each error (to within the O(h²) term: measured 1.99–2.01)
    for k in range(3):
        for a, b in ((200, 400), (400, 800)):
            assert errs[a][k] / errs[b][k] == pytest.approx(2.0, rel=0.03)


def test_tied_linear_bad_input():
    with pytest.raises(ValueError, match="square"):
        tl.discrete_gradient(np.ones((2, 3)), np.ones(2), np.ones(2), 1.0, 3)
    with pytest.raises(ValueError, match="x0"):
        tl.discrete_gradient(np.eye(2), np.ones(3), np.ones(2), 1.0, 3)
    with pytest.raises(ValueError, match="N must"):
        tl.discrete_gradient(np.eye(2), np.ones(2), np.ones(2), 1.0, 0)
    with pytest.raises(ValueError, match="T must"):
        tl.continuous_gradient(np.eye(2), np.ones(2), np.ones(2), -1.0)
    with pytest.raises(ValueError, match="NaN"):
        tl.continuous_gradient(np.eye(2) * np.nan, np.ones(2), np.ones(2), 1.0)


def _final_state_cost(extra, Y, data):
    return jnp.sum((Y[:, -1, :] - data) ** 2)


def test_engine_adjoints_match_the_closed_forms():
    """pj's own gradients of the Euler Neural ODE: the discrete adjoint is the ResNet's
    gradient (DTO) and the interpolating continuous adjoint, which stores the forward
    states and integrates the adjoint with the same Euler steps, is G_OTD."""
    import pyodejl as pj
    from pyodejl.models.resnet import ResNetVectorField

    N = 5
    vf = ResNetVectorField(D_LIN, 1, activation="identity", T=T_LIN)  # f = W y + b, constant in t
    theta = np.concatenate([W_LIN.ravel(), np.zeros(D_LIN)])
    model = pj.NeuralODE(vf, solver="euler", dt=T_LIN / N)
    loss = pj.ObservationLoss(model, ts=[0.0, T_LIN], y0=X0_LIN, cost=_final_state_cost, data=Y_LIN)
    d2 = D_LIN * D_LIN
    G_dto = tl.discrete_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN, N)
    G_otd = tl.euler_adjoint_gradient(W_LIN, X0_LIN, Y_LIN, T_LIN, N)
    scale = np.abs(G_dto).max()
    g_discrete = loss.grad(theta, method="discrete")[:d2].reshape(D_LIN, D_LIN)
    g_interpolating = loss.grad(theta, method="interpolating")[:d2].reshape(D_LIN, D_LIN)
    np.testing.assert_allclose(g_discrete, G_dto, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(g_interpolating, G_otd, rtol=0, atol=1e-13 * scale)


def test_gelfand_hessian_and_complex_input():
    """The hand-written Gelfand derivative is a JVP rule: forward mode and Hessians work,
    and agree with plain AD of the normalised squaring loop (used for complex J)."""
    from pyodejl.stiffness.measures import _gelfand_autodiff

    J = jnp.asarray(np.random.default_rng(9).normal(size=(2, 4, 4)))
    f = lambda A: jnp.sum(spectral_radius(A, "gelfand", iterations=4))
    g = lambda A: jnp.sum(_gelfand_autodiff(A, 4))
    H, H_ad = np.asarray(jax.jit(jax.hessian(f))(J)), np.asarray(jax.jit(jax.hessian(g))(J))
    np.testing.assert_allclose(H, H_ad, rtol=0, atol=1e-12 * np.abs(H_ad).max())
    np.testing.assert_allclose(np.asarray(jax.grad(f)(J)), np.asarray(jax.grad(g)(J)), rtol=1e-12, atol=1e-14)
    # complex input: same value as the real matrix viewed as complex
    Jc = np.asarray(J[0]).astype(complex)
    assert float(spectral_radius(Jc, "gelfand")) == pytest.approx(float(spectral_radius(J[0], "gelfand")), rel=1e-13)
