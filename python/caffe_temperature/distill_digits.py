"""Knowledge distillation on scikit-learn's 8x8 digits, in pycaffe on the CPU.

A 64-256-256-10 teacher is trained on the hard labels; its logits are dumped;
then a 64-6-10 student is trained with the hard labels only, and with the
hard labels plus ``SoftmaxWithDistillationLoss`` on the teacher's logits at a
few temperatures, for several seeds. Prints test accuracy (mean, standard
deviation, min and max over seeds) per setting::

    python -m caffe_temperature.distill_digits --seeds 5 --temperatures 1 2 4 8

The nets are prototxt/distill_teacher.prototxt and
prototxt/distill_student.prototxt; loss weights and beta = 1/T are set per run.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Sequence

import numpy as np

from caffe_temperature._cli import (
    ArgumentParser, Outputs, ToolError, WriteError, atomic_write, check_writable, fraction, load_pycaffe, make_parser,
    positive_int, positive_number, progress_bar, run_tool)
from caffe_temperature.prototxt import example_path, load_caffe_pb2, read_net, render

MODULE = "caffe_temperature.distill_digits"
PROG = f"python -m {MODULE}"
TEACHER_NET = example_path("distill_teacher.prototxt")
STUDENT_NET = example_path("distill_student.prototxt")
DISTILL_LAYER = "SoftmaxWithDistillationLoss"
HARD_LAYER = "SoftmaxWithLoss"


@dataclass(frozen=True)
class Digits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class TrainConfig:
    iters: int
    batch_size: int
    base_lr: float
    seed: int


@dataclass(frozen=True)
class StudentResult:
    temperature: float | None  # None: hard labels only
    seed: int
    test_accuracy: float
    distill_loss_before: float  # on the training set, at `temperature`
    distill_loss_after: float


def load_digits(split_seed: int, train_size: int) -> Digits:
    """The 1797 digits (offline, bundled with scikit-learn), pixels in [0, 1],
    split into `train_size` training and the rest test examples."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ToolError("the digits come with scikit-learn: pip install scikit-learn") from None

    x, y = sklearn_digits(return_X_y=True)
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x.astype(np.float32) / 16.0, y.astype(np.float32),
            train_size=train_size, stratify=y, random_state=split_seed)
    except ValueError as err:  # too few examples on one side for every class
        raise ToolError(f"--train-size {train_size} of {len(y)} digits: {err}") from None
    return Digits(x_train, y_train, x_test, y_test)


def configure_net(template: Path, out: Path, loss_weights: dict[str, float],
                  temperature: float | None) -> Path:
    """Writes `template` with the loss weights of the layers of the given
    types and, when `temperature` is given, the distillation beta = 1/T."""
    net = read_net(template).net
    for layer in net.layer:
        if layer.type in loss_weights:
            del layer.loss_weight[:]
            layer.loss_weight.append(loss_weights[layer.type])
        if layer.type == DISTILL_LAYER and temperature is not None:
            layer.scale_param.filler.type = "constant"
            layer.scale_param.filler.value = 1.0 / temperature
    atomic_write(out, render(net).encode("utf-8"))
    return out


