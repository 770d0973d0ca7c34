#ifndef CAFFE_TEMPERATURE_CUDA_REGISTER_ROW_CUH_
#define CAFFE_TEMPERATURE_CUDA_REGISTER_ROW_CUH_

// Softmax vectors held in registers while a row operation (cached_row.cuh)
// works on them, each input read from global memory once and each output
// written once: a row (inner == 1) in the registers of one warp, C <= 32 *
// MaxColsPerLane, several rows per block; or the C <= MaxColsPerLane
// channels of one position (inner > 1) in the registers of one thread,
// adjacent threads on adjacent positions so that each channel's loads are
// coalesced. The columns per lane are fixed at compile time (powers of two),
// those past C masked.

#include <cstddef>
#include <cstdint>
#include <utility>

#include "caffe_temperature/softmax_kernels.hpp"
#include "launch.cuh"
#include "per_vector.cuh"
#include "reduce.cuh"

namespace caffe_temperature {

const int kPackBytes = 16;

// V adjacent values moved as one access.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename Dtype>
constexpr int PackWidth() { return kPackBytes / sizeof(Dtype); }

inline bool AllAligned(size_t) { return true; }

// NULL counts as aligned: an output not asked for is never touched.
template <typename... Rest>
bool AllAligned(size_t bytes, const void* p, const Rest*... rest) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0 &&
         AllAligned(bytes, rest...);
}

// A vector in the registers of kLanes lanes (a warp, or one thread): kChunks
// chunks of V adjacent values per lane and input, chunk j of a lane holding
// columns from (lane + kLanes j) V on, so that each chunk load of a warp is
// one contiguous kLanes V-value access. With V > 1, C is a multiple of V: a
// chunk is whole or absent. A warp's row is contiguous; a thread's vector
// is a position's channels, `stride` (inner) apart.
template <typename Dtype, int K, int kLanes, int kChunks, int V>
struct RegisterRow {
  int lane;
  int channels;
  int stride;
  Dtype value[K][kChunks * V];

  __device__ int Column(int j) const { return (lane + j * kLanes) * V; }

  template <int I>
  __device__ void Load(const Dtype* row) {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      if (Column(j) >= channels) continue;
      const Pack<Dtype, V> pack =
          LoadGlobal(reinterpret_cast<const Pack<Dtype, V>*>(Address(row, j)));
#pragma unroll
      for (int t = 0; t < V; ++t) value[I][j * V + t] = pack.v[t];
    }
  }

  // f(c, value of input 0 at c, value of input 1 at c, ...) by reference.
  template <typename F>
  __device__ void ForEach(F f) {
    ForEach(f, std::make_index_sequence<K>());
  }

  // f(c, value of input I at c) by reference: input I alone.
  template <int I, typename F>
  __device__ void ForEachOf(F f) {
    ForEach(f, std::index_sequence<I>());
  }

  // row[c] = f(c, values at c...).
  template <typename F>
  __device__ void Store(Dtype* row, F f) {
    Store(row, f, std::make_index_sequence<K>());
  }

  // row[c] = f(c, value of input I at c).
  template <int I, typename F>
  __device__ void StoreOf(Dtype* row, F f) {
    Store(row, f, std::index_sequence<I>());
  }

  template <typename T, typename Op>
  __device__ T AllReduce(T v, Op op) const {
    if constexpr (kLanes == 1) {
      return v;
    } else {
      return WarpAllReduce(v, op);
    }
  }
  __device__ bool Leader() const { return lane == 0; }

 private:
  // Column(j) of a row: one apart in a warp's, stride in a thread's.
  template <typename T>
  __device__ T* Address(T* row, int j) const {
    return row + (kLanes == 1 ? static_cast<int64_t>(Column(j)) * stride
                              : Column(j));
  }

  template <typename F, size_t... I>
  __device__ void ForEach(F& f, std::index_sequence<I...> inputs) {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      if (Column(j) >= channels) continue;
#pragma unroll
      for (int t = 0; t < V; ++t) Visit(f, Column(j) + t, j * V + t, inputs);
    }
  }

  template <typename F, size_t... I>
  __device__ void Store(Dtype* row, F& f, std::index_sequence<I...> inputs) {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      if (Column(j) >= channels) continue;
      Pack<Dtype, V> pack;
#pragma unroll
      for (int t = 0; t < V; ++t) {
        pack.v[t] = Visit(f, Column(j) + t, j * V + t, inputs);
      }
      StoreGlobal(reinterpret_cast<Pack<Dtype, V>*>(Address(row, j)), pack);
    }
  }

  template <typename F, size_t... I>
  __device__ auto Visit(F& f, int c, int e, std::index_sequence<I...>) {
    return f(c, value[I][e]...);
  }
};

