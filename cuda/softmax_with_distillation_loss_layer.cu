#include <vector>

#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/softmax_with_distillation_loss_layer.hpp"
#include "reduce.cuh"

namespace caffe_temperature {

namespace {

const int kThreads = 256;

// How the C channels of one position are shared among threads. Every thread
// of a group gets the same position and the group-wide reductions.
//
// One thread per position when inner > 1: neighbouring threads read
// neighbouring positions, so each channel step is one coalesced load.
struct ThreadPerPosition {
  static __device__ int Position() {
    return blockIdx.x * blockDim.x + threadIdx.x;
  }
  static __device__ int Lane() { return 0; }
  static __device__ int Size() { return 1; }
  template <typename T, typename Op>
  static __device__ T AllReduce(T value, Op, T*) { return value; }
  static int Blocks(int positions) {
    return (positions + kThreads - 1) / kThreads;
  }
};

// One warp per contiguous row (inner == 1), the common classifier case.
struct WarpPerPosition {
  static __device__ int Position() {
    return (blockIdx.x * blockDim.x + threadIdx.x) / kWarpSize;
  }
  static __device__ int Lane() { return threadIdx.x % kWarpSize; }
  static __device__ int Size() { return kWarpSize; }
  template <typename T, typename Op>
  static __device__ T AllReduce(T value, Op op, T*) {
    return WarpAllReduce(value, op);
  }
  static int Blocks(int positions) {
    const int per_block = kThreads / kWarpSize;
    return (positions + per_block - 1) / per_block;
  }
};

// One block per row when a row is long enough to keep a block busy.
struct BlockPerPosition {
  static __device__ int Position() { return blockIdx.x; }
  static __device__ int Lane() { return threadIdx.x; }
  static __device__ int Size() { return blockDim.x; }
  template <typename T, typename Op>
  static __device__ T AllReduce(T value, Op op, T* scratch) {
    return BlockAllReduce(value, op, scratch);
  }
  static int Blocks(int positions) { return positions; }
};

template <typename Dtype>
struct ForwardArgs {
  SoftmaxShape shape;
  Dtype beta;
  const Dtype* student;
  const Dtype* teacher;
  const Dtype* label;  // NULL without the label bottom
  bool has_ignore_label;
  int ignore_label;
  Dtype* prob;          // q
  Dtype* teacher_prob;  // p
  Dtype* stats;         // 3 x positions, see the layer's position_stats_
};

// The whole forward pass of one position: both softmaxes, q and p, the KL
// divergence and the label's verdict, reading the logits from global memory
// three times and keeping log p and log q in registers.
template <typename Dtype, typename Group>
__global__ void DistillationForward(const ForwardArgs<Dtype> a) {
  __shared__ Dtype scratch[kWarpSize];
  const int positions = a.shape.outer * a.shape.inner;
  const int pos = Group::Position();
  // The whole group leaves together: its reductions need every lane.
  if (pos >= positions) return;
  const int inner = a.shape.inner, channels = a.shape.channels;
  const int offset = (pos / inner) * channels * inner + pos % inner;
  const Dtype* s = a.student + offset;
  const Dtype* t = a.teacher + offset;

  Dtype max_s = -INFINITY, max_t = -INFINITY;
  for (int c = Group::Lane(); c < channels; c += Group::Size()) {
    max_s = max(max_s, s[c * inner]);
    max_t = max(max_t, t[c * inner]);
  }
  max_s = Group::AllReduce(max_s, MaxOp(), scratch);
  max_t = Group::AllReduce(max_t, MaxOp(), scratch);

  Dtype sum_s = 0, sum_t = 0;
  for (int c = Group::Lane(); c < channels; c += Group::Size()) {
    sum_s += exp(a.beta * (s[c * inner] - max_s));
    sum_t += exp(a.beta * (t[c * inner] - max_t));
  }
  const Dtype log_sum_s = log(Group::AllReduce(sum_s, SumOp(), scratch));
  const Dtype log_sum_t = log(Group::AllReduce(sum_t, SumOp(), scratch));

  Dtype kl = 0;
  for (int c = Group::Lane(); c < channels; c += Group::Size()) {
    const Dtype log_q = a.beta * (s[c * inner] - max_s) - log_sum_s;
    const Dtype log_p = a.beta * (t[c * inner] - max_t) - log_sum_t;
    const Dtype p = exp(log_p);
    a.prob[offset + c * inner] = exp(log_q);
    a.teacher_prob[offset + c * inner] = p;
    // 0 log 0 = 0; log p may be -inf where p underflowed.
    // != 0, not > 0: a NaN teacher probability must reach the loss.
    if (p != 0) kl += p * (log_p - log_q);
  }
  kl = Group::AllReduce(kl, SumOp(), scratch);

  if (Group::Lane() != 0) return;
  const LabelKind kind =
      a.label ? ClassifyLabel(a.label[pos], channels, a.has_ignore_label,
                              a.ignore_label)
              : kLabelValid;
  a.stats[pos] = kind == kLabelValid ? kl : Dtype(0);
  a.stats[positions + pos] = kind == kLabelValid;
  a.stats[2 * positions + pos] = kind == kLabelInvalid;
}

template <typename Dtype, typename Group>
void LaunchForward(const ForwardArgs<Dtype>& args) {
  // NOLINT_NEXT_LINE(whitespace/operators)
  DistillationForward<Dtype, Group><<<Group::Blocks(args.shape.positions()),
      kThreads>>>(args);
  CUDA_POST_KERNEL_CHECK;
}

// d student = scale * valid(position) * (q - p).
template <typename Dtype>
__global__ void DistillationBackward(const int count, const int channels,
                                     const int inner, const Dtype scale,
                                     const Dtype* q, const Dtype* p,
                                     const Dtype* valid, Dtype* diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int pos = index / (channels * inner) * inner + index % inner;
    diff[index] = scale * valid[pos] * (q[index] - p[index]);
  }
}

}  // namespace

}  // namespace caffe_temperature

