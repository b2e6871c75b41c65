"""Input validation, exact matvec counting and NaN handling of pyodejl.spectral."""

import ast
import pathlib

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import LinearOperator

from pyodejl import spectral
from pyodejl.spectral import SpectrumOperator, as_operator


class UserCountedOperator(LinearOperator):
    """A user's operator that counts the columns it was applied to, independently."""

    def __init__(self, A):
        self.A = np.asarray(A)
        self.columns = 0
        self.block_calls = 0
        super().__init__(dtype=np.float64, shape=self.A.shape)

    def _matvec(self, x):
        self.columns += 1
        return self.A @ np.ravel(x)

    def _matmat(self, X):
        self.columns += X.shape[1]
        self.block_calls += 1
        return self.A @ X


class NaNAfter(LinearOperator):
    def __init__(self, A, after):
        self.A, self.after, self.calls = A, after, 0
        super().__init__(dtype=np.float64, shape=A.shape)

    def _matvec(self, x):
        self.calls += 1
        y = self.A @ np.ravel(x)
        if self.calls > self.after:
            y[3] = np.nan
        return y


@pytest.fixture(scope="module")
def sym():
    return SpectrumOperator(np.linspace(-1, 5, 60), seed=0).to_dense()


def _all_calls(op):
    return {
        "lanczos": lambda: spectral.eigenvalues(op, k=3, seed=0),
        "power": lambda: spectral.eigenvalues(op, k=2, method="power", tol=1e-6, seed=0),
        "eigsh": lambda: spectral.eigenvalues(op, k=3, method="eigsh", seed=0),
        "dense": lambda: spectral.eigenvalues(op, k=3, method="dense", seed=0),
        "hutchinson": lambda: spectral.trace(op, num_matvecs=17, method="hutchinson", seed=0),
        "adaptive": lambda: spectral.trace(op, num_matvecs=40, method="hutchinson", seed=0,
                                           epsilon=0.5),
        "hutch++": lambda: spectral.trace(op, num_matvecs=20, method="hutch++", seed=0),
        "density": lambda: spectral.density(op, num_steps=12, num_probes=3, seed=0),
        "sketch": lambda: spectral.sketch(op, d=7, seed=0, refine_steps=2),
    }


@pytest.mark.parametrize("name", list(_all_calls(None)))
def test_matvec_count_is_exact(sym, name):
    op = UserCountedOperator(sym)
    res = _all_calls(op)[name]()
    assert res.matvecs == op.columns
    assert res.matvecs > 0


def test_fixed_budget_counts(sym):
    op = UserCountedOperator(sym)
    assert spectral.trace(op, num_matvecs=17, method="hutchinson", seed=0).matvecs == 17
    assert spectral.trace(op, num_matvecs=20, method="hutch++", seed=0).matvecs == 20
    assert spectral.sketch(op, d=7, seed=0, refine_steps=2).matvecs == 21
    assert spectral.density(op, num_steps=12, num_probes=3, seed=0).matvecs == 36
    assert spectral.eigenvalues(op, k=3, method="dense").matvecs == 60


def test_blocks_use_matmat(sym):
    op = UserCountedOperator(sym)
    spectral.trace(op, num_matvecs=30, method="hutch++", seed=0)
    assert op.block_calls == 3  # sketch, exact part, probes: one block each
    op = UserCountedOperator(sym)
    spectral.density(op, num_steps=10, num_probes=4, seed=0)
    assert op.block_calls == 10  # one block of 4 probes per Lanczos step


@pytest.mark.parametrize("name", list(_all_calls(None)))
def test_nan_from_operator_raises(sym, name):
    op = NaNAfter(sym, after=5)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        _all_calls(op)[name]()


