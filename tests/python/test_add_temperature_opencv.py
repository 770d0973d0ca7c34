"""add_temperature --weights-out: the rewritten net runs in OpenCV's dnn module, which runs no fillers.

OpenCV takes every learned blob from the .caffemodel, so the Scale's 1/T has to be stored there.
Each case compares OpenCV's and pycaffe's output of the rewritten prototxt + written model with
numpy's softmax(logits / T), the logits computed by that runtime from the original prototxt + model.
(The two runtimes' float32 arithmetic rounds differently, OpenCV's Winograd 3x3 convolution most:
their logits agree to about 1e-6 of their size, which softmax at T = 0.5 can turn into differences
of about 2e-6 between the runtimes.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from caffe.proto import caffe_pb2
from caffe_temperature import add_temperature as tool

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-6

CONV_NET = """
name: "SmallConv"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 7 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

# 4200 x 4096 float weights: 68.8 MB, past protobuf's historical 64 MiB message limit.
LARGE_NET = """
name: "Large"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4096 } } }
layer { name: "wide" type: "InnerProduct" bottom: "data" top: "wide" inner_product_param { num_output: 4200 } }
layer { name: "relu" type: "ReLU" bottom: "wide" top: "wide" }
layer { name: "logits" type: "InnerProduct" bottom: "wide" top: "logits" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "logits" top: "prob" }
"""

NETS = {
    "conv": (CONV_NET, "fc"),
    "readme_example": ((REPO / "prototxt" / "deploy_example.prototxt").read_text(), "logits"),
    "large": (LARGE_NET, "logits"),
}


@dataclass(frozen=True)
class Model:
    """A deploy net saved from pycaffe with random weights, an input and the logits it computes."""

    prototxt: Path
    weights: Path
    x: np.ndarray
    logits: dict[str, np.ndarray]  # by runtime: "pycaffe", "opencv"


