"""Benchmark the plugin's layers against stock Caffe, measured in the same run.

    python -m caffe_temperature.bench [--shapes 256x1000 8x21x128x128] [--T 40]
                                      [--layers softmax infogain distillation]
                                      [--json FILE] [--plot FILE.png]
    python -m caffe_temperature.bench --scaling softmax --plot scaling.png

Each candidate is a small pycaffe net (inputs -> layers under test) timed on the
same data: the median of repeated runs of forward, and of forward + backward.
The candidates of one layer group take turns (interleaved repeats), so that load
from other processes falls on all of them alike; compare the ratios, which come
from one run, rather than absolute times. Large shapes get fewer repeats.

* softmax: speed-ups against stock Scale(1/T) + Softmax. PyTorch's
  softmax(x / T) is added for reference when torch is installed.
* infogain: loss layers on the same scores and labels (softmax over axis 1),
  speed-ups against stock InfogainLoss (which takes scores and runs its own
  Softmax), with H read from infogain_loss_param.source (summed once, at
  setup) and with H as a third bottom (summed in every pass); stock
  SoftmaxWithLoss and PyTorch's cross_entropy for reference. Skipped for
  C > 4096, where H (C x C) alone would take gigabytes.
* distillation: SoftmaxWithDistillationLoss against the stock composition that
  computes the same T^2 * KL(p || q): Scale(1/T) + Softmax + Log on teacher and
  student, Eltwise (log p - log q, then p * that) and Reduction (SUM, coeff
  T^2 / positions); PyTorch's kl_div and cross_entropy (soft targets) for reference.

GB/s is an effective bandwidth: the bytes that any implementation must move
(see traffic_bytes) divided by the median time.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from caffe_temperature._loader import build_info, plugin_path
from caffe_temperature.add_temperature import positive_number


SOFTMAX_BASELINE = "stock Scale+Softmax"
INFOGAIN_BASELINE = "stock InfogainLoss"
INFOGAIN_BOTTOM_BASELINE = "stock InfogainLoss, H bottom"
DISTILLATION_BASELINE = "stock composition (KL)"
DISTILLATION_LAYER = "SoftmaxWithDistillationLoss"
LAYER_GROUPS = ("softmax", "infogain", "distillation")
DEFAULT_SHAPES = [(64, 10), (256, 1000), (1024, 32000), (8, 21, 128, 128)]
FLOAT_BYTES = 4
# H is C x C floats, and stock InfogainLoss with an H bottom re-sums it every
# pass: past this C the infogain group would be about H, not the softmax.
MAX_INFOGAIN_CHANNELS = 4096
# Shapes up to this many elements get the full --repeat; larger ones get
# proportionally fewer (at least 3), so that 1024x32000 takes seconds, not minutes.
FULL_REPEAT_ELEMENTS = 1 << 21
SCALING_CHANNELS = 1000
SCALING_BATCHES = [2**k for k in range(5, 14)]  # 32x1000 .. 8192x1000 (32 MB per blob)


@dataclass
class Result:
    group: str
    shape: str
    elements: int
    candidate: str
    baseline: str
    repeats: int
    forward_ms: float
    forward_backward_ms: float
    forward_speedup: float
    forward_backward_speedup: float
    forward_gb_per_s: float
    forward_backward_gb_per_s: float
    value: Optional[float]  # the loss, for loss layers: candidates must agree


@dataclass
class Candidate:
    name: str
    layers: str
    baseline: str


@dataclass
class Runs:
    """One candidate, ready to run on its data."""

    name: str
    baseline: str
    forward: Callable[[], object]
    forward_backward: Callable[[], object]
    value: Callable[[], Optional[float]] = lambda: None


@dataclass
class Settings:
    temperature: float
    repeat: int
    threads: int
    device: str


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not like 256x1000") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs at least two positive dimensions")
    return shape


def shape_label(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def repeats_for(shape: tuple[int, ...], repeat: int) -> int:
    scaled = round(repeat * FULL_REPEAT_ELEMENTS / math.prod(shape))
    return max(min(repeat, 3), min(repeat, scaled))


def traffic_bytes(group: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """Bytes that forward, and forward + backward, must move at the least
    (each pass reads its inputs once and writes its outputs once; float).

    softmax:      fwd reads x, writes y (2N); bwd reads y, dy, writes dx (3N).
    infogain:     fwd reads x, labels and the rows of H that the labels pick (at most
                  min(positions, C) of them); bwd reads the same and writes dx.
    distillation: fwd reads student, teacher (2N); bwd reads both, writes dx (3N).
    """
    n = math.prod(shape)
    positions = n // shape[1]
    if group == "softmax":
        forward, backward = 2 * n, 3 * n
    elif group == "infogain":
        h = min(positions, shape[1]) * shape[1]
        forward, backward = n + positions + h, 2 * n + positions + h
    elif group == "distillation":
        forward, backward = 2 * n, 3 * n
    else:
        raise ValueError(f"unknown layer group {group!r}")
    return FLOAT_BYTES * forward, FLOAT_BYTES * (forward + backward)


def median_ms(runs: list[Callable[[], object]], repeat: int) -> list[float]:
    """The median time of each run. The runs take turns, so that load from
    other processes, which drifts over seconds, falls on every candidate alike."""
    for run in runs:
        run()  # warm-up: first-touch allocations, lazy set-up
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for run, run_times in zip(runs, times):
            start = time.perf_counter()
            run()
            run_times.append(time.perf_counter() - start)
    return [1e3 * statistics.median(t) for t in times]


def shape_text(shape: tuple[int, ...]) -> str:
    return "shape { " + " ".join(f"dim: {d}" for d in shape) + " }"


def scale_layer(name: str, bottom: str, top: str, beta: float) -> str:
    """Stock Scale(1/T): a fixed scalar, as add_temperature.py writes it."""
    return (
        f'layer {{ name: "{name}" type: "Scale" bottom: "{bottom}" top: "{top}" param {{ lr_mult: 0 decay_mult: 0 }} '
        f'scale_param {{ num_axes: 0 bias_term: false filler {{ type: "constant" value: {beta!r} }} }} }}\n'
    )


def softmax_candidates(beta: float) -> list[Candidate]:
    """Each candidate's prototxt, reading blob "x" and writing "y"."""
    layers = {
        "stock Softmax (T=1)": 'layer { name: "s" type: "Softmax" bottom: "x" top: "y" }\n',
        SOFTMAX_BASELINE: scale_layer("scale", "x", "xs", beta)
        + 'layer { name: "s" type: "Softmax" bottom: "xs" top: "y" }\n',
        "TemperatureSoftmax": 'layer { name: "t" type: "TemperatureSoftmax" bottom: "x" top: "y" '
        f'scale_param {{ filler {{ type: "constant" value: {beta!r} }} }} }}\n',
    }
    return [Candidate(name, text, SOFTMAX_BASELINE) for name, text in layers.items()]


