"""Benchmark the plugin's layers against stock Caffe, measured in the same run.

    python -m caffe_temperature.bench [--shapes 256x1000 8x21x128x128] [--T 40]
                                      [--layers softmax infogain]

Each candidate is a small pycaffe net (inputs -> layers under test) timed on the
same data: the median of --repeat runs of forward, and of forward + backward.

* softmax: speed-ups against stock Scale(1/T) + Softmax. PyTorch's
  single-thread softmax(x / T) is printed for reference when torch is installed.
* infogain: loss layers on the same scores and labels (softmax over axis 1),
  speed-ups against stock InfogainLoss (which takes scores and runs its own
  Softmax), with H read from infogain_loss_param.source (summed once, at
  setup) and with H as a third bottom (summed in every pass); stock
  SoftmaxWithLoss for reference.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np


SOFTMAX_BASELINE = "stock Scale+Softmax"
INFOGAIN_BASELINE = "stock InfogainLoss"
INFOGAIN_BOTTOM_BASELINE = "stock InfogainLoss, H bottom"
LAYER_GROUPS = ("softmax", "infogain")


@dataclass
class Result:
    shape: str
    candidate: str
    forward_ms: float
    forward_backward_ms: float
    baseline: str


@dataclass
class Candidate:
    name: str
    layers: str
    baseline: str


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not like 256x1000") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs at least two positive dimensions")
    return shape


@dataclass
class Runs:
    """One candidate, ready to run on its data."""

    name: str
    baseline: str
    forward: Callable[[], object]
    forward_backward: Callable[[], object]


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


def softmax_candidates(beta: float) -> list[Candidate]:
    """Each candidate's prototxt, reading blob "x" and writing "y"."""
    scale = (
        'layer { name: "scale" type: "Scale" bottom: "x" top: "xs" param { lr_mult: 0 decay_mult: 0 } '
        f'scale_param {{ num_axes: 0 bias_term: false filler {{ type: "constant" value: {beta!r} }} }} }}\n'
    )
    layers = {
        "stock Softmax (T=1)": 'layer { name: "s" type: "Softmax" bottom: "x" top: "y" }\n',
        SOFTMAX_BASELINE: scale + 'layer { name: "s" type: "Softmax" bottom: "xs" top: "y" }\n',
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


def caffe_runs(caffe, candidate: Candidate, net_text: str, inputs: dict[str, np.ndarray], workdir: Path) -> Runs:
    path = workdir / "bench.prototxt"  # read by caffe.Net, free to reuse after
    path.write_text(net_text)
    net = caffe.Net(str(path), caffe.TEST)
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    if "y" in net.blobs:
        net.blobs["y"].diff[...] = np.random.default_rng(1).normal(size=net.blobs["y"].shape)
    return Runs(candidate.name, candidate.baseline, net.forward, lambda: (net.forward(), net.backward()))


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


def infogain_data(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, integer labels (x's shape without axis 1, as stock loss layers
    want) and a non-negative C x C H with a heavier diagonal."""
    rng = np.random.default_rng(2)
    channels = shape[1]
    x = rng.normal(scale=3, size=shape).astype(np.float32)
    label = rng.integers(0, channels, size=shape[:1] + shape[2:]).astype(np.float32)
    h = (rng.uniform(size=(channels, channels)) + np.eye(channels)).astype(np.float32)
    return x, label, h


def torch_runs(x: np.ndarray, temperature: float) -> Runs | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    logits = torch.from_numpy(x).requires_grad_(True)
    grad = torch.from_numpy(np.random.default_rng(1).normal(size=x.shape).astype(x.dtype))

    def forward():
        with torch.no_grad():
            return torch.softmax(logits / temperature, dim=1)

    def forward_backward():
        torch.softmax(logits / temperature, dim=1).backward(grad)

    return Runs("PyTorch softmax(x/T), 1 thread", SOFTMAX_BASELINE, forward, forward_backward)


def run(shapes: list[tuple[int, ...]], temperature: float, repeat: int, groups: list[str]) -> list[Result]:
    import caffe

    import caffe_temperature  # noqa: F401  (registers the layers)

    caffe.set_mode_cpu()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for shape in shapes:
            runs: list[Runs] = []
            if "softmax" in groups:
                x = np.random.default_rng(0).normal(scale=10, size=shape).astype(np.float32)
                for c in softmax_candidates(1.0 / temperature):
                    runs.append(caffe_runs(caffe, c, softmax_net(x, c.layers), {"x": x}, workdir))
                torch_run = torch_runs(x, temperature)
                if torch_run:
                    runs.append(torch_run)
            if "infogain" in groups:
                scores, labels, h = infogain_data(shape)
                source = workdir / "H.binaryproto"
                source.write_bytes(caffe.io.array_to_blobproto(h[None, None]).SerializeToString())
                inputs = {"x": scores, "label": labels, "H": h}
                for c in infogain_candidates(source):
                    runs.append(caffe_runs(caffe, c, loss_net(scores, labels, h, c.layers), inputs, workdir))
            forward = median_ms([r.forward for r in runs], repeat)
            both = median_ms([r.forward_backward for r in runs], repeat)
            label = "x".join(map(str, shape))
            for r, fwd, fwd_bwd in zip(runs, forward, both):
                results.append(Result(label, r.name, fwd, fwd_bwd, r.baseline))
    return results


def print_table(results: list[Result]) -> None:
    base = {(r.shape, r.candidate): r for r in results}
    print(f"{'shape':<16} {'candidate':<34} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd speed-up':>13} {'fwd+bwd speed-up':>17}")
    for r in results:
        b = base[(r.shape, r.baseline)]
        print(
            f"{r.shape:<16} {r.candidate:<34} {r.forward_ms:9.3f} {r.forward_backward_ms:11.3f} "
            f"{b.forward_ms / r.forward_ms:12.1f}x {b.forward_backward_ms / r.forward_backward_ms:16.1f}x"
        )
    print("(speed-up = time of the baseline / time of the candidate, same run, same data, float, median)")
    for baseline in dict.fromkeys(r.baseline for r in results):
        names = dict.fromkeys(r.candidate for r in results if r.baseline == baseline and r.candidate != baseline)
        print(f"  baseline {baseline}: {', '.join(names)}")


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
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=[(256, 1000), (8, 21, 128, 128)],
                        help="blob shapes, softmax over axis 1 (default: 256x1000 8x21x128x128)")
    parser.add_argument("--T", dest="temperature", type=float, default=40.0, help="temperature (default 40)")
    parser.add_argument("--repeat", type=int, default=25, help="timed runs per figure (default 25)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for stock Caffe (default 1)")
    parser.add_argument("--layers", nargs="+", choices=LAYER_GROUPS, default=list(LAYER_GROUPS),
                        help="layer groups to time (default: softmax infogain)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not (args.temperature > 0 and np.isfinite(args.temperature)):
        parser.error("--T must be finite and > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_blas_threads(args.threads)
    results = run(args.shapes, args.temperature, args.repeat, args.layers)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
