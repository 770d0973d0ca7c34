#ifndef CAFFE_TEMPERATURE_TESTS_EMULATED_CASES_HPP_
#define CAFFE_TEMPERATURE_TESTS_EMULATED_CASES_HPP_

// What the emulated tests of the softmax family and of the loss layers
// share: the comparison of a GPU result with the CPU one, the shape matrix
// that reaches every dispatch path, and the inputs (logits, beta layouts,
// labels).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "guarded.hpp"

namespace caffe_temperature {

typedef ::testing::Types<float, double> Dtypes;

// GPU results compared with their CPU reference, reported at the end.
inline int comparisons = 0;

// Launches are asynchronous, in HIP-CPU as on a GPU: wait before reading a
// result (and before a buffer goes out of scope).
inline void Synchronize() {
  ASSERT_EQ(hipDeviceSynchronize(), hipSuccess);
}

template <typename Dtype>
Dtype Tolerance() { return sizeof(Dtype) == 4 ? 1e-4 : 1e-11; }

// The GPU result against the CPU one: the same NaN/inf pattern, finite
// values within a relative tolerance scaled by the largest finite CPU value,
// every element written, nothing written outside.
template <typename Dtype>
::testing::AssertionResult Agree(const std::vector<Dtype>& cpu,
                                 const Guarded<Dtype>& gpu) {
  Synchronize();
  ++comparisons;
  if (!gpu.GuardsIntact()) return gpu.GuardsIntact();
  if (static_cast<int64_t>(cpu.size()) != gpu.size()) {
    return ::testing::AssertionFailure() << "sizes differ";
  }
  Dtype scale = 0;
  for (Dtype c : cpu) {
    if (std::isfinite(c)) scale = std::max(scale, std::abs(c));
  }
  int bad = 0;
  std::ostringstream report;
  for (int64_t i = 0; i < gpu.size(); ++i) {
    const Dtype c = cpu[i], g = gpu[i];
    const char* problem = NULL;
    if (SameBits(g, Poison<Dtype>())) {
      problem = "never written (or copied from a guard)";
    } else if (std::isnan(c) != std::isnan(g)) {
      problem = "NaN pattern differs";
    } else if (std::isinf(c) || std::isinf(g)) {
      if (c != g) problem = "infinity differs";
    } else if (!std::isnan(c) &&
               std::abs(c - g) > Tolerance<Dtype>() * (std::abs(c) + scale)) {
      problem = "value differs";
    }
    if (!problem) continue;
    if (++bad <= 5) {
      report << "\n  [" << i << "] cpu " << c << " gpu " << g << ": "
             << problem;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << gpu.size() << " elements disagree:"
         << report.str();
}

// RowSumsGPU with the scratch a layer would give it (RowSumsScratchCount
// values, guarded like every buffer).
template <typename Dtype>
void RowSums(int rows, int cols, const Dtype* values, Dtype* sums) {
  Guarded<Dtype> partials(RowSumsScratchCount(rows, cols));
  RowSumsGPU(rows, cols, values, partials.data(), sums);
  Synchronize();
  EXPECT_TRUE(partials.GuardsIntact()) << "RowSumsGPU scratch";
}

inline std::string Describe(const SoftmaxShape& s) {
  std::ostringstream out;
  out << "outer " << s.outer << ", C " << s.channels << ", inner " << s.inner;
  return out.str();
}

// Reaches every path of the dispatch (cuda/cached_row.cuh, then
// cuda/per_vector.cuh) on either emulated device (sm_75: 40 multiprocessors,
// 64 KiB of shared memory per block; sm_90: 132 and 227 KiB), the rows
// at the limits of shared memory coming from SharedMemoryShapes below:
// - inner = 1, a warp per row with the row in registers: every width of
//   1 to 32 values per lane (C = 1, 31/32/33, 62, 100, 200, 500, 1000/1024),
//   in vectors (C a multiple of 4 floats or 2 doubles) and not;
// - inner = 1, a block per row in shared memory: C just above 1024 (and
//   double's three-input rows from 513), scalar (1025) and in vectors
//   (5000);
// - inner = 1, the multi-pass block kernel past the cache: 40000 (double,
//   and float with two or three inputs), 60000 (float, one input);
// - inner > 1 with C <= 32 (two inputs in double: 16; three: 16 in float,
//   8 in double): a thread per position with its channels in registers,
//   4 to 32 of them (C = 1, 2, 5, 21, 31, 32), over several blocks (3 x 21 x
//   700; 140000 positions);
// - inner > 1, more channels: the channels split across the warps of a
//   block while the positions are fewer than 1024 per multiprocessor (the
//   last block partly idle, the softmax over axis 0 of (1000, 256)), a
//   thread per position beyond (140000 positions of 17 channels: the
//   double backwards, the float backward with beta gradient, and the loss
//   layers' backwards at any C);
// - several blocks of each with the last one partly idle, and no position
//   at all.
inline std::vector<SoftmaxShape> Shapes() {
  std::vector<SoftmaxShape> shapes;
  for (int c : {1, 2, 21, 31, 32, 33, 62, 100, 200, 500, 1000, 1024, 1025,
                5000, 40000}) {
    shapes.push_back({c <= 1024 ? 19 : (c <= 5000 ? 5 : 2), c, 1});
    shapes.push_back({2, c, c <= 1024 ? 7 : 3});
  }
  shapes.push_back({2, 60000, 1});
  shapes.push_back({1, 33, 300});  // axis 0: one outer, ten blocks of 32
  shapes.push_back({1, 1000, 256});  // axis 0 of (1000, 256)
  shapes.push_back({1, 17, 140000});  // enough positions for one thread each
  shapes.push_back({3, 21, 700});  // 9 blocks, the last partly idle
  shapes.push_back({100, 33, 1});  // 25 blocks of 4 warps
  shapes.push_back({2, 5, 500});   // C split over 4 warps
  shapes.push_back({0, 10, 1});
  shapes.push_back({0, 2000, 1});
  shapes.push_back({0, 10, 4});
  shapes.push_back({3, 10, 0});
  return shapes;
}

// Rows at the limits of a block's shared memory on the emulated device, for
// one, two and three cached inputs (the forward, the backward and the
// distillation forward, the backward with beta gradient): a dynamic part of
// exactly 48 KiB, which with the kernel's static scratch needs the opt-in
// (C = 12288, 6144, 4096 floats); the longest row that fits the device's
// opt-in maximum with the scratch (kScratchValues) beside it, and one longer
// (on sm_90: 58080, 29040, 19360 floats and one more each); and an odd C
// (scalar loads) between the limits of k and k - 1 inputs, where the
// backwards cache all but dy (cuda/cached_row.cuh).
const int kScratchValues = 32;  // a value per warp, for the reductions

template <typename Dtype>
std::vector<SoftmaxShape> SharedMemoryShapes() {
  const size_t optin = ct_emulation::Device().optin_shared;
  const size_t scratch = kScratchValues * sizeof(Dtype);
  std::vector<SoftmaxShape> shapes;
  int previous = 0;
  for (int inputs = 1; inputs <= 3; ++inputs) {
    const size_t row = inputs * sizeof(Dtype);
    const int longest = static_cast<int>((optin - scratch) / row);
    shapes.push_back({2, static_cast<int>(48 * 1024 / row), 1});
    shapes.push_back({2, longest, 1});
    shapes.push_back({2, longest + 1, 1});
    if (previous) shapes.push_back({2, ((longest + previous) / 2) | 1, 1});
    previous = longest;
  }
  return shapes;
}

// Shapes() and SharedMemoryShapes().
template <typename Dtype>
std::vector<SoftmaxShape> AllShapes() {
  std::vector<SoftmaxShape> shapes = Shapes();
  const std::vector<SoftmaxShape> limits = SharedMemoryShapes<Dtype>();
  shapes.insert(shapes.end(), limits.begin(), limits.end());
  return shapes;
}

// Normal logits of spread 3; with `special`, one element of each of the
// first four vectors is NaN, +inf, -inf or 1e4 (in turn; a softmax not
// shifted by its max would overflow there).
template <typename Dtype>
std::vector<Dtype> Logits(const SoftmaxShape& s, std::mt19937* rng,
                          bool special) {
  std::normal_distribution<double> normal(0, 3);
  std::vector<Dtype> x(s.count());
  for (Dtype& v : x) v = static_cast<Dtype>(normal(*rng));
  if (!special) return x;
  const Dtype values[] = {std::numeric_limits<Dtype>::quiet_NaN(),
                          std::numeric_limits<Dtype>::infinity(),
                          -std::numeric_limits<Dtype>::infinity(), 1e4};
  for (int p = 0; p < std::min(4, s.positions()); ++p) {
    const int o = p / s.inner, i = p % s.inner, c = s.channels / 2;
    x[(static_cast<int64_t>(o) * s.channels + c) * s.inner + i] = values[p];
  }
  return x;
}

template <typename Dtype>
std::vector<Dtype> Uniform(int64_t n, double low, double high,
                           std::mt19937* rng) {
  std::uniform_real_distribution<double> uniform(low, high);
  std::vector<Dtype> values(n);
  for (Dtype& v : values) v = static_cast<Dtype>(uniform(*rng));
  return values;
}

// The three beta layouts of TemperatureSoftmax: shared, per sample, per
// position, as values and strides.
struct BetaLayout {
  const char* name;
  int count;
  int outer_stride;
  int inner_stride;
};

inline std::vector<BetaLayout> BetaLayouts(const SoftmaxShape& s) {
  return {{"shared", 1, 0, 0},
          {"per sample", s.outer, 1, 0},
          {"per position", s.positions(), s.inner, 1}};
}

// Labels for the loss layers: valid classes, every fifth position ignored
// (when ignore is enabled), and, with `invalid`, bad values from position 3.
template <typename Dtype>
std::vector<Dtype> Labels(const SoftmaxShape& s, const IgnoreLabel& ignore,
                          bool invalid, std::mt19937* rng) {
  std::uniform_int_distribution<int> label(0, std::max(0, s.channels - 1));
  std::vector<Dtype> labels(s.positions());
  for (int p = 0; p < s.positions(); ++p) {
    labels[p] = ignore.enabled && p % 5 == 1 ? Dtype(ignore.value)
                                              : Dtype(label(*rng));
  }
  if (invalid && s.positions() > 6) {
    labels[3] = Dtype(s.channels) + Dtype(0.5);
    labels[6] = std::numeric_limits<Dtype>::quiet_NaN();
  }
  return labels;
}

inline std::vector<IgnoreLabel> IgnoreSettings() { return {{false, 0}, {true, 255}}; }

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_TESTS_EMULATED_CASES_HPP_
