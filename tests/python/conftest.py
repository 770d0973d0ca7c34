"""Shared fixtures: a real pycaffe with the plugin loaded, Caffe's sources, and the deploy table's report."""

from __future__ import annotations

import faulthandler
import math
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

CACHE = Path(os.environ.get("CAFFE_TEMPERATURE_CACHE", Path.home() / ".cache" / "caffe-temperature"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def caffe():
    """pycaffe, in CPU mode, with the plugin's layers registered."""
    import caffe as pycaffe

    import caffe_temperature  # noqa: F401  (registers the layers)

    pycaffe.set_mode_cpu()
    return pycaffe


class DeployReport:
    """The largest |p - softmax(logits / T)| per (form, runtime) cell of test_deploy_runtimes, printed after the run."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], tuple[float, str | None]] = {}

    def record(self, form: str, runtime: str, largest: float, failure: str | None) -> None:
        before = self.cells.get((form, runtime), (0.0, failure))[0]
        self.cells[(form, runtime)] = (max(before, largest), failure)

    def lines(self) -> list[str]:
        runtimes = list(dict.fromkeys(runtime for _, runtime in self.cells))
        rows = [["form", *runtimes]]
        for form in dict.fromkeys(form for form, _ in self.cells):
            row = [form]
            for runtime in runtimes:
                largest, failure = self.cells.get((form, runtime), (math.nan, None))
                row.append(f"{failure} (T = 1: {largest:.2g})" if failure else f"{largest:.2g}")
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]


DEPLOY_REPORT = pytest.StashKey[DeployReport]()


@pytest.fixture(scope="session")
def deploy_report(request) -> DeployReport:
    return request.config.stash.setdefault(DEPLOY_REPORT, DeployReport())


def pytest_terminal_summary(terminalreporter, config) -> None:
    report = config.stash.get(DEPLOY_REPORT, None)
    if report is not None and report.cells:
        terminalreporter.write_sep("-", "largest |p - softmax(logits / T)| per form and runtime (T = 40, 0.5, 1)")
        for line in report.lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def caffe_source_dir() -> Path:
    """BVLC Caffe's source tree as scripts/setup.sh extracted it (models/, examples/)."""
    override = os.environ.get("CAFFE_SOURCE_DIR")
    candidates = [Path(override)] if override else sorted((CACHE / "src").glob("caffe-*"))
    for candidate in candidates:
        if (candidate / "models").is_dir():
            return candidate
    pytest.skip("Caffe's source tree is not available (set CAFFE_SOURCE_DIR)")


@pytest.fixture
def make_net(caffe, tmp_path: Path) -> Callable[..., object]:
    """Builds a caffe.Net from prototxt text."""
    counter = iter(range(1_000_000))

    def build(text: str, phase: int | None = None, weights: str | None = None):
        path = tmp_path / f"net{next(counter)}.prototxt"
        path.write_text(text)
        phase = caffe.TEST if phase is None else phase
        if weights:
            return caffe.Net(str(path), phase, weights=weights)
        return caffe.Net(str(path), phase)

    return build


# --------------------------------------------------------------------------
# Nets that are expected to stop the process. Layer errors are glog FATALs,
# which abort(): such a net has to run in a Python of its own.

def run_net_forked(
    net_text: str,
    inputs: dict[str, np.ndarray],
    tmp_path: Path,
    *,
    backward: bool = False,
    timeout: int = 60,
) -> subprocess.CompletedProcess[str]:
    """Builds the net in a fork of this process, fills its inputs, runs forward (and backward).

    Returns the finished child as a CompletedProcess: a glog FATAL shows as a
    non-zero exit status with the message in stderr; a clean run prints
    "output NAME = VALUE" for each scalar output (losses) and then "finished
    without error". A fork, not a new Python, because it is about 50 times
    cheaper with pycaffe already loaded; the child writes its stdout/stderr
    (glog included) to files and leaves with os._exit, so nothing of the
    parent's (pytest's) state is flushed twice.
    """
    prototxt = tmp_path / "forked.prototxt"
    prototxt.write_text(net_text)
    out_path, err_path = tmp_path / "forked.stdout", tmp_path / "forked.stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            signal.alarm(timeout)  # a hang becomes SIGALRM, not a stuck test run
            # pytest's faulthandler would print a Python traceback for the abort
            # that glog's FATAL is expected to cause; the message is in stderr.
            faulthandler.disable()
            for fd, path in ((1, out_path), (2, err_path)):
                target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(target, fd)
                os.close(target)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            import caffe

            caffe.set_mode_cpu()
            net = caffe.Net(str(prototxt), caffe.TRAIN if backward else caffe.TEST)
            for name, value in inputs.items():
                value = np.asarray(value, dtype=np.float32)
                net.blobs[name].reshape(*value.shape)
                net.blobs[name].data[...] = value
            net.forward()
            if backward:
                net.backward()
            for name in net.outputs:
                if net.blobs[name].count == 1:
                    print(f"output {name} = {float(net.blobs[name].data.flat[0])!r}")
            print("finished without error")
            sys.stdout.flush()
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return subprocess.CompletedProcess(
        args=["fork", str(prototxt)], returncode=os.waitstatus_to_exitcode(status),
        stdout=out_path.read_text(errors="replace"), stderr=err_path.read_text(errors="replace"))


@pytest.fixture
def run_isolated(caffe, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """A net that may abort, run in a fork (run_net_forked) bound to this test's tmp_path."""

    def run(net_text: str, inputs: dict[str, np.ndarray], *, backward: bool = False):
        return run_net_forked(net_text, inputs, tmp_path, backward=backward)

    return run
