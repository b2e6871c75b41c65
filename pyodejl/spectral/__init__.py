"""Spectral toolkit: what users read off a (Hessian) operator.

NumPy/SciPy only; works on any real symmetric ``scipy.sparse.linalg.LinearOperator``
or ndarray — pyodejl's Hessian operators, or a PyTorch HVP wrapped by a user. Every
result reports ``matvecs``, the exact number of operator applications it used (a block
of ``k`` columns counts ``k``).

* :func:`eigenvalues` — extreme eigenpairs (``"lanczos"``, ``"power"``, ``"eigsh"``,
  ``"dense"``).
* :func:`trace` — Hutchinson (fixed or adaptive Chebyshev budget), Hutch++, XTrace and
  XNysTrace.
* :func:`chebyshev_sample_count`, :func:`hutchinson_variance` — seed 002's bound.
* :func:`density` — stochastic Lanczos quadrature (plain or deflated) and the kernel
  polynomial method.
* :func:`diagonal` — Hutchinson (Bekas et al.) and XDiag diagonal estimates.
* :func:`sketch` — seed 003's ``SᵀAS`` sketch and its refinement.
* :class:`SpectrumOperator`, :func:`student_t_spectrum`, :func:`outlier_bulk_spectrum`
  — operators with exactly known spectra.
"""

from ._operator import CountingOperator, as_operator
from .density import DENSITY_METHODS, DensityResult, density, jackson_damping
from .diagonal import DIAGONAL_METHODS, DiagonalResult, diagonal
from .eigen import METHODS, WHICH, EigenResult, eigenvalues
from .sketch import SketchResult, sketch
from .synthetic import SpectrumOperator, outlier_bulk_spectrum, random_orthogonal, student_t_spectrum
from .trace import TRACE_METHODS, TraceResult, chebyshev_sample_count, hutchinson_variance, trace

__all__ = [
    "eigenvalues", "EigenResult", "WHICH", "METHODS",
    "trace", "TraceResult", "TRACE_METHODS", "chebyshev_sample_count", "hutchinson_variance",
    "diagonal", "DiagonalResult", "DIAGONAL_METHODS",
    "density", "DensityResult", "DENSITY_METHODS", "jackson_damping",
    "sketch", "SketchResult",
    "SpectrumOperator", "student_t_spectrum", "outlier_bulk_spectrum", "random_orthogonal",
    "as_operator", "CountingOperator",
]
