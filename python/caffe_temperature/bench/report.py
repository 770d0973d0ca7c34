"""The benchmark's report: the table, scaling slopes, the JSON document and the log-log plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Callable, Iterator, Optional, TextIO

import numpy as np

from caffe_temperature._cli import new_figure, png_bytes
from caffe_temperature.bench.candidates import Settings
from caffe_temperature.bench.floors import EXP_FLOOR_ROW, MEMORY_FLOOR_ROW, is_floor
from caffe_temperature.bench.peers import ONNXRUNTIME_ROW, OPENVINO_ROW
from caffe_temperature.bench.provenance import lines
from caffe_temperature.bench.results import FORWARD, FORWARD_BACKWARD, Result, all_unstable, figure_ms, sound
from caffe_temperature.bench.timing import OVERHEAD_ROW

NAME_WIDTH = 52
LEGEND = f"""\
(ms = median over n blocks of each block's median call (`calls` calls, fwd's), after a warm-up; the blocks of a
 shape's candidates take turns; float, same data, same run; thr = threads (plugin, BLAS, PyTorch,
 ONNX Runtime and OpenVINO intra-op);
 x = speed-up: time of the baseline / time of the candidate;
 /flr = time / the larger of the two floors' times, same shape, same run, with m or e for which:
   m '{MEMORY_FLOOR_ROW}': the bytes the group must read and write
     (traffic in bench/candidates.py), moved and nothing else;
   e '{EXP_FLOOR_ROW}': a softmax's passes with the
     kernels' exp (backward: the dot of y and dy and a pass writing dx); ', x2' (distillation):
     the forward passes twice, for the teacher's and the student's exps;
 '{OVERHEAD_ROW}': what pycaffe's Net.forward / backward cost
   by themselves; subtract it from the Caffe rows to read small shapes net of it;
 '{ONNXRUNTIME_ROW}', '{OPENVINO_ROW}': the ONNX graph Mul(x, 1/T) + Softmax(axis 1),
   forward only (inference runtimes);
 GB/s = bytes that must move / time, see traffic_bytes;
 unstable = a figure that cannot be (fwd slower than fwd+bwd, slowest block / fastest above the
   limit once the slowest and fastest tenth are set aside, a speed-up above the added threads), still so when measured again: no figure, no ratio
   from it; the row's other figure stands, with the spreads and reasons at the end of the row)"""


