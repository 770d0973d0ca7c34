#!/usr/bin/env bash
# Prepares everything caffe-temperature needs and builds the plugin.
#
#   scripts/setup.sh            apt packages, Python venv, BVLC Caffe (cached), the Python package
#                               (pip, pure-Python: dependencies and commands from pyproject.toml), plugin build
#
# Environment:
#   CAFFE_TEMPERATURE_CACHE  cache directory (default ~/.cache/caffe-temperature)
#   Caffe_ROOT               an existing Caffe: a CMake install prefix or build tree, a source tree
#                            built with make, or a `make distribute` folder; skips the Caffe build
#   Caffe_DIR                an existing Caffe's CaffeConfig.cmake folder (<prefix>/share/Caffe)
#   CAFFE_SOURCE_TARBALL     a local caffe_*.orig.tar.gz instead of fetching Debian's source package
#   CAFFE_TEMPERATURE_VENV   Python virtual environment to use (default $CACHE/venv)
#   BUILD_DIR                plugin build directory (default ./build)
#   JOBS                     parallel build jobs (default: nproc)
#   CAFFE_TEMPERATURE_HIP_CPU_DIR  HIP-CPU (the folder holding include/hip): builds the
#                            test gpu_kernels_emulated, which runs cuda/ on the CPU
#                            (reported as skipped without it)
#   CAFFE_TEMPERATURE_CUDA=1 build Caffe with CUDA (sm_90, no cuDNN) into its own cache
#                            prefix and the plugin with its GPU kernels (default build dir ./build-cuda)
#   CAFFE_TEMPERATURE_MAKE_CAFFE=1  also build the same Caffe with its own Makefile (CPU-only),
#                            and `make distribute`, in the cache (scripts/test.sh tests the plugin
#                            against both; about 6 minutes on 2 cores, once)
#
# Safe to run again: every step is skipped when its result is already there.
set -euo pipefail

# shellcheck source=scripts/paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
VENV=${CAFFE_TEMPERATURE_VENV:-$CACHE/venv}
JOBS=${JOBS:-$(nproc)}
if [[ ${CAFFE_TEMPERATURE_CUDA:-0} == 1 ]]; then
  VARIANT=caffe-$CAFFE_DEB_VERSION-cuda
  # BVLC's arch lists start at Fermi, which CUDA 12+ no longer knows.
  CAFFE_DEVICE_FLAGS=(-DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DCUDA_ARCH_NAME=Manual -DCUDA_ARCH_BIN=90 -DCUDA_ARCH_PTX=90)
else
  VARIANT=caffe-$CAFFE_DEB_VERSION
  CAFFE_DEVICE_FLAGS=(-DCPU_ONLY=ON)
fi
CAFFE_PREFIX=$CACHE/$VARIANT

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

APT_PACKAGES=(
  build-essential cmake pkg-config
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev
  libopenblas-dev libboost-system-dev libboost-thread-dev libboost-filesystem-dev
  libboost-python-dev libgtest-dev python3-dev python3-venv valgrind libtbb-dev
)
# The Python dependencies are pyproject.toml's: install_python_package installs
# the package itself (editable, pure-Python: the plugin is build_plugin's) with
# the extras that the tests, plots and progress bars use, and pycaffe's own imports.
PY_EXTRAS=test,plot,progress,hdf5,digits,pycaffe

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

make_venv() {
  if [[ ! -x $VENV/bin/python ]]; then
    log "creating Python virtual environment $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  # Caffe's pycaffe build needs numpy's headers before the package (which needs
  # Caffe) can be installed.
  if ! "$VENV/bin/python" -c "import numpy" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q numpy
  fi
  if ! "$VENV/bin/python" -c "import h5py" 2>/dev/null; then
    # h5py's wheel bundles its own libhdf5, which clashes with the system one
    # that libcaffe loads into the same process; build it against the latter
    # (before the package's hdf5 extra would fetch the wheel).
    log "building h5py against the system HDF5 (a few minutes, once)"
    HDF5_DIR=/usr/lib/$(gcc -print-multiarch)/hdf5/serial \
      "$VENV/bin/python" -m pip install -q --no-binary h5py h5py
  fi
}

