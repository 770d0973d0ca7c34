"""add_temperature on the real prototxts shipped in Caffe's sources (models/, examples/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffe.proto import caffe_pb2
from caffe_temperature import rewrite as tool
from caffe_temperature import prototxt
from caffe_temperature._cli import ToolError

REPO = Path(__file__).resolve().parents[2]


def net_prototxts(root: Path) -> list[Path]:
    files = sorted(root.glob("models/*/*.prototxt")) + sorted(root.glob("examples/**/*.prototxt"))
    return [f for f in files if "solver" not in f.name]


def load(path: Path) -> caffe_pb2.NetParameter:
    net = prototxt.parse_net(path.read_text(), str(path))
    return prototxt.upgrade_legacy(net, str(path)) if prototxt.is_legacy(net) else net


def test_every_shipped_net(caffe_source_dir):
    files = net_prototxts(caffe_source_dir)
    assert len(files) > 20
    rewritten = 0
    for path in files:
        net = load(path)
        softmaxes = [layer.name for layer in net.layer if layer.type == "Softmax"]
        if not softmaxes:
            with pytest.raises(ToolError) as error:
                tool.rewrite_net(net, 40.0, source=str(path))
            if any(tool.is_loss(layer) for layer in net.layer):
                assert "temperature belongs in the deploy net" in str(error.value), path
            continue
        result = tool.rewrite_net(net, 40.0, source=str(path)).net
        rewritten += 1
        assert text_format.Parse(prototxt.render(result), caffe_pb2.NetParameter()) == result, path
        by_name = {layer.name: layer for layer in net.layer}
        for index, layer in enumerate(result.layer):
            if layer.type == "Softmax":
                scale = result.layer[index - 1]
                assert tool.is_temperature_scale(scale), path
                assert scale.scale_param.filler.value == pytest.approx(0.025)
                assert scale.bottom[0] == by_name[layer.name].bottom[0], path
            elif tool.is_loss(layer):
                assert layer == by_name[layer.name], path
        assert sum(layer.type == "Scale" for layer in result.layer) == len(softmaxes) + sum(
            layer.type == "Scale" for layer in net.layer), path
        assert [layer.name for layer in result.layer if layer.type != "Scale"] == [
            layer.name for layer in net.layer if layer.type != "Scale"], path
        assert tool.rewrite_net(result, 1.0).net == net, path
    assert rewritten >= 8


@pytest.mark.parametrize("relative", ["examples/mnist/lenet.prototxt", "examples/cifar10/cifar10_quick.prototxt"])
def test_shipped_deploy_nets_load_and_compute(caffe_source_dir, make_net, relative):
    text = (caffe_source_dir / relative).read_text()
    original = make_net(text)
    rng = np.random.default_rng(0)
    for blobs in original.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(scale=0.3, size=blob.data.shape)
    net = make_net(prototxt.render(tool.rewrite_net(load(caffe_source_dir / relative), 40.0).net))
    for name, blobs in original.params.items():
        for target, source in zip(net.params[name], blobs):
            target.data[...] = source.data
    x = rng.normal(size=original.blobs["data"].data.shape).astype(np.float32)
    for model in (original, net):
        model.blobs["data"].data[...] = x
        model.forward()
    logits_name = next(l.bottom[0] for l in load(caffe_source_dir / relative).layer if l.type == "Softmax")
    z = original.blobs[logits_name].data.astype(np.float64) * np.float32(1 / 40)
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.blobs["prob"].data, expected, rtol=2e-5, atol=1e-7)


def test_script_on_alexnet_and_a_train_net(caffe_source_dir):
    script = [sys.executable, str(REPO / "python" / "add_temperature.py")]
    deploy = caffe_source_dir / "models" / "bvlc_alexnet" / "deploy.prototxt"
    result = subprocess.run([*script, str(deploy), "--T", "40"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    net = text_format.Parse(result.stdout, caffe_pb2.NetParameter())
    assert [l.name for l in net.layer][-3:] == ["fc8", "prob_temperature", "prob"]
    train = caffe_source_dir / "models" / "bvlc_alexnet" / "train_val.prototxt"
    result = subprocess.run([*script, str(train), "--T", "40"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert "temperature belongs in the deploy net" in result.stderr
