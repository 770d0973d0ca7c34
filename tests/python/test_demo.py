"""The README's main command: fused and stock probabilities agree at both T."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_and_fused_equals_stock():
    result = subprocess.run([sys.executable, "-m", "caffe_temperature.demo", "--T", "40"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    differences = [float(d) for d in re.findall(r"max \|difference\| over the batch: (\S+);", result.stdout)]
    assert len(differences) == 2 and max(differences) < 1e-6, result.stdout
    entropies = [float(e) for e in re.findall(r"mean entropy (\S+) nats", result.stdout)]
    assert entropies[1] > entropies[0], "T = 40 must give flatter probabilities than T = 1"
    assert 'name: "prob_temperature"\n  type: "Scale"' in result.stdout and "value: 0.025\n" in result.stdout


def test_bad_temperature_is_one_line_without_traceback():
    result = subprocess.run([sys.executable, "-m", "caffe_temperature.demo", "--T", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == ("python -m caffe_temperature.demo: error: argument -T/--temperature/--T: "
                             "T must be finite and > 0, got '0'\n")
