#!/usr/bin/env python3
"""Plants known kernel bugs in a copy of cuda/ and counts how many the
emulated GPU test (gpu_kernels_emulated, run by CTest for every emulated
architecture) catches.

    scripts/mutation_check.py [--build-dir build] [--hip-cpu-dir DIR] [--only N ...]
                              [--work-dir DIR [--no-baseline]]

Run by hand. The repository is copied into a folder first (temporary, or
--work-dir, kept and reused by the next run, so that --only subsets spread
over several runs build incrementally), so the working tree is never
touched; each mutation rebuilds only the translated files it touches (one
to three, a minute or two on two cores) and is reverted after its run. The
test runs for every emulated architecture at once, its quick tests first,
and stops at the first failure, so a caught mutant costs seconds of test
and an uncaught one the whole test. Caffe_DIR, HIP-CPU and the emulated
architectures are taken from the given, already configured build unless
given.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    kind: str
    path: str
    old: str
    new: str
    # Why the emulation cannot catch it, for the few it cannot.
    invisible: str = ""


MUTATIONS = (
    Mutation("max reduction computes the min", "cuda/reduce.cuh",
             "return a > b ? a : b;", "return a < b ? a : b;"),
    Mutation("warp reduction skips half of the lanes", "cuda/reduce.cuh",
             "offset = kWarpSize / 2;", "offset = kWarpSize / 4;"),
    Mutation("block reduction drops the last warp", "cuda/reduce.cuh",
             "w < warps; ++w", "w < warps - 1; ++w"),
    Mutation("missing __syncthreads before reusing the scratch (a race)",
             "cuda/reduce.cuh",
             "  __syncthreads();  // scratch may still be read", "  //",
             invisible="HIP-CPU cannot show races"),
    Mutation("off-by-one channel bound", "cuda/per_vector.cuh",
             "c < v.channels; c += g.step", "c < v.channels - 1; c += g.step"),
    Mutation("off-by-one row bound (warp per row)", "cuda/per_vector.cuh",
             "if (o >= s.outer) return;", "if (o > s.outer) return;"),
    Mutation("wrong stride (inner > 1)", "cuda/per_vector.cuh",
             "          s.inner, s.channels};", "          1, s.channels};"),
    Mutation("split channels: the reduction drops the last warp",
             "cuda/per_vector.cuh", "for (int w = 1; w < step; ++w) {",
             "for (int w = 1; w < step - 1; ++w) {"),
    Mutation("split channels: idle lanes write the last position",
             "cuda/per_vector.cuh", "g = {idle ? warps : warp, warps, scratch};",
             "g = {warp, warps, scratch};"),
    Mutation("split channels: every warp takes the same channels",
             "cuda/per_vector.cuh",
             "g = {idle ? warps : warp, warps, scratch};",
             "g = {idle ? warps : 0, warps, scratch};"),
    Mutation("split channels: idle lanes call the op from a second place "
             "(a divergent barrier)", "cuda/per_vector.cuh",
             "  const StripGroup<Dtype> g = {idle ? warps : warp, warps, scratch};\n"
             "  op(g, v);",
             "  if (!idle) {\n    op(StripGroup<Dtype>{warp, warps, scratch}, v);\n"
             "    return;\n  }\n  op(StripGroup<Dtype>{warps, warps, scratch}, v);"),
    Mutation("a launch above its kernel's __launch_bounds__",
             "cuda/per_vector.cuh",
             "__launch_bounds__(kThreads, 1)\n    PositionPerThreadKernel",
             "__launch_bounds__(kThreads / 2, 1)\n    PositionPerThreadKernel"),
    Mutation("launch rules: the opt-in to more shared memory dropped",
             "cuda/cached_row.cuh",
             "  if (bytes + BlockRowStaticBytes<typename Op::Dtype>() >\n"
             "      kDefaultSharedBytes) {", "  if (false) {"),
    Mutation("launch rules: the opt-in below the request",
             "cuda/cached_row.cuh", "static_cast<int>(bytes)),",
             "static_cast<int>(bytes) - 16),"),
    Mutation("launch rules: a 2048-thread block", "cuda/cached_row.cuh",
             "std::min(kMaxThreadsPerBlock, std::max(4, warps) * kWarpSize);",
             "std::min(2 * kMaxThreadsPerBlock, std::max(4, warps) * kWarpSize);"),
    Mutation("launch rules: a static array pushes the shared memory past the "
             "limit", "cuda/cached_row.cuh",
             "  CT_STATIC_SHARED(Dtype, scratch, kBlockRowScratch);",
             "  CT_STATIC_SHARED(Dtype, scratch, kBlockRowScratch);\n"
             "  CT_STATIC_SHARED(Dtype, spare, kWarpSize);"),
    Mutation("dropped normalisation of the softmax", "cuda/softmax_kernels.cu",
             "(LoadGlobal(x + k) - m)) / sum);", "(LoadGlobal(x + k) - m)));"),
    Mutation("register row reads past its end", "cuda/register_row.cuh",
             "if (Column(j) >= channels) continue;\n      const Pack",
             "const Pack"),
    Mutation("register row visits columns past its end",
             "cuda/register_row.cuh",
             "if (Column(j) >= channels) continue;\n#pragma unroll\n"
             "      for (int t = 0; t < V; ++t) Visit",
             "#pragma unroll\n      for (int t = 0; t < V; ++t) Visit"),
    Mutation("warp-cached rows: one row too many", "cuda/register_row.cuh",
             "if (r >= rows) return;", "if (r > rows) return;"),
    Mutation("vector load unpacks the wrong value", "cuda/register_row.cuh",
             "value[I][j * V + t] = pack.v[t];",
             "value[I][j * V + t] = pack.v[0];"),
    Mutation("block-cached row loads every other chunk", "cuda/cached_row.cuh",
             "q += blockDim.x) {\n        to[q] = LoadGlobal(from + q);",
             "q += 2 * blockDim.x) {\n        to[q] = LoadGlobal(from + q);"),
    Mutation("block row: a streamed input read one chunk off",
             "cuda/cached_row.cuh", "return LoadGlobal(streamed[I - kCached] + q);",
             "return LoadGlobal(streamed[I - kCached] + q + 1);"),
    Mutation("vector loads on misaligned pointers", "cuda/register_row.cuh",
             "return reinterpret_cast<uintptr_t>(p) % bytes == 0 &&",
             "return true ||"),
    Mutation("cached forward without the 1/sum", "cuda/softmax_kernels.cu",
             "return e * inv_sum;", "return e;"),
    Mutation("cached backward's dot without y", "cuda/softmax_kernels.cu",
             "dot += dy_c * y_c; });", "dot += dy_c; });"),
    Mutation("wrong beta index", "cuda/softmax_kernels.cu",
             "static_cast<int64_t>(v.o) * beta.outer_stride",
             "static_cast<int64_t>(v.i) * beta.outer_stride"),
    Mutation("beta gradient without its mean term", "cuda/softmax_kernels.cu",
             "(g.first == 0) position_grad[v.position] = dot_d - dot * mean;",
             "(g.first == 0) position_grad[v.position] = dot_d;"),
    Mutation("cached beta gradient without its mean term",
             "cuda/softmax_kernels.cu",
             "(row.Leader()) position_grad[v.position] = dot_d - dot * mean;",
             "(row.Leader()) position_grad[v.position] = dot_d;"),
    Mutation("cached backward with the beta gradient reads y for dy",
             "cuda/softmax_kernels.cu",
             "Load<2>(dy + v.offset);", "Load<2>(y + v.offset);"),
    Mutation("validation misses the last value", "cuda/softmax_kernels.cu",
             "if (i < n && is_bad(values[i]))",
             "if (i < n - 1 && is_bad(values[i]))"),
    Mutation("ignore_label not honoured (infogain)", "cuda/infogain_kernels.cu",
             "if (*kind != kLabelValid) return NULL;",
             "if (*kind == kLabelInvalid) return NULL;"),
    Mutation("sign error in the infogain gradient", "cuda/infogain_kernels.cu",
             "p_scale * LoadGlobal(prob + k) - scale * h[c]",
             "p_scale * LoadGlobal(prob + k) + scale * h[c]"),
    Mutation("cached infogain: h_dot on the unshifted logits",
             "cuda/infogain_kernels.cu",
             "Accumulate(h, c, x_c - m, &sum, &h_dot);",
             "Accumulate(h, c, x_c, &sum, &h_dot);"),
    Mutation("cached distillation: p normalised by the student's sum",
             "cuda/distillation_kernels.cu",
             "(t_c - max_t) - log_sum_t, z_s - log_sum_s, &kl)",
             "(t_c - max_t) - log_sum_s, z_s - log_sum_s, &kl)"),
    Mutation("KL divergence the wrong way round",
             "cuda/distillation_kernels.cu",
             "*kl += p_c * (log_p - log_q);", "*kl += p_c * (log_q - log_p);"),
    Mutation("invalid labels not reported (distillation)",
             "cuda/distillation_kernels.cu",
             "= kind == kLabelInvalid;", "= 0;"),
    Mutation("ignored positions get a gradient (distillation)",
             "cuda/distillation_kernels.cu",
             "const Dtype s = scale * valid[v.position];",
             "const Dtype s = scale;"),
    Mutation("many-block row sums: stage 2 skips each row's last partial",
             "cuda/softmax_kernels.cu", "stage2.channels, 1};",
             "stage2.channels - 1, 1};"),
    Mutation("many-block row sums: a short last chunk drops its last column",
             "cuda/softmax_kernels.cu", "left < piece ? left : piece",
             "left < piece ? left - 1 : piece"),
    Mutation("position rows: the channels 1 apart instead of inner",
             "cuda/register_row.cuh",
             "static_cast<int64_t>(Column(j)) * stride",
             "static_cast<int64_t>(Column(j))"),
    Mutation("position rows: one position too many", "cuda/register_row.cuh",
             "if (p >= static_cast<int64_t>(s.outer) * s.inner) return;\n"
             "  RegisterRow",
             "if (p > static_cast<int64_t>(s.outer) * s.inner) return;\n"
             "  RegisterRow"),
    Mutation("position rows: C past the registers (the last channels dropped)",
             "cuda/register_row.cuh",
             "s.channels <= MaxColsPerLane<Dtype, kK, 1>()",
             "s.channels <= 2 * MaxColsPerLane<Dtype, kK, 1>()"),
    Mutation("position rows: reduced across neighbouring positions",
             "cuda/register_row.cuh",
             "if constexpr (kLanes == 1) {\n      return v;",
             "if constexpr (false) {\n      return v;"),
    Mutation("a launch above the position kernel's __launch_bounds__",
             "cuda/register_row.cuh",
             "__launch_bounds__(kThreads, 1)\n    PositionCachedKernel",
             "__launch_bounds__(kThreads / 2, 1)\n    PositionCachedKernel"),
    Mutation("distillation: q from the teacher's cached row",
             "cuda/distillation_kernels.cu",
             "row.template StoreOf<0>(", "row.template StoreOf<1>("),
    Mutation("distillation: no teacher streaming (same values, multi-pass traffic)",
             "cuda/distillation_kernels.cu",
             "static const int kStreamable = 1;  // the teacher",
             "static const int kStreamable = 0;  // the teacher"),
    Mutation("cached forward stores y twice (same values, more traffic)",
             "cuda/softmax_kernels.cu",
             "    row.Store(y + v.offset, [&](int, Dtype e) { return e * inv_sum; });",
             "    row.Store(y + v.offset, [&](int, Dtype e) { return e * inv_sum; });\n"
             "    row.Store(y + v.offset, [&](int, Dtype e) { return e * inv_sum; });"),
)


def cache_value(build_dir: Path, name: str) -> str:
    """A value from build_dir's CMakeCache.txt ('' when absent)."""
    text = (build_dir / "CMakeCache.txt").read_text()
    match = re.search(rf"^{re.escape(name)}:[A-Z]*=(.*)$", text, re.MULTILINE)
    return match.group(1) if match else ""


