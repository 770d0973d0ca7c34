#!/usr/bin/env python3
"""Plants known kernel bugs in a copy of cuda/ and counts how many the
emulated GPU test (gpu_kernels_emulated, run by CTest for every emulated
architecture) catches.

    scripts/mutation_check.py [--build-dir build] [--hip-cpu-dir DIR] [--only N ...]

Run by hand (it rebuilds the test once per mutation: a few minutes each on
two cores). The repository is copied into a temporary folder first, so the
working tree is never touched. Caffe_DIR and HIP-CPU are taken from the
given, already configured build unless given.
"""
from __future__ import annotations

import argparse
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
             "y[k] = Exp(b * (x[k] - m)) / sum;", "y[k] = Exp(b * (x[k] - m));"),
    Mutation("warp-cached row reads past its end", "cuda/cached_row.cuh",
             "if (Column(j) >= channels) continue;\n      const Pack",
             "const Pack",
             invisible="the values read past the row are never used, and "
                       "the guard zones are readable memory"),
    Mutation("warp-cached row visits columns past its end",
             "cuda/cached_row.cuh",
             "if (Column(j) >= channels) continue;\n#pragma unroll\n"
             "      for (int t = 0; t < V; ++t) {\n        Visit",
             "#pragma unroll\n      for (int t = 0; t < V; ++t) {\n"
             "        Visit"),
    Mutation("warp-cached rows: one row too many", "cuda/cached_row.cuh",
             "if (r >= rows) return;", "if (r > rows) return;"),
    Mutation("vector load unpacks the wrong value", "cuda/cached_row.cuh",
             "value[I][j * V + t] = pack.v[t];",
             "value[I][j * V + t] = pack.v[0];"),
    Mutation("block-cached row loads every other chunk", "cuda/cached_row.cuh",
             "q += blockDim.x) {\n        to[q] = from[q];",
             "q += 2 * blockDim.x) {\n        to[q] = from[q];"),
    Mutation("block row: a streamed input read one chunk off",
             "cuda/cached_row.cuh", "return streamed[I - kCached][q];",
             "return streamed[I - kCached][q + 1];"),
    Mutation("vector loads on misaligned pointers", "cuda/cached_row.cuh",
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
             "position_grad[v.position] = dot_d - dot * mean;",
             "position_grad[v.position] = dot_d;"),
    Mutation("cached beta gradient without its mean term",
             "cuda/softmax_kernels.cu",
             "position_grad[r] = dot_d - dot * mean;",
             "position_grad[r] = dot_d;"),
    Mutation("cached backward with the beta gradient reads y for dy",
             "cuda/softmax_kernels.cu",
             "Load<2>(dy + offset);", "Load<2>(y + offset);"),
    Mutation("validation misses the last value", "cuda/softmax_kernels.cu",
             "if (i < n && is_bad(values[i]))",
             "if (i < n - 1 && is_bad(values[i]))"),
    Mutation("ignore_label not honoured (infogain)", "cuda/infogain_kernels.cu",
             "if (*kind != kLabelValid) return NULL;",
             "if (*kind == kLabelInvalid) return NULL;"),
    Mutation("sign error in the infogain gradient", "cuda/infogain_kernels.cu",
             "p_scale * prob[k] - scale * h[c]",
             "p_scale * prob[k] + scale * h[c]"),
    Mutation("cached infogain: h_dot on the unshifted logits",
             "cuda/infogain_kernels.cu",
             "Accumulate(h, c, x_c - m, &sum, &h_dot);",
             "Accumulate(h, c, x_c, &sum, &h_dot);"),
    Mutation("cached distillation: p normalised by the student's sum",
             "cuda/distillation_kernels.cu",
             "KlTerm(z_t - log_sum_t, z_s - log_sum_s, &kl)",
             "KlTerm(z_t - log_sum_s, z_s - log_sum_s, &kl)"),
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
)


def cache_value(build_dir: Path, name: str) -> str:
    """A value from build_dir's CMakeCache.txt ('' when absent)."""
    text = (build_dir / "CMakeCache.txt").read_text()
    match = re.search(rf"^{re.escape(name)}:[A-Z]*=(.*)$", text, re.MULTILINE)
    return match.group(1) if match else ""


def copy_repository(target: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a clone would have."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def build_and_test(build: Path) -> tuple[str, str]:
    """('pass' | 'fail' | 'launch rule' | 'build error' | 'crash' | 'timeout',
    detail).

    The test runs once per emulated architecture (gpu_kernels_emulated_sm_NN,
    both at once), as CTest runs it.
    """
    built = run(["cmake", "--build", str(build), "--target",
                 "gpu_kernels_emulated", "-j2"], build, 1800)
    if built.returncode != 0:
        return "build error", built.stdout[-400:]
    try:
        tested = run(["ctest", "-R", "^gpu_kernels_emulated_sm_",
                      "--output-on-failure", "-j2"], build, 1800)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    if tested.returncode == 0:
        return "pass", ""
    failed = sorted(set(re.findall(r"^\[  FAILED  \] (\S+?)(?:,|$)",
                                   tested.stdout, re.MULTILINE)))
    if failed:
        return "fail", " ".join(failed)
    # A broken launch rule stops the test with the kernel, the rule and
    # the figures.
    broken = re.search(r"launch rule broken on the emulated (.*)$",
                       tested.stdout, re.MULTILINE)
    if broken:
        return "launch rule", broken.group(1)[:300]
    return "crash", tested.stdout[-300:]


def check(mutation: Mutation, work: Path, build: Path) -> tuple[str, str]:
    path = work / mutation.path
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise SystemExit(f"mutation '{mutation.kind}': '{mutation.old}' occurs "
                         f"{count} times in {mutation.path}, expected once")
    path.write_text(original.replace(mutation.old, mutation.new))
    try:
        return build_and_test(build)
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
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    caffe_dir = cache_value(args.build_dir, "Caffe_DIR")
    hip_cpu = str(args.hip_cpu_dir or cache_value(
        args.build_dir, "CAFFE_TEMPERATURE_HIP_CPU_DIR"))
    if not caffe_dir or not hip_cpu:
        print(f"error: {args.build_dir} has no Caffe_DIR or HIP-CPU; give "
              "--build-dir of a configured build and --hip-cpu-dir", file=sys.stderr)
        return 2
    selected = [(i, m) for i, m in enumerate(MUTATIONS, 1)
                if not args.only or i in args.only]
    with tempfile.TemporaryDirectory(prefix="ct-mutants-") as temp:
        work = Path(temp) / "src"
        build = Path(temp) / "build"
        copy_repository(work)
        configured = run(["cmake", "-S", str(work), "-B", str(build),
                          f"-DCaffe_DIR={caffe_dir}",
                          f"-DCAFFE_TEMPERATURE_HIP_CPU_DIR={hip_cpu}",
                          "-DCAFFE_TEMPERATURE_BUILD_PYTHON=OFF"], work, 600)
        if configured.returncode != 0:
            print(configured.stdout + configured.stderr, file=sys.stderr)
            return 1
        baseline, detail = build_and_test(build)
        if baseline != "pass":
            print(f"error: the unmutated test does not pass ({baseline}: {detail})",
                  file=sys.stderr)
            return 1
        caught = expected = 0
        for number, mutation in selected:
            start = time.monotonic()
            verdict, detail = check(mutation, work, build)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