# pip install the package, pure-Python (CAFFE_TEMPERATURE_PLUGIN=OFF: seconds,
# no compiler), which installs pyproject.toml's dependencies and the console
# scripts; the plugin itself is build_plugin's, and build/env.sh puts the source
# tree's package first on PYTHONPATH. Not editable: scikit-build-core's editable
# finder would send every user of this environment to this checkout. Skipped
# while pyproject.toml, the package's files and this checkout are
# those of the last install.
install_python_package() {
  local stamp=$VENV/.caffe-temperature-package stamp_text isolation=()
  stamp_text="$ROOT $PY_EXTRAS $(cd "$ROOT" && find pyproject.toml CMakeLists.txt cmake python prototxt third_party \
    -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
  if [[ -f $stamp && $(cat "$stamp") == "$stamp_text" ]] &&
     "$VENV/bin/python" -c "import importlib.metadata as m; m.version('caffe-temperature')" 2>/dev/null; then
    return
  fi
  # The build requirements are in the test extra: after the first install no download is needed.
  if "$VENV/bin/python" -c "import scikit_build_core, pybind11, google.protobuf" 2>/dev/null; then
    isolation=(--no-build-isolation)
  fi
  log "installing the caffe-temperature package and its dependencies into $VENV"
  CAFFE_TEMPERATURE_PLUGIN=OFF "$VENV/bin/python" -m pip install -q "${isolation[@]}" "$ROOT[$PY_EXTRAS]"
  # The deploy tests' converter: its onnx==1.6.0 pin does not build; current onnx (test extra) serves it.
  "$VENV/bin/python" -m pip install -q --no-deps caffe2onnx==2.0.1
  echo "$stamp_text" > "$stamp"
}

# URI of the machine's own Debian archive, so that no mirror is hard-coded here.
debian_archive_uri() {
  local uri=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [[ -n $uri ]] || die "cannot find a Debian archive URI in /etc/apt; set CAFFE_SOURCE_TARBALL"
  echo "$uri"
}

# Downloads Debian's bullseye source package of Caffe through a private apt configuration:
# its own sources list and state directories, the system's apt set-up untouched.
fetch_caffe_tarball() {
  if [[ -n ${CAFFE_SOURCE_TARBALL:-} ]]; then
    [[ -f $CAFFE_SOURCE_TARBALL ]] || die "CAFFE_SOURCE_TARBALL=$CAFFE_SOURCE_TARBALL does not exist"
    echo "$CAFFE_SOURCE_TARBALL"
    return
  fi
  local dl=$CACHE/download
  local tarball
  tarball=$(ls "$dl"/caffe_*.orig.tar.* 2>/dev/null | head -1 || true)
  if [[ -z $tarball ]]; then
    local apt=$CACHE/apt
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dl"
    echo "deb-src $(debian_archive_uri) bullseye main" > "$apt/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=-"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    log "fetching the Caffe source package (Debian bullseye)"
    apt-get "${opts[@]}" update -qq >&2
    (cd "$dl" && apt-get "${opts[@]}" source --download-only "caffe=1.0.0+git20180821.99bd997-8" >&2)
    tarball=$(ls "$dl"/caffe_*.orig.tar.* | head -1)
  fi
  echo "$tarball"
}

# Caffe's source, extracted and patched for this machine's protobuf and CUDA.
extract_caffe_source() {
  local tarball=$1 src=$2
  log "extracting $tarball"
  # The orig tarball has no top-level directory.
  tar -xf "$tarball" -C "$src"
  # protobuf >= 3.21 only has the one-argument SetTotalBytesLimit.
  sed -i 's/SetTotalBytesLimit(kProtoReadBytesLimit, 536870912)/SetTotalBytesLimit(kProtoReadBytesLimit)/' \
    "$src/src/caffe/util/io.cpp"
  # CUDA 13's cudaDeviceProp lost these fields; only Caffe::DeviceQuery prints them.
  sed -i -e '/prop.clockRate;/d' -e '/"Concurrent copy and execution: "/,+1d' \
    -e '/"Kernel execution timeout:      "/,+1d' "$src/src/caffe/common.cpp"
}

