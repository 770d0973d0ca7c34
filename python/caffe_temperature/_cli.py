"""The command-line scaffold every tool of the package shares, and the contract it keeps.

* A problem with the arguments or the input, a file that cannot be read or
  written, or any other failure while the tool runs: one line
  ``PROG: error: MESSAGE`` on stderr, exit status 2, and no output file written.
* Success: exit status 0.

``run_tool`` is the whole life of a command: it parses the arguments, checks
that every output can be written before any work is done, runs the tool's job,
which only *collects* its outputs (``Outputs``), and then writes them all:
each is staged to a temporary file in its destination folder and the files are
renamed only once every one of them is staged (``write_all``). ``-`` as an
output means standard output. ``PROG`` is the command actually run
(``command_name``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import math
import os
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NoReturn, Sequence, TextIO

import numpy as np

EXIT_OK = 0
EXIT_ERROR = 2


EXIT_STATUS = """\
exit status: 0 on success; 2 on any error (bad arguments or input, a file that
cannot be read or written, a failure while running), reported on one line,
with nothing written."""

STDOUT = "-"


# A ValueError, so that the public API's callers catch bad input the usual way.
class ToolError(ValueError):
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
    """Runs a tool's job; any exception becomes ``PROG: error: ...`` on stderr and exit status 2."""
    try:
        return job()
    except ToolError as err:
        print_error(prog, err)
    except Exception as err:  # a bug or a library's surprise: still one line, never a traceback
        print_error(prog, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
    return EXIT_ERROR


def command_name(module: str) -> str:
    """The command the user ran: ``python -m MODULE``, or the script's or console script's file name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name in (module, f"{module}.__main__"):
        return f"python -m {module}"
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else f"python -m {module}"


def make_parser(module: str, description: str, examples: str = "", argv: Sequence[str] | None = None,
                prog: str | None = None) -> ArgumentParser:
    """A tool's parser: PROG from the command run (``python -m MODULE`` when ``argv`` is given
    in-process), the description, the examples and the one exit-status epilog."""
    if prog is None:
        prog = command_name(module) if argv is None else f"python -m {module}"
    epilog = f"{examples.rstrip()}\n\n{EXIT_STATUS}\n" if examples else f"{EXIT_STATUS}\n"
    return ArgumentParser(prog=prog, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


@dataclass
class Outputs:
    """What a tool's job produces; nothing reaches a file or the terminal until the job has finished.

    ``file`` adds an output file (``-``: standard output), ``say`` a line of the report (stdout, or
    stderr when an output goes to stdout), ``note`` a note (stderr, after PROG).
    """

    files: list[tuple[Path, bytes]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def file(self, path: Path, data: bytes) -> None:
        self.files.append((path, data))

    def say(self, line: str) -> None:
        self.lines.append(line)

    def note(self, line: str) -> None:
        self.notes.append(line)

    def say_written(self) -> None:
        """``wrote PATH`` for each output file, in the report."""
        for path, _ in self.files:
            self.say(f"wrote {'standard output' if is_stdout(path) else path}")

    def commit(self, prog: str, stdout: TextIO, stderr: TextIO) -> None:
        piped = [data for path, data in self.files if is_stdout(path)]
        write_all([(path, data) for path, data in self.files if not is_stdout(path)])
        for data in piped:
            write_stdout(stdout, data)
        report = stderr if piped else stdout
        for line in self.lines:
            print(line, file=report)
        for note in self.notes:
            print(f"{prog}: {note}", file=stderr)


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == STDOUT


def write_stdout(stdout: TextIO, data: bytes) -> None:
    """Bytes to standard output (through its binary buffer, when it has one)."""
    try:
        buffer = getattr(stdout, "buffer", None)
        if buffer is None:
            stdout.write(data.decode("utf-8", errors="surrogateescape"))
        else:
            stdout.flush()
            buffer.write(data)
        stdout.flush()
    except OSError as err:
        raise WriteError(f"cannot write to standard output: {err.strerror or err}") from None


def check_outputs(paths: Sequence[Path | None]) -> None:
    """Before any work: every output's folder takes a new file, no two outputs are one file,
    at most one goes to standard output."""
    given = [path for path in paths if path is not None]
    if sum(is_stdout(path) for path in given) > 1:
        raise ToolError("only one output can be '-' (standard output)")
    files = [path for path in given if not is_stdout(path)]
    for index, path in enumerate(files):
        check_writable(path)
        twin = next((other for other in files[:index] if os.path.realpath(other) == os.path.realpath(path)), None)
        if twin is not None:
            raise ToolError(f"{twin} and {path} name the same output file")


def run_tool(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             job: Callable[[argparse.Namespace, Outputs], None], outputs: Sequence[str] = (),
             check: Callable[[argparse.Namespace, argparse.ArgumentParser], None] | None = None) -> int:
    """A whole command: parse ``argv``, ``check`` the arguments, check the output paths (the
    arguments named in ``outputs``), run ``job``, then write everything it collected."""
    args = parser.parse_args(argv)
    if check is not None:
        check(args, parser)

    def whole() -> int:
        check_outputs([getattr(args, name) for name in outputs])
        collected = Outputs()
        job(args, collected)
        collected.commit(parser.prog, sys.stdout, sys.stderr)
        return EXIT_OK

    return report_errors(parser.prog, whole)


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
    native = load_native(what)
    if "GLOG_minloglevel" not in os.environ:
        native.set_min_log_level(TOOL_LOG_LEVEL)
    return importlib.import_module("caffe")


def load_native(what: str, hint: str = "") -> ModuleType:
    """The plugin's _native module, loaded after pycaffe; a ToolError saying ``what`` needs it when it cannot be."""
    try:
        from caffe_temperature._loader import load_plugin

        load_plugin()
        return importlib.import_module("caffe_temperature._native")
    except (ImportError, OSError) as err:
        raise ToolError(f"{what} needs pycaffe and the caffe_temperature plugin, which cannot be loaded "
                        f"({one_line(err) or type(err).__name__}){hint}") from None


