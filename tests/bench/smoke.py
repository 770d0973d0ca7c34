#!/usr/bin/env python3
"""The benchmark's smoke check: the layers' time as a multiple of their floor.

Runs python -m caffe_temperature.bench on two small shapes (rows, and a strip
layout) with few, short blocks (a few seconds) and prints, per layer, its
forward and forward + backward times over the larger of the memory and exp
floors of the same run (docs/performance.md; suffix m or e says which). The figures are for a reader to notice a kernel that
got slower; on a shared machine they are noisy, so they never fail the test
command: this script exits 0 whatever the benchmark did.

  smoke.py [--shapes 256x1000 8x21x32x32]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
from typing import List

from caffe_temperature.bench.report import floor_multiple

PLUGIN_LAYERS = ("TemperatureSoftmax", "SoftmaxWithInfogainLoss",
                 "SoftmaxWithDistillationLoss")


def run_bench(shapes: List[str], json_path: pathlib.Path) -> bool:
    command = [sys.executable, "-m", "caffe_temperature.bench", "--shapes",
               *shapes, "--repeat", "3", "--block-ms", "2",
               # A smoke run is short and the machine may be busy: a wide
               # spread is expected here, and would otherwise blank every ratio.
               "--max-spread", "10", "-o",
               str(json_path)]
    result = subprocess.run(command, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"bench smoke: the benchmark failed ({tail}); no ratios")
        return False
    return True


def print_ratios(json_path: pathlib.Path) -> None:
    results = json.loads(json_path.read_text())["results"]
    print("bench smoke: time / floor, same run (noisy; never fails)")
    print(f"  {'shape':<12} {'layer':<36} {'fwd':>6} {'fwd+bwd':>8}")
    for row in results:
        if row["candidate"].split(",")[0] not in PLUGIN_LAYERS:
            continue
        print(f"  {row['shape']:<12} {row['candidate']:<36} "
              f"{floor_multiple(row['forward_vs_floor'], row['forward_floor']):>6} "
              f"{floor_multiple(row['forward_backward_vs_floor'], row['forward_backward_floor']):>8}")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog=pathlib.Path(sys.argv[0]).name,
        description="Print the layers' benchmark ratios to their floor.")
    parser.add_argument("--shapes", nargs="+",
                        default=["256x1000", "8x21x32x32"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        json_path = pathlib.Path(folder) / "bench.json"
        if run_bench(args.shapes, json_path):
            print_ratios(json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
