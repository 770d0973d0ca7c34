"""Runs caffe2onnx's command line (python -m caffe2onnx.convert) on several nets in one process.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python caffe2onnx_convert.py JOBS_JSON RESULTS_JSON

JOBS_JSON: a list of [prototxt, caffemodel, onnx]. RESULTS_JSON gets, for each onnx path, null
when the converter wrote it, else its error. (deploy_runtimes.convert_with_caffe2onnx says why
this runs in a Python of its own.)
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
from pathlib import Path


def convert(prototxt: str, caffemodel: str, onnx: str) -> str | None:
    sys.argv = ["caffe2onnx.convert", "--prototxt", prototxt, "--caffemodel", caffemodel, "--onnx", onnx]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_module("caffe2onnx.convert", run_name="__main__")
    except (Exception, SystemExit) as err:  # it exit()s on what it cannot convert, after printing why
        lines = printed.getvalue().strip().splitlines()
        return f"{type(err).__name__}: {err}" + (f" ({lines[-1]})" if lines else "")
    # It reports a failed save on stdout and carries on.
    return None if Path(onnx).is_file() else " ".join(printed.getvalue().split())[-500:]


def main() -> None:
    jobs, results = json.loads(sys.argv[1]), Path(sys.argv[2])  # convert() replaces sys.argv
    errors = {onnx: convert(prototxt, caffemodel, onnx) for prototxt, caffemodel, onnx in jobs}
    results.write_text(json.dumps(errors))


if __name__ == "__main__":
    main()
