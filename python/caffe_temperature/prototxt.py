"""Caffe nets as protobuf messages: parse, render, upgrade, read from files.

Everything here runs on protobuf alone: ``load_caffe_pb2()`` takes Caffe's
generated ``caffe_pb2`` from pycaffe when it is importable, else the copy a
Caffe-free install of this package carries (``caffe_temperature._caffe_pb2``).
Only legacy (V0/V1, ``layers``) nets need more: Caffe's own upgrader, which
comes with pycaffe and the compiled plugin.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TextIO

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from caffe_temperature._cli import ToolError, load_native, read_bytes

if TYPE_CHECKING:
    from caffe.proto import caffe_pb2

PACKAGED_CAFFE_PB2 = "caffe_temperature._caffe_pb2"
EXAMPLES_DIR = "prototxt"


def load_caffe_pb2() -> ModuleType:
    """Caffe's generated protobuf module: pycaffe's, or the one packaged with a Caffe-free install."""
    try:
        from caffe.proto import caffe_pb2 as module
    except ImportError as caffe_error:
        try:
            return importlib.import_module(PACKAGED_CAFFE_PB2)
        except ImportError:
            raise ToolError(
                f"Caffe's protobuf module is missing: pycaffe cannot be imported ({caffe_error}) and this "
                f"install has no {PACKAGED_CAFFE_PB2}; install pycaffe, or caffe-temperature with pip (its "
                "wheels carry that module)"
            ) from None
    return module


def new_net() -> caffe_pb2.NetParameter:
    return load_caffe_pb2().NetParameter()


def copy_net(net: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    copy = type(net)()
    copy.CopyFrom(net)
    return copy


# --------------------------------------------------------------------------
# Text


def decode_text(data: bytes, source: str) -> str:
    """The prototxt as text; a file that is not UTF-8 is a one-line error with line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ToolError(f"{source}:{line}:{column}: not UTF-8 text (byte 0x{data[err.start]:02x})") from None


def parse_net(text: str, source: str) -> caffe_pb2.NetParameter:
    """Parse prototxt text; a syntax error becomes ``source:line:column: message`` on one line."""
    net = new_net()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as err:
        raise ToolError(format_parse_error(err, source)) from None
    except RecursionError:  # text_format's parser recurses once per nested message
        raise ToolError(f"{source}: cannot parse as a Caffe net: messages nested too deeply") from None
    return net


def format_parse_error(err: text_format.ParseError, source: str) -> str:
    line, column = err.GetLine(), err.GetColumn()
    message = " ".join(str(err).split())
    prefix = f"{line}:{column} : "
    if message.startswith(prefix):
        message = message[len(prefix):]
    where = f"{line}:{column}" if line is not None else "?:?"
    return f"{source}:{where}: cannot parse as a Caffe net: {message}"


def render(net: caffe_pb2.NetParameter) -> str:
    return text_format.MessageToString(net)


# --------------------------------------------------------------------------
# Legacy nets


def is_legacy(net: caffe_pb2.NetParameter) -> bool:
    """V0/V1 nets keep their layers in the deprecated ``layers`` field."""
    return len(net.layers) > 0


# V0 layer type names UpgradeV0LayerType knows (any other one is a LOG(FATAL) in Caffe).
V0_TYPES = frozenset((
    "accuracy", "bnll", "concat", "conv", "data", "dropout", "euclidean_loss", "flatten", "hdf5_data",
    "hdf5_output", "im2col", "images", "infogain_loss", "innerproduct", "lrn", "multinomial_logistic_loss",
    "pool", "relu", "sigmoid", "softmax", "softmax_loss", "split", "tanh", "window_data", "padding",
))


def check_upgradable(net: caffe_pb2.NetParameter, source: str) -> None:
    """Refuse, as a ToolError, the legacy nets on which Caffe's upgrader aborts the process.

    UpgradeNetAsNeeded LOG(FATAL)s (or CHECK-fails) on these instead of returning false,
    and reads past the end of input_shape / input_dim when they are too short.
    """
    if len(net.layer) > 0:
        raise ToolError(f"{source}: has both 'layer' (current) and 'layers' (legacy) entries; "
                        "Caffe refuses to upgrade such a net")
    if any(layer.HasField("layer") for layer in net.layers):
        check_v0_layers(net, source)
    inputs = len(net.input)
    if inputs and (0 < len(net.input_shape) < inputs
                   or (not net.input_shape and 0 < len(net.input_dim) < 4 * inputs)):
        raise ToolError(f"{source}: {inputs} input(s) but {len(net.input_shape)} input_shape and "
                        f"{len(net.input_dim)} input_dim entries (4 per input)")


