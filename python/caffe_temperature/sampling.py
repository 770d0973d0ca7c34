"""Draw class indices from softmax(z / T), in log space.

``sample(logits, T)`` returns one index per softmax vector (the vectors run
along ``axis``; every leading or trailing dimension is a batch dimension):

* T = 1 samples the model's own distribution softmax(z);
* T -> 0 sharpens it towards the argmax, and T = 0 *is* the argmax (first
  index on ties, like ``np.argmax``);
* T -> inf flattens it towards uniform over the classes with finite scores.

It uses the Gumbel-max trick: ``argmax(z / T + G)`` with ``G`` i.i.d.
standard Gumbel noise is distributed as softmax(z / T). No exponential is ever
taken, so logits of any size (1e300 included) neither overflow nor underflow,
and a score of -inf (a masked class) is never drawn.

With ``from_probs=True`` the input holds probabilities (or any non-negative
weights; each vector is normalised implicitly) and ``log p`` is used as the
logits: zero-probability classes get log p = -inf without a divide-by-zero
warning, and are never drawn.

From the command line (one index per vector on stdout, or an .npy with -o)::

    python -m caffe_temperature.sampling logits.npy -T 0.7 --seed 0 -o draws.npy

Example::

    >>> import numpy as np
    >>> from caffe_temperature.sampling import sample
    >>> sample(np.array([[2.0, 1.0, 0.1]]), T=0)        # argmax
    array([0])
    >>> sample(np.zeros((4, 3)), T=1, rng=np.random.default_rng(0)).shape
    (4,)
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from caffe_temperature._cli import (
    ArgumentParser, Outputs, ToolError, add_temperature_option, check_positive, is_stdout, load_array, make_parser,
    run_tool, same_file)

__all__ = ["sample", "main"]

MODULE = "caffe_temperature.sampling"
PROG = f"python -m {MODULE}"
INPUT_KEYS = ("logits", "probs", "scores", "x")

RandomLike = np.random.Generator | np.random.BitGenerator | np.random.SeedSequence | int | None


def as_generator(rng: RandomLike) -> np.random.Generator:
    """np.random.default_rng(rng): the Generator given, one seeded with an int, or a fresh one for None."""
    if isinstance(rng, (str, bytes, float)):  # default_rng would read a str as a sequence of seeds
        raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")
    try:
        return np.random.default_rng(rng)
    except TypeError as err:
        raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}") from err


def log_probs(probs: np.ndarray) -> np.ndarray:
    """log p with log 0 = -inf, without a divide-by-zero warning; p must be finite and >= 0."""
    if not np.all(np.isfinite(probs)):
        raise ValueError("probabilities must be finite (found NaN or inf)")
    if np.any(probs < 0):
        raise ValueError(f"probabilities must be >= 0 (found {probs.min()!r})")
    out = np.full(probs.shape, -np.inf)
    np.log(probs, out=out, where=probs > 0)
    return out


def check_logits(logits: np.ndarray) -> None:
    """Logits may be finite or -inf (a masked class); NaN and +inf have no meaning."""
    if np.any(np.isnan(logits)):
        raise ValueError("logits must not be NaN")
    if np.any(logits == np.inf):
        raise ValueError("logits must not be +inf (use large finite values, or -inf to mask a class)")


def as_scores(values: ArrayLike, axis: int, from_probs: bool) -> np.ndarray:
    """The input as float64 log-scores with the class axis moved last."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError("need at least one dimension (the classes)")
    try:
        array = np.moveaxis(array, axis, -1)
    except np.exceptions.AxisError:
        raise ValueError(f"axis {axis} is out of range for an array of {array.ndim} dimension(s)") from None
    if array.shape[-1] == 0:
        raise ValueError("the class axis is empty")
    scores = log_probs(array) if from_probs else array
    if not from_probs:
        check_logits(scores)
    if scores.size and np.any(np.max(scores, axis=-1) == -np.inf):
        what = "all probabilities are 0" if from_probs else "all logits are -inf"
        raise ValueError(f"a vector has nothing to draw: {what}")
    return scores


def gumbel_argmax(scores: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """argmax over the last axis of scores / T + Gumbel noise, never overflowing.

    Shifting by the max and, for T < 1, multiplying through by T keep every term
    bounded: argmax((z - m) / T + G) == argmax(z - m + T * G) for T > 0.
    """
    noise = rng.gumbel(size=scores.shape)
    with np.errstate(over="ignore"):  # z - m may round to -inf: probability exactly 0, as it should
        shifted = scores - np.max(scores, axis=-1, keepdims=True)
    if temperature < 1.0:
        perturbed = shifted + temperature * noise
    else:
        perturbed = shifted / temperature + noise
    return np.argmax(perturbed, axis=-1)


def sample(
    logits_or_probs: ArrayLike,
    T: float,
    rng: RandomLike = None,
    axis: int = -1,
    from_probs: bool = False,
) -> np.ndarray:
    """One class index per softmax vector, drawn from softmax(z / T).

    ``logits_or_probs``: logits (finite, or -inf for a class that must never be
    drawn), or with ``from_probs`` non-negative probabilities. The classes run
    along ``axis``; the result has the input's shape without that axis (a 0-d
    integer array for a single vector). ``T`` must be finite and >= 0; T = 0 is
    the argmax. ``rng``: a ``numpy.random.Generator``, an int seed, or None for
    fresh entropy.
    """
    temperature = check_positive(T, "T", zero=True)  # 0 means argmax
    generator = as_generator(rng)
    scores = as_scores(logits_or_probs, axis, from_probs)
    if temperature == 0.0:
        return np.asarray(np.argmax(scores, axis=-1))
    return np.asarray(gumbel_argmax(scores, temperature, generator))


# --------------------------------------------------------------------------
# Command line


def build_parser(argv: Sequence[str] | None = None) -> ArgumentParser:
    parser = make_parser(MODULE, "Draw one class index per softmax vector from softmax(z / T).", argv=argv)
    parser.add_argument("input", type=Path, metavar="LOGITS",
                        help=f"logits (or probabilities) as .npy, .npz or HDF5 (array {', '.join(INPUT_KEYS)} "
                             "or the only one)")
    add_temperature_option(parser, zero=True, required=True, help="temperature, finite and >= 0 (0: argmax)")
    parser.add_argument("--axis", type=int, default=-1, help="the class axis (default -1)")
    parser.add_argument("--from-probs", action="store_true", help="the input holds probabilities, not logits")
    parser.add_argument("--seed", type=int, help="seed of the draws (default: fresh entropy)")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT.npy",
                        help="write the indices as .npy ('-': the .npy to stdout; default: one per line on stdout)")
    return parser


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if not is_stdout(args.output) and same_file(args.output, args.input):
        parser.error("-o names the input file; write the draws to a new file")


def run(args: argparse.Namespace, outputs: Outputs) -> None:
    values = load_array(args.input, INPUT_KEYS, "logits")
    try:
        draws = sample(values, args.temperature, rng=args.seed, axis=args.axis, from_probs=args.from_probs)
    except (TypeError, ValueError) as err:
        raise ToolError(f"{args.input}: {err}") from None
    if args.output is not None:
        outputs.file(args.output, npy_bytes(draws))
    else:
        outputs.lines.extend(str(index) for index in draws.ravel())


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(build_parser(argv), argv, run, ("output",), check_args)


if __name__ == "__main__":
    sys.exit(main())
