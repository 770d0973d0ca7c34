// gpu_kernels_emulated, the loss layers: the infogain and distillation
// entry points of gpu_kernels.hpp, built from the real files of cuda/ and run
// on the CPU through HIP-CPU, against the CPU kernels on the same inputs
// (test_gpu_kernels_emulated.cpp says what this proves and what it cannot).
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "emulated_cases.hpp"
#include "guarded.hpp"

namespace caffe_temperature {
namespace {

template <typename Dtype>
class LossKernelsEmulated : public ::testing::Test {};

TYPED_TEST_SUITE(LossKernelsEmulated, Dtypes);

TYPED_TEST(LossKernelsEmulated, InfogainMatchesCpu) {
  typedef TypeParam Dtype;
  std::mt19937 rng(4);
  for (const SoftmaxShape& s : Shapes()) {
    if (s.channels > 5000) continue;  // H would be 40000^2 values
    const int C = s.channels;
    // H >= 0 with zeros on the diagonal's neighbour, so that a -inf logit
    // meets both H[l, c] = 0 (adds 0) and H[l, c] > 0 (+inf).
    std::vector<Dtype> H = Uniform<Dtype>(static_cast<int64_t>(C) * C, 0, 2,
                                          &rng);
    for (int l = 0; l < C; ++l) H[static_cast<int64_t>(l) * C + C / 2] = l % 2;
    const Guarded<Dtype> H_gpu(H);
    std::vector<Dtype> sum_rows_H(C, 0);
    for (int l = 0; l < C; ++l) {
      for (int c = 0; c < C; ++c) sum_rows_H[l] += H[l * C + c];
    }
    // H as a bottom: its row sums come from the device.
    Guarded<Dtype> sums_gpu(C);
    RowSums(C, C, H_gpu.data(), sums_gpu.data());
    EXPECT_TRUE(Agree(sum_rows_H, sums_gpu)) << "row sums of H, " << C;
    // H from a file: summed on the host at setup.
    const Guarded<Dtype> sums_from_file(sum_rows_H);
    const Guarded<Dtype>* const row_sums[] = {&sums_gpu, &sums_from_file};

    for (bool special : {false, true}) {
      for (const IgnoreLabel& ignore : IgnoreSettings()) {
        for (const Guarded<Dtype>* sums : row_sums) {
          SCOPED_TRACE(Describe(s) + (ignore.enabled ? ", ignore_label" : "") +
                       (special ? ", NaN/inf logits" : "") +
                       (sums == &sums_gpu ? ", H bottom" : ", H from file"));
          const std::vector<Dtype> x = Logits<Dtype>(s, &rng, special);
          const std::vector<Dtype> labels = Labels<Dtype>(s, ignore, false,
                                                          &rng);
          std::vector<int> classes(s.positions());
          Dtype valid_count = 0;
          for (int p = 0; p < s.positions(); ++p) {
            const bool valid =
                ClassifyLabel(labels[p], C, ignore) == kLabelValid;
            classes[p] = valid ? static_cast<int>(labels[p]) : -1;
            valid_count += valid;
          }
          std::vector<Dtype> prob(s.count());
          bool plus_inf = false, minus_inf = false;
          Dtype loss = InfogainLossForwardCPU(
              s, x.data(), classes.data(), H.data(), sum_rows_H.data(),
              prob.data(), &plus_inf, &minus_inf);
          // The layer's own step: the fast-math kernel reports the
          // infinite terms (a -inf logit that H weighs) instead of adding them.
          if (plus_inf) loss += std::numeric_limits<Dtype>::infinity();
          if (minus_inf) loss -= std::numeric_limits<Dtype>::infinity();

          const Guarded<Dtype> x_gpu(x), labels_gpu(labels);
          Guarded<Dtype> prob_gpu(s.count()), stats(2 * s.positions());
          Guarded<int> first_bad(1);
          InfogainLossForwardGPU(s, x_gpu.data(), labels_gpu.data(), ignore,
                                 H_gpu.data(), sums->data(), prob_gpu.data(),
                                 stats.data(), first_bad.data());
          EXPECT_TRUE(Agree(prob, prob_gpu)) << "infogain prob";  // syncs
          std::vector<Dtype> totals(2, 0);
          for (int p = 0; p < s.positions(); ++p) {
            totals[0] += stats[p];
            totals[1] += stats[s.positions() + p];
          }
          EXPECT_TRUE(stats.GuardsIntact());
          Guarded<Dtype> totals_gpu(2);
          RowSums(2, s.positions(), stats.data(), totals_gpu.data());
          EXPECT_TRUE(Agree(totals, totals_gpu)) << "infogain stats sums";
          EXPECT_TRUE(Agree(std::vector<Dtype>{loss, valid_count},
                            totals_gpu))
              << "infogain loss and valid count";
          ++comparisons;
          EXPECT_EQ(first_bad[0], INT_MAX) << "no bad label";

          const Dtype top_diff = 0.75, inv_norm = 1 / std::max<Dtype>(
                                                      valid_count, 1);
          std::vector<Dtype> dx(s.count());
          InfogainLossBackwardCPU(s, prob.data(), classes.data(), H.data(),
                                  sum_rows_H.data(), top_diff * inv_norm,
                                  dx.data());
          const Guarded<Dtype> prob_in(prob),
              top_diff_gpu(std::vector<Dtype>(1, top_diff));
          Guarded<Dtype> dx_gpu(s.count());
          InfogainLossBackwardGPU(s, prob_in.data(), labels_gpu.data(),
                                  ignore, H_gpu.data(), sums->data(),
                                  top_diff_gpu.data(), inv_norm,
                                  dx_gpu.data());
          EXPECT_TRUE(Agree(dx, dx_gpu)) << "infogain backward";
        }
      }
    }
  }
}

TYPED_TEST(LossKernelsEmulated, InfogainReportsTheFirstBadLabel) {
  typedef TypeParam Dtype;
  std::mt19937 rng(5);
  for (const SoftmaxShape& s : {SoftmaxShape{40, 33, 1},
                                SoftmaxShape{2, 1025, 5},
                                SoftmaxShape{8, 2000, 1}}) {
    SCOPED_TRACE(Describe(s));
    const int C = s.channels;
    const Guarded<Dtype> H(Uniform<Dtype>(static_cast<int64_t>(C) * C, 0, 1,
                                          &rng));
    const Guarded<Dtype> sums(Uniform<Dtype>(C, 1, 2, &rng));
    const Guarded<Dtype> x(Logits<Dtype>(s, &rng, false));
    const Guarded<Dtype> labels(Labels<Dtype>(s, {true, 255}, true, &rng));
    Guarded<Dtype> prob(s.count()), stats(2 * s.positions());
    Guarded<int> first_bad(1);
    InfogainLossForwardGPU(s, x.data(), labels.data(), {true, 255}, H.data(),
                           sums.data(), prob.data(), stats.data(),
                           first_bad.data());
    Synchronize();
    ++comparisons;
    EXPECT_EQ(first_bad[0], 3);
    EXPECT_TRUE(first_bad.GuardsIntact());
  }
}

TYPED_TEST(LossKernelsEmulated, DistillationMatchesCpu) {
  typedef TypeParam Dtype;
  std::mt19937 rng(6);
  for (const SoftmaxShape& s : AllShapes<Dtype>()) {
    for (bool special : {false, true}) {
      for (bool with_label : {false, true}) {
        for (const IgnoreLabel& ignore : IgnoreSettings()) {
          if (!with_label && ignore.enabled) continue;
          SCOPED_TRACE(Describe(s) + (with_label ? ", label" : "") +
                       (ignore.enabled ? ", ignore_label" : "") +
                       (special ? ", NaN/inf logits" : ""));
          const Dtype beta = 0.4;
          const std::vector<Dtype> student = Logits<Dtype>(s, &rng, special);
          const std::vector<Dtype> teacher = Logits<Dtype>(s, &rng, false);
          const std::vector<Dtype> labels =
              Labels<Dtype>(s, ignore, with_label && special, &rng);

          const int n = s.count(), positions = s.positions();
          std::vector<Dtype> q(n), p(n);
          std::vector<Dtype> valid(positions, 1), invalid(positions, 0);
          for (int pos = 0; with_label && pos < positions; ++pos) {
            const LabelKind kind = ClassifyLabel(labels[pos], s.channels,
                                                 ignore);
            valid[pos] = kind == kLabelValid;
            invalid[pos] = kind == kLabelInvalid;
          }
          std::vector<Dtype> kl(positions);
          std::vector<Dtype> scratch;
          DistillationForwardCPU(s, beta, student.data(), teacher.data(),
                                 valid.data(), q.data(), p.data(), kl.data(),
                                 &scratch);

          const Guarded<Dtype> student_gpu(student), teacher_gpu(teacher),
              labels_gpu(labels);
          Guarded<Dtype> q_gpu(n), p_gpu(n), stats(3 * positions);
          DistillationForwardGPU(s, beta, student_gpu.data(),
                                 teacher_gpu.data(),
                                 with_label ? labels_gpu.data() : NULL,
                                 ignore, q_gpu.data(), p_gpu.data(),
                                 stats.data());
          EXPECT_TRUE(Agree(q, q_gpu)) << "distillation q";
          EXPECT_TRUE(Agree(p, p_gpu)) << "distillation p";
          std::vector<Dtype> expected_stats(kl);
          expected_stats.insert(expected_stats.end(), valid.begin(),
                                valid.end());
          expected_stats.insert(expected_stats.end(), invalid.begin(),
                                invalid.end());
          EXPECT_TRUE(Agree(expected_stats, stats)) << "distillation stats";

          const Dtype scale = 1.7;
          std::vector<Dtype> dx(n);
          DistillationBackwardCPU(s, scale, q.data(), p.data(), valid.data(),
                                  dx.data());
          const Guarded<Dtype> q_in(q), p_in(p), valid_in(valid);
          Guarded<Dtype> dx_gpu(n);
          DistillationBackwardGPU(s, scale, q_in.data(), p_in.data(),
                                  valid_in.data(), dx_gpu.data());
          EXPECT_TRUE(Agree(dx, dx_gpu)) << "distillation backward";
        }
      }
    }
  }
}

}  // namespace
}  // namespace caffe_temperature
