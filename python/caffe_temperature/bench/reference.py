"""PyTorch's versions of the timed computations, for reference rows (never a baseline; optional)."""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

from caffe_temperature.bench.candidates import (
    DISTILLATION_BASELINE, INFOGAIN_BASELINE, SOFTMAX_BASELINE, Runs, Settings)

# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def import_torch(settings: Settings) -> Optional[ModuleType]:
    """torch when it is installed, on as many threads as the plugin and BLAS."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(settings.threads)
    keep_freed_memory()
    return torch


def keep_freed_memory() -> None:
    """Makes glibc's malloc keep and reuse freed memory, for the process.

    A Caffe net allocates its blobs once and reuses them in every call. PyTorch
    allocates its outputs, temporaries and gradients afresh in every call, and
    glibc serves a large allocation with mmap (above a threshold that only grows
    to 32 MB) and gives it back to the system when freed: every call then pays
    page faults for memory that it has just released, which Caffe does not pay
    (below 32 MB glibc's threshold grows into that steady state after a few
    calls; above, never). No mmap and no
    trimming make the freed blocks come back from the heap, already mapped, as
    a reused output would; Caffe's one-off allocations are unaffected. What is
    left is fair in both directions: each side pays its own framework's per-call
    work (pycaffe's, see the overhead row; PyTorch's dispatch and autograd), on
    the same data, the same number of threads, each timed in its steady state."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        libc.mallopt(M_MMAP_MAX, 0)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator, its policy


def torch_device(torch: ModuleType, settings: Settings) -> str:
    return "cuda" if settings.device == "gpu" and torch.cuda.is_available() else "cpu"


def torch_timed(torch: ModuleType, device: str, fn: Callable[[], object]) -> Callable[[], object]:
    """CUDA runs asynchronously: wait for the kernels, or the time is the launch's."""
    if device != "cuda":
        return fn

    def synced() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return synced


def torch_label(torch: ModuleType, what: str, settings: Settings) -> str:
    """The same name at every thread count (the table's thr column tells them
    apart), so that --threads plots one line per PyTorch candidate."""
    return f"PyTorch {what}" + (", GPU" if torch_device(torch, settings) == "cuda" else "")


def softmax_runs(torch: ModuleType, x: np.ndarray, settings: Settings) -> list[Runs]:
    device = torch_device(torch, settings)
    t = settings.temperature
    logits = torch.from_numpy(x).to(device).requires_grad_(True)
    grad = torch.from_numpy(np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32)).to(device)

    def forward() -> Any:
        with torch.no_grad():
            return torch.softmax(logits / t, dim=1)

    def forward_backward() -> None:
        logits.grad = None  # else backward accumulates, one more pass over x
        torch.softmax(logits / t, dim=1).backward(grad)

    name = torch_label(torch, "softmax(x/T)", settings)
    return [Runs(name, SOFTMAX_BASELINE, torch_timed(torch, device, forward),
                 torch_timed(torch, device, forward_backward))]


def infogain_runs(torch: ModuleType, scores: np.ndarray, labels: np.ndarray, settings: Settings) -> list[Runs]:
    """cross_entropy with hard labels is stock SoftmaxWithLoss (H = identity)."""
    device = torch_device(torch, settings)
    functional = torch.nn.functional
    logits = torch.from_numpy(scores).to(device).requires_grad_(True)
    target = torch.from_numpy(labels.astype(np.int64)).to(device)

    def loss() -> Any:
        return functional.cross_entropy(logits, target)

    name = torch_label(torch, "cross_entropy", settings)
    return [loss_runs(torch, device, logits, loss, name, INFOGAIN_BASELINE)]


def distillation_runs(torch: ModuleType, student: np.ndarray, teacher: np.ndarray, settings: Settings) -> list[Runs]:
    """T^2 * KL(p || q) / positions, as kl_div and as soft-target cross_entropy
    (which is KL plus the teacher's entropy, a constant subtracted here)."""
    device = torch_device(torch, settings)
    functional = torch.nn.functional
    t = settings.temperature
    norm = student.size // student.shape[1]
    s = torch.from_numpy(student).to(device).requires_grad_(True)
    teacher_t = torch.from_numpy(teacher).to(device)

    def kl_div() -> Any:
        p = torch.softmax(teacher_t / t, dim=1)
        return functional.kl_div(torch.log_softmax(s / t, dim=1), p, reduction="sum") * (t * t / norm)

    def cross_entropy() -> Any:
        log_p = torch.log_softmax(teacher_t / t, dim=1)
        p = log_p.exp()
        ce = functional.cross_entropy(s / t, p, reduction="sum")
        return (ce + (p * log_p).sum()) * (t * t / norm)

    return [loss_runs(torch, device, s, loss, torch_label(torch, what, settings), DISTILLATION_BASELINE)
            for what, loss in (("kl_div", kl_div), ("cross_entropy (soft targets)", cross_entropy))]


def loss_runs(torch: ModuleType, device: str, param: Any, loss: Callable[[], Any], name: str, baseline: str) -> Runs:
    """A PyTorch loss of ``param`` as a candidate; its value is recorded, not compared."""

    def forward() -> Any:
        with torch.no_grad():
            return loss()

    def forward_backward() -> None:
        param.grad = None
        loss().backward()

    return Runs(name, baseline, torch_timed(torch, device, forward), torch_timed(torch, device, forward_backward),
                lambda: float(forward()))
