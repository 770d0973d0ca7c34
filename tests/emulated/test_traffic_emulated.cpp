// The global memory traffic of each kernel path of cuda/, counted by the
// emulation: every load and store of a row element goes through cuda/'s
// LoadGlobal and StoreGlobal, which tests/emulated/traffic.hpp counts (on a
// GPU they are plain accesses). Each case names the path, the kernel the
// dispatch must pick for its shape on the emulated device and the reads and
// writes per element of the blob that docs/performance.md's table gives by
// construction; the counts must match exactly. The per-vector scalars
// (beta, labels, statistics, the beta gradient per position) are not row
// elements and are not counted. The values these paths compute are checked
// by test_gpu_kernels_emulated.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "guarded.hpp"

namespace caffe_temperature {
namespace {

enum Entry {
  kForward,
  kBackward,
  kBackwardWithBeta,
  kDistillationForward,
  kInfogainForward
};

const char* const kEntryNames[] = {"forward", "backward",
                                   "backward with beta gradient",
                                   "distillation forward", "infogain forward"};

struct TrafficCase {
  const char* path;
  const char* kernel;
  Entry entry;
  SoftmaxShape shape;
  int reads;   // per element of the blob
  int writes;
};

// The longest row whose `inputs` rows fit the emulated device's shared
// memory beside the reductions' 32-value scratch.
template <typename Dtype>
int Longest(int inputs) {
  const size_t optin = ct_emulation::Device().optin_shared;
  return static_cast<int>((optin - 32 * sizeof(Dtype)) /
                          (inputs * sizeof(Dtype)));
}

// A row between the limits of `inputs` and inputs - 1 cached rows, a
// multiple of 4 (vector loads).
template <typename Dtype>
int Between(int inputs) {
  return ((Longest<Dtype>(inputs) + Longest<Dtype>(inputs - 1)) / 2) & ~3;
}

template <typename Dtype>
std::vector<TrafficCase> TrafficCases() {
  const char* warp = "WarpCachedRowsKernel";
  const char* position = "PositionCachedKernel";
  const char* block = "BlockCachedRowsKernel";
  const SoftmaxShape rows = {64, 500, 1}, small_c = {4, 21, 300},
                     positions = {4, 8, 300}, long_rows = {3, 2000, 1},
                     past = {2, Longest<Dtype>(1) + 4, 1},
                     split = {2, 40, 300};
  return {
      {"warp per row, registers", warp, kForward, rows, 1, 1},
      {"warp per row, registers", warp, kBackward, rows, 2, 1},
      {"warp per row, registers", warp, kBackwardWithBeta, rows, 3, 1},
      {"warp per row, registers", warp, kDistillationForward, rows, 2, 2},
      {"warp per row, registers", warp, kInfogainForward, rows, 1, 1},
      {"thread per position, registers", position, kForward, small_c, 1, 1},
      {"thread per position, registers", position, kInfogainForward, small_c,
       1, 1},
      {"thread per position, registers", position, kBackward, positions, 2,
       1},
      {"thread per position, registers", position, kBackwardWithBeta,
       positions, 3, 1},
      {"thread per position, registers", position, kDistillationForward,
       positions, 2, 2},
      {"block per row, shared memory", block, kForward, long_rows, 1, 1},
      {"block per row, shared memory", block, kBackward, long_rows, 2, 1},
      {"block per row, shared memory", block, kBackwardWithBeta, long_rows,
       3, 1},
      {"block per row, shared memory", block, kDistillationForward,
       long_rows, 2, 2},
      {"block per row, dy streamed", block, kBackward,
       {2, Between<Dtype>(2), 1}, 3, 1},
      {"block per row, dy streamed", block, kBackwardWithBeta,
       {2, Between<Dtype>(3), 1}, 4, 1},
      {"block per row, teacher streamed", block, kDistillationForward,
       {2, Between<Dtype>(2), 1}, 4, 2},
      {"block per row, multi-pass", "RowPerBlockKernel", kForward, past, 3,
       1},
      {"block per row, multi-pass", "RowPerBlockKernel", kBackward, past, 4,
       1},
      {"block per row, multi-pass", "RowPerBlockKernel", kBackwardWithBeta,
       past, 6, 1},
      {"block per row, multi-pass", "RowPerBlockKernel",
       kDistillationForward, past, 6, 2},
      {"C split over warps, multi-pass", "PositionsPerBlockKernel", kForward,
       split, 3, 1},
      {"C split over warps, multi-pass", "PositionsPerBlockKernel",
       kBackward, split, 4, 1},
      {"C split over warps, multi-pass", "PositionsPerBlockKernel",
       kInfogainForward, split, 3, 1},
      // Enough positions for a thread each on either device, of more
      // channels than three inputs fit in a thread's registers.
      {"thread per position, multi-pass", "PositionPerThreadKernel",
       kBackwardWithBeta, {1, 17, 140000}, 6, 1},
  };
}

// Runs one entry point on made-up inputs (the values do not change the
// traffic) and waits for it.
template <typename Dtype>
void Run(Entry entry, const SoftmaxShape& s) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(0.1, 1);
  std::vector<Dtype> values(s.count());
  for (Dtype& v : values) v = static_cast<Dtype>(uniform(rng));
  const Guarded<Dtype> a(values), b(values), beta(std::vector<Dtype>{1.5});
  Guarded<Dtype> out(s.count()), out2(s.count()),
      per_position(3 * s.positions());
  const BetaView<Dtype> view = {beta.data(), 0, 0};
  switch (entry) {
    case kForward:
      SoftmaxForwardGPU(s, a.data(), view, out.data());
      break;
    case kBackward:
      SoftmaxBackwardGPU(s, a.data(), b.data(), view, out.data());
      break;
    case kBackwardWithBeta:
      SoftmaxBackwardWithBetaGradientGPU(s, a.data(), b.data(), a.data(),
                                         view, out.data(),
                                         per_position.data());
      break;
    case kDistillationForward:
      DistillationForwardGPU(s, Dtype(0.5), a.data(), b.data(),
                             static_cast<const Dtype*>(NULL), {false, 0},
                             out.data(), out2.data(), per_position.data());
      break;
    case kInfogainForward: {
      // Every label class 0; H's rows are gathered, not counted.
      const int64_t C = s.channels;
      const Guarded<Dtype> labels(std::vector<Dtype>(s.positions(), 0)),
          H(std::vector<Dtype>(C * C, 1)), sums(std::vector<Dtype>(C, C));
      Guarded<int> first_bad(1);
      InfogainLossForwardGPU(s, a.data(), labels.data(), {false, 0}, H.data(),
                             sums.data(), out.data(), per_position.data(),
                             first_bad.data());
      ASSERT_EQ(hipDeviceSynchronize(), hipSuccess);
      break;
    }
  }
  ASSERT_EQ(hipDeviceSynchronize(), hipSuccess);
}

template <typename Dtype>
class TrafficEmulated : public ::testing::Test {};

typedef ::testing::Types<float, double> Dtypes;
TYPED_TEST_SUITE(TrafficEmulated, Dtypes);

TYPED_TEST(TrafficEmulated, EachPathMovesWhatItsTableRowSays) {
  typedef TypeParam Dtype;
  std::printf("| path (%s, sm_%d) | entry | outer x C x inner | kernel | "
              "reads | writes |\n|---|---|---|---|---|---|\n",
              sizeof(Dtype) == 4 ? "float" : "double",
              ct_emulation::Device().sm);
  for (const TrafficCase& c : TrafficCases<Dtype>()) {
    const SoftmaxShape& s = c.shape;
    const std::string shape = std::to_string(s.outer) + " x " +
                              std::to_string(s.channels) + " x " +
                              std::to_string(s.inner);
    SCOPED_TRACE(std::string(c.path) + ", " + kEntryNames[c.entry] + ", " +
                 shape);
    ct_emulation::TrafficCounter::Get().Take();
    ct_emulation::TakeEnteredKernels();
    Run<Dtype>(c.entry, s);
    const ct_emulation::Traffic traffic =
        ct_emulation::TrafficCounter::Get().Take();
    // The infogain forward's SetKernel (one int, not a row) aside.
    std::vector<std::string> kernels = ct_emulation::TakeEnteredKernels();
    kernels.erase(std::remove(kernels.begin(), kernels.end(), "SetKernel"),
                  kernels.end());
    EXPECT_EQ(kernels, std::vector<std::string>{c.kernel});
    const double bytes = static_cast<double>(s.count()) * sizeof(Dtype);
    const double reads = traffic.read_bytes / bytes;
    const double writes = traffic.written_bytes / bytes;
    std::printf("| %s | %s | %s | %s | %g | %g |\n", c.path,
                kEntryNames[c.entry], shape.c_str(),
                kernels.empty() ? "none" : kernels.front().c_str(), reads,
                writes);
    EXPECT_EQ(reads, c.reads);
    EXPECT_EQ(writes, c.writes);
  }
}

}  // namespace
}  // namespace caffe_temperature
