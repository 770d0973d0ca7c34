"""SoftmaxWithInfogainLoss through pycaffe: training, a numpy reference, and
agreement with stock InfogainLoss and SoftmaxWithLoss."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "prototxt" / "infogain_train_example.prototxt"
IGNORE = 255
SHAPE = (2, 4, 3, 5)  # N x C x H x W, softmax over axis 1

NetFactory = Callable[..., Any]


def dims(shape: tuple[int, ...]) -> str:
    return " ".join(f"dim: {d}" for d in shape)


def loss_net(
    layer_type: str,
    params: str,
    *,
    with_h: bool = True,
    shape: tuple[int, ...] = SHAPE,
    axis: int = 1,
    force_backward: bool = True,
) -> str:
    """A net whose loss layer `layer_type` reads x, label [, H] from Input layers.

    Without force_backward, x passes through a learnable identity Scale: only
    a layer below the loss that needs a gradient makes Caffe run its backward.
    """
    label_shape = shape[:axis] + shape[axis + 1 :]
    channels = shape[axis]
    h_top = 'top: "H"' if with_h else ""
    h_shape = f"shape {{ dim: {channels} dim: {channels} }}" if with_h else ""
    h_bottom = 'bottom: "H"' if with_h else ""
    scores = "x"
    scale = ""
    if not force_backward:
        scores = "scores"
        scale = f"""layer {{ name: "scale" type: "Scale" bottom: "x" top: "{scores}"
  scale_param {{ axis: 0 num_axes: 0 filler {{ type: "constant" value: 1 }} }} }}"""
    return f"""
force_backward: {str(force_backward).lower()}
layer {{ name: "input" type: "Input" top: "x" top: "label" {h_top}
  input_param {{ shape {{ {dims(shape)} }} shape {{ {dims(label_shape)} }} {h_shape} }} }}
{scale}
layer {{ name: "loss" type: "{layer_type}" bottom: "{scores}" bottom: "label" {h_bottom}
  top: "loss" {params} }}
"""


def reference(
    x: np.ndarray, label: np.ndarray, h: np.ndarray, mode: str, axis: int = 1
) -> tuple[float, np.ndarray]:
    """docs/spec.md's loss and gradient (top diff 1), in float64."""
    x = np.moveaxis(x.astype(np.float64), axis, -1)
    z = x - x.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    valid = label != IGNORE
    rows = h[np.where(valid, label, 0).astype(int)] * valid[..., None]
    loss = -(rows * log_p).sum()
    grad = np.exp(log_p) * rows.sum(axis=-1, keepdims=True) - rows
    outer = int(np.prod(x.shape[:axis]))
    norm = {"FULL": label.size, "VALID": int(valid.sum()), "BATCH_SIZE": outer, "NONE": 1}[mode]
    norm = max(norm, 1)
    return loss / norm, np.moveaxis(grad / norm, -1, axis)


