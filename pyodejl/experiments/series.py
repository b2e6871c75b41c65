"""Irregularly sampled multivariate series for interpolation, from real data shipped with a package.

Rubanova, Chen & Duvenaud (2019), *Latent ODEs for irregularly-sampled time
series* (NeurIPS), score interpolation on PhysioNet 2012: each series is
observed at irregular times with some channels missing, a random part of the
observed entries is given to the model and the rest is predicted. PhysioNet
cannot be fetched here; the stand-in is a real multivariate series bundled with
aeon's wheel (the UEA archive's ``JapaneseVowels``, 640 series × 12 channels of
7–29 steps, and ``BasicMotions``, 80 × 6 × 100), made irregular the same way:

1. times rescaled to [0, 1]: step i of every series is ``i / (T − 1)``, T the
   longest length of both splits, so all series share one time grid (shorter
   series end early and are padded);
2. values standardised per channel with the mean and standard deviation of the
   **training** split's real entries (the test split uses the same ones);
3. a seeded random half of each series' real (time, channel) entries is kept
   as observations (``observed_mask``), the rest is held out for scoring
   (``target_mask``); padding is in neither.

The ``.ts`` files are located with ``importlib.util.find_spec("aeon")`` and read
by a small parser, so aeon (and numba behind it) is never imported. Install the
optional extra: ``pip install 'pyodejl[data]'``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyodejl._validation import check_integer

__all__ = ["SERIES_DATASETS", "IrregularSeries", "irregular_split", "load_series", "read_ts", "series_path"]

SERIES_DATASETS = ("JapaneseVowels", "BasicMotions")
"""The UEA sets bundled with aeon that :func:`load_series` reads."""

_SPLIT_STREAM = {"train": 0, "test": 1}


@dataclass(frozen=True)
class IrregularSeries:
    """One split of an irregular interpolation dataset (padded to a common length T).

    Attributes:
        name: the dataset's name.
        split: ``"train"`` or ``"test"``.
        times: ``(N, T)`` observation times in [0, 1]; every row is the shared grid
            :attr:`ts` (padding positions carry the grid time and are masked out).
        values: ``(N, T, C)`` standardised values, 0 at padding.
        observed_mask: ``(N, T, C)`` bool, the entries given to the model.
        target_mask: ``(N, T, C)`` bool, the held-out entries to score; disjoint
            from ``observed_mask``, together they are the real entries.
        lengths: ``(N,)`` real length of each series (entries at ``t < lengths[n]``).
        seed: the seed of the observation/held-out split.
        mean: ``(C,)`` per-channel means used to standardise (training split's).
        std: ``(C,)`` per-channel standard deviations (training split's).
    """

    name: str
    split: str
    times: np.ndarray
    values: np.ndarray
    observed_mask: np.ndarray
    target_mask: np.ndarray
    lengths: np.ndarray
    seed: int
    mean: np.ndarray
    std: np.ndarray

    @property
    def ts(self) -> np.ndarray:
        """``(T,)`` the time grid every series shares."""
        return self.times[0]

    @property
    def num_series(self) -> int:
        return self.values.shape[0]

    @property
    def num_channels(self) -> int:
        return self.values.shape[2]

    def subset(self, index) -> IrregularSeries:
        """The series at ``index`` (an index array or slice), same grid and statistics."""
        pick = lambda a: a[index]
        return IrregularSeries(self.name, self.split, pick(self.times), pick(self.values), pick(self.observed_mask),
                               pick(self.target_mask), pick(self.lengths), self.seed, self.mean, self.std)


def series_path(name: str) -> Path:
    """The folder of dataset ``name``'s ``.ts`` files inside the installed aeon package.

    Raises:
        ValueError: ``name`` is not one of :data:`SERIES_DATASETS`.
        ImportError: aeon is not installed (``pip install 'pyodejl[data]'``).
    """
    if name not in SERIES_DATASETS:
        raise ValueError(f"unknown series dataset {name!r}; expected one of {list(SERIES_DATASETS)}")
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the {name} series ship with the aeon package, which is not installed; "
            "install the data extra: pip install 'pyodejl[data]'"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not (folder / f"{name}_TRAIN.ts").is_file():
        raise ImportError(
            f"the installed aeon has no {folder / (name + '_TRAIN.ts')}; install a version with its bundled "
            "UEA sets: pip install 'pyodejl[data]'"
        )
    return folder


def read_ts(path) -> list[np.ndarray]:
    """The series of a multivariate ``.ts`` file (sktime/aeon format, no time stamps).

    Each data line is ``channel:channel:...:label`` with comma-separated values per
    channel; ``?`` is a missing value (NaN). Returns one ``(length, C)`` array per series.
    """
    series = []
    in_data = False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower().startswith("@data")
                continue
            channels = line.split(":")[:-1]  # the last field is the class label
            cols = [np.array([np.nan if v == "?" else float(v) for v in ch.split(",")]) for ch in channels]
            if len({len(c) for c in cols}) != 1:
                raise ValueError(f"{path}: a series whose channels differ in length ({[len(c) for c in cols]})")
            series.append(np.stack(cols, axis=1))
    if not series:
        raise ValueError(f"{path} holds no series (no '@data' section)")
    return series


def _pad(series: list[np.ndarray], T: int) -> tuple[np.ndarray, np.ndarray]:
    C = series[0].shape[1]
    values = np.full((len(series), T, C), np.nan)
    for n, s in enumerate(series):
        values[n, : len(s)] = s
    return values, np.array([len(s) for s in series], dtype=np.int64)


def irregular_split(values, lengths, *, seed: int = 0, split: str = "train", name: str = "series",
                    mean=None, std=None, observed_fraction: float = 0.5) -> IrregularSeries:
    """Standardise padded series and split their real entries into observed and held-out halves.

    Args:
        values: ``(N, T, C)`` raw values; NaN marks a missing entry, entries at
            ``t >= lengths[n]`` are padding (their values are ignored).
        lengths: ``(N,)`` real lengths, 1 ≤ lengths[n] ≤ T.
        seed: seeds the split; series n of ``split`` draws from
            ``default_rng([seed, split id, n])``, so a split does not depend on
            the other split or on the order the splits are built in.
        split: ``"train"`` or ``"test"``.
        name: the dataset's name (kept on the result).
        mean: ``(C,)`` per-channel means to standardise with (default None: computed
            from these series' real entries; give the training split's for a test split).
        std: ``(C,)`` per-channel standard deviations, likewise (both or neither).
        observed_fraction: share of each series' real entries kept as observations
            (default 0.5, rounded to a count, at least 1 and at most all but one
            when a series has two or more real entries).

    Returns:
        :class:`IrregularSeries` with times ``i / (T − 1)``.

    Raises:
        ValueError: bad shapes, lengths outside [1, T], a series with no real entry,
            an unknown split or a fraction outside (0, 1).
    """
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be one of {list(_SPLIT_STREAM)}, got {split!r}")
    seed = check_integer(seed, "seed", minimum=0)
    if not 0 < observed_fraction < 1:
        raise ValueError(f"observed_fraction must be in (0, 1), got {observed_fraction!r}")
    values = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths)
    if values.ndim != 3 or values.shape[1] < 2:
        raise ValueError(f"values must have shape (N, T, C) with T >= 2, got {values.shape}")
    N, T, C = values.shape
    if lengths.shape != (N,) or np.any(lengths < 1) or np.any(lengths > T):
        raise ValueError(f"lengths must have shape ({N},) with entries in [1, {T}], got {lengths}")
    real = (np.arange(T)[None, :, None] < lengths[:, None, None]) & np.isfinite(values)
    empty = np.flatnonzero(~real.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(f"series {empty[:5].tolist()} have no observed entry; every series needs at least one")
    if mean is None or std is None:
        raw = np.where(real, values, np.nan)
        mean, std = np.nanmean(raw, axis=(0, 1)), np.nanstd(raw, axis=(0, 1))
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if mean.shape != (C,) or std.shape != (C,) or not np.all(std > 0):
        raise ValueError(f"mean and std must have shape ({C},) with std > 0, got {mean.shape} and {std}")
    standardised = np.where(real, (values - mean) / std, 0.0)
    observed = np.zeros_like(real)
    for n in range(N):
        where = np.flatnonzero(real[n].ravel())
        keep = int(np.clip(round(observed_fraction * where.size), 1, max(where.size - 1, 1)))
        chosen = np.random.default_rng([seed, _SPLIT_STREAM[split], n]).permutation(where)[:keep]
        observed[n].ravel()[chosen] = True
    times = np.broadcast_to(np.arange(T) / (T - 1), (N, T)).copy()
    return IrregularSeries(name, split, times, standardised, observed, real & ~observed, lengths.astype(np.int64),
                           seed, mean, std)


def load_series(name: str, *, seed: int = 0, observed_fraction: float = 0.5) -> tuple[IrregularSeries, IrregularSeries]:
    """The ``(train, test)`` irregular interpolation splits of a bundled UEA set.

    Args:
        name: ``"JapaneseVowels"`` or ``"BasicMotions"`` (:data:`SERIES_DATASETS`).
        seed: seeds which half of the entries is observed (default 0).
        observed_fraction: share of entries observed (default 0.5, as Rubanova et al.).

    Returns:
        ``(train, test)`` :class:`IrregularSeries` on one time grid (T the longest
        series of both files), standardised with the training split's statistics.

    Raises:
        ValueError: an unknown ``name``.
        ImportError: aeon is not installed (``pip install 'pyodejl[data]'``).
    """
    folder = series_path(name)
    raw = {split: read_ts(folder / f"{name}_{split.upper()}.ts") for split in ("train", "test")}
    T = max(len(s) for series in raw.values() for s in series)
    train_values, train_lengths = _pad(raw["train"], T)
    train = irregular_split(train_values, train_lengths, seed=seed, split="train", name=name,
                            observed_fraction=observed_fraction)
    test_values, test_lengths = _pad(raw["test"], T)
    test = irregular_split(test_values, test_lengths, seed=seed, split="test", name=name, mean=train.mean,
                           std=train.std, observed_fraction=observed_fraction)
    return train, test
