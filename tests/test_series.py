"""Irregular interpolation series (pyodejl.experiments.series): the UEA stand-in for PhysioNet."""

import importlib.util

import numpy as np
import pytest

from pyodejl.experiments import series as S

aeon_missing = importlib.util.find_spec("aeon") is None
needs_aeon = pytest.mark.skipif(aeon_missing, reason="needs the data extra: pip install 'pyodejl[data]'")


@pytest.fixture(scope="module")
def vowels():
    return S.load_series("JapaneseVowels", seed=0)


@needs_aeon
def test_vowels_shapes_and_grid(vowels):
    train, test = vowels
    assert train.values.shape == (270, 29, 12) and test.values.shape == (370, 29, 12)
    assert train.lengths.min() >= 7 and max(train.lengths.max(), test.lengths.max()) == 29
    for part in (train, test):
        np.testing.assert_allclose(part.ts, np.linspace(0, 1, 29))
        assert np.all(part.times == part.ts)


@needs_aeon
def test_deterministic_under_seed_and_seed_changes_mask(vowels):
    again, _ = S.load_series("JapaneseVowels", seed=0)
    other, _ = S.load_series("JapaneseVowels", seed=1)
    assert np.array_equal(again.observed_mask, vowels[0].observed_mask)
    assert np.array_equal(again.values, vowels[0].values)
    assert not np.array_equal(other.observed_mask, vowels[0].observed_mask)


@needs_aeon
@pytest.mark.parametrize("part", [0, 1])
def test_masks_disjoint_cover_real_entries_and_halve(vowels, part):
    d = vowels[part]
    real = np.arange(d.values.shape[1])[None, :, None] < d.lengths[:, None, None]
    real = np.broadcast_to(real, d.values.shape)
    assert not np.any(d.observed_mask & d.target_mask)
    assert np.array_equal(d.observed_mask | d.target_mask, real)  # covers the real entries, no padding
    assert not np.any(d.observed_mask[~real]) and not np.any(d.target_mask[~real])
    assert np.all(d.values[~real] == 0)
    per_series = d.observed_mask.sum(axis=(1, 2)) / real.sum(axis=(1, 2))
    assert np.all(np.abs(per_series - 0.5) <= 0.5 / real.sum(axis=(1, 2)) + 1e-12)  # half, up to rounding


@needs_aeon
def test_statistics_from_training_split_only(vowels):
    train, test = vowels
    raw = S.read_ts(S.series_path("JapaneseVowels") / "JapaneseVowels_TRAIN.ts")
    stacked = np.concatenate(raw)
    np.testing.assert_allclose(train.mean, stacked.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(train.std, stacked.std(axis=0), rtol=1e-12)
    assert np.array_equal(test.mean, train.mean) and np.array_equal(test.std, train.std)
    # the test split is standardised with the training statistics, so its own are not exactly 0 / 1
    real = test.observed_mask | test.target_mask
    assert np.max(np.abs(test.values[real].mean())) > 1e-6
    raw_test = S.read_ts(S.series_path("JapaneseVowels") / "JapaneseVowels_TEST.ts")
    np.testing.assert_allclose(test.values[0, : len(raw_test[0])], (raw_test[0] - train.mean) / train.std)


@needs_aeon
def test_basic_motions_equal_length():
    train, test = S.load_series("BasicMotions", seed=3)
    assert train.values.shape == test.values.shape == (40, 100, 6)
    assert np.all(train.lengths == 100)


def test_synthetic_split_keeps_missing_values_out():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 6, 2))
    values[1, 2, 0] = np.nan
    d = S.irregular_split(values, [6, 6, 3, 1], seed=2)
    assert not d.observed_mask[1, 2, 0] and not d.target_mask[1, 2, 0]
    assert d.observed_mask[3].sum() == 1 and d.target_mask[3].sum() == 1


def test_bad_input():
    with pytest.raises(ValueError, match="unknown series dataset 'Physionet'.*JapaneseVowels"):
        S.load_series("Physionet")
    values = np.ones((2, 4, 1))
    values[1] = np.nan
    with pytest.raises(ValueError, match=r"series \[1\] have no observed entry"):
        S.irregular_split(values, [4, 4])
    with pytest.raises(ValueError, match="lengths must have shape"):
        S.irregular_split(np.ones((2, 4, 1)), [4, 5])
    with pytest.raises(ValueError, match="split must be one of"):
        S.irregular_split(np.ones((2, 4, 1)), [4, 4], split="valid")


def test_missing_aeon_names_the_extra(monkeypatch):
    monkeypatch.setattr(S.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'pyodejl\[data\]'"):
        S.load_series("BasicMotions")
