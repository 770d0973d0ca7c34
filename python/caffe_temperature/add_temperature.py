"""Give a deploy net's Softmax a temperature with stock Caffe layers.

``add_temperature.py deploy.prototxt --T 40`` writes a net whose probabilities
are ``softmax(logits / 40)``: a scalar ``Scale`` layer with the constant
1/T and frozen parameters is put in front of every ``Softmax`` (or of those
named with ``--layer``). Every other layer, the layer order and all names are
kept, so the result runs on any Caffe. ``--fused`` uses the plugin's
``TemperatureSoftmax`` instead of Scale + Softmax.

The rewrite is idempotent in T: run on its own output it changes the stored
1/T instead of stacking a second Scale, and ``--T 1`` removes the Scale.
Loss layers (``SoftmaxWithLoss`` and the like) are never touched: they take
logits, and a temperature belongs to the deploy net's Softmax.

With ``--weights IN.caffemodel --weights-out OUT.caffemodel`` the model gets
each Scale's 1/T as a stored scalar blob (added, updated, or dropped with the
Scale), so that runtimes which run no fillers (OpenCV's dnn module) load the
rewritten net; every other blob is copied unchanged.

The module works on ``caffe_pb2.NetParameter`` messages through protobuf's
``text_format``; ``add_temperature()`` is the pure rewrite, ``main()`` the
command line.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence, TextIO

from caffe_temperature._cli import (
    ArgumentParser, ToolError, WriteError, atomic_write, positive_number, report_errors, same_file)
from caffe_temperature.prototxt import (
    copy_net, is_legacy, load_caffe_pb2, read_model, read_net, render, upgrade_legacy)

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

PROG = "add_temperature.py"
SOFTMAX = "Softmax"
FUSED = "TemperatureSoftmax"
SCALE = "Scale"
NAME_SUFFIX = "_temperature"

DESCRIPTION = """\
Give a deploy net's Softmax a temperature T: its output becomes softmax(logits / T).
Inserts a frozen scalar Scale(1/T) in front of each Softmax (stock layers only, so
the net runs on any Caffe); loss layers are never touched. Re-running on the output
changes T; --T 1 removes the Scale."""

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
  --fused nets need Caffe with this plugin, so nothing is stored for them.

exit status: 0 on success; 2 on any error (bad arguments or input, a file that
cannot be read or written), reported on one line, with nothing written.
"""


# --------------------------------------------------------------------------
# The rewrite


@dataclass(frozen=True)
class Rewrite:
    """The rewritten net and what happened to its temperature Scale layers."""

    net: caffe_pb2.NetParameter
    # Every temperature Scale layer of the input or the output, by name:
    # its 1/T in the output, or None where the rewrite removed it.
    scales: dict[str, float | None] = field(default_factory=dict)
    # Scale layers of the input whose 1/T changed (a saved model may hold the old one).
    retuned: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def inverse_temperature(temperature: float) -> float:
    if not math.isfinite(temperature) or temperature <= 0:
        raise ToolError(f"T must be finite and > 0, got {temperature!r}")
    return 1.0 / temperature


def is_loss(layer: caffe_pb2.LayerParameter) -> bool:
    return layer.type.endswith("Loss")


def is_softmax(layer: caffe_pb2.LayerParameter) -> bool:
    """A layer whose temperature the tool sets: Softmax, or a TemperatureSoftmax with a constant beta."""
    return layer.type == SOFTMAX or (layer.type == FUSED and len(layer.bottom) == 1)


def is_temperature_scale(layer: caffe_pb2.LayerParameter) -> bool:
    """A frozen scalar Scale with a constant factor: the shape the tool inserts."""
    if layer.type != SCALE or len(layer.bottom) != 1 or len(layer.top) != 1:
        return False
    param = layer.scale_param
    frozen = len(layer.param) > 0 and all(p.lr_mult == 0 for p in layer.param)
    return (
        param.HasField("num_axes")
        and param.num_axes == 0
        and not param.bias_term
        and param.filler.type == "constant"
        and frozen
    )


