"""The benchmark script: a tiny run end to end, and its stock distillation
composition, which is only a fair baseline if it computes the same loss."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from caffe_temperature import bench
from caffe_temperature._cli import ToolError
from caffe_temperature.bench import candidates, checks, cli, floors, peers, provenance, report, results, timing
from caffe_temperature.prototxt import render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULT_KEYS = {
    "group", "shape", "elements", "candidate", "baseline", "threads", "repeats", "calls_per_block", "forward_ms",
    "forward_backward_ms", "forward_spread", "forward_backward_spread", "forward_speedup",
    "forward_backward_speedup", "forward_gb_per_s", "forward_backward_gb_per_s", "forward_vs_floor",
    "forward_backward_vs_floor", "forward_floor", "forward_backward_floor", "unstable", "unstable_figures", "value",
}
# Short blocks: the tests check the figures' structure, not their accuracy.
FAST = ["--block-ms", "0.2"]


def distillation_net(make_net, layers: str, student: np.ndarray, teacher: np.ndarray):
    net = make_net(render(candidates.distillation_net(student.shape, layers)))
    net.blobs["student"].data[...] = student
    net.blobs["teacher"].data[...] = teacher
    net.forward()
    net.backward()
    return net


@pytest.mark.parametrize("shape", [(16, 10), (3, 5, 4, 6)])
@pytest.mark.parametrize("temperature", [1.0, 4.0, 40.0])
def test_stock_distillation_composition_equals_layer(make_net, shape, temperature):
    student, teacher = candidates.distillation_data(shape)
    positions = student.size // shape[1]
    stock, ours = (
        distillation_net(make_net, c.layers, student, teacher)
        for c in candidates.distillation_candidates(1.0 / temperature, positions)
    )
    loss = float(ours.blobs["loss"].data.flat[0])
    assert loss > 0
    assert float(stock.blobs["loss"].data.flat[0]) == pytest.approx(loss, rel=1e-4)
    # The same gradient too: the baseline is timed on backward as well.
    np.testing.assert_allclose(
        stock.blobs["student"].diff, ours.blobs["student"].diff, rtol=1e-3, atol=1e-6 * temperature
    )


def test_tiny_run_writes_json_and_png(tmp_path: Path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = ["--shapes", "8x10", "2x3x4x5", "--repeat", "2", *FAST, "--json", str(out), "--plot", str(png)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"provenance", "settings", "results"}
    assert report["provenance"]["command"].endswith(" ".join(argv))
    assert report["settings"]["threads"] == [1]
    rows = report["results"]
    assert {r["group"] for r in rows} == set(candidates.LAYER_GROUPS)
    assert {r["shape"] for r in rows} == {"8x10", "2x3x4x5"}
    for r in rows:
        assert set(r) == RESULT_KEYS
        assert r["forward_ms"] > 0 and r["forward_spread"] >= 1
        if r["candidate"] in (peers.ONNXRUNTIME_ROW, peers.OPENVINO_ROW):
            assert r["forward_backward_ms"] is None  # inference runtimes: no backward
        else:
            assert r["forward_backward_ms"] > 0
        assert r["unstable"] or r["forward_gb_per_s"] > 0
        assert r["repeats"] == 2 and r["calls_per_block"] >= 1 and r["threads"] == 1
    for shape in ("8x10", "2x3x4x5"):
        values = {r["candidate"]: r["value"] for r in rows if r["group"] == "distillation" and r["shape"] == shape}
        assert values[candidates.DISTILLATION_BASELINE] == pytest.approx(values[candidates.DISTILLATION_LAYER],
                                                                         rel=1e-4)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    out = capsys.readouterr().out
    assert "SoftmaxWithDistillationLoss" in out
    assert out.startswith(f"command: {cli.PROG} --shapes 8x10 ") and "\ncommit:  " in out and "\nmachine: " in out


def test_each_group_has_floors_and_an_overhead_row_from_the_same_run(capsys, monkeypatch):
    # About the floors and the ratios: tiny timings on a loaded machine may trip
    # the checks, which have tests of their own.
    monkeypatch.setattr(checks, "row_problems", lambda r, max_spread: {})
    rows_run, _ = timing.run_all([(4, 6)], list(candidates.LAYER_GROUPS), settings(repeat=3))
    rows_all = results.with_ratios(rows_run)
    for group in candidates.LAYER_GROUPS:
        rows = {r.candidate: r for r in rows_all if r.group == group}
        memory, exp = rows[floors.MEMORY_FLOOR_ROW], rows[floors.exp_floor_label(group)]
        overhead = rows[timing.OVERHEAD_ROW]
        for row in (memory, exp, overhead):
            assert row.forward_ms > 0 and row.forward_backward_ms > 0 and not row.unstable
        assert overhead.value is None
        for r in rows.values():  # every figure as a multiple of the larger of this group's own floors
            for field, floor in (("forward_ms", "forward_floor"), ("forward_backward_ms", "forward_backward_floor")):
                if getattr(r, field) is None:  # no backward: the deploy runtimes
                    assert getattr(r, floor) is None and r.candidate in (peers.ONNXRUNTIME_ROW, peers.OPENVINO_ROW)
                    continue
                larger = max(getattr(memory, field), getattr(exp, field))
                assert getattr(r, floor) == ("exp" if larger == getattr(exp, field) else "memory")
                multiple = getattr(r, field.replace("_ms", "_vs_floor"))
                assert multiple == pytest.approx(getattr(r, field) / larger)
            assert r.forward_speedup == pytest.approx(rows[r.baseline].forward_ms / r.forward_ms)
    report.print_table(rows_all, [], sys.stdout)
    table = capsys.readouterr().out
    assert floors.EXP_FLOOR_ROW in table and floors.MEMORY_FLOOR_ROW in table and timing.OVERHEAD_ROW in table
    assert floors.exp_floor_label("distillation") in table  # its own floor: two softmaxes' worth of exps


def test_distillation_exp_floor_makes_twice_the_forward_passes():
    calls: list[tuple[int, int]] = []

    class Native:
        @staticmethod
        def limit_forward(x, y, block):
            calls.append((id(x), block))

        @staticmethod
        def limit_backward(y, dy, dx, block):
            calls.append((id(dy), block))

    for group, exps in (("softmax", 1), ("infogain", 1), ("distillation", 2)):
        calls.clear()
        runs = floors.exp_floor_runs(Native, group, (3, 5), 0.25, "base")
        runs.forward()
        assert len(calls) == exps and len({x for x, _ in calls}) == exps  # one softmax per distinct input
        calls.clear()
        runs.forward_backward()
        assert len(calls) == exps + 1


def settings(repeat: int) -> candidates.Settings:
    return candidates.Settings(temperature=4.0, repeat=repeat, threads=1, device="cpu", block_ms=0.2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 5, 6, 100])
def test_limit_passes_are_a_softmax_of_each_block(dtype, block):
    from caffe_temperature import _native

    rng = np.random.default_rng(0)
    x, dy = (rng.standard_normal((4, 6)).astype(dtype) * 5 for _ in range(2))
    y, dx = np.empty_like(x), np.empty_like(x)
    _native.limit_forward(x, y, block)
    _native.limit_backward(y, dy, dx, block)
    for start in range(0, x.size, block):
        xb, dyb = x.flat[start:start + block], dy.flat[start:start + block]
        e = np.exp(xb - xb.max())
        yb = e / e.sum()
        np.testing.assert_allclose(y.flat[start:start + block], yb, rtol=1e-5)
        np.testing.assert_allclose(dx.flat[start:start + block], yb * (dyb - yb @ dyb), rtol=1e-4, atol=1e-6)


def test_limit_refuses_what_it_would_not_write_in_place():
    from caffe_temperature import _native

    x = np.ones(6, np.float32)
    with pytest.raises(TypeError):
        _native.limit_forward(x, np.empty(6, np.float64), 6)  # no converted copy of the output
    with pytest.raises(ValueError, match="same number"):
        _native.limit_forward(x, np.empty(5, np.float32), 6)
    with pytest.raises(ValueError, match="block"):
        _native.limit_forward(x, np.empty(6, np.float32), 0)


def test_runs_are_warmed_up_then_timed_in_blocks_that_take_turns(monkeypatch):
    order: list[str] = []
    runs = [lambda: order.append("a"), lambda: order.append("b")]
    monkeypatch.setattr(timing, "settle", lambda: order.append("idle") or True)
    timings = timing.median_ms(runs, 3, 1e-3)
    assert all(t.ms > 0 and t.calls_per_block > 1 for t in timings)
    # Each block: once the process is idle, one untimed call, to bring the
    # run's data back into cache, then calls_per_block timed ones; a's block,
    # then b's, three times.
    a, b = (t.calls_per_block + 1 for t in timings)
    blocks = order[-3 * (a + b + 2):]
    assert blocks == (["idle"] + ["a"] * a + ["idle"] + ["b"] * b) * 3
    assert order[0] == "idle"  # the warm-up too


def test_a_block_is_its_median_call_so_a_stalled_call_does_not_move_it(monkeypatch):
    monkeypatch.setattr(timing, "settle", lambda: True)
    # The untimed call, then ten timed ones, the fifth stalled (descheduled) for 30 ms.
    pauses = iter([0.0] + [0.0002] * 4 + [0.03] + [0.0002] * 5)
    block_s = timing.timed_block(lambda: time.sleep(next(pauses)), 10)
    assert 0.0002 <= block_s < 0.002  # the mean would be above 0.003


def spin_for(seconds: float) -> threading.Thread:
    """A thread that keeps a core busy for ``seconds``, as a runtime's idle
    threads do after its calls."""
    def spin() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    thread = threading.Thread(target=spin)
    thread.start()
    return thread


@pytest.mark.parametrize("busy_s, settles", [(0.0, True), (0.1, True), (2 * timing.SETTLE_MAX_S, False)])
def test_settle_waits_until_no_thread_spins(busy_s: float, settles: bool):
    spinner = spin_for(busy_s)
    start = time.perf_counter()
    assert timing.settle() is settles
    waited = time.perf_counter() - start
    spinner.join()
    assert waited >= min(busy_s, timing.SETTLE_MAX_S) / 2  # slack: the spinner may wait for a core
    assert waited <= timing.SETTLE_MAX_S + 0.05 if busy_s else waited < 0.05


def test_several_thread_counts_give_a_threads_plot(tmp_path: Path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "threads.png"
    argv = ["--shapes", "4x5", "--repeat", "1", *FAST, "--layers", "softmax", "--threads", "1", "2",
            "--json", str(out), "--plot", str(png)]
    assert bench.main(argv) == 0
    document = json.loads(out.read_text())
    assert document["settings"]["threads"] == [1, 2]
    counts = {}
    for r in document["results"]:
        counts.setdefault(r["candidate"], set()).add(r["threads"])
    assert counts and all(threads == {1, 2} for threads in counts.values())
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert " 2 " in capsys.readouterr().out


def test_infogain_skipped_where_h_is_too_big():
    assert candidates.skip_reason("infogain", (2, candidates.MAX_INFOGAIN_CHANNELS + 1)) is not None
    assert candidates.skip_reason("distillation", (2, 32000)) is None


def test_big_shapes_get_fewer_repeats():
    assert timing.repeats_for((64, 10), 25) == 25
    assert timing.repeats_for((1024, 32000), 25) == timing.MIN_REPEATS
    assert timing.repeats_for((1024, 32000), 2) == 2


def test_slope_of_linear_times_is_one():
    sizes = [1000, 4000, 16000]
    assert report.fit_slope(sizes, [2e-3 * n for n in sizes]) == pytest.approx(1.0)


def test_gpu_refused_on_cpu_only_caffe(caffe):
    if timing.caffe_has_gpu():
        pytest.skip("this Caffe has CUDA")
    with pytest.raises(ToolError, match="CPU-only"):
        timing.load_caffe("gpu")


def test_traffic_counts_each_byte_that_must_move():
    n, c = 256, 1000
    elements = n * c
    assert candidates.traffic_bytes("softmax", (n, c)) == (4 * 2 * elements, 4 * 5 * elements)
    assert candidates.traffic_bytes("distillation", (n, c)) == (4 * 2 * elements, 4 * 5 * elements)
    # 256 labels pick at most 256 of H's 1000 rows; 4096 labels may pick all of them.
    rows = 256 * c
    assert candidates.traffic_bytes("infogain", (n, c)) == (
        4 * (elements + n + rows), 4 * (3 * elements + 2 * n + 2 * rows))
    assert candidates.traffic_bytes("infogain", (4096, c))[0] == 4 * (4096 * c + 4096 + c * c)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_bad_temperature_is_a_usage_error(capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--T", value])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"{cli.PROG}: error: argument -T/--temperature/--T: T must be "
                                                   + ("a number" if value == "abc" else "finite and > 0")
                                                   + f", got {value!r}"]


@pytest.mark.parametrize("argv, message", [
    (["--repeat", "0"], "--repeat must be >= 1"),
    (["--threads", "x"], "--threads must be an integer"),
    (["--shapes", "8"], "needs at least two positive dimensions"),
    (["--shapes", "8x10", "--json", "/nonexistent/dir/bench.json"], "cannot write /nonexistent/dir/bench.json"),
])
def test_bad_arguments_and_unwritable_outputs_are_one_line_errors(caffe, capsys, tmp_path, argv, message):
    code = call_exit_code(lambda: bench.main(argv))
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def call_exit_code(job) -> int:
    try:
        return job()
    except SystemExit as stop:
        return int(stop.code)


def test_json_is_written_atomically_after_the_run(tmp_path: Path, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    out.write_text("old\n")

    def interrupted(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("caffe_temperature._cli.os.replace", interrupted)
    assert bench.main(["--shapes", "4x5", "--repeat", "1", *FAST, "--layers", "softmax", "--json", str(out)]) == 2
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["bench.json"]
    assert "No space left on device" in capsys.readouterr().err


def test_memory_pass_copies_what_it_writes_and_reads_the_rest():
    from caffe_temperature import _native

    source = np.arange(1, 11, dtype=np.float32)
    out = np.zeros(4, np.float32)
    assert _native.memory_pass(source, out) == pytest.approx(source[4:].sum())
    np.testing.assert_array_equal(out, source[:4])
    assert _native.memory_pass(source, np.empty(0, np.float32)) == pytest.approx(source.sum())
    with pytest.raises(ValueError, match="larger"):
        _native.memory_pass(source[:3], out)


@pytest.mark.parametrize("group", candidates.LAYER_GROUPS)
def test_memory_floor_moves_the_bytes_the_group_must(group):
    shape = (6, 10)
    moved: list[tuple[int, int]] = []

    class Native:
        @staticmethod
        def memory_pass(source, out):
            moved.append((source.size, out.size))
            return 0.0

    runs = floors.memory_floor_runs(Native, group, shape, "base")
    runs.forward()
    runs.forward_backward()
    forward, backward = candidates.traffic(group, shape)
    forward_pass, backward_pass = (forward.reads, forward.writes), (backward.reads, backward.writes)
    assert moved == [forward_pass, forward_pass, backward_pass]
    assert 4 * (moved[0][0] + moved[0][1]) == candidates.traffic_bytes(group, shape)[0]


def row(candidate: str = "layer", forward: float = 1.0, both: float | None = 2.0, threads: int = 1,
        spread: float = 1.0, baseline: str = "stock", **fields) -> results.Result:
    """A synthetic row: the checks judge timings, whatever measured them."""
    return results.Result(group="softmax", shape="4x5", elements=20, candidate=candidate, baseline=baseline,
                          threads=threads, repeats=3, calls_per_block=1, forward_ms=forward,
                          forward_backward_ms=both, forward_spread=spread,
                          forward_backward_spread=None if both is None else 1.0,
                          forward_gb_per_s=1.0, forward_backward_gb_per_s=1.0, value=None, **fields)


@pytest.mark.parametrize("bad, reason, figures", [
    (row(forward=3.0, both=2.0), "fwd 3 ms > fwd+bwd 2 ms", ["fwd", "f+b"]),  # which one is wrong is unknown
    (row(spread=1.5, both=None), "fwd blocks spread over 1.3x", ["fwd"]),
])
def test_impossible_rows_are_measured_again_then_flagged_unstable(bad, reason, figures, capsys):
    fine = row(both=bad.forward_backward_ms)
    for sequence, calls, flagged in (([bad, bad], 2, True), ([bad, fine], 2, False), ([fine], 1, False)):
        measured = iter(sequence)
        count = []

        def measure() -> list[results.Result]:
            count.append(1)
            return [next(measured)]

        [out] = checks.policed(measure, max_spread=1.3, retries=1)
        assert len(count) == calls
        assert (out.unstable, out.unstable_figures) == (([reason], figures) if flagged else ([], []))
    [unstable] = results.with_ratios(checks.policed(lambda: [bad], max_spread=1.3, retries=0))
    assert unstable.forward_gb_per_s is None and unstable.forward_speedup is None
    report.print_table([unstable], [], sys.stdout)
    line = capsys.readouterr().out.splitlines()[1]
    spreads = f"{bad.forward_spread:.2f}" + ("" if bad.forward_backward_ms is None else " / 1.00")
    assert line.endswith(f"unstable (spread {spreads}; {reason})")
    assert f"{bad.forward_ms:.3f}" not in line  # no figure


def test_an_unstable_figure_leaves_the_rows_other_figure_standing(capsys):
    stock, layer = row("stock", 4.0, 8.0), row(forward=1.0, both=2.0)
    shaky = dataclasses.replace(layer, forward_backward_spread=1.8)
    out = {r.candidate: r for r in results.with_ratios(checks.policed(lambda: [stock, shaky], 1.3, retries=0))}
    assert out["layer"].unstable_figures == ["f+b"] and out["layer"].unstable == ["f+b blocks spread over 1.3x"]
    assert out["layer"].forward_speedup == pytest.approx(4.0) and out["layer"].forward_gb_per_s == 1.0
    assert out["layer"].forward_backward_speedup is None and out["layer"].forward_backward_gb_per_s is None
    report.print_table([out["layer"]], [], sys.stdout)
    line = capsys.readouterr().out.splitlines()[1]
    assert "    1.000    unstable   4.00x       -" in line
    assert line.endswith("unstable (spread 1.00 / 1.80; f+b blocks spread over 1.3x)")
    # Nor is an unstable figure a point of a fitted slope.
    rows = [dataclasses.replace(shaky, elements=n, forward_ms=n / 10, forward_backward_ms=1.0,
                                unstable_figures=["f+b"]) for n in (10, 100, 1000)]
    assert report.scaling_slopes(rows) == {"layer": {"forward": pytest.approx(1.0)}}


def test_a_speed_up_beyond_the_threads_is_measured_again_then_flagged():
    one, two = row(forward=2.0, both=4.0, threads=1), row(forward=0.7, both=2.0, threads=2)
    stock = [row("stock", 9.0, 9.0, threads=t) for t in (1, 2)]
    assert checks.thread_problems([one, two]) == {
        ("softmax", "4x5", "layer", 2): {"fwd": ["fwd 2-thread speed-up 2.86x over 1 > 2x"]}}
    assert checks.thread_problems([one, dataclasses.replace(two, forward_ms=1.0)]) == {}

    measured: list[tuple[str, str, int]] = []

    def again(group: str, shape: str, threads: int) -> list[results.Result]:
        measured.append((group, shape, threads))
        return [row(forward=2.0, both=4.0, threads=threads) if threads == 1 else two, stock[threads - 1]]

    out = checks.policed_threads([one, stock[0], two, stock[1]], again, retries=1)
    assert sorted(measured) == [("softmax", "4x5", 1), ("softmax", "4x5", 2)]  # both counts, whole groups
    flagged = {(r.candidate, r.threads): (r.unstable, r.unstable_figures) for r in out}
    assert flagged == {("layer", 1): ([], []), ("stock", 1): ([], []),
                       ("layer", 2): (["fwd 2-thread speed-up 2.86x over 1 > 2x"], ["fwd"]), ("stock", 2): ([], [])}
    # The speed-up over the stock baseline of the flagged row is not a figure either.
    ratios = {(r.candidate, r.threads): r.forward_speedup for r in results.with_ratios(out)}
    assert ratios[("layer", 1)] == pytest.approx(4.5) and ratios[("layer", 2)] is None


def test_ratios_need_a_sound_baseline_and_sound_floors():
    memory = row(floors.MEMORY_FLOOR_ROW, 0.5, 3.0)
    exp = row(floors.EXP_FLOOR_ROW, 0.8, 1.0)
    layer, stock = row(forward=1.0, both=2.0), row("stock", 4.0, 8.0)
    out = {r.candidate: r for r in results.with_ratios([stock, layer, memory, exp])}
    assert out["layer"].forward_vs_floor == pytest.approx(1.25) and out["layer"].forward_floor == "exp"
    assert out["layer"].forward_backward_vs_floor == pytest.approx(2 / 3)
    assert out["layer"].forward_backward_floor == "memory"
    assert out["layer"].forward_speedup == pytest.approx(4.0)
    shaky = dataclasses.replace(exp, unstable=["fwd blocks spread over 1.3x"], unstable_figures=["fwd"])
    out = {r.candidate: r for r in results.with_ratios([dataclasses.replace(stock, unstable_figures=["fwd", "f+b"]),
                                                        layer, memory, shaky])}
    assert out["layer"].forward_vs_floor is None and out["layer"].forward_speedup is None
    assert out["layer"].forward_ms == 1.0  # its own figure stands
    assert out["layer"].forward_backward_vs_floor == pytest.approx(2 / 3)  # the floors' f+b figures are sound


def test_spread_is_the_slowest_block_over_the_fastest(monkeypatch):
    blocks = iter([1.0, 2.0, 1.5, 1.2])
    monkeypatch.setattr(timing, "warm_up", lambda run, seconds: seconds)
    monkeypatch.setattr(timing, "timed_block", lambda run, calls: next(blocks))
    [t] = timing.median_ms([lambda: None], 4, 1e-3)
    assert t.spread == pytest.approx(2.0) and t.ms == pytest.approx(1e3 * 1.35)


@pytest.mark.parametrize("blocks, expected", [
    ([1.0] * 14 + [2.5], 1.0),  # one stray block of 15: set aside, as the median sets it aside
    ([1.0] * 13 + [2.5, 2.5], 2.5),  # two: a tenth of 15 is one
    ([1.0] * 8 + [1.5] * 7, 1.5),  # two speeds: the median is not a figure
    ([1.0 + 0.05 * i for i in range(15)], 1.65 / 1.05),  # a drift
    ([1.0, 1.0, 1.0, 1.0, 3.0], 1.0),  # five blocks: one of each end set aside
    ([1.0, 1.0, 3.0], 3.0),  # fewer: all count
    ([2.0] + [1.0] * 24 + [0.5], 1.0),  # 26 blocks: two of each end
])
def test_spread_sets_the_slowest_and_fastest_tenth_aside(blocks: list[float], expected: float):
    assert timing.spread(blocks) == pytest.approx(expected)
    assert timing.spread(blocks[::-1]) == pytest.approx(expected)  # order does not matter


def test_warm_up_goes_on_while_calls_take_new_pages(monkeypatch):
    faults = iter([0, 500, 500, 800, 800, 800, 800, 800])  # before and after each call: two calls fault
    calls = []
    monkeypatch.setattr(timing, "minor_faults", lambda: next(faults))
    timing.warm_up(lambda: calls.append(1), seconds=0.0)
    assert len(calls) == 3  # on past the faulting calls, until one takes no new page
    faults = iter(range(0, 1000, 10))  # every call faults: it gives up at WARM_UP_MAX_CALLS
    calls.clear()
    timing.warm_up(lambda: calls.append(1), seconds=0.0)
    assert len(calls) == timing.WARM_UP_MAX_CALLS


def test_warm_up_gives_the_median_call_so_slow_first_calls_do_not_shorten_the_blocks(monkeypatch):
    durations = iter([3e-3, 3e-3] + [1e-3] * 50)
    clock = [0.0]
    monkeypatch.setattr(timing, "settle", lambda: True)
    monkeypatch.setattr(timing, "minor_faults", lambda: 0)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def run() -> None:
        clock[0] += next(durations)

    assert timing.warm_up(run, seconds=0.012) == pytest.approx(1e-3)  # 8 calls; their mean is 1.5 ms


def test_provenance_names_the_commit_and_the_cpu(tmp_path: Path):
    assert provenance.commit(tmp_path).startswith("unknown")
    cpuinfo = "model name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 fma\n"
    assert provenance.cpu_model(cpuinfo) == "Some CPU 9000 (avx2 fma)"
    head = provenance.commit()
    if head.startswith("unknown"):
        pytest.skip("not a git checkout")
    assert len(head.split()[0]) == 12


@pytest.mark.parametrize("module", ["onnxruntime", "openvino"])
def test_deploy_runtime_peers_compute_the_temperature_softmax(module, tmp_path: Path):
    pytest.importorskip("onnx")
    pytest.importorskip(module)
    x = candidates.normal(0, (3, 5, 2, 2), 10)
    runs = peers.softmax_peer_runs(x, settings(repeat=1), tmp_path)
    names = {r.name for r in runs}
    assert {"onnxruntime": peers.ONNXRUNTIME_ROW, "openvino": peers.OPENVINO_ROW}[module] in names
    assert all(r.forward_backward is None for r in runs)
    # The check that guards each peer refuses one that computes something else.
    with pytest.raises(ToolError, match="does not compute"):
        peers.checked("wrong", x, 0.25, lambda: None, lambda: peers.numpy_softmax(x, 0.5))


@pytest.mark.parametrize("argv, message", [
    (["--max-spread", "1"], "--max-spread must be > 1"),
    (["--retries", "-1"], "--retries must be >= 0"),
])
def test_bad_policing_options_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
