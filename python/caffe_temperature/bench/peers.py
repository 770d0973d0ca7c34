"""The deploy runtimes as peers of TemperatureSoftmax: ONNX Runtime and OpenVINO
run softmax(x / T) as the ONNX graph a deployer would export, Mul(x, 1/T) then
Softmax over axis 1, built here with onnx.helper.

Forward only (they are inference runtimes), on the same data, on as many
intra-op threads as the plugin, each on buffers bound once (ONNX Runtime's
IOBinding, OpenVINO's infer request), so that a call is the runtime's own work
and not Python's copies. Optional: a runtime that is not installed is left out
with a note (pip install caffe-temperature[bench]).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

import numpy as np

from caffe_temperature._cli import ToolError
from caffe_temperature.bench.candidates import SOFTMAX_BASELINE, Runs, Settings

ONNXRUNTIME_ROW = "ONNX Runtime Mul+Softmax"
OPENVINO_ROW = "OpenVINO Mul+Softmax"
# Softmax over one axis (opset 13 on); before, it flattened the axes from `axis` on.
OPSET = 13
# The agreement asked of a peer's output with numpy's softmax(x / T).
RTOL, ATOL = 1e-4, 1e-7


def softmax_graph(shape: tuple[int, ...], beta: float) -> bytes:
    """A serialized ONNX model: y = Softmax(Mul(x, beta), axis=1), float."""
    onnx = importlib.import_module("onnx")
    helper, float_type = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "beta"], ["xs"]), helper.make_node("Softmax", ["xs"], ["y"], axis=1)],
        "temperature_softmax",
        [helper.make_tensor_value_info("x", float_type, list(shape))],
        [helper.make_tensor_value_info("y", float_type, list(shape))],
        [helper.make_tensor("beta", float_type, [], [beta])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def numpy_softmax(x: np.ndarray, beta: float) -> np.ndarray:
    z = x.astype(np.float64) * beta
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def checked(name: str, x: np.ndarray, beta: float, forward: Callable[[], object],
            output: Callable[[], np.ndarray]) -> None:
    """A peer must compute what the layers compute before its time means anything."""
    forward()
    if not np.allclose(output(), numpy_softmax(x, beta), rtol=RTOL, atol=ATOL):
        raise ToolError(f"{name} does not compute softmax(x / T) on the benchmark's data")


def onnxruntime_runs(ort: ModuleType, model: bytes, x: np.ndarray, beta: float, threads: int) -> Runs:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    y = np.empty_like(x)
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(y))

    def forward() -> None:
        session.run_with_iobinding(binding)

    checked(ONNXRUNTIME_ROW, x, beta, forward, lambda: y)
    return Runs(ONNXRUNTIME_ROW, SOFTMAX_BASELINE, forward, None)


def openvino_runs(ov: ModuleType, model_path: Path, x: np.ndarray, beta: float, threads: int) -> Runs:
    """f32 inference asked for: on CPUs with bf16 units OpenVINO would otherwise compute in bf16."""
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
              "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled = ov.Core().compile_model(str(model_path), "CPU", config)
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x, shared_memory=True))

    def forward() -> None:
        request.infer()

    checked(OPENVINO_ROW, x, beta, forward, lambda: request.get_output_tensor().data)
    return Runs(OPENVINO_ROW, SOFTMAX_BASELINE, forward, None)


def import_optional(module: str) -> Optional[ModuleType]:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def missing(settings: Settings) -> list[str]:
    """Notes for the peers that will not run, and why."""
    if settings.device != "cpu":
        return ["ONNX Runtime and OpenVINO rows left out: they run on the CPU only here"]
    notes = []
    if import_optional("onnx") is None:
        return ["ONNX Runtime and OpenVINO rows left out: onnx is not installed (pip install caffe-temperature[bench])"]
    for row, module in ((ONNXRUNTIME_ROW, "onnxruntime"), (OPENVINO_ROW, "openvino")):
        if import_optional(module) is None:
            notes.append(f"{row} left out: {module} is not installed (pip install caffe-temperature[bench])")
    return notes


def softmax_peer_runs(x: np.ndarray, settings: Settings, workdir: Path) -> list[Runs]:
    """The peers that are installed, on the CPU, for x."""
    if settings.device != "cpu" or import_optional("onnx") is None:
        return []
    beta = 1.0 / settings.temperature
    model = softmax_graph(x.shape, beta)
    runs = []
    ort = import_optional("onnxruntime")
    if ort is not None:
        runs.append(onnxruntime_runs(ort, model, x, beta, settings.threads))
    ov = import_optional("openvino")
    if ov is not None:
        path = workdir / "softmax.onnx"
        path.write_bytes(model)
        runs.append(openvino_runs(ov, path, x, beta, settings.threads))
    return runs
