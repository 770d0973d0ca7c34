"""caffe_temperature.sampling.sample: distribution, limits, validation, no warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from caffe_temperature.sampling import sample

LOGITS = np.array([2.0, 1.0, 0.0, -1.0, 3.0])
DRAWS = 20_000


def softmax(z: np.ndarray, temperature: float) -> np.ndarray:
    scaled = z / temperature
    e = np.exp(scaled - scaled.max())
    return e / e.sum()


def empirical_counts(values: np.ndarray, temperature: float, seed: int, from_probs: bool = False) -> np.ndarray:
    batch = np.broadcast_to(values, (DRAWS, len(values)))
    draws = sample(batch, temperature, rng=np.random.default_rng(seed), from_probs=from_probs)
    assert draws.shape == (DRAWS,)
    return np.bincount(draws, minlength=len(values))


def chisquare_p(counts: np.ndarray, probs: np.ndarray) -> float:
    return float(stats.chisquare(counts, DRAWS * probs).pvalue)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 10.0])
def test_empirical_distribution_matches_softmax(temperature: float) -> None:
    counts = empirical_counts(LOGITS, temperature, seed=1)
    assert chisquare_p(counts, softmax(LOGITS, temperature)) > 1e-3


def test_chi_square_rejects_the_wrong_temperature() -> None:
    # The test above can fail: draws at T = 2 are far from softmax(z / 1).
    counts = empirical_counts(LOGITS, 2.0, seed=1)
    assert chisquare_p(counts, softmax(LOGITS, 1.0)) < 1e-6


def test_from_probs_at_t1_is_the_models_distribution() -> None:
    probs = softmax(LOGITS, 1.0)
    counts = empirical_counts(probs, 1.0, seed=2, from_probs=True)
    assert chisquare_p(counts, probs) > 1e-3


def test_from_probs_with_temperature_equals_logits() -> None:
    # softmax(log p / T) == softmax(z / T) when p = softmax(z).
    probs = softmax(LOGITS, 1.0)
    counts = empirical_counts(probs, 3.0, seed=3, from_probs=True)
    assert chisquare_p(counts, softmax(LOGITS, 3.0)) > 1e-3


def test_zero_probability_is_never_drawn_and_warns_nothing() -> None:
    probs = np.array([0.0, 0.5, 0.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts = empirical_counts(probs, 1.0, seed=4, from_probs=True)
    assert counts[0] == 0 and counts[2] == 0
    assert counts[1] > 0 and counts[3] > 0


def test_masked_logit_is_never_drawn() -> None:
    counts = empirical_counts(np.array([0.0, -np.inf, 0.0]), 5.0, seed=5)
    assert counts[1] == 0


def test_t0_is_argmax_over_any_axis() -> None:
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(3, 7, 4))
    for axis in (0, 1, 2, -1):
        np.testing.assert_array_equal(sample(logits, 0, axis=axis), logits.argmax(axis=axis))
    assert sample(logits, 0.0, axis=1).shape == (3, 4)


def test_tiny_t_is_argmax() -> None:
    logits = np.random.default_rng(7).normal(size=(500, 10))
    np.testing.assert_array_equal(sample(logits, 1e-12, rng=0), logits.argmax(axis=-1))


def test_batched_over_leading_dims_with_class_axis_first() -> None:
    logits = np.zeros((4, 2, 3))
    logits[1] = 50.0  # class 1 wins every vector at T = 1 (odds e^50 : 1)
    draws = sample(logits, 1.0, rng=8, axis=0)
    assert draws.shape == (2, 3)
    assert (draws == 1).all()


def test_single_vector_gives_a_scalar_index() -> None:
    draw = sample(LOGITS, 1.0, rng=9)
    assert draw.shape == ()
    assert 0 <= int(draw) < len(LOGITS)


def test_same_seed_same_draws() -> None:
    logits = np.random.default_rng(10).normal(size=(100, 5))
    np.testing.assert_array_equal(sample(logits, 1.5, rng=11), sample(logits, 1.5, rng=np.random.default_rng(11)))


@pytest.mark.parametrize("temperature", [1e-300, 1e-3, 1.0, 1e3, 1e300])
def test_extreme_logits_do_not_overflow(temperature: float) -> None:
    logits = np.array([[1e308, -1e308, 0.0], [-1.7e308, 1.7e308, 1e300], [1e-300, 0.0, -1e-300]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draws = sample(logits, temperature, rng=12)
    assert draws.shape == (3,)
    if temperature <= 1.0:
        # The gaps are astronomically larger than any Gumbel noise times T.
        assert draws[0] == 0 and draws[1] == 1


def test_huge_temperature_is_uniform() -> None:
    counts = empirical_counts(np.array([100.0, 0.0, -100.0]), 1e12, seed=13)
    assert chisquare_p(counts, np.full(3, 1 / 3)) > 1e-3


@pytest.mark.parametrize("bad", [-1.0, -1e-12, np.nan, np.inf, -np.inf, "hot", None])
def test_bad_temperature_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="T must be"):
        sample(LOGITS, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "values, from_probs, message",
    [
        (np.array([0.0, np.nan]), False, "NaN"),
        (np.array([0.0, np.inf]), False, r"\+inf"),
        (np.array([-np.inf, -np.inf]), False, "all logits are -inf"),
        (np.array([0.5, -0.1]), True, ">= 0"),
        (np.array([0.5, np.nan]), True, "finite"),
        (np.array([0.0, 0.0]), True, "all probabilities are 0"),
        (np.zeros((3, 0)), False, "empty"),
        (np.float64(1.0), False, "at least one dimension"),
    ],
)
def test_bad_input_is_refused(values: np.ndarray, from_probs: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample(values, 1.0, rng=0, from_probs=from_probs)


def test_bad_axis_and_rng_are_refused() -> None:
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        sample(np.zeros((2, 3)), 1.0, axis=2)
    with pytest.raises(TypeError, match="rng must be"):
        sample(LOGITS, 1.0, rng="seed")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# python -m caffe_temperature.sampling


def test_command_line_prints_one_index_per_vector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from caffe_temperature import sampling

    logits = np.array([[0.0, 5.0, 1.0], [9.0, 0.0, 0.0]])
    np.save(tmp_path / "logits.npy", logits)
    assert sampling.main([str(tmp_path / "logits.npy"), "--T", "0"]) == 0
    assert capsys.readouterr().out == "1\n0\n"


def test_command_line_writes_npy_like_the_function(tmp_path: Path) -> None:
    from caffe_temperature import sampling

    probs = np.random.default_rng(3).dirichlet(np.ones(5), size=(4, 6))
    np.savez(tmp_path / "p.npz", probs=probs)
    out = tmp_path / "draws.npy"
    argv = [str(tmp_path / "p.npz"), "--T", "1.5", "--from-probs", "--axis", "-1", "--seed", "4", "-o", str(out)]
    assert sampling.main(argv) == 0
    np.testing.assert_array_equal(np.load(out), sample(probs, 1.5, rng=4, from_probs=True))


def test_command_line_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from caffe_temperature import sampling

    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0]]))
    out = tmp_path / "draws.npy"
    assert sampling.main([str(tmp_path / "nan.npy"), "--T", "1", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"{sampling.PROG}: error: {tmp_path / 'nan.npy'}: logits must not be NaN\n"
    assert not out.exists()