build_caffe() {
  if [[ -f $CAFFE_PREFIX/share/Caffe/CaffeConfig.cmake && -x $CAFFE_PREFIX/bin/caffe ]]; then
    log "using cached Caffe at $CAFFE_PREFIX"
    return
  fi
  local tarball src build
  tarball=$(fetch_caffe_tarball)
  src=$CACHE/src/$VARIANT
  build=$CACHE/build/$VARIANT
  rm -rf "$src" "$build"
  mkdir -p "$src" "$build"
  extract_caffe_source "$tarball" "$src"
  log "configuring Caffe (${CAFFE_DEVICE_FLAGS[0]})"
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$CAFFE_PREFIX" \
    "${CAFFE_DEVICE_FLAGS[@]}" -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF -DBLAS=Open \
    -DBUILD_python=ON -Dpython_version=3 -DPYTHON_EXECUTABLE="$VENV/bin/python" \
    -DBUILD_docs=OFF -DBUILD_matlab=OFF -DCMAKE_CXX_STANDARD=17 >"$build/configure.log" 2>&1 \
    || { tail -30 "$build/configure.log" >&2; die "configuring Caffe failed (log: $build/configure.log)"; }
  log "building Caffe with $JOBS jobs (about 2 minutes on 2 cores)"
  # make's [ NN%] lines are the progress display.
  if ! cmake --build "$build" -j "$JOBS" 2>&1 | tee "$build/build.log" | grep --line-buffered -E '^\[ *[0-9]+%\]' | \
    awk '{ match($0, /[0-9]+%/); p = substr($0, RSTART, RLENGTH)
           if (p != last) { printf "\r[setup] building caffe %s", p; fflush(); last = p } } END { print "" }' >&2
  then
    tail -30 "$build/build.log" >&2
    die "building Caffe failed (log: $build/build.log)"
  fi
  cmake --install "$build" >"$build/install.log" 2>&1 || die "installing Caffe failed (log: $build/install.log)"
  log "Caffe installed at $CAFFE_PREFIX"
}

# The Makefile.config of the make build: CPU-only, OpenBLAS, no OpenCV/LevelDB/LMDB,
# pycaffe for the venv's Python and numpy.
write_makefile_config() {
  local multiarch python_version numpy_include
  multiarch=$(gcc -print-multiarch)
  python_version=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  numpy_include=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  cat <<CONFIG
# Written by caffe-temperature's scripts/setup.sh.
CPU_ONLY := 1
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 0
BLAS := open
BLAS_INCLUDE := /usr/include/$multiarch/openblas-pthread
PYTHON_LIBRARIES := boost_python${python_version/./} python$python_version
PYTHON_INCLUDE := /usr/include/python$python_version $numpy_include
PYTHON_LIB := /usr/lib/$multiarch
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/$multiarch/hdf5/serial
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CONFIG
}

# The same Caffe built the way its installation guide leads with: make, in the
# source tree, then `make distribute` (scripts/test.sh builds the plugin against both).
build_make_caffe() {
  if [[ -f $MAKE_CAFFE_DIR/distribute/lib/libcaffe.so && -f $MAKE_CAFFE_DIR/python/caffe/_caffe.so ]]; then
    log "using cached make-built Caffe at $MAKE_CAFFE_DIR"
    return
  fi
  local tarball log=$CACHE/build/caffe-$CAFFE_DEB_VERSION-make.log
  tarball=$(fetch_caffe_tarball)
  rm -rf "$MAKE_CAFFE_DIR"
  mkdir -p "$MAKE_CAFFE_DIR" "$CACHE/build"
  extract_caffe_source "$tarball" "$MAKE_CAFFE_DIR"
  write_makefile_config > "$MAKE_CAFFE_DIR/Makefile.config"
  log "building Caffe with make, $JOBS jobs (about 6 minutes on 2 cores; log: $log)"
  if ! { make -C "$MAKE_CAFFE_DIR" -j "$JOBS" all pycaffe && make -C "$MAKE_CAFFE_DIR" distribute; } >"$log" 2>&1; then
    tail -30 "$log" >&2
    die "building Caffe with make failed (log: $log)"
  fi
  log "make-built Caffe at $MAKE_CAFFE_DIR, its distribute folder at $MAKE_CAFFE_DIR/distribute"
}

build_plugin() {
  local caffe_root=$1
  log "building the plugin in $BUILD_DIR against $caffe_root"
  mkdir -p "$BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCaffe_ROOT="$caffe_root" -UCaffe_DIR \
    -DPython3_EXECUTABLE="$VENV/bin/python" \
    -DCAFFE_TEMPERATURE_HIP_CPU_DIR="${CAFFE_TEMPERATURE_HIP_CPU_DIR:-}" \
    >"$BUILD_DIR/configure.log" 2>&1 \
    || { cat "$BUILD_DIR/configure.log" >&2; die "configuring the plugin failed"; }
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

main() {
  mkdir -p "$CACHE"
  install_apt_packages
  make_venv
  local caffe_root=${Caffe_ROOT:-${Caffe_DIR:-}}
  if [[ -z $caffe_root ]]; then
    build_caffe
    caffe_root=$CAFFE_PREFIX
  fi
  if [[ ${CAFFE_TEMPERATURE_MAKE_CAFFE:-0} == 1 ]]; then
    build_make_caffe
  fi
  install_python_package
  build_plugin "$caffe_root"
  log "done; use it from a shell with: source $BUILD_DIR/env.sh"
}

main "$@"