def make_solver(caffe: ModuleType, net_path: Path, workdir: Path, config: TrainConfig) -> Any:
    """An SGD solver for `net_path` whose fillers are seeded by config.seed."""
    caffe_pb2 = load_caffe_pb2()
    solver = caffe_pb2.SolverParameter(
        net=str(net_path), base_lr=config.base_lr, momentum=0.9,
        weight_decay=5e-4, lr_policy="step", gamma=0.1,
        stepsize=max(1, 2 * config.iters // 3), max_iter=config.iters,
        display=0, random_seed=config.seed,
        solver_mode=caffe_pb2.SolverParameter.CPU)
    path = workdir / f"{net_path.stem}_solver.prototxt"
    atomic_write(path, str(solver).encode("utf-8"))
    return caffe.SGDSolver(str(path))


def set_inputs(net: Any, inputs: dict[str, np.ndarray]) -> None:
    """Resizes the Input blobs to the arrays and copies them in."""
    for name, array in inputs.items():
        net.blobs[name].reshape(*array.shape)
        net.blobs[name].data[...] = array
    net.reshape()


def train(solver: Any, inputs: dict[str, np.ndarray], config: TrainConfig, progress: Any) -> None:
    """Minibatch SGD over shuffled epochs of `inputs` (same first axis)."""
    rng = np.random.default_rng(config.seed)
    n = len(next(iter(inputs.values())))
    order = np.empty(0, dtype=int)
    for _ in range(config.iters):
        if len(order) < config.batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        batch, order = order[:config.batch_size], order[config.batch_size:]
        set_inputs(solver.net, {k: v[batch] for k, v in inputs.items()})
        solver.step(1)
        progress.update(1)


def evaluate(net: Any, inputs: dict[str, np.ndarray], blobs: Iterable[str]
             ) -> dict[str, np.ndarray]:
    """One forward pass over all of `inputs`; copies of the named blobs."""
    set_inputs(net, inputs)
    net.forward()
    return {name: net.blobs[name].data.copy() for name in blobs}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == labels))


def train_teacher(caffe: ModuleType, data: Digits, config: TrainConfig, workdir: Path,
                  progress: Any) -> tuple[np.ndarray, np.ndarray]:
    """Trains the teacher; returns its logits on the training and test sets
    (also saved to workdir/teacher_logits.npz)."""
    solver = make_solver(caffe, TEACHER_NET, workdir, config)
    train(solver, {"data": data.x_train, "label": data.y_train}, config,
          progress)
    logits = [
        evaluate(solver.net, {"data": x, "label": y}, ["logits"])["logits"]
        for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test))
    ]
    archive = io.BytesIO()
    np.savez(archive, train=logits[0], test=logits[1])
    atomic_write(workdir / "teacher_logits.npz", archive.getvalue())
    return logits[0], logits[1]


def train_student(caffe: ModuleType, data: Digits, teacher_logits: tuple[np.ndarray, np.ndarray],
                  temperature: float | None, soft_weight: float,
                  monitor_temperature: float, config: TrainConfig,
                  workdir: Path, progress: Any) -> StudentResult:
    """Trains one student. temperature None: hard labels only (distillation
    loss weight 0, still computed at `monitor_temperature`)."""
    hard_weight = 1.0 if temperature is None else 1.0 - soft_weight
    distill_weight = 0.0 if temperature is None else soft_weight
    net_path = configure_net(
        STUDENT_NET, workdir / f"student_T{temperature}_s{config.seed}.prototxt",
        {HARD_LAYER: hard_weight, DISTILL_LAYER: distill_weight},
        temperature or monitor_temperature)
    solver = make_solver(caffe, net_path, workdir, config)
    train_inputs = {"data": data.x_train, "label": data.y_train,
                    "teacher_logits": teacher_logits[0]}
    before = evaluate(solver.net, train_inputs, ["distill_loss"])
    train(solver, train_inputs, config, progress)
    after = evaluate(solver.net, train_inputs, ["distill_loss"])
    test = evaluate(solver.net, {"data": data.x_test, "label": data.y_test,
                                 "teacher_logits": teacher_logits[1]},
                    ["logits"])
    return StudentResult(temperature, config.seed,
                         accuracy(test["logits"], data.y_test),
                         float(before["distill_loss"]),
                         float(after["distill_loss"]))


