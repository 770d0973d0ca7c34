// SoftmaxWithInfogainLoss on the device: one pass per softmax vector (the
// dispatch of per_vector.cuh) for the forward and one for the backward.
#include <climits>
#include <cstdint>

#include "caffe_temperature/gpu_kernels.hpp"
#include "device_math.cuh"
#include "per_vector.cuh"

namespace caffe_temperature {

namespace {

// A vector's label, read once per vector: its class when valid, else -1.
template <typename Dtype>
__device__ __forceinline__ int LabelClass(const Dtype* label,
                                          const IgnoreLabel& ignore,
                                          const Vector& v, LabelKind* kind) {
  const Dtype value = label[v.position];
  *kind = ClassifyLabel(value, v.channels, ignore);
  return *kind == kLabelValid ? static_cast<int>(value) : -1;
}

// With m = max_c x_c and S = sum_c exp(x_c - m), the position's loss is
//   -sum_c H[l, c] (x_c - m - log S) = sum_rows_H[l] log S - h_dot,
//   h_dot = sum_c H[l, c] (x_c - m),
// which needs no log-probability blob.
template <typename Dtype>
struct InfogainForwardOp {
  const Dtype* x;
  const Dtype* label;
  IgnoreLabel ignore;
  const Dtype* H;
  const Dtype* sum_rows_H;
  Dtype* prob;
  Dtype* stats;
  int64_t positions;
  int* first_bad_label;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    LabelKind kind;
    const int l = LabelClass(label, ignore, v, &kind);
    const Dtype* h = l >= 0 ? H + static_cast<int64_t>(l) * v.channels : NULL;
    const Dtype m = Max(g, v, x);
    Dtype sum = 0, h_dot = 0;
    ForEach(g, v, [&](int64_t k, int c) {
      const Dtype d = x[k] - m;
      sum += Exp(d);
      // 0 log 0 = 0: a -inf logit (a masked class) with H[l, c] = 0 adds 0;
      // with H[l, c] > 0 the loss is +inf, as -H log 0 is.
      if (h && h[c] != 0) h_dot += h[c] * d;
    });
    sum = g.AllReduce(sum, SumOp());
    h_dot = g.AllReduce(h_dot, SumOp());
    const Dtype log_sum = Log(sum);
    ForEach(g, v, [&](int64_t k, int) { prob[k] = Exp(x[k] - m - log_sum); });
    if (g.first != 0) return;
    stats[v.position] = h ? sum_rows_H[l] * log_sum - h_dot : Dtype(0);
    stats[positions + v.position] = h ? Dtype(1) : Dtype(0);
    if (kind == kLabelInvalid) {
      atomicMin(first_bad_label, static_cast<int>(v.position));
    }
  }
};

template <typename Dtype>
struct InfogainBackwardOp {
  const Dtype* prob;
  const Dtype* label;
  IgnoreLabel ignore;
  const Dtype* H;
  const Dtype* sum_rows_H;
  const Dtype* top_diff;
  Dtype inv_norm;
  Dtype* dx;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    LabelKind kind;
    const int l = LabelClass(label, ignore, v, &kind);
    if (l < 0) {
      ForEach(g, v, [&](int64_t k, int) { dx[k] = 0; });
      return;
    }
    const Dtype* h = H + static_cast<int64_t>(l) * v.channels;
    const Dtype scale = top_diff[0] * inv_norm;
    const Dtype p_scale = scale * sum_rows_H[l];
    ForEach(g, v, [&](int64_t k, int c) {
      dx[k] = p_scale * prob[k] - scale * h[c];
    });
  }
};

}  // namespace

template <typename Dtype>
void InfogainLossForwardGPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* label, const IgnoreLabel& ignore,
                            const Dtype* H, const Dtype* sum_rows_H,
                            Dtype* prob, Dtype* stats, int* first_bad_label) {
  const int64_t positions = static_cast<int64_t>(shape.outer) * shape.inner;
  const InfogainForwardOp<Dtype> op = {x,    label, ignore,    H,
                                       sum_rows_H, prob, stats, positions,
                                       first_bad_label};
  Launch(SetKernel<int>, 1, 1, first_bad_label, INT_MAX);
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void InfogainLossBackwardGPU(const SoftmaxShape& shape, const Dtype* prob,
                             const Dtype* label, const IgnoreLabel& ignore,
                             const Dtype* H, const Dtype* sum_rows_H,
                             const Dtype* top_diff, Dtype inv_norm,
                             Dtype* dx) {
  const InfogainBackwardOp<Dtype> op = {prob,       label,    ignore,
                                        H,          sum_rows_H, top_diff,
                                        inv_norm,   dx};
  LaunchPerVector<Dtype>(shape, op);
}

#define CT_INSTANTIATE_INFOGAIN_GPU(Dtype)                                    \
  template void InfogainLossForwardGPU<Dtype>(                                \
      const SoftmaxShape&, const Dtype*, const Dtype*, const IgnoreLabel&,    \
      const Dtype*, const Dtype*, Dtype*, Dtype*, int*);                      \
  template void InfogainLossBackwardGPU<Dtype>(                               \
      const SoftmaxShape&, const Dtype*, const Dtype*, const IgnoreLabel&,    \
      const Dtype*, const Dtype*, const Dtype*, Dtype, Dtype*);

CT_INSTANTIATE_INFOGAIN_GPU(float)
CT_INSTANTIATE_INFOGAIN_GPU(double)

}  // namespace caffe_temperature
