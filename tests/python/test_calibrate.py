"""python -m caffe_temperature.calibrate: fitting T, metrics, files, a real pycaffe model, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import log_softmax

from caffe_temperature import calibrate, calibration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HIDDEN = 32

TRAIN_NET = f"""
name: "DigitsMLP"
layer {{ name: "input" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: 64 dim: 64 }} shape {{ dim: 64 }} }} }}
layer {{ name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
  inner_product_param {{ num_output: {HIDDEN} weight_filler {{ type: "msra" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }}
layer {{ name: "logits" type: "InnerProduct" bottom: "fc1" top: "logits"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" top: "loss" }}
"""

DEPLOY_NET = f"""
name: "DigitsMLP"
layer {{ name: "input" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 64 }} }} }}
layer {{ name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
  inner_product_param {{ num_output: {HIDDEN} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }}
layer {{ name: "logits" type: "InnerProduct" bottom: "fc1" top: "logits"
  inner_product_param {{ num_output: 10 }} }}
layer {{ name: "prob" type: "Softmax" bottom: "logits" top: "prob" }}
"""


def overconfident(seed: int, factor: float, n: int = 20_000, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the logits handed out are factor * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, classes))
    p = np.exp(log_softmax(z, axis=1))
    labels = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return factor * z, np.minimum(labels, classes - 1)


def save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


# --------------------------------------------------------------------------
# The maths


@pytest.mark.parametrize("factor", [0.5, 2.5, 4.0])
def test_fit_recovers_the_overconfidence_factor(factor: float) -> None:
    logits, labels = overconfident(seed=int(factor * 10), factor=factor)
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(factor, rel=0.03)


def test_calibrated_logits_fit_t_near_1() -> None:
    logits, labels = overconfident(seed=1, factor=1.0)
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.03)


def test_nll_is_stable_for_huge_logits() -> None:
    logits = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, 0.0]])
    assert calibration.nll(logits, np.array([0, 1])) == 0.0
    # -log p: 2e4 for the first row, 1e4 for the second; their mean.
    assert calibration.nll(logits, np.array([1, 0])) == pytest.approx(1.5e4, rel=1e-12)


def test_ece_and_bins_by_hand() -> None:
    # Two examples at confidence 0.9 (one right), one at 0.6 (right).
    logits = np.log(np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]]))
    labels = np.array([0, 1, 1])
    bins = calibration.reliability(logits, labels, 1.0)
    assert len(bins.count) == 15 and sum(bins.count) == 3
    expected = (2 / 3) * abs(0.5 - 0.9) + (1 / 3) * abs(1.0 - 0.6)
    assert calibration.calibration_error(bins) == pytest.approx(expected)
    # Confidence exactly 1.0 lands in the last bin, (14/15, 1].
    top = calibration.reliability(np.array([[100.0, -100.0]]), np.array([0]), 1.0)
    assert top.count[-1] == 1


# --------------------------------------------------------------------------
# Command line on files


def test_cli_writes_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logits, labels = overconfident(seed=2, factor=3.0, n=5000)
    out_json, out_png = tmp_path / "T.json", tmp_path / "rel.png"
    argv = ["--logits", str(save(tmp_path / "L.npy", logits)), "--labels", str(save(tmp_path / "Y.npy", labels)),
            "--json", str(out_json), "--plot", str(out_png)]
    assert calibrate.main(argv) == 0
    result = json.loads(out_json.read_text())
    assert result["temperature"] == pytest.approx(3.0, rel=0.05)
    assert result["after"]["nll"] < result["before"]["nll"]
    assert result["after"]["ece"] < result["before"]["ece"] / 3
    assert result["after"]["accuracy"] == result["before"]["accuracy"]
    assert result["examples"] == 5000 and result["classes"] == 10 and result["bins"] == 15
    assert out_png.read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert f"fitted T = {result['temperature']:.6g}" in out


def test_cli_reads_npz_with_caffe_style_float_labels(tmp_path: Path) -> None:
    logits, labels = overconfident(seed=3, factor=2.0, n=3000)
    path = tmp_path / "val.npz"
    np.savez(path, logits=logits[:, :, None, None].astype(np.float32), labels=labels.astype(np.float32))
    out = tmp_path / "T.json"
    assert calibrate.main(["--logits", str(path), "--labels", str(path), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["temperature"] == pytest.approx(2.0, rel=0.05)


def bad_cases(tmp_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    logits = np.random.default_rng(0).normal(size=(6, 3))
    labels = np.array([0, 1, 2, 0, 1, 2])
    nan = logits.copy()
    nan[2, 1] = np.nan
    inf = logits.copy()
    inf[4, 0] = np.inf
    return {
        "lengths": (logits, labels[:5], "6 rows of logits but 5 labels"),
        "too_big": (logits, np.array([0, 1, 3, 0, 1, 2]), "labels[2] is 3: labels must be integers in [0, 3)"),
        "negative": (logits, np.array([0, -1, 2, 0, 1, 2]), "labels[1] is -1"),
        "fraction": (logits, np.array([0, 1, 1.5, 0, 1, 2]), "labels[2] is 1.5"),
        "nan": (nan, labels, "logits[2, 1] is nan: logits must be finite"),
        "inf": (inf, labels, "logits[4, 0] is inf"),
        "one_class": (logits[:, :1], labels, "at least 1 example and 2 classes"),
        "shape": (logits[None], labels, "logits must be N x C"),
    }


@pytest.mark.parametrize("case", ["lengths", "too_big", "negative", "fraction", "nan", "inf", "one_class", "shape"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    logits, labels, message = bad_cases(tmp_path)[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    argv = ["--logits", str(save(inputs / "L.npy", logits)), "--labels", str(save(inputs / "Y.npy", labels)),
            "--json", str(tmp_path / "T.json"), "--plot", str(tmp_path / "rel.png")]
    assert calibrate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


def test_unreadable_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = save(tmp_path / "Y.npy", np.array([0, 1]))
    (tmp_path / "garbage.npy").write_bytes(b"not numpy")
    assert calibrate.main(["--logits", str(tmp_path / "garbage.npy"), "--labels", str(labels)]) == 2
    assert "cannot read logits" in capsys.readouterr().err
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    assert calibrate.main(["--logits", str(tmp_path / "garbage.h5"), "--labels", str(labels)]) == 2
    assert "cannot read logits" in capsys.readouterr().err


def test_cli_reads_hdf5_as_caffe_stores_it(tmp_path: Path) -> None:
    import h5py

    logits, labels = overconfident(seed=4, factor=3.0, n=3000)
    path = tmp_path / "val.h5"
    with h5py.File(path, "w") as archive:
        archive["logits"] = logits.astype(np.float32)
        archive["label"] = labels.astype(np.float32)
    out = tmp_path / "T.json"
    assert calibrate.main(["--logits", str(path), "--labels", str(path), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["temperature"] == pytest.approx(3.0, rel=0.05)


def test_argument_errors_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        calibrate.main(["--logits", "L.npy"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        calibrate.main(["--logits", "L.npy", "--labels", "Y.npy", "--apply", "deploy.prototxt"])
    assert exit_info.value.code == 2


# --------------------------------------------------------------------------
# A real model: a small MLP trained on scikit-learn's digits in pycaffe


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Trains 64-32-10 on 400 digits until it is over-confident; returns paths and held-out data."""
    import caffe

    import caffe_temperature  # noqa: F401
    from caffe.proto import caffe_pb2
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    caffe.set_mode_cpu()
    work = tmp_path_factory.mktemp("digits")
    x, y = load_digits(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x.astype(np.float32) / 16.0, y, train_size=400, stratify=y, random_state=0)
    (work / "train.prototxt").write_text(TRAIN_NET)
    (work / "deploy.prototxt").write_text(DEPLOY_NET)
    solver_param = caffe_pb2.SolverParameter(
        net=str(work / "train.prototxt"), base_lr=0.1, momentum=0.9, lr_policy="fixed",
        max_iter=1500, display=0, random_seed=3, solver_mode=caffe_pb2.SolverParameter.CPU)
    (work / "solver.prototxt").write_text(str(solver_param))
    solver = caffe.SGDSolver(str(work / "solver.prototxt"))
    rng = np.random.default_rng(0)
    for _ in range(solver_param.max_iter):
        batch = rng.choice(len(x_train), 64, replace=False)
        solver.net.blobs["data"].data[...] = x_train[batch]
        solver.net.blobs["label"].data[...] = y_train[batch]
        solver.step(1)
    weights = work / "model.caffemodel"
    solver.net.save(str(weights))
    return {"work": work, "deploy": work / "deploy.prototxt", "weights": weights, "x": x_rest, "y": y_rest}


def test_real_model_calibration_does_not_hurt(digits_model: dict[str, Any], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "val.npz"
    np.savez(data, data=digits_model["x"], labels=digits_model["y"])
    out_json = tmp_path / "T.json"
    argv = ["--deploy", str(digits_model["deploy"]), "--weights", str(digits_model["weights"]),
            "--data", str(data), "--batch-size", "100", "--json", str(out_json)]
    assert calibrate.main(argv) == 0
    result = json.loads(out_json.read_text())
    assert result["examples"] == len(digits_model["y"])
    assert result["before"]["accuracy"] > 0.85
    assert result["after"]["accuracy"] == result["before"]["accuracy"]
    assert result["after"]["nll"] <= result["before"]["nll"]
    # Trained to near-zero training loss, the net is over-confident on held-out digits.
    assert result["temperature"] > 1.05
    assert "blob 'logits'" in result["source"]
    assert "forward" in capsys.readouterr().err  # the tqdm progress bar


def test_real_model_apply_gives_softmax_of_logits_over_t(digits_model: dict[str, Any], tmp_path: Path) -> None:
    import caffe

    x, y = digits_model["x"], digits_model["y"]
    net = caffe.Net(str(digits_model["deploy"]), caffe.TEST, weights=str(digits_model["weights"]))
    logits = calibrate.forward_logits(net, "data", "logits", x, 256, quiet=True)
    files = tmp_path / "files.npz"
    np.savez(files, logits=logits, labels=y)
    out = tmp_path / "calibrated.prototxt"
    out_json = tmp_path / "T.json"
    argv = ["--logits", str(files), "--labels", str(files), "--json", str(out_json),
            "--apply", str(digits_model["deploy"]), "-o", str(out)]
    assert calibrate.main(argv) == 0
    temperature = json.loads(out_json.read_text())["temperature"]
    calibrated = caffe.Net(str(out), caffe.TEST, weights=str(digits_model["weights"]))
    probs = calibrate.forward_logits(calibrated, "data", "prob", x[:50], 50, quiet=True)
    expected = np.exp(log_softmax(logits[:50].astype(np.float64) / temperature, axis=1))
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert 'type: "Scale"' in out.read_text()
    # Fitting again on the calibrated net (the default blob sits behind its Scale) gives the same T.
    data = tmp_path / "val.npz"
    np.savez(data, data=x, labels=y)
    again = tmp_path / "again.json"
    assert calibrate.main(["--deploy", str(out), "--weights", str(digits_model["weights"]), "--data", str(data),
                           "--quiet", "--json", str(again)]) == 0
    assert json.loads(again.read_text())["temperature"] == pytest.approx(temperature, rel=1e-3)


def test_real_model_apply_with_weights_out_runs_in_opencv(digits_model: dict[str, Any], tmp_path: Path) -> None:
    """--weights-out stores the fitted 1/T in a copy of the model, so OpenCV (no fillers) runs the net."""
    import cv2

    def opencv(prototxt: Path, weights: Path, blob: str) -> np.ndarray:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
        net.setInput(digits_model["x"][:100].astype(np.float32))
        return net.forward(blob).astype(np.float64)

    data = tmp_path / "val.npz"
    np.savez(data, data=digits_model["x"], labels=digits_model["y"])
    out, model, out_json = tmp_path / "calibrated.prototxt", tmp_path / "calibrated.caffemodel", tmp_path / "T.json"
    argv = ["--deploy", str(digits_model["deploy"]), "--weights", str(digits_model["weights"]), "--data", str(data),
            "--quiet", "--json", str(out_json), "--apply", str(digits_model["deploy"]), "-o", str(out),
            "--weights-out", str(model)]
    assert calibrate.main(argv) == 0
    temperature = json.loads(out_json.read_text())["temperature"]
    logits = opencv(digits_model["deploy"], digits_model["weights"], "logits")
    expected = np.exp(log_softmax(logits / temperature, axis=1))
    assert np.abs(opencv(out, model, "prob") - expected).max() <= 1e-6


def test_weights_out_needs_apply_weights_and_a_new_file(tmp_path: Path) -> None:
    files = ["--logits", "L.npy", "--labels", "Y.npy"]
    for extra in (["--weights", "m.caffemodel", "--weights-out", "n.caffemodel"],
                  ["--apply", "d.prototxt", "-o", "o.prototxt", "--weights-out", "n.caffemodel"]):
        with pytest.raises(SystemExit) as exit_info:
            calibrate.main(files + extra)
        assert exit_info.value.code == 2
    weights = tmp_path / "m.caffemodel"
    weights.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        calibrate.main(files + ["--apply", "d.prototxt", "-o", "o.prototxt", "--weights", str(weights),
                                "--weights-out", str(weights)])
    assert exit_info.value.code == 2
