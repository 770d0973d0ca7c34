"""add_temperature: the command line and each kind of net it must handle."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from caffe.proto import caffe_pb2
from caffe_temperature import add_temperature_cli as tool
from caffe_temperature import _cli
from caffe_temperature import rewrite
from caffe_temperature._cli import ToolError

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data" / "add_temperature"
SCRIPT = REPO / "python" / "add_temperature.py"


def parse(text: str) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    text_format.Parse(text, net)
    return net


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = tool.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def layer(net: caffe_pb2.NetParameter, name: str) -> caffe_pb2.LayerParameter:
    (found,) = [l for l in net.layer if l.name == name]
    return found


def scale_feeding(net: caffe_pb2.NetParameter, softmax_name: str) -> caffe_pb2.LayerParameter:
    """The one temperature Scale right in front of the Softmax, checked for shape."""
    index = [i for i, l in enumerate(net.layer) if l.name == softmax_name][0]
    scale = net.layer[index - 1]
    assert scale.type == "Scale"
    assert rewrite.is_temperature_scale(scale)
    assert rewrite.own_temperature_index(net, index) == index - 1
    assert scale.scale_param.num_axes == 0 and scale.scale_param.HasField("bias_term")
    assert not scale.scale_param.bias_term
    assert [(p.lr_mult, p.decay_mult) for p in scale.param] == [(0, 0)]
    return scale


def scales(net: caffe_pb2.NetParameter) -> list[caffe_pb2.LayerParameter]:
    return [l for l in net.layer if l.type == "Scale"]


SIMPLE = """
name: "Simple"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.fixture
def simple(tmp_path: Path) -> Path:
    path = tmp_path / "deploy.prototxt"
    path.write_text(SIMPLE)
    return path


def test_inserts_scale_before_softmax(capsys, simple):
    code, out, err = run_main(capsys, simple, "--T", "40")
    assert code == 0, err
    net = parse(out)
    assert [l.name for l in net.layer] == ["data", "ip", "prob_temperature", "prob"]
    scale = scale_feeding(net, "prob")
    assert scale.bottom == ["ip"] and scale.top == ["prob_temperature"]
    assert scale.scale_param.filler.type == "constant"
    assert scale.scale_param.filler.value == pytest.approx(0.025)
    assert layer(net, "prob").bottom == ["prob_temperature"] and layer(net, "prob").top == ["prob"]
    # everything else as it was
    original = parse(SIMPLE)
    for name in ("data", "ip"):
        assert layer(net, name) == layer(original, name)
    assert net.name == "Simple"
    assert "inserted Scale 'prob_temperature'" in err


def test_input_file_is_not_modified(capsys, simple):
    before = simple.read_bytes()
    assert run_main(capsys, simple, "--T", "3")[0] == 0
    assert simple.read_bytes() == before
    assert sorted(p.name for p in simple.parent.iterdir()) == ["deploy.prototxt"]


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_softmax_axis_is_kept(capsys, tmp_path, axis):
    path = tmp_path / "axis.prototxt"
    path.write_text(
        'layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }\n'
        f'layer {{ name: "sm" type: "Softmax" bottom: "x" top: "y" softmax_param {{ axis: {axis} }} }}\n'
    )
    for fused in ([], ["--fused"]):
        code, out, err = run_main(capsys, path, "--T", "2", *fused)
        assert code == 0, err
        softmax = layer(parse(out), "sm")
        assert softmax.softmax_param.axis == axis
        assert softmax.type == ("TemperatureSoftmax" if fused else "Softmax")


IN_PLACE = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "ip" }
layer { name: "after" type: "Power" bottom: "ip" top: "after" }
"""


def test_in_place_softmax(capsys, tmp_path):
    """An in-place Softmax gets an in-place Scale on the same blob: a Softmax that read a new
    blob and wrote the logits' name would make Caffe fail with "Top blob 'ip' produced by
    multiple sources"; scaling in place changes nothing but the values the Softmax overwrites."""
    path = tmp_path / "inplace.prototxt"
    path.write_text(IN_PLACE)
    code, out, err = run_main(capsys, path, "--T", "5")
    assert code == 0, err
    net = parse(out)
    assert [l.name for l in net.layer] == ["data", "ip", "prob_temperature", "prob", "after"]
    scale = scale_feeding(net, "prob")
    assert scale.bottom == ["ip"] and scale.top == ["ip"]
    assert layer(net, "prob").bottom == ["ip"] and layer(net, "prob").top == ["ip"]
    assert layer(net, "after") == layer(parse(IN_PLACE), "after")


