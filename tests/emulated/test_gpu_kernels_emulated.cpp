// gpu_kernels_emulated: the softmax family's entry points of gpu_kernels.hpp
// (the loss layers' are test_loss_kernels_emulated.cpp's), built from the
// real files of cuda/ and run on the CPU through HIP-CPU, against the CPU
// kernels on the same inputs. What this proves and what it cannot (races,
// divergent barriers, timing, CUDA's own maths): docs/development.md.
//
// Every buffer has guard zones filled with a poison NaN: a write out of
// bounds changes a guard (reported), a read out of bounds brings the NaN
// into a result (reported as a mismatch), and an output element the kernel
// never writes is still poison afterwards (reported).
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "emulated_cases.hpp"
#include "guarded.hpp"

namespace caffe_temperature {
namespace {

template <typename Dtype>
class GpuKernelsEmulated : public ::testing::Test {};

TYPED_TEST_SUITE(GpuKernelsEmulated, Dtypes);

TYPED_TEST(GpuKernelsEmulated, SoftmaxFamilyMatchesCpu) {
  typedef TypeParam Dtype;
  std::mt19937 rng(1);
  for (const SoftmaxShape& s : AllShapes<Dtype>()) {
    for (bool special : {false, true}) {
      const std::vector<Dtype> x = Logits<Dtype>(s, &rng, special);
      const std::vector<Dtype> dy = Uniform<Dtype>(s.count(), -1, 1, &rng);
      for (const BetaLayout& layout : BetaLayouts(s)) {
        SCOPED_TRACE(Describe(s) + ", beta " + layout.name +
                     (special ? ", NaN/inf logits" : ""));
        const Guarded<Dtype> beta(
            Uniform<Dtype>(layout.count, 0.2, 3, &rng));
        const BetaView<Dtype> view = {beta.data(), layout.outer_stride,
                                      layout.inner_stride};
        const Guarded<Dtype> x_gpu(x);

        std::vector<Dtype> y(s.count());
        SoftmaxForwardCPU(s, x.data(), view, y.data());
        Guarded<Dtype> y_gpu(s.count());
        SoftmaxForwardGPU(s, x_gpu.data(), view, y_gpu.data());
        EXPECT_TRUE(Agree(y, y_gpu)) << "SoftmaxForward";

        Guarded<Dtype> in_place(x);
        SoftmaxForwardGPU(s, in_place.data(), view, in_place.data());
        EXPECT_TRUE(Agree(y, in_place)) << "SoftmaxForward in place";

        // Backward from the CPU forward's y, so that both sides see the
        // same input.
        const Guarded<Dtype> y_in(y), dy_in(dy);
        std::vector<Dtype> dx(s.count());
        SoftmaxBackwardCPU(s, y.data(), dy.data(), view, dx.data());
        Guarded<Dtype> dx_gpu(s.count());
        SoftmaxBackwardGPU(s, y_in.data(), dy_in.data(), view, dx_gpu.data());
        EXPECT_TRUE(Agree(dx, dx_gpu)) << "SoftmaxBackward";
        Guarded<Dtype> dx_in_place(dy);
        SoftmaxBackwardGPU(s, y_in.data(), dx_in_place.data(), view,
                           dx_in_place.data());
        EXPECT_TRUE(Agree(dx, dx_in_place)) << "SoftmaxBackward in place";

        std::vector<Dtype> grad(s.positions());
        SoftmaxBetaGradientCPU(s, x.data(), y.data(), dy.data(), grad.data());
        Guarded<Dtype> grad_gpu(s.positions()), dx_fused(s.count());
        SoftmaxBackwardWithBetaGradientGPU(s, x_gpu.data(), y_in.data(),
                                           dy_in.data(), view, dx_fused.data(),
                                           grad_gpu.data());
        EXPECT_TRUE(Agree(grad, grad_gpu)) << "beta gradient, fused";
        EXPECT_TRUE(Agree(dx, dx_fused)) << "dx, fused with beta gradient";
        Guarded<Dtype> grad_only(s.positions()), dx_fused_in_place(dy);
        SoftmaxBackwardWithBetaGradientGPU(
            s, x_gpu.data(), y_in.data(), dy_in.data(), view,
            static_cast<Dtype*>(NULL), grad_only.data());
        EXPECT_TRUE(Agree(grad, grad_only)) << "beta gradient alone";
        SoftmaxBackwardWithBetaGradientGPU(
            s, x_gpu.data(), y_in.data(), dx_fused_in_place.data(), view,
            dx_fused_in_place.data(), grad_only.data());
        EXPECT_TRUE(Agree(dx, dx_fused_in_place))
            << "dx in place, fused with beta gradient";

        // The layer sums the position gradients over the positions that
        // share one beta element: summed here from the GPU's own position
        // gradients, as float sums of terms that cancel lose digits.
        if (special || layout.count == 0) continue;
        const int cols = s.positions() / layout.count;
        std::vector<Dtype> beta_grad(layout.count, 0);
        for (int r = 0; r < layout.count; ++r) {
          double sum = 0;
          for (int c = 0; c < cols; ++c) sum += grad_gpu[r * cols + c];
          beta_grad[r] = static_cast<Dtype>(sum);
        }
        Guarded<Dtype> beta_grad_gpu(layout.count);
        RowSums(layout.count, cols, grad_gpu.data(), beta_grad_gpu.data());
        EXPECT_TRUE(Agree(beta_grad, beta_grad_gpu)) << "RowSums of beta";
      }
    }
  }
}

// Rows whose C allows vectors but whose pointers are one element off a
// 16-byte boundary take the scalar loads (cuda/cached_row.cuh); with only
// the output off, too.
TYPED_TEST(GpuKernelsEmulated, MisalignedRowsMatchCpu) {
  typedef TypeParam Dtype;
  std::mt19937 rng(7);
  for (const SoftmaxShape& s : {SoftmaxShape{9, 100, 1},
                                SoftmaxShape{3, 1000, 1},
                                SoftmaxShape{3, 5000, 1}}) {
    for (int input_shift : {1, 0}) {
      SCOPED_TRACE(Describe(s) + ", inputs shifted by " +
                   std::to_string(input_shift));
      const std::vector<Dtype> x = Logits<Dtype>(s, &rng, false);
      const std::vector<Dtype> dy = Uniform<Dtype>(s.count(), -1, 1, &rng);
      const Guarded<Dtype> beta(Uniform<Dtype>(s.outer, 0.2, 3, &rng));
      const BetaView<Dtype> view = {beta.data(), 1, 0};
      std::vector<Dtype> y(s.count()), dx(s.count()), grad(s.positions());
      SoftmaxForwardCPU(s, x.data(), view, y.data());
      SoftmaxBackwardCPU(s, y.data(), dy.data(), view, dx.data());
      SoftmaxBetaGradientCPU(s, x.data(), y.data(), dy.data(), grad.data());

      const Guarded<Dtype> x_gpu(x, input_shift), y_in(y, input_shift),
          dy_in(dy, input_shift);
      Guarded<Dtype> y_gpu(s.count(), 1), dx_gpu(s.count(), 1),
          dx_fused(s.count(), 1), grad_gpu(s.positions());
      SoftmaxForwardGPU(s, x_gpu.data(), view, y_gpu.data());
      EXPECT_TRUE(Agree(y, y_gpu)) << "SoftmaxForward";
      SoftmaxBackwardGPU(s, y_in.data(), dy_in.data(), view, dx_gpu.data());
      EXPECT_TRUE(Agree(dx, dx_gpu)) << "SoftmaxBackward";
      SoftmaxBackwardWithBetaGradientGPU(s, x_gpu.data(), y_in.data(),
                                         dy_in.data(), view, dx_fused.data(),
                                         grad_gpu.data());
      EXPECT_TRUE(Agree(dx, dx_fused)) << "dx, fused with beta gradient";
      EXPECT_TRUE(Agree(grad, grad_gpu)) << "beta gradient, fused";
    }
  }
}

// Rows below, at and just above one chunk of kRowSumChunk columns (one pass)
// and of many chunks (a block per chunk, then a block per row), against an
// in-order double sum; small integers, whose sums every order gets exactly
// in float, must come out exact, so that a dropped or repeated value shows.
TYPED_TEST(GpuKernelsEmulated, RowSumsMatchLoop) {
  typedef TypeParam Dtype;
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> small(-7, 7);
  const int chunk = kRowSumChunk;
  for (int rows : {0, 1, 2, 3, 40}) {
    for (int cols : {0, 1, 31, 33, 1024, 1025, chunk - 1, chunk, chunk + 1,
                     2 * chunk, 2 * chunk + 1, 70000}) {
      if (rows == 40 && cols > 2 * chunk + 1) continue;  // time
      for (bool integers : {false, true}) {
        SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols) +
                     (integers ? ", integers" : ""));
        const int64_t n = static_cast<int64_t>(rows) * cols;
        std::vector<Dtype> in = Uniform<Dtype>(n, -1, 1, &rng);
        if (integers) {
          for (Dtype& v : in) v = static_cast<Dtype>(small(rng));
        }
        const Guarded<Dtype> values(in);
        std::vector<Dtype> sums(rows, 0);
        for (int r = 0; r < rows; ++r) {
          double sum = 0;
          for (int c = 0; c < cols; ++c) {
            sum += values[static_cast<int64_t>(r) * cols + c];
          }
          sums[r] = static_cast<Dtype>(sum);
        }
        Guarded<Dtype> sums_gpu(rows);
        RowSums(rows, cols, values.data(), sums_gpu.data());
        EXPECT_TRUE(Agree(sums, sums_gpu));
        if (!integers) continue;
        for (int r = 0; r < rows; ++r) {
          EXPECT_EQ(sums[r], sums_gpu[r]) << "row " << r;
        }
      }
    }
  }
}

