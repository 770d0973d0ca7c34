#!/usr/bin/env bash
# The stock caffe tool runs a net with plugin layers through the wrapper
# (LD_PRELOAD) and refuses it without: train lowers the loss, test and time run.
set -euo pipefail
wrapper=$1 stock=$2 prototxt_dir=$3
work=$(mktemp -d)
# The loss lines are INFO messages on stderr.
export GLOG_minloglevel=0 GLOG_logtostderr=1
trap 'rm -rf "$work"' EXIT
net=$prototxt_dir/temperature_softmax_train.prototxt

cat > "$work/solver.prototxt" <<SOLVER
net: "$net"
base_lr: 0.5
lr_policy: "fixed"
max_iter: 40
display: 1
snapshot_prefix: "$work/snap"
solver_mode: CPU
random_seed: 1
SOLVER

if "$stock" time -model "$net" -iterations 1 >"$work/stock.log" 2>&1; then
  echo "FAIL: the stock caffe tool accepted a TemperatureSoftmax net without the plugin"; exit 1
fi
grep -q "Unknown layer type: TemperatureSoftmax" "$work/stock.log" \
  || { cat "$work/stock.log"; echo "FAIL: unexpected error from the stock tool"; exit 1; }

"$wrapper" train -solver "$work/solver.prototxt" >"$work/train.log" 2>&1 \
  || { tail -20 "$work/train.log"; echo "FAIL: caffe train"; exit 1; }
losses=$(sed -n 's/.*Iteration \([0-9]*\).*, loss = \([-0-9.e]*\).*/\2/p' "$work/train.log")
first=$(echo "$losses" | head -1) last=$(echo "$losses" | tail -1)
reports=$(echo "$losses" | grep -c . || true)
echo "caffe train: loss $first -> $last over $reports reports"
[[ $reports -ge 40 ]] || { tail -20 "$work/train.log"; echo "FAIL: caffe train reported $reports losses"; exit 1; }
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.5 * a) }' \
  || { echo "FAIL: training did not halve the loss"; exit 1; }

"$wrapper" test -model "$net" -weights "$work/snap_iter_40.caffemodel" -iterations 2 \
  >"$work/test.log" 2>&1 || { tail -20 "$work/test.log"; echo "FAIL: caffe test"; exit 1; }
grep -q "loss = " "$work/test.log" || { echo "FAIL: caffe test printed no loss"; exit 1; }
"$wrapper" time -model "$net" -iterations 2 >"$work/time.log" 2>&1 \
  || { tail -20 "$work/time.log"; echo "FAIL: caffe time"; exit 1; }
grep -q "prob.*forward" "$work/time.log" || { echo "FAIL: caffe time did not time the layer"; exit 1; }
echo "PASS: caffe train/test/time with the plugin; stock caffe refuses the net"
