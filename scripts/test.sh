#!/usr/bin/env bash
# Runs every test: set-up (idempotent), then CTest (C++ gtests, the nvcc
# compile check of cuda/, the caffe tool test) and pytest.
#   scripts/test.sh [extra pytest arguments]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
"$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "$BUILD_DIR/env.sh"
status=0
(cd "$BUILD_DIR" && ctest --output-on-failure -j "${JOBS:-$(nproc)}") || status=1
(cd "$ROOT" && python -m pytest tests/python -q "$@") || status=1
exit $status
