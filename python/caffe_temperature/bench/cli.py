"""python -m caffe_temperature.bench: the command line."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import sys
from pathlib import Path
from typing import Sequence

from caffe_temperature._cli import (
    ArgumentParser, Outputs, add_temperature_option, finite_number, int_at_least, make_parser, positive_int,
    positive_number, run_tool)
from caffe_temperature.bench import checks, provenance, report, timing
from caffe_temperature.bench.candidates import LAYER_GROUPS, Settings
from caffe_temperature.bench.results import Result, with_ratios

MODULE = "caffe_temperature.bench"
PROG = f"python -m {MODULE}"
DEFAULT_SHAPES = [(64, 10), (256, 1000), (1024, 32000), (8, 21, 128, 128)]
SCALING_CHANNELS = 1000
SCALING_BATCHES = [2**k for k in range(5, 14)]  # 32x1000 .. 8192x1000 (32 MB per blob)
EXAMPLES = """\
examples:
  python -m caffe_temperature.bench --shapes 256x1000 8x21x128x128 -o bench.json
  python -m caffe_temperature.bench --layers softmax -o - > bench.json   (the table on stderr)
  python -m caffe_temperature.bench --scaling softmax --plot scaling.png"""


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not like 256x1000") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs at least two positive dimensions")
    return shape


def more_than_one(text: str) -> float:
    value = finite_number("--max-spread", zero=False)(text)
    if value <= 1:
        raise argparse.ArgumentTypeError(f"--max-spread must be > 1, got {text!r}")
    return value


def build_parser(argv: Sequence[str] | None = None) -> ArgumentParser:
    """The options; PROG is the command run (``python -m caffe_temperature.bench`` for an in-process argv)."""
    from caffe_temperature import bench

    parser = make_parser(MODULE, bench.__doc__ or "", EXAMPLES, argv)
    default_shapes = " ".join(map(timing.shape_label, DEFAULT_SHAPES))
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=DEFAULT_SHAPES,
                        help=f"blob shapes, softmax over axis 1 (default: {default_shapes})")
    add_temperature_option(parser, default=40.0, help="temperature (default 40)")
    parser.add_argument("--repeat", type=positive_int("--repeat"), default=25,
                        help=f"timed blocks of calls per figure, fewer above {timing.FULL_REPEAT_ELEMENTS} elements "
                        "(default 25)")
    parser.add_argument("--block-ms", type=positive_number("--block-ms"), default=5.0,
                        help="target length of a timed block of calls, in ms (default 5; at least one call)")
    parser.add_argument("--threads", nargs="+", type=positive_int("--threads"), default=[1],
                        help="threads of the plugin's kernels (OpenMP), BLAS and PyTorch alike (default 1); "
                        "several counts time everything at each, and --plot then plots time against threads")
    parser.add_argument("--layers", nargs="+", choices=LAYER_GROUPS, default=list(LAYER_GROUPS),
                        help="layer groups to time (default: all)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu (default) or gpu (needs a CUDA build of Caffe)")
    parser.add_argument("--max-spread", type=more_than_one, default=1.3,
                        help="spread of the blocks (slowest / fastest, the slowest and fastest tenth set "
                        "aside) above which a figure is re-measured, and printed as unstable if it stays so "
                        "(default 1.3)")
    parser.add_argument("--retries", type=int_at_least("--retries", 0), default=1,
                        help="re-measurements of a group with a figure that cannot be (default 1)")
    parser.add_argument("--scaling", choices=LAYER_GROUPS, metavar="GROUP",
                        help=f"instead of --shapes/--layers: time GROUP on N x {SCALING_CHANNELS} for N = "
                        f"{SCALING_BATCHES[0]}..{SCALING_BATCHES[-1]} and print the fitted slope of time vs N*C")
    parser.add_argument("-o", "--output", "--json", dest="output", type=Path, metavar="FILE",
                        help="also write the figures as JSON to FILE ('-': standard output, the table then on "
                        "stderr)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="also plot time vs N*C (or vs threads), log-log, to this PNG file")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser(argv).parse_args(argv)


def run_at(shapes: list[tuple[int, ...]], groups: list[str], settings: Settings,
           threads: int) -> tuple[list[Result], list[str]]:
    timing.set_native_threads(threads)
    return timing.run_all(shapes, groups, dataclasses.replace(settings, threads=threads))


def run_threads(shapes: list[tuple[int, ...]], groups: list[str], settings: Settings,
                thread_counts: list[int]) -> tuple[list[Result], list[str]]:
    """Everything at each thread count in turn, speed-ups beyond the threads
    re-measured (checks.policed_threads), with the ratios; the notes once."""
    results: list[Result] = []
    notes: list[str] = []
    for threads in dict.fromkeys(thread_counts):
        more, more_notes = run_at(shapes, groups, settings, threads)
        results.extend(more)
        notes.extend(more_notes)

    def again(group: str, shape: str, threads: int) -> list[Result]:
        return run_at([parse_shape(shape)], [group], settings, threads)[0]

    return with_ratios(checks.policed_threads(results, again, settings.retries)), list(dict.fromkeys(notes))


def run(args: argparse.Namespace, outputs: Outputs, prog: str, argv: Sequence[str]) -> None:
    """The timing, then the report and the outputs, collected for run_tool to write (which
    checked the output paths before minutes of timing, not after); prog and argv: the command run."""
    source = provenance.describe(prog, argv)
    thread_counts = list(dict.fromkeys(args.threads))
    settings = Settings(args.temperature, args.repeat, thread_counts[0], args.device, args.block_ms,
                        args.max_spread, args.retries)
    if args.scaling:
        shapes, groups = [(n, SCALING_CHANNELS) for n in SCALING_BATCHES], [args.scaling]
    else:
        shapes, groups = args.shapes, args.layers
    results, notes = run_threads(shapes, groups, settings, thread_counts)
    source["load_average_end"] = provenance.load_average()
    table = io.StringIO()
    report.print_provenance(source, table)
    report.print_table(results, notes, table)
    scaling = None
    if args.scaling:
        slopes = report.scaling_slopes(results)
        report.print_slopes(args.scaling, slopes, table)
        scaling = {"group": args.scaling, "slopes": slopes}
    for line in table.getvalue().splitlines():
        outputs.say(line)
    if args.output:
        outputs.file(args.output, report.json_document(settings, thread_counts, results, scaling, source))
    if args.plot:
        outputs.file(args.plot, plot(args, thread_counts, results))


def plot(args: argparse.Namespace, thread_counts: list[int], results: list[Result]) -> bytes:
    """Time against threads where several counts ran, else time against size."""
    threads = ", ".join(map(str, thread_counts))
    title = f"scaling: {args.scaling}" if args.scaling else "caffe-temperature bench"
    title = f"{title} (T={args.temperature:g}, {args.device}, {threads} thread)"
    if len(thread_counts) > 1:
        return report.plot_threads_png(results, title)
    return report.plot_png(results, title)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    job = functools.partial(run, prog=parser.prog, argv=sys.argv[1:] if argv is None else list(argv))
    return run_tool(parser, argv, job, ("output", "plot"))
