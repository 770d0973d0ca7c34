// The IEEE finishing of the fast-math kernels: the KL divergence of the
// distillation forward at positions whose logits hold an infinity or a NaN.
// Built without fast-math: the `p != 0` test below must stay a test, and
// -inf logits must give IEEE infinities (NaN policy, docs/robustness.md).
// (The infogain loss reports its infinite terms instead, for its layer to
// add: InfogainLossForwardCPU.)
#include <vector>

#include "caffe_temperature/cpu_clones.hpp"
#include "caffe_temperature/parallel.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "distillation_rows.hpp"
#include "kernel_instantiations.hpp"

namespace caffe_temperature {

namespace {

// One channel's term of KL(p || q). 0 log 0 = 0; log p may be -inf where p
// underflowed. `!= 0` rather than `> 0`: a NaN teacher probability must reach
// the loss, not be skipped as if it were 0.
template <typename Dtype>
CT_INLINE Dtype KlTerm(Dtype p, Dtype log_p, Dtype log_q) {
  return p != 0 ? p * (log_p - log_q) : Dtype(0);
}

// Each position's KL in [begin, end), from its own row: the fast pass's
// where its logits are finite, 0 where it is ignored.
template <typename Dtype>
CT_INLINE void KlRange(const SoftmaxShape& shape, int begin, int end,
                       Dtype beta, const Dtype* student, const Dtype* teacher,
                       const Dtype* valid, const Dtype* p,
                       const DistillationRows<Dtype>& rows, Dtype* kl) {
  const int channels = shape.channels, inner = shape.inner;
  for (int pos = begin; pos < end; ++pos) {
    // Ignored positions are selected away, never multiplied by 0, so their
    // NaNs stay out of the loss.
    if (valid[pos] == 0) kl[pos] = 0;
    if (valid[pos] == 0 || rows.special[pos] == 0) continue;
    // An infinite or NaN logit: log p and log q from the logits, in IEEE
    // arithmetic.
    const int first = pos / inner * channels * inner + pos % inner;
    Dtype sum = 0;
    for (int c = 0; c < channels; ++c) {
      const int j = first + c * inner;
      sum += KlTerm(p[j],
                    beta * (teacher[j] - rows.max_teacher[pos]) -
                        rows.log_sum_teacher[pos],
                    beta * (student[j] - rows.max_student[pos]) -
                        rows.log_sum_student[pos]);
    }
    kl[pos] = sum;
  }
}

#define CT_DEFINE_KL_CLONES(Dtype)                                           \
  CT_CLONES void KlClone(const SoftmaxShape& shape, int begin, int end,      \
                         Dtype beta, const Dtype* student,                   \
                         const Dtype* teacher, const Dtype* valid,           \
                         const Dtype* p, const DistillationRows<Dtype>& rows, \
                         Dtype* kl) {                                        \
    KlRange(shape, begin, end, beta, student, teacher, valid, p, rows, kl);  \
  }

CT_DEFINE_KL_CLONES(float)
CT_DEFINE_KL_CLONES(double)

}  // namespace

template <typename Dtype>
void DistillationForwardCPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* valid, Dtype* q, Dtype* p, Dtype* kl,
                            std::vector<Dtype>* scratch) {
  const DistillationRows<Dtype> rows(shape.positions(), scratch);
  DistillationSoftmaxesCPU(shape, beta, student, teacher, q, p, kl, rows);
  // Each position's KL from its own row: the positions split between
  // threads like any other work item.
  ParallelRanges(shape.positions(), shape.count(), [&](int begin, int end) {
    KlClone(shape, begin, end, beta, student, teacher, valid, p, rows, kl);
  });
}

CT_INSTANTIATE_DISTILLATION_FORWARD(float)
CT_INSTANTIATE_DISTILLATION_FORWARD(double)

}  // namespace caffe_temperature