# --------------------------------------------------------------------------
# argparse types


def check_positive(value: object, name: str = "T", zero: bool = False) -> float:
    """``value`` as a float, finite and > 0 (>= 0 with ``zero``): the one check of a temperature or scale."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ToolError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise ToolError(f"{name} must be finite and {'>=' if zero else '>'} 0, got {value!r}")
    return number


def finite_number(name: str, zero: bool) -> Callable[[str], float]:
    """argparse type: a finite number > 0, or >= 0 with ``zero`` (check_positive)."""

    def parse(text: str) -> float:
        try:
            return check_positive(text, name, zero)
        except ToolError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def add_temperature_option(parser: argparse._ActionsContainer, zero: bool = False, **options: Any) -> None:
    """``-T``/``--temperature`` (and the original ``--T``), stored as ``temperature``."""
    parser.add_argument("-T", "--temperature", "--T", dest="temperature", type=finite_number("T", zero),
                        metavar="T", **options)


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
    except ToolError:  # already says what is wrong (a ToolError is also a ValueError)
        raise
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


@dataclass
class Staged:
    """An output written to a temporary file next to its target, waiting to be renamed over it.

    A device or FIFO (``-o /dev/stdout``) cannot be replaced: it has no temporary file and is
    written directly when committed.
    """

    path: Path
    target: Path
    data: bytes
    temporary: str | None = None

    def commit(self) -> None:
        if self.temporary is None:
            with open(self.target, "wb") as handle:
                handle.write(self.data)
        else:
            os.replace(self.temporary, self.target)
            self.temporary = None

    def discard(self) -> None:
        if self.temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temporary)
            self.temporary = None


def stage(path: Path, data: bytes) -> Staged:
    """``data`` in a flushed temporary file in ``path``'s folder (a symlink is followed, an
    existing file's permissions kept)."""
    target = Path(os.path.realpath(path))
    staged = Staged(path, target, data)
    if target.exists() and not target.is_file():
        return staged
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~current_umask()
    fd, staged.temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staged.temporary, mode)
    except BaseException:
        staged.discard()
        raise
    return staged


def write_all(outputs: Sequence[tuple[Path, bytes]]) -> None:
    """Write outputs that are all built already: every one is staged first, and renamed over
    its target only once all are staged, so a failure leaves every target as it was."""
    staged: list[Staged] = []
    current: Path | None = None
    try:
        for current, data in outputs:
            staged.append(stage(current, data))
        for item in staged:
            current = item.path
            item.commit()
    except OSError as err:
        raise WriteError(f"cannot write {current}: {err.strerror or err}") from None
    finally:
        for item in staged:
            item.discard()


def atomic_write(path: Path, data: bytes) -> None:
    """One output through a temporary file in the same folder (write_all)."""
    write_all([(path, data)])
