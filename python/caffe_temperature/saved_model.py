"""The saved model (.caffemodel) that goes with a net rewritten by add_temperature.

Caffe loads a .caffemodel's blobs by layer name over what the prototxt's fillers made; OpenCV's
dnn module (and other runtimes) run no fillers and take every learned blob from the model. So a
temperature Scale whose 1/T is only a filler runs on Caffe but not there: ``rewritten_model``
checks a model against the rewritten net and, asked to, gives it each Scale's 1/T as a stored
scalar blob, the way Caffe's own Net::ToProto writes it (added, updated, or dropped with the
Scale). Power and TemperatureSoftmax layers hold no blobs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from caffe_temperature._cli import ToolError
from caffe_temperature.prototxt import is_legacy, read_model, upgrade_legacy
from caffe_temperature.rewrite import (
    FUSED, FUSED_FORM, POWER, POWER_FORM, SOFTMAX, Rewrite, is_temperature_scale, temperature_beta)

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

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
    weights: caffe_pb2.NetParameter, net: caffe_pb2.NetParameter, name: str, beta: float | None, update: bool,
    path: Path
) -> list[str]:
    """Check, and with ``update`` fix, what the model stores for one temperature Scale of the input or of ``net``."""
    stored = list(stored_layers(weights, name))
    olds = [stored_beta(layer, path) for layer in stored]
    if beta is None:
        check_no_stale_blob(net, name, olds, update, path)
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


def check_no_stale_blob(net: caffe_pb2.NetParameter, name: str, olds: list[float], update: bool, path: Path) -> None:
    """A Scale that became a blob-less layer of the same name: Caffe refuses a model still storing its blob."""
    layer = next((layer for layer in net.layer if layer.name == name), None)
    if olds and layer is not None and not update:
        raise ToolError(
            f"{path} stores 1/T = {olds[0]:g} for {name!r}, which is now a {layer.type} layer without blobs: "
            "Caffe refuses to load such a model ('Incompatible number of blobs'). "
            "Pass --weights-out OUT.caffemodel to write a copy without it."
        )


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


def reconcile_model(
    weights: caffe_pb2.NetParameter, net: caffe_pb2.NetParameter, scales: dict[str, float | None], update: bool,
    path: Path
) -> tuple[caffe_pb2.NetParameter, list[str]]:
    """Check (and, with ``update``, fix) the 1/T a saved model stores for the temperature Scales.

    ``weights`` is the model (changed in place with ``update``), ``net`` the rewritten net,
    ``scales`` its Rewrite.scales, ``path`` the model's name in messages. Returns the model and
    notes. The model must fit ``net`` (check_model_fits). A stored 1/T that differs from the new
    one would override the prototxt's filler when Caffe loads the model: without ``update`` that is
    an error; with it the value is updated, a removed Scale's entry dropped and a missing 1/T added.
    """
    check_model_fits(net, weights, path)
    notes: list[str] = []
    for name, beta in scales.items():
        notes.extend(reconcile_scale(weights, net, name, beta, update, path))
    missing = [name for name, beta in scales.items()
               if beta is not None and next(stored_layers(weights, name), None) is None]
    if missing and update:
        weights, stored_notes = store_scales(weights, net, missing, path)
        notes.extend(stored_notes)
    elif missing:
        notes.append(f"{path} stores no 1/T for Scale {', '.join(map(repr, missing))}: Caffe takes it from the "
                     "prototxt's filler, but OpenCV's dnn module and other runtimes that run no fillers need it "
                     "in the model: add --weights-out OUT.caffemodel")
    return weights, notes


def net_scales(net: caffe_pb2.NetParameter, model: caffe_pb2.NetParameter) -> dict[str, float | None]:
    """Rewrite.scales as seen from a net alone: each temperature Scale's 1/T, and None for a layer of
    the model that the net has turned into a layer without blobs (a Power, Softmax or TemperatureSoftmax)."""
    blobless = {layer.name for layer in net.layer if layer.type in (POWER, SOFTMAX, FUSED)}
    scales: dict[str, float | None] = {name: None for name in blobless
                                       if next(stored_layers(model, name), None) is not None}
    scales.update({layer.name: temperature_beta(layer) for layer in net.layer if is_temperature_scale(layer)})
    return scales


def reconcile_weights(net: caffe_pb2.NetParameter, model: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """A copy of ``model`` (a trained .caffemodel's NetParameter) that goes with ``net`` (a net
    add_temperature rewrote): each temperature Scale's 1/T stored as its blob (added or updated),
    and the blobs of layers that no longer take any (a Scale turned into a Power or removed into
    its Softmax) dropped. The learned layers must fit ``net``, else ValueError. ``model`` is not changed.
    """
    copy = type(model)()
    copy.CopyFrom(model)
    reconciled, _ = reconcile_model(copy, net, net_scales(net, copy), True, Path("<model>"))
    return reconciled


def runtime_notes(rewrite: Rewrite, weights_given: bool) -> list[str]:
    """Where the rewritten net runs, and what a saved model needs for that."""
    types = {layer.type for layer in rewrite.net.layer}
    if rewrite.form == FUSED_FORM and FUSED in types:
        return [f"{FUSED} runs only on Caffe with this plugin loaded; for OpenCV's dnn module, ONNX converters "
                "or other runtimes use --form power (no model change), or the scale form with 1/T stored by "
                "--weights IN.caffemodel --weights-out OUT.caffemodel"]
    if rewrite.form == POWER_FORM and POWER in types:
        return ["Power layers hold no blobs: the net runs with its model unchanged on Caffe, OpenCV 4's dnn "
                "module and through caffe2onnx to ONNX"]
    if weights_given or not any(beta is not None for beta in rewrite.scales.values()):
        return []
    if rewrite.retuned:
        return [f"a .caffemodel saved with Scale {', '.join(map(repr, rewrite.retuned))} stores the old 1/T, "
                "which overrides the prototxt when loaded: update it with --weights IN --weights-out OUT"]
    return ["the rewritten net runs on Caffe as it is (1/T is the Scale's filler); OpenCV's dnn module and other "
            "runtimes that run no fillers need 1/T stored in the model: --weights IN.caffemodel "
            "--weights-out OUT.caffemodel (or use --form power, which needs no model change)"]


def rewritten_model(rewrite: Rewrite, weights: Path | None, update: bool) -> tuple[bytes | None, list[str]]:
    """The model to go with the rewritten net (None without ``weights``) and the notes about it.

    ``update``: --weights-out was given (reconcile_model).
    """
    model, notes = None, []
    if weights is not None:
        reconciled, notes = reconcile_model(read_model(weights), rewrite.net, rewrite.scales, update, weights)
        model = reconciled.SerializeToString()
    return model, notes + runtime_notes(rewrite, weights is not None)