def check_v0_layers(net: caffe_pb2.NetParameter, source: str) -> None:
    """What UpgradeV0PaddingLayers and UpgradeV0LayerType need of a V0 net."""
    last_top: dict[str, int | None] = {name: None for name in net.input}
    for index, connection in enumerate(net.layers):
        v0 = connection.layer
        if v0.HasField("type") and v0.type not in V0_TYPES:
            raise ToolError(f"{source}: legacy layer {index} has unknown V0 type {v0.type!r}")
        for blob in connection.bottom:
            if blob not in last_top:
                raise ToolError(f"{source}: legacy layer {index} reads blob {blob!r}, which no input "
                                "or earlier layer produces")
            source_index = last_top[blob]
            if source_index is not None and net.layers[source_index].layer.type == "padding":
                padding = net.layers[source_index]
                if (v0.type not in ("conv", "pool") or len(connection.bottom) != 1
                        or len(padding.bottom) != 1 or len(padding.top) != 1):
                    raise ToolError(f"{source}: legacy padding layer {source_index} must have one bottom "
                                    "and one top and feed a single-input conv or pool layer")
        for blob in connection.top:
            last_top[blob] = index


def caffe_upgrader(source: str) -> ModuleType:
    """The plugin's _native module, which runs Caffe's UpgradeNetAsNeeded; a ToolError without it."""
    return load_native(f"{source} is a legacy (V0/V1 'layers') net: upgrading it with Caffe's own upgrader",
                       ". Upgrade the net with Caffe's upgrade_net_proto_text tool, or run this where pycaffe "
                       "and the plugin are installed")


def upgrade_legacy(net: caffe_pb2.NetParameter, source: str) -> caffe_pb2.NetParameter:
    """Run Caffe's own upgrader (through the plugin's _native module) on a V0/V1 net."""
    check_upgradable(net, source)
    native = caffe_upgrader(source)
    try:
        serialized, _ = native.upgrade_net(net.SerializeToString(), source)
    except ValueError as err:
        raise ToolError(f"{source}: {err}") from None
    upgraded = type(net)()
    upgraded.ParseFromString(serialized)
    return upgraded


# --------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class NetFile:
    """A prototxt as read: the net (upgraded when it was legacy), its bytes and its name for messages."""

    net: caffe_pb2.NetParameter
    data: bytes
    source: str
    upgraded: bool


def read_source(path: Path, stdin: TextIO | None = None) -> tuple[bytes, str]:
    """The file's bytes and its name for messages; '-' is standard input."""
    if str(path) == "-":
        return (stdin or sys.stdin).buffer.read(), "<stdin>"
    return read_bytes(path), str(path)


def read_net(path: Path, stdin: TextIO | None = None) -> NetFile:
    """A prototxt net, legacy ones upgraded to the current format."""
    data, source = read_source(path, stdin)
    net = parse_net(decode_text(data, source), source)
    legacy = is_legacy(net)
    if legacy:
        net = upgrade_legacy(net, source)
    return NetFile(net, data, source, legacy)


def read_model(path: Path) -> caffe_pb2.NetParameter:
    """A binary .caffemodel, parsed from memory by protobuf's Python parser (no 64 MB message limit).

    (C++ protobuf's CodedInputStream had that default; Caffe and OpenCV lift it when they read a model.)
    """
    data = read_bytes(path)
    model = new_net()
    try:
        model.ParseFromString(data)
    except DecodeError as err:
        raise ToolError(f"{path}: not a binary caffemodel (caffe.NetParameter): {err}") from None
    return model


def example_path(name: str) -> Path:
    """One of the example nets: packaged with the module, or in the source tree's prototxt/."""
    packaged = Path(__file__).resolve().parent / EXAMPLES_DIR / name
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / EXAMPLES_DIR / name
