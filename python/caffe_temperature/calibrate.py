"""Fit a softmax temperature on held-out data (temperature scaling, Guo et al. 2017).

One scalar T > 0 divides the logits, softmax(z / T); it is fitted by minimising
the negative log-likelihood of held-out labels. Dividing by T > 0 never changes
the argmax, so accuracy stays what it was while the probabilities become
calibrated (an over-confident net gets T > 1).

The logits come from files (``--logits L.npy --labels Y.npy``) or from running
a deploy net through pycaffe (``--deploy``, ``--weights``, ``--data``). The
tool prints NLL, expected calibration error (ECE, 15 equal-width confidence
bins) and accuracy before and after, and can write a JSON summary, a
reliability diagram and, with ``--apply``, the calibrated deploy net (through
add_temperature's rewrite: a frozen Scale(1/T) in front of the Softmax, or
the form ``--form`` names) and, with ``--weights-out``, its model with that
1/T stored (for OpenCV's dnn module).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from caffe_temperature import rewrite as rw
from caffe_temperature.add_temperature_cli import add_form_arguments
from caffe_temperature._cli import (
    Outputs, ToolError, is_stdout, load_array, load_pycaffe, make_parser, new_figure, png_bytes, positive_int,
    progress_bar, run_tool, same_file)
from caffe_temperature.calibration import (
    BINS, T_BOUNDS, Bins, Metrics, as_labels, as_logits, calibration_error, fit_temperature, metrics)
from caffe_temperature.prototxt import read_net, render
from caffe_temperature.saved_model import rewritten_model

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

MODULE = "caffe_temperature.calibrate"
PROG = f"python -m {MODULE}"
LABEL_KEYS = ("labels", "label", "y")
LOGIT_KEYS = ("logits", "scores", "x")

EPILOG = """\
examples:
  %(prog)s --logits val_logits.npy --labels val_labels.npy --json T.json --plot reliability.png

  %(prog)s --deploy deploy.prototxt --weights model.caffemodel --data val.npz \\
      --apply deploy.prototxt -o deploy_calibrated.prototxt --weights-out calibrated.caffemodel

--weights-out writes --weights with the Scale's 1/T stored in it (add_temperature's
--weights-out), which runtimes that run no fillers, such as OpenCV's dnn module, need.
--form power writes a Power layer instead, which needs no model change (OpenCV 4,
caffe2onnx); --form fused (or --fused) the plugin's TemperatureSoftmax.

