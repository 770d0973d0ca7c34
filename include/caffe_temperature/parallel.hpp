#ifndef CAFFE_TEMPERATURE_PARALLEL_HPP_
#define CAFFE_TEMPERATURE_PARALLEL_HPP_

// The OpenMP loop shared by the CPU kernels (docs/performance.md, "Threads").
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace caffe_temperature {

// Below this many elements a kernel stays on the calling thread: waking a
// team costs a few microseconds, more than a whole 64 x 10 softmax.
const int64_t kParallelMinElements = 1 << 16;

// Calls run(begin, end) on one contiguous range of the items [0, items) per
// thread (OMP_NUM_THREADS of them at most), or on all of them at once for a
// small blob of `elements` values. Each item (a row, or a strip of positions)
// must be computed from its own data alone: results are then the same bits
// for any thread count.
template <typename Run>
void ParallelRanges(int items, int64_t elements, const Run& run) {
  const int threads = elements < kParallelMinElements
                          ? 1
                          : std::min(omp_get_max_threads(), items);
  if (threads <= 1) {
    run(0, items);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    run(static_cast<int>(int64_t(items) * t / threads),
        static_cast<int>(int64_t(items) * (t + 1) / threads));
  }
}

// Work items of a kernel that processes strips of `strip` positions: one per
// row when inner = 1, else one per (outer index, strip).
inline int StripItems(int outer, int inner, int strip) {
  return outer * ((inner + strip - 1) / strip);
}

// Work item t of such a kernel: its outer index and first position.
inline void StripOf(int t, int inner, int strip, int* o, int* i0) {
  const int strips = (inner + strip - 1) / strip;
  *o = t / strips;
  *i0 = t % strips * strip;
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_PARALLEL_HPP_
