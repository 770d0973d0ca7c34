#!/usr/bin/env bash
# Runs every test: set-up (idempotent), then CTest (C++ gtests, the nvcc
# compile check of cuda/, the caffe tool test, the pycaffe smoke test), the C++
# gtests again under ASan + UBSan (build-asan; CAFFE_TEMPERATURE_SKIP_SANITIZERS=1
# skips them), the plugin against the same Caffe built with make and against its
# `make distribute` folder (build-make-caffe, build-make-distribute;
# CAFFE_TEMPERATURE_MAKE_CAFFE=0 skips them), and pytest.
# CAFFE_TEMPERATURE_CUDA=1: the same against a CUDA Caffe in build-cuda/ (GPU
# cases run where a device is present), without the sanitizer build.
#   scripts/test.sh [extra pytest arguments]
set -euo pipefail
# shellcheck source=scripts/paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
if [[ ${CAFFE_TEMPERATURE_CUDA:-0} == 1 ]]; then
  export CAFFE_TEMPERATURE_MAKE_CAFFE=0
else
  export CAFFE_TEMPERATURE_MAKE_CAFFE=${CAFFE_TEMPERATURE_MAKE_CAFFE:-1}
fi
"$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "$BUILD_DIR/env.sh"
status=0
(cd "$BUILD_DIR" && ctest --output-on-failure -j "${JOBS:-$(nproc)}") || status=1
# The same C++ tests built with ASan + UBSan (CMakeLists.txt, CAFFE_TEMPERATURE_SANITIZE):
# any report fails its test. Leak checking stays on; the death tests still
# see glog's abort because ASan leaves SIGABRT alone by default.
# Not in CUDA mode: ASan's shadow memory and the CUDA runtime's mappings clash
# (compute-sanitizer is the tool for the device side).
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-$ROOT/build-asan}
if [[ ${CAFFE_TEMPERATURE_SKIP_SANITIZERS:-0} != 1 && ${CAFFE_TEMPERATURE_CUDA:-0} != 1 ]]; then
  mkdir -p "$ASAN_BUILD_DIR"
  cmake -S "$ROOT" -B "$ASAN_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAFFE_TEMPERATURE_SANITIZE=ON \
    -DCaffe_ROOT="$(sed -n 's/^Caffe_ROOT:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")" \
    -DPython3_EXECUTABLE="$CAFFE_TEMPERATURE_PYTHON" >"$ASAN_BUILD_DIR/configure.log" 2>&1 \
    || { cat "$ASAN_BUILD_DIR/configure.log" >&2; status=1; }
  if cmake --build "$ASAN_BUILD_DIR" -j "${JOBS:-$(nproc)}" >"$ASAN_BUILD_DIR/build.log" 2>&1; then
    (cd "$ASAN_BUILD_DIR" && \
      ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:strict_string_checks=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --output-on-failure -j "${JOBS:-$(nproc)}") || status=1
  else
    tail -40 "$ASAN_BUILD_DIR/build.log" >&2
    echo "[test] building the sanitizer build failed (log: $ASAN_BUILD_DIR/build.log)" >&2
    status=1
  fi
fi
# The plugin built through Caffe_ROOT against a Caffe without CaffeConfig.cmake:
# only the library and the gtests, then the tests labelled "caffe" (gtests, the
# libcaffe it links, the pycaffe smoke test, the caffe tool).
test_against_make_caffe() {
  local dir=$ROOT/build-$1 caffe_root=$2
  echo "[test] the plugin against $caffe_root ($dir)" >&2
  mkdir -p "$dir"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCaffe_ROOT="$caffe_root" \
    -DCAFFE_TEMPERATURE_BUILD_PYTHON=OFF -DPython3_EXECUTABLE="$CAFFE_TEMPERATURE_PYTHON" \
    >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log" >&2; return 1; }
  cmake --build "$dir" -j "${JOBS:-$(nproc)}" --target caffe_temperature caffe_temperature_tests \
    >"$dir/build.log" 2>&1 || { tail -40 "$dir/build.log" >&2; return 1; }
  (cd "$dir" && ctest --output-on-failure -L caffe -j "${JOBS:-$(nproc)}")
}
if [[ $CAFFE_TEMPERATURE_MAKE_CAFFE == 1 ]]; then
  test_against_make_caffe make-caffe "$MAKE_CAFFE_DIR" || status=1
  test_against_make_caffe make-distribute "$MAKE_CAFFE_DIR/distribute" || status=1
fi
(cd "$ROOT" && python -m pytest tests/python -q "$@") || status=1
python "$ROOT/tests/bench/smoke.py"  # the layers against their floor: printed, never fails
exit $status
