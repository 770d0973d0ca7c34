"""The main job on the built-in example: a deploy net's probabilities at T = 1
and at T = 40, through the plugin's TemperatureSoftmax and through stock
Scale(1/T) + Softmax, side by side, on the same weights and inputs.

    python -m caffe_temperature.demo [--deploy prototxt/deploy_example.prototxt] [--T 40]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
from google.protobuf import text_format

DEFAULT_DEPLOY = Path(__file__).resolve().parents[2] / "prototxt" / "deploy_example.prototxt"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m caffe_temperature.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", type=Path, default=DEFAULT_DEPLOY, help="deploy prototxt (default: built-in example)")
    parser.add_argument("--T", dest="temperature", type=float, default=40.0, help="temperature to compare with T = 1")
    parser.add_argument("--seed", type=int, default=7, help="seed of the weights and inputs")
    return parser.parse_args(argv)


def fused_variant(net, temperature: float):
    """Every Softmax as a TemperatureSoftmax carrying beta = 1/T (also at T = 1)."""
    from caffe_temperature.add_temperature import as_fused, is_softmax

    out = type(net)()
    out.CopyFrom(net)
    for layer in out.layer:
        if is_softmax(layer):
            as_fused(layer, 1.0 / temperature)
    return out


def probabilities(caffe, net_param, weights: Path, inputs: dict[str, np.ndarray], workdir: Path, name: str) -> np.ndarray:
    from caffe_temperature.add_temperature import render

    path = workdir / f"{name}.prototxt"
    path.write_text(render(net_param))
    net = caffe.Net(str(path), caffe.TEST, weights=str(weights))
    for blob, value in inputs.items():
        net.blobs[blob].data[...] = value
    return net.forward()[net.outputs[-1]].copy()


def show_tool_run(deploy: Path, temperature: float) -> None:
    """What `python/add_temperature.py DEPLOY --T 40` prints, and the layers it adds."""
    from caffe_temperature import add_temperature

    out, err = io.StringIO(), io.StringIO()
    with redirect_stderr(err):
        add_temperature.run(add_temperature.build_parser().parse_args([str(deploy), "--T", f"{temperature:g}"]),
                            sys.stdin, out, err)
    print(f"$ python/add_temperature.py {deploy.name} --T {temperature:g}")
    print(err.getvalue().rstrip())
    before = {layer.name for layer in add_temperature.parse_net(deploy.read_text(), str(deploy)).layer}
    after = add_temperature.parse_net(out.getvalue(), "stdout")
    print("(the rewritten net goes to stdout; the layer it added:)")
    for layer in after.layer:
        if layer.name not in before:
            print("layer {\n" + text_format.MessageToString(layer, indent=2) + "}")


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import caffe

    import caffe_temperature  # noqa: F401  (registers the layers)
    from caffe_temperature.add_temperature import add_temperature, parse_net

    caffe.set_mode_cpu()
    caffe.set_random_seed(args.seed)
    deploy = parse_net(args.deploy.read_text(), str(args.deploy))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        original = caffe.Net(str(args.deploy), caffe.TEST)  # weights from the fillers, seeded
        weights = workdir / "weights.caffemodel"
        original.save(str(weights))
        rng = np.random.default_rng(args.seed)
        inputs = {name: rng.normal(size=original.blobs[name].data.shape) for name in original.inputs}
        table = {}
        for temperature in (1.0, args.temperature):
            stock = add_temperature(deploy, temperature).net
            table[temperature] = (
                probabilities(caffe, fused_variant(deploy, temperature), weights, inputs, workdir, "fused"),
                probabilities(caffe, stock, weights, inputs, workdir, "stock"),
            )
    print_comparison(table)
    print()
    show_tool_run(args.deploy, args.temperature)
    return 0


def print_comparison(table: dict[float, tuple[np.ndarray, np.ndarray]]) -> None:
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    for temperature, (fused, stock) in table.items():
        print(f"T = {temperature:g}: probabilities of sample 0")
        print(f"  TemperatureSoftmax      {fused[0]}")
        print(f"  stock layers            {stock[0]}")
        print(f"  max |difference| over the batch: {np.abs(fused - stock).max():.2e}; "
              f"mean entropy {entropy(fused).mean():.3f} nats (uniform: {np.log(fused.shape[1]):.3f}); "
              f"argmax {fused.argmax(axis=1).tolist()}")


if __name__ == "__main__":
    sys.exit(main())
