"""Every tool keeps one command-line contract: bad numbers, missing files and unwritable outputs
are one line ``PROG: error: ...`` on stderr, exit status 2, no traceback and nothing written
(not even the outputs that could have been written); ``-o -`` is standard output."""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import io
import json
import os
import sys
import types
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from caffe.proto import caffe_pb2
from caffe_temperature import _cli, add_temperature_cli, calibrate, demo, distill_digits, infogain, sampling
from caffe_temperature.bench import cli as bench_cli

DEPLOY = ('name: "d" input: "x" input_shape { dim: 1 dim: 3 }\n'
          'layer { name: "p" type: "Softmax" bottom: "x" top: "p" }\n')

# tool -> (main, prog, {case: argv}); in argv, OUT is the output that must not appear,
# NODIR/OUT one in a directory that does not exist.
CASES: dict[str, tuple[Callable[..., int], str, dict[str, list[str]]]] = {
    "add_temperature": (add_temperature_cli.main, add_temperature_cli.PROG, {
        "bad_number": ["deploy.prototxt", "--T", "nan", "-o", "OUT"],
        "missing_file": ["missing.prototxt", "--T", "2", "-o", "OUT"],
        "unwritable_output": ["deploy.prototxt", "--T", "2", "-o", "NODIR/OUT"],
        "bad_form": ["deploy.prototxt", "--T", "2", "--form", "cube", "-o", "OUT"],
        "second_output_unwritable": ["deploy.prototxt", "-T", "2", "--weights", "model.caffemodel",
                                     "--weights-out", "OUT", "-o", "NODIR/OUT"],
        "in_place_with_unwritable_model": ["deploy.prototxt", "--temperature", "2", "--in-place",
                                           "--weights", "model.caffemodel", "--weights-out", "NODIR/OUT"],
        "two_outputs_one_file": ["deploy.prototxt", "--T", "2", "--weights", "model.caffemodel",
                                 "--weights-out", "OUT", "-o", "OUT"],
    }),
    "calibrate": (calibrate.main, calibrate.PROG, {
        "bad_number": ["--deploy", "deploy.prototxt", "--weights", "w", "--data", "d.npz", "--batch-size", "0"],
        "missing_file": ["--logits", "missing.npy", "--labels", "labels.npy", "--json", "OUT"],
        "unwritable_output": ["--logits", "logits.npy", "--labels", "labels.npy", "--json", "NODIR/OUT"],
        # the case: the net could be written, the JSON cannot
        "second_output_unwritable": ["--logits", "logits.npy", "--labels", "labels.npy", "--apply", "deploy.prototxt",
                                     "-o", "OUT", "--json", "NODIR/OUT"],
        "two_outputs_to_stdout": ["--logits", "logits.npy", "--labels", "labels.npy", "--apply", "deploy.prototxt",
                                  "-o", "-", "--json", "-"],
    }),
    "infogain": (infogain.main, infogain.PROG, {
        "bad_number": ["cost", "--csv", "cost.csv", "--scale", "-1", "-o", "OUT"],
        "missing_file": ["matrix", "--csv", "missing.csv", "-o", "OUT"],
        "unwritable_output": ["identity", "--classes", "3", "-o", "NODIR/OUT"],
        "second_output_unwritable": ["identity", "--classes", "3", "-o", "OUT", "--plot", "NODIR/OUT"],
    }),
    "sampling": (sampling.main, sampling.PROG, {
        "bad_number": ["logits.npy", "--T", "-1", "-o", "OUT"],
        "missing_file": ["missing.npy", "--T", "1", "-o", "OUT"],
        "unwritable_output": ["logits.npy", "--T", "1", "-o", "NODIR/OUT"],
    }),
    "bench": (bench_cli.main, bench_cli.PROG, {
        "bad_number": ["--T", "inf", "-o", "OUT"],
        "unwritable_output": ["--shapes", "4x5", "--json", "NODIR/OUT"],
        # checked before the timing: a tiny run would otherwise take seconds
        "second_output_unwritable": ["--shapes", "4x5", "--repeat", "1", "-o", "OUT", "--plot", "NODIR/OUT"],
        "two_outputs_to_stdout": ["--shapes", "4x5", "--repeat", "1", "-o", "-", "--plot", "-"],
        "two_outputs_one_file": ["--shapes", "4x5", "--repeat", "1", "-o", "OUT", "--plot", "OUT"],
    }),
    "demo": (demo.main, demo.PROG, {
        "bad_number": ["--T", "0"],
        "missing_file": ["--deploy", "missing.prototxt"],
    }),
    "distill_digits": (distill_digits.main, distill_digits.PROG, {
        "bad_number": ["--lr", "0", "--workdir", "OUT"],
        "unwritable_output": ["--workdir", "deploy.prototxt/OUT"],
    }),
}


