"""The structured Hessian equals forward-over-reverse AD of the same discrete loss to round-off."""

import numpy as np
import pytest

import pyodejl as pj


@pytest.mark.parametrize(
    "sizes,activation,time_dependent,solver,batch,loss",
    [
        ([2, 6, 2], "tanh", False, "dopri5", 1, "mse"),
        ([2, 5, 2], "softplus", True, "tsit5", 3, "abs"),
        ([2, 4, 2], "sigmoid", False, "heun", 2, "mse"),  # non-FSAL, fixed step
        ([3, 4, 3], "swish", False, "bosh3", 1, "mse"),
    ],
)
def test_structured_equals_direct_direct(sizes, activation, time_dependent, solver, batch, loss):
    vf = pj.MLP(sizes, activation, time_dependent=time_dependent)
    model = pj.NeuralODE(vf, solver=solver, rtol=1e-8, atol=1e-10, dt=0.05 if solver == "heun" else None)
    ts = np.linspace(0, 1.5, 6)
    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(batch, sizes[0]))
    targets = rng.normal(size=(batch, len(ts), sizes[0]))
    obj = pj.TrajectoryLoss(model, ts=ts, y0=y0, targets=targets, loss=loss)
    theta = vf.init(2)
    H_ad = obj.hessian(theta, method="direct-direct")
    H_st = obj.hessian(theta, method="structured")
    assert np.abs(H_st - H_ad).max() <= 1e-13 * np.abs(H_ad).max()
    assert np.array_equal(obj.hessian(theta), H_st)  # "auto" picks the structured path here


def test_structured_refuses_what_it_cannot_do():
    model = pj.NeuralODE(pj.MLP([2, 3, 3, 2], "tanh"))
    ts = np.linspace(0, 1, 3)
    obj = pj.TrajectoryLoss(model, ts=ts, y0=[1.0, 0.0], targets=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="one-hidden-layer"):
        obj.hessian(model.init(0), method="structured")
