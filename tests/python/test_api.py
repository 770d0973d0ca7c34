"""The public Python API: docs/api.md's examples (as doctests), and what they promise beyond them."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from scipy.special import log_softmax

import caffe_temperature as ct
from caffe.proto import caffe_pb2

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"

NET = """
name: "two" input: "data" input_shape { dim: 2 dim: 4 }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "a" type: "Softmax" bottom: "fc" top: "a" }
layer { name: "b" type: "Softmax" bottom: "fc" top: "b" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def parse(text: str) -> caffe_pb2.NetParameter:
    return text_format.Parse(text, caffe_pb2.NetParameter())


def test_the_api_doc_examples_run() -> None:
    result = doctest.testfile(str(API_DOC), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 20 and result.failed == 0, result


def test_exports() -> None:
    for name in ("add_temperature", "reconcile_weights", "fit_temperature", "expected_calibration_error",
                 "infogain_matrix", "sample"):
        assert callable(getattr(ct, name)) and name in ct.__all__


def test_the_package_import_stays_light() -> None:
    code = ("import sys, caffe_temperature; "
            "print(sorted(m for m in sys.modules if m.startswith('caffe_temperature')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['caffe_temperature', 'caffe_temperature._loader']"


def test_add_temperature_is_pure_and_names_layers() -> None:
    net = parse(NET)
    before = net.SerializeToString()
    hot = ct.add_temperature(net, 4.0, form="power", layers=["b"])
    assert net.SerializeToString() == before
    assert [(layer.name, layer.type) for layer in hot.layer] == [
        ("fc", "InnerProduct"), ("a", "Softmax"), ("b_temperature", "Power"), ("b", "Softmax"),
        ("loss", "SoftmaxWithLoss")]
    with pytest.raises(ValueError, match="unknown form 'cube'"):
        ct.add_temperature(net, 2.0, form="cube")
    with pytest.raises(ValueError, match="no layer named 'c'"):
        ct.add_temperature(net, 2.0, layers=["c"])


def test_reconcile_weights_updates_and_refuses_a_model_of_another_net() -> None:
    net = parse(NET)
    model = caffe_pb2.NetParameter()
    fc = model.layer.add(name="fc", type="InnerProduct")
    fc.blobs.add(shape=caffe_pb2.BlobShape(dim=[3, 4]), data=[1.0] * 12)
    fc.blobs.add(shape=caffe_pb2.BlobShape(dim=[3]), data=[0.0] * 3)
    at_2 = ct.reconcile_weights(ct.add_temperature(net, 2.0), model)
    at_8 = ct.reconcile_weights(ct.add_temperature(net, 8.0), at_2)
    stored = {layer.name: list(layer.blobs[0].data) for layer in at_8.layer if layer.type == "Scale"}
    assert stored == {"a_temperature": [0.125], "b_temperature": [0.125]}
    assert len([layer for layer in at_2.layer if layer.type == "Scale"]) == 2 and len(model.layer) == 1
    wide = parse(NET.replace("num_output: 3", "num_output: 5"))
    with pytest.raises(ValueError, match="does not belong to this net"):
        ct.reconcile_weights(ct.add_temperature(wide, 2.0), model)


def test_fit_temperature_minimises_the_nll_against_a_grid() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, size=(500, 4))
    labels = ct.sample(logits, T=2.5, rng=rng)
    grid = np.exp(np.linspace(np.log(0.05), np.log(50), 4001))
    nll = [-log_softmax(logits / t, axis=1)[np.arange(500), labels].mean() for t in grid]
    assert ct.fit_temperature(logits, labels) == pytest.approx(grid[int(np.argmin(nll))], rel=5e-3)


def test_expected_calibration_error_against_a_direct_sum() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.2]])
    labels = np.array([0, 0, 1, 1])
    p = np.exp(log_softmax(logits, axis=1))
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == labels).astype(float)
    bins = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
    expected = sum(abs(correct[bins == b].sum() - confidence[bins == b].sum()) for b in set(bins)) / len(labels)
    assert ct.expected_calibration_error(logits, labels) == pytest.approx(expected)
    with pytest.raises(ValueError, match="lengths must match"):
        ct.expected_calibration_error(logits, labels[:3])


def test_infogain_matrix_sources() -> None:
    assert np.array_equal(ct.infogain_matrix(classes=3), np.eye(3, dtype=np.float32))
    linear = ct.infogain_matrix(cost=[[0, 2, 4], [2, 0, 1], [4, 1, 0]], transform="linear")
    assert linear.dtype == np.float32 and np.allclose(linear, 1 - np.array([[0, 2, 4], [2, 0, 1], [4, 1, 0]]) / 4)
    with pytest.raises(ValueError, match="H is 2 x 2 but --classes is 3"):
        ct.infogain_matrix(matrix=np.eye(2), classes=3)
    with pytest.raises(ValueError, match="not counts and cost"):
        ct.infogain_matrix(counts=[1, 2], cost=[[0, 1], [1, 0]])
