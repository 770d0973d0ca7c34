#ifndef CAFFE_TEMPERATURE_CUDA_PER_VECTOR_CUH_
#define CAFFE_TEMPERATURE_CUDA_PER_VECTOR_CUH_

// The one dispatch that every layer's kernels use. An operation is a functor
// with `template <typename Group> __device__ void operator()(const Group& g,
// const Vector& v) const` that handles one softmax vector; LaunchPerVector
// runs it on every vector of a blob, the vector owned by one thread (inner >
// 1: adjacent threads take adjacent inner positions, so that each channel's
// loads are coalesced), one warp (inner == 1, C <= kMaxWarpRowChannels) or
// one block (inner == 1, larger C). Every thread of a group gets the same
// vector and the group-wide reductions.

#include <cstdint>

#include "caffe_temperature/softmax_kernels.hpp"
#include "launch.cuh"
#include "reduce.cuh"

namespace caffe_temperature {

// Above this many channels a row gets a whole block instead of a warp.
const int kMaxWarpRowChannels = 1024;

// One softmax vector: channel c of position (o, i) is at offset + c * stride.
struct Vector {
  int o;
  int i;
  int64_t position;  // o * inner + i
  int64_t offset;
  int stride;
  int channels;
};

// The threads sharing one softmax vector: this thread visits channels
// first, first + step, ... and AllReduce combines the partial results of all
// of them.
struct ThreadGroup {
  static const int first = 0;
  static const int step = 1;
  template <typename T, typename Op>
  __device__ T AllReduce(T value, Op) const { return value; }
};

struct WarpGroup {
  int first;
  static const int step = kWarpSize;
  template <typename T, typename Op>
  __device__ T AllReduce(T value, Op op) const {
    return WarpAllReduce(value, op);
  }
};

template <typename Dtype>
struct BlockGroup {
  int first;
  int step;
  Dtype* scratch;
  template <typename Op>
  __device__ Dtype AllReduce(Dtype value, Op op) const {
    return BlockAllReduce(value, op, scratch);
  }
};

// Calls f(k, c) for the channels c this thread visits, k being the element
// offset: each element is visited by one thread, so outputs may alias
// inputs.
template <typename Group, typename F>
__device__ __forceinline__ void ForEach(const Group& g, const Vector& v,
                                        F f) {
  for (int c = g.first; c < v.channels; c += g.step) {
    f(v.offset + static_cast<int64_t>(c) * v.stride, c);
  }
}

// Combines f(k, c) over the vector with op.
template <typename Dtype, typename Group, typename Op, typename F>
__device__ __forceinline__ Dtype Reduce(const Group& g, const Vector& v,
                                        Dtype init, Op op, F f) {
  Dtype acc = init;
  ForEach(g, v, [&](int64_t k, int c) { acc = op(acc, f(k, c)); });
  return g.AllReduce(acc, op);
}

// -inf rather than a first element keeps threads that own no channel
// harmless.
template <typename Dtype, typename Group>
__device__ __forceinline__ Dtype Max(const Group& g, const Vector& v,
                                     const Dtype* x) {
  return Reduce(g, v, Dtype(-INFINITY), MaxOp(),
                [&](int64_t k, int) { return x[k]; });
}

// inner > 1: one thread per position.
template <typename Op>
__global__ void PositionPerThreadKernel(const SoftmaxShape s, const Op op) {
  const int64_t p = GlobalThread();
  if (p >= static_cast<int64_t>(s.outer) * s.inner) return;
  const int o = static_cast<int>(p / s.inner);
  const int i = static_cast<int>(p % s.inner);
  const Vector v = {o, i, p,
                    static_cast<int64_t>(o) * s.channels * s.inner + i,
                    s.inner, s.channels};
  op(ThreadGroup(), v);
}

// inner == 1, C <= kMaxWarpRowChannels: one warp per row. Whole warps leave
// together, so every shuffle sees the full warp.
template <typename Op>
__global__ void RowPerWarpKernel(const SoftmaxShape s, const Op op) {
  const int64_t o = GlobalThread() / kWarpSize;
  if (o >= s.outer) return;
  const WarpGroup g = {static_cast<int>(threadIdx.x % kWarpSize)};
  const Vector v = {static_cast<int>(o), 0, o, o * s.channels, 1, s.channels};
  op(g, v);
}

// inner == 1, C > kMaxWarpRowChannels: one block per row; every thread of
// the block reaches every barrier.
template <typename Dtype, typename Op>
__global__ void RowPerBlockKernel(const SoftmaxShape s, const Op op) {
  __shared__ Dtype scratch[kWarpSize];
  const BlockGroup<Dtype> g = {static_cast<int>(threadIdx.x),
                               static_cast<int>(blockDim.x), scratch};
  const int64_t o = blockIdx.x;
  const Vector v = {static_cast<int>(o), 0, o, o * s.channels, 1, s.channels};
  op(g, v);
}

template <typename Dtype, typename Op>
void LaunchPerVector(const SoftmaxShape& s, const Op& op) {
  const int64_t positions = static_cast<int64_t>(s.outer) * s.inner;
  if (s.inner > 1) {
    Launch(PositionPerThreadKernel<Op>, BlocksFor(positions), kThreads, s, op);
  } else if (s.channels <= kMaxWarpRowChannels) {
    Launch(RowPerWarpKernel<Op>, BlocksFor(positions * kWarpSize), kThreads,
           s, op);
  } else {
    Launch(RowPerBlockKernel<Dtype, Op>, s.outer, kThreads, s, op);
  }
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_CUDA_PER_VECTOR_CUH_
