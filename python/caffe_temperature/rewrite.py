"""The temperature rewrite of a deploy net: each Softmax's output becomes softmax(logits / T).

``add_temperature(net, T, form=...)`` (the public API; ``rewrite_net`` also says what it did)
gives the temperature one of three forms:

* ``scale``: a frozen scalar ``Scale`` layer in front of the Softmax, 1/T in its constant
  filler (and, once saved, in the model as the Scale's blob: see saved_model);
* ``power``: a ``Power { power: 1 scale: 1/T shift: 0 }`` layer in front of the Softmax; it
  holds no blobs, so 1/T lives in the prototxt only and every runtime reads it from there;
* ``fused``: the Softmax becomes the plugin's ``TemperatureSoftmax`` with beta = 1/T.

Every other layer, the layer order and all names are kept. The rewrite is idempotent in T and
in the form: run on its own output (in any form) it replaces the temperature layer it finds in
front of the Softmax instead of stacking a second one, and T = 1 removes it. Loss layers are
never touched: they take logits.

Everything here works on ``caffe_pb2.NetParameter`` messages, without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from caffe_temperature._cli import ToolError, check_positive
from caffe_temperature.prototxt import copy_net, load_caffe_pb2

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

SOFTMAX = "Softmax"
FUSED = "TemperatureSoftmax"
SCALE = "Scale"
POWER = "Power"
NAME_SUFFIX = "_temperature"

# The forms, by the name --form takes; each stock form is the layer type it puts in front.
SCALE_FORM, POWER_FORM, FUSED_FORM = "scale", "power", "fused"
FORMS = (SCALE_FORM, POWER_FORM, FUSED_FORM)
STOCK_LAYERS = {SCALE_FORM: SCALE, POWER_FORM: POWER}


@dataclass(frozen=True)
class Rewrite:
    """The rewritten net and what happened to its temperature Scale layers."""

    net: caffe_pb2.NetParameter
    form: str = SCALE_FORM
    # Every temperature Scale layer of the input or the output, by name: its 1/T in the output,
    # or None where the output has no Scale of that name (removed, or now a Power layer).
    scales: dict[str, float | None] = field(default_factory=dict)
    # Scale layers of the input whose 1/T changed (a saved model may hold the old one).
    retuned: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def inverse_temperature(temperature: float) -> float:
    return 1.0 / check_positive(temperature)


def check_form(form: str) -> None:
    if form not in FORMS:
        raise ToolError(f"unknown form {form!r} (forms: {', '.join(FORMS)})")


# --------------------------------------------------------------------------
# Recognising layers


def is_loss(layer: caffe_pb2.LayerParameter) -> bool:
    return layer.type.endswith("Loss")


def is_softmax(layer: caffe_pb2.LayerParameter) -> bool:
    """A layer whose temperature the tool sets: Softmax, or a TemperatureSoftmax with a constant beta."""
    return layer.type == SOFTMAX or (layer.type == FUSED and len(layer.bottom) == 1)


def one_in_one_out(layer: caffe_pb2.LayerParameter) -> bool:
    return len(layer.bottom) == 1 and len(layer.top) == 1


def is_temperature_scale(layer: caffe_pb2.LayerParameter) -> bool:
    """A frozen scalar Scale with a constant factor: the shape the scale form inserts."""
    if layer.type != SCALE or not one_in_one_out(layer):
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


def is_temperature_power(layer: caffe_pb2.LayerParameter) -> bool:
    """A Power layer that only multiplies, with ``power: 1`` and ``shift: 0`` written out as the power form writes them.

    (A Power that leaves them at their defaults is taken for a layer of the user's own.)
    """
    if layer.type != POWER or not one_in_one_out(layer):
        return False
    param = layer.power_param
    return param.HasField("power") and param.power == 1 and param.HasField("shift") and param.shift == 0


def is_temperature_layer(layer: caffe_pb2.LayerParameter) -> bool:
    return is_temperature_scale(layer) or is_temperature_power(layer)


def temperature_beta(layer: caffe_pb2.LayerParameter) -> float:
    """The 1/T a temperature Scale or Power layer multiplies by."""
    return layer.power_param.scale if layer.type == POWER else layer.scale_param.filler.value


def mentions(layer: caffe_pb2.LayerParameter, blob: str) -> bool:
    return blob in layer.bottom or blob in layer.top


def producer_index(layers: Sequence[caffe_pb2.LayerParameter], before: int, blob: str) -> int | None:
    """The last layer before ``before`` that writes ``blob``."""
    for index in range(before - 1, -1, -1):
        if blob in layers[index].top:
            return index
    return None


def own_temperature_index(net: caffe_pb2.NetParameter, softmax_index: int) -> int | None:
    """The temperature Scale or Power an earlier run put in front of this Softmax, if any.

    Either a layer that writes a blob of its own that only this Softmax reads,
    or, for an in-place Softmax, an in-place layer on the same blob that no
    layer in between touches.
    """
    layers = net.layer
    softmax = layers[softmax_index]
    blob = softmax.bottom[0]
    index = producer_index(layers, softmax_index, blob)
    if index is None or not is_temperature_layer(layers[index]):
        return None
    layer = layers[index]
    if layer.bottom[0] == layer.top[0]:
        in_place = softmax.top[0] == blob
        untouched = not any(mentions(layers[k], blob) for k in range(index + 1, softmax_index))
        return index if in_place and untouched else None
    others = (other for k, other in enumerate(layers) if k not in (index, softmax_index))
    private = blob not in net.input and not any(mentions(other, blob) for other in others)
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


# --------------------------------------------------------------------------
# Choosing the Softmax layers


def select_targets(net: caffe_pb2.NetParameter, names: Sequence[str], form: str, source: str) -> list[int]:
    """Indices of the Softmax layers to rewrite: all of them, or those named."""
    for name in names:
        check_named_layer(net, name, source)
    if form == POWER_FORM and not names:
        check_constant_temperatures(net, source)
    targets = [i for i, layer in enumerate(net.layer) if is_softmax(layer) and (not names or layer.name in names)]
    if not targets:
        raise ToolError(no_softmax_message(net, source))
    for index in targets:
        layer = net.layer[index]
        if not one_in_one_out(layer):
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


def check_constant_temperatures(net: caffe_pb2.NetParameter, source: str) -> None:
    """The power form promises a net without the plugin; a beta bottom has no Power equivalent."""
    for layer in net.layer:
        if layer.type == FUSED and len(layer.bottom) > 1:
            raise ToolError(
                f"{source}: {FUSED} {layer.name!r} takes a per-sample or learnt temperature from its bottom "
                f"{layer.bottom[1]!r}; a Power layer holds one constant 1/T, so --form power cannot replace it "
                "(name the other Softmax layers with --layer)"
            )


def no_softmax_message(net: caffe_pb2.NetParameter, source: str) -> str:
    losses = [f"{layer.type} {layer.name!r}" for layer in net.layer if is_loss(layer)]
    if losses:
        return (
            f"{source} has loss layers ({', '.join(losses)}) but no Softmax. Loss layers take logits and are "
            "never touched: temperature belongs in the deploy net, in front of the Softmax that turns logits "
            "into probabilities. Run this on the deploy prototxt."
        )
    return f"{source} has no Softmax layer, so there is nothing to give a temperature"


# --------------------------------------------------------------------------
# Building layers


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


def power_layer(name: str, bottom: str, top: str, beta: float) -> caffe_pb2.LayerParameter:
    """The temperature Power the tool writes: (beta x + 0)^1, every field written out."""
    power = load_caffe_pb2().LayerParameter(name=name, type=POWER, bottom=[bottom], top=[top])
    power.power_param.power = 1.0
    power.power_param.scale = beta
    power.power_param.shift = 0.0
    return power


def temperature_layer(
    layer_type: str, name: str, bottom: str, top: str, beta: float, rules: caffe_pb2.LayerParameter
) -> caffe_pb2.LayerParameter:
    """A temperature Scale or Power that runs in the same phases as ``rules``."""
    layer = (power_layer if layer_type == POWER else scale_layer)(name, bottom, top, beta)
    if rules.HasField("phase"):
        layer.phase = rules.phase
    layer.include.extend(rules.include)
    layer.exclude.extend(rules.exclude)
    return layer


def set_temperature(layer: caffe_pb2.LayerParameter, beta: float) -> None:
    if layer.type == POWER:
        layer.power_param.scale = beta
    else:
        set_beta(layer.scale_param, beta)


def as_plain_softmax(layer: caffe_pb2.LayerParameter) -> None:
    layer.type = SOFTMAX
    layer.ClearField("scale_param")


def as_fused(layer: caffe_pb2.LayerParameter, beta: float) -> None:
    layer.type = FUSED
    layer.ClearField("scale_param")
    set_beta(layer.scale_param, beta)


# --------------------------------------------------------------------------
# The rewrite


@dataclass
class Plan:
    """Per layer index: temperature layers to drop, and new ones to put in front; what happened to Scales."""

    drop: set[int] = field(default_factory=set)
    insert: dict[int, caffe_pb2.LayerParameter] = field(default_factory=dict)
    scales: dict[str, float | None] = field(default_factory=dict)
    retuned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, old_type: str | None, layer: caffe_pb2.LayerParameter, kept: bool) -> None:
        """Track a temperature layer that was or is now a Scale (whose 1/T a saved model may store)."""
        new_type = layer.type if kept else None
        if SCALE in (old_type, new_type):
            self.scales[layer.name] = layer.scale_param.filler.value if new_type == SCALE else None


def replace_own(net: caffe_pb2.NetParameter, own: int, softmax: caffe_pb2.LayerParameter,
                wanted: str | None, beta: float, plan: Plan) -> None:
    """Retune, convert to the ``wanted`` type (keeping name, blobs and rules) or, for None, remove."""
    layer = net.layer[own]
    old_type, old = layer.type, temperature_beta(layer)
    if wanted is None:
        plan.drop.add(own)
        softmax.bottom[0] = layer.bottom[0]
        plan.notes.append(f"Softmax {softmax.name!r}: removed {old_type} {layer.name!r}")
    elif wanted == old_type:
        set_temperature(layer, beta)
        if old_type == SCALE and layer.scale_param.filler.value != old:
            plan.retuned.append(layer.name)
        plan.notes.append(f"Softmax {softmax.name!r}: {old_type} {layer.name!r} 1/T {old:g} -> {beta:g}")
    else:
        layer.CopyFrom(temperature_layer(wanted, layer.name, layer.bottom[0], layer.top[0], beta, layer))
        plan.notes.append(f"Softmax {softmax.name!r}: {old_type} {layer.name!r} (1/T = {old:g}) "
                          f"is now a {wanted} (1/T = {beta:g})")
    plan.record(old_type, layer, wanted is not None)


def insert_new(index: int, softmax: caffe_pb2.LayerParameter, wanted: str, beta: float,
               taken: set[str], plan: Plan) -> None:
    """A new temperature layer in front of the Softmax (in place for an in-place Softmax)."""
    in_place = softmax.top[0] == softmax.bottom[0]
    name = unique_name((softmax.name or "softmax") + NAME_SUFFIX, taken)
    layer = temperature_layer(wanted, name, softmax.bottom[0], softmax.bottom[0] if in_place else name,
                              beta, softmax)
    plan.insert[index] = layer
    if not in_place:
        softmax.bottom[0] = name
    plan.record(None, layer, True)
    plan.notes.append(f"Softmax {softmax.name!r}: inserted {wanted} {name!r} (1/T = {beta:g})")


def plan_softmax(net: caffe_pb2.NetParameter, index: int, beta: float, form: str, taken: set[str],
                 plan: Plan) -> None:
    """Rewrite the Softmax at ``index`` (in ``net``, a working copy) and record the layer changes."""
    softmax = net.layer[index]
    own = own_temperature_index(net, index)
    wanted = STOCK_LAYERS.get(form) if beta != 1.0 else None
    notes_before = len(plan.notes)
    if own is not None:
        replace_own(net, own, softmax, wanted, beta, plan)
    elif wanted is not None:
        insert_new(index, softmax, wanted, beta, taken, plan)
    if form == FUSED_FORM and beta != 1.0:
        as_fused(softmax, beta)
        plan.notes.append(f"Softmax {softmax.name!r}: now {FUSED} with beta = 1/T = {beta:g}")
    else:
        as_plain_softmax(softmax)
    if len(plan.notes) == notes_before:  # T = 1 and no layer of ours: say so rather than nothing
        plan.notes.append(f"Softmax {softmax.name!r}: T = 1, a plain Softmax (nothing to insert)")


def rewrite_net(
    net: caffe_pb2.NetParameter,
    temperature: float,
    layer_names: Sequence[str] = (),
    form: str = SCALE_FORM,
    source: str = "<net>",
) -> Rewrite:
    """The net with softmax(logits / temperature) at each targeted Softmax, in ``form``; ``net`` is not changed.

    T = 1 leaves plain Softmax layers (removing a temperature an earlier run added).
    """
    check_form(form)
    beta = inverse_temperature(temperature)
    work = copy_net(net)
    taken = all_names(work)
    plan = Plan()
    for index in select_targets(work, layer_names, form, source):
        plan_softmax(work, index, beta, form, taken, plan)
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
    return Rewrite(net=result, form=form, scales=plan.scales, retuned=tuple(plan.retuned), notes=tuple(plan.notes))


def add_temperature(
    net: caffe_pb2.NetParameter, T: float, form: str = SCALE_FORM, layers: Sequence[str] | None = None
) -> caffe_pb2.NetParameter:
    """A copy of ``net`` whose Softmax layers (all, or those named in ``layers``) output softmax(logits / T).

    ``form``: "scale" (a frozen Scale(1/T) in front), "power" (a Power layer) or "fused" (the
    plugin's TemperatureSoftmax). Run on its own output it changes T or the form; T = 1 removes the
    temperature. ``net`` is not changed; no file is read or written. Bad input raises ValueError.
    """
    return rewrite_net(net, T, tuple(layers or ()), form).net
