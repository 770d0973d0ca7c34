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
from typing import Sequence

from caffe_temperature._cli import (
    STDOUT, Outputs, add_temperature_option, is_stdout, make_parser, run_tool, same_file)
from caffe_temperature.prototxt import read_net, render
from caffe_temperature.rewrite import FORMS, FUSED_FORM, SCALE_FORM, rewrite_net
from caffe_temperature.saved_model import rewritten_model

MODULE = "caffe_temperature.add_temperature_cli"
PROG = f"python -m {MODULE}"

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



def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = make_parser(MODULE, DESCRIPTION, EPILOG, argv, prog)
    parser.add_argument("prototxt", type=Path, help="the net to rewrite (deploy prototxt; '-' reads stdin)")
    add_temperature_option(parser, required=True, help="the temperature, finite and > 0 (1 removes it)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, metavar="FILE",
                     help="write the net here ('-' or no -o: stdout)")
    out.add_argument("--in-place", action="store_true", help="rewrite PROTOTXT, keeping the original as PROTOTXT.bak")
    parser.add_argument("--layer", action="append", default=[], metavar="NAME",
                        help="only this Softmax layer (repeatable; default: every Softmax)")
    add_form_arguments(parser, SCALE_FORM)
    parser.add_argument("--weights", type=Path, metavar="IN.caffemodel",
                        help="a saved model for this net: refuse if it does not fit the net or stores a "
                             "different 1/T for the Scale")
    parser.add_argument("--weights-out", type=Path, metavar="OUT.caffemodel",
                        help="write a copy of --weights with each Scale's 1/T stored (added, updated, or "
                             "dropped with the Scale), as OpenCV's dnn module needs it for the scale form "
                             "('-': stdout)")
    return parser


def check_paths(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    stdin = str(args.prototxt) == STDOUT
    if args.in_place and stdin:
        parser.error("--in-place needs a file, not stdin")
    if args.weights_out is not None and args.weights is None:
        parser.error("--weights-out needs --weights")
    if args.output is None and not args.in_place:
        args.output = Path(STDOUT)
    if not is_stdout(args.output) and not stdin and same_file(args.output, args.prototxt):
        parser.error("-o names the input file; use --in-place to rewrite it (it keeps a .bak)")
    if args.weights_out is not None and same_file(args.weights_out, args.weights):
        parser.error("--weights-out names the --weights file; write the updated model to a new file")
    if args.in_place:  # the .bak and the net itself are outputs too, checked like the others
        args.backup, args.rewritten = args.prototxt.with_name(args.prototxt.name + ".bak"), args.prototxt
    else:
        args.backup, args.rewritten = None, args.output


def run(args: argparse.Namespace, outputs: Outputs) -> None:
    """The rewrite, and the model with it: all collected in ``outputs``, written by run_tool."""
    read = read_net(args.prototxt, sys.stdin)
    rewrite = rewrite_net(read.net, args.temperature, args.layer, args.form, read.source)
    if read.upgraded:
        outputs.note(f"{read.source} is a legacy (V0/V1 'layers') net; upgraded it to the current format first")
    for note in rewrite.notes:
        outputs.note(note)
    weights, weight_notes = rewritten_model(rewrite, args.weights, args.weights_out is not None)
    for note in weight_notes:
        outputs.note(note)
    if weights is not None and args.weights_out is not None:
        outputs.file(args.weights_out, weights)
    if args.backup is not None:
        outputs.file(args.backup, read.data)
    outputs.file(args.rewritten, render(rewrite.net).encode("utf-8"))


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return run_tool(build_parser(argv, prog), argv, run, ("weights_out", "backup", "rewritten"), check_paths)


if __name__ == "__main__":
    sys.exit(main())