@pytest.mark.parametrize("name", list(_all_calls(None)))
def test_same_seed_same_numbers(sym, name):
    r1 = _all_calls(sym)[name]()
    r2 = _all_calls(sym)[name]()
    for field in ("eigenvalues", "estimate", "nodes", "weights", "trace"):
        if hasattr(r1, field):
            assert np.array_equal(getattr(r1, field), getattr(r2, field))


def test_different_seeds_differ(sym):
    a = spectral.trace(sym, num_matvecs=10, method="hutchinson", seed=1).estimate
    b = spectral.trace(sym, num_matvecs=10, method="hutchinson", seed=2).estimate
    assert a != b


def test_non_square_raises():
    with pytest.raises(ValueError, match="square"):
        spectral.eigenvalues(np.ones((4, 5)), k=1)
    with pytest.raises(ValueError, match="square"):
        spectral.trace(np.ones(5))
    op = LinearOperator((4, 5), matvec=lambda x: np.ones(4), dtype=float)
    with pytest.raises(ValueError, match="square"):
        spectral.density(op)


def test_non_symmetric_detected():
    A = np.arange(16.0).reshape(4, 4)
    with pytest.raises(ValueError, match="not symmetric"):
        spectral.eigenvalues(A, k=1)
    with pytest.raises(ValueError, match="not symmetric"):
        spectral.trace(csr_matrix(A))
    # operators: only with the randomized check, whose 2 matvecs are counted
    user = UserCountedOperator(A)
    with pytest.raises(ValueError, match="not symmetric"):
        spectral.sketch(user, d=2, check_symmetric=True, seed=0)
    sym = UserCountedOperator(A + A.T)
    res = spectral.trace(sym, num_matvecs=6, method="hutch++", check_symmetric=True, seed=0)
    assert res.matvecs == 8 == sym.columns


def test_bad_k_which_method(sym):
    with pytest.raises(ValueError, match="1 <= k < p"):
        spectral.eigenvalues(sym, k=60)
    with pytest.raises(ValueError, match="1 <= k < p"):
        spectral.eigenvalues(sym, k=0)
    with pytest.raises(ValueError, match="'largest', 'smallest', 'both', 'magnitude'"):
        spectral.eigenvalues(sym, k=2, which="top")
    with pytest.raises(ValueError, match="method must be one of"):
        spectral.eigenvalues(sym, k=2, method="arnoldi")
    with pytest.raises(ValueError, match="method must be one of"):
        spectral.trace(sym, method="hutch+")
    with pytest.raises(ValueError, match="k >= 2"):
        spectral.eigenvalues(sym, k=1, which="both")
    with pytest.raises(NotImplementedError, match="largest-magnitude"):
        spectral.eigenvalues(sym, k=2, which="smallest", method="power")
    with pytest.raises(ValueError, match="d must be"):
        spectral.sketch(sym, d=61)
    with pytest.raises(ValueError, match="num_steps"):
        spectral.density(sym, num_steps=61)
    with pytest.raises(ValueError, match="hutch\\+\\+ needs"):
        spectral.trace(sym, num_matvecs=2, method="hutch++")


def test_bad_types():
    with pytest.raises(TypeError, match="LinearOperator"):
        spectral.eigenvalues("matrix", k=1)
    with pytest.raises(TypeError, match="complex"):
        spectral.trace(np.eye(3) * 1j)
    with pytest.raises(ValueError, match="NaN or inf"):
        spectral.trace(np.full((3, 3), np.nan))


def test_counting_operator_is_a_linear_operator(sym):
    A = as_operator(sym)
    y = A.matmat(np.eye(60)[:, :5])
    assert A.matvecs == 5
    np.testing.assert_allclose(y, sym[:, :5])
    A.matvec(np.ones(60))
    assert A.matvecs == 6


def test_spectral_imports_only_numpy_scipy():
    allowed = {"numpy", "scipy", "__future__", "dataclasses", "math", "numbers",
               "warnings", "typing", "functools"}
    root = pathlib.Path(spectral.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] in allowed, f"{path.name} imports {m}"