namespace caffe {

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  using caffe_temperature::ForwardArgs;
  const bool has_label = bottom.size() == 3;
  const ForwardArgs<Dtype> args = {
      shape_, beta_, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      has_label ? bottom[2]->gpu_data() : NULL, has_ignore_label_,
      ignore_label_, prob_.mutable_gpu_data(),
      teacher_prob_.mutable_gpu_data(), position_stats_.mutable_gpu_data()};
  if (shape_.inner > 1) {
    caffe_temperature::LaunchForward<Dtype,
        caffe_temperature::ThreadPerPosition>(args);
  } else if (shape_.channels >= 2048) {
    caffe_temperature::LaunchForward<Dtype,
        caffe_temperature::BlockPerPosition>(args);
  } else {
    caffe_temperature::LaunchForward<Dtype,
        caffe_temperature::WarpPerPosition>(args);
  }
  // Sums of the three rows, then one small copy: the loss is a host scalar
  // in Caffe, and a bad label must stop the net here.
  caffe_gpu_gemv<Dtype>(CblasNoTrans, 3, shape_.positions(), Dtype(1),
                        position_stats_.gpu_data(), ones_.gpu_data(), Dtype(0),
                        stats_sum_.mutable_gpu_data());
  const Dtype* sums = stats_sum_.cpu_data();
  if (sums[2] > 0) {
    // The error path alone copies the labels, to name the first bad one.
    CheckLabels(bottom[2]->cpu_data());
  }
  FinishForward(sums[0], static_cast<int>(sums[1] + 0.5), top);
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  if (!propagate_down[0]) return;
  const Dtype scale = StudentDiffScale(top);
  const int count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  caffe_temperature::DistillationBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, shape_.channels, shape_.inner, scale,
      prob_.gpu_data(), teacher_prob_.gpu_data(),
      position_stats_.gpu_data() + shape_.positions(),
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(SoftmaxWithDistillationLossLayer);

}  // namespace caffe