def random_inputs(
    rng: np.random.Generator, shape: tuple[int, ...] = SHAPE, axis: int = 1, ignored: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    channels = shape[axis]
    x = rng.normal(0, 2, shape).astype(np.float32)
    label = rng.integers(0, channels, shape[:axis] + shape[axis + 1 :]).astype(np.float32)
    if ignored:
        label.flat[::4] = IGNORE
    h = rng.uniform(0.0, 2.0, (channels, channels)).astype(np.float32)
    return x, label, h


def run(net: Any, x: np.ndarray, label: np.ndarray, h: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = label
    if h is not None:
        net.blobs["H"].data[...] = h
    loss = float(net.forward()["loss"])
    net.backward()
    return loss, net.blobs[net.bottom_names["loss"][0]].diff.copy()


@pytest.mark.parametrize(
    "loss_param, mode",
    [
        ("normalization: FULL", "FULL"),
        ("normalization: VALID", "VALID"),
        ("normalization: BATCH_SIZE", "BATCH_SIZE"),
        ("normalization: NONE", "NONE"),
        ("", "VALID"),
        ("normalize: true", "VALID"),
        ("normalize: false", "BATCH_SIZE"),
    ],
)
def test_matches_numpy_reference(make_net: NetFactory, loss_param: str, mode: str) -> None:
    x, label, h = random_inputs(np.random.default_rng(0))
    params = f"loss_param {{ ignore_label: {IGNORE} {loss_param} }}"
    net = make_net(loss_net("SoftmaxWithInfogainLoss", params))
    loss, grad = run(net, x, label, h)
    expected_loss, expected_grad = reference(x, label, h, mode)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert not grad[0, :, 0, 0].any()  # label.flat[0] is ignored


@pytest.mark.parametrize("channels", [5, 21, 31])
def test_short_rows_match_numpy_reference(make_net: NetFactory, channels: int) -> None:
    """Rows of at most 32 classes (inner = 1) go through transposed tiles of
    256 rows: 601 rows make two whole tiles and one of 89 rows (a vector
    remainder), with a -inf logit where H is 0, which must add nothing."""
    shape = (601, channels)
    x, label, h = random_inputs(np.random.default_rng(channels), shape=shape)
    label.flat[1::4] = channels - 1
    x[302, 0] = -np.inf
    h[int(label[302]), 0] = 0.0
    params = f"loss_param {{ ignore_label: {IGNORE} normalization: FULL }}"
    net = make_net(loss_net("SoftmaxWithInfogainLoss", params, shape=shape))
    loss, grad = run(net, x, label, h)
    finite = x.copy()
    finite[302, 0] = -1e4  # numpy's 0 * -inf is NaN; this adds the same 0
    expected_loss, expected_grad = reference(finite, label, h, "FULL")
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("channels", [8, 9, 21, 32, 33])
def test_matches_numpy_reference_for_each_class_table(make_net: NetFactory, channels: int) -> None:
    """With inner > 1 the float kernels look H[label, c] up in one to four
    register tables of 8 classes (up to 32 classes) and gather it beyond: each
    count of tables, on 35 positions (four vectors of 8 and a remainder)."""
    shape = (2, channels, 5, 7)
    x, label, h = random_inputs(np.random.default_rng(channels), shape=shape)
    label.flat[1::4] = channels - 1  # the last table's last class
    params = f"loss_param {{ ignore_label: {IGNORE} normalization: FULL }}"
    net = make_net(loss_net("SoftmaxWithInfogainLoss", params, shape=shape))
    loss, grad = run(net, x, label, h)
    expected_loss, expected_grad = reference(x, label, h, "FULL")
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("axis", [1, 3])
def test_equals_stock_infogain_loss(make_net: NetFactory, axis: int) -> None:
    x, label, h = random_inputs(np.random.default_rng(axis), axis=axis)
    params = f"infogain_loss_param {{ axis: {axis} }} loss_param {{ ignore_label: {IGNORE} }}"
    ours = run(make_net(loss_net("SoftmaxWithInfogainLoss", params, axis=axis)), x, label, h)
    # Stock InfogainLoss lets force_backward reach H, then refuses to
    # backpropagate to it: its net does without force_backward.
    stock_net = make_net(loss_net("InfogainLoss", params, axis=axis, force_backward=False))
    stock = run(stock_net, x, label, h)
    assert ours[0] == pytest.approx(stock[0], rel=1e-5)
    np.testing.assert_allclose(ours[1], stock[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("axis", [1, 3])
def test_identity_equals_stock_softmax_with_loss(make_net: NetFactory, caffe: Any, tmp_path: Path, axis: int) -> None:
    x, label, _ = random_inputs(np.random.default_rng(10 + axis), axis=axis)
    channels = SHAPE[axis]
    # H from `source` here, written the way a user would.
    source = tmp_path / "identity.binaryproto"
    source.write_bytes(caffe.io.array_to_blobproto(np.eye(channels, dtype=np.float32)[None, None]).SerializeToString())
    loss_param = f"loss_param {{ ignore_label: {IGNORE} }}"
    ours_params = f'infogain_loss_param {{ axis: {axis} source: "{source}" }} {loss_param}'
    stock_params = f"softmax_param {{ axis: {axis} }} {loss_param}"
    ours = run(make_net(loss_net("SoftmaxWithInfogainLoss", ours_params, with_h=False, axis=axis)), x, label)
    stock = run(make_net(loss_net("SoftmaxWithLoss", stock_params, with_h=False, axis=axis)), x, label)
    assert ours[0] == pytest.approx(stock[0], rel=1e-5)
    np.testing.assert_allclose(ours[1], stock[1], rtol=1e-4, atol=1e-6)


def test_training_example_lowers_the_loss(caffe: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    centers = np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    label = rng.integers(0, 3, 64)
    data = centers[label] + rng.normal(0, 0.7, (64, 2))
    h = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]])
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(
        f'net: "{EXAMPLE}"\nbase_lr: 0.1\nmomentum: 0.9\nlr_policy: "fixed"\n'
        'max_iter: 1000\ndisplay: 0\nsnapshot_after_train: false\nrandom_seed: 1\n'
    )
    solver = caffe.SGDSolver(str(solver_path))
    net = solver.net
    net.blobs["data"].data[...] = data
    net.blobs["label"].data[...] = label
    net.blobs["H"].data[...] = h
    initial = float(net.forward()["loss"])
    solver.step(200)
    final = float(net.forward()["loss"])
    # With partial credit the loss cannot reach 0: for label l it is smallest
    # at p = H[l] / sum(H[l]) (Gibbs' inequality).
    rows = h[label]
    floor = float(-(rows * np.log(np.where(rows > 0, rows / rows.sum(1, keepdims=True), 1))).sum(1).mean())
    assert final < 0.8 * initial
    assert final == pytest.approx(floor, abs=0.15)
    accuracy = (net.blobs["prob"].data.argmax(axis=1) == label).mean()
    assert accuracy > 0.9
