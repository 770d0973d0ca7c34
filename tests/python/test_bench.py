"""The benchmark script: a tiny run end to end, and its stock distillation
composition, which is only a fair baseline if it computes the same loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caffe_temperature import bench

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULT_KEYS = {
    "group", "shape", "elements", "candidate", "baseline", "repeats", "forward_ms", "forward_backward_ms",
    "forward_speedup", "forward_backward_speedup", "forward_gb_per_s", "forward_backward_gb_per_s", "value",
}


def distillation_net(make_net, layers: str, student: np.ndarray, teacher: np.ndarray):
    net = make_net(bench.distillation_net(student.shape, layers))
    net.blobs["student"].data[...] = student
    net.blobs["teacher"].data[...] = teacher
    net.forward()
    net.backward()
    return net


@pytest.mark.parametrize("shape", [(16, 10), (3, 5, 4, 6)])
@pytest.mark.parametrize("temperature", [1.0, 4.0, 40.0])
def test_stock_distillation_composition_equals_layer(make_net, shape, temperature):
    student, teacher = bench.distillation_data(shape)
    positions = student.size // shape[1]
    stock, ours = (
        distillation_net(make_net, c.layers, student, teacher)
        for c in bench.distillation_candidates(1.0 / temperature, positions)
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
    argv = ["--shapes", "8x10", "2x3x4x5", "--repeat", "2", "--json", str(out), "--plot", str(png)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"settings", "results"}
    results = report["results"]
    assert {r["group"] for r in results} == set(bench.LAYER_GROUPS)
    assert {r["shape"] for r in results} == {"8x10", "2x3x4x5"}
    for r in results:
        assert set(r) == RESULT_KEYS
        assert r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 and r["forward_gb_per_s"] > 0
        assert r["repeats"] == 2
    for shape in ("8x10", "2x3x4x5"):
        values = {r["candidate"]: r["value"] for r in results if r["group"] == "distillation" and r["shape"] == shape}
        assert values[bench.DISTILLATION_BASELINE] == pytest.approx(values[bench.DISTILLATION_LAYER], rel=1e-4)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert "SoftmaxWithDistillationLoss" in capsys.readouterr().out


def test_infogain_skipped_where_h_is_too_big():
    assert bench.skip_reason("infogain", (2, bench.MAX_INFOGAIN_CHANNELS + 1)) is not None
    assert bench.skip_reason("distillation", (2, 32000)) is None


def test_big_shapes_get_fewer_repeats():
    assert bench.repeats_for((64, 10), 25) == 25
    assert bench.repeats_for((1024, 32000), 25) == 3
    assert bench.repeats_for((1024, 32000), 2) == 2


def test_slope_of_linear_times_is_one():
    sizes = [1000, 4000, 16000]
    assert bench.fit_slope(sizes, [2e-3 * n for n in sizes]) == pytest.approx(1.0)


def test_gpu_refused_on_cpu_only_caffe(caffe):
    if bench.caffe_has_gpu():
        pytest.skip("this Caffe has CUDA")
    with pytest.raises(SystemExit, match="CPU-only"):
        bench.load_caffe("gpu")


def test_traffic_counts_each_byte_that_must_move():
    n, c = 256, 1000
    elements = n * c
    assert bench.traffic_bytes("softmax", (n, c)) == (4 * 2 * elements, 4 * 5 * elements)
    assert bench.traffic_bytes("distillation", (n, c)) == (4 * 2 * elements, 4 * 5 * elements)
    # 256 labels pick at most 256 of H's 1000 rows; 4096 labels may pick all of them.
    rows = 256 * c
    assert bench.traffic_bytes("infogain", (n, c)) == (
        4 * (elements + n + rows), 4 * (3 * elements + 2 * n + 2 * rows))
    assert bench.traffic_bytes("infogain", (4096, c))[0] == 4 * (4096 * c + 4096 + c * c)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_bad_temperature_is_a_usage_error(capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--T", value])
    assert exit_info.value.code == 2
    assert "T must be" in capsys.readouterr().err
