"""python -m caffe_temperature.infogain: building, checking and writing H."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from caffe_temperature import infogain
from caffe_temperature._cli import ToolError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path: Path, matrix: np.ndarray) -> Path:
    path.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in matrix) + "\n")
    return path


def cli(argv: list[str]) -> int:
    return infogain.main(argv)


def test_counts_are_balanced_inverse_frequency() -> None:
    counts = [900.0, 90.0, 10.0]
    h = infogain.from_counts(counts)
    weights = np.diag(h)
    np.testing.assert_allclose(weights, [1000 / (3 * 900), 1000 / (3 * 90), 1000 / (3 * 10)])
    assert np.count_nonzero(h - np.diag(weights)) == 0
    # Documented normalisation: sum_c n_c w_c = N, and each class weighs N / C in total.
    assert float(np.dot(counts, weights)) == pytest.approx(1000.0)
    np.testing.assert_allclose(np.multiply(counts, weights), 1000 / 3)


def test_counts_from_labels_file(tmp_path: Path) -> None:
    labels = np.array([0, 0, 0, 1, 2, 2])
    path = tmp_path / "labels.npy"
    np.save(path, labels)
    out = tmp_path / "H.binaryproto"
    assert cli(["counts", "--labels", str(path), "-o", str(out)]) == 0
    np.testing.assert_allclose(np.diag(infogain.read_binaryproto(out)), [6 / 9, 6 / 3, 6 / 6], rtol=1e-6)


def test_cost_exp_and_linear() -> None:
    d = np.array([[0.0, 1.0, 4.0], [1.0, 0.0, 2.0], [4.0, 2.0, 0.0]])
    np.testing.assert_allclose(infogain.from_cost(d, "exp", 2.0), np.exp(-d / 2.0))
    np.testing.assert_allclose(infogain.from_cost(d, "exp"), np.exp(-d / (14.0 / 6)))
    linear = infogain.from_cost(d, "linear")
    np.testing.assert_allclose(linear, 1 - d / 4.0)
    assert linear[0, 2] == 0 and np.all(np.diag(linear) == 1)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.ones((2, 3)), "square"),
        (np.ones((1, 1)), "at least 2 classes"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), r"\[0,1\] is nan, must be finite"),
        (np.array([[1.0, 0.0], [np.inf, 1.0]]), "must be finite"),
        (np.array([[1.0, -0.5], [0.0, 1.0]]), r"\[0,1\] is -0.5, must be >= 0"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), "row 1 is all zero"),
        (np.full((2, 2), 1e39), "too large for float32"),
    ],
)
def test_validate_refuses(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        infogain.validate(matrix)


def test_validate_checks_class_count() -> None:
    with pytest.raises(ToolError, match="H is 3 x 3 but --classes is 4"):
        infogain.validate(np.eye(3), classes=4)


@pytest.mark.parametrize(
    "cost, message",
    [
        (np.array([[1.0, 1.0], [1.0, 0.0]]), r"D\[0,0\] = 1"),
        (np.zeros((3, 3)), "all zero"),
        (np.array([[0.0, -1.0], [1.0, 0.0]]), ">= 0"),
    ],
)
def test_cost_refuses(cost: np.ndarray, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        infogain.from_cost(cost, "exp")


def test_binaryproto_round_trip(caffe: Any, tmp_path: Path) -> None:
    h = np.random.default_rng(0).uniform(0, 2, (6, 6))
    csv = write_csv(tmp_path / "H.csv", h)
    out = tmp_path / "H.binaryproto"
    assert cli(["matrix", "--csv", str(csv), "--classes", "6", "-o", str(out)]) == 0
    blob = caffe.proto.caffe_pb2.BlobProto()
    blob.ParseFromString(out.read_bytes())
    array = caffe.io.blobproto_to_array(blob)
    assert array.shape == (1, 1, 6, 6)
    np.testing.assert_allclose(array[0, 0], h.astype(np.float32))


def test_layer_reads_the_file_and_gives_the_reference_loss(
    make_net: Callable[..., Any], tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    classes, batch = 4, 8
    d = rng.uniform(0.5, 3.0, (classes, classes))
    d = d + d.T
    np.fill_diagonal(d, 0.0)
    csv = write_csv(tmp_path / "D.csv", d)
    source = tmp_path / "H.binaryproto"
    assert cli(["cost", "--csv", str(csv), "--scale", "1.5", "-o", str(source)]) == 0
    net = make_net(f"""
layer {{ name: "input" type: "Input" top: "x" top: "label"
  input_param {{ shape {{ dim: {batch} dim: {classes} }} shape {{ dim: {batch} }} }} }}
layer {{ name: "loss" type: "SoftmaxWithInfogainLoss" bottom: "x" bottom: "label" top: "loss"
  infogain_loss_param {{ source: "{source}" }} }}
""")
    x = rng.normal(0, 2, (batch, classes))
    label = rng.integers(0, classes, batch)
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = label
    loss = float(net.forward()["loss"])
    h = np.exp(-d / 1.5)
    log_p = x - x.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    expected = -(h[label] * log_p).sum() / batch
    assert loss == pytest.approx(expected, rel=1e-5)
    # Not the identity: the partial credit changes the loss.
    assert abs(loss - (-log_p[np.arange(batch), label].mean())) > 1e-2


def test_identity_print_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "H.png"
    assert cli(["identity", "--classes", "3", "--print", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "H (3 x 3):" in out and "[1. 0. 0.]" in out
    assert plot.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["counts", "10", "0", "5"], "class 1 has count 0"),
        (["identity", "--print"], "identity needs --classes"),
        (["identity", "--classes", "3"], "nothing to do"),
        (["matrix", "--csv", "MISSING.csv"], "cannot read"),
        (["matrix", "--csv", "{bad}"], "rows have different lengths"),
        (["matrix", "--csv", "{neg}", "--classes", "2"], "must be >= 0"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "bad.csv").write_text("1,0\n0\n")
    (tmp_path / "neg.csv").write_text("1,-1\n0,1\n")
    out = tmp_path / "H.binaryproto"
    plot = tmp_path / "H.png"
    argv = [a.format(bad=tmp_path / "bad.csv", neg=tmp_path / "neg.csv") for a in argv]
    if "nothing to do" not in message:
        argv += ["-o", str(out), "--plot", str(plot)]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not plot.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "neg.csv"]


def test_existing_output_is_replaced_atomically(tmp_path: Path) -> None:
    out = tmp_path / "H.binaryproto"
    out.write_bytes(b"old")
    assert cli(["identity", "--classes", "2", "-o", str(out)]) == 0
    np.testing.assert_array_equal(infogain.read_binaryproto(out), np.eye(2))
    assert [p.name for p in tmp_path.iterdir()] == ["H.binaryproto"]
