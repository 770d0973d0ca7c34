// Built with -ffast-math and OpenMP, as src/softmax_kernels.cpp is, with the
// kernels' exp (vector_math.hpp) inlined into its `#pragma omp simd` loops,
// and each entry point compiled for x86-64-v4 (AVX-512), -v3 (AVX2 + FMA) and
// the baseline, picked at load time.
// The blocks are shared between OpenMP's threads as the kernels share their
// rows (ParallelRanges: omp_get_max_threads(), which the benchmark sets as it
// sets the plugin's; small blobs on one thread), so that the floor of N
// threads is N threads' floor.
#include "_native_limit.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "caffe_temperature/cpu_clones.hpp"
#include "caffe_temperature/parallel.hpp"
#include "caffe_temperature/streaming.hpp"
#include "caffe_temperature/vector_math.hpp"

namespace caffe_temperature_native {

namespace {

template <typename Dtype>
CT_INLINE void SoftmaxBlock(const Dtype* x, Dtype* y, std::ptrdiff_t n) {
  Dtype m = x[0];
#pragma omp simd reduction(max : m)
  for (std::ptrdiff_t i = 1; i < n; ++i) {
    m = caffe_temperature::Larger(m, x[i]);
  }
  Dtype sum = 0;
#pragma omp simd reduction(+ : sum)
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    y[i] = caffe_temperature::ExpNonPositive(x[i] - m);
    sum += y[i];
  }
  const Dtype scale = Dtype(1) / sum;
#pragma omp simd
  for (std::ptrdiff_t i = 0; i < n; ++i) y[i] *= scale;
}

// dx with streaming stores where the whole dx is as large as the layers'
// outputs that they stream (streaming.hpp).
template <typename Dtype>
CT_INLINE void SoftmaxBackwardBlock(const Dtype* y, const Dtype* dy, Dtype* dx,
                                    std::ptrdiff_t n, bool stream) {
  Dtype dot = 0;
#pragma omp simd reduction(+ : dot)
  for (std::ptrdiff_t i = 0; i < n; ++i) dot += y[i] * dy[i];
  caffe_temperature::WriteValues(
      dx, n, stream,
      [&](std::ptrdiff_t i) CT_LAMBDA_INLINE { return y[i] * (dy[i] - dot); });
}

// Blocks [first, last) of the n values.
template <typename Dtype>
CT_INLINE void ForwardBlocks(const Dtype* x, Dtype* y, std::size_t n,
                             std::size_t block, int first, int last) {
  for (std::size_t start = first * block; start < std::min(n, last * block);
       start += block) {
    const std::size_t len = std::min(block, n - start);
    SoftmaxBlock(x + start, y + start, static_cast<std::ptrdiff_t>(len));
  }
}

template <typename Dtype>
CT_INLINE void BackwardBlocks(const Dtype* y, const Dtype* dy, Dtype* dx,
                              std::size_t n, std::size_t block, int first,
                              int last) {
  const bool stream = caffe_temperature::StreamsOutput(
      static_cast<int64_t>(n), sizeof(Dtype));
  for (std::size_t start = first * block; start < std::min(n, last * block);
       start += block) {
    const std::size_t len = std::min(block, n - start);
    SoftmaxBackwardBlock(y + start, dy + start, dx + start,
                         static_cast<std::ptrdiff_t>(len), stream);
  }
  if (stream) caffe_temperature::StreamFence();
}

// One clone per instruction set, called from each thread: OpenMP's outlined
// loop bodies are not cloned, so the dispatch has to be below them.
CT_CLONES void ForwardRange(const float* x, float* y, std::size_t n,
                            std::size_t block, int first, int last) {
  ForwardBlocks(x, y, n, block, first, last);
}

CT_CLONES void ForwardRange(const double* x, double* y, std::size_t n,
                            std::size_t block, int first, int last) {
  ForwardBlocks(x, y, n, block, first, last);
}

CT_CLONES void BackwardRange(const float* y, const float* dy, float* dx,
                             std::size_t n, std::size_t block, int first,
                             int last) {
  BackwardBlocks(y, dy, dx, n, block, first, last);
}

CT_CLONES void BackwardRange(const double* y, const double* dy, double* dx,
                             std::size_t n, std::size_t block, int first,
                             int last) {
  BackwardBlocks(y, dy, dx, n, block, first, last);
}

int Blocks(std::size_t n, std::size_t block) {
  return static_cast<int>((n + block - 1) / block);
}

template <typename Dtype>
void Forward(const Dtype* x, Dtype* y, std::size_t n, std::size_t block) {
  caffe_temperature::ParallelRanges(
      Blocks(n, block), static_cast<int64_t>(n), [&](int first, int last) {
        ForwardRange(x, y, n, block, first, last);
      });
}

template <typename Dtype>
void Backward(const Dtype* y, const Dtype* dy, Dtype* dx, std::size_t n,
              std::size_t block) {
  caffe_temperature::ParallelRanges(
      Blocks(n, block), static_cast<int64_t>(n), [&](int first, int last) {
        BackwardRange(y, dy, dx, n, block, first, last);
      });
}

// The memory floor's blocks: 128 KB of floats, as the exp floor's.
const std::size_t kMemoryBlock = 32768;

// Block `index` of the memory floor: values [start, start + len) of `in`
// copied to `out` where out has them, else summed into *sum.
template <typename Dtype>
CT_INLINE void MemoryBlock(const Dtype* in, std::size_t n_out, Dtype* out,
                           std::size_t start, std::size_t len, bool stream,
                           Dtype* sum) {
  const std::size_t copied = start < n_out ? std::min(len, n_out - start) : 0;
  if (stream) {
    caffe_temperature::StreamCopy(out + start, in + start,
                                  static_cast<int>(copied));
  } else {
    // Vector loads and stores, as the layers write their outputs: glibc's
    // memmove (std::copy) uses `rep movsb`, which on AMD Zen 3 runs about 10x
    // slower when out lies a few bytes past in modulo 4 KiB (16 bytes: 0.18
    // against 0.018 ms for 1 MB), as two same-sized heap blocks often do; the
    // floor then measured the allocator's placement, not memory.
#pragma omp simd
    for (std::size_t i = start; i < start + copied; ++i) out[i] = in[i];
  }
  Dtype s = 0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = start + copied; i < start + len; ++i) s += in[i];
  *sum = s;
}

