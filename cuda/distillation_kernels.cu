// SoftmaxWithDistillationLoss on the device: the forward pass of one
// position computes both softmaxes, the KL divergence and the label's
// verdict, reading the logits once where the two rows fit on chip
// (cached_row.cuh), the student once and the teacher three times where the
// student's row alone fits, and both three times elsewhere (per_vector.cuh).
#include <cstdint>

#include "cached_row.cuh"
#include "caffe_temperature/gpu_kernels.hpp"
#include "device_math.cuh"
#include "per_vector.cuh"

namespace caffe_temperature {

namespace {

// On a cached row the logits are read once, q and p written once; on a row
// too long for both, the student cached and the teacher read three times.
template <typename D>
struct DistillationForwardOp {
  typedef D Dtype;
  static const int kInputs = 2;
  static const int kStreamable = 1;  // the teacher: never changed in ForEach
  Dtype beta;
  const Dtype* student;
  const Dtype* teacher;
  const Dtype* label;  // NULL without the label bottom
  IgnoreLabel ignore;
  Dtype* q;
  Dtype* p;
  Dtype* stats;  // 3 x positions
  int64_t positions;
  bool Aligned(size_t bytes) const {
    return AllAligned(bytes, student, teacher, q, p);
  }

  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    Dtype max_s = -INFINITY, max_t = -INFINITY;
    ForEach(g, v, [&](int64_t k, int) {
      max_s = MaxOp()(max_s, LoadGlobal(student + k));
      max_t = MaxOp()(max_t, LoadGlobal(teacher + k));
    });
    max_s = g.AllReduce(max_s, MaxOp());
    max_t = g.AllReduce(max_t, MaxOp());
    Dtype sum_s = 0, sum_t = 0;
    ForEach(g, v, [&](int64_t k, int) {
      sum_s += Exp(beta * (LoadGlobal(student + k) - max_s));
      sum_t += Exp(beta * (LoadGlobal(teacher + k) - max_t));
    });
    const Dtype log_sum_s = Log(g.AllReduce(sum_s, SumOp()));
    const Dtype log_sum_t = Log(g.AllReduce(sum_t, SumOp()));
    Dtype kl = 0;
    ForEach(g, v, [&](int64_t k, int) {
      const Dtype s_k = LoadGlobal(student + k), t_k = LoadGlobal(teacher + k);
      const Dtype log_q = beta * (s_k - max_s) - log_sum_s;
      const Dtype log_p = beta * (t_k - max_t) - log_sum_t;
      StoreGlobal(q + k, Exp(log_q));
      StoreGlobal(p + k, KlTerm(log_p, log_q, &kl));
    });
    kl = g.AllReduce(kl, SumOp());
    if (g.first == 0) Record(v, kl);
  }

  template <typename Row>
  __device__ void operator()(Row& row, const Vector& v) const {
    row.template Load<0>(student + v.offset);
    row.template Load<1>(teacher + v.offset);
    Dtype max_s = -INFINITY, max_t = -INFINITY;
    row.ForEach([&](int, Dtype& s_c, Dtype& t_c) {
      max_s = MaxOp()(max_s, s_c);
      max_t = MaxOp()(max_t, t_c);
    });
    max_s = row.AllReduce(max_s, MaxOp());
    max_t = row.AllReduce(max_t, MaxOp());
    Dtype sum_s = 0, sum_t = 0;
    row.ForEach([&](int, Dtype& s_c, Dtype& t_c) {
      // The cached student becomes log q + log S_s.
      s_c = beta * (s_c - max_s);
      sum_s += Exp(s_c);
      sum_t += Exp(beta * (t_c - max_t));
    });
    const Dtype log_sum_s = Log(row.AllReduce(sum_s, SumOp()));
    const Dtype log_sum_t = Log(row.AllReduce(sum_t, SumOp()));
    row.template StoreOf<0>(
        q + v.offset, [&](int, Dtype z_s) { return Exp(z_s - log_sum_s); });
    Dtype kl = 0;
    row.Store(p + v.offset, [&](int, Dtype z_s, Dtype t_c) {
      return KlTerm(beta * (t_c - max_t) - log_sum_t, z_s - log_sum_s, &kl);
    });
    kl = row.AllReduce(kl, SumOp());
    if (row.Leader()) Record(v, kl);
  }

 private:
  // Adds p (log p - log q) to *kl and returns p.
  __device__ static Dtype KlTerm(Dtype log_p, Dtype log_q, Dtype* kl) {
    const Dtype p_c = Exp(log_p);
    // 0 log 0 = 0; log p may be -inf where p underflowed. != 0, not > 0:
    // a NaN teacher probability must reach the loss.
    if (p_c != 0) *kl += p_c * (log_p - log_q);
    return p_c;
  }

  // The position's statistics, by one thread of its group.
  __device__ void Record(const Vector& v, Dtype kl) const {
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
    ForEach(g, v, [&](int64_t k, int) {
      StoreGlobal(dx + k, s * (LoadGlobal(q + k) - LoadGlobal(p + k)));
    });
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
  LaunchRowOp(shape, op);
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