SEVERAL = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" inner_product_param { num_output: 5 } }
layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" inner_product_param { num_output: 3 } }
layer { name: "prob_a" type: "Softmax" bottom: "a" top: "prob_a" }
layer { name: "prob_b" type: "Softmax" bottom: "b" top: "prob_b" }
layer { name: "acc" type: "Accuracy" bottom: "a" bottom: "data" top: "acc" }
"""


def test_several_softmax_layers(capsys, tmp_path):
    path = tmp_path / "several.prototxt"
    path.write_text(SEVERAL)
    code, out, err = run_main(capsys, path, "--T", "2")
    assert code == 0, err
    net = parse(out)
    assert [l.name for l in net.layer] == [
        "data", "a", "b", "prob_a_temperature", "prob_a", "prob_b_temperature", "prob_b", "acc"]
    assert scale_feeding(net, "prob_a").bottom == ["a"]
    assert scale_feeding(net, "prob_b").bottom == ["b"]
    # the Accuracy layer still reads the unscaled logits
    assert layer(net, "acc").bottom == ["a", "data"]


def test_layer_option_selects_softmax(capsys, tmp_path):
    path = tmp_path / "several.prototxt"
    path.write_text(SEVERAL)
    code, out, err = run_main(capsys, path, "--T", "2", "--layer", "prob_b")
    assert code == 0, err
    net = parse(out)
    assert [s.name for s in scales(net)] == ["prob_b_temperature"]
    assert layer(net, "prob_a") == layer(parse(SEVERAL), "prob_a")


@pytest.mark.parametrize(
    "name,message",
    [("nope", "no layer named 'nope'"), ("acc", "is a Accuracy layer, not a Softmax"),
     ("a", "not a Softmax")],
)
def test_layer_option_rejects_other_layers(capsys, tmp_path, name, message):
    path = tmp_path / "several.prototxt"
    path.write_text(SEVERAL)
    code, out, err = run_main(capsys, path, "--T", "2", "--layer", name, "-o", tmp_path / "out.prototxt")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.prototxt").exists()


def test_layer_option_refuses_loss_layer(capsys):
    code, _, err = run_main(capsys, DATA / "train_loss_only.prototxt", "--T", "2", "--layer", "loss")
    assert code == 2
    assert "loss layer" in err and "never touched" in err


def test_new_names_never_collide(capsys, tmp_path):
    path = tmp_path / "collide.prototxt"
    path.write_text(
        'layer { name: "data" type: "Input" top: "prob_temperature" input_param { shape { dim: 2 dim: 6 } } }\n'
        'layer { name: "prob_temperature_1" type: "InnerProduct" bottom: "prob_temperature" top: "ip" '
        "inner_product_param { num_output: 5 } }\n"
        'layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" include { phase: TEST } }\n'
        'layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" include { phase: TRAIN } }\n'
    )
    code, out, err = run_main(capsys, path, "--T", "2")
    assert code == 0, err
    net = parse(out)
    names = [s.name for s in scales(net)]
    assert names == ["prob_temperature_2", "prob_temperature_3"]
    assert [s.top[0] for s in scales(net)] == names
    # the Scale runs in the phases of its Softmax
    assert [s.include[0].phase for s in scales(net)] == [caffe_pb2.TEST, caffe_pb2.TRAIN]


@pytest.mark.parametrize("fixture", ["input_dim.prototxt", "input_shape.prototxt"])
def test_old_input_styles_are_kept(capsys, fixture):
    original = parse((DATA / fixture).read_text())
    code, out, err = run_main(capsys, DATA / fixture, "--T", "4")
    assert code == 0, err
    net = parse(out)
    assert list(net.input) == ["data"]
    assert list(net.input_dim) == list(original.input_dim)
    assert list(net.input_shape) == list(original.input_shape)
    assert scale_feeding(net, "prob").bottom == ["ip"]


@pytest.mark.parametrize("fixture", ["v1_legacy.prototxt", "v0_legacy.prototxt"])
def test_legacy_nets_are_upgraded_first(capsys, fixture):
    code, out, err = run_main(capsys, DATA / fixture, "--T", "4")
    assert code == 0, err
    assert "legacy" in err and "upgraded" in err
    net = parse(out)
    assert len(net.layers) == 0
    assert [(l.name, l.type) for l in net.layer if l.type != "Input"] == [
        ("ip", "InnerProduct"), ("prob_temperature", "Scale"), ("prob", "Softmax")]
    assert scale_feeding(net, "prob").scale_param.filler.value == pytest.approx(0.25)


def test_comments_and_odd_whitespace(capsys):
    code, out, err = run_main(capsys, DATA / "comments_whitespace.prototxt", "--T", "4")
    assert code == 0, err
    net = parse(out)
    assert net.name == "Odd"
    assert [l.name for l in net.layer] == ["data", "ip", "prob_temperature", "prob"]


def test_parse_error_names_line_and_column(capsys, tmp_path):
    out_file = tmp_path / "out.prototxt"
    code, out, err = run_main(capsys, DATA / "broken.prototxt", "--T", "4", "-o", out_file)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "broken.prototxt:6:3:" in lines[0] and '"tpo"' in lines[0]
    assert not out_file.exists()


def test_non_utf8_input_is_a_one_line_error(capsys, tmp_path):
    path = tmp_path / "latin1.prototxt"
    path.write_bytes(b'name: "x"\nlayer { name: "caf\xe9" }\n')
    code, _, err = run_main(capsys, path, "--T", "4")
    assert code == 2
    assert "latin1.prototxt:2:19:" in err and len(err.strip().splitlines()) == 1


def test_loss_only_net_exits_2(capsys, tmp_path):
    original = (DATA / "train_loss_only.prototxt").read_bytes()
    target = tmp_path / "train.prototxt"
    target.write_bytes(original)
    code, out, err = run_main(capsys, target, "--T", "4", "--in-place")
    assert code == 2 and out == ""
    assert "temperature belongs in the deploy net" in err
    assert target.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.prototxt"]


def test_no_softmax_at_all_exits_2(capsys, tmp_path):
    path = tmp_path / "nosoftmax.prototxt"
    path.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }')
    code, _, err = run_main(capsys, path, "--T", "4")
    assert code == 2 and "no Softmax" in err


def test_loss_layers_next_to_softmax_are_untouched(capsys, tmp_path):
    text = (DATA / "train_loss_only.prototxt").read_text() + (
        'layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }\n'
    )
    path = tmp_path / "trainval.prototxt"
    path.write_text(text)
    code, out, err = run_main(capsys, path, "--T", "4")
    assert code == 0, err
    net, original = parse(out), parse(text)
    for name in ("loss", "infogain", "ip"):
        assert layer(net, name) == layer(original, name)
    assert scale_feeding(net, "prob").bottom == ["ip"]
    assert "loss layers left as they are" in err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "abc", ""])
def test_bad_temperature(capsys, simple, value):
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(simple), f"--T={value}"])
    assert exit_info.value.code == 2
    assert "T must be" in capsys.readouterr().err
    with pytest.raises(ToolError):
        tool.rewrite_net(parse(SIMPLE), float(value) if value not in ("", "abc") else -1.0)


def test_output_file(capsys, simple, tmp_path):
    out_file = tmp_path / "out.prototxt"
    code, out, _ = run_main(capsys, simple, "--T", "4", "-o", out_file)
    assert code == 0 and out == ""
    assert scale_feeding(parse(out_file.read_text()), "prob")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.prototxt", "out.prototxt"]


def test_output_keeps_permissions_of_existing_file(capsys, simple, tmp_path):
    out_file = tmp_path / "out.prototxt"
    out_file.write_text("old")
    out_file.chmod(0o640)
    assert run_main(capsys, simple, "--T", "4", "-o", out_file)[0] == 0
    assert out_file.stat().st_mode & 0o777 == 0o640


def test_output_onto_input_is_refused(capsys, simple):
    before = simple.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(simple), "--T", "4", "-o", str(simple)])
    assert exit_info.value.code == 2 and "--in-place" in capsys.readouterr().err
    assert simple.read_bytes() == before


def test_in_place_keeps_bak(capsys, simple):
    before = simple.read_bytes()
    code, out, _ = run_main(capsys, simple, "--T", "4", "--in-place")
    assert code == 0 and out == ""
    assert (simple.parent / "deploy.prototxt.bak").read_bytes() == before
    assert scale_feeding(parse(simple.read_text()), "prob")
    assert sorted(p.name for p in simple.parent.iterdir()) == ["deploy.prototxt", "deploy.prototxt.bak"]


def test_in_place_and_output_exclude_each_other(capsys, simple, tmp_path):
    with pytest.raises(SystemExit):
        tool.main([str(simple), "--T", "4", "--in-place", "-o", str(tmp_path / "x")])
    assert "not allowed with" in capsys.readouterr().err


def test_write_failure_leaves_no_file(capsys, simple, tmp_path, monkeypatch):
    out_file = tmp_path / "out.prototxt"
    out_file.write_text("old contents")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_cli.os, "replace", failing_replace)
    code, _, err = run_main(capsys, simple, "--T", "4", "-o", out_file)
    assert code == 2 and "cannot write" in err
    assert out_file.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.prototxt", "out.prototxt"]


def test_unwritable_directory_is_exit_2(capsys, simple, tmp_path):
    code, _, err = run_main(capsys, simple, "--T", "4", "-o", tmp_path / "missing" / "out.prototxt")
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_missing_input_is_exit_2(capsys, tmp_path):
    code, _, err = run_main(capsys, tmp_path / "absent.prototxt", "--T", "4")
    assert code == 2 and "cannot read" in err


def test_stdin(capsys, monkeypatch):
    import io

    class Stdin:
        buffer = io.BytesIO(SIMPLE.encode())

    monkeypatch.setattr(sys, "stdin", Stdin)
    code, out, _ = run_main(capsys, "-", "--T", "4")
    assert code == 0 and scale_feeding(parse(out), "prob")


# ---------------------------------------------------------------- re-running


def run_text(capsys, tmp_path, text: str, *argv: str) -> str:
    path = tmp_path / "in.prototxt"
    path.write_text(text)
    code, out, err = run_main(capsys, path, *argv)
    assert code == 0, err
    return out


@pytest.mark.parametrize("text", [SIMPLE, IN_PLACE, SEVERAL])
def test_rerun_changes_temperature(capsys, tmp_path, text):
    once = run_text(capsys, tmp_path, text, "--T", "40")
    twice = run_text(capsys, tmp_path, once, "--T", "20")
    direct = run_text(capsys, tmp_path, text, "--T", "20")
    assert twice == direct
    assert [s.scale_param.filler.value for s in scales(parse(twice))] == [pytest.approx(0.05)] * text.count("Softmax")


@pytest.mark.parametrize("text", [SIMPLE, IN_PLACE, SEVERAL])
def test_temperature_one_removes_the_scale(capsys, tmp_path, text):
    once = run_text(capsys, tmp_path, text, "--T", "40")
    assert parse(run_text(capsys, tmp_path, once, "--T", "1")) == parse(text)
    assert parse(run_text(capsys, tmp_path, text, "--T", "1")) == parse(text)


def test_temperature_one_on_a_plain_net_says_why_nothing_changed(capsys, tmp_path):
    path = tmp_path / "in.prototxt"
    path.write_text(SEVERAL)
    code, _, err = run_main(capsys, path, "--T", "1")
    assert code == 0
    softmax_names = [l.name for l in parse(SEVERAL).layer if l.type == "Softmax"]
    assert [line for line in err.splitlines() if "T = 1" in line] == [
        f"{tool.PROG}: Softmax {name!r}: T = 1, a plain Softmax (nothing to insert)" for name in softmax_names]


def test_fused(capsys, tmp_path):
    out = parse(run_text(capsys, tmp_path, SIMPLE, "--T", "40", "--fused"))
    assert [l.name for l in out.layer] == ["data", "ip", "prob"]
    prob = layer(out, "prob")
    assert prob.type == "TemperatureSoftmax" and prob.bottom == ["ip"] and prob.top == ["prob"]
    assert prob.scale_param.filler.type == "constant"
    assert prob.scale_param.filler.value == pytest.approx(0.025)


def test_fused_and_scale_forms_convert_into_each_other(capsys, tmp_path):
    scaled = run_text(capsys, tmp_path, SIMPLE, "--T", "40")
    fused = run_text(capsys, tmp_path, scaled, "--T", "10", "--fused")
    assert fused == run_text(capsys, tmp_path, SIMPLE, "--T", "10", "--fused")
    assert run_text(capsys, tmp_path, fused, "--T", "40") == scaled
    assert parse(run_text(capsys, tmp_path, fused, "--T", "1")) == parse(SIMPLE)


def test_a_users_own_scale_is_not_mistaken_for_the_temperature(capsys, tmp_path):
    text = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "learned" type: "Scale" bottom: "data" top: "scaled" scale_param { num_axes: 0 } }
layer { name: "prob" type: "Softmax" bottom: "scaled" top: "prob" }
"""
    net = parse(run_text(capsys, tmp_path, text, "--T", "4"))
    assert [l.name for l in net.layer] == ["data", "learned", "prob_temperature", "prob"]
    assert layer(net, "learned") == layer(parse(text), "learned")


