"""Fuzzing the command-line tools with hypothesis: no exception escapes main().

Contract (each tool's epilog): exit 0 with its outputs written, or exit 2 (bad input,
a file that cannot be read or written) with exactly one line ``PROG: error: ...`` on stderr
and no output file. Inputs are byte-mutated real files and generated ones.
Derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caffe.proto import caffe_pb2
from caffe_temperature import add_temperature_cli as at
from caffe_temperature import calibrate, infogain

DATA = Path(__file__).resolve().parent / "data" / "add_temperature"
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def call(main, argv: list[str]) -> tuple[int, str, str]:
    """Run a tool's main(); only SystemExit (argparse) may leave it, as its exit status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def check_contract(code: int, stderr: str, prog: str, outputs: list[Path]) -> None:
    assert code in (0, 2), (code, stderr)
    if code == 0:
        assert all(path.is_file() for path in outputs), stderr
        return
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{prog}: error: "), stderr
    assert not any(path.exists() for path in outputs), stderr


# --------------------------------------------------------------------------
# Byte mutations


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dupline", "unicode", "number",
                                     "braces"]))
        at_ = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            i = min(at_, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at_:at_] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at_:at_ + draw(st.integers(1, 32))]
        elif kind == "truncate":
            del data[at_:]
        elif kind == "dupline":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines[i:i] = [lines[i]] * draw(st.integers(1, 3))
            data = bytearray(b"\n".join(lines))
        elif kind == "unicode":
            data[at_:at_] = draw(st.text(min_size=1, max_size=6)).encode("utf-8", "surrogatepass")
        elif kind == "number":
            huge = draw(st.sampled_from([b"9" * 400, b"1e999", b"-1e999", b"nan", b"-inf", b"0x7fffffffffffffffff",
                                         b"-2147483649", b"4294967296", b"1e-400", b"0"]))
            match = re.search(rb"-?\d+(\.\d+)?(e-?\d+)?", bytes(data[at_:]))
            if match:
                data[at_ + match.start():at_ + match.end()] = huge
            else:
                data[at_:at_] = huge
        elif kind == "braces":
            depth = draw(st.sampled_from([2, 50, 3000]))
            field = draw(st.sampled_from([b"layer", b"include", b"scale_param", b"filler", b"x"]))
            data[at_:at_] = field + b" { " * depth + b"}" * draw(st.sampled_from([0, depth]))
    return bytes(data)


# --------------------------------------------------------------------------
# add_temperature


NAMES = st.one_of(st.sampled_from(["prob", "prob_temperature", "fc8", "data", "loss", ""]),
                  st.text(max_size=6))
TYPES = st.sampled_from(["Softmax", "TemperatureSoftmax", "Scale", "SoftmaxWithLoss", "ReLU", "Input",
                         "a\nLoss", "Softmax "])


@st.composite
def generated_net(draw) -> bytes:
    net = caffe_pb2.NetParameter(name=draw(NAMES))
    if draw(st.booleans()):
        net.input.append("data")
        if draw(st.booleans()):
            net.input_dim.extend(draw(st.lists(st.integers(0, 9), max_size=5)))
    legacy = draw(st.integers(0, 4)) == 0
    for _ in range(draw(st.integers(0, 5))):
        if legacy:
            layer = net.layers.add(name=draw(NAMES))
            layer.type = draw(st.sampled_from([caffe_pb2.V1LayerParameter.SOFTMAX, caffe_pb2.V1LayerParameter.RELU,
                                               caffe_pb2.V1LayerParameter.SOFTMAX_LOSS]))
        else:
            layer = net.layer.add(name=draw(NAMES), type=draw(TYPES))
            if draw(st.booleans()):
                layer.scale_param.filler.type = draw(st.sampled_from(["constant", "gaussian"]))
                layer.scale_param.filler.value = draw(st.floats(width=32))
                layer.scale_param.num_axes = draw(st.integers(-1, 1))
                layer.param.add(lr_mult=draw(st.sampled_from([0.0, 1.0])))
        layer.bottom.extend(draw(st.lists(NAMES, max_size=2)))
        layer.top.extend(draw(st.lists(NAMES, max_size=2)))
    text = text_format.MessageToString(net, as_utf8=draw(st.booleans())).encode("utf-8")
    return draw(mutated(text)) if draw(st.booleans()) else text


def seed_files(extra: list[Path]) -> list[bytes]:
    return [path.read_bytes() for path in sorted(DATA.glob("*.prototxt")) + extra]


@pytest.fixture(scope="module")
def prototxt_seeds(caffe, caffe_source_dir) -> list[bytes]:
    return seed_files(sorted(caffe_source_dir.glob("models/*/deploy.prototxt")))


TEMPERATURES = st.sampled_from(["40", "1", "0.5", "1e-300", "1e300", "3.7"])


