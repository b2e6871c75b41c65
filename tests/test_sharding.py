"""Products sharded over 4 host devices equal single-device products.

JAX fixes its device count at start-up, so each check runs in a fresh
interpreter with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``. The
bound 1e-12 is the issue's; the sharded and single-device programs differ only
in the order of floating-point reductions (observed ≤ 1e-14).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    r"""
    import json, numpy as np, pyodejl as pj
    from pyodejl import spectral
    out = {}
    ts = np.linspace(0, 1, 5)
    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(8, 2))
    targets = np.stack([np.stack([np.cos(ts + k), np.sin(ts)], 1) for k in range(8)])
    model = pj.NeuralODE(pj.MLP([2, 6, 2], "tanh"), rtol=1e-8, atol=1e-10)
    theta = model.init(1)
    V = rng.normal(size=(model.num_params, 3))
    res = {}
    for n in (1, 4):
        obj = pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, devices=n,
                                regularizers=[pj.regularizers.KineticEnergy(0.1)])
        res[n] = dict(value=obj.value(theta), grad=obj.grad(theta), backsolve=obj.grad(theta, method="backsolve"),
                      hvp=obj.hvp(theta, V), hvp_soa=obj.hvp(theta, V[:, :1], method="adjoint-adjoint"),
                      eig=spectral.eigenvalues(obj.hessian_operator(theta), k=3, which="largest", seed=0).eigenvalues,
                      sharded=str(obj._y0_aug.sharding))
    rel = lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
    for k in ("value", "grad", "backsolve", "hvp", "hvp_soa", "eig"):
        out[k] = rel(res[4][k], res[1][k])
    out["sharding"] = res[4]["sharded"]
    errors = {}
    for kw in ({"devices": 8}, {"devices": 4, "y0": y0[:6], "targets": targets[:6]}):
        args = dict(y0=y0, targets=targets); args.update({k: v for k, v in kw.items() if k != "devices"})
        try:
            pj.TrajectoryLoss(model, ts=ts, devices=kw["devices"], **args)
        except ValueError as e:
            errors[str(kw["devices"]) + "_" + str(len(args["y0"]))] = str(e)
    out["errors"] = errors
    # the compiled gradient of a batch of 16 (state width 2): per-device state shapes
    import re
    from pyodejl._jit import to_device
    from pyodejl.derivatives.autodiff import value_and_grad
    y16 = rng.normal(size=(16, 2))
    t16 = np.stack([np.stack([np.cos(ts + k), np.sin(ts)], 1) for k in range(16)])
    shapes = {}
    for n in (1, 4):
        obj = pj.TrajectoryLoss(model, ts=ts, y0=y16, targets=t16, devices=n)
        fn, args = obj.direct_function(theta)
        hlo = value_and_grad.lower(fn, to_device(theta), args).compile().as_text()
        shapes[n] = sorted(set(re.findall(r"f64\[(\d+),2\]", hlo)), key=int)
    out["state_shapes"] = shapes
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def sharded():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_sharded_products_equal_single_device(sharded):
    assert "batch" in sharded["sharding"]
    for key in ("value", "grad", "backsolve", "hvp", "hvp_soa", "eig"):
        assert sharded[key] < 1e-12, (key, sharded[key])


def test_sharding_bad_input(sharded):
    assert "only 4 JAX device" in sharded["errors"]["8_8"]
    assert "does not split evenly over 4 devices" in sharded["errors"]["4_6"]


def test_sharded_program_is_partitioned(sharded):
    """Each of 4 devices holds 16 / 4 = 4 trajectories in the compiled gradient: the
    states (n, 2) appear with n = 4 and never with the whole batch n = 16, which the
    one-device program (the control) does carry."""
    one, four = sharded["state_shapes"]["1"], sharded["state_shapes"]["4"]
    assert "16" in one and "4" not in one
    assert "4" in four and "16" not in four
