#ifndef CAFFE_TEMPERATURE_CUDA_CACHED_ROW_CUH_
#define CAFFE_TEMPERATURE_CUDA_CACHED_ROW_CUH_

// Softmax vectors held on chip while a kernel works on them, so that each
// input is read from global memory once and each output written once: in
// registers (register_row.cuh: a row of C <= 32 * MaxColsPerLane in a warp,
// or the C <= MaxColsPerLane channels of a position, inner > 1, in one
// thread) or a row (inner == 1) in the dynamic shared memory of one block
// (longer rows, up to what the device grants a block). Where all inputs do
// not fit, an op may let its last inputs stay in global memory, read again
// at each visit (the backwards' dy: twice). Vectors longer than that take
// the multi-pass kernels of per_vector.cuh.
//
// A row operation is a functor with
//   typedef ... Dtype;
//   static const int kInputs;                  // rows it caches
//   static const int kStreamable;              // of them, the last ones it
//                                              // never changes in ForEach
//   bool Aligned(size_t bytes) const;          // all its pointers are
//   template <typename Row>
//   __device__ void operator()(Row& row, const Vector& v) const;
// that loads its inputs into the row (row.Load<i>(input + v.offset)), visits
// the cached values (row.ForEach, which may change them, or row.ForEachOf<i>
// for input i alone), combines across the row (row.AllReduce) and writes
// (row.Store, or row.StoreOf<i> from input i alone).
// Every value is loaded, visited and stored by the same thread, so the cache
// needs no barrier of its own and an output may alias an input. Loads and
// stores are 16-byte vectors (float4, double2) where C and every pointer
// allow, else narrower or scalar.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "caffe_temperature/softmax_kernels.hpp"
#include "launch.cuh"
#include "per_vector.cuh"
#include "reduce.cuh"
#include "register_row.cuh"

// A block's dynamic shared memory as `type* name`: one extern array per
// Dtype would clash between instantiations, and HIP-CPU spells it otherwise
// (tests/emulated/cuda_on_hip_cpu.hpp defines this macro first).
#ifndef CT_DYNAMIC_SHARED
#define CT_DYNAMIC_SHARED(type, name)                                 \
  extern __shared__ __align__(16) unsigned char ct_dynamic_shared_[]; \
  type* name = reinterpret_cast<type*>(ct_dynamic_shared_)
#endif

namespace caffe_temperature {

// A row in a block's dynamic shared memory, input i < kCached at
// cache + i C; inputs from kCached on stay in global memory and are read
// again at each visit (ForEach, Store), for rows too long to cache them all.
// Thread t owns the chunks t, t + blockDim.x, ... of V values. The cache is
// read and written a chunk at a time, as global memory is, so that the
// accesses of a warp do not collide in the banks.
template <typename Dtype, int K, int V, int kCached = K>
struct BlockRow {
  Dtype* cache;
  Dtype* scratch;  // kWarpSize values for the reductions
  int channels;
  const Pack<Dtype, V>* streamed[K - kCached + 1];

  template <int I>
  __device__ void Load(const Dtype* row) {
    const Pack<Dtype, V>* from = reinterpret_cast<const Pack<Dtype, V>*>(row);
    if constexpr (I >= kCached) {
      streamed[I - kCached] = from;
    } else {
      Pack<Dtype, V>* to = Chunks(I);
      // Unrolled so that a thread has several loads in flight before its
      // first store to shared memory waits for one.
#pragma unroll 4
      for (int q = threadIdx.x; q * V < channels; q += blockDim.x) {
        to[q] = LoadGlobal(from + q);
      }
    }
  }

  template <typename F>
  __device__ void ForEach(F f) {
    for (int q = threadIdx.x; q * V < channels; q += blockDim.x) {
      Visit(q, std::make_index_sequence<K>(), [&](int c, Dtype* values) {
        Apply(f, c, values, std::make_index_sequence<K>());
      });
    }
  }

  // f(c, value of input I at c) by reference: input I alone.
  template <int I, typename F>
  __device__ void ForEachOf(F f) {
    for (int q = threadIdx.x; q * V < channels; q += blockDim.x) {
      Pack<Dtype, V> pack = Get<I>(q);
#pragma unroll
      for (int t = 0; t < V; ++t) f(q * V + t, pack.v[t]);
      Put<I>(q, pack);
    }
  }

  template <typename F>
  __device__ void Store(Dtype* row, F f) {
    Pack<Dtype, V>* to = reinterpret_cast<Pack<Dtype, V>*>(row);
    for (int q = threadIdx.x; q * V < channels; q += blockDim.x) {
      Pack<Dtype, V> pack;
      Visit(q, std::make_index_sequence<K>(), [&](int c, Dtype* values) {
        pack.v[c - q * V] = Apply(f, c, values, std::make_index_sequence<K>());
      });
      StoreGlobal(to + q, pack);
    }
  }

  // row[c] = f(c, value of input I at c): input I alone, so that an output
  // of one input reads no streamed other.
  template <int I, typename F>
  __device__ void StoreOf(Dtype* row, F f) {
    Pack<Dtype, V>* to = reinterpret_cast<Pack<Dtype, V>*>(row);
    for (int q = threadIdx.x; q * V < channels; q += blockDim.x) {
      Pack<Dtype, V> pack = Get<I>(q);
#pragma unroll
      for (int t = 0; t < V; ++t) pack.v[t] = f(q * V + t, pack.v[t]);
      StoreGlobal(to + q, pack);
    }
  }

  template <typename Op>
  __device__ Dtype AllReduce(Dtype v, Op op) const {
    return BlockAllReduce(v, op, scratch);
  }
  __device__ bool Leader() const { return threadIdx.x == 0; }

