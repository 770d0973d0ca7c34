#!/usr/bin/env bash
# The plugin resolves libcaffe, by its own run path, to the Caffe that CMake
# chose, whatever other Caffe the machine has (LD_LIBRARY_PATH left out).
set -euo pipefail
plugin=$1 expected=$(readlink -f "$2")
resolved=$(env -u LD_LIBRARY_PATH ldd "$plugin" | awk '$1 ~ /^libcaffe\.so/ {print $3}')
[[ -n $resolved ]] || { ldd "$plugin"; echo "FAIL: $plugin does not link libcaffe"; exit 1; }
[[ $(readlink -f "$resolved") == "$expected" ]] \
  || { echo "FAIL: $plugin resolves libcaffe to $resolved, not to $expected"; exit 1; }
echo "PASS: $plugin links $expected"
