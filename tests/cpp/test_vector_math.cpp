// The float exp of the CPU kernels (vector_math.hpp) against exp in double:
// the formula itself, built here without fast-math, and the kernels' own
// fast-math, per-ISA build of it, through SoftmaxForwardCPU on both layouts.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/vector_math.hpp"

namespace caffe_temperature_test {

using caffe_temperature::BetaView;
using caffe_temperature::ExpNonPositive;
using caffe_temperature::IsSpecial;
using caffe_temperature::SoftmaxShape;

// The bound vector_math.hpp gives for its least exact build (no FMA); the
// FMA builds are within 3 ulp (3.6e-7).
const double kMaxRelativeError = 4e-6;

// Every 1/1000 from -87.3 to 0: past 2^-126, the smallest normal float.
std::vector<float> Arguments() {
  std::vector<float> x;
  for (int i = 0; i <= 87300; ++i) x.push_back(-0.001f * i);
  return x;
}

TEST(VectorMathTest, ExpNonPositiveMatchesExp) {
  double worst = 0;
  for (float x : Arguments()) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(ExpNonPositive(x) - exact) / exact);
  }
  EXPECT_LT(worst, 3.6e-7);  // built here with exact rounding of each step
}

TEST(VectorMathTest, ExpNonPositiveUnderflowsToZero) {
  EXPECT_EQ(ExpNonPositive(-87.4f), 0.0f);
  EXPECT_EQ(ExpNonPositive(-1e30f), 0.0f);
  EXPECT_EQ(ExpNonPositive(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(ExpNonPositive(0.0f), 1.0f);
}

TEST(VectorMathTest, MagnitudeBitsFindInfinitiesAndNaNsOnly) {
  using caffe_temperature::IsSpecialMagnitude;
  using caffe_temperature::MagnitudeBits;
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(IsSpecialMagnitude(MagnitudeBits(-inf)));
  EXPECT_TRUE(IsSpecialMagnitude(
      MagnitudeBits(-std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(IsSpecialMagnitude(
      MagnitudeBits(std::numeric_limits<double>::infinity())));
  EXPECT_FALSE(IsSpecialMagnitude(
      MagnitudeBits(-std::numeric_limits<float>::max())));
  EXPECT_FALSE(IsSpecialMagnitude(
      MagnitudeBits(-std::numeric_limits<double>::max())));
}

// A NaN under a finite max, in a row: the fast exp may give it 0, so the
// row must be found and take std::exp (softmax_sums.hpp).
TEST(VectorMathTest, KernelsRowWithNaNUnderFiniteMaxIsNaN) {
  const SoftmaxShape shape = {2, 1000, 1};
  std::vector<float> x(shape.count(), -1.0f);
  x[0] = 5;
  x[537] = std::numeric_limits<float>::quiet_NaN();
  const float beta = 1;
  const BetaView<float> view = {&beta, 0, 0};
  std::vector<float> y(shape.count());
  caffe_temperature::SoftmaxForwardCPU(shape, x.data(), view, y.data());
  for (int c = 0; c < 1000; ++c) ASSERT_TRUE(std::isnan(y[c])) << c;
  for (int c = 1000; c < 2000; ++c) ASSERT_FALSE(std::isnan(y[c])) << c;
}

TEST(VectorMathTest, IsSpecialFindsInfinitiesAndNaNsOnly) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(IsSpecial(inf));
  EXPECT_TRUE(IsSpecial(-inf));
  EXPECT_TRUE(IsSpecial(std::numeric_limits<float>::quiet_NaN()));
  EXPECT_TRUE(IsSpecial(std::numeric_limits<double>::quiet_NaN()));
  EXPECT_FALSE(IsSpecial(std::numeric_limits<float>::max()));
  EXPECT_FALSE(IsSpecial(std::numeric_limits<float>::denorm_min()));
  EXPECT_FALSE(IsSpecial(-0.0f));
  EXPECT_FALSE(IsSpecial(std::numeric_limits<double>::max()));
}

// One softmax vector holding each argument, 0 first: the probabilities are
// exp(x) / S, so y_c / y_0 is exp(x_c) whatever the rounding of the sum S.
void ExpectSoftmaxOfArguments(int inner) {
  const std::vector<float> args = Arguments();
  const int channels = static_cast<int>(args.size());
  const SoftmaxShape shape = {1, channels, inner};
  std::vector<float> x(shape.count());
  for (int c = 0; c < channels; ++c) {
    for (int i = 0; i < inner; ++i) x[c * inner + i] = args[c];
  }
  const float beta = 1;
  const BetaView<float> view = {&beta, 0, 0};
  std::vector<float> y(shape.count());
  caffe_temperature::SoftmaxForwardCPU(shape, x.data(), view, y.data());
  double worst = 0;
  for (int c = 0; c < channels; ++c) {
    const double exact = std::exp(static_cast<double>(args[c]));
    for (int i = 0; i < inner; ++i) {
      // A probability under FLT_MIN is denormal, with fewer bits than any
      // exp could give it.
      if (y[c * inner + i] < std::numeric_limits<float>::min()) continue;
      const double ratio = static_cast<double>(y[c * inner + i]) / y[i];
      worst = std::max(worst, std::fabs(ratio - exact) / exact);
    }
  }
  // Two exps and the two products by 1 / S.
  EXPECT_LT(worst, 2 * kMaxRelativeError) << "inner = " << inner;
}

TEST(VectorMathTest, KernelsExpMatchesExpOnEveryLayout) {
  ExpectSoftmaxOfArguments(1);
  ExpectSoftmaxOfArguments(3);
}

}  // namespace caffe_temperature_test
