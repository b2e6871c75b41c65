"""Spectral plots draw what they are given and return the Axes."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pyodejl import plotting, spectral  # noqa: E402
from pyodejl.spectral import SpectrumOperator, outlier_bulk_spectrum  # noqa: E402


@pytest.fixture(scope="module")
def op():
    return SpectrumOperator(outlier_bulk_spectrum(200, 5, seed=0), seed=0)


def test_histogram_log_counts(op):
    fig, ax = plt.subplots()
    out = plotting.plot_eigenvalue_histogram(op.eigenvalues, bins=20, ax=ax)
    assert out is ax and ax.get_yscale() == "log"
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == pytest.approx(200)
    plt.close(fig)


def test_density_and_cdf_plots(op):
    d = spectral.density(op, num_steps=20, num_probes=3, seed=0)
    ax = plotting.plot_density(d)
    x, y = ax.lines[0].get_data()
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.05)
    ax2 = plotting.plot_cumulative_density(op.eigenvalues, complementary=True)
    x, y = ax2.lines[0].get_data()
    assert y[0] == pytest.approx(1.0) and y[-1] == pytest.approx(0.0)
    ax3 = plotting.plot_cumulative_density(d)
    assert ax3.lines[0].get_data()[1][-1] == pytest.approx(1.0)
    plt.close("all")


def test_ritz_convergence_and_sketch_error(op):
    res = spectral.eigenvalues(op, k=3, seed=0, record_history=True)
    ax = plotting.plot_ritz_convergence(res.history, true_eigenvalues=op.eigenvalues[:3])
    xs = np.concatenate([ln.get_xdata() for ln in ax.lines if ln.get_marker() == "o"])
    assert xs.max() == res.matvecs
    ax = plotting.plot_sketch_error([10, 20, 40], np.ones((3, 4)) * [[3], [2], [1]])
    assert list(ax.lines[0].get_ydata()) == [3, 2, 1]
    plt.close("all")
