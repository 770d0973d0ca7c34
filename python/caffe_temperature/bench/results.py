"""A row of the benchmark's table, and the ratios between rows of one measurement."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from caffe_temperature.bench.floors import EXP_FLOOR_ROW, MEMORY_FLOOR_ROW


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
    # Slowest block / fastest block: how far the figure moved while it was measured.
    forward_spread: float
    forward_backward_spread: Optional[float]
    forward_gb_per_s: Optional[float]
    forward_backward_gb_per_s: Optional[float]
    value: Optional[float]  # the loss, for loss layers: candidates must agree
    # Why the figures cannot be (checks.py); a row with reasons is printed as unstable.
    unstable: list[str] = field(default_factory=list)
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


def larger_floor(memory: Optional[Result], exp: Optional[Result], field_name: str
                 ) -> tuple[Optional[float], Optional[str]]:
    """The larger of the two floors' times in ``field_name``, and its name; none unless both are sound."""
    if memory is None or exp is None or memory.unstable or exp.unstable:
        return None, None
    times = {"memory": getattr(memory, field_name), "exp": getattr(exp, field_name)}
    name = max(times, key=lambda k: times[k])
    return times[name], name


def with_ratios(results: list[Result]) -> list[Result]:
    """Each row with its speed-up over its baseline and its multiple of the
    larger floor, from the rows of the same (group, shape, threads); a row that
    is unstable, or whose baseline or floors are, gets none (nor a GB/s)."""
    by_key: dict[tuple[str, str, int], dict[str, Result]] = {}
    for r in results:
        by_key.setdefault((r.group, r.shape, r.threads), {})[r.candidate] = r
    out = []
    for r in results:
        if r.unstable:
            out.append(dataclasses.replace(r, forward_gb_per_s=None, forward_backward_gb_per_s=None))
            continue
        rows = by_key[(r.group, r.shape, r.threads)]
        base = rows.get(r.baseline)
        base = None if base is None or base.unstable else base
        memory = rows.get(MEMORY_FLOOR_ROW)
        exp = next((row for name, row in rows.items() if name.startswith(EXP_FLOOR_ROW)), None)
        forward_floor, forward_name = larger_floor(memory, exp, "forward_ms")
        both_floor, both_name = larger_floor(memory, exp, "forward_backward_ms")
        out.append(dataclasses.replace(
            r,
            forward_speedup=ratio(base.forward_ms if base else None, r.forward_ms),
            forward_backward_speedup=ratio(base.forward_backward_ms if base else None, r.forward_backward_ms),
            forward_vs_floor=ratio(r.forward_ms, forward_floor), forward_floor=forward_name,
            forward_backward_vs_floor=ratio(r.forward_backward_ms, both_floor),
            forward_backward_floor=both_name if r.forward_backward_ms is not None else None))
    return out
