#include <climits>
#include <vector>

#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/layer_params.hpp"
#include "caffe_temperature/softmax_with_infogain_loss_layer.hpp"
#include "reduce.cuh"

namespace caffe {

namespace {

using caffe_temperature::BlockAllReduce;
using caffe_temperature::kWarpSize;
using caffe_temperature::MaxOp;
using caffe_temperature::SumOp;
using caffe_temperature::WarpAllReduce;

const int kIgnored = -1;
const int kInvalid = -2;

// What the kernels need to know about labels and H.
template <typename Dtype>
struct InfogainArgs {
  int positions, channels, inner;
  const Dtype* label;
  bool has_ignore_label;
  int ignore_label;
  const Dtype* H;
  const Dtype* sum_rows_H;
};

// The offset of H's row for this label, kIgnored or kInvalid; the same test
// as the CPU path (NaN fails every comparison, hence kInvalid).
template <typename Dtype>
__device__ __forceinline__ int LabelRow(const InfogainArgs<Dtype>& a,
                                        Dtype value) {
  if (a.has_ignore_label && value == a.ignore_label) return kIgnored;
  if (!(value >= 0 && value < a.channels && value == floor(value))) {
    return kInvalid;
  }
  return static_cast<int>(value) * a.channels;
}

// Reduction over the kLanes threads that share one position.
template <int kLanes, typename T, typename Op>
__device__ __forceinline__ T LaneAllReduce(T value, Op op) {
  return kLanes == 1 ? value : WarpAllReduce(value, op);
}

// sums[row] = sum_k H[row, k], one warp per row; the first non-finite entry
// (lowest index) goes to *bad_index.
template <typename Dtype>
__global__ void InfogainRowSums(int channels, const Dtype* H, Dtype* sums,
                                int* bad_index) {
  const int row = (blockIdx.x * blockDim.x + threadIdx.x) / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= channels) return;  // whole warps leave together
  Dtype sum = 0;
  for (int c = lane; c < channels; c += kWarpSize) {
    const Dtype value = H[row * channels + c];
    if (!isfinite(value)) atomicMin(bad_index, row * channels + c);
    sum += value;
  }
  sum = WarpAllReduce(sum, SumOp());
  if (lane == 0) sums[row] = sum;
}

// One pass per position by kLanes threads: kLanes = 32 reads the C values of
// a contiguous row (inner == 1) coalesced across a warp; kLanes = 1 gives
// each thread one position, coalesced across neighbouring inner positions.
// Writes the probabilities, the position's loss
//   -sum_c H[l, c] (x_c - m - log_sum) = -(sum_c H[l, c] (x_c - m)
//                                          - sum_rows_H[l] log_sum)
// and whether it counts; the first bad label position goes to *bad_label.
template <typename Dtype, int kLanes>
__global__ void InfogainForward(const InfogainArgs<Dtype> a, const Dtype* x,
                                Dtype* prob, Dtype* loss, Dtype* valid,
                                int* bad_label) {
  const int thread = blockIdx.x * blockDim.x + threadIdx.x;
  const int pos = thread / kLanes, lane = thread % kLanes;
  if (pos >= a.positions) return;  // whole groups leave together
  const int C = a.channels, inner = a.inner;
  const int offset = (pos / inner) * C * inner + pos % inner;
  const Dtype* xp = x + offset;
  Dtype* pp = prob + offset;
  const int row = LabelRow(a, a.label[pos]);
  if (row == kInvalid && lane == 0) atomicMin(bad_label, pos);

  Dtype m = xp[0];
  for (int c = lane; c < C; c += kLanes) m = max(m, xp[c * inner]);
  m = LaneAllReduce<kLanes>(m, MaxOp());
  Dtype sum = 0, h_dot = 0;
  for (int c = lane; c < C; c += kLanes) {
    const Dtype d = xp[c * inner] - m;
    sum += exp(d);
    // 0 log 0 = 0: a -inf logit (a masked class) with H[l, c] = 0 adds 0.
    if (row >= 0 && a.H[row + c] != 0) h_dot += a.H[row + c] * d;
  }
  sum = LaneAllReduce<kLanes>(sum, SumOp());
  h_dot = LaneAllReduce<kLanes>(h_dot, SumOp());
  const Dtype log_sum = log(sum);
  for (int c = lane; c < C; c += kLanes) {
    pp[c * inner] = exp(xp[c * inner] - m - log_sum);
  }
  if (lane == 0) {
    loss[pos] = row >= 0 ? a.sum_rows_H[row / C] * log_sum - h_dot : 0;
    valid[pos] = row >= 0 ? 1 : 0;
  }
}

// sums = {sum of loss, sum of valid}, by a single block: deterministic, and
// small next to the forward pass.
template <typename Dtype>
__global__ void SumLossAndValid(int n, const Dtype* loss, const Dtype* valid,
                                Dtype* sums) {
  __shared__ Dtype scratch[kWarpSize];
  Dtype loss_sum = 0, valid_sum = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    loss_sum += loss[i];
    valid_sum += valid[i];
  }
  loss_sum = BlockAllReduce(loss_sum, SumOp(), scratch);
  valid_sum = BlockAllReduce(valid_sum, SumOp(), scratch);
  if (threadIdx.x == 0) {
    sums[0] = loss_sum;
    sums[1] = valid_sum;
  }
}