def mentions(layer: caffe_pb2.LayerParameter, blob: str) -> bool:
    return blob in layer.bottom or blob in layer.top


def producer_index(layers: Sequence[caffe_pb2.LayerParameter], before: int, blob: str) -> int | None:
    """The last layer before ``before`` that writes ``blob``."""
    for index in range(before - 1, -1, -1):
        if blob in layers[index].top:
            return index
    return None


def own_scale_index(net: caffe_pb2.NetParameter, softmax_index: int) -> int | None:
    """The temperature Scale an earlier run put in front of this Softmax, if any.

    Either a Scale that writes a blob of its own that only this Softmax reads,
    or, for an in-place Softmax, an in-place Scale on the same blob that no
    layer in between touches.
    """
    layers = net.layer
    softmax = layers[softmax_index]
    blob = softmax.bottom[0]
    index = producer_index(layers, softmax_index, blob)
    if index is None or not is_temperature_scale(layers[index]):
        return None
    scale = layers[index]
    if scale.bottom[0] == scale.top[0]:
        in_place = softmax.top[0] == blob
        untouched = not any(mentions(layers[k], blob) for k in range(index + 1, softmax_index))
        return index if in_place and untouched else None
    others = (layer for k, layer in enumerate(layers) if k not in (index, softmax_index))
    private = blob not in net.input and not any(mentions(layer, blob) for layer in others)
    return index if private else None


def all_names(net: caffe_pb2.NetParameter) -> set[str]:
    """Layer and blob names in use (new layers take one name for the layer and its top)."""
    names = set(net.input)
    for layer in net.layer:
        names.add(layer.name)
        names.update(layer.bottom)
        names.update(layer.top)
    return names


def unique_name(base: str, taken: set[str]) -> str:
    name, counter = base, 0
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    taken.add(name)
    return name


def select_targets(net: caffe_pb2.NetParameter, names: Sequence[str], source: str) -> list[int]:
    """Indices of the Softmax layers to rewrite: all of them, or those named."""
    for name in names:
        check_named_layer(net, name, source)
    targets = [i for i, layer in enumerate(net.layer) if is_softmax(layer) and (not names or layer.name in names)]
    if not targets:
        raise ToolError(no_softmax_message(net, source))
    for index in targets:
        layer = net.layer[index]
        if len(layer.bottom) != 1 or len(layer.top) != 1:
            raise ToolError(f"{source}: {layer.type} {layer.name!r} needs exactly one bottom and one top")
    return targets


def check_named_layer(net: caffe_pb2.NetParameter, name: str, source: str) -> None:
    """A --layer name must name at least one Softmax (layers of other types may share the name)."""
    matches = [layer for layer in net.layer if layer.name == name]
    softmaxes = ", ".join(repr(layer.name) for layer in net.layer if is_softmax(layer)) or "none"
    if not matches:
        raise ToolError(f"{source}: no layer named {name!r} (Softmax layers: {softmaxes})")
    if any(is_softmax(layer) for layer in matches):
        return
    layer = matches[0]
    if is_loss(layer):
        raise ToolError(
            f"{source}: layer {name!r} is a {layer.type} loss layer; loss layers take logits and are "
            "never touched: temperature belongs in the deploy net's Softmax"
        )
    if layer.type == FUSED:
        raise ToolError(f"{source}: layer {name!r} takes its beta from bottom[1]; its temperature is not a constant")
    raise ToolError(f"{source}: layer {name!r} is a {layer.type} layer, not a Softmax (Softmax layers: {softmaxes})")


def no_softmax_message(net: caffe_pb2.NetParameter, source: str) -> str:
    losses = [f"{layer.type} {layer.name!r}" for layer in net.layer if is_loss(layer)]
    if losses:
        return (
            f"{source} has loss layers ({', '.join(losses)}) but no Softmax. Loss layers take logits and are "
            "never touched: temperature belongs in the deploy net, in front of the Softmax that turns logits "
            "into probabilities. Run this on the deploy prototxt."
        )
    return f"{source} has no Softmax layer, so there is nothing to give a temperature"