def run_add_temperature(data: bytes, draw) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "net.prototxt", Path(tmp) / "out.prototxt"
        source.write_bytes(data)
        argv = [str(source), "--T", draw(TEMPERATURES), "-o", str(output)]
        if draw(st.booleans()):
            argv.append("--fused")
        if draw(st.integers(0, 3)) == 0:
            argv += ["--layer", draw(NAMES.filter(lambda name: not name.startswith("-")))]
        code, _, stderr = call(at.main, argv)
        check_contract(code, stderr, at.PROG, [output])
        if code == 0:
            text_format.Parse(output.read_text(encoding="utf-8"), caffe_pb2.NetParameter())


# Regression inputs found by fuzzing (each used to abort the process or print two lines).
REGRESSIONS = [
    # V0 net whose bottom no earlier layer produces: UpgradeV0PaddingLayers LOG(FATAL) (abort).
    b'layers { layer { name: "l" type: "relu" } bottom: "x" top: "x" }',
    # V0 layer type Caffe does not know: UpgradeV0LayerType LOG(FATAL).
    b'input: "x" layers { layer { name: "l" type: "foo" } bottom: "x" top: "x" }',
    # 'layer' and 'layers' together: UpgradeV1Net LOG(FATAL).
    b'layer { name: "a" type: "Softmax" bottom: "x" top: "y" } layers { name: "b" type: RELU }',
    # Legacy net with too few input_dim: UpgradeNetInput reads past the end.
    b'input: "x" input: "y" input_dim: 1 layers { name: "s" type: SOFTMAX bottom: "x" top: "p" }',
    # A loss layer type with a line break: the error message spanned two lines.
    b'layer { name: "l" type: "a\\nLoss" bottom: "x" }',
    # Legacy net without Softmax: the 'upgraded' note and the error made two lines.
    b'layers { name: "l" type: RELU bottom: "x" top: "x" }',
    # Deeply nested braces.
    b'layer { include { ' * 3000,
]


@pytest.mark.parametrize("data", REGRESSIONS)
def test_add_temperature_regressions(data, caffe):
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "net.prototxt", Path(tmp) / "out.prototxt"
        source.write_bytes(data)
        code, _, stderr = call(at.main, [str(source), "--T", "2", "-o", str(output)])
        assert code == 2, stderr
        check_contract(code, stderr, at.PROG, [output])


@FUZZ
@given(data=st.data())
def test_add_temperature_mutated_real_files(prototxt_seeds, data):
    seed = data.draw(st.sampled_from(prototxt_seeds))
    run_add_temperature(data.draw(mutated(seed)), data.draw)


@FUZZ
@given(data=st.data())
def test_add_temperature_generated_nets(caffe, data):
    run_add_temperature(data.draw(generated_net()), data.draw)


def test_add_temperature_unwritable_output(caffe, tmp_path):
    source = tmp_path / "net.prototxt"
    source.write_bytes((DATA / "input_shape.prototxt").read_bytes())
    output = tmp_path / "missing" / "out.prototxt"
    code, _, stderr = call(at.main, [str(source), "--T", "2", "-o", str(output)])
    assert code == 2
    check_contract(code, stderr, at.PROG, [output])


# --------------------------------------------------------------------------
# calibrate and infogain: arrays of every kind, in files that may be corrupt

DTYPES = st.sampled_from(["f4", "f8", "f2", "i8", "u1", "?", "c8", "U3", "S2", "M8[s]", "O", [("a", "f4")]])


@st.composite
def arrays(draw, shape=None):
    dtype = np.dtype(draw(DTYPES)) if draw(st.integers(0, 2)) == 0 else np.dtype("f8")
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
    values = draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, -1.0, 0.5, np.nan, np.inf, -np.inf, 1e308, -1e308,
                                            3.0, 1e-320]), min_size=int(np.prod(shape)),
                           max_size=int(np.prod(shape))))
    base = np.array(values, dtype=np.float64).reshape(shape)
    with np.errstate(all="ignore"):
        if dtype.kind == "O":
            return base.astype(object)
        if dtype.fields is not None or dtype.kind in "USM":
            return np.zeros(shape, dtype=dtype)
        return base.astype(dtype)


def write_array(path: Path, array: np.ndarray, key: str) -> None:
    if path.suffix == ".npz":
        np.savez(path, **{key: array})
    elif path.suffix == ".h5":
        import h5py

        with h5py.File(path, "w") as archive:
            if array.dtype.kind in "OMU" or array.dtype.fields is not None:
                archive.create_dataset(key, data=np.zeros(array.shape, dtype="i4"))
            else:
                archive.create_dataset(key, data=array)
    else:
        np.save(path, array, allow_pickle=True)


