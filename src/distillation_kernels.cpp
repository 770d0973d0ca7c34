// The KL divergence and the student gradient of SoftmaxWithDistillationLoss
// on the CPU. Built without fast-math, unlike softmax_kernels.cpp: the
// `p != 0` test below must stay a test (NaN policy, docs/robustness.md).
#include <algorithm>

#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe_temperature {

namespace {

// One channel's term of KL(p || q). 0 log 0 = 0; log p may be -inf where p
// underflowed. `!= 0` rather than `> 0`: a NaN teacher probability must reach
// the loss, not be skipped as if it were 0.
template <typename Dtype>
inline Dtype KlTerm(Dtype p, Dtype log_p, Dtype log_q) {
  return p != 0 ? p * (log_p - log_q) : Dtype(0);
}

}  // namespace

template <typename Dtype>
void DistillationKlCPU(const SoftmaxShape& shape, const Dtype* p,
                       const Dtype* log_p, const Dtype* log_q,
                       const Dtype* valid, Dtype* kl) {
  const int channels = shape.channels, inner = shape.inner;
  if (inner == 1) {
    // One position per row: its channels are contiguous, and the sum stays
    // in a register.
    for (int pos = 0; pos < shape.positions(); ++pos) {
      Dtype sum = 0;
      const int offset = pos * channels;
      for (int c = 0; valid[pos] != 0 && c < channels; ++c) {
        sum += KlTerm(p[offset + c], log_p[offset + c], log_q[offset + c]);
      }
      kl[pos] = sum;
    }
    return;
  }
  // Channel-outer, position-inner: the inner loop reads contiguous memory
  // (a spatial net has inner in the thousands) and each position still sums
  // its channels in order.
  std::fill(kl, kl + shape.positions(), Dtype(0));
  for (int o = 0; o < shape.outer; ++o) {
    Dtype* kl_o = kl + o * inner;
    const Dtype* valid_o = valid + o * inner;
    for (int c = 0; c < channels; ++c) {
      const int offset = (o * channels + c) * inner;
      for (int i = 0; i < inner; ++i) {
        const int j = offset + i;
        // Ignored positions are selected away, never multiplied by 0, so
        // their NaNs stay out of the loss.
        kl_o[i] += valid_o[i] != 0 ? KlTerm(p[j], log_p[j], log_q[j])
                                   : Dtype(0);
      }
    }
  }
}

template <typename Dtype>
void DistillationBackwardCPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx) {
  const int channels = shape.channels, inner = shape.inner;
  for (int o = 0; o < shape.outer; ++o) {
    for (int c = 0; c < channels; ++c) {
      const int offset = (o * channels + c) * inner;
      for (int i = 0; i < inner; ++i) {
        dx[offset + i] =
            scale * valid[o * inner + i] * (q[offset + i] - p[offset + i]);
      }
    }
  }
}

#define CT_INSTANTIATE_DISTILLATION_KERNELS(Dtype)                            \
  template void DistillationKlCPU<Dtype>(const SoftmaxShape&, const Dtype*,   \
                                         const Dtype*, const Dtype*,          \
                                         const Dtype*, Dtype*);               \
  template void DistillationBackwardCPU<Dtype>(const SoftmaxShape&, Dtype,    \
                                               const Dtype*, const Dtype*,    \
                                               const Dtype*, Dtype*);

CT_INSTANTIATE_DISTILLATION_KERNELS(float)
CT_INSTANTIATE_DISTILLATION_KERNELS(double)

}  // namespace caffe_temperature
