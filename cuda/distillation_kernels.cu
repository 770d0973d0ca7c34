// SoftmaxWithDistillationLoss on the device, on the dispatch of
// per_vector.cuh: the forward pass of one position computes both softmaxes,
// the KL divergence and the label's verdict, reading the logits three times
// and keeping log p and log q in registers.
#include <cstdint>

#include "caffe_temperature/gpu_kernels.hpp"
#include "device_math.cuh"
#include "per_vector.cuh"

namespace caffe_temperature {

namespace {

template <typename Dtype>
struct DistillationForwardOp {
  Dtype beta;
  const Dtype* student;
  const Dtype* teacher;
  const Dtype* label;  // NULL without the label bottom
  IgnoreLabel ignore;
  Dtype* q;
  Dtype* p;
  Dtype* stats;  // 3 x positions
  int64_t positions;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    Dtype max_s = -INFINITY, max_t = -INFINITY;
    ForEach(g, v, [&](int64_t k, int) {
      max_s = MaxOp()(max_s, student[k]);
      max_t = MaxOp()(max_t, teacher[k]);
    });
    max_s = g.AllReduce(max_s, MaxOp());
    max_t = g.AllReduce(max_t, MaxOp());
    Dtype sum_s = 0, sum_t = 0;
    ForEach(g, v, [&](int64_t k, int) {
      sum_s += Exp(beta * (student[k] - max_s));
      sum_t += Exp(beta * (teacher[k] - max_t));
    });
    const Dtype log_sum_s = Log(g.AllReduce(sum_s, SumOp()));
    const Dtype log_sum_t = Log(g.AllReduce(sum_t, SumOp()));
    Dtype kl = 0;
    ForEach(g, v, [&](int64_t k, int) {
      const Dtype log_q = beta * (student[k] - max_s) - log_sum_s;
      const Dtype log_p = beta * (teacher[k] - max_t) - log_sum_t;
      const Dtype p_k = Exp(log_p);
      q[k] = Exp(log_q);
      p[k] = p_k;
      // 0 log 0 = 0; log p may be -inf where p underflowed. != 0, not > 0:
      // a NaN teacher probability must reach the loss.
      if (p_k != 0) kl += p_k * (log_p - log_q);
    });
    kl = g.AllReduce(kl, SumOp());
    if (g.first != 0) return;
    const LabelKind kind =
        label ? ClassifyLabel(label[v.position], v.channels, ignore)
              : kLabelValid;
    stats[v.position] = kind == kLabelValid ? kl : Dtype(0);
    stats[positions + v.position] = kind == kLabelValid;
    stats[2 * positions + v.position] = kind == kLabelInvalid;
  }
};

template <typename Dtype>
struct DistillationBackwardOp {
  Dtype scale;
  const Dtype* q;
  const Dtype* p;
  const Dtype* valid;
  Dtype* dx;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype s = scale * valid[v.position];
    ForEach(g, v, [&](int64_t k, int) { dx[k] = s * (q[k] - p[k]); });
  }
};

}  // namespace

template <typename Dtype>
void DistillationForwardGPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* label, const IgnoreLabel& ignore,
                            Dtype* q, Dtype* p, Dtype* stats) {
  const DistillationForwardOp<Dtype> op = {
      beta, student, teacher, label, ignore, q, p, stats,
      static_cast<int64_t>(shape.outer) * shape.inner};
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void DistillationBackwardGPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx) {
  const DistillationBackwardOp<Dtype> op = {scale, q, p, valid, dx};
  LaunchPerVector<Dtype>(shape, op);
}

#define CT_INSTANTIATE_DISTILLATION_GPU(Dtype)                                \
  template void DistillationForwardGPU<Dtype>(                                \
      const SoftmaxShape&, Dtype, const Dtype*, const Dtype*, const Dtype*,   \
      const IgnoreLabel&, Dtype*, Dtype*, Dtype*);                            \
  template void DistillationBackwardGPU<Dtype>(                               \
      const SoftmaxShape&, Dtype, const Dtype*, const Dtype*, const Dtype*,   \
      Dtype*);

CT_INSTANTIATE_DISTILLATION_GPU(float)
CT_INSTANTIATE_DISTILLATION_GPU(double)

}  // namespace caffe_temperature
