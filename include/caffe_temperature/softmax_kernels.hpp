#ifndef CAFFE_TEMPERATURE_SOFTMAX_KERNELS_HPP_
#define CAFFE_TEMPERATURE_SOFTMAX_KERNELS_HPP_

// CPU kernels shared by every layer of the plugin (their GPU counterparts:
// gpu_kernels.hpp). A blob is seen as outer x channels x inner; one softmax
// vector of `channels` values (stride `inner`) belongs to each (outer, inner)
// position.
//
// Each splits its rows or strips of positions between OpenMP threads
// (parallel.hpp); the results are the same bits for any thread count.
//
// They are built with -ffast-math (vectorised loops around
// vector_math.hpp): a vector that holds an infinity or a NaN gets IEEE exps
// (the NaN policy of docs/robustness.md), but nothing is checked. Callers
// validate beta before calling them. reference_kernels.hpp has plain,
// scalar versions of each, for tests and for A/B comparisons.

#include <vector>

namespace caffe_temperature {

struct SoftmaxShape {
  int outer;
  int channels;
  int inner;
  int positions() const { return outer * inner; }
  int count() const { return outer * channels * inner; }
};

// Inverse temperature of each position: position (o, i) reads
// data[o * outer_stride + i * inner_stride]. Zero strides share one value,
// which covers the three layouts docs/spec.md allows (shared, per sample,
// per position) without copying beta.
template <typename Dtype>
struct BetaView {
  const Dtype* data;
  int outer_stride;
  int inner_stride;
};

#include "caffe_temperature/cpu_kernel_declarations.inc"

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SOFTMAX_KERNELS_HPP_
