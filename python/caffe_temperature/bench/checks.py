"""The harness polices its own figures: what cannot be is re-measured, and
printed as "unstable" if it stays so, never as a figure; a row's other figure,
if it can be, stands.

What cannot be, per row: a forward slower than the same candidate's forward +
backward; blocks that spread more than max_spread (timing.spread: slowest /
fastest once a stray block is set aside; the load of other processes moved
during the measurement, or the candidate has no steady state); and, across thread counts, a speed-up of k threads over
j above k / j (more than the added threads can give).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from caffe_temperature.bench.results import FORWARD, FORWARD_BACKWARD, Result

# (group, shape, threads): the unit that is re-measured, all its rows in turns,
# so that a group's ratios always come from one measurement.
Key = tuple[str, str, int]


def group_key(r: Result) -> Key:
    return r.group, r.shape, r.threads


# Reasons by the figure they concern (FORWARD, FORWARD_BACKWARD).
Problems = dict[str, list[str]]


def row_problems(r: Result, max_spread: float) -> Problems:
    """Why each of a row's figures cannot be (none: they can)."""
    problems: Problems = {}
    if r.forward_backward_ms is not None and r.forward_ms > r.forward_backward_ms:
        reason = f"fwd {r.forward_ms:.3g} ms > fwd+bwd {r.forward_backward_ms:.3g} ms"
        problems = {FORWARD: [reason], FORWARD_BACKWARD: [reason]}  # which one is wrong is unknown
    for figure, spread in ((FORWARD, r.forward_spread), (FORWARD_BACKWARD, r.forward_backward_spread)):
        if spread is not None and spread > max_spread:
            problems.setdefault(figure, []).append(f"{figure} blocks spread over {max_spread:g}x")
    return problems


def flagged(r: Result, problems: Problems) -> Result:
    """``r`` with ``problems`` added to its reasons and unstable figures."""
    reasons = [reason for figure_reasons in problems.values() for reason in figure_reasons]
    return dataclasses.replace(r, unstable=list(dict.fromkeys(r.unstable + reasons)),
                               unstable_figures=list(dict.fromkeys(r.unstable_figures + list(problems))))


def thread_problems(results: list[Result]) -> dict[tuple[str, str, str, int], Problems]:
    """Rows whose time at k threads is more than k / j times shorter than at
    j < k threads, keyed by (group, shape, candidate, k)."""
    by_row: dict[tuple[str, str, str], dict[int, Result]] = {}
    for r in results:
        by_row.setdefault((r.group, r.shape, r.candidate), {})[r.threads] = r
    problems: dict[tuple[str, str, str, int], Problems] = {}
    for (group, shape, name), rows in by_row.items():
        for j, fewer in rows.items():
            for k, more in rows.items():
                if k <= j:
                    continue
                for figure, before, after in ((FORWARD, fewer.forward_ms, more.forward_ms),
                                              (FORWARD_BACKWARD, fewer.forward_backward_ms,
                                               more.forward_backward_ms)):
                    if before is not None and after is not None and before / after > k / j:
                        problems.setdefault((group, shape, name, k), {}).setdefault(figure, []).append(
                            f"{figure} {k}-thread speed-up {before / after:.2f}x over {j} > {k / j:g}x")
    return problems


def policed(measure: Callable[[], list[Result]], max_spread: float, retries: int) -> list[Result]:
    """One group's rows, measured again (all of them) while some row cannot be,
    up to ``retries`` times; rows that still cannot be are marked unstable."""
    results = measure()
    for _ in range(retries):
        if not any(row_problems(r, max_spread) for r in results):
            break
        results = measure()
    return [flagged(r, row_problems(r, max_spread)) for r in results]


def replace_groups(results: list[Result], fresh: dict[Key, list[Result]]) -> list[Result]:
    """``results`` with the rows of each group in ``fresh`` replaced by its fresh rows, in the same place."""
    out: list[Result] = []
    for r in results:
        key = group_key(r)
        if key not in fresh:
            out.append(r)
        elif not any(group_key(o) == key for o in out):
            out.extend(fresh[key])
    return out


def policed_threads(results: list[Result], measure: Callable[[str, str, int], list[Result]],
                    retries: int) -> list[Result]:
    """``results`` at several thread counts, where a speed-up beyond the threads
    has its groups (at every thread count) measured again with ``measure(group,
    shape, threads)``, up to ``retries`` times; rows whose speed-up still cannot
    be are marked unstable."""
    for _ in range(retries):
        problems = thread_problems(results)
        if not problems:
            break
        again = {(g, s, t) for g, s, _, _ in problems for t in {r.threads for r in results}}
        results = replace_groups(results, {key: measure(*key) for key in sorted(again)})
    problems = thread_problems(results)
    return [flagged(r, problems.get((r.group, r.shape, r.candidate, r.threads), {})) for r in results]
