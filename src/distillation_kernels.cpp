// The KL divergence and the student gradient of SoftmaxWithDistillationLoss
// on the CPU, around the fast-math softmaxes of softmax_kernels.cpp. Built
// without fast-math: the `p != 0` test below must stay a test, and -inf
// logits must give IEEE infinities (NaN policy, docs/robustness.md).
#include <algorithm>

#include "caffe_temperature/parallel.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/streaming.hpp"

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
void DistillationForwardCPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* valid, Dtype* q, Dtype* p, Dtype* kl,
                            DistillationRow<Dtype>* rows) {
  DistillationSoftmaxesCPU(shape, beta, student, teacher, q, p, rows);
  const int channels = shape.channels, inner = shape.inner;
  // Each position's KL from its own row: the positions split between
  // threads like any other work item.
  ParallelRanges(shape.positions(), shape.count(), [&](int begin, int end) {
    for (int pos = begin; pos < end; ++pos) {
      const DistillationRow<Dtype>& row = rows[pos];
      // Ignored positions are selected away, never multiplied by 0, so their
      // NaNs stay out of the loss.
      if (valid[pos] == 0 || row.special == 0) {
        kl[pos] = valid[pos] != 0 ? row.kl : Dtype(0);
        continue;
      }
      // An infinite or NaN logit: log p and log q from the logits, in IEEE
      // arithmetic.
      const int first = pos / inner * channels * inner + pos % inner;
      Dtype sum = 0;
      for (int c = 0; c < channels; ++c) {
        const int j = first + c * inner;
        sum += KlTerm(
            p[j], beta * (teacher[j] - row.max_teacher) - row.log_sum_teacher,
            beta * (student[j] - row.max_student) - row.log_sum_student);
      }
      kl[pos] = sum;
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
    const bool stream = StreamsOutput(shape.count(), sizeof(Dtype));
    ParallelRanges(shape.outer, shape.count(), [&](int begin, int end) {
      for (int pos = begin; pos < end; ++pos) {
        const int offset = pos * channels;
        const Dtype row_scale = scale * valid[pos];
        WriteValues(dx + offset, channels, stream, [&](int c) {
          return row_scale * (q[offset + c] - p[offset + c]);
        });
      }
      if (stream) StreamFence();
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
  template void DistillationForwardCPU<Dtype>(                                 \
      const SoftmaxShape&, Dtype, const Dtype*, const Dtype*, const Dtype*,   \
      Dtype*, Dtype*, Dtype*, DistillationRow<Dtype>*);                       \
  template void DistillationBackwardCPU<Dtype>(const SoftmaxShape&, Dtype,    \
                                               const Dtype*, const Dtype*,    \
                                               const Dtype*, Dtype*);

CT_INSTANTIATE_DISTILLATION_KERNELS(float)
CT_INSTANTIATE_DISTILLATION_KERNELS(double)

}  // namespace caffe_temperature
