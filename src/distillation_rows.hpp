#ifndef CAFFE_TEMPERATURE_SRC_DISTILLATION_ROWS_HPP_
#define CAFFE_TEMPERATURE_SRC_DISTILLATION_ROWS_HPP_

// Between the two halves of the distillation forward (internal to src/):
// the fast-math softmaxes (distillation_kernels.cpp) and the KL finishing in
// IEEE arithmetic (ieee_finishing.cpp).
#include <vector>

#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe_temperature {

// What the fast-math pass leaves per position for the finishing: with
// a = beta * (teacher - max) and b = beta * (student - max) per class, and
// S_t, S_s their sums of exps, it writes
//   KL(p || q) = sum_c p_c (a_c - b_c) - log S_t + log S_s
// to the KL output, and here, per position, the maxima and logs the
// finishing recomputes a special position's KL from. `special` is non-zero
// where a teacher or student logit is +-inf or NaN, where that form would
// meet 0 * inf or lose a NaN. Arrays of one value per position, in the
// caller's scratch.
template <typename Dtype>
struct DistillationRows {
  static const int kArrays = 5;
  DistillationRows(int positions, std::vector<Dtype>* scratch) {
    if (scratch->size() < size_t(kArrays) * positions) {
      scratch->resize(size_t(kArrays) * positions);
    }
    special = scratch->data();
    max_teacher = special + positions;
    max_student = max_teacher + positions;
    log_sum_teacher = max_student + positions;
    log_sum_student = log_sum_teacher + positions;
  }
  Dtype *special, *max_teacher, *max_student, *log_sum_teacher,
      *log_sum_student;
};

// The fast-math pass: q = softmax(beta * student), p = softmax(beta *
// teacher), kl and rows per position.
template <typename Dtype>
void DistillationSoftmaxesCPU(const SoftmaxShape& shape, Dtype beta,
                              const Dtype* student, const Dtype* teacher,
                              Dtype* q, Dtype* p, Dtype* kl,
                              const DistillationRows<Dtype>& rows);

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SRC_DISTILLATION_ROWS_HPP_