# ---------------------------------------------------------------- --weights


def caffemodel(path: Path, layers: dict[str, list[float]], double: bool = False) -> Path:
    """A model of SIMPLE: the InnerProduct 'ip' (5 x 6 weights, 5 biases) and the given blobs."""
    model = caffe_pb2.NetParameter(name="Simple")
    ip = model.layer.add(name="ip", type="InnerProduct")
    for shape in ([5, 6], [5]):
        blob = ip.blobs.add()
        blob.shape.dim.extend(shape)
        blob.data.extend([0.5] * math.prod(shape))
    for name, values in layers.items():
        entry = model.layer.add(name=name, type="Scale")
        blob = entry.blobs.add()
        blob.shape.dim.extend([] if len(values) == 1 else [len(values)])
        (blob.double_data if double else blob.data).extend(values)
    path.write_bytes(model.SerializeToString())
    return path


def read_model(path: Path) -> caffe_pb2.NetParameter:
    return caffe_pb2.NetParameter.FromString(path.read_bytes())


def stored(path: Path, name: str) -> list[float]:
    """The values a model stores for layer ``name``; none where it has no such layer."""
    entries = [l for l in read_model(path).layer if l.name == name]
    assert len(entries) <= 1
    return [v for entry in entries for blob in entry.blobs for v in (list(blob.double_data) or list(blob.data))]