def infogain_candidates(source: Path) -> list[Candidate]:
    """Each candidate's prototxt, reading "x" (scores), "label" and, for the
    "H bottom" ones, "H", and writing the loss "loss"."""

    def loss(type_: str, bottoms: tuple[str, ...], params: str = "") -> str:
        bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
        return f'layer {{ name: "loss" type: "{type_}" {bottom} top: "loss" {params} }}\n'

    from_source = f'infogain_loss_param {{ source: "{source}" }}'
    return [
        Candidate("stock SoftmaxWithLoss", loss("SoftmaxWithLoss", ("x", "label")), INFOGAIN_BASELINE),
        Candidate(INFOGAIN_BASELINE, loss("InfogainLoss", ("x", "label"), from_source), INFOGAIN_BASELINE),
        Candidate(
            "SoftmaxWithInfogainLoss",
            loss("SoftmaxWithInfogainLoss", ("x", "label"), from_source),
            INFOGAIN_BASELINE,
        ),
        Candidate(INFOGAIN_BOTTOM_BASELINE, loss("InfogainLoss", ("x", "label", "H")), INFOGAIN_BOTTOM_BASELINE),
        Candidate(
            "SoftmaxWithInfogainLoss, H bottom",
            loss("SoftmaxWithInfogainLoss", ("x", "label", "H")),
            INFOGAIN_BOTTOM_BASELINE,
        ),
    ]


