"""Give a deploy net's Softmax a temperature with stock Caffe layers: the command line.

``add_temperature.py deploy.prototxt --T 40`` writes a net whose probabilities
are ``softmax(logits / 40)``. ``--form`` picks how (caffe_temperature.rewrite
does the rewrite):

* ``scale`` (the default): a frozen scalar ``Scale(1/T)`` in front of every
  ``Softmax`` (or of those named with ``--layer``); 1/T is the Scale's filler,
  and with ``--weights IN --weights-out OUT`` also a blob stored in the model
  (caffe_temperature.saved_model), which runtimes that run no fillers need;
* ``power``: ``Power { power: 1 scale: 1/T shift: 0 }``, no blobs at all, so
  it runs unchanged on Caffe, OpenCV 4's dnn module and through caffe2onnx;
* ``fused`` (also ``--fused``): the plugin's ``TemperatureSoftmax``.

Re-running on the output changes T (or the form); ``--T 1`` removes the
temperature layer. Loss layers are never touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, TextIO

from caffe_temperature._cli import (
    ArgumentParser, WriteError, atomic_write, positive_number, report_errors, same_file)
from caffe_temperature.prototxt import read_net, render
from caffe_temperature.rewrite import FORMS, FUSED_FORM, SCALE_FORM, add_temperature
from caffe_temperature.saved_model import rewritten_model

PROG = "add_temperature.py"

DESCRIPTION = """\
Give a deploy net's Softmax a temperature T: its output becomes softmax(logits / T).
Inserts a frozen scalar Scale(1/T) (or, with --form power, a Power layer) in front of
each Softmax (stock layers only, so the net runs on any Caffe); loss layers are never
touched. Re-running on the output changes T or the form; --T 1 removes the layer."""

EPILOG = """\
example:
  %(prog)s models/bvlc_alexnet/deploy.prototxt --T 40 -o deploy_T40.prototxt

  puts 'Scale' layer "prob_temperature" (1/T = 0.025, frozen) in front of the
  Softmax "prob", whose output becomes softmax(fc8 / 40). Run it again on
  deploy_T40.prototxt to change T; --T 1 removes the Scale again.

  %(prog)s deploy_T40.prototxt --T 20 --in-place \\
      --weights T40.caffemodel --weights-out T20.caffemodel

  also writes the model with the Scale's 1/T stored as its blob: Caffe loads
  stored blobs over the prototxt's filler, and runtimes that run no fillers
  (OpenCV's dnn module) take it from there only. A copy made with --T 1 drops it.

  %(prog)s deploy.prototxt --T 40 --form power -o deploy_T40.prototxt

  puts 'Power' layer "prob_temperature" (power 1, scale 1/T = 0.025, shift 0)
  there instead: no blobs, so the model stays as it is for Caffe, OpenCV 4's
  dnn module and caffe2onnx (ONNX). --form fused (or --fused) nets need Caffe
  with this plugin, so nothing is stored for them.

exit status: 0 on success; 2 on any error (bad arguments or input, a file that
cannot be read or written), reported on one line, with nothing written.
"""


def add_form_arguments(group: argparse._ActionsContainer, default: str | None) -> None:
    """--form and its alias --fused (calibrate --apply takes them too)."""
    forms = group.add_mutually_exclusive_group()
    forms.add_argument("--form", choices=FORMS, default=default,
                       help="scale: frozen Scale(1/T) + Softmax (default); power: Power(scale 1/T) + Softmax, "
                            "no blobs, runs unchanged on OpenCV 4 and through caffe2onnx; fused: the plugin's "
                            "TemperatureSoftmax")
    forms.add_argument("--fused", dest="form", action="store_const", const=FUSED_FORM,
                       help="the same as --form fused")



def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog or PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prototxt", type=Path, help="the net to rewrite (deploy prototxt; '-' reads stdin)")
    parser.add_argument("--T", dest="temperature", type=positive_number("T"), required=True, metavar="T",
                        help="the temperature, finite and > 0 (1 removes it)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the net here (default: stdout)")
    out.add_argument("--in-place", action="store_true", help="rewrite PROTOTXT, keeping the original as PROTOTXT.bak")
    parser.add_argument("--layer", action="append", default=[], metavar="NAME",
                        help="only this Softmax layer (repeatable; default: every Softmax)")
    add_form_arguments(parser, SCALE_FORM)
    parser.add_argument("--weights", type=Path, metavar="IN.caffemodel",
                        help="a saved model for this net: refuse if it does not fit the net or stores a "
                             "different 1/T for the Scale")
    parser.add_argument("--weights-out", type=Path, metavar="OUT.caffemodel",
                        help="write a copy of --weights with each Scale's 1/T stored (added, updated, or "
                             "dropped with the Scale), as OpenCV's dnn module needs it for the scale form")
    return parser


def check_paths(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    stdin = str(args.prototxt) == "-"
    if args.in_place and stdin:
        parser.error("--in-place needs a file, not stdin")
    if args.weights_out is not None and args.weights is None:
        parser.error("--weights-out needs --weights")
    if args.output is not None and not stdin and same_file(args.output, args.prototxt):
        parser.error("-o names the input file; use --in-place to rewrite it (it keeps a .bak)")
    if args.weights_out is not None and same_file(args.weights_out, args.weights):
        parser.error("--weights-out names the --weights file; write the updated model to a new file")


def run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    read = read_net(args.prototxt, stdin)
    rewrite = add_temperature(read.net, args.temperature, args.layer, args.form, read.source)
    notes = list(rewrite.notes)
    if read.upgraded:  # a note, printed with the others once all went well (an error stays one line)
        notes.insert(0, f"{read.source} is a legacy (V0/V1 'layers') net; upgraded it to the current format first")
    weights, weight_notes = rewritten_model(rewrite, args.weights, args.weights_out is not None)
    notes.extend(weight_notes)
    text = render(rewrite.net).encode("utf-8")
    write_outputs(args, read.data, text, weights, stdout)
    for note in notes:
        print(f"{PROG}: {note}", file=stderr)
    return 0


def write_outputs(
    args: argparse.Namespace, original: bytes, text: bytes, weights: bytes | None, stdout: TextIO
) -> None:
    """All checks are done: write the model, then the net (atomically each)."""
    if weights is not None and args.weights_out is not None:
        atomic_write(args.weights_out, weights)
    if args.in_place:
        atomic_write(args.prototxt.with_name(args.prototxt.name + ".bak"), original)
        atomic_write(args.prototxt, text)
    elif args.output is not None:
        atomic_write(args.output, text)
    else:
        try:
            stdout.write(text.decode("utf-8"))
            stdout.flush()
        except OSError as err:
            raise WriteError(f"cannot write the net to standard output: {err.strerror or err}") from None


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_paths(args, parser)
    return report_errors(parser.prog, lambda: run(args, sys.stdin, sys.stdout, sys.stderr))


if __name__ == "__main__":
    sys.exit(main(prog="python -m caffe_temperature.add_temperature"))
