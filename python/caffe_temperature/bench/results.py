"""A row of the benchmark's table, and the ratios between rows of one measurement."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from caffe_temperature.bench.floors import EXP_FLOOR_ROW, MEMORY_FLOOR_ROW

# A row's two figures, by the names its reasons use, and their fields.
FORWARD, FORWARD_BACKWARD = "fwd", "f+b"
FIGURE_FIELDS = {FORWARD: "forward_ms", FORWARD_BACKWARD: "forward_backward_ms"}


@dataclass
class Result:
    group: str
    shape: str
    elements: int
    candidate: str
    baseline: str
    threads: int
    repeats: int  # timed blocks
    calls_per_block: int  # forward's; forward + backward's may be fewer
    forward_ms: float
    forward_backward_ms: Optional[float]  # None: no backward (the deploy runtimes)
    # timing.spread of the blocks: how far the figure moved while it was measured.
    forward_spread: float
    forward_backward_spread: Optional[float]
    forward_gb_per_s: Optional[float]
    forward_backward_gb_per_s: Optional[float]
    value: Optional[float]  # the loss, for loss layers: candidates must agree
    # Why figures of the row cannot be (checks.py), and which (FORWARD,
    # FORWARD_BACKWARD): those are printed as unstable, without ratios; the
    # row's other figure stands.
    unstable: list[str] = field(default_factory=list)
    unstable_figures: list[str] = field(default_factory=list)
    # The ratios (with_ratios), None where a row they need is unstable or absent.
    forward_speedup: Optional[float] = None
    forward_backward_speedup: Optional[float] = None
    # Time / the larger floor's, same shape, same measurement (none on a GPU: the floors are the CPU's),
    # and which floor that was ("memory" or "exp").
    forward_vs_floor: Optional[float] = None
    forward_backward_vs_floor: Optional[float] = None
    forward_floor: Optional[str] = None
    forward_backward_floor: Optional[str] = None


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    return None if numerator is None or denominator is None else numerator / denominator


def figure_ms(r: Result, figure: str) -> Optional[float]:
    return getattr(r, FIGURE_FIELDS[figure])


def sound(r: Result, figure: str) -> bool:
    """Whether the row has that figure and it can be."""
    return figure_ms(r, figure) is not None and figure not in r.unstable_figures


def all_unstable(r: Result) -> bool:
    """Whether none of the row's figures can be (it has some unstable)."""
    return bool(r.unstable_figures) and not any(sound(r, figure) for figure in FIGURE_FIELDS)


def larger_floor(memory: Optional[Result], exp: Optional[Result], figure: str
                 ) -> tuple[Optional[float], Optional[str]]:
    """The larger of the two floors' times for ``figure``, and its name; none unless both are sound."""
    if memory is None or exp is None or not sound(memory, figure) or not sound(exp, figure):
        return None, None
    times = {"memory": figure_ms(memory, figure), "exp": figure_ms(exp, figure)}
    name = max(times, key=lambda k: times[k])
    return times[name], name


def figure_ratios(r: Result, base: Optional[Result], memory: Optional[Result], exp: Optional[Result],
                  figure: str) -> tuple[Optional[float], Optional[float], Optional[str]]:
    """One figure's speed-up over the baseline and multiple of the larger floor
    (and its name): none where the figure, or the one it is divided by, cannot be."""
    if not sound(r, figure):
        return None, None, None
    time = figure_ms(r, figure)
    speedup = ratio(figure_ms(base, figure), time) if base and sound(base, figure) else None
    floor, name = larger_floor(memory, exp, figure)
    return speedup, ratio(time, floor), name


def with_ratios(results: list[Result]) -> list[Result]:
    """Each row with its speed-ups over its baseline and its multiples of the
    larger floor, from the rows of the same (group, shape, threads), figure by
    figure; a figure that is unstable, or whose baseline or floors are, gets
    none (nor a GB/s)."""
    by_key: dict[tuple[str, str, int], dict[str, Result]] = {}
    for r in results:
        by_key.setdefault((r.group, r.shape, r.threads), {})[r.candidate] = r
    out = []
    for r in results:
        rows = by_key[(r.group, r.shape, r.threads)]
        base = rows.get(r.baseline)
        memory = rows.get(MEMORY_FLOOR_ROW)
        exp = next((row for name, row in rows.items() if name.startswith(EXP_FLOOR_ROW)), None)
        fwd_speedup, fwd_floor, fwd_name = figure_ratios(r, base, memory, exp, FORWARD)
        both_speedup, both_floor, both_name = figure_ratios(r, base, memory, exp, FORWARD_BACKWARD)
        out.append(dataclasses.replace(
            r, forward_speedup=fwd_speedup, forward_backward_speedup=both_speedup,
            forward_vs_floor=fwd_floor, forward_floor=fwd_name,
            forward_backward_vs_floor=both_floor, forward_backward_floor=both_name,
            forward_gb_per_s=r.forward_gb_per_s if sound(r, FORWARD) else None,
            forward_backward_gb_per_s=r.forward_backward_gb_per_s if sound(r, FORWARD_BACKWARD) else None))
    return out