def set_beta(param: caffe_pb2.ScaleParameter, beta: float) -> None:
    param.filler.type = "constant"
    param.filler.value = beta


def scale_layer(name: str, bottom: str, top: str, beta: float) -> caffe_pb2.LayerParameter:
    """The temperature Scale the tool writes: a frozen scalar Scale(beta) with a constant filler."""
    scale = load_caffe_pb2().LayerParameter(name=name, type=SCALE, bottom=[bottom], top=[top])
    scale.param.add(lr_mult=0, decay_mult=0)
    scale.scale_param.num_axes = 0
    scale.scale_param.bias_term = False
    set_beta(scale.scale_param, beta)
    return scale


def make_scale(softmax: caffe_pb2.LayerParameter, name: str, top: str, beta: float) -> caffe_pb2.LayerParameter:
    """A temperature Scale in front of ``softmax`` that runs in the same phases."""
    scale = scale_layer(name, softmax.bottom[0], top, beta)
    if softmax.HasField("phase"):
        scale.phase = softmax.phase
    scale.include.extend(softmax.include)
    scale.exclude.extend(softmax.exclude)
    return scale


def as_plain_softmax(layer: caffe_pb2.LayerParameter) -> None:
    layer.type = SOFTMAX
    layer.ClearField("scale_param")


def as_fused(layer: caffe_pb2.LayerParameter, beta: float) -> None:
    layer.type = FUSED
    layer.ClearField("scale_param")
    set_beta(layer.scale_param, beta)


@dataclass
class Plan:
    """Per layer index: Scale layers to drop, and new Scale layers to put in front."""

    drop: set[int] = field(default_factory=set)
    insert: dict[int, caffe_pb2.LayerParameter] = field(default_factory=dict)
    scales: dict[str, float | None] = field(default_factory=dict)
    retuned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_softmax(
    net: caffe_pb2.NetParameter, index: int, beta: float, fused: bool, taken: set[str], plan: Plan
) -> None:
    """Rewrite the Softmax at ``index`` (in ``net``, a working copy) and record the Scale changes."""
    softmax = net.layer[index]
    own = own_scale_index(net, index)
    keep_scale = beta != 1.0 and not fused
    notes_before = len(plan.notes)
    if own is not None:
        scale = net.layer[own]
        if keep_scale:
            old = scale.scale_param.filler.value
            set_beta(scale.scale_param, beta)
            plan.scales[scale.name] = scale.scale_param.filler.value
            if plan.scales[scale.name] != old:
                plan.retuned.append(scale.name)
            plan.notes.append(f"Softmax {softmax.name!r}: Scale {scale.name!r} 1/T {old:g} -> {beta:g}")
        else:
            plan.drop.add(own)
            plan.scales[scale.name] = None
            softmax.bottom[0] = scale.bottom[0]
            plan.notes.append(f"Softmax {softmax.name!r}: removed Scale {scale.name!r}")
    elif keep_scale:
        in_place = softmax.top[0] == softmax.bottom[0]
        name = unique_name((softmax.name or "softmax") + NAME_SUFFIX, taken)
        scale = make_scale(softmax, name, softmax.bottom[0] if in_place else name, beta)
        plan.insert[index] = scale
        plan.scales[name] = scale.scale_param.filler.value
        if not in_place:
            softmax.bottom[0] = name
        plan.notes.append(f"Softmax {softmax.name!r}: inserted Scale {name!r} (1/T = {beta:g})")
    if fused and beta != 1.0:
        as_fused(softmax, beta)
        plan.notes.append(f"Softmax {softmax.name!r}: now {FUSED} with beta = 1/T = {beta:g}")
    else:
        as_plain_softmax(softmax)
    if len(plan.notes) == notes_before:  # T = 1 and no Scale of ours: say so rather than nothing
        plan.notes.append(f"Softmax {softmax.name!r}: T = 1, a plain Softmax (nothing to insert)")


