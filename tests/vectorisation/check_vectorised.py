#!/usr/bin/env python3
"""Fails when a hot loop of the fast CPU kernels stops vectorising.

The hot loops are the `#pragma omp simd` loops of the fast-math kernel files
and of the project headers they include. Each kernel file is compiled once
per instruction set of its clones (cpu_clones.hpp: x86-64-v4, -v3 and the
baseline), with the clones turned off and GCC's -fopt-info-vec-optimized
report on; every hot loop must then be reported vectorised with that
instruction set's full vector width (64, 32 and 16 bytes), somewhere between
its pragma and its end (GCC places the report of an omp simd loop on the
pragma or on a statement of its body), in some file that uses it.

  check_vectorised.py --compiler g++ --flag=-I... [--flag=...] SOURCE...

Exit status 0: every loop vectorised; 1: a loop that did not; 2: bad usage.
"""
import argparse
import pathlib
import re
import subprocess
import sys
from typing import Dict, List, Set, Tuple

# The clones' instruction sets and their full vector width in bytes.
ISAS = (("x86-64-v4", 64), ("x86-64-v3", 32), ("x86-64", 16))
REPORT = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):\d+: optimized: "
                    r"loop vectorized using (?P<bytes>\d+) byte vectors")
INCLUDE = re.compile(r'^\s*#include\s+"(?P<name>[^"]+)"')

Loop = Tuple[pathlib.Path, int, int]  # file, pragma line, last line


def loop_end(lines: List[str], start: int) -> int:
    """The last line (1-based) of the statement after the pragma at start."""
    i = start  # 0-based index of the line after the pragma
    while lines[i - 1].rstrip().endswith("\\"):  # continued pragma
        i += 1
    depth, seen_brace, parens = 0, False, 0
    for j in range(i, len(lines)):
        code = lines[j].split("//")[0]
        for ch in code:
            if ch == "(":
                parens += 1
            elif ch == ")":
                parens -= 1
            elif ch == "{":
                depth += 1
                seen_brace = True
            elif ch == "}":
                depth -= 1
            elif ch == ";" and depth == 0 and parens == 0 and not seen_brace:
                return j + 1
        if seen_brace and depth == 0:
            return j + 1
    raise ValueError(f"no end for the loop at line {start}")


def hot_loops(path: pathlib.Path) -> List[Loop]:
    lines = path.read_text().splitlines()
    return [(path, n, loop_end(lines, n))
            for n, text in enumerate(lines, 1)
            if re.match(r"^\s*#pragma omp simd\b", text)]


def project_headers(source: pathlib.Path,
                    search: List[pathlib.Path]) -> Set[pathlib.Path]:
    """The project headers a source includes, directly or not."""
    found: Set[pathlib.Path] = set()
    todo = [source]
    while todo:
        current = todo.pop()
        for text in current.read_text().splitlines():
            match = INCLUDE.match(text)
            if not match:
                continue
            for folder in [current.parent] + search:
                candidate = (folder / match.group("name")).resolve()
                if candidate.is_file() and candidate not in found:
                    found.add(candidate)
                    todo.append(candidate)
                    break
    return found


def start_report(compiler: str, flags: List[str], source: pathlib.Path,
                 isa: str) -> subprocess.Popen:
    command = [compiler, *flags, f"-march={isa}", "-DCT_CLONES=",
               "-fopt-info-vec-optimized", "-c", str(source), "-o",
               "/dev/null"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def read_report(compile_job: subprocess.Popen, source: pathlib.Path,
                reports: Dict[Tuple[pathlib.Path, int], Set[int]]) -> None:
    """Adds the vector widths the job reports per (file, line) to reports."""
    _, stderr = compile_job.communicate()
    if compile_job.returncode != 0:
        sys.exit(f"check_vectorised: compiling {source} failed:\n{stderr}")
    for text in stderr.splitlines():
        match = REPORT.match(text)
        if match:
            key = (pathlib.Path(match.group("file")).resolve(),
                   int(match.group("line")))
            reports.setdefault(key, set()).add(int(match.group("bytes")))


def missing(loops: List[Loop], reports: Dict[Tuple[pathlib.Path, int],
                                             Set[int]],
            width: int) -> List[Loop]:
    return [(path, first, last) for path, first, last in loops
            if not any(width in reports.get((path, line), set())
                       for line in range(first, last + 1))]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog=pathlib.Path(sys.argv[0]).name,
        description="Fail when a hot loop of the fast kernels stops "
                    "vectorising.")
    parser.add_argument("--compiler", required=True)
    parser.add_argument("--flag", action="append", default=[],
                        help="a compiler flag (repeat); -I folders are also "
                             "searched for the project's headers")
    parser.add_argument("sources", nargs="+", type=pathlib.Path)
    args = parser.parse_args()
    search = [pathlib.Path(f[2:]) for f in args.flag if f.startswith("-I")]
    sources = [source.resolve() for source in args.sources]
    files: Set[pathlib.Path] = set(sources)
    for source in sources:
        files |= project_headers(source, search)
    loops = [loop for path in sorted(files) for loop in hot_loops(path)]
    failures = 0
    for isa, width in ISAS:
        # A header's loop counts where some file instantiates it.
        reports: Dict[Tuple[pathlib.Path, int], Set[int]] = {}
        jobs = [(start_report(args.compiler, args.flag, source, isa), source)
                for source in sources]
        for job, source in jobs:
            read_report(job, source, reports)
        for path, first, last in missing(loops, reports, width):
            print(f"{path}:{first}: hot loop (lines {first}-{last}) not "
                  f"vectorised with {width}-byte vectors for -march={isa}")
            failures += 1
    print(f"check_vectorised: {len(loops)} hot loops in {len(files)} files, "
          f"{len(ISAS)} instruction sets: {failures} not vectorised")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