@st.composite
def array_file(draw, directory: Path, stem: str, keys: list[str], shape=None) -> Path:
    path = directory / f"{stem}{draw(st.sampled_from(['.npy', '.npz', '.h5']))}"
    write_array(path, draw(arrays(shape)), draw(st.sampled_from(keys)))
    if draw(st.integers(0, 2)) == 0:
        raw = path.read_bytes()
        if path.suffix == ".h5":
            # libhdf5 itself segfaults on some corrupted metadata (no Python-level guard can help),
            # so HDF5 files are only truncated, which it detects.
            path.write_bytes(raw[:draw(st.integers(0, len(raw) - 1))])
        else:
            path.write_bytes(draw(mutated(raw)))
    return path


@FUZZ
@given(data=st.data())
def test_calibrate_fuzzed_inputs(data):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        n = data.draw(st.integers(0, 6))
        shape = data.draw(st.sampled_from([None, (n, 3), (n, 2, 1, 1)]))
        logits = data.draw(array_file(directory, "logits", ["logits", "scores", "other"], shape))
        labels = data.draw(array_file(directory, "labels", ["labels", "y", "other"],
                                      data.draw(st.sampled_from([None, (n,), (n, 1)]))))
        out = directory / "T.json"
        code, _, stderr = call(calibrate.main, ["--logits", str(logits), "--labels", str(labels),
                                                "--json", str(out)])
        check_contract(code, stderr, calibrate.PROG, [out])


def test_calibrate_regressions(tmp_path):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.array([0, 1]))
    for name, data in [("bad.npz", b"PK\x03\x04garbage"), ("bad.npy", b"PK\x03\x04garbage"),
                       ("bad.h5", b"\x89HDF\r\n\x1a\ngarbage")]:
        (tmp_path / name).write_bytes(data)
        out = tmp_path / "T.json"
        code, _, stderr = call(calibrate.main, ["--logits", str(tmp_path / name), "--labels", str(labels),
                                                "--json", str(out)])
        assert code == 2, stderr
        check_contract(code, stderr, calibrate.PROG, [out])


CSV_TOKENS = st.sampled_from(["0", "1", "2.5", "-1", "nan", "inf", "1e999", "1e308", "0x10", "abc", "1_0", "",
                              "#", ",", "é", "1e-400", "9" * 40])


@st.composite
def csv_file(draw, directory: Path) -> Path:
    rows = draw(st.lists(st.lists(CSV_TOKENS, min_size=1, max_size=4), max_size=4))
    text = "\n".join(draw(st.sampled_from([",", " ", "\t"])).join(row) for row in rows)
    path = directory / "m.csv"
    path.write_bytes(draw(mutated(text.encode("utf-8"))) if draw(st.booleans()) else text.encode("utf-8"))
    return path


@FUZZ
@given(data=st.data())
def test_infogain_fuzzed_inputs(caffe, data):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if data.draw(st.booleans()):
            path = data.draw(csv_file(directory))
        else:
            path = directory / "m.npy"
            side = data.draw(st.integers(0, 3))
            write_array(path, data.draw(arrays(data.draw(st.sampled_from([None, (side, side)])))), "x")
            if data.draw(st.integers(0, 2)) == 0:
                path.write_bytes(data.draw(mutated(path.read_bytes())))
        out = directory / "H.binaryproto"
        command = data.draw(st.sampled_from([["matrix", "--csv"], ["cost", "--csv"], ["counts", "--labels"]]))
        argv = [*command, str(path), "-o", str(out)]
        if command[0] == "cost" and data.draw(st.booleans()):
            argv += ["--transform", "linear"]
        code, _, stderr = call(infogain.main, argv)
        check_contract(code, stderr, infogain.PROG, [out])
        if code == 0:
            h = infogain.read_binaryproto(out)
            assert np.all(np.isfinite(h)) and h.shape[0] == h.shape[1] >= 2


def test_infogain_regressions(caffe, tmp_path):
    cases = {"zip.npy": None, "struct.npy": np.zeros((2, 2), dtype=[("a", "f4")]),
             "dates.npy": np.zeros((2, 2), dtype="M8[s]")}
    np.savez(tmp_path / "zip.npz", a=np.eye(2))
    (tmp_path / "zip.npz").rename(tmp_path / "zip.npy")
    for name, array in cases.items():
        if array is not None:
            np.save(tmp_path / name, array)
    (tmp_path / "labels.txt").write_text("1e18 0 1")
    (tmp_path / "big.txt").write_text("1e300 0 1")
    argvs = [["matrix", "--csv", str(tmp_path / name)] for name in cases]
    argvs += [["counts", "--labels", str(tmp_path / "labels.txt")], ["counts", "--labels", str(tmp_path / "big.txt")]]
    for argv in argvs:
        out = tmp_path / "H.binaryproto"
        code, _, stderr = call(infogain.main, [*argv, "-o", str(out)])
        assert code == 2, (argv, stderr)
        check_contract(code, stderr, infogain.PROG, [out])