def test_weights_with_stale_temperature_are_refused(capsys, tmp_path):
    scaled = tmp_path / "scaled.prototxt"
    scaled.write_text(run_text(capsys, tmp_path, SIMPLE, "--T", "40"))
    weights = caffemodel(tmp_path / "T40.caffemodel", {"prob_temperature": [0.025]})
    before = weights.read_bytes()
    out_file = tmp_path / "T20.prototxt"
    code, out, err = run_main(capsys, scaled, "--T", "20", "--weights", weights, "-o", out_file)
    assert code == 2 and out == ""
    assert "prob_temperature" in err and "--weights-out" in err and "T = 40" in err
    assert not out_file.exists() and weights.read_bytes() == before


def test_weights_are_updated_with_weights_out(capsys, tmp_path):
    scaled = tmp_path / "scaled.prototxt"
    scaled.write_text(run_text(capsys, tmp_path, SIMPLE, "--T", "40"))
    weights = caffemodel(tmp_path / "T40.caffemodel", {"prob_temperature": [0.025]})
    before = weights.read_bytes()
    new = tmp_path / "T20.caffemodel"
    code, out, err = run_main(capsys, scaled, "--T", "20", "--weights", weights, "--weights-out", new)
    assert code == 0, err
    assert stored(new, "prob_temperature") == [pytest.approx(0.05)]
    assert weights.read_bytes() == before
    assert scale_feeding(parse(out), "prob").scale_param.filler.value == pytest.approx(0.05)


