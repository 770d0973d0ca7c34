"""Every tool keeps one command-line contract: bad numbers, missing files and unwritable outputs
are one line ``PROG: error: ...`` on stderr, exit status 2, no traceback and nothing written."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

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
    }),
    "calibrate": (calibrate.main, calibrate.PROG, {
        "bad_number": ["--deploy", "deploy.prototxt", "--weights", "w", "--data", "d.npz", "--batch-size", "0"],
        "missing_file": ["--logits", "missing.npy", "--labels", "labels.npy", "--json", "OUT"],
        "unwritable_output": ["--logits", "logits.npy", "--labels", "labels.npy", "--json", "NODIR/OUT"],
    }),
    "infogain": (infogain.main, infogain.PROG, {
        "bad_number": ["cost", "--csv", "cost.csv", "--scale", "-1", "-o", "OUT"],
        "missing_file": ["matrix", "--csv", "missing.csv", "-o", "OUT"],
        "unwritable_output": ["identity", "--classes", "3", "-o", "NODIR/OUT"],
    }),
    "sampling": (sampling.main, sampling.PROG, {
        "bad_number": ["logits.npy", "--T", "-1", "-o", "OUT"],
        "missing_file": ["missing.npy", "--T", "1", "-o", "OUT"],
        "unwritable_output": ["logits.npy", "--T", "1", "-o", "NODIR/OUT"],
    }),
    "bench": (bench_cli.main, bench_cli.PROG, {
        "bad_number": ["--T", "inf", "--json", "OUT"],
        "unwritable_output": ["--shapes", "4x5", "--json", "NODIR/OUT"],
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
