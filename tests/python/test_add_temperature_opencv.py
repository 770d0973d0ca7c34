"""add_temperature --weights-out: the rewritten net runs in OpenCV's dnn module, which runs no fillers.

OpenCV takes every learned blob from the .caffemodel, so the Scale's 1/T has to be stored there.
Each case compares OpenCV's and pycaffe's output of the rewritten prototxt + written model with
numpy's softmax(logits / T), the logits computed by that runtime from the original prototxt + model.
(The two runtimes' float32 arithmetic rounds differently, OpenCV's Winograd 3x3 convolution most:
their logits agree to about 1e-6 of their size, which softmax at T = 0.5 can turn into differences
of about 2e-6 between the runtimes.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caffe.proto import caffe_pb2
from caffe_temperature import add_temperature_cli as tool
from deploy_runtimes import Model, opencv_output, pycaffe_output, save_model, softmax, stored_blobs

TOLERANCE = 1e-6


@pytest.fixture(scope="module", params=["conv", "readme_example"])
def model(request, caffe, tmp_path_factory) -> Model:
    return save_model(caffe, tmp_path_factory.mktemp(request.param), request.param)


def deviations(caffe, model: Model, prototxt: Path, weights: Path, temperature: float) -> dict[str, float]:
    """Max abs difference of each runtime's output from numpy's softmax(logits / T)."""
    outputs = {"opencv4": opencv_output(prototxt, weights, model.x),
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


def check_runtimes(caffe, model: Model, prototxt: Path, weights: Path, temperature: float) -> None:
    found = deviations(caffe, model, prototxt, weights, temperature)
    assert max(found.values()) <= TOLERANCE, found


def test_the_runtimes_agree_on_the_original_logits(model):
    logits = model.logits
    size = np.abs(logits["pycaffe"]).max()
    np.testing.assert_allclose(logits["opencv4"], logits["pycaffe"], rtol=0, atol=1e-5 * size)
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
