"""The benchmark's report: the table, scaling slopes, the JSON document and the log-log plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Callable, Iterator, Optional, TextIO

import numpy as np

from caffe_temperature._cli import new_figure, png_bytes
from caffe_temperature.bench.candidates import Settings
from caffe_temperature.bench.timing import LIMIT_ROW, OVERHEAD_ROW, Result


def multiple(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def rates(r: Result) -> str:
    """Speed-ups, multiples of the limit, GB/s; the overhead row moves no data."""
    if r.candidate == OVERHEAD_ROW:
        return f"{'-':>7} {'-':>7} {multiple(r.forward_vs_limit):>7} {multiple(r.forward_backward_vs_limit):>7}"
    return (f"{r.forward_speedup:6.2f}x {r.forward_backward_speedup:6.2f}x "
            f"{multiple(r.forward_vs_limit):>7} {multiple(r.forward_backward_vs_limit):>7} "
            f"{r.forward_gb_per_s:9.2f} {r.forward_backward_gb_per_s:9.2f}")


def print_table(results: list[Result], notes: list[str], out: TextIO) -> None:
    print(f"{'shape':<15} {'candidate':<42} {'thr':>3} {'n':>3} {'calls':>5} {'fwd ms':>9} {'fwd+bwd ms':>11}"
          f" {'fwd x':>7} {'f+b x':>7} {'fwd/lim':>7} {'f+b/lim':>7} {'fwd GB/s':>9} {'f+b GB/s':>9}", file=out)
    for r in results:
        print(f"{r.shape:<15} {r.candidate:<42} {r.threads:>3} {r.repeats:>3} {r.calls_per_block:>5} "
              f"{r.forward_ms:9.3f} {r.forward_backward_ms:11.3f} {rates(r)}", file=out)
    print("(ms = median per call over n blocks of `calls` calls (fwd's), after a warm-up; the blocks of a\n"
          " shape's candidates take turns; float, same data, same run; thr = threads (plugin, BLAS, PyTorch);\n"
          " x = speed-up: time of the baseline / time of the candidate;\n"
          f" /lim = time / the time of '{LIMIT_ROW}' (one exp, one read and one write pass;\n"
          "        backward: the dot of y and dy and a pass writing dx), same shape, same run;\n"
          "        ', x2' (distillation): the forward passes twice, for the teacher's and the student's exps;\n"
          f" '{OVERHEAD_ROW}': what pycaffe's Net.forward / backward cost\n"
          "        by themselves; subtract it from the Caffe rows to read small shapes net of it;\n"
          " GB/s = bytes that must move / time, see traffic_bytes)", file=out)
    for baseline in dict.fromkeys(r.baseline for r in results):
        names = dict.fromkeys(r.candidate for r in results if r.baseline == baseline
                              and r.candidate not in (baseline, OVERHEAD_ROW)
                              and not r.candidate.startswith(LIMIT_ROW))
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
        if len(mine) < 2:
            continue
        sizes = [r.elements for r in mine]
        slopes[f"{name}, {threads} thread" if several else name] = {
            "forward": fit_slope(sizes, [r.forward_ms for r in mine]),
            "forward_backward": fit_slope(sizes, [r.forward_backward_ms for r in mine]),
        }
    return slopes


def print_slopes(group: str, slopes: dict[str, dict[str, float]], out: TextIO) -> None:
    print(f"\nscaling ({group}): fitted slope of log(time) vs log(N*C), 1 = linear", file=out)
    for name, s in slopes.items():
        print(f"  {name:<42} fwd {s['forward']:.3f}   fwd+bwd {s['forward_backward']:.3f}", file=out)


def json_document(settings: Settings, thread_counts: list[int], results: list[Result],
                  scaling: Optional[dict[str, object]]) -> bytes:
    """settings.threads is the list of thread counts run; each result has its own."""
    document: dict[str, object] = {"settings": {**asdict(settings), "threads": thread_counts},
                                   "results": [asdict(r) for r in results]}
    if scaling is not None:
        document["scaling"] = scaling
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


Series = Iterator[tuple[str, list[tuple[float, float]]]]
# matplotlib's tab10, then the same colours dashed, dotted, dash-dotted.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
DASHES = ("-", "--", ":", "-.")


def size_series(results: list[Result], field: str) -> Series:
    """Per candidate: (elements, time) points."""
    for name in dict.fromkeys(r.candidate for r in results):
        yield name, sorted((r.elements, getattr(r, field)) for r in results if r.candidate == name)


def thread_series(results: list[Result], field: str) -> Series:
    """Per candidate and shape: (threads, time) points."""
    for name, shape in dict.fromkeys((r.candidate, r.shape) for r in results):
        mine = [r for r in results if (r.candidate, r.shape) == (name, shape)]
        yield f"{name} {shape}", sorted((r.threads, getattr(r, field)) for r in mine)


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
        for ax, field, what in zip(row, ("forward_ms", "forward_backward_ms"), ("forward", "forward + backward")):
            for index, (label, points) in enumerate(series(mine, field)):
                ax.loglog(*zip(*points), marker="o", label=label, **line_style(index))
            ax.set_title(f"{group}: {what}")
            ax.set_xlabel(xlabel)
            if xticks:
                ax.set_xticks(xticks, labels=[str(t) for t in xticks])
                ax.set_xticks([], minor=True)
            ax.set_ylabel("median time per call (ms)")
            ax.grid(True, which="both", alpha=0.3)
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
