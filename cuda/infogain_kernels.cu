// SoftmaxWithInfogainLoss on the device: one kernel for the forward (a
// cached vector where it fits, cached_row.cuh, else per_vector.cuh's passes)
// and one for the backward, which reads prob once anyway.
#include <climits>
#include <cstdint>

#include "cached_row.cuh"
#include "caffe_temperature/gpu_kernels.hpp"
#include "device_math.cuh"
#include "per_vector.cuh"

namespace caffe_temperature {

namespace {

// The labels and H, as both passes read them.
template <typename Dtype>
struct InfogainTargets {
  const Dtype* label;
  IgnoreLabel ignore;
  const Dtype* H;
  const Dtype* sum_rows_H;

  // The row of H that the vector's label picks and, in *row_sum, its sum;
  // NULL unless the label is valid. The label is read once per vector.
  __device__ const Dtype* Row(const Vector& v, LabelKind* kind,
                              Dtype* row_sum) const {
    const Dtype value = label[v.position];
    *kind = ClassifyLabel(value, v.channels, ignore);
    if (*kind != kLabelValid) return NULL;
    const int l = static_cast<int>(value);
    *row_sum = sum_rows_H[l];
    return H + static_cast<int64_t>(l) * v.channels;
  }
};

// With m = max_c x_c and S = sum_c exp(x_c - m), the position's loss is
//   -sum_c H[l, c] (x_c - m - log S) = sum_rows_H[l] log S - h_dot,
//   h_dot = sum_c H[l, c] (x_c - m),
// which needs no log-probability blob. On a cached row x is read once.
template <typename D>
struct InfogainForwardOp {
  typedef D Dtype;
  static const int kInputs = 1;
  static const int kStreamable = 0;
  const Dtype* x;
  InfogainTargets<Dtype> targets;
  Dtype* prob;
  Dtype* stats;
  int64_t positions;
  int* first_bad_label;
  bool Aligned(size_t bytes) const { return AllAligned(bytes, x, prob); }

  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    LabelKind kind;
    Dtype row_sum = 0;
    const Dtype* h = targets.Row(v, &kind, &row_sum);
    const Dtype m = Max(g, v, x);
    Dtype sum = 0, h_dot = 0;
    ForEach(g, v, [&](int64_t k, int c) {
      Accumulate(h, c, LoadGlobal(x + k) - m, &sum, &h_dot);
    });
    sum = g.AllReduce(sum, SumOp());
    h_dot = g.AllReduce(h_dot, SumOp());
    const Dtype log_sum = Log(sum);
    ForEach(g, v, [&](int64_t k, int) {
      StoreGlobal(prob + k, Exp(LoadGlobal(x + k) - m - log_sum));
    });
    if (g.first == 0) Record(v, kind, h, row_sum * log_sum - h_dot);
  }

  template <typename Row>
  __device__ void operator()(Row& row, const Vector& v) const {
    LabelKind kind;
    Dtype row_sum = 0;
    const Dtype* h = targets.Row(v, &kind, &row_sum);
    row.template Load<0>(x + v.offset);
    Dtype m = -INFINITY;
    row.ForEach([&](int, Dtype& x_c) { m = MaxOp()(m, x_c); });
    m = row.AllReduce(m, MaxOp());
    Dtype sum = 0, h_dot = 0;
    row.ForEach([&](int c, Dtype& x_c) {
      Accumulate(h, c, x_c - m, &sum, &h_dot);
    });
    sum = row.AllReduce(sum, SumOp());
    h_dot = row.AllReduce(h_dot, SumOp());
    const Dtype log_sum = Log(sum);
    row.Store(prob + v.offset,
              [&](int, Dtype x_c) { return Exp(x_c - m - log_sum); });
    if (row.Leader()) Record(v, kind, h, row_sum * log_sum - h_dot);
  }

 private:
  // Adds class c, at d = x_c - m, to the sum of exps and to h_dot.
  __device__ static void Accumulate(const Dtype* h, int c, Dtype d,
                                    Dtype* sum, Dtype* h_dot) {
    *sum += Exp(d);
    // 0 log 0 = 0: a -inf logit (a masked class) with H[l, c] = 0 adds 0;
    // with H[l, c] > 0 the loss is +inf, as -H log 0 is.
    if (h && h[c] != 0) *h_dot += h[c] * d;
  }

  // The position's statistics, by one thread of its group.
  __device__ void Record(const Vector& v, LabelKind kind, const Dtype* h,
                         Dtype loss) const {
    stats[v.position] = h ? loss : Dtype(0);
    stats[positions + v.position] = h ? Dtype(1) : Dtype(0);
    if (kind == kLabelInvalid) {
      atomicMin(first_bad_label, static_cast<int>(v.position));
    }
  }
};

template <typename Dtype>
struct InfogainBackwardOp {
  const Dtype* prob;
  InfogainTargets<Dtype> targets;
  const Dtype* top_diff;
  Dtype inv_norm;
  Dtype* dx;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    LabelKind kind;
    Dtype row_sum = 0;
    const Dtype* h = targets.Row(v, &kind, &row_sum);
    if (!h) {
      ForEach(g, v, [&](int64_t k, int) { StoreGlobal(dx + k, Dtype(0)); });
      return;
    }
    const Dtype scale = top_diff[0] * inv_norm;
    const Dtype p_scale = scale * row_sum;
    ForEach(g, v, [&](int64_t k, int c) {
      StoreGlobal(dx + k, p_scale * LoadGlobal(prob + k) - scale * h[c]);
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
  const InfogainTargets<Dtype> targets = {label, ignore, H, sum_rows_H};
  const InfogainForwardOp<Dtype> op = {x, targets, prob, stats, positions,
                                       first_bad_label};
  Launch(SetKernel<int>, 1, 1, first_bad_label, INT_MAX);
  LaunchRowOp(shape, op);
}

template <typename Dtype>
void InfogainLossBackwardGPU(const SoftmaxShape& shape, const Dtype* prob,
                             const Dtype* label, const IgnoreLabel& ignore,
                             const Dtype* H, const Dtype* sum_rows_H,
                             const Dtype* top_diff, Dtype inv_norm,
                             Dtype* dx) {
  const InfogainTargets<Dtype> targets = {label, ignore, H, sum_rows_H};
  const InfogainBackwardOp<Dtype> op = {prob, targets, top_diff, inv_norm, dx};
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
