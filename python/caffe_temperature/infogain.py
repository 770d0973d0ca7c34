"""Build, check and write infogain matrices H for SoftmaxWithInfogainLoss.

The loss for an example of class l is ``-sum_c H[l, c] log p_c``: H holds
*rewards* (similarities), not costs. Row l says how much credit each predicted
class earns for an example of class l; H = I is plain cross-entropy.

Four sources:

``counts``    class weights by inverse frequency, ``H = diag(w)`` with
              ``w_c = N / (C * n_c)`` (N examples, C classes, n_c of class c).
              This is the "balanced" weighting: ``sum_c n_c w_c = N``, so on the
              training distribution the loss keeps the scale of plain
              cross-entropy while every class contributes equally in total.
``cost``      a cost or distance matrix D (D[l, c] >= 0, D[l, l] = 0) turned into
              similarities: ``--transform exp`` (default) gives
              ``H = exp(-D / scale)`` (scale defaults to the mean off-diagonal
              D), ``--transform linear`` gives ``H = 1 - D / max(D)``. Either way
              the diagonal is 1 and closer classes earn more partial credit.
``matrix``    H itself from a CSV (comma- or whitespace-separated) or .npy file.
``identity``  H = I (C x C).

Every H is checked (square, finite, non-negative, no all-zero row, the class
count given with --classes) and written as the BlobProto of shape (1, 1, C, C)
that ``infogain_loss_param { source: "H.binaryproto" }`` reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from numpy.typing import ArrayLike

from caffe_temperature._cli import (
    UNREADABLE_ARRAY, Outputs, ToolError, check_positive, make_parser, new_figure, png_bytes, positive_int, positive_number,
    read_bytes, run_tool)
from caffe_temperature.prototxt import load_caffe_pb2

MODULE = "caffe_temperature.infogain"
PROG = f"python -m {MODULE}"

EPILOG = """\
examples:
  %(prog)s counts 900 90 10 -o H.binaryproto --print
      H = diag(N / (C * n_c)) = diag(0.3704, 3.704, 33.33) for N = 1000, C = 3.
  %(prog)s cost --csv distances.csv --transform exp --scale 2 -o H.binaryproto --plot H.png
  %(prog)s matrix --csv H.csv --classes 10 -o H.binaryproto
  %(prog)s identity --classes 5 -o H.binaryproto

then, in the training net:
  layer { type: "SoftmaxWithInfogainLoss" bottom: "logits" bottom: "label" top: "loss"
          infogain_loss_param { source: "H.binaryproto" } }

