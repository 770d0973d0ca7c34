"""What the benchmark times: each layer group's candidate nets, their data, and the bytes they must move.

The nets are caffe_pb2 messages. Every candidate of a group reads the same
blobs: softmax "x" -> "y"; infogain "x" (scores), "label" and, for the
"H bottom" ones, "H" -> "loss"; distillation "student", "teacher" -> "loss".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from caffe_temperature.rewrite import scale_layer
from caffe_temperature.prototxt import load_caffe_pb2

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

SOFTMAX_BASELINE = "stock Scale+Softmax"
INFOGAIN_BASELINE = "stock InfogainLoss"
INFOGAIN_BOTTOM_BASELINE = "stock InfogainLoss, H bottom"
DISTILLATION_BASELINE = "stock composition (KL)"
DISTILLATION_LAYER = "SoftmaxWithDistillationLoss"
LAYER_GROUPS = ("softmax", "infogain", "distillation")
FLOAT_BYTES = 4
# H is C x C floats, and stock InfogainLoss with an H bottom re-sums it every
# pass: past this C the infogain group would be about H, not the softmax.
MAX_INFOGAIN_CHANNELS = 4096


@dataclass
class Candidate:
    name: str
    layers: list[caffe_pb2.LayerParameter]
    baseline: str


@dataclass
class Settings:
    temperature: float
    repeat: int  # timed blocks per candidate
    threads: int
    device: str
    block_ms: float  # target length of a block of calls
    max_spread: float = 1.3  # timing.spread above which a figure is not one
    retries: int = 1  # re-measurements of a group whose figures cannot be


@dataclass
class Runs:
    """One candidate, ready to run on its data; the deploy runtimes have no backward."""

    name: str
    baseline: str
    forward: Callable[[], object]
    forward_backward: Optional[Callable[[], object]]
    value: Callable[[], Optional[float]] = field(default=lambda: None)


# --------------------------------------------------------------------------
# Layers and nets


def layer(type_: str, name: str, bottoms: Sequence[str], tops: Sequence[str],
          **fields: Any) -> caffe_pb2.LayerParameter:
    """A LayerParameter; ``fields`` are its other fields, nested messages as dicts."""
    return load_caffe_pb2().LayerParameter(name=name, type=type_, bottom=list(bottoms), top=list(tops), **fields)


def constant_beta(beta: float) -> dict[str, Any]:
    """The scale_param with which the plugin's layers take a constant beta = 1/T."""
    return {"filler": {"type": "constant", "value": beta}}


def blob_shape(shape: Sequence[int]) -> dict[str, list[int]]:
    return {"dim": list(shape)}


def net(layers: Sequence[caffe_pb2.LayerParameter], force_backward: bool = False) -> caffe_pb2.NetParameter:
    return load_caffe_pb2().NetParameter(layer=list(layers), force_backward=force_backward)


def softmax_candidates(beta: float) -> list[Candidate]:
    layers = {
        "stock Softmax (T=1)": [layer("Softmax", "s", ["x"], ["y"])],
        SOFTMAX_BASELINE: [scale_layer("scale", "x", "xs", beta), layer("Softmax", "s", ["xs"], ["y"])],
        "TemperatureSoftmax": [layer("TemperatureSoftmax", "t", ["x"], ["y"], scale_param=constant_beta(beta))],
    }
    return [Candidate(name, candidate, SOFTMAX_BASELINE) for name, candidate in layers.items()]


def infogain_candidates(source: Path) -> list[Candidate]:
    """H read from ``source`` (summed once, at setup) or as a third bottom (summed every pass)."""

    def loss(type_: str, bottoms: tuple[str, ...], **params: Any) -> list[caffe_pb2.LayerParameter]:
        return [layer(type_, "loss", bottoms, ["loss"], **params)]

    hard, with_h = ("x", "label"), ("x", "label", "H")
    from_source = {"infogain_loss_param": {"source": str(source)}}
    return [
        Candidate("stock SoftmaxWithLoss", loss("SoftmaxWithLoss", hard), INFOGAIN_BASELINE),
        Candidate(INFOGAIN_BASELINE, loss("InfogainLoss", hard, **from_source), INFOGAIN_BASELINE),
        Candidate("SoftmaxWithInfogainLoss", loss("SoftmaxWithInfogainLoss", hard, **from_source),
                  INFOGAIN_BASELINE),
        Candidate(INFOGAIN_BOTTOM_BASELINE, loss("InfogainLoss", with_h), INFOGAIN_BOTTOM_BASELINE),
        Candidate("SoftmaxWithInfogainLoss, H bottom", loss("SoftmaxWithInfogainLoss", with_h),
                  INFOGAIN_BOTTOM_BASELINE),
    ]


def stock_distillation_layers(beta: float, positions: int) -> list[caffe_pb2.LayerParameter]:
    """T^2 * KL(p || q) averaged over positions, from stock layers only, reading
    "student" and "teacher" and writing "loss". Stock Caffe has no KL layer and
    SoftmaxWithLoss takes only hard labels, so this is what a user writes:
    p = Softmax(Scale(teacher)), log q = Log(Softmax(Scale(student))),
    loss = coeff * sum p * (log p - log q). Log of a probability is not the
    stable log-softmax, but both agree wherever no probability underflows."""
    pb = load_caffe_pb2()
    coeff = 1.0 / (beta * beta * positions)  # T^2 / norm (norm = VALID, no label: all positions)
    return [
        scale_layer("scale_teacher", "teacher", "teacher_t", beta),
        layer("Softmax", "p", ["teacher_t"], ["p"]),
        layer("Log", "log_p", ["p"], ["log_p"]),
        scale_layer("scale_student", "student", "student_t", beta),
        layer("Softmax", "q", ["student_t"], ["q"]),
        layer("Log", "log_q", ["q"], ["log_q"]),
        layer("Eltwise", "log_ratio", ["log_p", "log_q"], ["log_ratio"],
              eltwise_param={"operation": pb.EltwiseParameter.SUM, "coeff": [1, -1]}),
        layer("Eltwise", "kl_terms", ["p", "log_ratio"], ["kl_terms"],
              eltwise_param={"operation": pb.EltwiseParameter.PROD}),
        layer("Reduction", "loss", ["kl_terms"], ["loss"], loss_weight=[1],
              reduction_param={"operation": pb.ReductionParameter.SUM, "axis": 0, "coeff": coeff}),
    ]


