"""Benchmark the plugin's layers against stock Caffe, measured in the same run.

    python -m caffe_temperature.bench [--shapes 256x1000 8x21x128x128] [-T 40]
                                      [--layers softmax infogain distillation]
                                      [-o FILE.json | -o -] [--plot FILE.png]
    python -m caffe_temperature.bench --scaling softmax --plot scaling.png
    python -m caffe_temperature.bench --threads 1 2 --plot threads.png

Each candidate is a small pycaffe net (inputs -> layers under test) timed on the
same data, forward and forward + backward: warmed up, then timed in blocks of
calls (--block-ms each), each call timed, the median of each block's median
call over --repeat blocks; each block starts once the process's threads are idle
(another runtime's spin on after its calls). The blocks of
one layer group's candidates take turns, so that load from other processes falls
on all of them alike; compare the ratios, which come from one run, rather than
absolute times. Large shapes get fewer blocks.

Every group also times, in the same turns, pycaffe's own per-call overhead (a
net of one Input layer: read small shapes net of it) and two floors, in the
plugin's compiled code (_native), on as many threads: the memory floor (the
bytes the group must read and write, moved as a copy and nothing else) and the
exp floor (a max pass, one vector-exp pass and a scaling pass over the same
values with the kernels' exp; backward, a dot and one pass writing dx; twice
the forward passes for distillation's two softmaxes). Every figure also reads
as a multiple of the larger of the two. --threads sets the plugin's OpenMP
threads, BLAS's, PyTorch's and the deploy runtimes' alike.

The harness polices its figures: a forward slower than its forward + backward,
blocks that spread more than --max-spread (slowest / fastest, the slowest
and fastest tenth set aside), or a
speed-up from k threads over j above k / j, is measured again (the whole group,
--retries times) and, if it stays so, printed as "unstable" with its spread,
never as a figure; the row's other figure (forward, or forward + backward),
if it can be, stands, with its ratios. The table starts with the command, the
commit, the machine, the versions and the load average, which the JSON keeps too.

* softmax: speed-ups against stock Scale(1/T) + Softmax. PyTorch's
  softmax(x / T) is added for reference when torch is installed, and the deploy
  runtimes as peers when they are (pip install caffe-temperature[bench]): ONNX
  Runtime and OpenVINO running the ONNX graph Mul(x, 1/T) + Softmax(axis=1),
  forward only, on buffers bound once.
* infogain: loss layers on the same scores and labels (softmax over axis 1),
  speed-ups against stock InfogainLoss (which takes scores and runs its own
  Softmax), with H read from infogain_loss_param.source (summed once, at
  setup) and with H as a third bottom (summed in every pass); stock
  SoftmaxWithLoss and PyTorch's cross_entropy for reference. Skipped for
  C > 4096, where H (C x C) alone would take gigabytes.
* distillation: SoftmaxWithDistillationLoss against the stock composition that
  computes the same T^2 * KL(p || q): Scale(1/T) + Softmax + Log on teacher and
  student, Eltwise (log p - log q, then p * that) and Reduction (SUM, coeff
  T^2 / positions); PyTorch's kl_div and cross_entropy (soft targets) for reference.

GB/s is an effective bandwidth: the bytes that any implementation must move
(see traffic_bytes) divided by the median time.
"""

from __future__ import annotations

from caffe_temperature.bench.cli import main

__all__ = ["main"]
