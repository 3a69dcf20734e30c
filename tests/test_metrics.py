import numpy as np
import pytest

from unsee.evaluate.metrics import (
    bootstrap,
    clip_score,
    frechet_distance,
    rate,
    same_seed_distance,
)


def test_frechet_distance_of_a_set_to_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    # known case: same covariance, mean shifted by d -> ||d||^2
    assert frechet_distance(a, a + 2.0) == pytest.approx(6 * 4.0, rel=1e-9)
    # isotropic Gaussians N(0, s1^2 I), N(0, s2^2 I): D (s1 - s2)^2
    b = rng.normal(size=(200_000, 3))
    assert frechet_distance(b, 3 * b[::-1]) == pytest.approx(3 * (1 - 3) ** 2, rel=0.02)


def test_rates_and_bootstrap_intervals():
    flags = np.array([True] * 30 + [False] * 70)
    assert rate(flags) == 0.3
    ci = bootstrap(rate, flags, n_boot=2000)
    assert ci["mean"] == 0.3 and 0.2 < ci["low"] < 0.3 < ci["high"] < 0.4
    # a constant statistic has a zero-width interval; seeded, so reproducible
    assert bootstrap(rate, np.ones(10, bool))["low"] == 1.0
    assert bootstrap(rate, flags, seed=3) == bootstrap(rate, flags, seed=3)
    with pytest.raises(ValueError, match="same length"):
        bootstrap(lambda a, b: 0.0, np.ones(3), np.ones(4))
    unpaired = bootstrap(frechet_distance, np.zeros((5, 2)), np.ones((7, 2)), paired=False)
    assert unpaired["mean"] == pytest.approx(2.0)


def test_clip_score_and_same_seed_distance_on_known_vectors():
    e = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert clip_score(e, e) == pytest.approx(1.0)
    assert clip_score(e, np.array([[0.0, 1.0], [0.0, 1.0]])) == pytest.approx(0.5)
    assert same_seed_distance(e, e) == pytest.approx(0.0)
    assert same_seed_distance(e, -e) == pytest.approx(2.0)


def test_a_centred_interval_holds_a_frechet_distance_that_resampling_inflates():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 20)), rng.normal(size=(30, 20)) + 0.3  # few images, many dims
    plain = bootstrap(frechet_distance, a, b, paired=False, n_boot=300)
    centred = bootstrap(frechet_distance, a, b, paired=False, n_boot=300, centred=True)
    # repeated images in a resample inflate the distance: the plain interval misses it
    assert plain["low"] > plain["mean"]
    assert centred["low"] <= centred["mean"] <= centred["high"]
    assert centred["high"] - centred["low"] == pytest.approx(plain["high"] - plain["low"])
