"""TemperatureSoftmax in pycaffe against numpy and against stock Caffe layers."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def reference_softmax(x: np.ndarray, beta: np.ndarray | float, axis: int) -> np.ndarray:
    """softmax(beta * x) over axis, in float64."""
    z = np.asarray(beta, dtype=np.float64) * x.astype(np.float64)
    z -= z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def input_layer(name: str, shape: tuple[int, ...]) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def temperature_layer(beta: float | None, axis: int, bottoms: tuple[str, ...] = ("x",), top: str = "y") -> str:
    params = f"softmax_param {{ axis: {axis} }}"
    if beta is not None:
        params += f' scale_param {{ filler {{ type: "constant" value: {beta!r} }} }}'
    bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
    return f'layer {{ name: "t" type: "TemperatureSoftmax" {bottom} top: "{top}" {params} }}\n'


SHAPES_AND_AXES = [((6, 10), 1), ((6, 10), -1), ((6, 10), 0), ((2, 5, 3, 4), 1), ((2, 5, 3, 4), 2), ((2, 5, 3, 4), -1)]


@pytest.mark.parametrize("shape,axis", SHAPES_AND_AXES)
@pytest.mark.parametrize("temperature", [0.05, 1.0, 3.0, 40.0])
def test_forward_matches_numpy(make_net, shape, axis, temperature):
    beta = 1.0 / temperature
    net = make_net(input_layer("x", shape) + temperature_layer(beta, axis))
    x = np.random.default_rng(0).normal(scale=5, size=shape).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    # beta as the float32 the layer stores it as
    expected = reference_softmax(x, np.float32(beta), axis)
    np.testing.assert_allclose(net.blobs["y"].data, expected, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("shape,axis", SHAPES_AND_AXES)
def test_beta_one_equals_stock_softmax(make_net, shape, axis):
    net = make_net(
        input_layer("x", shape)
        + temperature_layer(None, axis)
        + f'layer {{ name: "s" type: "Softmax" bottom: "x" top: "s" softmax_param {{ axis: {axis} }} }}'
    )
    net.blobs["x"].data[...] = np.random.default_rng(1).normal(scale=3, size=shape)
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, net.blobs["s"].data, rtol=1e-6, atol=1e-8)


def test_equals_stock_scale_then_softmax_forward_and_backward(make_net):
    beta = 0.025
    shape = (4, 7, 3)
    net = make_net(
        "force_backward: true\n"
        + input_layer("x", shape)
        + temperature_layer(beta, 1)
        + 'layer { name: "scale" type: "Scale" bottom: "x" top: "xs" param { lr_mult: 0 decay_mult: 0 } '
        f'scale_param {{ num_axes: 0 bias_term: false filler {{ type: "constant" value: {beta} }} }} }}\n'
        + 'layer { name: "s" type: "Softmax" bottom: "xs" top: "s" }\n'
    )
    rng = np.random.default_rng(2)
    net.blobs["x"].data[...] = rng.normal(scale=50, size=shape)
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, net.blobs["s"].data, rtol=1e-5, atol=1e-8)
    top_diff = rng.normal(size=shape)
    net.blobs["y"].diff[...] = top_diff
    net.blobs["s"].diff[...] = 0
    net.backward(start="t")
    ours = net.blobs["x"].diff.copy()
    net.blobs["y"].diff[...] = 0
    net.blobs["s"].diff[...] = top_diff
    net.backward(start="s")
    np.testing.assert_allclose(ours, net.blobs["x"].diff, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("layout", ["shared", "per_sample", "per_position"])
def test_beta_bottom_forward_and_gradients(make_net, layout):
    shape = (3, 4, 5)
    beta_shape = {"shared": (1,), "per_sample": (3,), "per_position": (3, 5)}[layout]
    net = make_net(
        "force_backward: true\n"
        + input_layer("x", shape)
        + input_layer("beta", beta_shape)
        + temperature_layer(None, 1, bottoms=("x", "beta"))
    )
    rng = np.random.default_rng(3)
    x = rng.normal(scale=2, size=shape)
    beta = rng.uniform(0.2, 3.0, size=beta_shape)
    net.blobs["x"].data[...] = x
    net.blobs["beta"].data[...] = beta
    net.forward()
    broadcast_shape = {"shared": (1, 1, 1), "per_sample": (3, 1, 1), "per_position": (3, 1, 5)}[layout]
    b = beta.reshape(broadcast_shape).astype(np.float32)
    y = reference_softmax(x.astype(np.float32), b, 1)
    np.testing.assert_allclose(net.blobs["y"].data, y, rtol=2e-5, atol=1e-7)

    dy = rng.normal(size=shape)
    net.blobs["y"].diff[...] = dy
    net.backward()
    xf = x.astype(np.float32).astype(np.float64)
    dot = (dy * y).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.blobs["x"].diff, b * y * (dy - dot), rtol=1e-4, atol=1e-6)
    mean_x = (y * xf).sum(axis=1, keepdims=True)
    per_position = (dy * y * (xf - mean_x)).sum(axis=1)  # (3, 5)
    expected = {"shared": per_position.sum().reshape(1), "per_sample": per_position.sum(axis=1), "per_position": per_position}
    np.testing.assert_allclose(net.blobs["beta"].diff, expected[layout], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale,temperature", [(1e4, 0.01), (1e4, 1e4), (1.0, 1e4), (1e4, 1.0)])
def test_extreme_inputs_stay_finite_and_correct(make_net, scale, temperature):
    shape = (5, 9)
    net = make_net(input_layer("x", shape) + temperature_layer(1.0 / temperature, 1))
    x = np.random.default_rng(4).uniform(-scale, scale, size=shape).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    y = net.blobs["y"].data
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, reference_softmax(x, np.float32(1.0 / temperature), 1), rtol=1e-4, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=6),
                 elements=st.floats(-1e3, 1e3, width=32)),
    temperature=st.floats(1e-2, 1e3),
    data=st.data(),
)
def test_property_rows_are_distributions_matching_numpy(caffe, tmp_path_factory, x, temperature, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    path = tmp_path_factory.mktemp("prop") / "net.prototxt"
    path.write_text(input_layer("x", x.shape) + temperature_layer(1.0 / temperature, axis))
    net = caffe.Net(str(path), caffe.TEST)
    net.blobs["x"].data[...] = x
    net.forward()
    y = net.blobs["y"].data
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y, reference_softmax(x, np.float32(1.0 / temperature), axis), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    "params,message",
    [
        ('scale_param { filler { type: "constant" value: 0 } }', r"inverse temperature beta = 0 must be finite and > 0"),
        ('scale_param { filler { type: "constant" value: -2 } }', r"beta = -2 must be finite and > 0"),
        ('scale_param { filler { type: "constant" value: inf } }', r"beta = inf must be finite and > 0"),
        ('scale_param { filler { type: "gaussian" std: 1 } }', r"has type \"gaussian\", but the temperature must be a constant"),
    ],
)
def test_bad_filler_fails_with_syntax_hint(tmp_path, params, message):
    text = input_layer("x", (2, 3)) + f'layer {{ name: "t" type: "TemperatureSoftmax" bottom: "x" top: "y" {params} }}'
    result = run_bad_net(text, {}, tmp_path)
    assert result.returncode != 0
    assert "TemperatureSoftmax layer 't'" in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert 'scale_param { filler { type: "constant" value: 0.025 } }' in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "float('nan')", "float('inf')"])
def test_bad_beta_bottom_fails_naming_index_and_value(tmp_path, value):
    text = input_layer("x", (2, 3)) + input_layer("beta", (2,)) + temperature_layer(None, 1, bottoms=("x", "beta"))
    result = run_bad_net(text, {"beta": f"np.array([1.0, {value}])"}, tmp_path)
    assert result.returncode != 0
    assert "inverse temperature bottom[1][1] = " in result.stderr, result.stderr
    assert "must be finite and > 0" in result.stderr


def test_wrong_beta_count_is_refused(tmp_path):
    text = input_layer("x", (2, 3, 4)) + input_layer("beta", (5,)) + temperature_layer(None, 1, bottoms=("x", "beta"))
    result = run_bad_net(text, {}, tmp_path)
    assert result.returncode != 0
    assert "beta (bottom[1]) has 5 values; expected 1 (shared), 2 (one per sample) or 8 (one per position)" in result.stderr


def test_in_place_with_beta_bottom_needs_propagate_down_off(make_net, tmp_path):
    shape = (2, 3)
    base = input_layer("x", shape) + input_layer("beta", (1,))
    refused = base + 'layer { name: "t" type: "TemperatureSoftmax" bottom: "x" bottom: "beta" top: "x" }'
    result = run_bad_net(refused, {}, tmp_path)
    assert result.returncode != 0
    assert "runs in place with beta as bottom[1]" in result.stderr
    allowed = base + (
        'layer { name: "t" type: "TemperatureSoftmax" bottom: "x" bottom: "beta" top: "x" '
        "propagate_down: true propagate_down: false }"
    )
    net = make_net(allowed)
    x = np.arange(6, dtype=np.float32).reshape(shape)
    net.blobs["x"].data[...] = x
    net.blobs["beta"].data[...] = 0.5
    net.forward()
    np.testing.assert_allclose(net.blobs["x"].data, reference_softmax(x, 0.5, 1), rtol=1e-6)


def run_bad_net(net_text: str, inputs: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    """Runs a net expected to stop the process (glog FATAL) in its own Python.

    inputs maps an input blob to a Python expression for its value (default 1)."""
    path = tmp_path / "bad.prototxt"
    path.write_text(net_text)
    fills = "".join(f"    net.blobs[{k!r}].data[...] = {v}\n" for k, v in inputs.items())
    script = (
        "import numpy as np, caffe, caffe_temperature\n"
        f"net = caffe.Net({str(path)!r}, caffe.TEST)\n"
        "for name in net.inputs:\n"
        "    net.blobs[name].data[...] = 1\n"
        f"if True:\n{fills or '    pass'}\n"
        "net.forward()\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