def test_weights_for_a_newly_inserted_scale_are_checked(capsys, tmp_path, simple):
    """A model that stores a blob under the name the new Scale gets would override its filler."""
    weights = caffemodel(tmp_path / "old.caffemodel", {"prob_temperature": [0.5]}, double=True)
    assert run_main(capsys, simple, "--T", "4", "--weights", weights)[0] == 2
    new = tmp_path / "new.caffemodel"
    assert run_main(capsys, simple, "--T", "4", "--weights", weights, "--weights-out", new)[0] == 0
    assert stored(new, "prob_temperature") == [0.25]


def test_weights_that_agree_pass(capsys, tmp_path, simple):
    weights = caffemodel(tmp_path / "ok.caffemodel", {"prob_temperature": [0.25]})
    code, out, err = run_main(capsys, simple, "--T", "4", "--weights", weights)
    assert code == 0, err


def test_weights_with_non_scalar_blob_are_refused(capsys, tmp_path, simple):
    weights = caffemodel(tmp_path / "odd.caffemodel", {"prob_temperature": [0.25, 0.5]})
    code, _, err = run_main(capsys, simple, "--T", "4", "--weights", weights,
                            "--weights-out", tmp_path / "new.caffemodel")
    assert code == 2 and "not the one scalar" in err
    assert not (tmp_path / "new.caffemodel").exists()


