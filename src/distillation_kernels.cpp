// The KL divergence and the student gradient of SoftmaxWithDistillationLoss
// on the CPU, around the fast-math softmaxes of softmax_kernels.cpp. Built
// without fast-math: the `p != 0` test below must stay a test, and -inf
// logits must give IEEE infinities (NaN policy, docs/robustness.md).
#include <algorithm>

#include "caffe_temperature/cpu_clones.hpp"
#include "caffe_temperature/parallel.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/streaming.hpp"

namespace caffe_temperature {

namespace {

// One channel's term of KL(p || q). 0 log 0 = 0; log p may be -inf where p
// underflowed. `!= 0` rather than `> 0`: a NaN teacher probability must reach
// the loss, not be skipped as if it were 0.
template <typename Dtype>
CT_INLINE Dtype KlTerm(Dtype p, Dtype log_p, Dtype log_q) {
  return p != 0 ? p * (log_p - log_q) : Dtype(0);
}

// Positions per work item when inner > 1: long contiguous runs per channel,
// and enough items to share between threads.
const int kDistillationStrip = 2048;

// Each position's KL in [begin, end), from its own row.
template <typename Dtype>
CT_INLINE void KlRange(const SoftmaxShape& shape, int begin, int end,
                       Dtype beta, const Dtype* student, const Dtype* teacher,
                       const Dtype* valid, const Dtype* p,
                       const DistillationRow<Dtype>* rows, Dtype* kl) {
  const int channels = shape.channels, inner = shape.inner;
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
}

// dx over work items [begin, end): rows (inner = 1) or strips.
template <typename Dtype>
CT_INLINE void BackwardRange(const SoftmaxShape& shape, int begin, int end,
                             Dtype scale, const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx) {
  const int channels = shape.channels, inner = shape.inner;
  if (inner == 1) {
    // One position per row, its channels contiguous.
    const bool stream = StreamsOutput(shape.count(), sizeof(Dtype));
    for (int pos = begin; pos < end; ++pos) {
      const int offset = pos * channels;
      const Dtype row_scale = scale * valid[pos];
      WriteValues(dx + offset, channels, stream,
                  [&](int c) CT_LAMBDA_INLINE {
                    return row_scale * (q[offset + c] - p[offset + c]);
                  });
    }
    if (stream) StreamFence();
    return;
  }
  for (int t = begin; t < end; ++t) {
    int o, i0;
    StripOf(t, inner, kDistillationStrip, &o, &i0);
    const int i1 = std::min(inner, i0 + kDistillationStrip);
    const Dtype* valid_o = valid + o * inner;
    for (int c = 0; c < channels; ++c) {
      const int offset = (o * channels + c) * inner;
      for (int i = i0; i < i1; ++i) {
        dx[offset + i] = scale * valid_o[i] * (q[offset + i] - p[offset + i]);
      }
    }
  }
}

#define CT_DEFINE_DISTILLATION_CLONES(Dtype)                                  \
  CT_CLONES void KlClone(const SoftmaxShape& shape, int begin, int end,       \
                         Dtype beta, const Dtype* student,                    \
                         const Dtype* teacher, const Dtype* valid,            \
                         const Dtype* p, const DistillationRow<Dtype>* rows,  \
                         Dtype* kl) {                                         \
    KlRange(shape, begin, end, beta, student, teacher, valid, p, rows, kl);   \
  }                                                                           \
  CT_CLONES void BackwardClone(const SoftmaxShape& shape, int begin, int end, \
                               Dtype scale, const Dtype* q, const Dtype* p,   \
                               const Dtype* valid, Dtype* dx) {               \
    BackwardRange(shape, begin, end, scale, q, p, valid, dx);                 \
  }

CT_DEFINE_DISTILLATION_CLONES(float)
CT_DEFINE_DISTILLATION_CLONES(double)

}  // namespace

template <typename Dtype>
void DistillationForwardCPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* valid, Dtype* q, Dtype* p, Dtype* kl,
                            DistillationRow<Dtype>* rows) {
  DistillationSoftmaxesCPU(shape, beta, student, teacher, q, p, rows);
  // Each position's KL from its own row: the positions split between
  // threads like any other work item.
  ParallelRanges(shape.positions(), shape.count(), [&](int begin, int end) {
    KlClone(shape, begin, end, beta, student, teacher, valid, p, rows, kl);
  });
}

template <typename Dtype>
void DistillationBackwardCPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx) {
  // A row per item when inner = 1, else a strip of positions.
  ParallelRanges(StripItems(shape.outer, shape.inner, kDistillationStrip),
                 shape.count(), [&](int begin, int end) {
    BackwardClone(shape, begin, end, scale, q, p, valid, dx);
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
