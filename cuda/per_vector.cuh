#ifndef CAFFE_TEMPERATURE_CUDA_PER_VECTOR_CUH_
#define CAFFE_TEMPERATURE_CUDA_PER_VECTOR_CUH_

// The multi-pass dispatch: every vector the caches of cached_row.cuh do not
// take (inner > 1 with more channels than a thread's registers hold, rows
// too long for shared memory) and the layers' small helpers. An operation is
// a functor with `template <typename Group> __device__ void operator()(const
// Group& g, const Vector& v) const` that handles one softmax vector, reading
// it from global memory (LoadGlobal, StoreGlobal) as often as it needs;
// LaunchPerVector runs it on every vector of a blob, the vector owned by one
// thread (inner > 1: adjacent threads take adjacent inner positions, so that
// each channel's loads are coalesced), by the warps of a block (inner > 1
// with too few positions to fill the GPU: the channels are split between
// them), one warp (inner == 1, C <= kMaxWarpRowChannels) or one block
// (inner == 1, larger C). Every thread of a group gets the same vector and
// the group-wide reductions; the thread with g.first == 0 writes the
// per-vector results.

#include <cstdint>

#include "caffe_temperature/softmax_kernels.hpp"
#include "launch.cuh"
#include "reduce.cuh"

namespace caffe_temperature {

// Above this many channels a row gets a whole block instead of a warp.
const int kMaxWarpRowChannels = 1024;
// Threads per multiprocessor that a thread-per-position grid should reach
// before it stops splitting channels: half of an H100's 2048, enough to
// hide the latency of coalesced streaming loads.
const int kThreadsPerSm = 1024;

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

// inner > 1 with few positions: the warps of a block share kWarpSize adjacent
// positions, lane l of every warp working on position l, warp w on channels
// w, w + warps, ...; scratch holds one value per thread. All threads of the
// block must call AllReduce.
template <typename Dtype>
struct StripGroup {
  int first;
  int step;
  Dtype* scratch;
  template <typename Op>
  __device__ Dtype AllReduce(Dtype value, Op op) const {
    const int lane = threadIdx.x % kWarpSize;
    __syncthreads();  // scratch may still be read by a previous reduction
    scratch[threadIdx.x] = value;
    __syncthreads();
    // In warp order, so that the result does not depend on timing.
    value = scratch[lane];
    for (int w = 1; w < step; ++w) {
      value = op(value, scratch[w * kWarpSize + lane]);
    }
    return value;
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
                [&](int64_t k, int) { return LoadGlobal(x + k); });
}

// The vector of position p (inner > 1).
__device__ inline Vector PositionVector(const SoftmaxShape& s, int64_t p) {
  const int o = static_cast<int>(p / s.inner);
  const int i = static_cast<int>(p % s.inner);
  return {o, i, p, static_cast<int64_t>(o) * s.channels * s.inner + i,
          s.inner, s.channels};
}

// inner > 1: one thread per position.
template <typename Op>
__global__ void __launch_bounds__(kThreads, 1)
    PositionPerThreadKernel(const SoftmaxShape s, const Op op) {
  const int64_t p = GlobalThread();
  if (p >= static_cast<int64_t>(s.outer) * s.inner) return;
  op(ThreadGroup(), PositionVector(s, p));
}

// The largest block of the channel split: at 1024 threads (64 registers a
// thread) ptxas spilled the double infogain forward's registers.
const int kMaxSplitThreads = 512;

// inner > 1 with few positions: kWarpSize positions per block, C split
// between its warps (StripGroup).
template <typename Dtype, typename Op>
__global__ void __launch_bounds__(kMaxSplitThreads, 1)
    PositionsPerBlockKernel(const SoftmaxShape s, const Op op) {
  CT_STATIC_SHARED(Dtype, scratch, kMaxSplitThreads);
  const int64_t positions = static_cast<int64_t>(s.outer) * s.inner;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kWarpSize +
                    threadIdx.x % kWarpSize;
  const int warps = static_cast<int>(blockDim.x / kWarpSize);
  const int warp = static_cast<int>(threadIdx.x / kWarpSize);
  // One call of the op for every lane, so that all reach its barriers from
  // the same place (a barrier in divergent code is undefined): lanes past
  // the last position take it with no channel of their own and write nothing
  // (none of them has first == 0).
  const bool idle = p >= positions;
  Vector v = PositionVector(s, idle ? positions - 1 : p);
  if (idle) v.channels = 0;
  const StripGroup<Dtype> g = {idle ? warps : warp, warps, scratch};
  op(g, v);
}

// The vector of row o (inner == 1).
__device__ inline Vector RowVector(int64_t o, int channels) {
  return {static_cast<int>(o), 0, o, o * channels, 1, channels};
}

// inner == 1, C <= kMaxWarpRowChannels: one warp per row. Whole warps leave
// together, so every shuffle sees the full warp.
template <typename Op>
__global__ void __launch_bounds__(kThreads, 1)
    RowPerWarpKernel(const SoftmaxShape s, const Op op) {
  const int64_t o = GlobalThread() / kWarpSize;
  if (o >= s.outer) return;
  const WarpGroup g = {static_cast<int>(threadIdx.x % kWarpSize)};
  op(g, RowVector(o, s.channels));
}

// inner == 1, C > kMaxWarpRowChannels: one block per row; every thread of
// the block reaches every barrier.
template <typename Dtype, typename Op>
__global__ void __launch_bounds__(kThreads, 1)
    RowPerBlockKernel(const SoftmaxShape s, const Op op) {
  CT_STATIC_SHARED(Dtype, scratch, kWarpSize);
  const BlockGroup<Dtype> g = {static_cast<int>(threadIdx.x),
                               static_cast<int>(blockDim.x), scratch};
  op(g, RowVector(blockIdx.x, s.channels));
}

// How many warps share the channels of kWarpSize positions (inner > 1): 1
// (a thread per position) once the positions alone give the GPU
// kThreadsPerSm threads per multiprocessor, else doubled until they do, up
// to a block of kMaxSplitThreads and no more warps than channels.
inline int ChannelSplit(int64_t positions, int channels) {
  const int64_t enough =
      static_cast<int64_t>(DeviceAttribute(cudaDevAttrMultiProcessorCount)) *
      kThreadsPerSm;
  int warps = 1;
  while (warps * kWarpSize < kMaxSplitThreads && 2 * warps <= channels &&
         positions * warps < enough) {
    warps *= 2;
  }
  return warps;
}

template <typename Dtype, typename Op>
void LaunchPerVector(const SoftmaxShape& s, const Op& op) {
  const int64_t positions = static_cast<int64_t>(s.outer) * s.inner;
  if (s.inner > 1) {
    const int warps = positions == 0 ? 1 : ChannelSplit(positions, s.channels);
    if (warps == 1) {
      Launch(PositionPerThreadKernel<Op>, BlocksFor(positions), kThreads, s,
             op);
    } else {
      Launch(PositionsPerBlockKernel<Dtype, Op>,
             BlocksFor(positions, kWarpSize), warps * kWarpSize, s, op);
    }
  } else if (s.channels <= kMaxWarpRowChannels) {
    Launch(RowPerWarpKernel<Op>, BlocksFor(positions * kWarpSize), kThreads,
           s, op);
  } else {
    Launch(RowPerBlockKernel<Dtype, Op>, s.outer, kThreads, s, op);
  }
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_CUDA_PER_VECTOR_CUH_