def multiple(value: Optional[float], suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def floor_multiple(value: Optional[float], floor: Optional[str]) -> str:
    return multiple(value, floor[0] if floor else "")


def time_cell(r: Result, figure: str, width: int) -> str:
    value = figure_ms(r, figure)
    text = "-" if value is None else "unstable" if figure in r.unstable_figures else f"{value:.3f}"
    return f"{text:>{width}}"


def figures(r: Result) -> str:
    """Times, speed-ups, multiples of the floor, GB/s; the overhead row moves no data.
    A figure that cannot be reads "unstable", its ratios "-", and the reasons follow."""
    times = f"{time_cell(r, FORWARD, 9)} {time_cell(r, FORWARD_BACKWARD, 11)}"
    floors = (f"{floor_multiple(r.forward_vs_floor, r.forward_floor):>8} "
              f"{floor_multiple(r.forward_backward_vs_floor, r.forward_backward_floor):>8}")
    why = f"  {unstable(r)}" if r.unstable else ""
    if r.candidate == OVERHEAD_ROW:
        return f"{times} {'-':>7} {'-':>7} {floors}{why}"
    return (f"{times} {multiple(r.forward_speedup, 'x'):>7} {multiple(r.forward_backward_speedup, 'x'):>7} {floors} "
            f"{multiple(r.forward_gb_per_s):>9} {multiple(r.forward_backward_gb_per_s):>9}{why}")


def unstable(r: Result) -> str:
    spreads = f"{r.forward_spread:.2f}" + ("" if r.forward_backward_spread is None
                                            else f" / {r.forward_backward_spread:.2f}")
    return f"unstable (spread {spreads}; {'; '.join(r.unstable)})"


def print_provenance(info: dict[str, object], out: TextIO) -> None:
    for line in lines(info):
        print(line, file=out)
    print(file=out)


def print_table(results: list[Result], notes: list[str], out: TextIO) -> None:
    print(f"{'shape':<15} {'candidate':<{NAME_WIDTH}} {'thr':>3} {'n':>3} {'calls':>5} {'fwd ms':>9} "
          f"{'fwd+bwd ms':>11} {'fwd x':>7} {'f+b x':>7} {'fwd/flr':>8} {'f+b/flr':>8} {'fwd GB/s':>9} "
          f"{'f+b GB/s':>9}", file=out)
    for r in results:
        print(f"{r.shape:<15} {r.candidate:<{NAME_WIDTH}} {r.threads:>3} {r.repeats:>3} {r.calls_per_block:>5} "
              f"{unstable(r) if all_unstable(r) else figures(r)}", file=out)
    print(LEGEND, file=out)
    for baseline in dict.fromkeys(r.baseline for r in results):
        names = dict.fromkeys(r.candidate for r in results if r.baseline == baseline
                              and r.candidate not in (baseline, OVERHEAD_ROW) and not is_floor(r.candidate))
        print(f"  baseline {baseline}: {', '.join(names)}", file=out)
    for note in notes:
        print(f"  {note}", file=out)


def fit_slope(elements: list[int], times_ms: list[float]) -> float:
    """Slope of log(time) against log(size): 1 is linear scaling."""
    return float(np.polyfit(np.log(elements), np.log(times_ms), 1)[0])


def scaling_slopes(results: list[Result]) -> dict[str, dict[str, float]]:
    """Per candidate (and thread count, where several ran)."""
    several = len({r.threads for r in results}) > 1
    slopes = {}
    for name, threads in dict.fromkeys((r.candidate, r.threads) for r in results):
        mine = [r for r in results if (r.candidate, r.threads) == (name, threads)]
        slope = {}
        for key, figure in (("forward", FORWARD), ("forward_backward", FORWARD_BACKWARD)):
            points = [r for r in mine if sound(r, figure)]  # an unstable figure is no point to fit
            if len(points) >= 2:
                times = [figure_ms(r, figure) for r in points]
                slope[key] = fit_slope([r.elements for r in points], times)
        if slope:
            slopes[f"{name}, {threads} thread" if several else name] = slope
    return slopes


def print_slopes(group: str, slopes: dict[str, dict[str, float]], out: TextIO) -> None:
    print(f"\nscaling ({group}): fitted slope of log(time) vs log(N*C), 1 = linear", file=out)
    for name, s in slopes.items():
        fwd, both = (f"{s[key]:.3f}" if key in s else "-" for key in ("forward", "forward_backward"))
        print(f"  {name:<{NAME_WIDTH}} fwd {fwd}   fwd+bwd {both}", file=out)


def json_document(settings: Settings, thread_counts: list[int], results: list[Result],
                  scaling: Optional[dict[str, object]], source: dict[str, object]) -> bytes:
    """settings.threads is the list of thread counts run; each result has its own;
    source is the run's provenance (command, commit, machine, versions, load)."""
    document: dict[str, object] = {"provenance": source, "settings": {**asdict(settings), "threads": thread_counts},
                                   "results": [asdict(r) for r in results]}
    if scaling is not None:
        document["scaling"] = scaling
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


Series = Iterator[tuple[str, list[tuple[float, float]]]]
# matplotlib's tab10, then the same colours dashed, dotted, dash-dotted.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
DASHES = ("-", "--", ":", "-.")


def plotted(results: list[Result], figure: str) -> list[Result]:
    """The rows with that figure sound: unstable figures and missing backwards are not drawn."""
    return [r for r in results if sound(r, figure)]


def size_series(results: list[Result], figure: str) -> Series:
    """Per candidate: (elements, time) points."""
    rows = plotted(results, figure)
    for name in dict.fromkeys(r.candidate for r in rows):
        yield name, sorted((r.elements, figure_ms(r, figure)) for r in rows if r.candidate == name)


def thread_series(results: list[Result], figure: str) -> Series:
    """Per candidate and shape: (threads, time) points."""
    rows = plotted(results, figure)
    for name, shape in dict.fromkeys((r.candidate, r.shape) for r in rows):
        mine = [r for r in rows if (r.candidate, r.shape) == (name, shape)]
        yield f"{name} {shape}", sorted((r.threads, figure_ms(r, figure)) for r in mine)


def line_style(index: int) -> dict[str, object]:
    """A colour and a dash per series: a group may draw more lines than one colour cycle has."""
    palette = COLOURS[index % len(COLOURS)]
    return {"color": palette, "linestyle": DASHES[index // len(COLOURS) % len(DASHES)]}


def plot_by_group(results: list[Result], title: str, xlabel: str,
                  series: Callable[[list[Result], str], Series], xticks: Optional[list[int]] = None) -> bytes:
    """Time against ``xlabel``, log-log, one row per group, forward and forward +
    backward side by side, one line per item of ``series``; ``xticks`` only, if given."""
    groups = list(dict.fromkeys(r.group for r in results))
    figure = new_figure(18, 4.5 * max(1, len(groups)))
    axes = figure.subplots(max(1, len(groups)), 2, squeeze=False)
    for row, group in zip(axes, groups):
        mine = [r for r in results if r.group == group]
        for ax, figure_name, what in zip(row, (FORWARD, FORWARD_BACKWARD), ("forward", "forward + backward")):
            for index, (label, points) in enumerate(series(mine, figure_name)):
                ax.loglog(*zip(*points), marker="o", label=label, **line_style(index))
            ax.set_title(f"{group}: {what}")
            ax.set_xlabel(xlabel)
            if xticks:
                ax.set_xticks(xticks, labels=[str(t) for t in xticks])
                ax.set_xticks([], minor=True)
            ax.set_ylabel("median time per call (ms)")
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:  # a panel of forward-only rows (the deploy runtimes) has no forward + backward
                ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(title)
    figure.tight_layout()
    return png_bytes(figure)


def plot_png(results: list[Result], title: str) -> bytes:
    """Time against N*C (times the spatial size, if any) per candidate: a
    straight line of slope 1 is linear scaling."""
    return plot_by_group(results, title, "elements (N*C*spatial)", size_series)


def plot_threads_png(results: list[Result], title: str) -> bytes:
    """Time against threads per candidate and shape: a line of slope -1 is
    perfect scaling."""
    counts = sorted({r.threads for r in results})
    return plot_by_group(results, title, "threads", thread_series, counts)
