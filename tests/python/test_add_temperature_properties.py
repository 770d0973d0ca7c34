"""Property-based tests of add_temperature over generated nets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caffe.proto import caffe_pb2
from caffe_temperature import rewrite as tool
from caffe_temperature import prototxt
from caffe_temperature._cli import ToolError

# Few names, so that generated names often collide with the ones the tool would pick.
NAMES = ["prob", "prob_temperature", "prob_temperature_1", "sm", "sm_temperature", "fc", "x", "loss"]
KINDS = ["softmax", "softmax", "relu", "power", "loss", "user_scale", "accuracy"]
TEMPERATURE = st.one_of(st.just(1.0), st.floats(min_value=1e-3, max_value=1e3, allow_nan=False))


@dataclass
class Builder:
    net: caffe_pb2.NetParameter
    blobs: list[str]
    counter: int = 0

    def fresh_blob(self, draw) -> str:
        name = draw(st.sampled_from(NAMES))
        if name in self.blobs:
            self.counter += 1
            name = f"{name}_{self.counter}"
        self.blobs.append(name)
        return name


@st.composite
def nets(draw) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter(name="generated")
    builder = Builder(net, [])
    if draw(st.booleans()):
        net.input.append("data")
        net.input_shape.add(dim=[2, 3, 4])
        builder.blobs.append("data")
    else:
        data = net.layer.add(name=draw(st.sampled_from(NAMES)), type="Input")
        data.top.append(builder.fresh_blob(draw))
        data.input_param.shape.add(dim=[2, 3, 4])
    for kind in draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=7)):
        add_layer(draw, builder, kind)
    return net


def add_layer(draw, builder: Builder, kind: str) -> None:
    bottom = draw(st.sampled_from(builder.blobs))
    layer = builder.net.layer.add(name=draw(st.sampled_from(NAMES)))
    layer.bottom.append(bottom)
    in_place = kind in ("relu", "softmax") and draw(st.booleans())
    if kind == "softmax":
        layer.type = "Softmax"
        if draw(st.booleans()):
            layer.softmax_param.axis = draw(st.integers(-3, 2))
        if draw(st.booleans()):
            layer.include.add(phase=draw(st.sampled_from([caffe_pb2.TRAIN, caffe_pb2.TEST])))
    elif kind == "relu":
        layer.type = "ReLU"
    elif kind == "power":
        layer.type = "Power"
        layer.power_param.scale = 2
    elif kind == "loss":
        layer.type = draw(st.sampled_from(["SoftmaxWithLoss", "SoftmaxWithInfogainLoss"]))
        layer.bottom.append(draw(st.sampled_from(builder.blobs)))
    elif kind == "user_scale":
        layer.type = "Scale"
        layer.scale_param.num_axes = 0
    elif kind == "accuracy":
        layer.type = "Accuracy"
        layer.bottom.append(draw(st.sampled_from(builder.blobs)))
    layer.top.append(bottom if in_place else builder.fresh_blob(draw))


def names_in(net: caffe_pb2.NetParameter) -> set[str]:
    return tool.all_names(net)


def strip_inserted(result: caffe_pb2.NetParameter, original: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """The result without the layers whose names the original does not have, Softmax bottoms restored."""
    known = {layer.name for layer in original.layer}
    inserted = [layer for layer in result.layer if layer.name not in known]
    stripped = caffe_pb2.NetParameter()
    stripped.CopyFrom(result)
    del stripped.layer[:]
    rewired = {s.top[0]: s.bottom[0] for s in inserted}
    for layer in result.layer:
        if layer.name in known:
            copy = stripped.layer.add()
            copy.CopyFrom(layer)
            if copy.type == "Softmax" and copy.bottom[0] in rewired:
                copy.bottom[0] = rewired[copy.bottom[0]]
    return stripped


def softmax_names(net: caffe_pb2.NetParameter) -> list[str]:
    return sorted({layer.name for layer in net.layer if layer.type == "Softmax"})


def check_rewrite(original: caffe_pb2.NetParameter, result: caffe_pb2.NetParameter,
                  temperature: float, targets: set[str], form: str) -> None:
    # parses back with caffe_pb2 to the same message
    assert text_format.Parse(prototxt.render(result), caffe_pb2.NetParameter()) == result
    beta = float(np.float32(1.0 / temperature))
    known = {layer.name for layer in original.layer}
    inserted = [layer for layer in result.layer if layer.name not in known]
    # new names are new, distinct, and each new layer writes a blob of its own name (or works in place)
    assert not {layer.name for layer in inserted} & names_in(original)
    assert len({layer.name for layer in inserted}) == len(inserted)
    expected = 0 if temperature == 1.0 else sum(
        1 for layer in original.layer if layer.type == "Softmax" and layer.name in targets)
    assert len(inserted) == expected
    for index, layer in enumerate(result.layer):
        if layer.type == "Softmax" and layer.name in targets and temperature != 1.0:
            scale = result.layer[index - 1]
            assert scale in inserted and scale.type == tool.STOCK_LAYERS[form] and tool.is_temperature_layer(scale)
            assert tool.own_temperature_index(result, index) == index - 1
            assert tool.temperature_beta(scale) == beta
            assert list(scale.include) == list(layer.include)
            assert scale.top[0] == layer.bottom[0]
            assert scale.top[0] in (scale.name, scale.bottom[0])
    for scale in (s for s in inserted if s.top[0] != s.bottom[0]):  # in place: the Softmax follows
        consumers = [layer for layer in result.layer if scale.top[0] in layer.bottom and layer is not scale]
        assert len(consumers) == 1 and consumers[0].type == "Softmax"
    # nothing else changed
    assert strip_inserted(result, original) == original


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=nets(), temperature=TEMPERATURE, form=st.sampled_from([tool.SCALE_FORM, tool.POWER_FORM]), data=st.data())
def test_rewrite_properties(net, temperature, form, data):
    names = softmax_names(net)
    if not names:
        with pytest.raises(ToolError):
            tool.rewrite_net(net, temperature)
        return
    chosen = data.draw(st.one_of(st.just([]), st.lists(st.sampled_from(names), min_size=1, unique=True)))
    before = net.SerializeToString()
    result = tool.rewrite_net(net, temperature, chosen, form).net
    assert net.SerializeToString() == before  # the input message is not changed
    check_rewrite(net, result, temperature, set(chosen or names), form)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=nets(), first=TEMPERATURE, second=TEMPERATURE, form=st.sampled_from(tool.FORMS))
def test_rerun_is_the_same_as_running_once(net, first, second, form):
    """In any form, and switching forms: the output depends only on the last run."""
    if not softmax_names(net):
        return
    once = tool.rewrite_net(net, first, form=form).net
    for second_form in tool.FORMS:
        assert tool.rewrite_net(once, second, form=second_form).net == tool.rewrite_net(
            net, second, form=second_form).net
    assert tool.rewrite_net(once, 1.0).net == net


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=nets(), temperature=TEMPERATURE)
def test_fused_replaces_only_the_softmax_type(net, temperature):
    if not softmax_names(net):
        return
    result = tool.rewrite_net(net, temperature, form=tool.FUSED_FORM).net
    assert len(result.layer) == len(net.layer)
    for before, after in zip(net.layer, result.layer):
        if before.type != "Softmax" or temperature == 1.0:
            assert after == before
            continue
        assert after.type == "TemperatureSoftmax"
        assert after.scale_param.filler.type == "constant"
        assert after.scale_param.filler.value == float(np.float32(1.0 / temperature))
        restored = caffe_pb2.LayerParameter()
        restored.CopyFrom(after)
        restored.type = "Softmax"
        restored.ClearField("scale_param")
        assert restored == before
