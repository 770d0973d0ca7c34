"""The benchmark script: a tiny run end to end, and its stock distillation
composition, which is only a fair baseline if it computes the same loss."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from caffe_temperature import bench
from caffe_temperature._cli import ToolError
from caffe_temperature.bench import candidates, cli, report, timing
from caffe_temperature.prototxt import render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULT_KEYS = {
    "group", "shape", "elements", "candidate", "baseline", "threads", "repeats", "calls_per_block", "forward_ms",
    "forward_backward_ms", "forward_speedup", "forward_backward_speedup", "forward_gb_per_s",
    "forward_backward_gb_per_s", "forward_vs_limit", "forward_backward_vs_limit", "value",
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
    assert set(report) == {"settings", "results"}
    assert report["settings"]["threads"] == [1]
    results = report["results"]
    assert {r["group"] for r in results} == set(candidates.LAYER_GROUPS)
    assert {r["shape"] for r in results} == {"8x10", "2x3x4x5"}
    for r in results:
        assert set(r) == RESULT_KEYS
        assert r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 and r["forward_gb_per_s"] > 0
        assert r["repeats"] == 2 and r["calls_per_block"] >= 1 and r["threads"] == 1
    for shape in ("8x10", "2x3x4x5"):
        values = {r["candidate"]: r["value"] for r in results if r["group"] == "distillation" and r["shape"] == shape}
        assert values[candidates.DISTILLATION_BASELINE] == pytest.approx(values[candidates.DISTILLATION_LAYER],
                                                                         rel=1e-4)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert "SoftmaxWithDistillationLoss" in capsys.readouterr().out


def test_each_group_has_a_limit_and_an_overhead_row_from_the_same_run(capsys):
    results, _ = timing.run_all([(4, 6)], list(candidates.LAYER_GROUPS), settings(repeat=3))
    for group in candidates.LAYER_GROUPS:
        rows = {r.candidate: r for r in results if r.group == group}
        limit, overhead = rows[timing.limit_label(group)], rows[timing.OVERHEAD_ROW]
        assert limit.forward_ms > 0 and limit.forward_backward_ms > 0
        assert overhead.forward_ms > 0 and overhead.forward_backward_ms > 0 and overhead.value is None
        assert limit.forward_vs_limit == 1 and limit.forward_backward_vs_limit == 1
        for r in rows.values():  # every figure as a multiple of this group's own limit row
            assert r.forward_vs_limit == pytest.approx(r.forward_ms / limit.forward_ms)
            assert r.forward_backward_vs_limit == pytest.approx(r.forward_backward_ms / limit.forward_backward_ms)
            assert r.forward_speedup == pytest.approx(rows[r.baseline].forward_ms / r.forward_ms)
    report.print_table(results, [], sys.stdout)
    table = capsys.readouterr().out
    assert timing.LIMIT_ROW in table and timing.OVERHEAD_ROW in table
    assert timing.limit_label("distillation") in table  # its own limit: two softmaxes' worth of exps


def test_distillation_limit_makes_twice_the_forward_passes():
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
        runs = timing.limit_runs(Native, group, (3, 5), 0.25, "base")
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


def test_runs_are_warmed_up_then_timed_in_blocks_that_take_turns():
    order: list[str] = []
    runs = [lambda: order.append("a"), lambda: order.append("b")]
    timings = timing.median_ms(runs, 3, 1e-3)
    assert all(t.ms > 0 and t.calls_per_block > 1 for t in timings)
    # Each block: one untimed call, to bring the run's data back into cache,
    # then calls_per_block timed ones; a's block, then b's, three times.
    a, b = (t.calls_per_block + 1 for t in timings)
    blocks = order[-3 * (a + b):]
    assert blocks == (["a"] * a + ["b"] * b) * 3


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
    assert timing.repeats_for((1024, 32000), 25) == 3
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
    assert capsys.readouterr().err.splitlines() == [f"{cli.PROG}: error: argument --T: T must be "
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
