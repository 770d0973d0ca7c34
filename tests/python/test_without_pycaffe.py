"""The tools that need only numpy, protobuf and scipy, in a Python where pycaffe cannot be imported.

The child Python blocks ``import caffe`` and, as a Caffe-free wheel would, provides Caffe's
generated protobuf module as ``caffe_temperature._caffe_pb2`` (loaded here from pycaffe's
file, which needs protobuf only).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from caffe_temperature import add_temperature_cli

DEPLOY = ('name: "d" input: "x" input_shape { dim: 1 dim: 3 }\n'
          'layer { name: "p" type: "Softmax" bottom: "x" top: "p" }\n')
LEGACY = 'input: "x" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1\n' \
         'layers { name: "p" type: SOFTMAX bottom: "x" top: "p" }\n'


def caffe_pb2_file() -> Path:
    spec = importlib.util.find_spec("caffe")
    if spec is None or spec.origin is None:
        pytest.skip("pycaffe is not installed: nothing to take caffe_pb2 from")
    return Path(spec.origin).parent / "proto" / "caffe_pb2.py"


def run_without_pycaffe(code: str, tmp_path: Path, packaged_pb2: bool = True) -> subprocess.CompletedProcess[str]:
    prelude = textwrap.dedent(f"""
        import importlib.util, sys
        sys.modules["caffe"] = None  # import caffe raises ImportError
        if {packaged_pb2!r}:
            spec = importlib.util.spec_from_file_location("caffe_temperature._caffe_pb2", {str(caffe_pb2_file())!r})
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules["caffe_temperature._caffe_pb2"] = module
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_pure_tools_import_and_run_without_pycaffe(tmp_path: Path) -> None:
    (tmp_path / "deploy.prototxt").write_text(DEPLOY)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "logits.npy", rng.normal(0, 3, (40, 4)))
    np.save(tmp_path / "labels.npy", rng.integers(0, 4, 40))
    result = run_without_pycaffe("""
        from caffe_temperature import add_temperature_cli, calibrate, infogain, sampling
        codes = [
            add_temperature_cli.main(["deploy.prototxt", "--T", "40", "-o", "out.prototxt"]),
            sampling.main(["logits.npy", "--T", "0.5", "--seed", "1", "-o", "draws.npy"]),
            infogain.main(["counts", "900", "90", "10", "-o", "H.binaryproto"]),
            calibrate.main(["--logits", "logits.npy", "--labels", "labels.npy", "--json", "T.json"]),
        ]
        assert sys.modules["caffe"] is None and "caffe.proto" not in sys.modules
        print(codes)
    """, tmp_path)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "[0, 0, 0, 0]", result.stderr
    expected = tmp_path / "expected.prototxt"
    assert add_temperature_cli.main([str(tmp_path / "deploy.prototxt"), "--T", "40", "-o", str(expected)]) == 0
    assert (tmp_path / "out.prototxt").read_text() == expected.read_text()
    assert np.load(tmp_path / "draws.npy").shape == (40,)
    assert (tmp_path / "H.binaryproto").stat().st_size > 0 and (tmp_path / "T.json").is_file()


def test_legacy_net_without_pycaffe_says_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "legacy.prototxt").write_text(LEGACY)
    result = run_without_pycaffe("""
        from caffe_temperature import add_temperature_cli
        sys.exit(add_temperature_cli.main(["legacy.prototxt", "--T", "40", "-o", "out.prototxt"]))
    """, tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "legacy (V0/V1 'layers') net" in result.stderr and "upgrade_net_proto_text" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.prototxt").exists()


def test_no_caffe_pb2_at_all_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "deploy.prototxt").write_text(DEPLOY)
    result = run_without_pycaffe("""
        from caffe_temperature import add_temperature_cli
        sys.exit(add_temperature_cli.main(["deploy.prototxt", "--T", "40", "-o", "out.prototxt"]))
    """, tmp_path, packaged_pb2=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "Caffe's protobuf module is missing" in result.stderr and "Traceback" not in result.stderr


def test_tools_that_need_pycaffe_say_so(tmp_path: Path) -> None:
    result = run_without_pycaffe("""
        from caffe_temperature import demo
        sys.exit(demo.main([]))
    """, tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "the demo needs pycaffe" in result.stderr