def test_weights_of_a_removed_scale_are_dropped(capsys, tmp_path):
    scaled = tmp_path / "scaled.prototxt"
    scaled.write_text(run_text(capsys, tmp_path, SIMPLE, "--T", "40"))
    weights = caffemodel(tmp_path / "T40.caffemodel", {"prob_temperature": [0.025]})
    new = tmp_path / "T1.caffemodel"
    assert run_main(capsys, scaled, "--T", "1", "--weights", weights, "--weights-out", new)[0] == 0
    assert stored(new, "prob_temperature") == []


def test_weights_that_are_not_a_model(capsys, tmp_path, simple):
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\xff\xff\xff\xff garbage")
    code, _, err = run_main(capsys, simple, "--T", "4", "--weights", bad)
    assert code == 2 and "not a binary caffemodel" in err


def test_weights_out_needs_weights_and_a_new_file(capsys, tmp_path, simple):
    with pytest.raises(SystemExit):
        tool.main([str(simple), "--T", "4", "--weights-out", str(tmp_path / "x.caffemodel")])
    weights = caffemodel(tmp_path / "w.caffemodel", {})
    with pytest.raises(SystemExit):
        tool.main([str(simple), "--T", "4", "--weights", str(weights), "--weights-out", str(weights)])
    capsys.readouterr()


def test_rerun_without_weights_warns_about_saved_models(capsys, tmp_path):
    scaled = run_text(capsys, tmp_path, SIMPLE, "--T", "40")
    path = tmp_path / "scaled.prototxt"
    path.write_text(scaled)
    _, _, err = run_main(capsys, path, "--T", "20")
    assert "--weights" in err and "prob_temperature" in err


def test_notes_say_where_the_net_runs(capsys, simple):
    _, _, err = run_main(capsys, simple, "--T", "40")
    assert "runs on Caffe as it is" in err and "OpenCV" in err and "--weights-out" in err
    _, _, err = run_main(capsys, simple, "--T", "40", "--fused")
    assert "only on Caffe with this plugin" in err and "--form power" in err
    _, _, err = run_main(capsys, simple, "--T", "1")
    assert "OpenCV" not in err  # no Scale, nothing a model needs


def test_weights_out_stores_a_missing_temperature(capsys, tmp_path, simple):
    weights = caffemodel(tmp_path / "plain.caffemodel", {})
    code, _, err = run_main(capsys, simple, "--T", "4", "--weights", weights)
    assert code == 0 and "stores no 1/T for Scale 'prob_temperature'" in err and "--weights-out" in err
    new = tmp_path / "T4.caffemodel"
    code, _, err = run_main(capsys, simple, "--T", "4", "--weights", weights, "--weights-out", new)
    assert code == 0 and "stored 1/T = 0.25 for Scale 'prob_temperature'" in err
    model = read_model(new)
    (scale,) = [l for l in model.layer if l.name == "prob_temperature"]
    assert scale.type == "Scale" and scale.bottom == ["ip"] and scale.scale_param.filler.value == 0.25
    (blob,) = scale.blobs
    assert list(blob.data) == [0.25] and not blob.HasField("shape")  # the scalar as Caffe's net.save writes it
    assert stored(new, "ip") == stored(weights, "ip")


