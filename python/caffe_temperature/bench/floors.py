"""The floors of a group: what its layers cannot do faster than, measured in the same run.

Both run in the plugin's own compiled code (_native, built with the kernels'
flags), on buffers allocated once, as a net's blobs are, sharing their blocks
between as many threads as the kernels:

* the exp floor: a softmax's passes (max, exp and sum, scale; backward, the dot
  of y and dy and a pass writing dx) over blocks of the same values, with the
  kernels' exp, one softmax per exp that the group's forward needs;
* the memory floor: the bytes that the group must read and write
  (candidates.traffic), moved as a copy and nothing else.

A layer row reads as a multiple of the larger of the two.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from caffe_temperature import _cli
from caffe_temperature.bench import candidates as cand
from caffe_temperature.bench.candidates import Runs

EXP_FLOOR_ROW = "exp floor: max + exp + scale passes (_native)"
MEMORY_FLOOR_ROW = "memory floor: copy of the bytes in and out (_native)"
# The exp floor's passes run over blocks of at most this many values (128 KB
# of floats: a row of 32000 classes, in L2 across its passes, as in the layers).
EXP_FLOOR_MAX_BLOCK = 32768


def load_native() -> ModuleType:
    """The plugin's _native module, which the floors run; a ToolError without it."""
    return _cli.load_native("the benchmark's floor pass",
                            "; build it (cmake --build build --target _native) or install the plugin")


def exp_floor_block(shape: tuple[int, ...]) -> int:
    """The exp floor's block: a softmax vector for N x C, else a sample, at most EXP_FLOOR_MAX_BLOCK."""
    return min(math.prod(shape[1:]), EXP_FLOOR_MAX_BLOCK)


def exps_per_value(group: str) -> int:
    """Exps per value that a group's forward cannot avoid: distillation takes
    the softmax of the teacher and of the student, the others one softmax."""
    return 2 if group == "distillation" else 1


def exp_floor_label(group: str) -> str:
    exps = exps_per_value(group)
    return EXP_FLOOR_ROW if exps == 1 else f"{EXP_FLOOR_ROW}, x{exps}"


def exp_floor_runs(native: ModuleType, group: str, shape: tuple[int, ...], beta: float, baseline: str) -> Runs:
    """Forward: per exp the group needs, a max pass, a vector-exp pass writing
    and summing, a scaling pass; backward: the dot of y and dy, and a pass
    writing dx. The logits are scaled by beta, so that exp sees the arguments
    the layers give it."""
    inputs = [cand.normal(seed, shape, 10) * np.float32(beta) for seed in range(exps_per_value(group))]
    outputs = [np.empty_like(x) for x in inputs]
    dy, dx = cand.normal(len(inputs), shape, 1), np.empty_like(inputs[0])
    block = exp_floor_block(shape)

    def forward() -> None:
        for x, y in zip(inputs, outputs):
            native.limit_forward(x, y, block)

    def forward_backward() -> None:
        forward()
        native.limit_backward(outputs[0], dy, dx, block)

    return Runs(exp_floor_label(group), baseline, forward, forward_backward)


def memory_floor_runs(native: ModuleType, group: str, shape: tuple[int, ...], baseline: str) -> Runs:
    """Forward reads and writes what the group's forward must (traffic), backward what its backward must."""
    passes = cand.traffic(group, shape)
    buffers = [(cand.normal(5 + i, (p.reads,), 1), np.empty(p.writes, np.float32)) for i, p in enumerate(passes)]
    (forward_in, forward_out), (backward_in, backward_out) = buffers

    def forward() -> float:
        return native.memory_pass(forward_in, forward_out)

    def forward_backward() -> float:
        return forward() + native.memory_pass(backward_in, backward_out)

    return Runs(MEMORY_FLOOR_ROW, baseline, forward, forward_backward)


def floor_runs(native: ModuleType, group: str, shape: tuple[int, ...], beta: float, baseline: str) -> list[Runs]:
    return [memory_floor_runs(native, group, shape, baseline), exp_floor_runs(native, group, shape, beta, baseline)]


def is_floor(name: str) -> bool:
    return name == MEMORY_FLOOR_ROW or name.startswith(EXP_FLOOR_ROW)
