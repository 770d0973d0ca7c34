"""The timing harness: candidates built as pycaffe nets (and PyTorch references), run in turns, medians taken."""

from __future__ import annotations

import ctypes
import math
import os
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from caffe_temperature._cli import ToolError, load_pycaffe
from caffe_temperature.bench import candidates as cand
from caffe_temperature.bench import checks, floors, peers, reference
from caffe_temperature.bench.candidates import Candidate, Runs, Settings
from caffe_temperature.bench.results import Result
from caffe_temperature.prototxt import render

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

# Shapes up to this many elements get the full --repeat; larger ones get
# proportionally fewer (at least MIN_REPEATS), so that 1024x32000 takes seconds,
# not minutes.
FULL_REPEAT_ELEMENTS = 1 << 21
# Five blocks, so that a figure's spread can set one stray block aside (spread).
MIN_REPEATS = 5
# A candidate is warmed up for this many blocks' time (at least one call), and
# on, up to WARM_UP_MAX_CALLS calls, while its calls still take new pages.
WARM_UP_BLOCKS = 4
WARM_UP_MAX_CALLS = 20
OVERHEAD_ROW = "pycaffe overhead (net of 1 Input layer)"
# A runtime's idle threads spin on after its calls (this process's CPU time
# during a sleep after 300 calls at 256x1000, 2 threads: ONNX Runtime's for
# about 40 ms, libgomp's and PyTorch's about 10, OpenVINO's 1): where the
# threads timed are as many as the cores, they take the next candidate's cores.
# Before each block, sleep in slices until one passes with the process idle.
# A thread spinning on another CPU is charged its time at the scheduler's
# ticks (every 4 ms here, HZ = 250; 10 ms at HZ = 100): a slice shorter than a
# tick can pass without a tick and show none of it (2 ms slices did, and the
# next block ran beside a spinning PyTorch thread).
SETTLE_SLICE_S = 0.01
SETTLE_MAX_S = 0.25
IDLE_CPU_SHARE = 0.05


@dataclass
class Timing:
    """One candidate's figure: the median over its blocks of each block's median
    call, and how far its blocks spread (see spread)."""

    ms: float
    calls_per_block: int
    spread: float