def test_fused_copy_drops_the_scale_blob_and_stores_nothing(capsys, tmp_path):
    scaled = tmp_path / "scaled.prototxt"
    scaled.write_text(run_text(capsys, tmp_path, SIMPLE, "--T", "40"))
    weights = caffemodel(tmp_path / "T40.caffemodel", {"prob_temperature": [0.025]})
    new = tmp_path / "fused.caffemodel"
    assert run_main(capsys, scaled, "--T", "20", "--fused", "--weights", weights, "--weights-out", new)[0] == 0
    assert stored(new, "prob_temperature") == [] and stored(new, "ip") == stored(weights, "ip")


def v1_caffemodel(path: Path) -> Path:
    """SIMPLE's 'ip' in the V1 format of BVLC's zoo models (legacy 4-D blob dims)."""
    model = caffe_pb2.NetParameter(name="Simple")
    ip = model.layers.add(name="ip", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    for dims in ((1, 1, 5, 6), (1, 1, 1, 5)):
        ip.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3], data=[0.5] * math.prod(dims))
    path.write_bytes(model.SerializeToString())
    return path


def test_a_v1_model_is_upgraded_to_hold_the_scale(capsys, tmp_path, simple):
    weights = v1_caffemodel(tmp_path / "v1.caffemodel")
    new = tmp_path / "T4.caffemodel"
    code, _, err = run_main(capsys, simple, "--T", "4", "--weights", weights, "--weights-out", new)
    assert code == 0 and "legacy (V0/V1 'layers') model" in err
    model = read_model(new)
    assert not model.layers and [l.name for l in model.layer] == ["ip", "prob_temperature"]
    assert [b.height for b in model.layer[0].blobs] == [5, 1] and stored(new, "prob_temperature") == [0.25]


def model_of_another_net(path: Path, case: str) -> Path:
    model = read_model(caffemodel(path, {}))
    ip = model.layer[0]
    if case == "renamed":
        ip.name = "fc"
    elif case == "num_output":
        ip.blobs[0].shape.dim[0] = 7
    else:
        del ip.blobs[1:]
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("case, message", [
    ("renamed", "it has no layer 'ip' (the net's InnerProduct) holding weights"),
    ("num_output", "its layer 'ip' holds blobs of shape 7 x 6, 5, the net's InnerProduct has num_output 5 and a bias"),
    ("no_bias", "its layer 'ip' holds blobs of shape 5 x 6, the net's InnerProduct"),
])
def test_a_model_of_another_net_is_refused(capsys, tmp_path, simple, case, message):
    weights = model_of_another_net(tmp_path / "other.caffemodel", case)
    out, new = tmp_path / "out.prototxt", tmp_path / "new.caffemodel"
    code, stdout, err = run_main(capsys, simple, "--T", "4", "-o", out, "--weights", weights, "--weights-out", new)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "does not belong to this net" in err and message in err
    assert not out.exists() and not new.exists()


# ---------------------------------------------------------------- entry points


def env() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "python"), environment.get("PYTHONPATH", "")) if p)
    return environment


def test_script_runs_and_help_has_an_example(tmp_path, simple):
    result = subprocess.run([sys.executable, str(SCRIPT), str(simple), "--T", "40"],
                            capture_output=True, text=True, env=env(), check=False)
    assert result.returncode == 0, result.stderr
    assert scale_feeding(parse(result.stdout), "prob")
    usage = subprocess.run([sys.executable, str(SCRIPT), "--help"],
                           capture_output=True, text=True, env=env(), check=False)
    assert usage.returncode == 0
    assert "example:" in usage.stdout and "--T 40" in usage.stdout


@pytest.mark.parametrize("command, prog", [
    ([sys.executable, "-m", "caffe_temperature.add_temperature_cli"], "python -m caffe_temperature.add_temperature_cli"),
    ([sys.executable, str(SCRIPT)], "add_temperature.py"),
    ([str(REPO / "build" / "bin" / "caffe-add-temperature")], "caffe-add-temperature"),
])
def test_each_entry_point_names_itself_and_exits_2(command, prog):
    if not Path(command[0]).exists():
        pytest.skip(f"{command[0]} is not built")
    result = subprocess.run([*command, str(DATA / "broken.prototxt"), "--T", "2"],
                            capture_output=True, text=True, env=env(), check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "broken.prototxt:6:3:" in result.stderr
    assert result.stderr.startswith(f"{prog}: error: "), result.stderr
