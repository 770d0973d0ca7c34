#!/usr/bin/env bash
# The main job on the built-in example: set-up (idempotent), then the deploy
# net of prototxt/ at T = 1 and T = 40, through TemperatureSoftmax and through
# stock Scale + Softmax, side by side.
#   scripts/demo.sh [--T 40] [--deploy prototxt/deploy_example.prototxt]
set -euo pipefail
# shellcheck source=scripts/paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
"$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "$BUILD_DIR/env.sh"
cd "$ROOT"
exec python -m caffe_temperature.demo "$@"