def stock_distillation_layers(beta: float, positions: int) -> str:
    """T^2 * KL(p || q) averaged over positions, from stock layers only, reading
    "student" and "teacher" and writing "loss". Stock Caffe has no KL layer and
    SoftmaxWithLoss takes only hard labels, so this is what a user writes:
    p = Softmax(Scale(teacher)), log q = Log(Softmax(Scale(student))),
    loss = coeff * sum p * (log p - log q). Log of a probability is not the
    stable log-softmax, but both agree wherever no probability underflows."""
    coeff = 1.0 / (beta * beta * positions)  # T^2 / norm (norm = VALID, no label: all positions)
    return (
        scale_layer("scale_teacher", "teacher", "teacher_t", beta)
        + 'layer { name: "p" type: "Softmax" bottom: "teacher_t" top: "p" }\n'
        + 'layer { name: "log_p" type: "Log" bottom: "p" top: "log_p" }\n'
        + scale_layer("scale_student", "student", "student_t", beta)
        + 'layer { name: "q" type: "Softmax" bottom: "student_t" top: "q" }\n'
        + 'layer { name: "log_q" type: "Log" bottom: "q" top: "log_q" }\n'
        + 'layer { name: "log_ratio" type: "Eltwise" bottom: "log_p" bottom: "log_q" top: "log_ratio" '
        "eltwise_param { operation: SUM coeff: 1 coeff: -1 } }\n"
        + 'layer { name: "kl_terms" type: "Eltwise" bottom: "p" bottom: "log_ratio" top: "kl_terms" '
        "eltwise_param { operation: PROD } }\n"
        + 'layer { name: "loss" type: "Reduction" bottom: "kl_terms" top: "loss" loss_weight: 1 '
        f"reduction_param {{ operation: SUM axis: 0 coeff: {coeff!r} }} }}\n"
    )


def distillation_candidates(beta: float, positions: int) -> list[Candidate]:
    """Each candidate's prototxt, reading "student" and "teacher", writing "loss"."""
    ours = (
        f'layer {{ name: "loss" type: "{DISTILLATION_LAYER}" bottom: "student" bottom: "teacher" top: "loss" '
        f'scale_param {{ filler {{ type: "constant" value: {beta!r} }} }} }}\n'
    )
    return [
        Candidate(DISTILLATION_BASELINE, stock_distillation_layers(beta, positions), DISTILLATION_BASELINE),
        Candidate(DISTILLATION_LAYER, ours, DISTILLATION_BASELINE),
    ]


def caffe_runs(caffe, candidate: Candidate, net_text: str, inputs: dict[str, np.ndarray], workdir: Path) -> Runs:
    path = workdir / "bench.prototxt"  # read by caffe.Net, free to reuse after
    path.write_text(net_text)
    net = caffe.Net(str(path), caffe.TEST)
    for name, array in inputs.items():
        net.blobs[name].data[...] = array
    if "y" in net.blobs:
        net.blobs["y"].diff[...] = np.random.default_rng(1).standard_normal(net.blobs["y"].shape, dtype=np.float32)

    def value() -> Optional[float]:
        return float(net.blobs["loss"].data.flat[0]) if "loss" in net.blobs else None

    return Runs(candidate.name, candidate.baseline, net.forward, lambda: (net.forward(), net.backward()), value)


def softmax_net(x: np.ndarray, layers: str) -> str:
    return (
        "force_backward: true\n"
        f'layer {{ name: "x" type: "Input" top: "x" input_param {{ {shape_text(x.shape)} }} }}\n' + layers
    )


