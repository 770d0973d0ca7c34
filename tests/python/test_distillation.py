"""SoftmaxWithDistillationLoss from pycaffe, and a shortened distill_digits run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax

from caffe_temperature import distill_digits

LOSS_NET = """
layer {{ name: "input" type: "Input" top: "student" top: "teacher"
        input_param {{ shape {{ dim: 6 dim: 5 }} shape {{ dim: 6 dim: 5 }} }} }}
layer {{ name: "distill" type: "SoftmaxWithDistillationLoss"
        bottom: "student" bottom: "teacher" top: "loss" top: "prob"
        scale_param {{ filler {{ type: "constant" value: {beta} }} }} }}
"""


def test_loss_matches_numpy(make_net) -> None:
    temperature = 3.0
    net = make_net(LOSS_NET.format(beta=1 / temperature))
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(0, 4, (2, 6, 5))
    net.blobs["student"].data[...] = student
    net.blobs["teacher"].data[...] = teacher
    net.forward()
    log_p = log_softmax(teacher / temperature, axis=1)
    log_q = log_softmax(student / temperature, axis=1)
    expected = temperature**2 * np.sum(np.exp(log_p) * (log_p - log_q)) / 6
    assert float(net.blobs["loss"].data) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(net.blobs["prob"].data, np.exp(log_q), atol=1e-6)


def test_configure_net_sets_weights_and_beta(caffe, tmp_path: Path) -> None:
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    out = distill_digits.configure_net(
        distill_digits.STUDENT_NET, tmp_path / "net.prototxt",
        {"SoftmaxWithLoss": 0.25, "SoftmaxWithDistillationLoss": 0.75}, 8.0)
    layers = {layer.type: layer for layer in
              text_format.Parse(out.read_text(), caffe_pb2.NetParameter()).layer}
    assert list(layers["SoftmaxWithLoss"].loss_weight) == [0.25]
    assert list(layers["SoftmaxWithDistillationLoss"].loss_weight) == [0.75]
    assert layers["SoftmaxWithDistillationLoss"].scale_param.filler.value == 0.125


class _NoProgress:
    def update(self, _: int) -> None:
        pass


def test_training_with_the_layer_lowers_the_distillation_loss(caffe, tmp_path: Path) -> None:
    data = distill_digits.load_digits(split_seed=0, train_size=300)
    teacher = distill_digits.train_teacher(
        caffe, data, distill_digits.TrainConfig(300, 64, 0.05, seed=1), tmp_path, _NoProgress())
    assert distill_digits.accuracy(teacher[1], data.y_test) > 0.85
    config = distill_digits.TrainConfig(200, 64, 0.05, seed=0)
    distilled, hard_only = (
        distill_digits.train_student(caffe, data, teacher, temperature, 0.7, 4.0, config,
                                     tmp_path, _NoProgress())
        for temperature in (4.0, None))
    assert distilled.distill_loss_after < 0.5 * distilled.distill_loss_before
    # Hard labels alone move the student towards the teacher less.
    assert distilled.distill_loss_after < hard_only.distill_loss_after


def test_main_shortened(caffe, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    assert distill_digits.main(["--quiet", "--seeds", "2", "--temperatures", "2", "--iters", "50",
                                "--teacher-iters", "100", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "4 students" in out and "hard labels only" in out and "distilled T=2" in out
    assert (workdir / "teacher_logits.npz").is_file()


@pytest.mark.parametrize("bad, message", [
    (["--temperatures", "0"], "temperatures must be finite and > 0"),
    (["--soft-weight", "1.5"], "--soft-weight must be in (0, 1]"),
    (["--seeds", "two"], "--seeds must be an integer"),
    (["--lr", "nan"], "--lr must be finite and > 0"),
    (["--train-size", "5"], "--train-size 5 of 1797 digits"),
    (["--workdir", "/proc/distill_digits"], "cannot make --workdir /proc/distill_digits"),
])
def test_bad_arguments_are_one_line_errors(caffe, capsys: pytest.CaptureFixture[str], bad: list[str],
                                           message: str) -> None:
    try:
        code = distill_digits.main(["--quiet", "--seeds", "1", "--iters", "1", "--teacher-iters", "1", *bad])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [f"{distill_digits.PROG}: error: {err.split('error: ', 1)[1].strip()}"]
    assert message in err and "Traceback" not in err, err
