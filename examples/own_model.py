"""Your own model: a plain-function vector field and an Equinox module (README "Your own model").

    python examples/own_model.py
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import pyodejl as pj


def damped_pendulum(t, y, theta):  # any pure JAX function of (t, y, θ)
    g, c = theta
    return jnp.array([y[1], -g * jnp.sin(y[0]) - c * y[1]])


def main():
    vf = pj.VectorField(damped_pendulum, num_params=2)
    model = pj.NeuralODE(vf, solver="tsit5", rtol=1e-9, atol=1e-11)
    ts = np.linspace(0.0, 3.0, 16)
    truth = model.solve(np.array([9.81, 0.3]), ts, [1.0, 0.0]).ys  # (16, 2)
    loss = pj.TrajectoryLoss(model, ts=ts, y0=[1.0, 0.0], targets=truth)
    theta = np.array([8.0, 0.5])
    print("gradient", loss.grad(theta))
    print("Hessian (adjoint-adjoint)\n", loss.hessian(theta, method="adjoint-adjoint"))

    # an Equinox module: θ is its floating-point leaves in tree order, each row-major
    net = eqx.nn.MLP(2, 2, width_size=16, depth=1, activation=jnp.tanh, key=jax.random.key(0))
    vf2 = pj.VectorField.from_equinox(net, call="y")  # the module is called net(y)
    model2 = pj.NeuralODE(vf2)
    loss2 = pj.TrajectoryLoss(model2, ts=ts, y0=[1.0, 0.0], targets=truth)
    print("Equinox MLP: p =", vf2.num_params, "loss =", loss2.value(vf2.init(None)))


if __name__ == "__main__":
    main()
