"""The benchmark's report: the table, scaling slopes, the JSON document and the log-log plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Optional, TextIO

import numpy as np

from caffe_temperature._cli import new_figure, png_bytes
from caffe_temperature.bench.candidates import Settings
from caffe_temperature.bench.timing import Result


def print_table(results: list[Result], notes: list[str], out: TextIO) -> None:
    print(f"{'shape':<15} {'candidate':<42} {'n':>3} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd x':>7} {'f+b x':>7}"
          f" {'fwd GB/s':>9} {'f+b GB/s':>9}", file=out)
    for r in results:
        print(f"{r.shape:<15} {r.candidate:<42} {r.repeats:>3} {r.forward_ms:9.3f} {r.forward_backward_ms:11.3f} "
              f"{r.forward_speedup:6.2f}x {r.forward_backward_speedup:6.2f}x "
              f"{r.forward_gb_per_s:9.2f} {r.forward_backward_gb_per_s:9.2f}", file=out)
    print("(x = speed-up: time of the baseline / time of the candidate, same run, same data, float, median of n;\n"
          " GB/s = bytes that must move / time, see traffic_bytes)", file=out)
    for baseline in dict.fromkeys(r.baseline for r in results):
        names = dict.fromkeys(r.candidate for r in results if r.baseline == baseline and r.candidate != baseline)
        print(f"  baseline {baseline}: {', '.join(names)}", file=out)
    for note in notes:
        print(f"  {note}", file=out)


def fit_slope(elements: list[int], times_ms: list[float]) -> float:
    """Slope of log(time) against log(size): 1 is linear scaling."""
    return float(np.polyfit(np.log(elements), np.log(times_ms), 1)[0])


def scaling_slopes(results: list[Result]) -> dict[str, dict[str, float]]:
    slopes = {}
    for name in dict.fromkeys(r.candidate for r in results):
        mine = [r for r in results if r.candidate == name]
        if len(mine) < 2:
            continue
        sizes = [r.elements for r in mine]
        slopes[name] = {
            "forward": fit_slope(sizes, [r.forward_ms for r in mine]),
            "forward_backward": fit_slope(sizes, [r.forward_backward_ms for r in mine]),
        }
    return slopes


def print_slopes(group: str, slopes: dict[str, dict[str, float]], out: TextIO) -> None:
    print(f"\nscaling ({group}): fitted slope of log(time) vs log(N*C), 1 = linear", file=out)
    for name, s in slopes.items():
        print(f"  {name:<42} fwd {s['forward']:.3f}   fwd+bwd {s['forward_backward']:.3f}", file=out)


def json_document(settings: Settings, results: list[Result], scaling: Optional[dict[str, object]]) -> bytes:
    document: dict[str, object] = {"settings": asdict(settings), "results": [asdict(r) for r in results]}
    if scaling is not None:
        document["scaling"] = scaling
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def plot_png(results: list[Result], title: str) -> bytes:
    """Time against N*C (times the spatial size, if any) per candidate, log-log:
    a straight line of slope 1 is linear scaling. One row per group."""
    groups = list(dict.fromkeys(r.group for r in results))
    figure = new_figure(12, 4.5 * max(1, len(groups)))
    axes = figure.subplots(max(1, len(groups)), 2, squeeze=False)
    for row, group in zip(axes, groups):
        for ax, field, what in zip(row, ("forward_ms", "forward_backward_ms"), ("forward", "forward + backward")):
            for name in dict.fromkeys(r.candidate for r in results if r.group == group):
                points = sorted((r.elements, getattr(r, field)) for r in results if r.candidate == name)
                ax.loglog(*zip(*points), marker="o", label=name)
            ax.set_title(f"{group}: {what}")
            ax.set_xlabel("elements (N*C*spatial)")
            ax.set_ylabel("median time (ms)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    return png_bytes(figure)
