"""Temperature scaling's maths (Guo et al. 2017), on arrays: fitting T, NLL, reliability bins, ECE.

Dividing logits by one scalar T > 0 never changes the argmax, so accuracy stays what it was while
the probabilities become calibrated (an over-confident net gets T > 1). T is fitted by minimising
the negative log-likelihood of held-out labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_softmax

from caffe_temperature._cli import ToolError, check_positive

BINS = 15
T_BOUNDS = (1e-2, 1e2)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T)."""
    log_p = log_softmax(logits / temperature, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: ArrayLike, labels: ArrayLike, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The T in ``bounds`` that minimises the NLL of ``labels`` under softmax(logits / T).

    ``logits``: N x C, finite; ``labels``: N class indices in [0, C). A bounded Brent search on
    log T; never a T whose NLL is worse than T = 1's. Bad input raises ValueError.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = checked(logits, labels)

    result = minimize_scalar(
        lambda log_t: nll(logits, labels, math.exp(log_t)),
        bounds=(math.log(bounds[0]), math.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-7},
    )
    fitted = math.exp(float(result.x))
    # NLL is unimodal in log T; never report a T worse than leaving the net alone.
    return fitted if nll(logits, labels, fitted) <= nll(logits, labels, 1.0) else 1.0


@dataclass(frozen=True)
class Bins:
    """Per confidence bin (lower, upper]: examples, mean confidence, accuracy."""

    edges: list[float]
    count: list[int]
    confidence: list[float]
    accuracy: list[float]


@dataclass(frozen=True)
class Metrics:
    nll: float
    ece: float
    accuracy: float


def reliability(logits: np.ndarray, labels: np.ndarray, temperature: float, bins: int = BINS) -> Bins:
    probs = np.exp(log_softmax(logits / temperature, axis=1))
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, weights=confidence, minlength=bins) / count
        acc = np.bincount(index, weights=correct, minlength=bins) / count
    empty = count == 0
    return Bins(edges.tolist(), count.tolist(), np.where(empty, 0.0, conf).tolist(),
                np.where(empty, 0.0, acc).tolist())


def calibration_error(bins: Bins) -> float:
    """sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)|."""
    count = np.asarray(bins.count, dtype=np.float64)
    gap = np.abs(np.asarray(bins.accuracy) - np.asarray(bins.confidence))
    return float((count * gap).sum() / count.sum())


def metrics(logits: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[Metrics, Bins]:
    bins = reliability(logits, labels, temperature)
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    return Metrics(nll(logits, labels, temperature), calibration_error(bins), accuracy), bins


def expected_calibration_error(logits: ArrayLike, labels: ArrayLike, T: float = 1.0, bins: int = BINS) -> float:
    """The ECE of softmax(logits / T) against ``labels``, over ``bins`` equal-width confidence bins."""
    checked_logits, checked_labels = checked(logits, labels)
    return calibration_error(reliability(checked_logits, checked_labels, check_positive(T), bins))



# --------------------------------------------------------------------------
# Checking inputs


def as_logits(raw: np.ndarray) -> np.ndarray:
    """N x C float64 logits (N x C x 1 x 1 accepted); finite, C >= 2, N >= 1."""
    logits = np.asarray(raw)
    while logits.ndim > 2 and logits.shape[-1] == 1:
        logits = logits[..., 0]
    if logits.ndim != 2:
        raise ToolError(f"logits must be N x C (one row per example), got shape {np.shape(raw)}")
    if logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ToolError(f"logits must hold at least 1 example and 2 classes, got shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.number) or np.issubdtype(logits.dtype, np.complexfloating):
        raise ToolError(f"logits must be real numbers, got dtype {logits.dtype}")
    logits = logits.astype(np.float64)
    bad = np.argwhere(~np.isfinite(logits))
    if bad.size:
        row, col = bad[0]
        raise ToolError(f"logits[{row}, {col}] is {logits[row, col]}: logits must be finite "
                        f"({len(bad)} non-finite value(s))")
    return logits


def as_labels(raw: np.ndarray, examples: int, classes: int) -> np.ndarray:
    """N integer labels in [0, C) (integer-valued floats, as Caffe stores them, are accepted)."""
    labels = np.asarray(raw)
    if labels.ndim > 1 and labels.size == labels.shape[0]:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise ToolError(f"labels must be a vector of N class indices, got shape {np.shape(raw)}")
    if len(labels) != examples:
        raise ToolError(f"{examples} rows of logits but {len(labels)} labels: lengths must match")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ToolError(f"labels must be integers, got dtype {labels.dtype}")
    values = labels.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values >= classes))
    if bad.size:
        i = int(bad[0])
        raise ToolError(f"labels[{i}] is {labels[i]}: labels must be integers in [0, {classes}) "
                        f"({bad.size} bad label(s))")
    return values.astype(np.int64)


def checked(logits: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """N x C float64 logits and N int64 labels, checked (as_logits, as_labels)."""
    checked_logits = as_logits(np.asarray(logits))
    return checked_logits, as_labels(np.asarray(labels), *checked_logits.shape)
