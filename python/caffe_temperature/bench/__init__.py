"""Benchmark the plugin's layers against stock Caffe, measured in the same run.

    python -m caffe_temperature.bench [--shapes 256x1000 8x21x128x128] [--T 40]
                                      [--layers softmax infogain distillation]
                                      [--json FILE] [--plot FILE.png]
    python -m caffe_temperature.bench --scaling softmax --plot scaling.png
    python -m caffe_temperature.bench --threads 1 2 --plot threads.png

Each candidate is a small pycaffe net (inputs -> layers under test) timed on the
same data, forward and forward + backward: warmed up, then timed in blocks of
calls (--block-ms each), the median per call over --repeat blocks. The blocks of
one layer group's candidates take turns, so that load from other processes falls
on all of them alike; compare the ratios, which come from one run, rather than
absolute times. Large shapes get fewer blocks.

Every group also times, in the same turns, pycaffe's own per-call overhead (a
net of one Input layer: read small shapes net of it) and a LIMIT row: a max
pass, one vector-exp pass and a scaling pass over the same values (backward: a
dot and one pass writing dx) in the plugin's compiled code (_native), with the
kernels' exp, on as many threads; every figure also reads as a multiple of it.
The distillation group's LIMIT (x2) makes the forward passes twice, for the
teacher's and the student's exps. --threads sets the
plugin's OpenMP threads, BLAS's and PyTorch's alike.

* softmax: speed-ups against stock Scale(1/T) + Softmax. PyTorch's
  softmax(x / T) is added for reference when torch is installed.
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