def copy_repository(target: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a clone would have.

    A file already there with the same bytes is left alone, and a changed one
    is copied with a new time stamp, so that a kept --work-dir build rebuilds
    exactly what changed since its last run.
    """
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source, copy = ROOT / name, target / name
        if not source.is_file():
            continue
        if copy.is_file() and copy.read_bytes() == source.read_bytes():
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        shutil.copymode(source, copy)


def run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


# Quick tests first, so that most mutants are caught within seconds.
QUICK_TESTS = ("TrafficEmulated*:*MisalignedRows*:*RowSums*:*Validation*:"
               "*InfogainReports*")


def start_emulated(build: Path, arch: str, gtest_filter: str) -> subprocess.Popen[str]:
    """The emulated test for one architecture, as CTest runs it, stopping at
    its first failure (--gtest_break_on_failure), its output line-buffered so
    that the failure is not lost with the process."""
    return subprocess.Popen(
        ["stdbuf", "-oL", str(build / "tests" / "gpu_kernels_emulated"),
         f"--gtest_filter={gtest_filter}", "--gtest_break_on_failure"],
        cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "CAFFE_TEMPERATURE_EMULATED_ARCH": arch})


def verdict_of(output: str) -> tuple[str, str]:
    # A broken launch rule stops the test with the kernel, the rule and
    # the figures.
    broken = re.search(r"launch rule broken on the emulated (.*)$", output,
                       re.MULTILINE)
    if broken:
        return "launch rule", broken.group(1)[:300]
    running = re.findall(r"^\[ RUN      \] (\S+)", output, re.MULTILINE)
    if "Failure" in output and running:
        return "fail", running[-1]
    return "crash", output[-300:]


def build_and_test(build: Path, archs: list[str]) -> tuple[str, str]:
    """('pass' | 'fail' | 'launch rule' | 'build error' | 'crash' | 'timeout',
    detail).

    Rebuilds the test incrementally (only the translated files the mutation
    touches), then runs it for every emulated architecture at once, the quick
    tests first, each run stopping at its first failure.
    """
    built = run(["cmake", "--build", str(build), "--target",
                 "gpu_kernels_emulated", "-j2"], build, 1800)
    if built.returncode != 0:
        return "build error", built.stdout[-400:]
    for gtest_filter in (QUICK_TESTS, "-" + QUICK_TESTS):
        runs = [(arch, start_emulated(build, arch, gtest_filter)) for arch in archs]
        verdict = None
        for arch, process in runs:
            try:
                output, _ = process.communicate(timeout=1800)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
                verdict = verdict or ("timeout", f"sm_{arch}")
                continue
            if process.returncode != 0 and not verdict:
                found, detail = verdict_of(output)
                verdict = (found, f"sm_{arch}: {detail}")
        if verdict:
            return verdict
    return "pass", ""


def check(mutation: Mutation, work: Path, build: Path,
          archs: list[str]) -> tuple[str, str]:
    path = work / mutation.path
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise SystemExit(f"mutation '{mutation.kind}': '{mutation.old}' occurs "
                         f"{count} times in {mutation.path}, expected once")
    path.write_text(original.replace(mutation.old, mutation.new))
    try:
        return build_and_test(build, archs)
    finally:
        path.write_text(original)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build",
                        help="a configured build to take Caffe_DIR and HIP-CPU from")
    parser.add_argument("--hip-cpu-dir", type=Path,
                        help="HIP-CPU (default: the build's CAFFE_TEMPERATURE_HIP_CPU_DIR)")
    parser.add_argument("--only", type=int, nargs="+", metavar="N",
                        help="run only these mutations (1-based, as listed)")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the copy and its build here and reuse them in the next "
                             "run (default: a temporary folder)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the unmutated run (for a --work-dir that passed it)")
    return parser.parse_args()


def mutate_all(selected: list[tuple[int, Mutation]], work: Path, build: Path,
               archs: list[str]) -> None:
    caught = expected = 0
    for number, mutation in selected:
        start = time.monotonic()
        verdict, detail = check(mutation, work, build, archs)
        hit = verdict != "pass"
        caught += hit
        expected += not mutation.invisible
        note = (f" (expected to pass: {mutation.invisible})"
                if mutation.invisible else "")
        print(f"{number:2d}. {mutation.kind} [{mutation.path}]: "
              f"{'CAUGHT' if hit else 'missed'} ({verdict}{': ' + detail if detail else ''})"
              f"{note} [{time.monotonic() - start:.0f} s]", flush=True)
    print(f"caught {caught} of {len(selected)} mutations "
          f"({expected} of them detectable in emulation)")


def main() -> int:
    args = parse_args()
    caffe_dir = cache_value(args.build_dir, "Caffe_DIR")
    hip_cpu = str(args.hip_cpu_dir or cache_value(
        args.build_dir, "CAFFE_TEMPERATURE_HIP_CPU_DIR"))
    if not caffe_dir or not hip_cpu:
        print(f"error: {args.build_dir} has no Caffe_DIR or HIP-CPU; give "
              "--build-dir of a configured build and --hip-cpu-dir", file=sys.stderr)
        return 2
    archs = cache_value(args.build_dir, "CAFFE_TEMPERATURE_EMULATED_ARCHS") or "75;90"
    selected = [(i, m) for i, m in enumerate(MUTATIONS, 1)
                if not args.only or i in args.only]
    with tempfile.TemporaryDirectory(prefix="ct-mutants-") as temp:
        root = args.work_dir or Path(temp)
        work = root / "src"
        build = root / "build"
        copy_repository(work)
        configured = run(["cmake", "-S", str(work), "-B", str(build),
                          f"-DCaffe_DIR={caffe_dir}",
                          f"-DCAFFE_TEMPERATURE_HIP_CPU_DIR={hip_cpu}",
                          "-DCAFFE_TEMPERATURE_BUILD_PYTHON=OFF"], work, 600)
        if configured.returncode != 0:
            print(configured.stdout + configured.stderr, file=sys.stderr)
            return 1
        if not args.no_baseline:
            baseline, detail = build_and_test(build, archs.split(";"))
            if baseline != "pass":
                print(f"error: the unmutated test does not pass ({baseline}: {detail})",
                      file=sys.stderr)
                return 1
        mutate_all(selected, work, build, archs.split(";"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