def loss_net(x: np.ndarray, label: np.ndarray, h: np.ndarray, layers: str) -> str:
    # The scores come from a Parameter layer, so that the net backpropagates
    # to them without force_backward, which would make stock InfogainLoss
    # refuse its H bottom. The label and H are plain inputs.
    return (
        f'layer {{ name: "x" type: "Parameter" top: "x" parameter_param {{ {shape_text(x.shape)} }} }}\n'
        'layer { name: "inputs" type: "Input" top: "label" top: "H" '
        f"input_param {{ {shape_text(label.shape)} {shape_text(h.shape)} }} }}\n" + layers
    )


def distillation_net(shape: tuple[int, ...], layers: str) -> str:
    # The student is a Parameter, the teacher an Input: as in training, only the
    # student gets a gradient, and the stock composition's teacher branch
    # (Scale with lr_mult 0, Softmax, Log) runs forward only.
    return (
        f'layer {{ name: "student" type: "Parameter" top: "student" parameter_param {{ {shape_text(shape)} }} }}\n'
        f'layer {{ name: "teacher" type: "Input" top: "teacher" input_param {{ {shape_text(shape)} }} }}\n' + layers
    )


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


def import_torch(settings: Settings):
    """torch when it is installed (optional: a reference, never a baseline)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(settings.threads)
    return torch


def torch_device(torch, settings: Settings) -> str:
    return "cuda" if settings.device == "gpu" and torch.cuda.is_available() else "cpu"


def torch_timed(torch, device: str, fn: Callable[[], object]) -> Callable[[], object]:
    """CUDA runs asynchronously: wait for the kernels, or the time is the launch's."""
    if device != "cuda":
        return fn

    def synced() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return synced


def torch_label(torch, what: str, settings: Settings) -> str:
    where = "GPU" if torch_device(torch, settings) == "cuda" else f"{settings.threads} thread"
    return f"PyTorch {what}, {where}"


def torch_softmax_runs(torch, x: np.ndarray, settings: Settings) -> list[Runs]:
    device = torch_device(torch, settings)
    t = settings.temperature
    logits = torch.from_numpy(x).to(device).requires_grad_(True)
    grad = torch.from_numpy(np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32)).to(device)

    def forward():
        with torch.no_grad():
            return torch.softmax(logits / t, dim=1)

    def forward_backward():
        logits.grad = None  # else backward accumulates, one more pass over x
        torch.softmax(logits / t, dim=1).backward(grad)

    name = torch_label(torch, "softmax(x/T)", settings)
    return [Runs(name, SOFTMAX_BASELINE, torch_timed(torch, device, forward),
                 torch_timed(torch, device, forward_backward))]


def torch_infogain_runs(torch, scores: np.ndarray, labels: np.ndarray, settings: Settings) -> list[Runs]:
    """cross_entropy with hard labels is stock SoftmaxWithLoss (H = identity)."""
    device = torch_device(torch, settings)
    functional = torch.nn.functional
    logits = torch.from_numpy(scores).to(device).requires_grad_(True)
    target = torch.from_numpy(labels.astype(np.int64)).to(device)

    def loss():
        return functional.cross_entropy(logits, target)

    name = torch_label(torch, "cross_entropy", settings)
    return [torch_loss_runs(torch, device, logits, loss, name, INFOGAIN_BASELINE)]