-o - writes the binaryproto to stdout (--print and the 'wrote' lines then go to stderr).
"""


TRANSFORMS = ("exp", "linear")

# --------------------------------------------------------------------------
# Building H


def from_counts(counts: Sequence[float]) -> np.ndarray:
    """H = diag(w), w_c = N / (C * n_c): inverse class frequency, balanced so that sum_c n_c w_c = N."""
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size < 2:
        raise ToolError(f"need the counts of at least 2 classes, got {n.size}")
    check_finite_nonnegative(n, "class counts")
    empty = np.flatnonzero(n == 0)
    if empty.size:
        raise ToolError(f"class {int(empty[0])} has count 0: its inverse frequency is undefined "
                        "(drop the class or give it a count)")
    weights = n.sum() / (n.size * n)
    return np.diag(weights)


def from_cost(cost: np.ndarray, transform: str, scale: float | None = None) -> np.ndarray:
    """Similarities from a cost/distance matrix D: exp(-D / scale) or 1 - D / max(D)."""
    check_square(cost, "cost matrix")
    check_finite_nonnegative(cost, "cost matrix")
    diagonal = np.diagonal(cost)
    if np.any(diagonal != 0):
        index = int(np.flatnonzero(diagonal)[0])
        raise ToolError(f"cost matrix: D[{index},{index}] = {diagonal[index]:g}, but a class is at cost 0 "
                        "from itself (the diagonal must be 0)")
    off = cost[~np.eye(len(cost), dtype=bool)]
    if not np.any(off > 0):
        raise ToolError("cost matrix is all zero: every class would earn full credit for every label")
    if transform == "linear":
        if scale is not None:
            raise ToolError("--scale applies to --transform exp only")
        return 1.0 - cost / cost.max()
    scale = check_positive(float(off.mean()) if scale is None else scale, "--scale")
    return np.exp(-cost / scale)


def identity(classes: int) -> np.ndarray:
    if classes < 2:
        raise ToolError(f"need at least 2 classes, got {classes}")
    return np.eye(classes)


def infogain_matrix(*, counts: ArrayLike | None = None, cost: ArrayLike | None = None, matrix: ArrayLike | None = None,
                    classes: int | None = None, transform: str = "exp", scale: float | None = None) -> np.ndarray:
    """The checked float32 H (C x C) for SoftmaxWithInfogainLoss from one source.

    ``counts`` (examples per class: H = diag(N / (C n_c))), ``cost`` (a cost matrix D:
    ``transform`` "exp" gives exp(-D / scale), "linear" 1 - D / max(D)), ``matrix`` (H itself),
    or none of them and ``classes`` (H = I). ``classes`` also checks the size. Bad input raises
    ValueError.
    """
    given = [name for name, value in (("counts", counts), ("cost", cost), ("matrix", matrix)) if value is not None]
    if len(given) > 1:
        raise ToolError(f"give one of counts, cost and matrix, not {' and '.join(given)}")
    if transform not in TRANSFORMS:
        raise ToolError(f"unknown transform {transform!r} (transforms: {', '.join(TRANSFORMS)})")
    if counts is not None:
        h = from_counts(np.asarray(counts, dtype=np.float64).ravel().tolist())
    elif cost is not None:
        h = from_cost(np.asarray(cost, dtype=np.float64), transform, scale)
    elif matrix is not None:
        h = np.asarray(matrix, dtype=np.float64)
    elif classes is None:
        raise ToolError("the identity H needs the number of classes")
    else:
        h = identity(classes)
    return validate(h, classes)


# --------------------------------------------------------------------------
# Checking


def check_square(matrix: np.ndarray, what: str) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ToolError(f"{what} must be square (C x C), got shape {matrix.shape}")
    if matrix.shape[0] < 2:
        raise ToolError(f"{what} must have at least 2 classes, got {matrix.shape[0]}")


def check_finite_nonnegative(values: np.ndarray, what: str) -> None:
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        where = ",".join(map(str, bad[0]))
        raise ToolError(f"{what}: entry [{where}] is {values[tuple(bad[0])]}, must be finite")
    negative = np.argwhere(values < 0)
    if negative.size:
        where = ",".join(map(str, negative[0]))
        raise ToolError(f"{what}: entry [{where}] is {values[tuple(negative[0])]:g}, must be >= 0")


def validate(h: np.ndarray, classes: int | None = None) -> np.ndarray:
    """H as float32 after the checks SoftmaxWithInfogainLoss relies on."""
    check_square(h, "H")
    check_finite_nonnegative(h, "H")
    if classes is not None and h.shape[0] != classes:
        raise ToolError(f"H is {h.shape[0]} x {h.shape[0]} but --classes is {classes}")
    empty = np.flatnonzero(~h.any(axis=1))
    if empty.size:
        raise ToolError(f"H row {int(empty[0])} is all zero: examples of class {int(empty[0])} would add no loss "
                        "(use loss_param { ignore_label } to skip a class)")
    with np.errstate(over="ignore"):  # reported just below
        h32 = h.astype(np.float32)
    if not np.all(np.isfinite(h32)):
        raise ToolError("H has entries too large for float32")
    return h32


# --------------------------------------------------------------------------
# Files


def read_matrix(path: Path) -> np.ndarray:
    """A 2-D float matrix from .npy, or from CSV/whitespace-separated text."""
    try:
        if path.suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        text = path.read_text(encoding="utf-8")
    except UNREADABLE_ARRAY as err:  # UnicodeDecodeError is a ValueError
        raise ToolError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    return parse_csv(text, str(path))


def parse_csv(text: str, source: str) -> np.ndarray:
    rows = [line.replace(",", " ").split() for line in text.splitlines()]
    rows = [row for row in rows if row and not row[0].startswith("#")]
    if not rows:
        raise ToolError(f"{source}: no numbers")
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise ToolError(f"{source}: rows have different lengths {sorted(widths)}")
    try:
        return np.array([[float(value) for value in row] for row in rows])
    except ValueError as err:
        raise ToolError(f"{source}: {err}") from None


def to_binaryproto(h: np.ndarray) -> bytes:
    """The serialized BlobProto (shape 1 x 1 x C x C) that infogain_loss_param.source reads."""
    blob = load_caffe_pb2().BlobProto()
    blob.shape.dim.extend((1, 1, *h.shape))
    blob.data.extend(h.astype(np.float32).ravel().tolist())
    return blob.SerializeToString()


def read_binaryproto(path: Path) -> np.ndarray:
    """H back from a binaryproto, as C x C (what Caffe's BlobProto holds, shape or legacy 4-D)."""
    blob = load_caffe_pb2().BlobProto()
    blob.ParseFromString(read_bytes(path))
    values = np.asarray(blob.data or blob.double_data, dtype=np.float64)
    side = int(round(np.sqrt(values.size)))
    if side * side != values.size:
        raise ToolError(f"{path}: {values.size} values are not a square C x C matrix")
    return values.reshape(side, side)


def format_matrix(h: np.ndarray) -> str:
    with np.printoptions(precision=4, suppress=True, linewidth=120):
        return f"H ({h.shape[0]} x {h.shape[1]}):\n{h}"


def plot_png(h: np.ndarray, title: str) -> bytes:
    """A heat map of H as PNG bytes (Agg canvas, no pyplot state)."""
    figure = new_figure(5, 4.2)
    axes = figure.add_subplot()
    image = axes.imshow(h, cmap="viridis")
    figure.colorbar(image, ax=axes)
    axes.set_xlabel("predicted class c")
    axes.set_ylabel("label l")
    axes.set_title(title)
    return png_bytes(figure)


# --------------------------------------------------------------------------
# Command line


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, metavar="H.binaryproto",
                        help="write H here (the file infogain_loss_param.source reads; '-': stdout)")
    parser.add_argument("--print", dest="print_matrix", action="store_true", help="print H")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write a heat map of H")
    parser.add_argument("--classes", type=positive_int("--classes"), metavar="C", help="check that H is C x C")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = make_parser(MODULE, __doc__ or "", EPILOG, argv)
    sub = parser.add_subparsers(dest="source", required=True, metavar="{counts,cost,matrix,identity}")
    counts = sub.add_parser("counts", help="H = diag(N / (C * n_c)) from class counts")
    group = counts.add_mutually_exclusive_group(required=True)
    group.add_argument("counts", nargs="*", type=float, default=[], metavar="N_C", help="examples per class")
    group.add_argument("--labels", type=Path, metavar="FILE",
                       help="count the integer labels in a .npy or text file instead")
    cost = sub.add_parser("cost", help="H = exp(-D / scale) or 1 - D / max(D) from a cost/distance matrix")
    cost.add_argument("--csv", type=Path, required=True, metavar="FILE", help="D as CSV or .npy")
    cost.add_argument("--transform", choices=TRANSFORMS, default="exp")
    cost.add_argument("--scale", type=positive_number("scale"), help="for exp (default: mean off-diagonal D)")
    matrix = sub.add_parser("matrix", help="H itself from a CSV or .npy file")
    matrix.add_argument("--csv", type=Path, required=True, metavar="FILE", help="H as CSV or .npy")
    sub.add_parser("identity", help="H = I (needs --classes)")
    for child in sub.choices.values():
        add_output_options(child)
    return parser


