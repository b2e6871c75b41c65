"""Estimators past Hutch++: XTrace, XNysTrace, XDiag, the Hutchinson diagonal, deflated
SLQ and KPM, against operators with exactly known spectra.

References are independent of the code under test: the leave-one-out definitions
computed naively (one QR / one Nyström solve per test vector, no downdating), exact
traces, diagonals and eigenvalue measures, and Chebyshev moments from the spectrum.
Statistical checks use fixed seeds and bounds of 4–5 standard errors.
"""

import math

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator

from pyodejl import spectral
from pyodejl.spectral import SpectrumOperator, hutchinson_variance, outlier_bulk_spectrum
from pyodejl.spectral.density import jackson_damping


class Counted(LinearOperator):
    """A user's operator that counts the columns it is applied to."""

    def __init__(self, A):
        self.A = np.asarray(A, float)
        self.columns = 0
        super().__init__(dtype=float, shape=self.A.shape)

    def _matvec(self, x):
        self.columns += 1
        return self.A @ np.ravel(x)

    def _matmat(self, X):
        self.columns += X.shape[1]
        return self.A @ X


def _dense(lam, seed=0):
    return SpectrumOperator(lam, seed=seed).to_dense()


def _test_vectors(seed, p, m, distribution):
    # the first draw of trace()/diagonal() with this seed (no symmetry check for arrays)
    rng = np.random.default_rng(seed)
    if distribution == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(p, m))
    Z = rng.standard_normal((p, m))
    return Z * (np.sqrt(p) / np.linalg.norm(Z, axis=0)) if distribution == "sphere" else Z


def _naive_xtrace(M, Om, improved):
    p, m = Om.shape
    t = []
    for i in range(m):
        Qi, _ = np.linalg.qr(M @ np.delete(Om, i, axis=1))
        w = Om[:, i] - Qi @ (Qi.T @ Om[:, i])
        q = w @ M @ w * ((p - m + 1) / (w @ w) if improved else 1.0)
        t.append(np.trace(Qi.T @ M @ Qi) + q)
    return np.array(t)


def _naive_xnystrace(M, Om, improved):
    p, m = Om.shape
    t = []
    for i in range(m):
        Oi = np.delete(Om, i, axis=1)
        Y = M @ Oi
        Ahat = Y @ np.linalg.solve(Oi.T @ Y, Y.T)
        w = Om[:, i]
        q = w @ (M - Ahat) @ w
        if improved:
            Qo, _ = np.linalg.qr(Oi)
            wp = w - Qo @ (Qo.T @ w)
            q *= (p - m + 1) / (wp @ wp)
        t.append(np.trace(Ahat) + q)
    return np.array(t)


def _naive_xdiag(M, Om):
    p, m = Om.shape
    d = []
    for i in range(m):
        Qi, _ = np.linalg.qr(M @ np.delete(Om, i, axis=1))
        P = Qi @ Qi.T
        d.append(np.diag(P @ M) + Om[:, i] * ((np.eye(p) - P) @ M @ Om[:, i]))
    return np.array(d)


def _loo_error(t):
    m = len(t)
    return np.sqrt(np.sum((t - t.mean(axis=0)) ** 2, axis=0) / (m * (m - 1)))


@pytest.fixture(scope="module")
def small():
    p = 60
    lam = np.arange(1, p + 1) ** -1.0 * np.where(np.arange(p) % 3 == 0, -1.0, 1.0)
    return _dense(lam, 0), _dense(np.abs(lam), 0)


@pytest.mark.parametrize("distribution", ["sphere", "gaussian", "rademacher"])
@pytest.mark.parametrize("m", [2, 7, 30])
def test_xtrace_equals_leave_one_out_definition(small, distribution, m):
    M, _ = small
    res = spectral.trace(M, num_matvecs=2 * m, method="xtrace", seed=3,
                         distribution=distribution)
    t = _naive_xtrace(M, _test_vectors(3, 60, m, distribution), distribution == "sphere")
    # both are O(m) float64 operations on O(1) numbers
    assert np.allclose(res.samples, t, rtol=0, atol=1e-12)
    assert res.estimate == pytest.approx(t.mean(), abs=1e-12)
    assert res.error_estimate == pytest.approx(_loo_error(t), rel=1e-9)
    assert res.std_error == res.error_estimate and res.distribution == distribution