def torch_distillation_runs(torch, student: np.ndarray, teacher: np.ndarray, settings: Settings) -> list[Runs]:
    """T^2 * KL(p || q) / positions, as kl_div and as soft-target cross_entropy
    (which is KL plus the teacher's entropy, a constant subtracted here)."""
    device = torch_device(torch, settings)
    functional = torch.nn.functional
    t = settings.temperature
    norm = student.size // student.shape[1]
    s = torch.from_numpy(student).to(device).requires_grad_(True)
    teacher_t = torch.from_numpy(teacher).to(device)

    def kl_div():
        p = torch.softmax(teacher_t / t, dim=1)
        return functional.kl_div(torch.log_softmax(s / t, dim=1), p, reduction="sum") * (t * t / norm)

    def cross_entropy():
        log_p = torch.log_softmax(teacher_t / t, dim=1)
        p = log_p.exp()
        ce = functional.cross_entropy(s / t, p, reduction="sum")
        return (ce + (p * log_p).sum()) * (t * t / norm)

    runs = []
    for what, loss in (("kl_div", kl_div), ("cross_entropy (soft targets)", cross_entropy)):
        runs.append(torch_loss_runs(torch, device, s, loss, torch_label(torch, what, settings),
                                    DISTILLATION_BASELINE))
    return runs


def torch_loss_runs(torch, device: str, param, loss: Callable[[], object], name: str, baseline: str) -> Runs:
    """A PyTorch loss of ``param`` as a candidate; its value is recorded, not compared."""

    def forward():
        with torch.no_grad():
            return loss()

    def forward_backward():
        param.grad = None
        loss().backward()

    return Runs(name, baseline, torch_timed(torch, device, forward), torch_timed(torch, device, forward_backward),
                lambda: float(forward()))


def softmax_group(caffe, torch, shape: tuple[int, ...], settings: Settings, workdir: Path) -> list[Runs]:
    x = normal(0, shape, 10)
    runs = [
        caffe_runs(caffe, c, softmax_net(x, c.layers), {"x": x}, workdir)
        for c in softmax_candidates(1.0 / settings.temperature)
    ]
    return runs + (torch_softmax_runs(torch, x, settings) if torch else [])


def infogain_group(caffe, torch, shape: tuple[int, ...], settings: Settings, workdir: Path) -> list[Runs]:
    scores, labels, h = infogain_data(shape)
    source = workdir / "H.binaryproto"
    source.write_bytes(caffe.io.array_to_blobproto(h[None, None]).SerializeToString())
    inputs = {"x": scores, "label": labels, "H": h}
    runs = [
        caffe_runs(caffe, c, loss_net(scores, labels, h, c.layers), inputs, workdir)
        for c in infogain_candidates(source)
    ]
    return runs + (torch_infogain_runs(torch, scores, labels, settings) if torch else [])


def distillation_group(caffe, torch, shape: tuple[int, ...], settings: Settings, workdir: Path) -> list[Runs]:
    student, teacher = distillation_data(shape)
    inputs = {"student": student, "teacher": teacher}
    positions = student.size // shape[1]
    runs = [
        caffe_runs(caffe, c, distillation_net(shape, c.layers), inputs, workdir)
        for c in distillation_candidates(1.0 / settings.temperature, positions)
    ]
    return runs + (torch_distillation_runs(torch, student, teacher, settings) if torch else [])


GROUP_BUILDERS = {"softmax": softmax_group, "infogain": infogain_group, "distillation": distillation_group}


def skip_reason(group: str, shape: tuple[int, ...]) -> Optional[str]:
    if group == "infogain" and shape[1] > MAX_INFOGAIN_CHANNELS:
        gigabytes = FLOAT_BYTES * shape[1] ** 2 / 1e9
        return f"C = {shape[1]} > {MAX_INFOGAIN_CHANNELS}: H alone is {gigabytes:.1f} GB"
    return None


