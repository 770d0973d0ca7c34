# shellcheck shell=bash
# Sourced by the scripts: the repository root, and the plugin build directory
# (build/, or build-cuda/ with CAFFE_TEMPERATURE_CUDA=1) exported, so that a
# script and the setup.sh it runs build and use the same one.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ${CAFFE_TEMPERATURE_CUDA:-0} == 1 ]]; then
  export BUILD_DIR=${BUILD_DIR:-$ROOT/build-cuda}
else
  export BUILD_DIR=${BUILD_DIR:-$ROOT/build}
fi
