"""Benchmark the plugin's layers against stock Caffe, measured in the same run.

    python -m caffe_temperature.bench [--shapes 256x1000 8x21x128x128] [--T 40]

Each candidate is a small pycaffe net (Input -> layers under test) timed on the
same data: the median of --repeat runs of forward, and of forward + backward.
Speed-ups are against stock Scale(1/T) + Softmax. PyTorch's single-thread
softmax(x / T) is printed for reference when torch is installed.
"""

from __future__ import annotations

import argparse
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


@dataclass
class Result:
    shape: str
    candidate: str
    forward_ms: float
    forward_backward_ms: float


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not like 256x1000") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs at least two positive dimensions")
    return shape


def median_ms(run: Callable[[], object], repeat: int) -> float:
    run()  # warm-up: first-touch allocations, lazy set-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def candidate_layers(beta: float) -> dict[str, str]:
    """The prototxt of each candidate, reading blob "x" and writing "y"."""
    scale = (
        'layer { name: "scale" type: "Scale" bottom: "x" top: "xs" param { lr_mult: 0 decay_mult: 0 } '
        f'scale_param {{ num_axes: 0 bias_term: false filler {{ type: "constant" value: {beta!r} }} }} }}\n'
    )
    return {
        "stock Softmax (T=1)": 'layer { name: "s" type: "Softmax" bottom: "x" top: "y" }\n',
        "stock Scale+Softmax": scale + 'layer { name: "s" type: "Softmax" bottom: "xs" top: "y" }\n',
        "TemperatureSoftmax": 'layer { name: "t" type: "TemperatureSoftmax" bottom: "x" top: "y" '
        f'scale_param {{ filler {{ type: "constant" value: {beta!r} }} }} }}\n',
    }


def time_caffe_net(caffe, layers: str, x: np.ndarray, repeat: int, workdir: Path) -> tuple[float, float]:
    dims = " ".join(f"dim: {d}" for d in x.shape)
    path = workdir / "bench.prototxt"
    path.write_text(
        "force_backward: true\n"
        f'layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}\n' + layers
    )
    net = caffe.Net(str(path), caffe.TEST)
    net.blobs["x"].data[...] = x
    net.blobs["y"].diff[...] = np.random.default_rng(1).normal(size=x.shape)
    forward = median_ms(net.forward, repeat)
    both = median_ms(lambda: (net.forward(), net.backward()), repeat)
    return forward, both


def time_torch(x: np.ndarray, temperature: float, repeat: int) -> tuple[float, float] | None:
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

    return median_ms(forward, repeat), median_ms(forward_backward, repeat)


def run(shapes: list[tuple[int, ...]], temperature: float, repeat: int) -> list[Result]:
    import caffe

    import caffe_temperature  # noqa: F401  (registers the layers)

    caffe.set_mode_cpu()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            x = np.random.default_rng(0).normal(scale=10, size=shape).astype(np.float32)
            label = "x".join(map(str, shape))
            for name, layers in candidate_layers(1.0 / temperature).items():
                fwd, both = time_caffe_net(caffe, layers, x, repeat, Path(tmp))
                results.append(Result(label, name, fwd, both))
            torch_times = time_torch(x, temperature, repeat)
            if torch_times:
                results.append(Result(label, "PyTorch softmax(x/T), 1 thread", *torch_times))
    return results


def print_table(results: list[Result], baseline: str = "stock Scale+Softmax") -> None:
    base = {r.shape: r for r in results if r.candidate == baseline}
    print(f"{'shape':<16} {'candidate':<32} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd speed-up':>13} {'fwd+bwd speed-up':>17}")
    for r in results:
        b = base[r.shape]
        print(
            f"{r.shape:<16} {r.candidate:<32} {r.forward_ms:9.3f} {r.forward_backward_ms:11.3f} "
            f"{b.forward_ms / r.forward_ms:12.1f}x {b.forward_backward_ms / r.forward_backward_ms:16.1f}x"
        )
    print(f"(speed-up = time of {baseline} / time of the candidate, same run, same data, float, median)")


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
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not (args.temperature > 0 and np.isfinite(args.temperature)):
        parser.error("--T must be finite and > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Read by OpenBLAS when pycaffe loads it, so it must be set before that.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    results = run(args.shapes, args.temperature, args.repeat)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
