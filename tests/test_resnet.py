"""pj ResNet (seed 001): θ layout against a hand-written NumPy network, initialisation,
and its Neural ODE reading — explicit Euler on the piecewise-constant vector field
reproduces the hidden states to round-off."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pyodejl  # noqa: F401  (float64)
from pyodejl.models.resnet import ResNet, ResNetVectorField

IN, WIDTH, DEPTH, OUT, T = 3, 5, 4, 2, 1.7


def numpy_resnet(theta, X, in_dim, width, depth, out_dim, T, sigma=np.tanh):
    """Independent reference: read θ in PyTorch nn.Linear order, loop over layers."""
    o = 0

    def take(n_out, n_in):
        nonlocal o
        W = theta[o : o + n_out * n_in].reshape(n_out, n_in)
        o += n_out * n_in
        b = theta[o : o + n_out]
        o += n_out
        return W, b

    W_in, b_in = take(width, in_dim)
    layers = [take(width, width) for _ in range(depth)]
    W_out, b_out = take(out_dim, width)
    assert o == len(theta)
    xs = [X @ W_in.T + b_in]
    for W, b in layers:
        xs.append(xs[-1] + (T / depth) * sigma(xs[-1] @ W.T + b))
    return xs[-1] @ W_out.T + b_out, np.stack(xs)


@pytest.fixture(scope="module")
def net_theta_x():
    net = ResNet(IN, WIDTH, DEPTH, OUT, T=T)
    theta = net.init(seed=0)
    X = np.random.default_rng(1).uniform(-5, 5, size=(7, IN))
    return net, theta, X


def test_layout_and_forward_against_numpy(net_theta_x):
    net, theta, X = net_theta_x
    assert net.num_params == (WIDTH * IN + WIDTH) + DEPTH * (WIDTH**2 + WIDTH) + (OUT * WIDTH + OUT)
    ref_out, ref_states = numpy_resnet(theta, X, IN, WIDTH, DEPTH, OUT, T)
    out = np.asarray(net(theta, X))
    assert out.shape == (7, OUT)
    np.testing.assert_allclose(out, ref_out, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(net.hidden_states(theta, X)), ref_states, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(net(theta, X[0])), ref_out[0], rtol=1e-13, atol=1e-14)
    # unflatten names the same blocks
    p = net.unflatten(jnp.asarray(theta))
    assert p["W_in"].shape == (WIDTH, IN) and p["Ws"].shape == (DEPTH, WIDTH, WIDTH)
    assert p["bs"].shape == (DEPTH, WIDTH) and p["W_out"].shape == (OUT, WIDTH) and p["b_out"].shape == (OUT,)
    np.testing.assert_array_equal(np.asarray(p["W_in"]).ravel(), theta[: WIDTH * IN])
    np.testing.assert_array_equal(np.asarray(p["b_out"]), theta[-OUT:])


def test_other_activation_and_gradient(net_theta_x):
    _, _, X = net_theta_x
    net = ResNet(IN, WIDTH, DEPTH, OUT, activation="softplus", T=T)
    theta = net.init(seed=2)
    softplus = lambda z: np.log1p(np.exp(z))
    np.testing.assert_allclose(
        np.asarray(net(theta, X)), numpy_resnet(theta, X, IN, WIDTH, DEPTH, OUT, T, softplus)[0], rtol=1e-13, atol=1e-14
    )
    # reverse mode through the layer scan against central differences
    loss = jax.jit(lambda th: jnp.sum(net(th, X) ** 2))
    g = np.asarray(jax.grad(loss)(jnp.asarray(theta)))
    E = np.random.default_rng(3).normal(size=theta.shape)
    h = 1e-6
    fd = (float(loss(theta + h * E)) - float(loss(theta - h * E))) / (2 * h)
    assert np.sum(g * E) == pytest.approx(fd, rel=1e-8)


def test_init_is_pytorch_default_and_seeded():
    net = ResNet(IN, WIDTH, DEPTH, OUT)
    a, b = net.init(0), net.init(0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, net.init(1))
    assert a.dtype == np.float64 and a.shape == (net.num_params,)
    t_in, t_vf, t_out = net.split(a)
    assert np.abs(t_in).max() <= 1 / math.sqrt(IN)
    assert np.abs(t_vf).max() <= 1 / math.sqrt(WIDTH)
    assert np.abs(t_out).max() <= 1 / math.sqrt(WIDTH)
    # draws fill their ranges (U(±1/√fan_in), not something narrower)
    assert np.abs(t_vf).max() > 0.9 / math.sqrt(WIDTH)
    # the vector field's own init has the residual layers' distribution and size
    assert net.vector_field.init(0).shape == (net.vector_field.num_params,)


def test_split_join_roundtrip(net_theta_x):
    net, theta, _ = net_theta_x
    parts = net.split(theta)
    assert [len(p) for p in parts] == [WIDTH * IN + WIDTH, DEPTH * (WIDTH**2 + WIDTH), OUT * WIDTH + OUT]
    np.testing.assert_array_equal(np.asarray(net.join(*parts)), theta)


def euler(vf, theta_vf, x0, T, N, accumulate):
    """Plain explicit Euler with N steps of T/N; times either accumulated or k·h."""
    h = T / N
    x, t, states = x0, 0.0, [x0]
    for k in range(N):
        tk = t if accumulate else k * h
        x = x + h * vf(tk, x, theta_vf)
        t += h
        states.append(x)
    return np.stack([np.asarray(s) for s in states])


@pytest.mark.parametrize("accumulate", [False, True], ids=["t=k*h", "t+=h"])
def test_euler_on_vector_field_reproduces_resnet(net_theta_x, accumulate):
    net, theta, X = net_theta_x
    vf = net.vector_field
    assert isinstance(vf, ResNetVectorField)
    assert vf.num_params == DEPTH * (WIDTH**2 + WIDTH) and vf.state_dim == WIDTH
    t_in, t_vf, _ = net.split(jnp.asarray(theta))
    x0 = net.embed(t_in, jnp.asarray(X))
    states = np.asarray(net.hidden_states(theta, X))
    # one state (width,) at a time, as the protocol specifies
    for i in range(2):
        got = euler(vf, t_vf, x0[i], T, DEPTH, accumulate)
        np.testing.assert_allclose(got, states[:, i], rtol=1e-14, atol=1e-14)
    # a batch of states through the same call
    got = euler(vf, t_vf, x0, T, DEPTH, accumulate)
    np.testing.assert_allclose(got, states, rtol=1e-14, atol=1e-14)


def test_vector_field_is_piecewise_constant_in_time():
    vf = ResNetVectorField(width=2, depth=4, activation="identity", T=2.0)  # layers on [0,.5), [.5,1), ...
    theta = np.zeros(vf.num_params)
    for n in range(4):  # layer n: f(y) = y·0 + b with b = (n, -n)
        theta[n * 6 + 4 : n * 6 + 6] = [n, -n]
    y = jnp.zeros(2)
    for t, n in [(-1.0, 0), (0.0, 0), (0.49, 0), (0.5, 1), (0.5 - 1e-13, 1), (1.2, 2), (1.99, 3), (2.0, 3), (5.0, 3)]:
        np.testing.assert_array_equal(np.asarray(vf(t, y, theta)), [n, -n])
    # times under jit
    f = jax.jit(lambda t: vf(t, y, theta))
    np.testing.assert_array_equal(np.asarray(f(0.75)), [1, -1])


def test_bad_input():
    with pytest.raises(ValueError, match="depth"):
        ResNet(2, 4, 0, 1)
    with pytest.raises(ValueError, match="width"):
        ResNet(2, -1, 3, 1)
    with pytest.raises(ValueError, match="in_dim"):
        ResNet(2.5, 4, 3, 1)
    with pytest.raises(ValueError, match="T must"):
        ResNet(2, 4, 3, 1, T=0.0)
    with pytest.raises(ValueError, match="unknown activation"):
        ResNet(2, 4, 3, 1, activation="sine")
    net = ResNet(2, 4, 3, 1)
    theta = net.init(0)
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(B, 2\)"):
        net(theta, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(B, 2\)"):
        net(theta, np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match="theta must have shape"):
        net(theta[:-1], np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        net(theta, np.full((5, 2), np.nan))
    bad = theta.copy()
    bad[0] = np.inf
    with pytest.raises(ValueError, match="NaN"):
        net(bad, np.zeros((5, 2)))
    # shape checks also hold under tracing
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        jax.jit(lambda x: net(theta, x))(jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="depth"):
        ResNetVectorField(4, 0)


def test_neural_ode_euler_reproduces_resnet(net_theta_x):
    """pj.NeuralODE(resnet.vector_field, solver="euler", dt=T/N) is the ResNet."""
    import pyodejl as pj

    net, theta, X = net_theta_x
    t_in, t_vf, _ = net.split(theta)
    x0 = np.asarray(net.embed(jnp.asarray(t_in), jnp.asarray(X)))
    model = pj.NeuralODE(net.vector_field, solver="euler", dt=net.step)
    ts = np.linspace(0.0, T, DEPTH + 1)  # every layer boundary
    ys = np.asarray(model.solve(t_vf, ts, x0).ys)  # (B, N + 1, width)
    np.testing.assert_allclose(ys.transpose(1, 0, 2), np.asarray(net.hidden_states(theta, X)), rtol=1e-14, atol=1e-14)
