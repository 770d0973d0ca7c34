#!/usr/bin/env bash
# The benchmark: set-up (idempotent), PyTorch for the reference rows and ONNX
# Runtime and OpenVINO for the peer rows, then python -m caffe_temperature.bench
# with the command, commit, machine and table on stdout and the JSON and PNG
# plot in build/bench/ (extra arguments go to the benchmark).
#   scripts/bench.sh [--threads 1 [2 ...]] [--shapes 256x1000 8x21x128x128] [--layers softmax]
# Environment:
#   CAFFE_TEMPERATURE_NO_TORCH=1  skip installing PyTorch (about 3 GB with its CUDA
#                                 wheels from PyPI); its rows are then left out
#   CAFFE_TEMPERATURE_NO_PEERS=1  skip installing onnx, onnxruntime and openvino
#                                 (about 300 MB installed); their rows are then left out, with a note
set -euo pipefail
# shellcheck source=scripts/paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
"$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "$BUILD_DIR/env.sh"
if [[ ${CAFFE_TEMPERATURE_NO_TORCH:-0} != 1 ]] && ! python -c 'import torch' 2>/dev/null; then
  printf '\033[1m[bench]\033[0m installing PyTorch into the venv for the reference rows\n' >&2
  python -m pip install --progress-bar on torch
fi
if [[ ${CAFFE_TEMPERATURE_NO_PEERS:-0} != 1 ]] \
  && ! python -c 'import onnx, onnxruntime, openvino' 2>/dev/null; then
  printf '\033[1m[bench]\033[0m installing ONNX Runtime and OpenVINO into the venv for the peer rows\n' >&2
  python -m pip install --progress-bar on onnx onnxruntime openvino
fi
mkdir -p "$BUILD_DIR/bench"
cd "$ROOT"
exec python -m caffe_temperature.bench -o "$BUILD_DIR/bench/bench.json" \
  --plot "$BUILD_DIR/bench/bench.png" "$@"