def distillation_candidates(beta: float, positions: int) -> list[Candidate]:
    ours = layer(DISTILLATION_LAYER, "loss", ["student", "teacher"], ["loss"], scale_param=constant_beta(beta))
    return [
        Candidate(DISTILLATION_BASELINE, stock_distillation_layers(beta, positions), DISTILLATION_BASELINE),
        Candidate(DISTILLATION_LAYER, [ours], DISTILLATION_BASELINE),
    ]


def softmax_net(shape: Sequence[int], layers: Sequence[caffe_pb2.LayerParameter]) -> caffe_pb2.NetParameter:
    data = layer("Input", "x", [], ["x"], input_param={"shape": [blob_shape(shape)]})
    return net([data, *layers], force_backward=True)


def loss_net(x_shape: Sequence[int], label_shape: Sequence[int], h_shape: Sequence[int],
             layers: Sequence[caffe_pb2.LayerParameter]) -> caffe_pb2.NetParameter:
    # The scores come from a Parameter layer, so that the net backpropagates
    # to them without force_backward, which would make stock InfogainLoss
    # refuse its H bottom. The label and H are plain inputs.
    scores = layer("Parameter", "x", [], ["x"], parameter_param={"shape": blob_shape(x_shape)})
    inputs = layer("Input", "inputs", [], ["label", "H"],
                   input_param={"shape": [blob_shape(label_shape), blob_shape(h_shape)]})
    return net([scores, inputs, *layers])


def distillation_net(shape: Sequence[int], layers: Sequence[caffe_pb2.LayerParameter]) -> caffe_pb2.NetParameter:
    # The student is a Parameter, the teacher an Input: as in training, only the
    # student gets a gradient, and the stock composition's teacher branch
    # (Scale with lr_mult 0, Softmax, Log) runs forward only.
    student = layer("Parameter", "student", [], ["student"], parameter_param={"shape": blob_shape(shape)})
    teacher = layer("Input", "teacher", [], ["teacher"], input_param={"shape": [blob_shape(shape)]})
    return net([student, teacher, *layers])


# --------------------------------------------------------------------------
# Data


def normal(seed: int, shape: tuple[int, ...], scale: float) -> np.ndarray:
    # float32 straight from the generator: a float64 draw of 1024x32000 takes seconds.
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * np.float32(scale)


def infogain_data(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, integer labels (x's shape without axis 1, as stock loss layers
    want) and a non-negative C x C H with a heavier diagonal."""
    rng = np.random.default_rng(2)
    channels = shape[1]
    x = normal(2, shape, 3)
    label = rng.integers(0, channels, size=shape[:1] + shape[2:]).astype(np.float32)
    h = (rng.uniform(size=(channels, channels)) + np.eye(channels)).astype(np.float32)
    return x, label, h


def distillation_data(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Student and teacher logits, independent, on the scale of real logits."""
    return normal(3, shape, 3), normal(4, shape, 3)


# --------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Traffic:
    """Values (floats) that a pass must read and write at the least."""

    reads: int
    writes: int


def traffic(group: str, shape: tuple[int, ...]) -> tuple[Traffic, Traffic]:
    """What forward, and backward, must read and write at the least (each pass
    reads its inputs once and writes its outputs once; a loss is one value).

    softmax:      fwd reads x, writes y; bwd reads y, dy, writes dx.
    infogain:     fwd reads x, labels and the rows of H that the labels pick (at most
                  min(positions, C) of them); bwd reads the same and writes dx.
    distillation: fwd reads student, teacher; bwd reads both, writes dx.
    """
    n = math.prod(shape)
    positions = n // shape[1]
    if group == "softmax":
        return Traffic(n, n), Traffic(2 * n, n)
    if group == "distillation":
        return Traffic(2 * n, 0), Traffic(2 * n, n)
    if group == "infogain":
        reads = n + positions + min(positions, shape[1]) * shape[1]
        return Traffic(reads, 0), Traffic(reads, n)
    raise ValueError(f"unknown layer group {group!r}")


def traffic_bytes(group: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """Bytes that forward, and forward + backward, must move at the least (float)."""
    forward, backward = traffic(group, shape)
    forward_values = forward.reads + forward.writes
    return FLOAT_BYTES * forward_values, FLOAT_BYTES * (forward_values + backward.reads + backward.writes)


def skip_reason(group: str, shape: tuple[int, ...]) -> Optional[str]:
    if group == "infogain" and shape[1] > MAX_INFOGAIN_CHANNELS:
        gigabytes = FLOAT_BYTES * shape[1] ** 2 / 1e9
        return f"C = {shape[1]} > {MAX_INFOGAIN_CHANNELS}: H alone is {gigabytes:.1f} GB"
    return None