def inputs(directory: Path) -> None:
    (directory / "deploy.prototxt").write_text(DEPLOY)
    (directory / "cost.csv").write_text("0 1\n1 0\n")
    rng = np.random.default_rng(0)
    np.save(directory / "logits.npy", rng.normal(size=(8, 3)))
    np.save(directory / "labels.npy", rng.integers(0, 3, 8))
    (directory / "model.caffemodel").write_bytes(caffe_pb2.NetParameter(name="d").SerializeToString())


@pytest.mark.parametrize("tool, case", [(tool, case) for tool, (_, _, cases) in CASES.items() for case in cases])
def test_one_line_error_and_nothing_written(caffe, tool: str, case: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    main, prog, cases = CASES[tool]
    inputs(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(cases[case])
        except SystemExit as stop:
            code = stop.code
    lines = err.getvalue().splitlines()
    assert code == 2, err.getvalue()
    # (a subcommand's errors name it: "PROG cost: error: ...", as argparse does)
    assert len(lines) == 1 and lines[0].startswith(prog) and ": error: " in lines[0], err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------
# The helpers themselves


def test_argument_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _cli.ArgumentParser(prog="tool")
    parser.add_argument("--n", type=_cli.positive_int("--n"))
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--n", "0"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "tool: error: argument --n: --n must be >= 1, got '0'\n"


@pytest.mark.parametrize("text, zero, ok", [
    ("1.5", False, True), ("0", False, False), ("0", True, True), ("-0", True, True), ("-1e-9", True, False),
    ("nan", True, False), ("inf", False, False), ("1e-400", False, False), ("x", True, False),
])
def test_finite_number(text: str, zero: bool, ok: bool) -> None:
    parse = _cli.finite_number("T", zero=zero)
    if ok:
        assert parse(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="T must be"):
            parse(text)


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "one"])
def test_positive_int_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _cli.positive_int("--n")(text)


def test_fraction() -> None:
    assert _cli.fraction("w")("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \(0, 1\]"):
        _cli.fraction("w")("1.01")