input files: .npy, or .npz (logits under 'logits', labels under 'labels' or
'label', or a file's only array). --data is an .npz holding the input blob's
array (named like the blob, --input, or 'data') and the labels ('labels' or
'label'), unless --labels is given. HDF5 files (.h5, .hdf5) are read the
same way, one top-level dataset per array, as Caffe's HDF5Data layer stores them.

T is fitted in [0.01, 100] and is relative to the logits it was fitted on: with
--deploy the default blob is the input of the last Softmax (behind any
temperature Scale add_temperature put there), so --apply sets the absolute T.

Every output is written only when all of them can be: -o - writes the --apply
net to stdout (the report then goes to stderr).
"""


# --------------------------------------------------------------------------
# Logits from a deploy net


def default_blob(net: caffe_pb2.NetParameter, source: str) -> str:
    """The logits blob: the input of the last Softmax, behind its temperature Scale or Power if it has one."""
    indices = [i for i, layer in enumerate(net.layer) if rw.is_softmax(layer)]
    if not indices:
        raise ToolError(f"{source} has no Softmax layer; name the logits blob with --blob")
    own = rw.own_temperature_index(net, indices[-1])
    layer = net.layer[indices[-1] if own is None else own]
    return layer.bottom[0]


def load_data(args: argparse.Namespace, input_name: str) -> tuple[np.ndarray, np.ndarray]:
    data = load_array(args.data, (input_name, "data"), "input")
    if args.labels is not None:
        labels = load_array(args.labels, LABEL_KEYS, "labels")
    else:
        labels = load_array(args.data, LABEL_KEYS, "labels")
    if data.ndim < 1 or len(data) == 0:
        raise ToolError(f"{args.data}: the input array holds no examples (shape {data.shape})")
    return data, labels


def forward_logits(net: Any, input_name: str, blob: str, data: np.ndarray, batch_size: int, quiet: bool) -> np.ndarray:
    """Run ``data`` through ``net`` in batches and collect ``blob``."""
    chunks = []
    with progress_bar(len(data), quiet, unit="ex", desc="forward") as progress:
        for start in range(0, len(data), batch_size):
            batch = data[start:start + batch_size]
            net.blobs[input_name].reshape(*batch.shape)
            net.blobs[input_name].data[...] = batch
            net.reshape()
            net.forward()
            chunks.append(net.blobs[blob].data.copy())
            progress.update(len(batch))
    return np.concatenate(chunks)


def deploy_logits(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    proto = read_net(args.deploy).net
    blob = args.blob or default_blob(proto, str(args.deploy))
    if not args.weights.is_file():
        raise ToolError(f"cannot read {args.weights}: no such file")
    caffe = load_pycaffe("--deploy")
    caffe.set_mode_cpu()
    try:
        net = caffe.Net(str(args.deploy), caffe.TEST, weights=str(args.weights))
    except Exception as err:  # pycaffe's errors have no common type; report them on one line
        raise ToolError(f"{args.deploy}: pycaffe cannot load the net with {args.weights}: {err}") from None
    input_name = args.input or (net.inputs[0] if net.inputs else "")
    if input_name not in net.blobs:
        raise ToolError(f"{args.deploy}: no input blob {input_name!r}; name it with --input")
    if blob not in net.blobs:
        raise ToolError(f"{args.deploy}: no blob {blob!r} (blobs: {', '.join(net.blobs)})")
    data, labels = load_data(args, input_name)
    expected = net.blobs[input_name].data.shape[1:]
    if tuple(data.shape[1:]) != tuple(expected):
        raise ToolError(f"{args.data}: examples have shape {data.shape[1:]}, input blob {input_name!r} "
                        f"wants {tuple(expected)}")
    logits = forward_logits(net, input_name, blob, data.astype(np.float32), args.batch_size, args.quiet)
    return logits, labels, f"{args.deploy} blob {blob!r}"


# --------------------------------------------------------------------------
# Outputs


def reliability_png(before: Bins, after: Bins, temperature: float) -> bytes:
    """Reliability diagrams before and after, side by side, as PNG bytes (Agg, no pyplot state)."""
    figure = new_figure(10, 4.6)
    for position, (bins, title) in enumerate(((before, "before (T = 1)"), (after, f"after (T = {temperature:.3g})"))):
        axes = figure.add_subplot(1, 2, position + 1)
        edges = np.asarray(bins.edges)
        width = np.diff(edges)
        filled = np.asarray(bins.count) > 0
        axes.bar(edges[:-1][filled], np.asarray(bins.accuracy)[filled], width=width[filled], align="edge",
                 edgecolor="black", color="tab:blue", label="accuracy")
        axes.bar(edges[:-1][filled], (np.asarray(bins.confidence) - np.asarray(bins.accuracy))[filled],
                 bottom=np.asarray(bins.accuracy)[filled], width=width[filled], align="edge",
                 color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to confidence")
        axes.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ece = calibration_error(bins)
        axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
                 title=f"{title}: ECE {ece:.4f}")
        axes.legend(loc="upper left")
    figure.tight_layout()
    return png_bytes(figure)


def summary(temperature: float, before: tuple[Metrics, Bins], after: tuple[Metrics, Bins],
            logits: np.ndarray, source: str) -> dict:
    return {
        "temperature": temperature,
        "inverse_temperature": 1.0 / temperature,
        "source": source,
        "examples": int(logits.shape[0]),
        "classes": int(logits.shape[1]),
        "bins": BINS,
        "before": asdict(before[0]),
        "after": asdict(after[0]),
        "reliability": {"before": asdict(before[1]), "after": asdict(after[1])},
    }


def report(result: dict) -> str:
    rows = [("before", 1.0, result["before"]), ("after", result["temperature"], result["after"])]
    lines = [f"{result['source']}: {result['examples']} examples, {result['classes']} classes",
             f"{'':<20}{'NLL':>9}{'ECE':>9}{'accuracy':>10}"]
    for name, temperature, m in rows:
        lines.append(f"{name + f' (T = {temperature:.4g})':<20}{m['nll']:>9.4f}{m['ece']:>9.4f}{m['accuracy']:>10.4f}")
    lines.append(f"fitted T = {result['temperature']:.6g} (1/T = {result['inverse_temperature']:.6g})")
    return "\n".join(lines)


def calibrated_deploy(args: argparse.Namespace, temperature: float, outputs: Outputs) -> None:
    """The --apply net with softmax(logits / T) and, with --weights-out, its model (add_temperature's rewrite).

    Given --weights, the model is checked against the new net as add_temperature --weights does.
    """
    net = read_net(args.apply).net
    rewrite = rw.rewrite_net(net, temperature, form=args.form or rw.SCALE_FORM, source=str(args.apply))
    model, model_notes = rewritten_model(rewrite, args.weights, args.weights_out is not None)
    if model is not None and args.weights_out is not None:
        outputs.file(args.weights_out, model)
    outputs.file(args.output, render(rewrite.net).encode("utf-8"))
    for note in [*rewrite.notes, *model_notes]:
        outputs.note(note)


# --------------------------------------------------------------------------
# Command line


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = make_parser(MODULE, __doc__ or "", EPILOG, argv)
    source = parser.add_argument_group("held-out logits from files")
    source.add_argument("--logits", type=Path, metavar="L.npy", help="N x C logits (.npy or .npz)")
    source.add_argument("--labels", type=Path, metavar="Y.npy", help="N labels in [0, C) (.npy or .npz)")
    net = parser.add_argument_group("or from a deploy net run through pycaffe (CPU)")
    net.add_argument("--deploy", type=Path, metavar="PROTOTXT", help="the deploy net")
    net.add_argument("--weights", type=Path, metavar="CAFFEMODEL",
                     help="its trained weights (with --logits: only as the model --weights-out copies)")
    net.add_argument("--data", type=Path, metavar="X.npz", help="held-out inputs (and labels), .npz or .npy")
    net.add_argument("--input", metavar="BLOB", help="input blob (default: the net's first input)")
    net.add_argument("--blob", metavar="BLOB",
                     help="logits blob (default: the bottom of the last Softmax, behind its temperature Scale or Power)")
    net.add_argument("--batch-size", type=positive_int("--batch-size"), default=64,
                     help="examples per forward pass (default 64)")
    net.add_argument("--quiet", action="store_true", help="no progress bar")
    out = parser.add_argument_group("outputs")
    out.add_argument("--json", type=Path, metavar="OUT.json", help="summary; its key 'temperature' is the fitted T")
    out.add_argument("--plot", type=Path, metavar="OUT.png", help="reliability diagram, before and after")
    out.add_argument("--apply", type=Path, metavar="DEPLOY",
                     help="write this deploy net with the fitted T (add_temperature's rewrite) to -o")
    out.add_argument("-o", "--output", type=Path, metavar="OUT.prototxt", help="where --apply writes ('-': stdout)")
    add_form_arguments(out, None)
    out.add_argument("--weights-out", type=Path, metavar="OUT.caffemodel",
                     help="with --apply and --weights: write the model with the Scale's 1/T stored (for OpenCV's dnn)")
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.logits is not None and args.deploy is not None:
        parser.error("give either --logits or --deploy, not both")
    if args.logits is None and args.deploy is None:
        parser.error("give --logits L.npy --labels Y.npy, or --deploy, --weights and --data")
    if args.logits is not None:
        extra = [name for name in ("weights", "data", "input", "blob") if getattr(args, name) is not None
                 and not (name == "weights" and args.weights_out is not None)]
        if args.labels is None:
            parser.error("--logits needs --labels")
        if extra:
            parser.error(f"--{extra[0]} goes with --deploy, not --logits")
    if args.deploy is not None and (args.weights is None or args.data is None):
        parser.error("--deploy needs --weights and --data")
    if (args.apply is None) != (args.output is None):
        parser.error("--apply DEPLOY and -o OUT.prototxt go together")
    if args.form is not None and args.apply is None:
        parser.error("--form (or --fused) goes with --apply")
    if args.apply is not None and not is_stdout(args.output) and same_file(args.output, args.apply):
        parser.error("-o names the --apply input; write the calibrated net to a new file")
    if args.weights_out is not None and (args.apply is None or args.weights is None):
        parser.error("--weights-out goes with --apply and --weights (the model it copies)")
    if args.weights_out is not None and same_file(args.weights_out, args.weights):
        parser.error("--weights-out names the --weights file; write the calibrated model to a new file")


def collect(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    if args.deploy is not None:
        raw_logits, raw_labels, source = deploy_logits(args)
    else:
        raw_logits = load_array(args.logits, LOGIT_KEYS, "logits")
        raw_labels = load_array(args.labels, LABEL_KEYS, "labels")
        source = str(args.logits)
    logits = as_logits(raw_logits)
    return logits, as_labels(raw_labels, *logits.shape), source


def run(args: argparse.Namespace, outputs: Outputs) -> None:
    logits, labels, source = collect(args)
    temperature = fit_temperature(logits, labels)
    before, after = metrics(logits, labels, 1.0), metrics(logits, labels, temperature)
    result = summary(temperature, before, after, logits, source)
    if min(abs(math.log(temperature / bound)) for bound in T_BOUNDS) < 1e-3:
        outputs.note(f"T = {temperature:.4g} is at the edge of the search range {T_BOUNDS}; "
                     "the logits may be degenerate")
    if args.apply is not None:
        calibrated_deploy(args, temperature, outputs)
    if args.json is not None:
        outputs.file(args.json, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    if args.plot is not None:
        outputs.file(args.plot, reliability_png(before[1], after[1], temperature))
    outputs.say(report(result))
    outputs.say_written()


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(build_parser(argv), argv, run, ("weights_out", "output", "json", "plot"), check_args)


if __name__ == "__main__":
    sys.exit(main())
