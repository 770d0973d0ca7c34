// gpu_kernels_emulated: every entry point of gpu_kernels.hpp, built from the
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
#include "guarded.hpp"

namespace caffe_temperature {
namespace {

int comparisons = 0;

// Launches are asynchronous, in HIP-CPU as on a GPU: wait before reading a
// result (and before a buffer goes out of scope).
void Synchronize() {
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

struct Shape3 {
  int outer, channels, inner;
};

std::string Describe(const SoftmaxShape& s) {
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
std::vector<SoftmaxShape> Shapes() {
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

std::vector<BetaLayout> BetaLayouts(const SoftmaxShape& s) {
  return {{"shared", 1, 0, 0},
          {"per sample", s.outer, 1, 0},
          {"per position", s.positions(), s.inner, 1}};
}

template <typename Dtype>
class GpuKernelsEmulated : public ::testing::Test {};

typedef ::testing::Types<float, double> Dtypes;
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

std::vector<IgnoreLabel> IgnoreSettings() { return {{false, 0}, {true, 255}}; }

TYPED_TEST(GpuKernelsEmulated, InfogainMatchesCpu) {
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

TYPED_TEST(GpuKernelsEmulated, InfogainReportsTheFirstBadLabel) {
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

TYPED_TEST(GpuKernelsEmulated, DistillationMatchesCpu) {
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
