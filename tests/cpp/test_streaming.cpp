// The streaming stores of the CPU gradients (streaming.hpp): outputs of at
// least kStreamingBytes go out through an L1 buffer and non-temporal stores.
// Each row of a gradient is computed from its own row alone, so the rows of
// a streamed blob must be bit for bit those of the same rows computed alone
// (a blob far under the threshold), whatever the output's alignment.
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/streaming.hpp"

namespace caffe_temperature_test {

using caffe_temperature::BetaView;
using caffe_temperature::SoftmaxShape;

// Uniform values in [low, 1).
std::vector<float> Random(int64_t n, int seed, float low) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(low, 1);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Runs gradient(rows, first_row, dx) over 33 MB of rows of `channels`
// floats, into an output one float past its allocation's alignment (the
// scalar prologue of the streaming copy runs), and again over rows 0-1 and
// the last two rows alone; the rows must be the same bits.
void ExpectStreamedRowsMatch(
    int channels,
    const std::function<void(int rows, int64_t first_row, float* dx)>&
        gradient) {
  const int rows = (33 << 20) / (channels * 4) + 1;
  ASSERT_TRUE(caffe_temperature::StreamsOutput(int64_t(rows) * channels, 4));
  ASSERT_FALSE(caffe_temperature::StreamsOutput(2 * channels, 4));
  std::vector<float> dx(int64_t(rows) * channels + 1);
  gradient(rows, 0, dx.data() + 1);
  for (const int64_t first : {int64_t(0), int64_t(rows - 2)}) {
    std::vector<float> alone(2 * channels);
    gradient(2, first, alone.data());
    EXPECT_EQ(0, std::memcmp(dx.data() + 1 + first * channels, alone.data(),
                             alone.size() * sizeof(float)))
        << "rows " << first << " and " << first + 1;
  }
}

// C not a multiple of the 4-float stores, past one 1024-value chunk.
const int kC = 3001;

TEST(StreamingTest, SoftmaxBackwardRows) {
  const int64_t n = ((33 << 20) / (kC * 4) + 1) * int64_t(kC);
  const std::vector<float> y = Random(n, 0, 0), dy = Random(n, 1, -1);
  const float beta = 0.7f;
  const BetaView<float> view = {&beta, 0, 0};
  ExpectStreamedRowsMatch(kC, [&](int rows, int64_t first, float* dx) {
    const SoftmaxShape shape = {rows, kC, 1};
    caffe_temperature::SoftmaxBackwardCPU(shape, y.data() + first * kC,
                                          dy.data() + first * kC, view, dx);
  });
}

TEST(StreamingTest, DistillationBackwardRows) {
  const int rows = (33 << 20) / (kC * 4) + 1;
  const int64_t n = int64_t(rows) * kC;
  const std::vector<float> q = Random(n, 2, 0), p = Random(n, 3, 0);
  std::vector<float> valid(rows, 1);
  valid[1] = valid[rows - 1] = 0;  // ignored positions: zero rows
  ExpectStreamedRowsMatch(kC, [&](int r, int64_t first, float* dx) {
    const SoftmaxShape shape = {r, kC, 1};
    caffe_temperature::DistillationBackwardCPU(
        shape, 0.25f, q.data() + first * kC, p.data() + first * kC,
        valid.data() + first, dx);
  });
}

TEST(StreamingTest, InfogainBackwardRows) {
  const int C = 67;  // H is C x C
  const int rows = (33 << 20) / (C * 4) + 1;
  const std::vector<float> prob = Random(int64_t(rows) * C, 4, 0);
  const std::vector<float> H = Random(C * C, 5, 0);
  std::vector<float> sums(C, 0);
  for (int l = 0; l < C; ++l) {
    for (int c = 0; c < C; ++c) sums[l] += H[l * C + c];
  }
  std::vector<int> classes(rows);
  for (int r = 0; r < rows; ++r) classes[r] = r % 3 == 1 ? -1 : r % C;
  ExpectStreamedRowsMatch(C, [&](int r, int64_t first, float* dx) {
    const SoftmaxShape shape = {r, C, 1};
    caffe_temperature::InfogainLossBackwardCPU(
        shape, prob.data() + first * C, classes.data() + first, H.data(),
        sums.data(), 0.5f, dx);
  });
}

}  // namespace caffe_temperature_test
