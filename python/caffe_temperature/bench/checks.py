"""The harness polices its own figures: what cannot be is re-measured, and
printed as "unstable" if it stays so, never as a figure.

What cannot be, per row: a forward slower than the same candidate's forward +
backward; blocks whose slowest took more than max_spread times the fastest
(the load of other processes moved during the measurement, or the candidate
has no steady state); and, across thread counts, a speed-up of k threads over
j above k / j (more than the added threads can give).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from caffe_temperature.bench.results import Result

# (group, shape, threads): the unit that is re-measured, all its rows in turns,
# so that a group's ratios always come from one measurement.
Key = tuple[str, str, int]


def group_key(r: Result) -> Key:
    return r.group, r.shape, r.threads


def row_problems(r: Result, max_spread: float) -> list[str]:
    """Why a row's figures cannot be taken as they are (none: they can)."""
    problems = []
    if r.forward_backward_ms is not None and r.forward_ms > r.forward_backward_ms:
        problems.append(f"fwd {r.forward_ms:.3g} ms > fwd+bwd {r.forward_backward_ms:.3g} ms")
    for what, spread in (("fwd", r.forward_spread), ("f+b", r.forward_backward_spread)):
        if spread is not None and spread > max_spread:
            problems.append(f"{what} blocks spread over {max_spread:g}x")
    return problems


def thread_problems(results: list[Result]) -> dict[tuple[str, str, str, int], list[str]]:
    """Rows whose time at k threads is more than k / j times shorter than at
    j < k threads, keyed by (group, shape, candidate, k)."""
    by_row: dict[tuple[str, str, str], dict[int, Result]] = {}
    for r in results:
        by_row.setdefault((r.group, r.shape, r.candidate), {})[r.threads] = r
    problems: dict[tuple[str, str, str, int], list[str]] = {}
    for (group, shape, name), rows in by_row.items():
        for j, fewer in rows.items():
            for k, more in rows.items():
                if k <= j:
                    continue
                for what, before, after in (("fwd", fewer.forward_ms, more.forward_ms),
                                            ("f+b", fewer.forward_backward_ms, more.forward_backward_ms)):
                    if before is not None and after is not None and before / after > k / j:
                        problems.setdefault((group, shape, name, k), []).append(
                            f"{what} {k}-thread speed-up {before / after:.2f}x over {j} > {k / j:g}x")
    return problems


def policed(measure: Callable[[], list[Result]], max_spread: float, retries: int) -> list[Result]:
    """One group's rows, measured again (all of them) while some row cannot be,
    up to ``retries`` times; rows that still cannot be are marked unstable."""
    results = measure()
    for _ in range(retries):
        if not any(row_problems(r, max_spread) for r in results):
            break
        results = measure()
    return [dataclasses.replace(r, unstable=row_problems(r, max_spread)) for r in results]


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
    return [dataclasses.replace(r, unstable=r.unstable + problems.get((r.group, r.shape, r.candidate, r.threads), []))
            for r in results]