def time_group(caffe, torch, group: str, shape: tuple[int, ...], settings: Settings, workdir: Path) -> list[Result]:
    """Times one group on one shape. Its nets are freed on return, so that only
    one group's blobs (2.6 GB for the stock distillation at 1024x32000) are alive."""
    runs = GROUP_BUILDERS[group](caffe, torch, shape, settings, workdir)
    repeats = repeats_for(shape, settings.repeat)
    forward = median_ms([r.forward for r in runs], repeats)
    both = median_ms([r.forward_backward for r in runs], repeats)
    values = [r.value() for r in runs]  # after a forward: the loss of these inputs
    base = {r.name: (f, b) for r, f, b in zip(runs, forward, both)}
    fwd_bytes, both_bytes = traffic_bytes(group, shape)
    return [
        Result(
            group=group,
            shape=shape_label(shape),
            elements=math.prod(shape),
            candidate=r.name,
            baseline=r.baseline,
            repeats=repeats,
            forward_ms=f,
            forward_backward_ms=b,
            forward_speedup=base[r.baseline][0] / f,
            forward_backward_speedup=base[r.baseline][1] / b,
            forward_gb_per_s=fwd_bytes / (f * 1e6),
            forward_backward_gb_per_s=both_bytes / (b * 1e6),
            value=v,
        )
        for r, f, b, v in zip(runs, forward, both, values)
    ]


def caffe_has_gpu() -> bool:
    """Whether the plugin, and so the Caffe it was built against (which the loader
    checked), has CUDA. A CPU_ONLY Caffe does not refuse set_mode_gpu(); it aborts
    the process (glog FATAL) at the first GPU call. Not the process's mapped
    libraries: PyTorch brings its own libcudart."""
    info = build_info(plugin_path())
    return info is not None and info.get("cpu_only") is False


def load_caffe(device: str):
    import caffe

    import caffe_temperature  # noqa: F401  (registers the layers)

    if device == "gpu":
        if not caffe_has_gpu():
            raise SystemExit(
                "--device gpu: this pycaffe's Caffe is CPU-only (built with CPU_ONLY, no CUDA libraries "
                "loaded); use --device cpu, or put a CUDA build of Caffe and the plugin on PYTHONPATH"
            )
        caffe.set_device(0)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    return caffe


def run(shapes: list[tuple[int, ...]], groups: list[str], settings: Settings) -> tuple[list[Result], list[str]]:
    """All results, and a note for each (group, shape) that was skipped."""
    caffe = load_caffe(settings.device)
    torch = import_torch(settings)
    results: list[Result] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            for group in groups:
                reason = skip_reason(group, shape)
                if reason:
                    notes.append(f"{group} {shape_label(shape)} skipped: {reason}")
                    continue
                results.extend(time_group(caffe, torch, group, shape, settings, Path(tmp)))
    return results, notes


def print_table(results: list[Result], notes: list[str]) -> None:
    print(
        f"{'shape':<15} {'candidate':<42} {'n':>3} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd x':>7} {'f+b x':>7}"
        f" {'fwd GB/s':>9} {'f+b GB/s':>9}"
    )
    for r in results:
        print(
            f"{r.shape:<15} {r.candidate:<42} {r.repeats:>3} {r.forward_ms:9.3f} {r.forward_backward_ms:11.3f} "
            f"{r.forward_speedup:6.2f}x {r.forward_backward_speedup:6.2f}x "
            f"{r.forward_gb_per_s:9.2f} {r.forward_backward_gb_per_s:9.2f}"
        )
    print(
        "(x = speed-up: time of the baseline / time of the candidate, same run, same data, float, median of n;\n"
        " GB/s = bytes that must move / time, see traffic_bytes)"
    )
    for baseline in dict.fromkeys(r.baseline for r in results):
        names = dict.fromkeys(r.candidate for r in results if r.baseline == baseline and r.candidate != baseline)
        print(f"  baseline {baseline}: {', '.join(names)}")
    for note in notes:
        print(f"  {note}")


def fit_slope(elements: list[int], times_ms: list[float]) -> float:
    """Slope of log(time) against log(size): 1 is linear scaling."""
    return float(np.polyfit(np.log(elements), np.log(times_ms), 1)[0])


def scaling_slopes(results: list[Result]) -> dict[str, dict[str, float]]:
    slopes = {}
    for name in dict.fromkeys(r.candidate for r in results):
        mine = [r for r in results if r.candidate == name]
        if len(mine) < 2:
            continue
        sizes = [r.elements for r in mine]
        slopes[name] = {
            "forward": fit_slope(sizes, [r.forward_ms for r in mine]),
            "forward_backward": fit_slope(sizes, [r.forward_backward_ms for r in mine]),
        }
    return slopes


