"""Every add_temperature form in every runtime at hand: the table of docs/tools.md.

For the small conv net and the README's example net, each form is written at T = 40, then at
T = 0.5 on that output, then with --T 1 on that one (the chain a user runs). Each step runs in
pycaffe, OpenCV 4's dnn module and, converted by caffe2onnx (PyPI), in ONNX Runtime, and is
compared with numpy's softmax(logits / T) of the original model's logits in the same runtime.
Where a form does not run in a runtime, the test checks that it fails the way the table says,
and that the --T 1 net runs there again. The largest difference per cell is printed after the
run (conftest.py: deploy_report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from caffe_temperature import add_temperature_cli as tool
from deploy_runtimes import (
    ConversionError, Model, convert_with_caffe2onnx, onnx_logits, onnxruntime_output, opencv_output, parse_net,
    pycaffe_output, save_model, softmax, stored_blobs)

TOLERANCE = 1e-6
TEMPERATURES = (40.0, 0.5, 1.0)
# By the name of the table's row: add_temperature's arguments (weights_out: write --weights-out).
FORMS = {
    "scale": ([], False),
    "scale + --weights-out": ([], True),
    "power": (["--form", "power"], False),
    "fused": (["--form", "fused"], False),
}
RUNTIMES = ("pycaffe", "opencv4", "onnxruntime")
# The cells where a form at T != 1 does not run: why, and what the runtime's error says.
FAILS = {
    ("scale", "opencv4"): ("OpenCV runs no fillers and finds no blob for the Scale", "blobs.size()"),
    ("fused", "opencv4"): ("OpenCV does not know TemperatureSoftmax", "TemperatureSoftmax"),
    ("scale", "onnxruntime"): ("caffe2onnx skips a Scale without a blob, then finds no input for the Softmax",
                               "bottom not detected"),
    ("scale + --weights-out", "onnxruntime"): ("caffe2onnx fails on a scalar Scale blob", "IndexError"),
    ("fused", "onnxruntime"): ("caffe2onnx does not know TemperatureSoftmax", "not support: TemperatureSoftmax"),
}


@dataclass(frozen=True)
class Step:
    temperature: float
    prototxt: Path
    weights: Path


@pytest.fixture(scope="module", params=["conv", "readme_example"])
def model(request, caffe, tmp_path_factory) -> Model:
    work = tmp_path_factory.mktemp(request.param)
    model = save_model(caffe, work, request.param)
    model.logits["onnxruntime"] = onnx_logits(model, work)
    return model


def rewrite_chain(model: Model, form: str, work: Path) -> list[Step]:
    """T = 40, then 0.5 on its output, then 1 on that, through the command line."""
    args, weights_out = FORMS[form]
    steps, source, weights = [], model.prototxt, model.weights
    for index, temperature in enumerate(TEMPERATURES):
        out, out_model = work / f"step{index}.prototxt", work / f"step{index}.caffemodel"
        argv = [source, "--T", temperature, "-o", out, *args]
        if weights_out:
            argv += ["--weights", weights, "--weights-out", out_model]
        assert tool.main([str(arg) for arg in argv]) == 0
        if weights_out:
            weights = out_model
        steps.append(Step(temperature, out, weights))
        source = out
    return steps


def runtime_outputs(caffe, runtime: str, model: Model, steps: list[Step]) -> list[np.ndarray | str]:
    """Each step's probabilities in the runtime, or the error that stopped it."""
    if runtime == "onnxruntime":
        onnx = [step.prototxt.with_suffix(".onnx") for step in steps]
        errors = convert_with_caffe2onnx([(step.prototxt, step.weights, path) for step, path in zip(steps, onnx)])
        return [errors[path] or onnxruntime_output(path, model.x) for path in onnx]
    run: Callable[[Step], np.ndarray] = {
        "pycaffe": lambda step: pycaffe_output(caffe, step.prototxt, step.weights, model.x),
        "opencv4": lambda step: opencv_output(step.prototxt, step.weights, model.x),
    }[runtime]
    outputs: list[np.ndarray | str] = []
    for step in steps:
        try:
            outputs.append(run(step))
        except cv2.error as err:
            outputs.append(f"cv2.error: {' '.join(str(err).split())}")
    return outputs


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("form", FORMS)
def test_form_in_runtime(caffe, model, form, runtime, tmp_path, deploy_report):
    steps = rewrite_chain(model, form, tmp_path)
    logits = model.logits[runtime]
    largest = 0.0
    for step, output in zip(steps, runtime_outputs(caffe, runtime, model, steps)):
        if step.temperature != 1.0 and (form, runtime) in FAILS:
            why, says = FAILS[form, runtime]
            assert isinstance(output, str), f"T = {step.temperature:g} ran, but the table says: {why}"
            assert says in output, output
            continue
        assert not isinstance(output, str), f"T = {step.temperature:g}: {output}"
        difference = float(np.abs(output - softmax(logits, step.temperature)).max())
        assert difference <= TOLERANCE, f"T = {step.temperature:g}: {difference:.3g}"
        largest = max(largest, difference)
    deploy_report.record(form, runtime, largest, "refused" if (form, runtime) in FAILS else None)


@pytest.mark.parametrize("form", FORMS)
def test_the_chain_ends_where_it_started(model, form, tmp_path):
    """After --T 1 the net is the original again, and so is a --weights-out model's every blob."""
    last = rewrite_chain(model, form, tmp_path)[-1]
    assert parse_net(last.prototxt) == parse_net(model.prototxt)
    assert stored_blobs(last.weights) == stored_blobs(model.weights)


def test_onnx_logits_agree_with_pycaffe(model):
    """The ONNX Runtime reference is the same net: its logits match pycaffe's to float32 rounding."""
    size = np.abs(model.logits["pycaffe"]).max()
    np.testing.assert_allclose(model.logits["onnxruntime"], model.logits["pycaffe"], rtol=0, atol=1e-5 * size)


def test_a_failed_conversion_is_reported(tmp_path):
    """The helper sees a conversion that fails, so that the table's "no" cells can be trusted."""
    prototxt, weights = tmp_path / "unknown.prototxt", tmp_path / "empty.caffemodel"
    prototxt.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }\n'
                        'layer { name: "t" type: "TemperatureSoftmax" bottom: "data" top: "t" }\n')
    weights.write_bytes(b"")  # an empty NetParameter
    with pytest.raises(ConversionError, match="not support: TemperatureSoftmax"):
        onnx_logits(Model(prototxt, weights, np.zeros((1, 3), np.float32), "data"), tmp_path)
    assert not (tmp_path / "logits.onnx").exists()