 private:
  __device__ Pack<Dtype, V>* Chunks(int i) const {
    return reinterpret_cast<Pack<Dtype, V>*>(cache + i * channels);
  }

  // Chunk q of input I, from the cache or from global memory.
  template <int I>
  __device__ Pack<Dtype, V> Get(int q) const {
    if constexpr (I < kCached) {
      return Chunks(I)[q];
    } else {
      return LoadGlobal(streamed[I - kCached] + q);
    }
  }

  // Puts chunk q of input I back where it is cached; a streamed input's
  // changes are dropped (the ops change only the inputs they cache).
  template <int I>
  __device__ void Put(int q, const Pack<Dtype, V>& pack) const {
    if constexpr (I < kCached) Chunks(I)[q] = pack;
  }

  // Brings chunk q of every input into registers, calls g(c, values of the
  // inputs at c) for its V columns and puts the chunk back.
  template <size_t... I, typename G>
  __device__ void Visit(int q, std::index_sequence<I...>, G g) const {
    Pack<Dtype, V> packs[K] = {Get<I>(q)...};
#pragma unroll
    for (int t = 0; t < V; ++t) {
      Dtype values[K] = {packs[I].v[t]...};
      g(q * V + t, values);
      ((packs[I].v[t] = values[I]), ...);
    }
    (Put<I>(q, packs[I]), ...);
  }

  template <typename F, size_t... I>
  __device__ static auto Apply(F& f, int c, Dtype* values,
                               std::index_sequence<I...>) {
    return f(c, values[I]...);
  }
};

// The static shared memory of BlockCachedRowsKernel, in values: the
// reductions' scratch, a value per warp. The launch counts it against the
// block's limits.
const int kBlockRowScratch = kWarpSize;

template <typename Op, int V, int kCached>
__global__ void __launch_bounds__(kMaxThreadsPerBlock, 1)
    BlockCachedRowsKernel(const int channels, const Op op) {
  typedef typename Op::Dtype Dtype;
  CT_STATIC_SHARED(Dtype, scratch, kBlockRowScratch);
  CT_DYNAMIC_SHARED(Dtype, cache);
  BlockRow<Dtype, Op::kInputs, V, kCached> row = {cache, scratch, channels};
  op(row, RowVector(blockIdx.x, channels));
}

// A block's shared memory, static and dynamic together, without opting in.
const size_t kDefaultSharedBytes = 48 * 1024;

template <typename Dtype>
constexpr size_t BlockRowStaticBytes() {
  return kBlockRowScratch * sizeof(Dtype);
}

// The first kCached inputs of op in `bytes` of shared memory, the others
// streamed.
template <typename Op, int V, int kCached>
void LaunchBlockCachedRows(const SoftmaxShape& s, const Op& op,
                           size_t bytes) {
  void (*kernel)(int, Op) = BlockCachedRowsKernel<Op, V, kCached>;
  // The opt-in raises the dynamic part alone: without it a kernel may have
  // 48 KiB less its static part.
  if (bytes + BlockRowStaticBytes<typename Op::Dtype>() >
      kDefaultSharedBytes) {
    CheckCuda(cudaFuncSetAttribute(kernel,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(bytes)),
              "cudaFuncSetAttribute");
  }
  // About four chunks per thread: enough loads in flight per thread, and
  // blocks small enough for several to share a multiprocessor.
  const int per_thread = 4;
  const int chunks = s.channels / V;
  const int warps = (chunks + per_thread * kWarpSize - 1) /
                    (per_thread * kWarpSize);
  const int threads =
      std::min(kMaxThreadsPerBlock, std::max(4, warps) * kWarpSize);
  LaunchWithShared(kernel, s.outer, threads, bytes, s.channels, op);
}

// The block path with the first kCached inputs in shared memory, if they fit
// the device (returns false, launching nothing, where not).
template <typename Op, int kCached>
bool LaunchBlockCachedRowsIfFit(const SoftmaxShape& s, const Op& op) {
  typedef typename Op::Dtype Dtype;
  const size_t bytes =
      static_cast<size_t>(kCached) * s.channels * sizeof(Dtype);
  const size_t limit =
      DeviceAttribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  if (bytes + BlockRowStaticBytes<Dtype>() > limit) return false;
  constexpr int kVec = PackWidth<Dtype>();
  if (s.channels % kVec == 0 && op.Aligned(kPackBytes)) {
    LaunchBlockCachedRows<Op, kVec, kCached>(s, op, bytes);
  } else {
    LaunchBlockCachedRows<Op, 1, kCached>(s, op, bytes);
  }
  return true;
}

// Runs op on every vector of s with the vector on chip and returns true: in
// registers where it fits them, else (inner == 1) in shared memory, all its
// inputs where they fit, else all but its last Op::kStreamable ones, which
// are read from global memory at each visit; returns false, launching
// nothing, where none fits.
template <typename Op>
bool LaunchCachedRows(const SoftmaxShape& s, const Op& op) {
  if (LaunchRegisterRowsIfFit(s, op)) return true;
  if (s.inner != 1) return false;
  if (LaunchBlockCachedRowsIfFit<Op, Op::kInputs>(s, op)) return true;
  if constexpr (Op::kStreamable > 0) {
    return LaunchBlockCachedRowsIfFit<Op, Op::kInputs - Op::kStreamable>(s,
                                                                         op);
  }
  return false;
}

// The one dispatch of the three layers' row operations: an op with both
// call operators, the cached row's and per_vector.cuh's, runs cached where
// the vector fits on chip, else on the per-vector paths.
template <typename Op>
void LaunchRowOp(const SoftmaxShape& s, const Op& op) {
  if (!LaunchCachedRows(s, op)) LaunchPerVector<typename Op::Dtype>(s, op);
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_CUDA_CACHED_ROW_CUH_