def save_model(caffe, work: Path, net_name: str, seed: int = 0) -> Model:
    text, logits_blob = NETS[net_name]
    prototxt, weights = work / f"{net_name}.prototxt", work / f"{net_name}.caffemodel"
    prototxt.write_text(text)
    net = caffe.Net(str(prototxt), caffe.TEST)
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():  # fan-in scaled: logits of a few units, so T = 0.5 is no argmax
        weight = blobs[0].data
        weight[...] = rng.normal(scale=1.5 / np.sqrt(weight[0].size), size=weight.shape)
        for bias in blobs[1:]:
            bias.data[...] = rng.normal(scale=0.1, size=bias.data.shape)
    net.save(str(weights))
    x = rng.normal(size=net.blobs["data"].data.shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    logits = {"pycaffe": net.blobs[logits_blob].data.astype(np.float64),
              "opencv": opencv_output(prototxt, weights, x, logits_blob)}
    return Model(prototxt, weights, x, logits)


@pytest.fixture(scope="module", params=["conv", "readme_example"])
def model(request, caffe, tmp_path_factory) -> Model:
    return save_model(caffe, tmp_path_factory.mktemp(request.param), request.param)


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def opencv_output(prototxt: Path, weights: Path, x: np.ndarray, blob: str = "prob") -> np.ndarray:
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    net.setInput(x)
    return net.forward(blob).astype(np.float64)


def pycaffe_output(caffe, prototxt: Path, weights: Path, x: np.ndarray) -> np.ndarray:
    net = caffe.Net(str(prototxt), caffe.TEST, weights=str(weights))
    net.blobs["data"].data[...] = x
    net.forward()
    return net.blobs["prob"].data.astype(np.float64)


def deviations(caffe, model: Model, prototxt: Path, weights: Path, temperature: float) -> dict[str, float]:
    """Max abs difference of each runtime's output from numpy's softmax(logits / T)."""
    outputs = {"opencv": opencv_output(prototxt, weights, model.x),
               "pycaffe": pycaffe_output(caffe, prototxt, weights, model.x)}
    return {runtime: float(np.abs(output - softmax(model.logits[runtime], temperature)).max())
            for runtime, output in outputs.items()}


def rewrite(capsys, source: Path, temperature: float, out: Path, weights: Path, weights_out: Path) -> str:
    """Runs the command line; returns its notes (stderr)."""
    argv = [source, "--T", temperature, "-o", out, "--weights", weights, "--weights-out", weights_out]
    code = tool.main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert code == 0, err
    return err


def stored_blobs(path: Path) -> dict[str, list[bytes]]:
    """Each layer's serialized blobs, by layer name."""
    model = caffe_pb2.NetParameter()
    model.ParseFromString(path.read_bytes())
    return {layer.name: [blob.SerializeToString() for blob in layer.blobs] for layer in model.layer if layer.blobs}


def check_runtimes(caffe, model: Model, prototxt: Path, weights: Path, temperature: float) -> None:
    found = deviations(caffe, model, prototxt, weights, temperature)
    assert max(found.values()) <= TOLERANCE, found


def test_filler_only_scale_is_what_opencv_refuses(caffe, capsys, model, tmp_path):
    """Without --weights-out the Scale's 1/T is only a filler: Caffe runs it, OpenCV cannot."""
    out = tmp_path / "t40.prototxt"
    assert tool.main([str(model.prototxt), "--T", "40", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "runs on Caffe as it is" in err and "OpenCV" in err and "--weights-out" in err
    expected = softmax(model.logits["pycaffe"], 40)
    assert np.abs(pycaffe_output(caffe, out, model.weights, model.x) - expected).max() <= TOLERANCE
    with pytest.raises(cv2.error):
        opencv_output(out, model.weights, model.x)


def test_the_runtimes_agree_on_the_original_logits(model):
    logits = model.logits
    size = np.abs(logits["pycaffe"]).max()
    np.testing.assert_allclose(logits["opencv"], logits["pycaffe"], rtol=0, atol=1e-5 * size)
    assert 2 < size < 10  # logits of a few units: the softmax at T = 0.5, 1 and 40 differ clearly


@pytest.mark.parametrize("temperature", [40.0, 0.5])
def test_written_model_runs_in_opencv_and_pycaffe(caffe, capsys, model, tmp_path, temperature):
    out, out_model = tmp_path / "t.prototxt", tmp_path / "t.caffemodel"
    notes = rewrite(capsys, model.prototxt, temperature, out, model.weights, out_model)
    assert "stored 1/T" in notes
    check_runtimes(caffe, model, out, out_model, temperature)
    original, written = stored_blobs(model.weights), stored_blobs(out_model)
    assert written.pop("prob_temperature") == [caffe_pb2.BlobProto(data=[1 / temperature]).SerializeToString()]
    assert written == original  # every other layer's blobs byte for byte


def test_retune_and_removal_keep_the_model_in_step(caffe, capsys, model, tmp_path):
    """T = 40, then 0.5 on that output (the stored 1/T is updated), then T = 1 (Scale and blob removed)."""
    source, weights = model.prototxt, model.weights
    for step, temperature in enumerate([40.0, 0.5, 1.0]):
        out, out_model = tmp_path / f"step{step}.prototxt", tmp_path / f"step{step}.caffemodel"
        rewrite(capsys, source, temperature, out, weights, out_model)
        check_runtimes(caffe, model, out, out_model, temperature)
        source, weights = out, out_model
    assert 'type: "Scale"' not in source.read_text()
    assert stored_blobs(weights) == stored_blobs(model.weights)


def as_v1_model(path: Path, out: Path) -> None:
    """The model in the V1 ('layers', num x channels x height x width blobs) format of BVLC's zoo models."""
    model = caffe_pb2.NetParameter()
    model.ParseFromString(path.read_bytes())
    v1 = caffe_pb2.NetParameter(name=model.name)
    for layer in model.layer:
        if not layer.blobs:
            continue
        assert layer.type == "InnerProduct"
        entry = v1.layers.add(name=layer.name, type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
        for blob in layer.blobs:
            legacy = entry.blobs.add()
            legacy.CopyFrom(blob)
            legacy.ClearField("shape")
            legacy.num, legacy.channels, legacy.height, legacy.width = [1] * (4 - len(blob.shape.dim)) + [
                *blob.shape.dim]
    out.write_bytes(v1.SerializeToString())


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "v1"])
def test_model_past_64_mib(caffe, capsys, tmp_path, legacy):
    """protobuf's 64 MiB default limit stops neither the tool nor the runtimes; a V1 model is upgraded."""
    model = save_model(caffe, tmp_path, "large")
    weights = model.weights
    if legacy:
        weights = tmp_path / "large_v1.caffemodel"
        as_v1_model(model.weights, weights)
    assert weights.stat().st_size > 64 * 2**20
    out, out_model = tmp_path / "t.prototxt", tmp_path / "t.caffemodel"
    notes = rewrite(capsys, model.prototxt, 0.5, out, weights, out_model)
    assert ("legacy (V0/V1 'layers') model" in notes) == legacy
    check_runtimes(caffe, model, out, out_model, 0.5)