def summarize(results: Sequence[StudentResult]) -> list[str]:
    """One line per setting: accuracy mean, std, min and max over seeds."""
    lines = [f"{'student':<18}{'test acc mean':>14}{'std':>8}{'min':>8}"
             f"{'max':>8}{'seeds':>7}"]
    settings = sorted({r.temperature for r in results},
                      key=lambda t: -1.0 if t is None else t)
    for temperature in settings:
        accs = [r.test_accuracy for r in results if r.temperature == temperature]
        name = "hard labels only" if temperature is None else f"distilled T={temperature:g}"
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"{name:<18}{statistics.mean(accs):>14.4f}{std:>8.4f}"
                     f"{min(accs):>8.4f}{max(accs):>8.4f}{len(accs):>7}")
    return lines


def build_parser(argv: Sequence[str] | None = None) -> ArgumentParser:
    parser = make_parser(MODULE, (__doc__ or "").split("\n\n")[0], argv=argv)
    parser.add_argument("--seeds", type=positive_int("--seeds"), default=5,
                        help="students per setting, seeds 0..N-1 (default 5)")
    parser.add_argument("--temperatures", type=positive_number("temperatures"), nargs="+",
                        default=[1.0, 2.0, 4.0, 8.0], help="distillation temperatures, each > 0 (default 1 2 4 8)")
    parser.add_argument("--iters", type=positive_int("--iters"), default=1500,
                        help="SGD iterations per student (default 1500)")
    parser.add_argument("--teacher-iters", type=positive_int("--teacher-iters"), default=2000,
                        help="SGD iterations of the teacher (default 2000)")
    parser.add_argument("--batch-size", type=positive_int("--batch-size"), default=64, help="(default 64)")
    parser.add_argument("--lr", type=positive_number("--lr"), default=0.05, help="base learning rate (default 0.05)")
    parser.add_argument("--train-size", type=positive_int("--train-size"), default=300,
                        help="training examples (the rest are the test set); "
                             "a small set is where soft targets help most")
    parser.add_argument("--soft-weight", type=fraction("--soft-weight"), default=0.7,
                        help="loss weight of the distillation term, in (0, 1]; the hard "
                             "term gets 1 - this (default 0.7)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where nets, solvers and teacher_logits.npz go "
                             "(default: a temporary directory)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def experiment(args: argparse.Namespace, workdir: Path) -> list[StudentResult]:
    """Trains the teacher and every student; returns the students' results."""
    caffe = load_pycaffe("distill_digits")
    caffe.set_mode_cpu()
    data = load_digits(split_seed=0, train_size=args.train_size)
    runs = args.seeds * (1 + len(args.temperatures))
    with progress_bar(args.teacher_iters + runs * args.iters, args.quiet, unit="it") as progress:
        teacher_config = TrainConfig(args.teacher_iters, args.batch_size,
                                     args.lr, seed=1000)
        teacher_logits = train_teacher(caffe, data, teacher_config, workdir, progress)
        print(f"teacher test accuracy: "
              f"{accuracy(teacher_logits[1], data.y_test):.4f}")
        results = []
        for seed in range(args.seeds):
            config = TrainConfig(args.iters, args.batch_size, args.lr, seed)
            for temperature in [None, *args.temperatures]:
                results.append(train_student(
                    caffe, data, teacher_logits, temperature, args.soft_weight,
                    max(args.temperatures), config, workdir, progress))
    return results


def in_workdir(args: argparse.Namespace) -> list[StudentResult]:
    """The experiment in --workdir (made if missing), or in a temporary directory."""
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="distill_digits_") as tmp:
            return experiment(args, Path(tmp))
    try:
        args.workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(f"cannot make --workdir {args.workdir}: {err.strerror or err}") from None
    check_writable(args.workdir / "teacher_logits.npz")
    return experiment(args, args.workdir)


def run(args: argparse.Namespace, outputs: Outputs) -> None:
    results = in_workdir(args)
    outputs.say(f"{len(results)} students, {args.iters} iterations each, {args.train_size} training examples")
    outputs.lines.extend(summarize(results))


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(build_parser(argv), argv, run)


if __name__ == "__main__":
    sys.exit(main())
