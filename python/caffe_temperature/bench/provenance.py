"""What a run was: the command, the commit of the code it timed, the machine
and the versions, and how loaded the machine was, printed above the table and
kept in the JSON, so that a published figure names its source."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Optional, Sequence

# The versions that decide the figures, besides the plugin's own code.
PACKAGES = ("numpy", "torch", "onnxruntime", "openvino")
# The repository of a source checkout: python/caffe_temperature/bench/ is three levels below it.
SOURCE_ROOT = Path(__file__).resolve().parents[3]


def commit(root: Path = SOURCE_ROOT) -> str:
    """The checked-out commit, with '+ uncommitted changes' where the tree has
    them; 'unknown' outside a git checkout (an installed package)."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "--short=12", "HEAD") if (root / ".git").exists() else None
    if head is None:
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_model(cpuinfo: str) -> str:
    """The model name and the vector extensions that pick the kernels' clone (cpu_clones.hpp)."""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    isa = [name for name in ("avx512f", "avx2", "fma") if name in flags]
    return f"{fields.get('model name', platform.processor() or 'unknown CPU')} ({' '.join(isa) or 'no AVX2'})"


def machine() -> str:
    try:
        cpu = cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe(prog: str, argv: Sequence[str]) -> dict[str, object]:
    """The run's provenance, at its start (the load average at its end is added by the caller)."""
    return {"command": shlex.join([*prog.split(), *argv]), "commit": commit(), "machine": machine(),
            "versions": versions(), "load_average_start": load_average()}


def lines(info: dict[str, object]) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in info["versions"].items())  # type: ignore[union-attr]
    return [f"command: {info['command']}", f"commit:  {info['commit']}", f"machine: {info['machine']}",
            f"versions: {packages}",
            f"load average (1 min): {info['load_average_start']} at the start, {info.get('load_average_end')} "
            "at the end"]
