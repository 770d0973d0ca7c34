"""The bad-input matrix (docs/robustness.md): every layer and the prototxt tool.

Layer errors are glog FATALs that abort the process, so every net that is
expected to fail runs in a Python of its own (conftest.run_net_forked). The
expectation for each row: a non-zero exit with a message that names the layer
and what is wrong, or, where the input is legal but odd (empty batch,
force_backward, non-finite logits), a clean run with the documented result.

NaN policy (README): a NaN (or +Inf) logit makes that position's softmax
vector NaN and nothing else; other positions keep their exact values, and
a loss over a batch with such a position is NaN (never a silently finite
number). src/softmax_kernels.cpp is built with -ffast-math, so the compiler
does not promise any of this: these tests are what does.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.special import log_softmax
import pytest

from caffe_temperature import _cli
from caffe_temperature import add_temperature_cli as tool

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "python" / "add_temperature.py"
DATA = Path(__file__).resolve().parent / "data" / "add_temperature"

RunIsolated = Callable[..., "subprocess.CompletedProcess[str]"]
NetFactory = Callable[..., Any]

C = 5
SHAPE = (4, C)  # N x C: softmax over axis 1, inner = 1
SHAPE_4D = (2, C, 3, 2)  # N x C x H x W: inner = 6 (the strided kernels)


def dims(shape: tuple[int, ...]) -> str:
    return " ".join(f"dim: {d}" for d in shape)


def inputs(**shapes: tuple[int, ...]) -> str:
    tops = " ".join(f'top: "{name}"' for name in shapes)
    blobs = " ".join(f"shape {{ {dims(shape)} }}" for shape in shapes.values())
    return f'layer {{ name: "input" type: "Input" {tops} input_param {{ {blobs} }} }}\n'


def beta_param(beta: str | None) -> str:
    return "" if beta is None else f'scale_param {{ filler {{ type: "constant" value: {beta} }} }}'


def one_layer_net(header: str, blobs: dict[str, tuple[int, ...] | None], layer: str, tops: str, params: str) -> str:
    """An Input layer for the blobs that are given (None: left out) feeding one layer, in that order."""
    given = {name: shape for name, shape in blobs.items() if shape is not None}
    bottoms = " ".join(f'bottom: "{name}"' for name in given)
    return header + inputs(**given) + f"layer {{ {layer} {bottoms} {tops} {params} }}\n"


def ts_net(shape: tuple[int, ...] = SHAPE, beta: str | None = "0.5", beta_shape: tuple[int, ...] | None = None,
           extra: str = "", header: str = "") -> str:
    return one_layer_net(header, {"x": shape, "beta": beta_shape}, 'name: "t" type: "TemperatureSoftmax"',
                         'top: "y"', f"{beta_param(beta)} {extra}")


def ig_net(shape: tuple[int, ...] = SHAPE, label_shape: tuple[int, ...] | None = None,
           h_shape: tuple[int, ...] | None = (C, C), params: str = "", extra: str = "", header: str = "",
           tops: str = 'top: "loss" top: "prob"') -> str:
    label_shape = label_shape if label_shape is not None else shape[:1] + shape[2:]
    return one_layer_net(header, {"x": shape, "label": label_shape, "H": h_shape},
                         'name: "ig" type: "SoftmaxWithInfogainLoss"', tops, f"{params} {extra}")


def kd_net(shape: tuple[int, ...] = SHAPE, teacher_shape: tuple[int, ...] | None = None,
           label_shape: tuple[int, ...] | None = None, beta: str | None = "0.5", params: str = "",
           extra: str = "", header: str = "", tops: str = 'top: "loss" top: "q"') -> str:
    return one_layer_net(header, {"s": shape, "t": teacher_shape or shape, "label": label_shape},
                         'name: "kd" type: "SoftmaxWithDistillationLoss"', tops,
                         f"{beta_param(beta)} {params} {extra}")


def logits(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2, size=shape).astype(np.float32)


def labels(shape: tuple[int, ...] = SHAPE, bad: float | None = None, where: int = 2) -> np.ndarray:
    label = np.zeros(shape[:1] + shape[2:], dtype=np.float32)
    label.flat[:] = np.arange(label.size) % C
    if bad is not None:
        label.flat[where] = bad
    return label


FORCE_BACKWARD = "force_backward: true\n"


# --------------------------------------------------------------------------
# Rows that must stop the net with a message


@dataclass(frozen=True)
class FatalRow:
    net: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    # Every pattern must appear in stderr (regular expressions).
    messages: tuple[str, ...] = ()
    backward: bool = False


def write_h_file(path: Path, h: np.ndarray) -> None:
    import caffe

    path.write_bytes(caffe.io.array_to_blobproto(h.reshape(1, 1, *h.shape)).SerializeToString())


def nan_h() -> np.ndarray:
    h = np.eye(C, dtype=np.float32)
    h[1, 3] = np.nan
    return h


def unused_row_h(*values: float) -> np.ndarray:
    """The identity with values from column 1 on in row C - 1, the row that no label of labels() picks."""
    h = np.eye(C, dtype=np.float32)
    h[C - 1, 1:1 + len(values)] = values
    return h


# Binaryproto H files, by name, with what the net's failure must say.
H_FILES: dict[str, tuple[np.ndarray, str]] = {
    "h_wrong_size": (np.eye(C - 1, dtype=np.float32), "must be C x C = 25 values"),
    "h_empty": (np.zeros((0, 0), dtype=np.float32), "holds no values"),
    "h_nan": (nan_h(), r"H\[1, 3\] = nan"),
    # An entry that no position reads stops the net all the same (docs/spec.md: H with a non-finite entry).
    "h_unused_row_nan": (unused_row_h(np.nan), r"H\[4, 1\] = nan"),
    "h_unused_row_inf": (unused_row_h(np.inf), r"H\[4, 1\] = inf"),
    "h_unused_row_minus_inf": (unused_row_h(-np.inf), r"H\[4, 1\] = -inf"),
    "h_unused_row_inf_and_minus_inf": (unused_row_h(np.inf, -np.inf), r"H\[4, 1\] = inf"),  # the row sums to NaN
}


def write_h_files(tmp: Path) -> None:
    """The H files the infogain rows name (h_missing.binaryproto stays missing)."""
    for name, (h, _) in H_FILES.items():
        write_h_file(tmp / f"{name}.binaryproto", h)
    (tmp / "h_garbage.binaryproto").write_bytes(b"\xff\xfe not a blob \x00" * 3)


def fatal_rows(tmp: Path) -> dict[str, FatalRow]:
    """The failing rows, by test id; H files are looked for in tmp."""
    x = logits()
    eye = np.eye(C, dtype=np.float32)
    rows: dict[str, FatalRow] = {}
    # TemperatureSoftmax
    for beta in ("0", "-0.5", "nan", "inf"):
        rows[f"TemperatureSoftmax-param-beta={beta}"] = FatalRow(
            ts_net(beta=beta), {"x": x},
            ("TemperatureSoftmax layer 't'", "must be finite and > 0", r'filler \{ type: "constant"'))
    rows["TemperatureSoftmax-param-beta-not-constant"] = FatalRow(
        inputs(x=SHAPE) + 'layer { name: "t" type: "TemperatureSoftmax" bottom: "x" top: "y" '
        'scale_param { filler { type: "gaussian" } } }', {"x": x},
        ("TemperatureSoftmax layer 't'", "must be\\s+a constant"))
    for value in (0.0, -1.0, np.nan, np.inf):
        beta = np.array([1.0, 0.5, value, 1.0], dtype=np.float32)
        rows[f"TemperatureSoftmax-bottom-beta={value}"] = FatalRow(
            ts_net(beta=None, beta_shape=(4,)), {"x": x, "beta": beta},
            ("TemperatureSoftmax layer 't'", r"bottom\[1\]\[2\] = ", "must be finite and > 0"))
    rows["TemperatureSoftmax-beta-count-mismatch"] = FatalRow(
        ts_net(beta=None, beta_shape=(3,)), {"x": x, "beta": np.ones(3)},
        ("TemperatureSoftmax layer 't'", "has 3 values; expected 1 \\(shared\\), 4 \\(one per sample\\)"))
    rows["TemperatureSoftmax-in-place-with-beta-gradient"] = FatalRow(
        inputs(x=SHAPE, beta=(1,)) + 'layer { name: "t" type: "TemperatureSoftmax" bottom: "x" bottom: "beta" '
        'top: "x" }', {"x": x, "beta": np.ones(1)},
        ("TemperatureSoftmax layer 't'", "runs in place with beta", "propagate_down: true propagate_down: false"))
    # SoftmaxWithInfogainLoss
    for value in (C, -1, 2.5, np.nan, np.inf):
        rows[f"SoftmaxWithInfogainLoss-label={value}"] = FatalRow(
            ig_net(), {"x": x, "label": labels(bad=value), "H": eye},
            ("SoftmaxWithInfogainLoss layer 'ig'", "label at position 2", rf"expected an integer in \[0, {C}\)"))
    rows["SoftmaxWithInfogainLoss-label-is-not-ignore_label"] = FatalRow(
        ig_net(params="loss_param { ignore_label: 255 }"), {"x": x, "label": labels(bad=254), "H": eye},
        ("label at position 2", "is 254", "or ignore_label 255"))
    rows["SoftmaxWithInfogainLoss-label-count-mismatch"] = FatalRow(
        ig_net(label_shape=(3,)), {"x": x, "label": np.zeros(3), "H": eye},
        ("SoftmaxWithInfogainLoss layer 'ig'", "must hold one\\s+label per position"))
    rows["SoftmaxWithInfogainLoss-H-bottom-wrong-size"] = FatalRow(
        ig_net(h_shape=(C, C - 1)), {"x": x, "label": labels(), "H": np.ones((C, C - 1))},
        ("SoftmaxWithInfogainLoss layer 'ig'", "must be C x C = 25 values"))
    # C * C passes INT_MAX: at C = 65537 it wraps to 131073 in 32 bits, which would accept this H.
    for classes, h_count, c_squared in [(50000, 4, 2500000000), (65537, 131073, 4295098369)]:
        rows[f"SoftmaxWithInfogainLoss-H-bottom-wrong-size-C={classes}"] = FatalRow(
            ig_net(shape=(1, classes), h_shape=(h_count,)), {},
            ("SoftmaxWithInfogainLoss layer 'ig'", f"must be C x C = {c_squared} values, C = {classes}"))
    rows["SoftmaxWithInfogainLoss-H-bottom-NaN"] = FatalRow(
        ig_net(), {"x": x, "label": labels(), "H": nan_h()},
        ("SoftmaxWithInfogainLoss layer 'ig'", r"H\[1, 3\] = nan", "must be finite"))
    rows["SoftmaxWithInfogainLoss-H-bottom-unused-row-inf-and-minus-inf"] = FatalRow(
        ig_net(), {"x": x, "label": labels(), "H": unused_row_h(np.inf, -np.inf)},
        ("SoftmaxWithInfogainLoss layer 'ig'", r"H\[4, 1\] = inf", "must be finite"))
    file_rows = [(name, expect) for name, (_, expect) in H_FILES.items()]
    for name, expect in file_rows + [("h_missing", "h_missing.binaryproto"), ("h_garbage", "h_garbage.binaryproto")]:
        source = tmp / f"{name}.binaryproto"
        rows[f"SoftmaxWithInfogainLoss-H-file-{name}"] = FatalRow(
            ig_net(h_shape=None, params=f'infogain_loss_param {{ source: "{source}" }}'),
            {"x": x, "label": labels()}, ("SoftmaxWithInfogainLoss layer 'ig'", expect))
    rows["SoftmaxWithInfogainLoss-no-class"] = FatalRow(
        ig_net(shape=(2, 0, 3), h_shape=(0,)), {},
        ("SoftmaxWithInfogainLoss layer 'ig'", r"axis 1 of bottom\[0\] \(shape 2 0 3", "there is none"))
    rows["SoftmaxWithInfogainLoss-no-H-at-all"] = FatalRow(
        ig_net(h_shape=None), {"x": x, "label": labels()},
        ("SoftmaxWithInfogainLoss layer 'ig'", "source"))
    rows["SoftmaxWithInfogainLoss-propagate_down-label"] = FatalRow(
        ig_net(extra="propagate_down: true propagate_down: true propagate_down: false", header=FORCE_BACKWARD),
        {"x": x, "label": labels(), "H": eye},
        ("SoftmaxWithInfogainLoss layer 'ig' cannot backpropagate to the label",), backward=True)
    rows["SoftmaxWithInfogainLoss-propagate_down-H"] = FatalRow(
        ig_net(extra="propagate_down: true propagate_down: false propagate_down: true", header=FORCE_BACKWARD),
        {"x": x, "label": labels(), "H": eye},
        ("cannot backpropagate to the infogain matrix",), backward=True)
    # SoftmaxWithDistillationLoss
    for beta in ("0", "-2", "nan", "inf"):
        rows[f"SoftmaxWithDistillationLoss-param-beta={beta}"] = FatalRow(
            kd_net(beta=beta), {"s": x, "t": x},
            ("SoftmaxWithDistillationLoss layer 'kd'", "must be finite and > 0", r'filler \{ type: "constant"'))
    for value in (C, -1, 1.5, np.nan):
        rows[f"SoftmaxWithDistillationLoss-label={value}"] = FatalRow(
            kd_net(label_shape=(4,)), {"s": x, "t": x, "label": labels(bad=value)},
            ("SoftmaxWithDistillationLoss layer 'kd'", "position 2", rf"expected an integer in \[0, {C}\)"))
    rows["SoftmaxWithDistillationLoss-teacher-shape-mismatch"] = FatalRow(
        kd_net(teacher_shape=(4, C + 1)), {"s": x, "t": np.zeros((4, C + 1))},
        ("SoftmaxWithDistillationLoss layer 'kd'", "student", "teacher", "same shape"))
    rows["SoftmaxWithDistillationLoss-no-class"] = FatalRow(
        kd_net(shape=(2, 0, 3)), {},
        ("SoftmaxWithDistillationLoss layer 'kd'", r"axis 1 of the logits \(shape 2 0 3", "there is none"))
    rows["SoftmaxWithDistillationLoss-label-count-mismatch"] = FatalRow(
        kd_net(label_shape=(3,)), {"s": x, "t": x, "label": np.zeros(3)},
        ("SoftmaxWithDistillationLoss layer 'kd'", "one label per position"))
    rows["SoftmaxWithDistillationLoss-ignore_label-without-label"] = FatalRow(
        kd_net(params="loss_param { ignore_label: -1 }"), {"s": x, "t": x},
        ("SoftmaxWithDistillationLoss layer 'kd'", "needs the label"))
    rows["SoftmaxWithDistillationLoss-propagate_down-teacher"] = FatalRow(
        kd_net(extra="propagate_down: true propagate_down: true", header=FORCE_BACKWARD), {"s": x, "t": x},
        ("cannot backpropagate to the teacher",), backward=True)
    rows["SoftmaxWithDistillationLoss-propagate_down-label"] = FatalRow(
        kd_net(label_shape=(4,), extra="propagate_down: true propagate_down: false propagate_down: true",
               header=FORCE_BACKWARD),
        {"s": x, "t": x, "label": labels()}, ("cannot backpropagate to the labels",), backward=True)
    return rows


# Test ids need no files: the rows only name their paths.
FATAL_ROW_IDS = list(fatal_rows(Path("/nonexistent")))


@pytest.fixture(scope="module")
def rows(caffe: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, FatalRow]:
    tmp = tmp_path_factory.mktemp("h_files")
    write_h_files(tmp)
    return fatal_rows(tmp)


@pytest.mark.parametrize("row_id", FATAL_ROW_IDS)
def test_bad_layer_input_stops_with_a_message(rows: dict[str, FatalRow], row_id: str, run_isolated: RunIsolated) -> None:
    row = rows[row_id]
    result = run_isolated(row.net, row.inputs, backward=row.backward)
    assert result.returncode != 0, f"the net ran although its input is bad:\n{result.stdout}"
    # glog's FATAL handler aborts (SIGABRT): a message, not a segfault.
    assert result.returncode in (1, -signal.SIGABRT, 128 + signal.SIGABRT), (result.returncode, result.stderr[-2000:])
    assert re.search(r"^F\d+ \d\d:", result.stderr, re.MULTILINE), f"no glog FATAL line:\n{result.stderr[-2000:]}"
    for pattern in row.messages:
        assert re.search(pattern, result.stderr), f"{pattern!r} not in:\n{result.stderr[-3000:]}"


# --------------------------------------------------------------------------
# Legal but odd input: the net runs, with the documented result


EMPTY = (0, C)
SILENCE_Y = 'layer { name: "silence" type: "Silence" bottom: "y" }\n'
LOSS_ONLY = 'top: "loss"'


def empty_input_rows() -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """Nets over input with no position (or, for TemperatureSoftmax, no class), by test id: (net, inputs).

    Stock Caffe gives a blob memory only once it has held a value. "never-allocated": the net declares
    the empty shapes and returns no blob but the loss, and runs forward only (pycaffe reads the
    returned blobs, and after a backward pass the inputs' diffs; the C++ tests run the backward pass
    of such blobs). "reshaped": the net declares full shapes and the inputs are reshaped to empty
    ones, so that the outputs exist, empty.
    """
    empty_4d = (2, C, 0, 2)  # inner = 0
    return {
        "TemperatureSoftmax-never-allocated": (ts_net(shape=EMPTY) + SILENCE_Y, {}),
        "TemperatureSoftmax-never-allocated-beta-per-sample": (
            ts_net(shape=EMPTY, beta=None, beta_shape=(0,)) + SILENCE_Y, {}),
        "TemperatureSoftmax-reshaped-beta-per-sample": (
            ts_net(beta=None, beta_shape=(4,), header=FORCE_BACKWARD), {"x": np.zeros(EMPTY), "beta": np.ones(0)}),
        "TemperatureSoftmax-reshaped-no-class": (
            ts_net(shape=SHAPE_4D, beta=None, beta_shape=(2,), header=FORCE_BACKWARD),
            {"x": np.zeros((2, 0, 3, 2)), "beta": np.ones(2)}),
        "SoftmaxWithInfogainLoss-never-allocated": (ig_net(shape=EMPTY, tops=LOSS_ONLY), {}),
        "SoftmaxWithInfogainLoss-reshaped": (
            ig_net(shape=SHAPE_4D, header=FORCE_BACKWARD),
            {"x": np.zeros(empty_4d), "label": np.zeros((2, 0, 2)), "H": np.eye(C)}),
        "SoftmaxWithDistillationLoss-never-allocated": (
            kd_net(shape=EMPTY, label_shape=(0,), tops=LOSS_ONLY), {}),
        "SoftmaxWithDistillationLoss-reshaped": (
            kd_net(header=FORCE_BACKWARD, extra="propagate_down: true propagate_down: false"),
            {"s": np.zeros(EMPTY), "t": np.zeros(EMPTY)}),
    }


@pytest.mark.parametrize("row_id", list(empty_input_rows()))
def test_empty_input_gives_an_empty_result(row_id: str, run_isolated: RunIsolated) -> None:
    """No position: the layers read no blob (an empty one may have no memory), the loss is 0, nothing dies."""
    net, values = empty_input_rows()[row_id]
    result = run_isolated(net, values, backward=FORCE_BACKWARD in net)
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "finished without error" in result.stdout, result.stdout
    if not row_id.startswith("TemperatureSoftmax"):
        assert "output loss = 0.0" in result.stdout, result.stdout


def test_empty_batch_gives_beta_a_zero_gradient(make_net: NetFactory) -> None:
    """The gradient of a shared beta over no position is an empty sum, not what the last batch left."""
    net = make_net(ts_net(beta=None, beta_shape=(1,), header=FORCE_BACKWARD))
    net.blobs["beta"].data[...] = 0.5
    net.blobs["x"].data[...] = logits()
    net.forward()
    net.blobs["y"].diff[...] = np.linspace(-1, 1, SHAPE[0] * C).reshape(SHAPE)
    net.backward()
    assert net.blobs["beta"].diff[0] != 0
    net.blobs["x"].reshape(*EMPTY)
    net.forward()
    net.backward()
    assert net.blobs["beta"].diff[0] == 0


@pytest.mark.parametrize("layer", ["TemperatureSoftmax", "SoftmaxWithInfogainLoss", "SoftmaxWithDistillationLoss"])
def test_force_backward_works(layer: str, make_net: NetFactory) -> None:
    """force_backward: true must not make Caffe ask for a label/teacher/H/beta gradient that dies."""
    x = logits()
    if layer == "TemperatureSoftmax":
        net = make_net(ts_net(beta=None, beta_shape=(1,), header=FORCE_BACKWARD))
        net.blobs["beta"].data[...] = 0.5
        net.blobs["x"].data[...] = x
        net.forward()
        # Not a loss: the gradient that reaches it is whatever is above it.
        net.blobs["y"].diff[...] = np.linspace(-1, 1, x.size).reshape(x.shape)
        net.backward()
        assert np.isfinite(net.blobs["x"].diff).all() and np.any(net.blobs["x"].diff != 0)
        assert np.isfinite(net.blobs["beta"].diff).all() and np.any(net.blobs["beta"].diff != 0)
        return
    elif layer == "SoftmaxWithInfogainLoss":
        net = make_net(ig_net(header=FORCE_BACKWARD))
        net.blobs["label"].data[...] = labels()
        net.blobs["H"].data[...] = np.eye(C)
    else:
        net = make_net(kd_net(label_shape=(4,), header=FORCE_BACKWARD))
        net.blobs["t"].data[...] = logits(seed=1)
        net.blobs["label"].data[...] = labels()
    net.blobs["x" if "x" in net.blobs else "s"].data[...] = x
    net.forward()
    net.backward()
    first = net.blobs["x" if "x" in net.blobs else "s"].diff
    assert np.all(np.isfinite(first)) and np.any(first != 0)


# NaN policy -----------------------------------------------------------------

BAD_POSITION_2D = (1,)  # sample 1 of SHAPE (inner = 1)
BAD_POSITION_4D = (1, 2, 1)  # sample 1, (h, w) = (2, 1) of SHAPE_4D (inner = 6)


def poisoned(shape: tuple[int, ...], value: float, seed: int = 0) -> tuple[np.ndarray, tuple[int, ...]]:
    """Logits with one entry (class 3) set to value; returns them and the position's index."""
    x = logits(shape, seed)
    position = BAD_POSITION_2D if len(shape) == 2 else BAD_POSITION_4D
    index = position[:1] + (3,) + position[1:]
    x[index] = value
    return x, position


