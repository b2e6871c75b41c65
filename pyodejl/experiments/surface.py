"""Loss surfaces along the top Hessian eigenvectors (seed 003 Fig. 1, as PyHessian draws them)."""

from __future__ import annotations

import numpy as np

__all__ = ["loss_surface", "run_surface"]


def loss_surface(obj, theta, directions=None, radius=1.0, num=21, method=None, chunk=64):
    """Loss on a grid in the plane of two directions through θ.

    Args:
        obj: a pyodejl objective.
        theta: ``(p,)``.
        directions: ``(p, 2)`` orthonormal columns; default the eigenvectors of the
            two largest Hessian eigenvalues (exact ``eigh`` for p <= 1000, else Lanczos).
        radius: the grid spans ``[-radius, radius]`` along each direction.
        num: grid points per axis (default 21).
        method: Hessian method for the directions (default ``"auto"``).
        chunk: losses evaluated per compiled batch (default 64).

    Returns:
        ``(alphas (num,), betas (num,), Z (num, num), directions (p, 2))`` with
        ``Z[i, j] = L(θ + alphas[j] d1 + betas[i] d2)``; NaN where a solve failed.
    """
    theta = np.asarray(theta, dtype=np.float64)
    p = obj.num_params
    if directions is None:
        if p <= 1000:
            H = obj.hessian(theta, method=method)
            _, U = np.linalg.eigh(0.5 * (H + H.T))
            directions = U[:, [-1, -2]]
        else:
            from pyodejl.spectral import eigenvalues

            res = eigenvalues(obj.hessian_operator(theta, method=method), k=2, which="largest", seed=0)
            directions = res.eigenvectors[:, :2]
    D = np.asarray(directions, dtype=np.float64)
    if D.shape != (p, 2):
        raise ValueError(f"directions must have shape ({p}, 2), got {D.shape}")
    alphas = np.linspace(-radius, radius, num)
    betas = np.linspace(-radius, radius, num)
    A, B = np.meshgrid(alphas, betas)
    thetas = theta[None, :] + A.reshape(-1, 1) * D[:, 0] + B.reshape(-1, 1) * D[:, 1]
    vals = np.empty(len(thetas))
    for s in range(0, len(thetas), chunk):
        block = thetas[s : s + chunk]
        pad = chunk - len(block)
        if pad:  # one compiled batch shape
            block = np.concatenate([block, np.repeat(block[-1:], pad, axis=0)])
        vals[s : s + chunk] = obj.values(block, batch=chunk)[: chunk - pad]
    return alphas, betas, vals.reshape(num, num), D


def run_surface(run, radius=None, num=21):
    """:func:`loss_surface` at a run's last tracked θ, for :func:`pyodejl.plotting.plot_runs`.

    Args:
        run: a :class:`pyodejl.experiments.Run`.
        radius: grid half-width; default max(0.5, ‖θ‖ / (2√p)).
        num: grid points per axis.

    Returns:
        ``(alphas, betas, Z, step)``.
    """
    from pyodejl.experiments.tracking import objective_from_run

    params = run.params()
    last = max(params)
    obj = objective_from_run(run.path)
    r = radius if radius is not None else max(0.5, 0.5 * float(np.linalg.norm(params[last])) / np.sqrt(obj.num_params))
    a, b, Z, _ = loss_surface(obj, params[last], radius=r, num=num)
    return a, b, Z, last