def test_report_errors_turns_a_tool_error_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def job() -> int:
        raise _cli.ToolError("two\nlines")

    assert _cli.report_errors("tool", job) == 2
    assert capsys.readouterr().err == "tool: error: two lines\n"


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out"
    target.write_text("old")
    target.chmod(0o640)
    _cli.atomic_write(target, b"new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640

    def fail(*args: object) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(_cli.os, "replace", fail)
    with pytest.raises(_cli.WriteError, match="No space left on device"):
        _cli.atomic_write(target, b"newer")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_error_is_a_tool_error() -> None:
    assert issubclass(_cli.WriteError, _cli.ToolError)


# --------------------------------------------------------------------------
# -o - and the other shared options


def run_captured(main: Callable[..., int], argv: list[str]) -> tuple[int, bytes, str]:
    """main(argv) with stdout as a real text stream over bytes (binary outputs go to its buffer)."""
    buffer, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(buffer, encoding="utf-8")
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(err):
        code = main(argv)
    stdout.flush()
    assert code == 0, err.getvalue()
    return code, buffer.getvalue(), err.getvalue()


DASH_CASES = {  # tool: (main, argv with OUT for the output that '-' replaces)
    "add_temperature": (add_temperature_cli.main, ["deploy.prototxt", "--T", "2", "-o", "OUT"]),
    "add_temperature_model": (add_temperature_cli.main, ["deploy.prototxt", "--T", "2", "-o", "net.prototxt",
                                                         "--weights", "model.caffemodel", "--weights-out", "OUT"]),
    "calibrate": (calibrate.main, ["--logits", "logits.npy", "--labels", "labels.npy", "--apply", "deploy.prototxt",
                                   "-o", "OUT"]),
    "infogain": (infogain.main, ["counts", "9", "1", "-o", "OUT"]),
    "sampling": (sampling.main, ["logits.npy", "--T", "1", "--seed", "3", "-o", "OUT"]),
}


@pytest.mark.parametrize("tool", DASH_CASES)
def test_dash_writes_to_stdout_what_a_file_would_hold(caffe, tool: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    main, argv = DASH_CASES[tool]
    inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_captured(main, [arg.replace("OUT", "file.out") for arg in argv])
    _, piped, err = run_captured(main, [arg.replace("OUT", "-") for arg in argv])
    assert piped == (tmp_path / "file.out").read_bytes() and piped
    if tool == "calibrate":  # the report moves to stderr, so that stdout holds the net alone
        assert "fitted T = " in err and "wrote standard output" in err


@pytest.mark.parametrize("option", ["-T", "--temperature", "--T"])
def test_temperature_option_spellings(option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    _, net, _ = run_captured(add_temperature_cli.main, ["deploy.prototxt", option, "4"])
    assert b"value: 0.25" in net
    _, draws, _ = run_captured(sampling.main, ["logits.npy", option, "0"])
    assert draws.decode().split() == [str(i) for i in np.load(tmp_path / "logits.npy").argmax(axis=1)]


def test_bench_dash_writes_the_json_to_stdout_and_the_table_to_stderr(caffe, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--shapes", "4x5", "--repeat", "1", "--block-ms", "0.2", "--layers", "softmax", "-o", "-",
            "--plot", "bench.png"]
    _, piped, err = run_captured(bench_cli.main, argv)
    document = json.loads(piped)
    assert document["provenance"]["command"] == f"{bench_cli.PROG} {' '.join(argv)}"
    assert {r["shape"] for r in document["results"]} == {"4x5"}
    assert err.startswith(f"command: {bench_cli.PROG} ") and "wrote" not in err
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.png"]


def test_an_unexpected_exception_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    inputs(tmp_path)
    monkeypatch.chdir(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(sampling, "sample", broken)
    assert sampling.main(["logits.npy", "--T", "1", "-o", "OUT"]) == 2
    assert capsys.readouterr().err == f"{sampling.PROG}: error: RuntimeError: a bug over two lines\n"
    assert not (tmp_path / "OUT").exists()
    monkeypatch.setattr(bench_cli, "run_threads", broken)
    assert bench_cli.main(["--shapes", "4x5", "-o", "OUT", "--plot", "PLOT"]) == 2
    assert capsys.readouterr().err == f"{bench_cli.PROG}: error: RuntimeError: a bug over two lines\n"
    assert not (tmp_path / "OUT").exists() and not (tmp_path / "PLOT").exists()


@pytest.mark.parametrize("argv0, spec, prog", [
    ("/venv/bin/caffe-temperature-calibrate", None, "caffe-temperature-calibrate"),
    ("python/add_temperature.py", None, "add_temperature.py"),
    ("/src/caffe_temperature/calibrate.py", "caffe_temperature.calibrate", "python -m caffe_temperature.calibrate"),
    ("/src/caffe_temperature/bench/__main__.py", "caffe_temperature.bench.__main__",
     "python -m caffe_temperature.bench"),
])
def test_command_name(argv0: str, spec: str | None, prog: str, monkeypatch: pytest.MonkeyPatch) -> None:
    main = types.ModuleType("__main__")
    main.__spec__ = None if spec is None else importlib.machinery.ModuleSpec(spec, None)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [argv0])
    module = "caffe_temperature.bench" if "bench" in argv0 else "caffe_temperature.calibrate"
    assert _cli.command_name(module) == prog


def test_write_all_renames_nothing_unless_every_output_is_staged(tmp_path: Path) -> None:
    (tmp_path / "kept").write_text("old")
    with pytest.raises(_cli.WriteError, match="cannot write .*missing/b"):
        _cli.write_all([(tmp_path / "kept", b"new"), (tmp_path / "fresh", b"1"), (tmp_path / "missing" / "b", b"2")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and (tmp_path / "kept").read_text() == "old"


def test_help_ends_with_the_one_exit_status_epilog(capsys: pytest.CaptureFixture[str]) -> None:
    for tool in (add_temperature_cli, bench_cli, calibrate, demo, distill_digits, infogain, sampling):
        with pytest.raises(SystemExit):
            tool.main(["--help"])
        assert capsys.readouterr().out.rstrip().endswith(_cli.EXIT_STATUS), tool.__name__
