"""The command-line contract every tool of the package keeps.

* A problem with the arguments or the input, a file that cannot be read or
  written: one line ``PROG: error: MESSAGE`` on stderr, exit status 2, and no
  output file written (every output is built before the first one is written,
  and each is written atomically).
* Success: exit status 0.

``ArgumentParser`` reports argparse's own errors (a bad number, a missing
option) the same way, ``report_errors`` turns a ``ToolError`` raised by a tool's
job into that line, ``atomic_write`` writes through a temporary file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import stat
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NoReturn, Sequence

import numpy as np

EXIT_OK = 0
EXIT_ERROR = 2


class ToolError(Exception):
    """A problem with the arguments, the input or an output file: one line on stderr, exit status 2."""


# Kept as a name of its own: an output file cannot be written (same exit status).
class WriteError(ToolError):
    """An output file cannot be written (no half-written file is left)."""


def one_line(message: object) -> str:
    """A message on one line (names from the input may hold line breaks)."""
    return " ".join(str(message).splitlines())


def print_error(prog: str, message: object) -> None:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors on one line: ``PROG: error: MESSAGE`` (--help shows the usage)."""

    def error(self, message: str) -> NoReturn:
        print_error(self.prog, message)
        sys.exit(EXIT_ERROR)


def report_errors(prog: str, job: Callable[[], int]) -> int:
    """Runs a tool's job; a ToolError becomes ``PROG: error: ...`` on stderr and exit status 2."""
    try:
        return job()
    except ToolError as err:
        print_error(prog, err)
        return EXIT_ERROR


class NoProgress:
    """What progress_bar gives without tqdm, or with ``quiet``: a bar that shows nothing."""

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, count: int) -> None:
        pass


def progress_bar(total: int, quiet: bool, unit: str, desc: str | None = None) -> Any:
    """A tqdm bar on stderr when tqdm (an optional extra) is installed and not ``quiet``."""
    try:
        from tqdm import tqdm
    except ImportError:
        return NoProgress()
    return NoProgress() if quiet else tqdm(total=total, unit=unit, desc=desc, file=sys.stderr)


# glog's ERROR: Caffe's INFO lines (every layer of every net built) and
# warnings stay out of a tool's output.
TOOL_LOG_LEVEL = 2


def load_pycaffe(what: str) -> ModuleType:
    """pycaffe with the plugin's layers registered; a ToolError saying what needs them when they are missing.

    Caffe's logging is quieted to errors, unless GLOG_minloglevel says otherwise."""
    try:
        import caffe

        import caffe_temperature

        caffe_temperature.load_plugin()
        from caffe_temperature import _native
    except ImportError as err:
        raise ToolError(f"{what} needs pycaffe and the caffe_temperature plugin, which cannot be loaded: "
                        f"{one_line(err)}") from None
    if "GLOG_minloglevel" not in os.environ:
        _native.set_min_log_level(TOOL_LOG_LEVEL)
    return caffe


# --------------------------------------------------------------------------
# argparse types


def finite_number(name: str, zero: bool) -> Callable[[str], float]:
    """argparse type: a finite number > 0, or >= 0 with ``zero``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{name} must be finite and {'>=' if zero else '>'} 0, got {text!r}")
        return value

    return parse


def positive_number(name: str) -> Callable[[str], float]:
    """argparse type for --T and the tools' other scales: a finite number > 0."""
    return finite_number(name, zero=False)


def fraction(name: str) -> Callable[[str], float]:
    """argparse type for a weight in (0, 1]."""
    positive = positive_number(name)

    def parse(text: str) -> float:
        value = positive(text)
        if value > 1:
            raise argparse.ArgumentTypeError(f"{name} must be in (0, 1], got {text!r}")
        return value

    return parse


def positive_int(name: str) -> Callable[[str], int]:
    """argparse type for counts (--repeat, --seeds, --batch-size): an integer >= 1."""
    return int_at_least(name, 1)


def int_at_least(name: str, minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {text!r}")
        return value

    return parse


# --------------------------------------------------------------------------
# Reading


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ToolError(f"cannot read {path}: {err.strerror or err}") from None


# What numpy / zipfile / h5py raise on a corrupt or unexpected array file (the .npy header is
# parsed with ast and tokenize, an .npz member is a zip entry, possibly deflated; a damaged header
# can claim a shape whose size overflows int64 or that numpy tries to allocate before reading).
def _unreadable_array_errors() -> tuple[type[BaseException], ...]:
    import tokenize
    import zipfile
    import zlib

    return (OSError, ValueError, EOFError, KeyError, TypeError, SyntaxError, tokenize.TokenError,
            zipfile.BadZipFile, zlib.error, MemoryError, OverflowError)


UNREADABLE_ARRAY = _unreadable_array_errors()


def load_array(path: Path, keys: Sequence[str], what: str) -> np.ndarray:
    """An array from .npy, or from .npz / HDF5 under the first of ``keys`` present (or its only array)."""
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            return load_hdf5(path, keys, what)
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return np.asarray(loaded)
        with loaded:
            return loaded[pick(list(loaded.files), keys, path, what)]
    except UNREADABLE_ARRAY as err:
        raise ToolError(f"cannot read {what} from {path}: {getattr(err, 'strerror', None) or err}") from None


def load_hdf5(path: Path, keys: Sequence[str], what: str) -> np.ndarray:
    """The HDF5 layout Caffe's HDF5Data layer reads: one top-level dataset per blob."""
    try:
        import h5py
    except ImportError:
        raise ToolError(f"{path}: reading HDF5 files needs h5py (pip install h5py)") from None

    with h5py.File(path, "r") as archive:
        names = [name for name, item in archive.items() if isinstance(item, h5py.Dataset)]
        return np.asarray(archive[pick(names, keys, path, what)][()])


def pick(names: Sequence[str], keys: Sequence[str], path: Path, what: str) -> str:
    """The first of ``keys`` among ``names``, or the only name."""
    for key in keys:
        if key in names:
            return key
    if len(names) == 1:
        return names[0]
    raise ToolError(f"{path}: no {what} array; looked for {', '.join(map(repr, keys))}, it holds "
                    f"{', '.join(map(repr, names)) or 'nothing'}")


# --------------------------------------------------------------------------
# Writing


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas (no pyplot state, no display); matplotlib is an optional extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ToolError("plots need matplotlib: pip install matplotlib") from None
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def same_file(a: Path | None, b: Path | None) -> bool:
    try:
        return a is not None and b is not None and a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: Path) -> None:
    """Fail early, before a long run, when ``path``'s directory cannot take a new file."""
    directory = Path(os.path.realpath(path)).parent
    if not directory.is_dir():
        raise WriteError(f"cannot write {path}: no such directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {path}: directory {directory} is not writable")


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same directory and os.replace it over ``path``.

    A symlink is followed, an existing file keeps its permissions; a device or FIFO
    (``-o /dev/stdout``) is written directly.
    """
    target = Path(os.path.realpath(path))
    try:
        if target.exists() and not target.is_file():
            with open(target, "wb") as handle:
                handle.write(data)
        else:
            write_replacing(target, data)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None


def write_replacing(target: Path, data: bytes) -> None:
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~current_umask()
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_all(outputs: Sequence[tuple[Path, bytes]]) -> None:
    """Write outputs that are all built already, each atomically."""
    for path, data in outputs:
        atomic_write(path, data)
