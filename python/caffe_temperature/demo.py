"""The main job on the built-in example: a deploy net's probabilities at T = 1
and at T = 40, through the plugin's TemperatureSoftmax and through stock
Scale(1/T) + Softmax, side by side, on the same weights and inputs.

    python -m caffe_temperature.demo [--deploy prototxt/deploy_example.prototxt] [--T 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Sequence

import numpy as np
from google.protobuf import text_format
from scipy.stats import entropy

from caffe_temperature import rewrite as rw
from caffe_temperature._cli import (
    ArgumentParser, Outputs, ToolError, add_temperature_option, load_pycaffe, make_parser, run_tool)
from caffe_temperature.prototxt import copy_net, example_path, read_net, render

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

MODULE = "caffe_temperature.demo"
PROG = f"python -m {MODULE}"


def build_parser(argv: Sequence[str] | None = None) -> ArgumentParser:
    parser = make_parser(MODULE, __doc__ or "", argv=argv)
    parser.add_argument("--deploy", type=Path, default=example_path("deploy_example.prototxt"),
                        help="deploy prototxt (default: built-in example)")
    add_temperature_option(parser, default=40.0,
                           help="temperature to compare with T = 1, finite and > 0 (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the weights and inputs (default 7)")
    return parser


def fused_variant(net: caffe_pb2.NetParameter, temperature: float) -> caffe_pb2.NetParameter:
    """Every Softmax as a TemperatureSoftmax carrying beta = 1/T (also at T = 1)."""
    out = copy_net(net)
    for layer in out.layer:
        if rw.is_softmax(layer):
            rw.as_fused(layer, 1.0 / temperature)
    return out


def probabilities(caffe: ModuleType, net_param: caffe_pb2.NetParameter, weights: Path,
                  inputs: dict[str, np.ndarray], workdir: Path, name: str) -> np.ndarray:
    path = workdir / f"{name}.prototxt"
    path.write_text(render(net_param))
    net = caffe.Net(str(path), caffe.TEST, weights=str(weights))
    for blob, value in inputs.items():
        net.blobs[blob].data[...] = value
    return net.forward()[net.outputs[-1]].copy()


def show_rewrite(deploy: Path, temperature: float) -> None:
    """The layers the API's add_temperature adds (what `python/add_temperature.py DEPLOY -T T` writes)."""
    net = read_net(deploy).net
    rewritten = rw.add_temperature(net, temperature)
    print(f">>> caffe_temperature.add_temperature(net, T={temperature:g})  "
          f"# the net of `python/add_temperature.py {deploy.name} -T {temperature:g}`; the layer it adds:")
    before = {layer.name for layer in net.layer}
    for layer in rewritten.layer:
        if layer.name not in before:
            print("layer {\n" + text_format.MessageToString(layer, indent=2) + "}")


def mean_entropy(p: np.ndarray) -> float:
    """Mean entropy of the rows of ``p``, in nats."""
    return float(entropy(p, axis=1).mean())


def compare(caffe: ModuleType, deploy: Path, temperature: float,
            seed: int) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Fused and stock probabilities at T = 1 and at ``temperature``, on seeded filler weights."""
    net = read_net(deploy).net
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        original = load_net(caffe, workdir, net)  # weights from the fillers, seeded
        weights = workdir / "weights.caffemodel"
        original.save(str(weights))
        rng = np.random.default_rng(seed)
        inputs = {name: rng.normal(size=original.blobs[name].data.shape) for name in original.inputs}
        table = {}
        for t in (1.0, temperature):
            stock = rw.add_temperature(net, t)
            table[t] = (
                probabilities(caffe, fused_variant(net, t), weights, inputs, workdir, "fused"),
                probabilities(caffe, stock, weights, inputs, workdir, "stock"),
            )
    return table


def load_net(caffe: ModuleType, workdir: Path, net: caffe_pb2.NetParameter) -> object:
    path = workdir / "original.prototxt"
    path.write_text(render(net))
    try:
        return caffe.Net(str(path), caffe.TEST)
    except Exception as err:  # pycaffe's errors have no common type; report them on one line
        raise ToolError(f"pycaffe cannot build the net: {err}") from None


def run(args: argparse.Namespace, outputs: Outputs) -> None:
    """The demo prints as it goes (it writes no file)."""
    caffe = load_pycaffe("the demo")
    caffe.set_mode_cpu()
    caffe.set_random_seed(args.seed)
    table = compare(caffe, args.deploy, args.temperature, args.seed)
    print_comparison(table)
    print()
    show_rewrite(args.deploy, args.temperature)


def print_comparison(table: dict[float, tuple[np.ndarray, np.ndarray]]) -> None:
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    for temperature, (fused, stock) in table.items():
        print(f"T = {temperature:g}: probabilities of sample 0")
        print(f"  TemperatureSoftmax      {fused[0]}")
        print(f"  stock layers            {stock[0]}")
        print(f"  max |difference| over the batch: {np.abs(fused - stock).max():.2e}; "
              f"mean entropy {mean_entropy(fused):.3f} nats (uniform: {np.log(fused.shape[1]):.3f}); "
              f"argmax {fused.argmax(axis=1).tolist()}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(build_parser(argv), argv, run)


if __name__ == "__main__":
    sys.exit(main())
