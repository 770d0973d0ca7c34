"""Deploy nets with saved models, and the runtimes the deploy tests run them in.

pycaffe, OpenCV 4's dnn module (cv2.dnn.readNetFromCaffe) and caffe2onnx -> ONNX Runtime. Each
runtime's reference logits come from the original prototxt + model in that same runtime, so a
comparison measures the temperature layer, not the runtimes' differing float32 rounding of the
convolutions (OpenCV's Winograd 3x3 most).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
from google.protobuf import text_format

from caffe.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[2]
CONVERTER = Path(__file__).resolve().parent / "caffe2onnx_convert.py"

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


@dataclass
class Model:
    """A deploy net saved from pycaffe with random weights, an input, and its logits by runtime."""

    prototxt: Path
    weights: Path
    x: np.ndarray
    logits_blob: str
    logits: dict[str, np.ndarray] = field(default_factory=dict)


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
    model = Model(prototxt, weights, x, logits_blob, {"pycaffe": net.blobs[logits_blob].data.astype(np.float64)})
    model.logits["opencv4"] = opencv_output(prototxt, weights, x, logits_blob)
    return model


def parse_net(prototxt: Path) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    text_format.Parse(prototxt.read_text(), net)
    return net


def stored_blobs(path: Path) -> dict[str, list[bytes]]:
    """Each layer's serialized blobs, by layer name."""
    model = caffe_pb2.NetParameter()
    model.ParseFromString(path.read_bytes())
    return {layer.name: [blob.SerializeToString() for blob in layer.blobs] for layer in model.layer if layer.blobs}


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


# --------------------------------------------------------------------------
# caffe2onnx -> ONNX Runtime


class ConversionError(Exception):
    """caffe2onnx did not write an ONNX model; the message is its error."""


def convert_with_caffe2onnx(jobs: list[tuple[Path, Path, Path]]) -> dict[Path, str | None]:
    """Runs caffe2onnx's command line on each (prototxt, caffemodel, onnx) in one Python of its own.

    caffe2onnx's generated caffe_pb2 needs protobuf's pure-Python implementation with current
    protobuf, and the implementation is chosen once per process, when google.protobuf is first
    imported: pycaffe has imported it here already. Returns each ONNX path with None where it
    was written, else the converter's error.
    """
    results = Path(str(jobs[0][2]) + ".results.json")
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    spec = json.dumps([[str(path) for path in job] for job in jobs])
    done = subprocess.run([sys.executable, str(CONVERTER), spec, str(results)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {Path(onnx): error for onnx, error in json.loads(results.read_text()).items()}


def onnxruntime_output(onnx: Path, x: np.ndarray) -> np.ndarray:
    """The ONNX model's last output for input ``x``, on ONNX Runtime's CPU provider."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # not the warnings about caffe2onnx's weights listed as graph inputs
    session = onnxruntime.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    (feed,) = session.get_inputs()
    return session.run([session.get_outputs()[-1].name], {feed.name: x})[0].astype(np.float64)


def without_softmax(prototxt: Path, out: Path) -> Path:
    """The net up to its logits: every Softmax left out, so that the logits are the net's output."""
    net = parse_net(prototxt)
    kept = [layer for layer in net.layer if layer.type != "Softmax"]
    del net.layer[:]
    net.layer.extend(kept)
    out.write_text(text_format.MessageToString(net))
    return out


def onnx_logits(model: Model, work: Path) -> np.ndarray:
    """The original model's logits through caffe2onnx and ONNX Runtime."""
    prototxt = without_softmax(model.prototxt, work / "logits.prototxt")
    onnx = work / "logits.onnx"
    error = convert_with_caffe2onnx([(prototxt, model.weights, onnx)])[onnx]
    if error is not None:
        raise ConversionError(error)
    return onnxruntime_output(onnx, model.x)