def add_temperature(
    net: caffe_pb2.NetParameter,
    temperature: float,
    layer_names: Sequence[str] = (),
    fused: bool = False,
    source: str = "<net>",
) -> Rewrite:
    """The net with softmax(logits / temperature) at each targeted Softmax; ``net`` is not changed.

    T = 1 leaves plain Softmax layers (removing a temperature an earlier run added).
    """
    beta = inverse_temperature(temperature)
    work = copy_net(net)
    taken = all_names(work)
    plan = Plan()
    for index in select_targets(work, layer_names, source):
        plan_softmax(work, index, beta, fused, taken, plan)
    result = copy_net(work)
    del result.layer[:]
    for index, layer in enumerate(work.layer):
        if index in plan.insert:
            result.layer.append(plan.insert[index])
        if index not in plan.drop:
            result.layer.append(layer)
    losses = [layer.name for layer in work.layer if is_loss(layer)]
    if losses:
        plan.notes.append(f"loss layers left as they are (they take logits): {', '.join(map(repr, losses))}")
    return Rewrite(net=result, scales=plan.scales, retuned=tuple(plan.retuned), notes=tuple(plan.notes))


# --------------------------------------------------------------------------
# Saved weights
#
# Caffe loads a .caffemodel's blobs by layer name over what the prototxt's fillers made; OpenCV's
# dnn module (and other runtimes) run no fillers and take every learned blob from the model. So a
# temperature Scale whose 1/T is only a filler runs on Caffe but not there: with --weights-out the
# model gets the Scale's 1/T as a stored scalar blob, the way Caffe's own Net::ToProto writes it.

LEARNED_TYPES = ("InnerProduct", "Convolution")  # their blob shapes follow from their own parameters


def stored_layers(weights: caffe_pb2.NetParameter, name: str) -> Iterator[caffe_pb2.LayerParameter]:
    """Layers of a saved model (current or V1 format) called ``name`` that hold blobs."""
    for layer in [*weights.layer, *weights.layers]:
        if layer.name == name and len(layer.blobs) > 0:
            yield layer


