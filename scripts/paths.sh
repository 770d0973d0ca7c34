# shellcheck shell=bash
# Sourced by the scripts: the repository root, the cache, the Caffe source
# tree that setup.sh builds with make (CAFFE_TEMPERATURE_MAKE_CAFFE=1), and the
# plugin build directory (build/, or build-cuda/ with CAFFE_TEMPERATURE_CUDA=1)
# exported, so that a script and the setup.sh it runs build and use the same one.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CAFFE_TEMPERATURE_CACHE:-$HOME/.cache/caffe-temperature}
# The last BVLC master that Debian packaged (bullseye); its orig tarball is what we build.
CAFFE_DEB_VERSION=1.0.0+git20180821.99bd997
# shellcheck disable=SC2034  # read by setup.sh and test.sh, which source this file
MAKE_CAFFE_DIR=$CACHE/caffe-$CAFFE_DEB_VERSION-make
if [[ ${CAFFE_TEMPERATURE_CUDA:-0} == 1 ]]; then
  export BUILD_DIR=${BUILD_DIR:-$ROOT/build-cuda}
else
  export BUILD_DIR=${BUILD_DIR:-$ROOT/build}
fi
