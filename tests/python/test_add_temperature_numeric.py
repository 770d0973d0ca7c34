"""add_temperature in pycaffe: the rewritten net computes softmax(logits / T)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffe.proto import caffe_pb2
from caffe_temperature import add_temperature_cli as tool
from caffe_temperature import prototxt
from caffe_temperature.rewrite import FORMS, rewrite_net

DATA = Path(__file__).resolve().parent / "data" / "add_temperature"
TEMPERATURES = [0.5, 1.0, 3.0, 40.0]


def softmax(x: np.ndarray, temperature: float, axis: int) -> np.ndarray:
    z = x.astype(np.float64) * np.float64(np.float32(1.0 / temperature))
    z -= z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def rewrite(text: str, temperature: float, *, form: str = "scale") -> str:
    net = caffe_pb2.NetParameter()
    text_format.Parse(text, net)
    if prototxt.is_legacy(net):
        net = prototxt.upgrade_legacy(net, "<test>")
    return prototxt.render(rewrite_net(net, temperature, form=form).net)


CLASSIFIER = """
name: "Classifier"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 3 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


@pytest.fixture
def trained(make_net, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Weights of CLASSIFIER (random, saved), an input, and the logits the original net computes."""
    net = make_net(CLASSIFIER)
    rng = np.random.default_rng(3)
    for blob in net.params["fc"]:
        blob.data[...] = rng.normal(scale=3, size=blob.data.shape)
    weights = tmp_path / "classifier.caffemodel"
    net.save(str(weights))
    x = rng.normal(size=(4, 8)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    return weights, x, net.blobs["fc"].data.copy()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_same_weights_give_softmax_of_logits_over_t(make_net, trained, temperature, form):
    weights, x, logits = trained
    net = make_net(rewrite(CLASSIFIER, temperature, form=form), weights=str(weights))
    net.blobs["data"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs["fc"].data, logits, rtol=1e-6)  # logits untouched
    np.testing.assert_allclose(net.blobs["prob"].data, softmax(logits, temperature, 1), rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("temperature", [0.5, 3.0, 40.0])
def test_rerun_and_reset_numerically(make_net, trained, temperature):
    weights, x, logits = trained
    text = rewrite(rewrite(CLASSIFIER, 7.0), temperature)
    net = make_net(text, weights=str(weights))
    net.blobs["data"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs["prob"].data, softmax(logits, temperature, 1), rtol=2e-5, atol=1e-7)
    reset = make_net(rewrite(text, 1.0), weights=str(weights))
    reset.blobs["data"].data[...] = x
    reset.forward()
    np.testing.assert_allclose(reset.blobs["prob"].data, softmax(logits, 1.0, 1), rtol=2e-5, atol=1e-7)


def axis_net(axis: int, in_place: bool) -> str:
    top = "x" if in_place else "y"
    return (
        'layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }\n'
        f'layer {{ name: "sm" type: "Softmax" bottom: "x" top: "{top}" softmax_param {{ axis: {axis} }} }}\n'
    )


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
@pytest.mark.parametrize("form", FORMS)
def test_every_axis_and_in_place(make_net, axis, in_place, form):
    temperature = 2.5
    x = np.random.default_rng(axis + 10).normal(scale=4, size=(2, 3, 4, 5)).astype(np.float32)
    net = make_net(rewrite(axis_net(axis, in_place), temperature, form=form))
    net.blobs["x"].data[...] = x
    net.forward()
    out = net.blobs["x" if in_place else "y"].data
    np.testing.assert_allclose(out, softmax(x, temperature, axis), rtol=2e-5, atol=1e-7)


def test_several_softmax_layers_numerically(make_net):
    text = """
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 3 dim: 7 } } }
layer { name: "p1" type: "Softmax" bottom: "x" top: "p1" }
layer { name: "p2" type: "Softmax" bottom: "x" top: "p2" softmax_param { axis: 0 } }
"""
    x = np.random.default_rng(5).normal(scale=3, size=(3, 7)).astype(np.float32)
    net = make_net(rewrite(text, 4.0))
    net.blobs["x"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs["x"].data, x)  # the shared logits are not scaled in place
    np.testing.assert_allclose(net.blobs["p1"].data, softmax(x, 4.0, 1), rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(net.blobs["p2"].data, softmax(x, 4.0, 0), rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("fixture", ["v1_legacy.prototxt", "v0_legacy.prototxt", "input_dim.prototxt",
                                     "input_shape.prototxt", "comments_whitespace.prototxt"])
def test_fixture_nets_load_and_compute(make_net, fixture):
    text = (DATA / fixture).read_text()
    original = make_net(rewrite(text, 1.0))
    weights = {name: [b.data.copy() for b in blobs] for name, blobs in original.params.items()}
    net = make_net(rewrite(text, 6.0))
    for name, blobs in weights.items():
        for target, source in zip(net.params[name], blobs):
            target.data[...] = source
    x = np.random.default_rng(2).normal(size=original.blobs["data"].data.shape).astype(np.float32)
    for model in (original, net):
        model.blobs["data"].data[...] = x
        model.forward()
    logits = original.blobs["ip"].data
    np.testing.assert_allclose(net.blobs["prob"].data, softmax(logits, 6.0, 1), rtol=2e-5, atol=1e-7)


def test_stale_weights_would_win_and_weights_out_fixes_them(make_net, trained, tmp_path, capsys):
    """Why --weights exists: Caffe loads a stored Scale blob over the prototxt's filler."""
    weights, x, logits = trained
    t40 = tmp_path / "t40.prototxt"
    t40.write_text(rewrite(CLASSIFIER, 40.0))
    t40_model = tmp_path / "t40.caffemodel"
    make_net(t40.read_text(), weights=str(weights)).save(str(t40_model))

    t10 = tmp_path / "t10.prototxt"
    t10_model = tmp_path / "t10.caffemodel"
    assert tool.main([str(t40), "--T", "10", "-o", str(t10), "--weights", str(t40_model)]) == 2
    assert not t10.exists()
    assert tool.main([str(t40), "--T", "10", "-o", str(t10), "--weights", str(t40_model),
                      "--weights-out", str(t10_model)]) == 0
    capsys.readouterr()

    def probabilities(model: Path) -> np.ndarray:
        net = make_net(t10.read_text(), weights=str(model))
        net.blobs["data"].data[...] = x
        net.forward()
        return net.blobs["prob"].data.copy()

    # the old model silently keeps T = 40 ...
    np.testing.assert_allclose(probabilities(t40_model), softmax(logits, 40.0, 1), rtol=2e-5, atol=1e-7)
    # ... the updated one has T = 10
    np.testing.assert_allclose(probabilities(t10_model), softmax(logits, 10.0, 1), rtol=2e-5, atol=1e-7)