// The index FindInvalidBetaGPU / FindNonFiniteGPU must report.
template <typename Dtype, typename Predicate>
int FirstIndex(const std::vector<Dtype>& values, Predicate is_bad) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (is_bad(values[i])) return static_cast<int>(i);
  }
  return INT_MAX;
}

TYPED_TEST(GpuKernelsEmulated, ValidationFindsTheFirstBadValue) {
  typedef TypeParam Dtype;
  const Dtype nan = std::numeric_limits<Dtype>::quiet_NaN();
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  std::mt19937 rng(3);
  for (int n : {0, 1, 700, 5000}) {
    for (Dtype bad : {Dtype(0), Dtype(-1), nan, inf, -inf}) {
      for (int at : {-1, 0, n / 2, n - 1}) {
        if (at >= n) continue;
        SCOPED_TRACE("n " + std::to_string(n) + ", bad value at " +
                     std::to_string(at));
        std::vector<Dtype> values = Uniform<Dtype>(n, 0.1, 2, &rng);
        if (at >= 0) values[at] = bad;
        if (at >= 0 && at + 3 < n) values[at + 3] = bad;
        const Guarded<Dtype> values_gpu(values);
        Guarded<int> first(1);
        FindInvalidBetaGPU(n, values_gpu.data(), first.data());
        Synchronize();
        ++comparisons;
        EXPECT_EQ(first[0], FirstIndex(values, [](Dtype b) {
                    return !(b > 0 && std::isfinite(b));
                  })) << "FindInvalidBeta";
        FindNonFiniteGPU(n, values_gpu.data(), first.data());
        Synchronize();
        ++comparisons;
        EXPECT_EQ(first[0], FirstIndex(values, [](Dtype v) {
                    return !std::isfinite(v);
                  })) << "FindNonFinite";
        EXPECT_TRUE(first.GuardsIntact());
      }
    }
  }
}

class ReportComparisons : public ::testing::Environment {
 public:
  void TearDown() override {
    std::printf("gpu_kernels_emulated: %d comparisons of a GPU entry point "
                "with its CPU reference\n", comparisons);
  }
};

const ::testing::Environment* const kReport =
    ::testing::AddGlobalTestEnvironment(new ReportComparisons);

}  // namespace
}  // namespace caffe_temperature