// dx_c = top_diff / norm * (p_c sum_rows_H[l] - H[l, c]), 0 where ignored;
// one thread per element. top_diff stays on the device.
template <typename Dtype>
__global__ void InfogainBackward(const InfogainArgs<Dtype> a, int count,
                                 const Dtype* prob, const Dtype* top_diff,
                                 Dtype inv_norm, Dtype* dx) {
  CUDA_KERNEL_LOOP(index, count) {
    const int C = a.channels, inner = a.inner;
    const int c = (index / inner) % C;
    const int pos = (index / (C * inner)) * inner + index % inner;
    // Labels were validated by the forward pass of the same batch.
    const int row = LabelRow(a, a.label[pos]);
    dx[index] = row < 0 ? Dtype(0)
        : top_diff[0] * inv_norm *
          (prob[index] * a.sum_rows_H[row / C] - a.H[row + c]);
  }
}

}  // namespace

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const Blob<Dtype>& H = Infogain(bottom);
  int* bad_index = bad_index_.mutable_gpu_data();
  caffe_gpu_set(2, INT_MAX, bad_index);
  if (bottom.size() > 2) {
    const int threads = shape_.channels * kWarpSize;
    InfogainRowSums<Dtype><<<CAFFE_GET_BLOCKS(threads),
                             CAFFE_CUDA_NUM_THREADS>>>(
        shape_.channels, H.gpu_data(), sum_rows_H_.mutable_gpu_data(),
        bad_index + 1);
    CUDA_POST_KERNEL_CHECK;
  }
  const InfogainArgs<Dtype> args = {
      shape_.positions(), shape_.channels, shape_.inner, bottom[1]->gpu_data(),
      has_ignore_label_, ignore_label_, H.gpu_data(), sum_rows_H_.gpu_data()};
  const Dtype* x = bottom[0]->gpu_data();
  Dtype* prob = Prob(top)->mutable_gpu_data();
  Dtype* loss = position_loss_.mutable_gpu_data();
  Dtype* valid = position_valid_.mutable_gpu_data();
  if (shape_.inner == 1) {
    InfogainForward<Dtype, kWarpSize><<<
        CAFFE_GET_BLOCKS(shape_.positions() * kWarpSize),
        CAFFE_CUDA_NUM_THREADS>>>(args, x, prob, loss, valid, bad_index);
  } else {
    InfogainForward<Dtype, 1><<<CAFFE_GET_BLOCKS(shape_.positions()),
                                CAFFE_CUDA_NUM_THREADS>>>(
        args, x, prob, loss, valid, bad_index);
  }
  CUDA_POST_KERNEL_CHECK;
  SumLossAndValid<Dtype><<<1, CAFFE_CUDA_NUM_THREADS>>>(
      shape_.positions(), loss, valid, loss_sums_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;

  // The kernels validated H and the labels; only these two indices and the
  // two sums (16 to 24 bytes) come back, so that a bad value stops the net
  // with the same message as on the CPU. The offending value itself is read
  // on the host only on the way to LOG(FATAL).
  const int* bad = bad_index_.cpu_data();
  if (bad[1] != INT_MAX) FailOnInfogainEntry(bad[1], H.cpu_data()[bad[1]]);
  if (bad[0] != INT_MAX) FailOnLabel(bad[0], bottom[1]->cpu_data()[bad[0]]);
  const Dtype* sums = loss_sums_.cpu_data();
  normalizer_ = caffe_temperature::LossNormalizer(
      normalization_, shape_.outer, shape_.inner, static_cast<int>(sums[1]));
  top[0]->mutable_cpu_data()[0] = sums[0] / normalizer_;
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  if (!propagate_down[0]) return;
  const InfogainArgs<Dtype> args = {
      shape_.positions(), shape_.channels, shape_.inner, bottom[1]->gpu_data(),
      has_ignore_label_, ignore_label_, Infogain(bottom).gpu_data(),
      sum_rows_H_.gpu_data()};
  const int count = bottom[0]->count();
  InfogainBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
                            CAFFE_CUDA_NUM_THREADS>>>(
      args, count, Prob(top)->gpu_data(), top[0]->gpu_diff(),
      Dtype(1) / normalizer_, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(SoftmaxWithInfogainLossLayer);

}  // namespace caffe