def blob_dims(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The blob's shape; a V1 model's num x channels x height x width; else its value count."""
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return blob.num, blob.channels, blob.height, blob.width
    return (max(len(blob.data), len(blob.double_data)),)


def blob_count(blob: caffe_pb2.BlobProto) -> int:
    return math.prod(blob_dims(blob))


def weight_outputs(layer: caffe_pb2.LayerParameter, dims: tuple[int, ...]) -> int | None:
    """The output count a learned layer's weight blob holds (None for a shape it cannot have).

    InnerProduct: N x K (K x N with ``transpose``; 1 x 1 x N x K in a V1 model);
    Convolution: N x C/group x kernel.
    """
    if layer.type == "InnerProduct":
        return None if len(dims) < 2 else dims[-1] if layer.inner_product_param.transpose else dims[-2]
    return dims[0] if dims else None


def check_learned_layer(layer: caffe_pb2.LayerParameter, stored: caffe_pb2.LayerParameter, path: Path) -> None:
    """Blob count and output size of a stored InnerProduct / Convolution against the net's layer."""
    param = layer.inner_product_param if layer.type == "InnerProduct" else layer.convolution_param
    blobs = len(stored.blobs)
    shapes = ", ".join(" x ".join(map(str, blob_dims(blob))) or "scalar" for blob in stored.blobs)
    fits = blobs == 1 + param.bias_term and weight_outputs(layer, blob_dims(stored.blobs[0])) == param.num_output
    if not fits or (param.bias_term and blob_count(stored.blobs[1]) != param.num_output):
        raise ToolError(
            f"{path} does not belong to this net: its layer {layer.name!r} holds blobs of shape {shapes}, "
            f"the net's {layer.type} has num_output {param.num_output} and "
            f"{'a bias' if param.bias_term else 'no bias'}"
        )


def check_model_fits(net: caffe_pb2.NetParameter, weights: caffe_pb2.NetParameter, path: Path) -> None:
    """Refuse a model made for another net: a learned layer it has no blobs for, or of another shape.

    Caffe would silently keep such a layer's random filler values, OpenCV refuses the net.
    """
    for layer in net.layer:
        if layer.type not in LEARNED_TYPES:
            continue
        stored = next(stored_layers(weights, layer.name), None)
        if stored is None:
            raise ToolError(f"{path} does not belong to this net: it has no layer {layer.name!r} "
                            f"(the net's {layer.type}) holding weights")
        check_learned_layer(layer, stored, path)


def stored_beta(layer: caffe_pb2.LayerParameter, path: Path) -> float:
    blob = layer.blobs[0]
    values = list(blob.double_data) or list(blob.data)
    if len(layer.blobs) != 1 or blob_count(blob) != 1 or len(values) != 1:
        raise ToolError(
            f"{path}: layer {layer.name!r} stores {len(layer.blobs)} blob(s) of {blob_count(blob)} value(s), not the "
            "one scalar of a temperature Scale; refusing to guess which temperature wins. Rename that layer "
            "in the model, or load it with a net whose layer names differ."
        )
    return values[0]


def store_beta(layer: caffe_pb2.LayerParameter, beta: float) -> None:
    blob = layer.blobs[0]
    if len(blob.double_data):
        blob.double_data[0] = beta
    else:
        blob.data[0] = beta


def drop_stored(weights: caffe_pb2.NetParameter, name: str) -> None:
    """Remove the model's entries for a layer the rewrite removed."""
    for entries in (weights.layer, weights.layers):
        for index in reversed(range(len(entries))):
            if entries[index].name == name and len(entries[index].blobs) > 0:
                del entries[index]


def reconcile_scale(
    weights: caffe_pb2.NetParameter, name: str, beta: float | None, update: bool, path: Path
) -> list[str]:
    """Check, and with ``update`` fix, what the model stores for one temperature Scale."""
    stored = list(stored_layers(weights, name))
    olds = [stored_beta(layer, path) for layer in stored]
    if beta is None:
        drop_stored(weights, name)
        return [f"{path}: dropped the stored 1/T = {old:g} of removed Scale {name!r}" for old in olds]
    notes = []
    for layer, old in zip(stored, olds):
        if old == beta:
            continue
        if not update:
            raise ToolError(
                f"{path} stores 1/T = {old:g} (T = {1 / old if old else math.inf:g}) for Scale {name!r}; "
                f"loaded with the new net it would override 1/T = {beta:g}. "
                "Pass --weights-out OUT.caffemodel to write a copy with the new value."
            )
        store_beta(layer, beta)
        notes.append(f"{path}: Scale {name!r} stored 1/T {old:g} -> {beta:g}")
    return notes


def store_scales(
    weights: caffe_pb2.NetParameter, net: caffe_pb2.NetParameter, names: Sequence[str], path: Path
) -> tuple[caffe_pb2.NetParameter, list[str]]:
    """The model with a scalar blob holding the filler's 1/T for each named Scale of ``net``.

    A V1 model has no Scale type: it is upgraded (by Caffe's own upgrader) to the current format first.
    """
    notes = []
    if is_legacy(weights):
        weights = upgrade_legacy(weights, str(path))
        notes.append(f"{path} is a legacy (V0/V1 'layers') model; the copy is in the current format")
    layers = {layer.name: layer for layer in net.layer}
    for name in names:
        entry = weights.layer.add()
        entry.CopyFrom(layers[name])
        # A scalar as Blob::ToProto writes one: no shape field (OpenCV rejects an empty 'shape {}').
        entry.blobs.add().data.append(entry.scale_param.filler.value)
        notes.append(f"{path}: stored 1/T = {entry.blobs[0].data[0]:g} for Scale {name!r} in the copy")
    return weights, notes


def reconcile_weights(
    path: Path, net: caffe_pb2.NetParameter, scales: dict[str, float | None], update: bool
) -> tuple[bytes, list[str]]:
    """Check (and, with ``update``, fix) the 1/T a saved model stores for the temperature Scales.

    ``net`` is the rewritten net, ``scales`` its Rewrite.scales. Returns the model to write and
    notes. The model must fit ``net`` (check_model_fits). A stored 1/T that differs from the new
    one would override the prototxt's filler when Caffe loads the model: without ``update`` that is
    an error; with it the value is updated, a removed Scale's entry dropped and a missing 1/T added.
    """
    weights = read_model(path)
    check_model_fits(net, weights, path)
    notes: list[str] = []
    for name, beta in scales.items():
        notes.extend(reconcile_scale(weights, name, beta, update, path))
    missing = [name for name, beta in scales.items()
               if beta is not None and next(stored_layers(weights, name), None) is None]
    if missing and update:
        weights, stored_notes = store_scales(weights, net, missing, path)
        notes.extend(stored_notes)
    elif missing:
        notes.append(f"{path} stores no 1/T for Scale {', '.join(map(repr, missing))}: Caffe takes it from the "
                     "prototxt's filler, but OpenCV's dnn module and other runtimes that run no fillers need it "
                     "in the model: add --weights-out OUT.caffemodel")
    return weights.SerializeToString(), notes


def runtime_notes(rewrite: Rewrite, fused: bool, weights_given: bool) -> list[str]:
    """Where the rewritten net runs, and what a saved model needs for that."""
    if fused and any(layer.type == FUSED for layer in rewrite.net.layer):
        return [f"{FUSED} runs only on Caffe with this plugin loaded; for OpenCV's dnn module or other "
                "runtimes leave out --fused and store 1/T with --weights IN.caffemodel --weights-out OUT.caffemodel"]
    if weights_given or not any(beta is not None for beta in rewrite.scales.values()):
        return []
    if rewrite.retuned:
        return [f"a .caffemodel saved with Scale {', '.join(map(repr, rewrite.retuned))} stores the old 1/T, "
                "which overrides the prototxt when loaded: update it with --weights IN --weights-out OUT"]
    return ["the rewritten net runs on Caffe as it is (1/T is the Scale's filler); OpenCV's dnn module and other "
            "runtimes that run no fillers need 1/T stored in the model: --weights IN.caffemodel "
            "--weights-out OUT.caffemodel"]


def rewritten_model(
    rewrite: Rewrite, fused: bool, weights: Path | None, update: bool
) -> tuple[bytes | None, list[str]]:
    """The model to go with the rewritten net (None without ``weights``) and the notes about it.

    ``update``: --weights-out was given (reconcile_weights).
    """
    model, notes = None, []
    if weights is not None:
        model, notes = reconcile_weights(weights, rewrite.net, rewrite.scales, update)
    return model, notes + runtime_notes(rewrite, fused, weights is not None)


# --------------------------------------------------------------------------
# Command line


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
    parser.add_argument("--fused", action="store_true",
                        help="use the plugin's TemperatureSoftmax layer instead of Scale + Softmax")
    parser.add_argument("--weights", type=Path, metavar="IN.caffemodel",
                        help="a saved model for this net: refuse if it does not fit the net or stores a "
                             "different 1/T for the Scale")
    parser.add_argument("--weights-out", type=Path, metavar="OUT.caffemodel",
                        help="write a copy of --weights with each Scale's 1/T stored (added, updated, or "
                             "dropped with the Scale), as OpenCV's dnn module needs it")
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
    rewrite = add_temperature(read.net, args.temperature, args.layer, args.fused, read.source)
    notes = list(rewrite.notes)
    if read.upgraded:  # a note, printed with the others once all went well (an error stays one line)
        notes.insert(0, f"{read.source} is a legacy (V0/V1 'layers') net; upgraded it to the current format first")
    weights, weight_notes = rewritten_model(rewrite, args.fused, args.weights, args.weights_out is not None)
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