def print_slopes(group: str, slopes: dict[str, dict[str, float]]) -> None:
    print(f"\nscaling ({group}): fitted slope of log(time) vs log(N*C), 1 = linear")
    for name, s in slopes.items():
        print(f"  {name:<42} fwd {s['forward']:.3f}   fwd+bwd {s['forward_backward']:.3f}")


def plot(results: list[Result], path: Path, title: str) -> None:
    """Time against N*C (times the spatial size, if any) per candidate, log-log:
    a straight line of slope 1 is linear scaling. One row per group."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(r.group for r in results))
    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 4.5 * len(groups)), squeeze=False)
    for row, group in zip(axes, groups):
        for ax, field, what in zip(row, ("forward_ms", "forward_backward_ms"), ("forward", "forward + backward")):
            for name in dict.fromkeys(r.candidate for r in results if r.group == group):
                points = sorted((r.elements, getattr(r, field)) for r in results if r.candidate == name)
                ax.loglog(*zip(*points), marker="o", label=name)
            ax.set_title(f"{group}: {what}")
            ax.set_xlabel("elements (N*C*spatial)")
            ax.set_ylabel("median time (ms)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def set_blas_threads(threads: int) -> None:
    """OpenBLAS reads OPENBLAS_NUM_THREADS when it loads, and under
    `python -m caffe_temperature.bench` it is already loaded before main()
    runs (the package loads the plugin, hence libcaffe): set both."""
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    try:
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(threads)
    except (OSError, AttributeError):
        pass  # no OpenBLAS, or not that one: the variable is all there is


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m caffe_temperature.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default_shapes = " ".join(map(shape_label, DEFAULT_SHAPES))
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=DEFAULT_SHAPES,
                        help=f"blob shapes, softmax over axis 1 (default: {default_shapes})")
    parser.add_argument("--T", dest="temperature", type=positive_number("T"), default=40.0,
                        help="temperature (default 40)")
    parser.add_argument("--repeat", type=int, default=25,
                        help=f"timed runs per figure, fewer above {FULL_REPEAT_ELEMENTS} elements (default 25)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS (and PyTorch) threads (default 1)")
    parser.add_argument("--layers", nargs="+", choices=LAYER_GROUPS, default=list(LAYER_GROUPS),
                        help="layer groups to time (default: all)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu (default) or gpu (needs a CUDA build of Caffe)")
    parser.add_argument("--scaling", choices=LAYER_GROUPS, metavar="GROUP",
                        help=f"instead of --shapes/--layers: time GROUP on N x {SCALING_CHANNELS} for N = "
                        f"{SCALING_BATCHES[0]}..{SCALING_BATCHES[-1]} and print the fitted slope of time vs N*C")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--plot", type=Path, help="also plot time vs N*C, log-log, to this PNG file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.threads < 1:
        parser.error("--repeat and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_blas_threads(args.threads)
    settings = Settings(args.temperature, args.repeat, args.threads, args.device)
    shapes: list[tuple[int, ...]]
    if args.scaling:
        shapes, groups = [(n, SCALING_CHANNELS) for n in SCALING_BATCHES], [args.scaling]
    else:
        shapes, groups = args.shapes, args.layers
    results, notes = run(shapes, groups, settings)
    print_table(results, notes)
    report: dict[str, object] = {"settings": asdict(settings), "results": [asdict(r) for r in results]}
    if args.scaling:
        slopes = scaling_slopes(results)
        print_slopes(args.scaling, slopes)
        report["scaling"] = {"group": args.scaling, "slopes": slopes}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        title = f"scaling: {args.scaling}" if args.scaling else "caffe-temperature bench"
        plot(results, args.plot, f"{title} (T={args.temperature:g}, {args.device}, {args.threads} thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