def at_position(blob: np.ndarray, position: tuple[int, ...]) -> np.ndarray:
    """The softmax vector (all classes) of one position."""
    return blob[position[:1] + (slice(None),) + position[1:]]


def others(blob: np.ndarray, position: tuple[int, ...]) -> np.ndarray:
    mask = np.ones(blob.shape, dtype=bool)
    mask[position[:1] + (slice(None),) + position[1:]] = False
    return blob[mask]


def run_layer(make_net: NetFactory, layer: str, shape: tuple[int, ...], x: np.ndarray,
              teacher: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Forward + backward through one layer; returns (probabilities, gradient to the logits, loss)."""
    if layer == "TemperatureSoftmax":
        net = make_net(ts_net(shape=shape, header=FORCE_BACKWARD))
        net.blobs["x"].data[...] = x
        net.forward()
        net.blobs["y"].diff[...] = np.linspace(-1, 1, x.size).reshape(shape)
        net.backward()
        return net.blobs["y"].data.copy(), net.blobs["x"].diff.copy(), float("nan")
    if layer == "SoftmaxWithInfogainLoss":
        net = make_net(ig_net(shape=shape, header=FORCE_BACKWARD))
        net.blobs["label"].data[...] = labels(shape)
        net.blobs["H"].data[...] = np.full((C, C), 0.1) + np.eye(C)
        net.blobs["x"].data[...] = x
        net.forward()
        net.backward()
        return net.blobs["prob"].data.copy(), net.blobs["x"].diff.copy(), float(net.blobs["loss"].data)
    net = make_net(kd_net(shape=shape, header=FORCE_BACKWARD, extra="propagate_down: true propagate_down: false"))
    net.blobs["s"].data[...] = x
    net.blobs["t"].data[...] = logits(shape, seed=7) if teacher is None else teacher
    net.forward()
    net.backward()
    return net.blobs["q"].data.copy(), net.blobs["s"].diff.copy(), float(net.blobs["loss"].data)


LAYERS = ["TemperatureSoftmax", "SoftmaxWithInfogainLoss", "SoftmaxWithDistillationLoss"]


@pytest.mark.parametrize("shape", [SHAPE, SHAPE_4D], ids=["inner=1", "inner=6"])
@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "+inf"])
@pytest.mark.parametrize("layer", LAYERS)
def test_non_finite_logit_poisons_its_own_vector_only(make_net: NetFactory, layer: str, shape: tuple[int, ...],
                                                      value: float) -> None:
    clean_x = logits(shape)
    x, position = poisoned(shape, value)
    clean_prob, clean_grad, clean_loss = run_layer(make_net, layer, shape, clean_x)
    prob, grad, loss = run_layer(make_net, layer, shape, x)
    assert np.isnan(at_position(prob, position)).all(), at_position(prob, position)
    assert np.isnan(at_position(grad, position)).all(), at_position(grad, position)
    # Every other position: exactly what it is without the bad logit.
    np.testing.assert_array_equal(others(prob, position), others(clean_prob, position))
    np.testing.assert_array_equal(others(grad, position), others(clean_grad, position))
    if layer != "TemperatureSoftmax":
        assert np.isfinite(clean_loss) and np.isnan(loss), (clean_loss, loss)


@pytest.mark.parametrize("shape", [SHAPE, SHAPE_4D], ids=["inner=1", "inner=6"])
@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "+inf"])
def test_non_finite_teacher_logit_makes_the_distillation_loss_nan(make_net: NetFactory, shape: tuple[int, ...],
                                                                   value: float) -> None:
    """A NaN target must not vanish from the loss (0 log 0 = 0 must not swallow it)."""
    teacher, position = poisoned(shape, value, seed=7)
    prob, grad, loss = run_layer(make_net, "SoftmaxWithDistillationLoss", shape, logits(shape), teacher=teacher)
    assert np.isnan(loss), loss
    assert np.isfinite(prob).all()  # the student's probabilities do not depend on the teacher
    assert np.isnan(at_position(grad, position)).all()
    assert np.isfinite(others(grad, position)).all()


@pytest.mark.parametrize("shape", [SHAPE, SHAPE_4D], ids=["inner=1", "inner=6"])
@pytest.mark.parametrize("layer", [
    "TemperatureSoftmax",
    "SoftmaxWithDistillationLoss",
    "SoftmaxWithInfogainLoss",
])
def test_minus_inf_logit_is_a_zero_probability(make_net: NetFactory, layer: str, shape: tuple[int, ...]) -> None:
    """-inf is exp(-inf) = 0: a class that can never win, not an error."""
    x, position = poisoned(shape, -np.inf)
    prob, grad, loss = run_layer(make_net, layer, shape, x)
    assert np.isfinite(prob).all() and np.isfinite(grad).all()
    assert (at_position(prob, position)[3] == 0).all()
    if layer == "SoftmaxWithInfogainLoss":
        # run_layer's H weighs every class: -H[l, 3] log 0 = +inf.
        assert loss == np.inf, loss


@pytest.mark.parametrize("shape", [SHAPE, SHAPE_4D], ids=["inner=1", "inner=6"])
def test_masked_class_in_distillation(make_net: NetFactory, shape: tuple[int, ...]) -> None:
    """A -inf student logit where the teacher puts mass makes KL(p || q) +inf; a
    -inf teacher logit adds 0 log 0 = 0, and the loss is the KL of the rest."""
    student, _ = poisoned(shape, -np.inf)
    assert run_layer(make_net, "SoftmaxWithDistillationLoss", shape, student)[2] == np.inf
    teacher, _ = poisoned(shape, -np.inf, seed=7)
    x = logits(shape)
    _, grad, loss = run_layer(make_net, "SoftmaxWithDistillationLoss", shape, x, teacher=teacher)
    beta = 0.5  # kd_net's
    log_p, log_q = log_softmax(beta * teacher.astype(np.float64), axis=1), log_softmax(beta * x, axis=1)
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):  # 0 * -inf where p = 0, which where() drops
        terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    positions = x.size // x.shape[1]
    assert loss == pytest.approx(terms.sum() / beta**2 / positions, rel=1e-5)
    assert np.isfinite(grad).all()


# --------------------------------------------------------------------------
# The prototxt tool

DEPLOY = 'name: "d" input: "x" input_shape { dim: 1 dim: 3 }\nlayer { name: "p" type: "Softmax" bottom: "x" top: "p" }\n'
OLD_OUTPUT = "previous contents, must survive\n"


def run_tool(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    """main() in-process; returns (exit status, stderr). argparse errors exit via SystemExit."""
    try:
        code = tool.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, status: int, *needles: str) -> None:
    assert code == status, (code, err)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    path = tmp_path / "deploy.prototxt"
    path.write_text(DEPLOY)
    return path


@pytest.mark.parametrize("name,content,needle", [
    ("missing", None, "cannot read"),
    ("directory", "DIR", "Is a directory"),
    ("not_utf8", b"layer { name: \"\xff\xfe\" }", "not UTF-8"),
    ("malformed", b"layer { name: \"p\" type: \"Softmax\" bottom: ", "cannot parse"),
    ("binary", bytes(range(256)), "deploy.prototxt:"),
    ("empty", b"", "no Softmax"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "")
def test_tool_bad_input_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str,
                             content: bytes | str | None, needle: str) -> None:
    path = tmp_path / "deploy.prototxt"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    out = tmp_path / "out.prototxt"
    out.write_text(OLD_OUTPUT)
    code, err = run_tool(capsys, path, "--T", "4", "-o", out)
    assert_one_line_error(code, err, 2, needle)
    assert out.read_text() == OLD_OUTPUT


@pytest.mark.parametrize("value", ["abc", "", "0", "-1", "-0", "nan", "inf", "-inf", "1e-400"])
def test_tool_bad_temperature(capsys: pytest.CaptureFixture[str], deploy: Path, value: str) -> None:
    code, err = run_tool(capsys, deploy, f"--T={value}")  # "=": "-inf" is not an option
    assert code == 2 and "T must be" in err, err
    assert deploy.read_text() == DEPLOY


def read_only_directory(tmp_path: Path) -> Path:
    """A directory no file can be created in: mode 0555, or /proc where root ignores modes."""
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o555)
    if os.access(directory, os.W_OK):  # root: permissions do not stop it
        return Path("/proc")
    return directory


@pytest.mark.parametrize("where", ["missing_directory", "read_only_directory"])
def test_tool_unwritable_output(capsys: pytest.CaptureFixture[str], deploy: Path, tmp_path: Path, where: str) -> None:
    directory = tmp_path / "no" / "such" if where == "missing_directory" else read_only_directory(tmp_path)
    out = directory / "out.prototxt"
    code, err = run_tool(capsys, deploy, "--T", "4", "-o", out)
    assert_one_line_error(code, err, 2, "cannot write", str(out))
    assert not out.exists()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("mode", ["-o", "--in-place"])
def test_tool_disk_full_keeps_the_old_file(capsys: pytest.CaptureFixture[str], deploy: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """ENOSPC as a real file system reports it late: from fsync, after write() succeeded."""
    out = tmp_path / "out.prototxt"
    out.write_text(OLD_OUTPUT)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_cli.os, "fsync", full)
    argv = ["-o", out] if mode == "-o" else ["--in-place"]
    code, err = run_tool(capsys, deploy, "--T", "4", *argv)
    assert_one_line_error(code, err, 2, "cannot write", "No space left on device")
    assert out.read_text() == OLD_OUTPUT and deploy.read_text() == DEPLOY
    assert leftovers(tmp_path) == []


def test_tool_file_size_limit_in_a_real_process(deploy: Path, tmp_path: Path) -> None:
    """The kernel refuses the write (RLIMIT_FSIZE, EFBIG): no monkeypatching at all."""
    out = tmp_path / "out.prototxt"
    out.write_text(OLD_OUTPUT)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    result = subprocess.run([sys.executable, str(SCRIPT), str(deploy), "--T", "4", "-o", str(out)],
                            capture_output=True, text=True, timeout=60, preexec_fn=limit)
    assert_one_line_error(result.returncode, result.stderr, 2, "cannot write", "File too large")
    assert out.read_text() == OLD_OUTPUT
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stage", ["write", "fsync", "replace"])
@pytest.mark.parametrize("mode", ["-o", "--in-place"])
def test_tool_interrupted_mid_write(capsys: pytest.CaptureFixture[str], deploy: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, stage: str, mode: str) -> None:
    """Ctrl-C at any point of the write: the old file is intact and no temporary file is left."""
    out = tmp_path / "out.prototxt"
    out.write_text(OLD_OUTPUT)

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if stage == "write":
        real_fdopen = os.fdopen

        class Interrupted:
            def __init__(self, handle: Any) -> None:
                self.handle = handle

            def __enter__(self) -> "Interrupted":
                return self

            def __exit__(self, *exc: object) -> None:
                self.handle.close()

            def write(self, data: bytes) -> None:
                self.handle.write(data[: len(data) // 2])  # half of it is on its way to the disk
                raise KeyboardInterrupt

        monkeypatch.setattr(_cli.os, "fdopen", lambda fd, mode: Interrupted(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(_cli.os, stage, interrupt)
    argv = ["-o", out] if mode == "-o" else ["--in-place"]
    with pytest.raises(KeyboardInterrupt):
        tool.main([str(a) for a in [deploy, "--T", "4", *argv]])
    assert out.read_text() == OLD_OUTPUT and deploy.read_text() == DEPLOY
    assert leftovers(tmp_path) == []


def test_tool_stdout_on_a_full_device(deploy: Path) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, str(SCRIPT), str(deploy), "--T", "4"],
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert_one_line_error(result.returncode, result.stderr, 2, "No space left on device")