// The most columns a lane caches for K inputs. A warp's lane: 32 (C <=
// 1024) while they take at most 96 of its registers, else 16. A thread's
// position: the most, up to 32, whose values take at most 64 registers, as
// ptxas keeps each column's address live beside its value (sm_75: 109
// registers for 32 float columns of one input, 208 for two), so that
// nothing spills.
template <typename Dtype, int K, int kLanes>
constexpr int MaxColsPerLane() {
  if constexpr (kLanes == 1) {
    int cols = kWarpSize;
    while (K * cols * sizeof(Dtype) > 64 * 4) cols /= 2;
    return cols;
  } else {
    return K * kWarpSize * sizeof(Dtype) <= 96 * 4 ? kWarpSize
                                                    : kWarpSize / 2;
  }
}

// Rows per 128-thread block on the warp path: small blocks, so that a few
// hundred rows still spread over the multiprocessors.
const int kRowsPerWarpBlock = 4;

template <typename Op, int kChunks, int V>
__global__ void __launch_bounds__(kRowsPerWarpBlock * kWarpSize, 1)
    WarpCachedRowsKernel(const int rows, const int channels, const Op op) {
  const int64_t r = GlobalThread() / kWarpSize;
  if (r >= rows) return;  // whole warps leave together
  RegisterRow<typename Op::Dtype, Op::kInputs, kWarpSize, kChunks, V> row;
  row.lane = static_cast<int>(threadIdx.x % kWarpSize);
  row.channels = channels;
  row.stride = 1;
  op(row, RowVector(r, channels));
}

// inner > 1: a thread per position, its channels in registers.
template <typename Op, int kCols>
__global__ void __launch_bounds__(kThreads, 1)
    PositionCachedKernel(const SoftmaxShape s, const Op op) {
  const int64_t p = GlobalThread();
  if (p >= static_cast<int64_t>(s.outer) * s.inner) return;
  RegisterRow<typename Op::Dtype, Op::kInputs, 1, kCols, 1> row;
  row.lane = 0;
  row.channels = s.channels;
  row.stride = s.inner;
  op(row, PositionVector(s, p));
}

// The register path with the fewest columns per lane that hold the vector,
// kCols, 2 kCols, ... up to MaxColsPerLane: a warp per row (kLanes ==
// kWarpSize, inner == 1, in vectors of up to kPackBytes) or a thread per
// position (kLanes == 1).
template <typename Op, int kLanes, int kCols>
void LaunchRegisterRows(const SoftmaxShape& s, const Op& op) {
  typedef typename Op::Dtype Dtype;
  if constexpr (kCols < MaxColsPerLane<Dtype, Op::kInputs, kLanes>()) {
    if (s.channels > kCols * kLanes) {
      LaunchRegisterRows<Op, kLanes, 2 * kCols>(s, op);
      return;
    }
  }
  const int64_t positions = static_cast<int64_t>(s.outer) * s.inner;
  if constexpr (kLanes == 1) {
    Launch(PositionCachedKernel<Op, kCols>, BlocksFor(positions), kThreads,
           s, op);
  } else {
    constexpr int kVec =
        kCols < PackWidth<Dtype>() ? kCols : PackWidth<Dtype>();
    const int threads = kRowsPerWarpBlock * kWarpSize;
    const int blocks = BlocksFor(positions * kWarpSize, threads);
    if (s.channels % kVec == 0 && op.Aligned(kVec * sizeof(Dtype))) {
      Launch(WarpCachedRowsKernel<Op, kCols / kVec, kVec>, blocks, threads,
             s.outer, s.channels, op);
    } else {
      Launch(WarpCachedRowsKernel<Op, kCols, 1>, blocks, threads, s.outer,
             s.channels, op);
    }
  }
}

// The fewest columns per thread of the position path: C <= 4 is common
// (and a masked column costs a predicate), so not 1 and 2 as well.
const int kMinPositionCols = 4;

// Runs op on every vector of s with the vector in registers and returns
// true where it fits them (C <= 32 MaxColsPerLane for inner == 1, C <=
// MaxColsPerLane for inner > 1); returns false, launching nothing, where
// not.
template <typename Op>
bool LaunchRegisterRowsIfFit(const SoftmaxShape& s, const Op& op) {
  typedef typename Op::Dtype Dtype;
  constexpr int kK = Op::kInputs;
  if (s.inner == 1 &&
      s.channels <= kWarpSize * MaxColsPerLane<Dtype, kK, kWarpSize>()) {
    LaunchRegisterRows<Op, kWarpSize, 1>(s, op);
    return true;
  }
  if (s.inner != 1 && s.channels <= MaxColsPerLane<Dtype, kK, 1>()) {
    LaunchRegisterRows<Op, 1, kMinPositionCols>(s, op);
    return true;
  }
  return false;
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_CUDA_REGISTER_ROW_CUH_
