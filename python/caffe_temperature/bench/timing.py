"""The timing harness: candidates built as pycaffe nets (and PyTorch references), run in turns, medians taken."""

from __future__ import annotations

import ctypes
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from caffe_temperature._cli import ToolError, load_pycaffe
from caffe_temperature.bench import candidates as cand
from caffe_temperature.bench import reference
from caffe_temperature.bench.candidates import Candidate, Runs, Settings
from caffe_temperature.prototxt import render

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

# Shapes up to this many elements get the full --repeat; larger ones get
# proportionally fewer (at least 3), so that 1024x32000 takes seconds, not minutes.
FULL_REPEAT_ELEMENTS = 1 << 21


@dataclass
class Result:
    group: str
    shape: str
    elements: int
    candidate: str
    baseline: str
    repeats: int
    forward_ms: float
    forward_backward_ms: float
    forward_speedup: float
    forward_backward_speedup: float
    forward_gb_per_s: float
    forward_backward_gb_per_s: float
    value: Optional[float]  # the loss, for loss layers: candidates must agree


def shape_label(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def repeats_for(shape: tuple[int, ...], repeat: int) -> int:
    scaled = round(repeat * FULL_REPEAT_ELEMENTS / math.prod(shape))
    return max(min(repeat, 3), min(repeat, scaled))


def median_ms(runs: list[Callable[[], object]], repeat: int) -> list[float]:
    """The median time of each run. The runs take turns, so that load from
    other processes, which drifts over seconds, falls on every candidate alike."""
    for run in runs:
        run()  # warm-up: first-touch allocations, lazy set-up
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for run, run_times in zip(runs, times):
            start = time.perf_counter()
            run()
            run_times.append(time.perf_counter() - start)
    return [1e3 * statistics.median(t) for t in times]


def caffe_runs(caffe: ModuleType, candidate: Candidate, net: caffe_pb2.NetParameter,
               inputs: dict[str, np.ndarray], workdir: Path) -> Runs:
    path = workdir / "bench.prototxt"  # read by caffe.Net, free to reuse after
    path.write_text(render(net))
    built = caffe.Net(str(path), caffe.TEST)
    for name, array in inputs.items():
        built.blobs[name].data[...] = array
    if "y" in built.blobs:
        built.blobs["y"].diff[...] = np.random.default_rng(1).standard_normal(built.blobs["y"].shape, dtype=np.float32)

    def value() -> Optional[float]:
        return float(built.blobs["loss"].data.flat[0]) if "loss" in built.blobs else None

    return Runs(candidate.name, candidate.baseline, built.forward, lambda: (built.forward(), built.backward()), value)


def softmax_group(caffe: ModuleType, torch: Optional[ModuleType], shape: tuple[int, ...], settings: Settings,
                  workdir: Path) -> list[Runs]:
    x = cand.normal(0, shape, 10)
    runs = [caffe_runs(caffe, c, cand.softmax_net(shape, c.layers), {"x": x}, workdir)
            for c in cand.softmax_candidates(1.0 / settings.temperature)]
    return runs + (reference.softmax_runs(torch, x, settings) if torch else [])


def infogain_group(caffe: ModuleType, torch: Optional[ModuleType], shape: tuple[int, ...], settings: Settings,
                   workdir: Path) -> list[Runs]:
    scores, labels, h = cand.infogain_data(shape)
    source = workdir / "H.binaryproto"
    source.write_bytes(caffe.io.array_to_blobproto(h[None, None]).SerializeToString())
    inputs = {"x": scores, "label": labels, "H": h}
    runs = [caffe_runs(caffe, c, cand.loss_net(scores.shape, labels.shape, h.shape, c.layers), inputs, workdir)
            for c in cand.infogain_candidates(source)]
    return runs + (reference.infogain_runs(torch, scores, labels, settings) if torch else [])


def distillation_group(caffe: ModuleType, torch: Optional[ModuleType], shape: tuple[int, ...], settings: Settings,
                       workdir: Path) -> list[Runs]:
    student, teacher = cand.distillation_data(shape)
    inputs = {"student": student, "teacher": teacher}
    positions = student.size // shape[1]
    runs = [caffe_runs(caffe, c, cand.distillation_net(shape, c.layers), inputs, workdir)
            for c in cand.distillation_candidates(1.0 / settings.temperature, positions)]
    return runs + (reference.distillation_runs(torch, student, teacher, settings) if torch else [])


GROUP_BUILDERS = {"softmax": softmax_group, "infogain": infogain_group, "distillation": distillation_group}


def time_group(caffe: ModuleType, torch: Optional[ModuleType], group: str, shape: tuple[int, ...],
               settings: Settings, workdir: Path) -> list[Result]:
    """Times one group on one shape. Its nets are freed on return, so that only
    one group's blobs (2.6 GB for the stock distillation at 1024x32000) are alive."""
    runs = GROUP_BUILDERS[group](caffe, torch, shape, settings, workdir)
    repeats = repeats_for(shape, settings.repeat)
    forward = median_ms([r.forward for r in runs], repeats)
    both = median_ms([r.forward_backward for r in runs], repeats)
    values = [r.value() for r in runs]  # after a forward: the loss of these inputs
    base = {r.name: (f, b) for r, f, b in zip(runs, forward, both)}
    fwd_bytes, both_bytes = cand.traffic_bytes(group, shape)
    return [
        Result(group=group, shape=shape_label(shape), elements=math.prod(shape), candidate=r.name,
               baseline=r.baseline, repeats=repeats, forward_ms=f, forward_backward_ms=b,
               forward_speedup=base[r.baseline][0] / f, forward_backward_speedup=base[r.baseline][1] / b,
               forward_gb_per_s=fwd_bytes / (f * 1e6), forward_backward_gb_per_s=both_bytes / (b * 1e6), value=v)
        for r, f, b, v in zip(runs, forward, both, values)
    ]


def caffe_has_gpu() -> bool:
    """Whether the plugin, and so the Caffe it was built against (which the loader
    checked), has CUDA. A CPU_ONLY Caffe does not refuse set_mode_gpu(); it aborts
    the process (glog FATAL) at the first GPU call. Not the process's mapped
    libraries: PyTorch brings its own libcudart."""
    from caffe_temperature._loader import build_info, plugin_path

    info = build_info(plugin_path())
    return info is not None and info.get("cpu_only") is False


def load_caffe(device: str) -> ModuleType:
    """pycaffe with the plugin, on ``device``; a ToolError for a GPU this Caffe does not have."""
    caffe = load_pycaffe("the benchmark")
    if device == "gpu":
        if not caffe_has_gpu():
            raise ToolError(
                "--device gpu: this pycaffe's Caffe is CPU-only (built with CPU_ONLY, no CUDA libraries "
                "loaded); use --device cpu, or put a CUDA build of Caffe and the plugin on PYTHONPATH"
            )
        caffe.set_device(0)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    return caffe


def set_blas_threads(threads: int) -> None:
    """OpenBLAS reads OPENBLAS_NUM_THREADS when it loads, and under
    `python -m caffe_temperature.bench` it may already be loaded before main()
    runs (the package loads the plugin, hence libcaffe): set both."""
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    try:
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(threads)
    except (OSError, AttributeError):
        pass  # no OpenBLAS, or not that one: the variable is all there is


def run_all(shapes: list[tuple[int, ...]], groups: list[str], settings: Settings) -> tuple[list[Result], list[str]]:
    """All results, and a note for each (group, shape) that was skipped."""
    caffe = load_caffe(settings.device)
    torch = reference.import_torch(settings)
    results: list[Result] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            for group in groups:
                reason = cand.skip_reason(group, shape)
                if reason:
                    notes.append(f"{group} {shape_label(shape)} skipped: {reason}")
                    continue
                results.extend(time_group(caffe, torch, group, shape, settings, Path(tmp)))
    return results, notes