template <typename Dtype>
CT_INLINE void MemoryBlocks(const Dtype* in, std::size_t n_in, Dtype* out,
                            std::size_t n_out, Dtype* sums, int first,
                            int last) {
  const bool stream = caffe_temperature::StreamsOutput(
      static_cast<int64_t>(n_out), sizeof(Dtype));
  for (int b = first; b < last; ++b) {
    const std::size_t start = b * kMemoryBlock;
    MemoryBlock(in, n_out, out, start, std::min(kMemoryBlock, n_in - start),
                stream, sums + b);
  }
  if (stream) caffe_temperature::StreamFence();
}

CT_CLONES void MemoryRange(const float* in, std::size_t n_in, float* out,
                           std::size_t n_out, float* sums, int first,
                           int last) {
  MemoryBlocks(in, n_in, out, n_out, sums, first, last);
}

}  // namespace

float MemoryPass(const float* in, std::size_t n_in, float* out,
                 std::size_t n_out) {
  const int blocks = Blocks(n_in, kMemoryBlock);
  std::vector<float> sums(blocks);
  caffe_temperature::ParallelRanges(
      blocks, static_cast<int64_t>(n_in), [&](int first, int last) {
        MemoryRange(in, n_in, out, n_out, sums.data(), first, last);
      });
  return std::accumulate(sums.begin(), sums.end(), 0.0f);
}

void LimitForward(const float* x, float* y, std::size_t n, std::size_t block) {
  Forward(x, y, n, block);
}

void LimitForward(const double* x, double* y, std::size_t n,
                  std::size_t block) {
  Forward(x, y, n, block);
}

void LimitBackward(const float* y, const float* dy, float* dx, std::size_t n,
                   std::size_t block) {
  Backward(y, dy, dx, n, block);
}

void LimitBackward(const double* y, const double* dy, double* dx,
                   std::size_t n, std::size_t block) {
  Backward(y, dy, dx, n, block);
}

}  // namespace caffe_temperature_native
