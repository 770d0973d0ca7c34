"""caffe_temperature.prototxt: parse, render, upgrade and read nets, on protobuf alone where it can."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from caffe_temperature import prototxt
from caffe_temperature._cli import ToolError

DEPLOY = 'name: "d"\ninput: "x"\nlayer {\n  name: "p"\n  type: "Softmax"\n  bottom: "x"\n  top: "p"\n}\n'


def test_parse_and_render_round_trip() -> None:
    net = prototxt.parse_net(DEPLOY, "d.prototxt")
    assert [layer.name for layer in net.layer] == ["p"]
    assert prototxt.parse_net(prototxt.render(net), "again") == net


def test_parse_error_is_one_line_with_line_and_column() -> None:
    with pytest.raises(ToolError, match=r"^bad\.prototxt:2:\d+: cannot parse as a Caffe net: ") as error:
        prototxt.parse_net('name: "d"\nlayer { name: }', "bad.prototxt")
    assert "\n" not in str(error.value)


def test_not_utf8_names_the_byte() -> None:
    with pytest.raises(ToolError, match=r"x\.prototxt:2:3: not UTF-8 text \(byte 0xff\)"):
        prototxt.decode_text(b"a\nbc\xff", "x.prototxt")


def test_read_net_from_stdin() -> None:
    class Stdin:
        buffer = io.BytesIO(DEPLOY.encode())

    read = prototxt.read_net(Path("-"), Stdin)  # type: ignore[arg-type]
    assert read.source == "<stdin>" and not read.upgraded and read.data == DEPLOY.encode()


def test_read_net_upgrades_a_legacy_net(caffe, tmp_path: Path) -> None:
    path = tmp_path / "legacy.prototxt"
    path.write_text('input: "x" layers { name: "p" type: SOFTMAX bottom: "x" top: "p" }')
    read = prototxt.read_net(path)
    assert read.upgraded and [(layer.name, layer.type) for layer in read.net.layer] == [("p", "Softmax")]


def test_missing_file_and_bad_model_are_tool_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="cannot read .*absent.prototxt: No such file"):
        prototxt.read_net(tmp_path / "absent.prototxt")
    (tmp_path / "bad.caffemodel").write_bytes(b"\xff\xff\xff")
    with pytest.raises(ToolError, match="not a binary caffemodel"):
        prototxt.read_model(tmp_path / "bad.caffemodel")


def test_copy_net_is_independent() -> None:
    net = prototxt.parse_net(DEPLOY, "d")
    copy = prototxt.copy_net(net)
    copy.layer[0].name = "q"
    assert net.layer[0].name == "p"


def test_example_nets_are_found() -> None:
    for name in ("deploy_example.prototxt", "distill_student.prototxt", "distill_teacher.prototxt"):
        assert prototxt.example_path(name).is_file(), name