def shape_label(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def repeats_for(shape: tuple[int, ...], repeat: int) -> int:
    scaled = round(repeat * FULL_REPEAT_ELEMENTS / math.prod(shape))
    return max(min(repeat, MIN_REPEATS), min(repeat, scaled))


def spread(blocks: Sequence[float]) -> float:
    """How far a figure's blocks moved: slowest / fastest once the slowest and the
    fastest tenth of them are set aside (one of each from five blocks on).

    The figure is the blocks' median, which a stray block does not move; the
    spread asks whether most blocks agree, as the median assumes. On the 2-core
    VM about one block in sixty took 1.3 to 2.5x the others while the middle 80%
    agreed within 2 to 5%; over all blocks, slowest / fastest flagged 17 of the
    64 figures of a run that this flags 4 of (docs/performance.md, "Stray
    blocks")."""
    ordered = sorted(blocks)
    aside = len(ordered) // 10 or (1 if len(ordered) >= MIN_REPEATS else 0)
    return ordered[-1 - aside] / ordered[aside]


def minor_faults() -> int:
    """Page faults of this process so far that took a page without reading the disk."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def warm_up(run: Callable[[], object], seconds: float) -> float:
    """Calls ``run`` into its steady state and returns its time per call there.

    Once the process is idle (settle), for about ``seconds`` (at least once:
    first-touch allocations, lazy set-up, caches), then on while its last call still took new pages (page faults),
    up to WARM_UP_MAX_CALLS: a run that allocates in every call (PyTorch) grows
    the heap over its first calls until its freed blocks fit what it asks for,
    and a call that takes new pages is not a steady one. At 1024 x 32000 a
    PyTorch forward took tens of thousands of new pages per call over its first
    calls and none after about ten (docs/performance.md); with one call of
    warm-up (4 blocks' time is less than one call) its forward was timed while
    the heap grew, and came out slower than its forward + backward, timed
    later. The time per call is the median of the calls since the last one that
    faulted (the last call's if every one did), as a block's figure is its
    median call; not their mean, which a few slow calls after the idle wait
    inflate: the layer's 2-thread forward at 8 x 21 x 128 x 128 had blocks of 2
    calls in each run where it came out unstable, and of 5 or 6 in each where it
    was sound (docs/performance.md)."""
    settle()
    start = time.perf_counter()
    calls = 0
    steady: list[float] = []
    while True:
        faults, began = minor_faults(), time.perf_counter()
        run()
        took = time.perf_counter() - began
        calls += 1
        faulted = minor_faults() > faults
        steady = [] if faulted else steady + [took]
        if time.perf_counter() - start >= seconds and (not faulted or calls >= WARM_UP_MAX_CALLS):
            return statistics.median(steady) if steady else took


def settle() -> bool:
    """Waits until no thread of this process uses the CPU (up to
    SETTLE_MAX_S; whether it did): the previous candidate's idle threads have
    stopped spinning."""
    deadline = time.perf_counter() + SETTLE_MAX_S
    while time.perf_counter() < deadline:
        cpu = time.process_time()
        time.sleep(SETTLE_SLICE_S)
        if time.process_time() - cpu < IDLE_CPU_SHARE * SETTLE_SLICE_S:
            return True
    return False


def timed_block(run: Callable[[], object], calls: int) -> float:
    """The median seconds of ``calls`` calls in a row, each timed by itself.

    Once the other runs' threads are idle (settle), after one untimed call that
    wakes the run's own threads and brings its data back into the caches, which
    the other runs' turns have filled with theirs: otherwise the first call of
    every block reads from memory, and a run with fewer calls per block (a
    slower one) pays that on a larger share of its calls. The median call, not
    the mean: at 256x1000 with 2 threads on this 2-core VM, 1 to 3 calls of
    every 80 (0.08 ms each) stalled for 4 to 8 ms (a thread descheduled while
    the other waited at a barrier), which moved a block's mean up to 8x and
    left its median within 5%."""
    settle()
    run()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def median_ms(runs: list[Callable[[], object]], blocks: int, block_s: float) -> list[Timing]:
    """The median call of each run: over ``blocks`` blocks, of each block's median call.

    Each run is warmed up, then timed in blocks of as many calls as fit in
    about ``block_s`` (at least one), each block after an untimed call: a block
    repeats the same call, so every candidate is timed in its steady state (its
    data in cache as far as it fits, its allocations reused), not cold after
    the others. The blocks of the different runs take turns, so that load from
    other processes, which drifts over seconds, falls on every candidate
    alike."""
    calls = [max(1, int(block_s / max(warm_up(run, WARM_UP_BLOCKS * block_s), 1e-9))) for run in runs]
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(blocks):
        for run, n, run_times in zip(runs, calls, times):
            run_times.append(timed_block(run, n))
    return [Timing(1e3 * statistics.median(t), n, spread(t)) for t, n in zip(times, calls)]


def optional_median_ms(runs: Sequence[Optional[Callable[[], object]]], blocks: int,
                       block_s: float) -> list[Optional[Timing]]:
    """median_ms of the runs that are there, in turns; None for the others."""
    present = [run for run in runs if run is not None]
    timings = iter(median_ms(present, blocks, block_s))
    return [None if run is None else next(timings) for run in runs]


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


def overhead_runs(caffe: ModuleType, shape: tuple[int, ...], baseline: str, workdir: Path) -> Runs:
    """pycaffe's own cost per call: Net.forward and Net.backward of a net of one
    Input layer, which computes nothing. Subtract it from the Caffe rows to read
    small shapes net of it."""
    candidate = Candidate(OVERHEAD_ROW, [], baseline)
    return caffe_runs(caffe, candidate, cand.softmax_net(shape, []), {}, workdir)


def softmax_group(caffe: ModuleType, torch: Optional[ModuleType], shape: tuple[int, ...], settings: Settings,
                  workdir: Path) -> list[Runs]:
    x = cand.normal(0, shape, 10)
    runs = [caffe_runs(caffe, c, cand.softmax_net(shape, c.layers), {"x": x}, workdir)
            for c in cand.softmax_candidates(1.0 / settings.temperature)]
    return runs + (reference.softmax_runs(torch, x, settings) if torch else []) + peers.softmax_peer_runs(
        x, settings, workdir)


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


def optional_rate(size: int, timing: Optional[Timing]) -> Optional[float]:
    return None if timing is None else size / (timing.ms * 1e6)


def measure_group(caffe: ModuleType, torch: Optional[ModuleType], native: Optional[ModuleType], group: str,
                  shape: tuple[int, ...], settings: Settings, workdir: Path) -> list[Result]:
    """Times one group on one shape once, with the floors where ``native`` is given.
    Its nets are freed on return, so that only one group's blobs (2.6 GB for the
    stock distillation at 1024x32000) are alive."""
    runs = GROUP_BUILDERS[group](caffe, torch, shape, settings, workdir)
    baseline = runs[0].baseline
    runs.append(overhead_runs(caffe, shape, baseline, workdir))
    if native is not None:
        runs.extend(floors.floor_runs(native, group, shape, 1.0 / settings.temperature, baseline))
    repeats = repeats_for(shape, settings.repeat)
    block_s = settings.block_ms / 1e3
    forward = median_ms([r.forward for r in runs], repeats, block_s)
    both = optional_median_ms([r.forward_backward for r in runs], repeats, block_s)
    values = [r.value() for r in runs]  # after a forward: the loss of these inputs
    fwd_bytes, both_bytes = cand.traffic_bytes(group, shape)
    return [
        Result(group=group, shape=shape_label(shape), elements=math.prod(shape), candidate=r.name,
               baseline=r.baseline, threads=settings.threads, repeats=repeats, calls_per_block=f.calls_per_block,
               forward_ms=f.ms, forward_backward_ms=b.ms if b else None,
               forward_spread=f.spread, forward_backward_spread=b.spread if b else None,
               forward_gb_per_s=optional_rate(fwd_bytes, f), forward_backward_gb_per_s=optional_rate(both_bytes, b),
               value=v)
        for r, f, b, v in zip(runs, forward, both, values)
    ]


def time_group(caffe: ModuleType, torch: Optional[ModuleType], native: Optional[ModuleType], group: str,
               shape: tuple[int, ...], settings: Settings, workdir: Path) -> list[Result]:
    """measure_group, again while a row cannot be (checks.policed)."""
    return checks.policed(lambda: measure_group(caffe, torch, native, group, shape, settings, workdir),
                          settings.max_spread, settings.retries)


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


def set_native_threads(threads: int) -> None:
    """OpenBLAS and OpenMP (the plugin's kernels) read OPENBLAS_NUM_THREADS and
    OMP_NUM_THREADS when they load, and under `python -m caffe_temperature.bench`
    they may already be loaded before main() runs (the package loads the plugin,
    hence libcaffe): set the variables and call their setters. PyTorch brings its
    own OpenMP runtime: reference.import_torch sets its threads."""
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)
    for library, setter in (("libopenblas.so.0", "openblas_set_num_threads"), ("libgomp.so.1", "omp_set_num_threads")):
        try:
            getattr(ctypes.CDLL(library), setter)(threads)
        except (OSError, AttributeError):
            pass  # not there, or not that one: the variable is all there is


def run_all(shapes: list[tuple[int, ...]], groups: list[str], settings: Settings) -> tuple[list[Result], list[str]]:
    """All results (without their ratios: results.with_ratios), and a note for
    each (group, shape) that was skipped and each peer that is not installed."""
    caffe = load_caffe(settings.device)
    torch = reference.import_torch(settings)
    native = floors.load_native() if settings.device == "cpu" else None  # the floors are the CPU's
    results: list[Result] = []
    notes: list[str] = peers.missing(settings) if "softmax" in groups else []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            for group in groups:
                reason = cand.skip_reason(group, shape)
                if reason:
                    notes.append(f"{group} {shape_label(shape)} skipped: {reason}")
                    continue
                results.extend(time_group(caffe, torch, native, group, shape, settings, Path(tmp)))
    return results, notes
