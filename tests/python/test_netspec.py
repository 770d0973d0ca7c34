"""Each layer written with pycaffe's NetSpec (docs/layers.md, "From Python: NetSpec") builds and computes."""

from __future__ import annotations

import numpy as np
import pytest

BATCH, CLASSES = 8, 10


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def netspec_net(caffe, tmp_path):
    """docs/layers.md's example net, H = identity from a binaryproto, plus stock SoftmaxWithLoss as a reference."""
    from caffe import layers as L

    h_file = tmp_path / "H.binaryproto"
    h_file.write_bytes(caffe.io.array_to_blobproto(np.eye(CLASSES)[None, None]).SerializeToString())
    n = caffe.NetSpec()
    n.logits, n.teacher, n.label = L.Input(shape=[dict(dim=[BATCH, CLASSES])] * 2 + [dict(dim=[BATCH])], ntop=3)
    n.prob = L.TemperatureSoftmax(n.logits, scale_param=dict(filler=dict(type="constant", value=0.025)))
    n.infogain = L.SoftmaxWithInfogainLoss(n.logits, n.label, infogain_loss_param=dict(source=str(h_file)),
                                           loss_param=dict(ignore_label=255))
    n.distill = L.SoftmaxWithDistillationLoss(n.logits, n.teacher, loss_weight=0.7,
                                              scale_param=dict(filler=dict(type="constant", value=0.25)))
    n.stock = L.SoftmaxWithLoss(n.logits, n.label)
    proto = n.to_proto()
    path = tmp_path / "net.prototxt"
    path.write_text(str(proto))
    return proto, caffe.Net(str(path), caffe.TEST)


def test_netspec_writes_the_parameters_into_stock_messages(netspec_net):
    proto, _ = netspec_net
    layers = {layer.name: layer for layer in proto.layer}
    assert layers["prob"].type == "TemperatureSoftmax"
    assert layers["prob"].scale_param.filler.type == "constant"
    assert layers["prob"].scale_param.filler.value == pytest.approx(0.025)
    assert layers["infogain"].loss_param.ignore_label == 255
    assert layers["distill"].loss_weight == [pytest.approx(0.7)]


def test_netspec_layers_compute_what_they_promise(netspec_net):
    _, net = netspec_net
    rng = np.random.default_rng(11)
    logits, teacher = rng.normal(size=(2, BATCH, CLASSES)) * 4
    label = rng.integers(0, CLASSES, size=BATCH)
    net.blobs["logits"].data[...] = logits
    net.blobs["teacher"].data[...] = teacher
    net.blobs["label"].data[...] = label
    net.forward()
    np.testing.assert_allclose(net.blobs["prob"].data, softmax(0.025 * logits), rtol=1e-5, atol=1e-7)
    # H = I: the stock SoftmaxWithLoss in the same net is the reference.
    assert float(net.blobs["infogain"].data) == pytest.approx(float(net.blobs["stock"].data), rel=1e-5)
    p, q = softmax(0.25 * teacher), softmax(0.25 * logits)
    kl = (p * (np.log(p) - np.log(q))).sum() / BATCH
    assert float(net.blobs["distill"].data) == pytest.approx(16 * kl, rel=1e-4)