@pytest.mark.parametrize("distribution", ["sphere", "gaussian"])
@pytest.mark.parametrize("m", [2, 7, 30])
def test_xnystrace_equals_leave_one_out_definition(small, distribution, m):
    _, P = small
    res = spectral.trace(P, num_matvecs=m, method="xnystrace", seed=4,
                         distribution=distribution)
    t = _naive_xnystrace(P, _test_vectors(4, 60, m, distribution), distribution == "sphere")
    # the stabilising shift nu ~ sqrt(p) eps ||Y|| changes t_i by ~1e-13 here; the naive
    # solve of the (m-1)x(m-1) core loses up to cond ~ 1e4 of it: 1e-9 covers both
    assert np.allclose(res.samples, t, rtol=0, atol=1e-9)
    assert res.error_estimate == pytest.approx(_loo_error(t), rel=1e-6)


@pytest.mark.parametrize("m", [2, 9, 25])
def test_xdiag_equals_leave_one_out_definition(small, m):
    M, _ = small
    res = spectral.diagonal(M, num_matvecs=2 * m, method="xdiag", seed=5)
    d = _naive_xdiag(M, _test_vectors(5, 60, m, "rademacher"))
    assert np.allclose(res.estimate, d.mean(axis=0), rtol=0, atol=1e-12)
    assert np.allclose(res.error_estimate, _loo_error(d), rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("budget", [20, 21])
def test_exact_when_rank_below_half_budget(budget):
    p, r = 200, budget // 2 - 1  # the largest rank with rank < budget // 2
    signs = np.where(np.arange(r) % 2 == 0, 1.0, -1.0)
    lam = np.concatenate([np.geomspace(1, 1000, r) * signs, np.zeros(p - r)])
    scale = np.abs(lam).sum()
    M = _dense(lam, 1)
    res = spectral.trace(M, num_matvecs=budget, method="xtrace", seed=0)
    assert res.matvecs == 2 * (budget // 2)
    # round-off only: observed <= 5e-16 relative to sum |lambda|
    assert abs(res.estimate - lam.sum()) < 1e-12 * scale
    assert res.error_estimate < 1e-12 * scale
    d = spectral.diagonal(M, num_matvecs=budget, method="xdiag", seed=0)
    assert np.max(np.abs(d.estimate - np.diag(M))) < 1e-12 * np.max(np.abs(lam))
    # XNysTrace (PSD, all m = budget products are test vectors): exact for rank < m. The
    # downdate from the full m x m core (rank r + shift, condition ~1e13) to the
    # well-conditioned leave-one-out cores amplifies round-off: observed 3e-12 ... 4e-8
    # relative over seeds 0-4
    Mp = _dense(np.abs(lam), 1)
    for seed in range(5):
        resn = spectral.trace(Mp, num_matvecs=r + 1, method="xnystrace", seed=seed)
        assert resn.matvecs == r + 1
        assert abs(resn.estimate - scale) < 4e-7 * scale
    # one rank more than the leave-one-out sketch holds: no longer exact
    lam2 = np.concatenate([np.geomspace(1, 1000, r + 1), np.zeros(p - r - 1)])
    err2 = abs(spectral.trace(_dense(lam2, 1), num_matvecs=budget, method="xtrace",
                              seed=0).estimate - lam2.sum())
    assert err2 > 1e-6 * lam2.sum()


@pytest.fixture(scope="module")
def bulk():
    # indefinite, slowly decaying: far from exact, so the statistics are not trivial
    lam = outlier_bulk_spectrum(120, num_outliers=4, outlier_range=(2.0, 5.0),
                                bulk_scale=0.5, zero_fraction=0.2, seed=7)
    return _dense(lam, 7), lam


@pytest.mark.parametrize("method,distribution",
                         [("xtrace", "sphere"), ("xtrace", "rademacher"),
                          ("xnystrace", "sphere"), ("xnystrace", "gaussian")])
def test_unbiased_over_seeds(bulk, method, distribution):
    M, lam = bulk
    if method == "xnystrace":
        lam = np.abs(lam)
        M = _dense(lam, 7)
    n = 400
    est = np.array([spectral.trace(M, num_matvecs=16, method=method, seed=s,
                                   distribution=distribution).estimate for s in range(n)])
    se = est.std(ddof=1) / math.sqrt(n)
    # the mean of 400 i.i.d. estimates: |z| < 4 fails with probability 6e-5 if unbiased
    assert abs(est.mean() - lam.sum()) < 4 * se
    assert se > 1e-3 * abs(lam.sum())  # the check is not vacuous


@pytest.mark.parametrize("method", ["xdiag", "hutchinson"])
def test_diagonal_unbiased_entrywise(bulk, method):
    M, _ = bulk
    n = 300
    D = np.array([spectral.diagonal(M, num_matvecs=12, method=method, seed=s).estimate
                  for s in range(n)])
    z = (D.mean(axis=0) - np.diag(M)) / (D.std(axis=0, ddof=1) / math.sqrt(n))
    # 120 entries: P(max |z| > 5) <= 120 * 5.7e-7 if every entry is unbiased
    assert np.max(np.abs(z)) < 5


def test_hutchinson_diagonal_variance_and_error_estimate(bulk):
    M, _ = bulk
    N = 200
    res = spectral.diagonal(M, num_matvecs=N, method="hutchinson", seed=1)
    assert res.matvecs == N
    # Rademacher: Var(z_i (Mz)_i) = sum_{j != i} M_ij^2
    sd = np.sqrt((np.sum(M * M, axis=1) - np.diag(M) ** 2) / N)
    assert np.max(np.abs(res.estimate - np.diag(M)) / sd) < 5
    assert 0.7 < np.median(res.error_estimate / sd) < 1.3
    # exact on a diagonal matrix with sign probes (Bekas et al. 2007)
    d = np.linspace(-1, 3, 50)
    assert np.allclose(spectral.diagonal(np.diag(d), num_matvecs=3, method="hutchinson",
                                         seed=0).estimate, d, rtol=0, atol=1e-15)


def test_xdiag_beats_hutchinson_on_decaying_spectrum():
    lam = 0.8 ** np.arange(300)
    M = _dense(lam, 2)
    d = np.diag(M)
    err = {m: np.median([np.linalg.norm(spectral.diagonal(M, num_matvecs=60, method=m,
                                                          seed=s).estimate - d)
                         for s in range(10)]) / np.linalg.norm(d)
           for m in ("xdiag", "hutchinson")}
    # the 29-dim leave-one-out sketch leaves a residual of norm ~0.8^25 ~ 4e-3;
    # observed ratio ~1/100
    assert err["xdiag"] < 0.05 * err["hutchinson"], err


def test_error_estimate_has_the_right_order(bulk):
    M, lam = bulk
    res = [spectral.trace(M, num_matvecs=30, method="xtrace", seed=s) for s in range(60)]
    err = np.array([r.estimate - lam.sum() for r in res])
    est = np.array([r.error_estimate for r in res])
    ratio = np.sqrt(np.mean(err ** 2)) / np.sqrt(np.mean(est ** 2))
    # observed 1.09 here, 1.2-1.5 on the spectra of benchmarks/trace_estimators.py
    assert 1 / 3 < ratio < 3, ratio
    assert np.mean(np.abs(err) <= 3 * est) >= 0.8


@pytest.mark.parametrize("name,lam", [
    ("exponential 0.9^k", 0.9 ** np.arange(300)),
    ("exponential 0.8^k", 0.8 ** np.arange(300)),
])
def test_xtrace_halves_hutchpp_error_on_fast_decay(name, lam):
    M = _dense(lam, 0)
    med = {}
    for meth in ("hutch++", "xtrace"):
        med[meth] = np.median([abs(spectral.trace(M, num_matvecs=60, method=meth,
                                                  seed=s).estimate - lam.sum())
                               for s in range(50)])
    # issue 12 target: XTrace median error <= 0.5x Hutch++'s at 60 matvecs (observed
    # 0.41 and 0.19; on polynomial decay the ratio is ~0.5 for k^-3 and ~0.8 for k^-2,
    # see benchmarks/trace_estimators.py, so the target is only claimed for exponential)
    assert med["xtrace"] <= 0.5 * med["hutch++"], (name, med)


def test_matvec_counts_are_exact_and_reproducible(bulk):
    M, lam = bulk
    P = _dense(np.abs(lam), 7)
    calls = {
        "xtrace": (M, lambda op: spectral.trace(op, num_matvecs=30, method="xtrace", seed=0), 30),
        "xtrace odd": (M, lambda op: spectral.trace(op, num_matvecs=31, method="xtrace",
                                                    seed=0), 30),
        "xnystrace": (P, lambda op: spectral.trace(op, num_matvecs=31, method="xnystrace",
                                                   seed=0), 31),
        "xdiag": (M, lambda op: spectral.diagonal(op, num_matvecs=25, method="xdiag",
                                                  seed=0), 24),
        "hutchinson diag": (M, lambda op: spectral.diagonal(op, num_matvecs=25,
                                                            method="hutchinson", seed=0,
                                                            block_size=7), 25),
        "kpm": (M, lambda op: spectral.density(op, num_steps=12, num_probes=3, seed=0,
                                               method="kpm", bound_steps=15), 15 + 36),
        "kpm bounds": (M, lambda op: spectral.density(op, num_steps=12, num_probes=3, seed=0,
                                                      method="kpm", bounds=(-10, 10)), 36),
        "deflated": (M, lambda op: spectral.density(op, num_steps=12, num_probes=3, seed=0,
                                                    method="deflated_slq", num_deflate=4),
                     None),
    }
    for name, (A, call, expected) in calls.items():
        op = Counted(A)
        r = call(op)
        assert r.matvecs == op.columns, name
        if expected is not None:
            assert r.matvecs == expected, name
        again = call(A)
        for f in ("estimate", "nodes", "weights"):
            if hasattr(r, f):
                assert np.array_equal(getattr(r, f), getattr(again, f)), name
    # the symmetry check's 2 products are counted too
    op = Counted(M)
    assert spectral.trace(op, num_matvecs=10, method="xtrace", seed=0,
                          check_symmetric=True).matvecs == 12 == op.columns


def test_xnystrace_refuses_indefinite():
    lam = np.concatenate([np.ones(50), -np.ones(50)])
    with pytest.raises(ValueError, match="positive semi-definite.*xtrace"):
        spectral.trace(_dense(lam), num_matvecs=20, method="xnystrace", seed=0)
    # also a PSD operator with a clearly negative direction added
    lam = np.concatenate([np.geomspace(1, 100, 10), np.zeros(89), [-5.0]])
    with pytest.raises(ValueError, match="indefinite"):
        spectral.trace(_dense(lam), num_matvecs=30, method="xnystrace", seed=0)
    # xtrace has no such restriction
    r = spectral.trace(_dense(lam), num_matvecs=30, method="xtrace", seed=0)
    assert abs(r.estimate - lam.sum()) < 1e-8 * np.abs(lam).sum()
    # a PSD operator with many exact zeros is accepted (zero Rayleigh quotients are fine)
    lam = np.concatenate([np.geomspace(1, 100, 5), np.zeros(95)])
    spectral.trace(_dense(lam), num_matvecs=30, method="xnystrace", seed=0)


def test_bad_input():
    M = _dense(np.linspace(-1, 2, 20))
    with pytest.raises(ValueError, match="xtrace needs num_matvecs >= 4"):
        spectral.trace(M, num_matvecs=3, method="xtrace")
    with pytest.raises(ValueError, match="xnystrace needs num_matvecs >= 2"):
        spectral.trace(M, num_matvecs=1, method="xnystrace")
    with pytest.raises(ValueError, match="xdiag needs num_matvecs >= 4"):
        spectral.diagonal(M, num_matvecs=3, method="xdiag")
    with pytest.raises(ValueError, match="more than p = 20"):
        spectral.trace(M, num_matvecs=42, method="xtrace")
    with pytest.raises(ValueError, match="more than p = 20"):
        spectral.diagonal(M, num_matvecs=42, method="xdiag")
    with pytest.raises(ValueError, match="positive int"):
        spectral.trace(M, num_matvecs=0, method="xtrace")
    with pytest.raises(ValueError, match="method must be one of.*'xtrace', 'xnystrace'"):
        spectral.trace(M, method="xtrace++")
    with pytest.raises(ValueError, match="method must be one of.*'xdiag'"):
        spectral.diagonal(M, method="exact")
    with pytest.raises(ValueError, match="method must be one of.*'kpm'"):
        spectral.density(M, method="lanczos")
    with pytest.raises(ValueError, match="distribution"):
        spectral.diagonal(M, distribution="sphere")
    for call in (lambda A: spectral.trace(A, method="xtrace"),
                 lambda A: spectral.diagonal(A),
                 lambda A: spectral.density(A, method="kpm")):
        with pytest.raises(ValueError, match="square"):
            call(np.ones((4, 5)))
    with pytest.raises(ValueError, match="num_deflate"):
        spectral.density(M, num_steps=5, method="deflated_slq", num_deflate=20)
    with pytest.raises(ValueError, match="p - num_deflate"):
        spectral.density(M, num_steps=18, method="deflated_slq", num_deflate=5)
    with pytest.raises(ValueError, match="a < b"):
        spectral.density(M, num_steps=5, method="kpm", bounds=(2, -1))
    # the spectrum [-1, 2] is not inside [-1, 1]: the Chebyshev vectors blow up
    with pytest.raises(ValueError, match="not inside the KPM interval"):
        spectral.density(M, num_steps=10, method="kpm", bounds=(-1, 1), seed=0)


def _w1(res, lam):
    lam = np.sort(lam)
    xs = np.sort(np.concatenate([lam, res.nodes]))
    F = res.cdf(xs[:-1])
    G = np.searchsorted(lam, xs[:-1], side="right") / len(lam)
    return float(np.sum(np.abs(F - G) * np.diff(xs)))


@pytest.fixture(scope="module")
def outliers():
    lam = outlier_bulk_spectrum(300, num_outliers=8, seed=2)
    return SpectrumOperator(lam, seed=2), lam


def test_deflated_slq_is_exact_on_outliers_and_better_than_slq(outliers):
    A, lam = outliers
    p, k = len(lam), 8
    w_plain, w_defl, m2_plain, m2_defl = [], [], [], []
    for s in range(5):
        d = spectral.density(A, num_steps=25, num_probes=4, seed=s, method="deflated_slq",
                             num_deflate=k)
        plain = spectral.density(A, num_steps=25, num_probes=4, seed=s)
        assert d.method == "deflated_slq" and plain.method == "slq"
        # the deflated eigenvalues are the true outliers, each weighing 1/p
        assert np.allclose(d.deflated_eigenvalues, lam[:k], rtol=0, atol=1e-7 * lam[0])
        assert np.allclose(d.nodes[:k], lam[:k], rtol=0, atol=1e-7 * lam[0])
        assert np.allclose(d.weights[:k], 1 / p)
        assert d.weights.sum() == pytest.approx(1.0, abs=1e-12) and np.all(d.weights >= 0)
        # the rest lives in the bulk
        assert np.all(d.nodes[k:] <= lam[k] + 1e-7 * lam[0])
        w_plain.append(_w1(plain, lam))
        w_defl.append(_w1(d, lam))
        m2 = np.mean(lam ** 2)
        m2_plain.append(abs(np.sum(plain.weights * plain.nodes ** 2) - m2) / m2)
        m2_defl.append(abs(np.sum(d.weights * d.nodes ** 2) - m2) / m2)
    # the outliers dominate both the W1 distance and the 2nd moment of SLQ's error;
    # observed ratios ~1/250 and ~4e-6: assert 1/10
    assert np.median(w_defl) < 0.1 * np.median(w_plain)
    assert np.median(m2_defl) < 0.1 * np.median(m2_plain)


def test_kpm_moments_and_density():
    p = 200
    lam = np.concatenate([np.linspace(-1.0, 1.0, 150), np.linspace(2.0, 3.0, 50)])
    A = SpectrumOperator(lam, seed=3)
    m, n = 20, 30
    d = spectral.density(A, num_steps=m, num_probes=n, seed=3, method="kpm")
    lo, hi = d.bounds
    assert lo < lam.min() and hi > lam.max()  # Lanczos-based bounds contain the spectrum
    # ... widened by the last Lanczos residual norm on each side (Zhou & Li's safe bound;
    # observed 1.44x the true range here)
    assert hi - lo < 1.6 * np.ptp(lam)
    assert d.matvecs == 20 + m * n and d.moments.shape == (2 * m + 1,)
    assert np.all(d.weights >= 0) and d.weights.sum() == pytest.approx(1.0, abs=1e-12)
    c, h = (hi + lo) / 2, (hi - lo) / 2
    lt = (lam - c) / h
    Q = A.eigenvectors
    g = jackson_damping(2 * m + 1)
    x = (d.nodes - c) / h
    for k in range(2 * m + 1):
        Tk = np.cos(k * np.arccos(np.clip(lt, -1, 1)))
        # the estimated moment is a Hutchinson estimate of tr(T_k(A~))/p from n unit probes
        sigma = math.sqrt(hutchinson_variance((Q * Tk) @ Q.T) / n) / p
        assert abs(d.moments[k] - Tk.mean()) <= 4 * sigma + 1e-12, k
        # the Gauss-Chebyshev nodes reproduce the Jackson-damped moments exactly
        assert np.sum(d.weights * np.cos(k * np.arccos(np.clip(x, -1, 1)))) == \
            pytest.approx(g[k] * d.moments[k], abs=1e-10)
    # density vs the eigenvalue measure: the Jackson kernel has width ~ pi h / N
    # (Weisse et al. 2006, Eq. 75), which bounds the W1 distance up to stochastic error
    assert _w1(d, lam) < np.pi * h / (2 * m + 1)
    # the gap (1, 2) holds little mass; the two blocks hold 3/4 and 1/4
    assert d.cdf(1.5) == pytest.approx(0.75, abs=0.05)