def label_counts(path: Path) -> list[float]:
    labels = read_matrix(path).ravel()
    if labels.size == 0 or not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)) or labels.min() < 0:
        raise ToolError(f"{path}: labels must be non-negative integers")
    if labels.max() >= labels.size:  # some class below it has no label (and bincount could not allocate)
        missing = int(np.setdiff1d(np.arange(labels.size), labels)[0])
        raise ToolError(f"class {missing} has count 0: its inverse frequency is undefined "
                        "(drop the class or give it a count)")
    return np.bincount(labels.astype(np.int64)).astype(float).tolist()


def build_h(args: argparse.Namespace) -> np.ndarray:
    if args.source == "counts":
        return infogain_matrix(counts=label_counts(args.labels) if args.labels else args.counts,
                               classes=args.classes)
    if args.source == "cost":
        return infogain_matrix(cost=read_matrix(args.csv), transform=args.transform, scale=args.scale,
                               classes=args.classes)
    if args.source == "matrix":
        return infogain_matrix(matrix=read_matrix(args.csv), classes=args.classes)
    if args.classes is None:
        raise ToolError("identity needs --classes C")
    return infogain_matrix(classes=args.classes)


def run(args: argparse.Namespace, outputs: Outputs) -> None:
    if args.output is None and args.plot is None and not args.print_matrix:
        raise ToolError("nothing to do: give -o H.binaryproto, --print or --plot PNG")
    h = build_h(args)
    if args.output is not None:
        outputs.file(args.output, to_binaryproto(h))
    if args.plot is not None:
        outputs.file(args.plot, plot_png(h, f"infogain H ({args.source})"))
    if args.print_matrix:
        outputs.say(format_matrix(h))
    outputs.say_written()


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(build_parser(argv), argv, run, ("output", "plot"))


if __name__ == "__main__":
    sys.exit(main())
