// The KL divergence and the student gradient of SoftmaxWithDistillationLoss
// on the CPU. Built without fast-math, unlike softmax_kernels.cpp: the
// `p != 0` test below must stay a test (NaN policy, docs/robustness.md).
#include <algorithm>

#include "caffe_temperature/parallel.hpp"
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

// Positions per work item when inner > 1: long contiguous runs per channel,
// and enough items to share between threads.
const int kDistillationStrip = 2048;

// Calls body(o, i0, i1) on each strip [i0, i1) of positions of each outer
// index o (inner > 1), the strips split between threads.
template <typename Body>
void ForEachStrip(const SoftmaxShape& shape, const Body& body) {
  ParallelRanges(StripItems(shape.outer, shape.inner, kDistillationStrip),
                 shape.count(), [&](int begin, int end) {
    for (int t = begin; t < end; ++t) {
      int o, i0;
      StripOf(t, shape.inner, kDistillationStrip, &o, &i0);
      body(o, i0, std::min(shape.inner, i0 + kDistillationStrip));
    }
  });
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
    ParallelRanges(shape.outer, shape.count(), [&](int begin, int end) {
      for (int pos = begin; pos < end; ++pos) {
        Dtype sum = 0;
        const int offset = pos * channels;
        for (int c = 0; valid[pos] != 0 && c < channels; ++c) {
          sum += KlTerm(p[offset + c], log_p[offset + c], log_q[offset + c]);
        }
        kl[pos] = sum;
      }
    });
    return;
  }
  // Channel-outer, position-inner over a strip of positions: the inner loop
  // reads contiguous memory (a spatial net has inner in the thousands) and
  // each position still sums its channels in order.
  ForEachStrip(shape, [&](int o, int i0, int i1) {
    Dtype* kl_o = kl + o * inner;
    const Dtype* valid_o = valid + o * inner;
    std::fill(kl_o + i0, kl_o + i1, Dtype(0));
    for (int c = 0; c < channels; ++c) {
      const int offset = (o * channels + c) * inner;
      for (int i = i0; i < i1; ++i) {
        const int j = offset + i;
        // Ignored positions are selected away, never multiplied by 0, so
        // their NaNs stay out of the loss.
        kl_o[i] += valid_o[i] != 0 ? KlTerm(p[j], log_p[j], log_q[j])
                                   : Dtype(0);
      }
    }
  });
}

template <typename Dtype>
void DistillationBackwardCPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx) {
  const int channels = shape.channels, inner = shape.inner;
  if (inner == 1) {
    // One position per row, its channels contiguous.
    ParallelRanges(shape.outer, shape.count(), [&](int begin, int end) {
      for (int pos = begin; pos < end; ++pos) {
        const int offset = pos * channels;
        const Dtype row_scale = scale * valid[pos];
        for (int c = 0; c < channels; ++c) {
          dx[offset + c] = row_scale * (q[offset + c] - p[offset + c]);
        }
      }
    });
    return;
  }
  // Elementwise: a strip of positions per work item, as in the KL above.
  ForEachStrip(shape, [&](int o, int i0, int i1) {
    const Dtype* valid_o = valid + o * inner;
    for (int c = 0; c < channels; ++c) {
      const int offset = (o * channels + c) * inner;
      for (int i = i0; i < i1; ++i) {
        dx[offset + i] = scale * valid_o[i] * (q[offset + i] - p[offset + i]);
      }
    }
  });
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
